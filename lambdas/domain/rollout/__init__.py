"""The gated rollout's use cases: one module per state machine task, each ``(ports, state) -> new state``.

Modules: ``preflight`` (validate, find the target groups, assess, size), ``step`` (Start Step), ``gate`` (Check
Target Health), ``drain`` (Release Old Pods, Verify Drain), ``rollback`` (Roll Back), ``finish`` (Finish Rollout),
``approval`` (Request Approval); what they share: ``pods`` (the step's pods), ``targets`` (target groups, their
health, albgate's deregistrations), ``observe`` (when to look) and ``alarms`` (the CloudWatch alarms the policy
names).

Invariant: a use case is idempotent for a given input state. Step Functions hands a retried or duplicated
task the same input, every change it makes to the cluster is a declarative patch (the same patch twice is one
change), and the step index only moves in the returned state, so a retry can neither double-step nor undo
progress. Nothing here imports boto3 or kubernetes: the ports do the I/O.
"""
