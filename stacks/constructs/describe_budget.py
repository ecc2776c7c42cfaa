"""The DynamoDB table behind albgate's share of the account's Describe* bucket (lambdas/domain/budget.py).

Job: one on-demand table holding the share's item (its theoretical arrival time and last cut) and one item per
target group a rollout looked at (the newest DescribeTargetHealth answer, shared between executions:
lambdas/domain/looks.py) and the Preflights' board of target group descriptions (lambdas/domain/descriptions.py),
and, for every function whose spec says ``describe_budget``, the table's name and the share's rate and burst in its
environment plus dynamodb:GetItem/UpdateItem on this table only (lambdas/adapters/dynamodb_budget.py,
dynamodb_looks.py and dynamodb_descriptions.py use nothing else).
"""

from __future__ import annotations

from collections.abc import Iterable

from constructs import Construct

from stacks.config import DescribeBudgetConfig
from stacks.constructs.lambda_function import AlbgateFunction
from stacks.constructs.tables import small_table

BUDGET_KEY = "budget_key"  # lambdas/adapters/dynamodb_budget.py KEY
BUDGET_ACTIONS = ("dynamodb:GetItem", "dynamodb:UpdateItem")
# lambdas/adapters/dynamodb_looks.py EXPIRES_AT: a target group's shared answer is deleted a day after its time
# (the share's own item has no such attribute and stays)
EXPIRES_AT = "expires_at"


class DescribeBudgetTable(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: DescribeBudgetConfig,
                 functions: Iterable[AlbgateFunction]) -> None:
        super().__init__(scope, construct_id)
        # One number that is rebuilt from nothing on the first call: nothing to keep once the stack is gone.
        self.table = small_table(self, "Table", partition_key=BUDGET_KEY, time_to_live_attribute=EXPIRES_AT)
        for f in functions:
            if not f.spec.describe_budget:
                continue
            f.function.add_environment("ALBGATE_DESCRIBE_BUDGET_TABLE", self.table.table_name)
            f.function.add_environment("ALBGATE_DESCRIBE_BUDGET_RATE", repr(float(config.rate_per_second)))
            f.function.add_environment("ALBGATE_DESCRIBE_BUDGET_BURST", str(config.burst))
            self.table.grant(f.role, *BUDGET_ACTIONS)
