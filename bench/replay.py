"""The Describe* token-bucket replay: N recorded rollouts on one account's bucket, for bench_cost.py.

Job: answer how many rollouts can share one account's Describe* bucket (40 tokens, 10/s) without a throttled
call, without a rollout slowed by more than 10 %, and without a rollout failed. The single rollouts are
recorded by the ``albgate-bench`` strategy (albgate_bench.py); this module replays N of them at random start
offsets against the simulation's own ``TokenBucket``, with each caller's back-off on a throttle (Preflight: the
synthesized state machine's Retry for ThrottledError; the gate and drain: ``lambdas.domain.poll``; the
controller: its work-queue back-off) and, optionally, albgate's share of the bucket (``lambdas.domain.budget``)
read from the synthesized template.
Invariant: a replay model, not a simulation: it never re-runs the world, so a rollout's slow-down is an upper
bound (docs/benchmarks.md, section 3, says what it leaves out); every random draw comes from a generator
seeded by the replay's parameters, so the same call gives the same numbers.
"""

from __future__ import annotations

import heapq
import math
import random
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from _common import percentile
from lambdas.domain.budget import BudgetSpec, admit


@dataclass(frozen=True)
class Call:
    t: float  # seconds after the rollout start
    caller: str  # "albgate" or "controller"
    api: str  # DescribeTargetHealth | DescribeTargetGroups | DescribeTargetGroupAttributes
    tokens: int
    source: str = ""  # albgate's calling function: Preflight | CheckTargetHealth | VerifyDrain ("" unknown)
    step_start: float | None = None  # when the step this call belongs to started (seconds after the rollout start)


@dataclass(frozen=True)
class Schedule:
    """One recorded rollout: its Describe* calls (both callers), its duration and its step deadline."""

    name: str
    calls: tuple[Call, ...]
    rollout_seconds: float
    step_deadline_seconds: float = 900.0  # RolloutPolicy.step_deadline_seconds default: a gate throttled past it fails


@dataclass(frozen=True)
class RetryPolicy:
    """A Step Functions Retry clause, as the service applies it: before the k-th retry (k = 1..max_attempts)
    it waits ``interval * backoff_rate**(k-1)``, capped at ``max_delay`` (MaxDelaySeconds), and with
    JitterStrategy FULL a uniform draw from [0, that] instead (the CDK's JitterType.FULL: "a random number
    between 0 and the computed backoff"; moto's interpreter does the same). After ``max_attempts`` retries the
    error goes to the Catch."""

    interval: float
    backoff_rate: float = 2.0
    max_attempts: int = 3
    max_delay: float | None = None
    jitter: str = "NONE"  # NONE | FULL

    def delay(self, k: int, rng: random.Random) -> float | None:
        """The wait before retry k (1-based); None = retries exhausted, the task fails."""
        if k > self.max_attempts:
            return None
        wait = self.interval * self.backoff_rate ** (k - 1)
        if self.max_delay is not None:
            wait = min(wait, self.max_delay)
        return rng.uniform(0.0, wait) if self.jitter == "FULL" else wait

    def worst_total(self) -> float:
        """Seconds of waiting before the task gives up when every draw is at its maximum."""
        return sum(min(self.interval * self.backoff_rate ** k, self.max_delay or math.inf)
                   for k in range(self.max_attempts))

    def describe(self) -> str:
        cap = f", at most {self.max_delay:g} s" if self.max_delay is not None else ""
        jitter = ", full jitter" if self.jitter == "FULL" else ", no jitter"
        return (f"{self.max_attempts} retries from {self.interval:g} s x{self.backoff_rate:g}{cap}{jitter} "
                f"(<= {self.worst_total():.0f} s)")

    def as_dict(self) -> dict[str, Any]:
        return {"interval": self.interval, "backoff_rate": self.backoff_rate, "max_attempts": self.max_attempts,
                "max_delay": self.max_delay, "jitter": self.jitter}


# The rollout state machine's Retry for ThrottledError before it had a clause of its own (commit 6f0ebc1 and
# earlier: the general clause, 2 s doubling, 5 retries, no jitter): kept to compare with (--preflight-retry legacy).
LEGACY_PREFLIGHT_RETRY = RetryPolicy(interval=2.0, backoff_rate=2.0, max_attempts=5)


def retry_policy(definition: dict[str, Any], state: str, error: str) -> RetryPolicy | None:
    """The Retry clause a Task state of an ASL definition applies to ``error`` (the first whose ErrorEquals
    names it or States.ALL, as Step Functions picks it); None when no clause matches (no retry)."""
    for clause in definition["States"][state].get("Retry", []):
        names = clause["ErrorEquals"]
        if error in names or "States.ALL" in names:
            return RetryPolicy(
                interval=float(clause.get("IntervalSeconds", 1)),
                backoff_rate=float(clause.get("BackoffRate", 2.0)),
                max_attempts=int(clause.get("MaxAttempts", 3)),
                max_delay=float(clause["MaxDelaySeconds"]) if "MaxDelaySeconds" in clause else None,
                jitter=str(clause.get("JitterStrategy", "NONE")),
            )
    return None


def template_retry_policy(template: dict[str, Any], state: str = "Preflight",
                          error: str = "ThrottledError") -> RetryPolicy | None:
    """The Retry the synthesized rollout state machine applies to ``error`` in ``state``."""
    from albgate.sfn_local.extract import extract_state_machine
    from albgate.template import state_machine_id

    return retry_policy(extract_state_machine(template, state_machine_id(template)).definition, state, error)


def template_budget(template: dict[str, Any]) -> BudgetSpec | None:
    """albgate's share of the Describe* bucket as the synthesized stack configures it: the rate and burst in
    the environment of the functions that poll (None: the stack has no budget)."""
    for res in template["Resources"].values():
        if res.get("Type") != "AWS::Lambda::Function":
            continue
        env = res.get("Properties", {}).get("Environment", {}).get("Variables", {})
        if "ALBGATE_DESCRIBE_BUDGET_RATE" in env:
            return BudgetSpec(float(env["ALBGATE_DESCRIBE_BUDGET_RATE"]), int(env["ALBGATE_DESCRIBE_BUDGET_BURST"]))
    return None


# albgate's reactions to a throttled call, besides Preflight's Retry (the code they come from):
EXECUTION_TIMEOUT_SECONDS = 48 * 3600.0  # the state machine's TimeoutSeconds (rollout_workflow.py)
# LBC workqueue back-off (docs/facts.md, Load Balancer Controller: registration and timing)
CONTROLLER_BACKOFF_START, CONTROLLER_BACKOFF_CAP = 0.005, 1000.0
PREFLIGHT, GATE, DRAIN = "Preflight", "CheckTargetHealth", "VerifyDrain"  # function roles (albgate_bench.function_role)


def _phase(call: Call) -> tuple[str, float] | None:
    """The gate or drain wait a poll belongs to (its function and step), or None (any other call)."""
    if call.caller == "albgate" and call.source in (GATE, DRAIN) and call.step_start is not None:
        return call.source, call.step_start
    return None


def _is_preflight(call: Call) -> bool:
    """Preflight's calls (DescribeTargetGroups, DescribeTargetGroupAttributes; a record without a source: by its
    API)."""
    by_api = not call.source and call.api in ("DescribeTargetGroups", "DescribeTargetGroupAttributes")
    return call.caller == "albgate" and (call.source == PREFLIGHT or by_api)


@dataclass
class _Stream:
    """One caller's calls of one recorded rollout, in order, with whether each one decides its phase."""

    calls: tuple[Call, ...]
    decisive: tuple[bool, ...]


def _streams(sched: Schedule) -> tuple[_Stream, _Stream]:
    """(albgate's calls, the controller's calls). A gate or drain poll decides its phase only if it is the last
    poll of that step's gate (or drain): the one that saw the targets healthy (or gone). Every other call
    decides: Preflight's, the controller's, and any call recorded without its source."""
    out = []
    for caller in ("albgate", "controller"):
        calls = tuple(c for c in sched.calls if c.caller == caller)
        phases = [_phase(c) for c in calls]
        decisive = tuple(ph is None or ph not in phases[j + 1:] for j, ph in enumerate(phases))
        out.append(_Stream(calls, decisive))
    return out[0], out[1]


@dataclass
class _Copy:
    sched: Schedule
    offset: float
    streams: tuple[_Stream, _Stream]
    shift: float = 0.0  # how late this rollout is so far: the whole rest of it happens that much later
    consecutive: Counter = field(default_factory=Counter)  # throttles in a row, per caller
    throttled_wait: float = 0.0  # consecutive back-off of albgate's polls (rule for calls of unknown source)
    step_shift: dict = field(default_factory=dict)  # step start -> shift when the step's first call was due
    throttled: int = 0
    preflight_retries: int = 0
    failed: bool = False

    def due(self, call: Call) -> float:
        return self.offset + self.shift + call.t


def _backoff(call: Call, k: int, interval: int, key: str, preflight_retry: RetryPolicy | None,
             rng: random.Random) -> float | None:
    """The wait before the k-th consecutive retry of a throttled call; None = albgate gives the rollout up."""
    from lambdas.domain.poll import drain_poll_seconds, target_poll_seconds

    if call.caller == "controller":
        return min(CONTROLLER_BACKOFF_CAP, CONTROLLER_BACKOFF_START * 2 ** (k - 1))
    if _is_preflight(call):  # ThrottledError from Preflight: Step Functions' Retry, then the Catch refuses
        return None if preflight_retry is None else preflight_retry.delay(k, rng)
    if call.source == DRAIN:
        return float(drain_poll_seconds(interval, key, k))
    return float(target_poll_seconds(interval, key, k))  # the gate's own back-off (rollout.check_target_health)


def _gate_gives_up(c: _Copy, call: Call, now: float, wait: float) -> bool:
    """Whether this throttled albgate poll ends the rollout, as the handlers decide it.

    Check Target Health fails the step when, at a throttled poll, the step deadline has passed; the step
    started when recorded plus however late the rollout was then. Verify Drain never fails on a throttled
    poll (``evaluate_drain`` without health answers WAITING). A call of unknown source (a record without it)
    uses the older rule: consecutive throttled waits past the step deadline."""
    if call.source == DRAIN:
        return False
    if call.source == GATE and call.step_start is not None:
        started = c.offset + c.step_shift.get(call.step_start, c.shift) + call.step_start
        return now - started >= c.sched.step_deadline_seconds
    c.throttled_wait += wait
    return c.throttled_wait > c.sched.step_deadline_seconds


def _fold(c: _Copy, st: _Stream, j: int, until: float) -> int:
    """The poll a retried (or booked) albgate call stands for: the polls of the same wait that fall due
    before ``until`` are folded into it (they would only have asked "not yet?")."""
    nxt = j
    phase = _phase(st.calls[j])
    if phase is not None:
        while nxt + 1 < len(st.calls) and _phase(st.calls[nxt + 1]) == phase and c.due(st.calls[nxt + 1]) <= until:
            nxt += 1
    return nxt


def replay(schedules: Sequence[Schedule], n: int, *, window: float, background: float, seed: int,
           preflight_retry: RetryPolicy | None, capacity: int = 40, refill: float = 10.0,
           interval: int = 5, budget: BudgetSpec | None = None) -> dict[str, Any]:
    """N rollouts on one account's Describe* bucket: copy i replays schedule (i + seed) mod len(schedules),
    started at a uniform random offset in [0, window]; ``background`` calls/s come out of the bucket all the
    time (other pollers).

    A throttled call is retried after the back-off its caller uses: Preflight's by ``preflight_retry`` (the
    state machine's Retry for ThrottledError: its delays, cap and jitter; past its attempts the rollout is
    refused), the gate's and drain's polls by ``lambdas.domain.poll`` (past the step deadline a gate fails),
    the controller's by its work-queue back-off. How late a retry makes the rollout depends on the call:
    - a call that decides something (Preflight's; the gate poll that saw the step's targets healthy; the
      drain poll that saw the old ones gone; every controller call) makes the whole rest of the rollout, both
      callers, as late as it succeeded after it was due;
    - an earlier gate or drain poll of the same wait only asked "not yet?": the world does not wait for it,
      so its back-off makes nothing later by itself; the polls that fell due during the back-off are folded
      into the retry, and if the retry lands after the deciding poll was due, that poll is late by the rest.
    The deciding poll is an upper bound on when the targets turned healthy, and a late controller call delays
    everything after it, so the slow-downs are still upper bounds, only no longer charged for a throttled
    "not yet". Stops a rollout past the state machine's 48 h timeout (only with background >= refill).

    With a ``budget`` (albgate's share of the bucket, lambdas/domain/budget.py), every albgate call first
    asks it, as the handlers do: a call told to wait is booked, and goes at its turn (whole seconds later, the
    Wait states' unit) without asking again, with the same lateness rules as a throttled poll's retry; that
    holds for Preflight too (`Wait For Describe Turn`). Such waits spend no token of the account's bucket and
    are counted as ``budget_waits``, not as throttled calls."""
    from albgate.sim.alb import TokenBucket

    rng = random.Random(f"replay:{n}:{float(window)}:{float(background)}:{seed}")
    jitter = random.Random(f"replay-retry-jitter:{n}:{float(window)}:{float(background)}:{seed}")
    cache: dict[int, tuple[_Stream, _Stream]] = {}
    copies = []
    for i in range(n):
        sched = schedules[(i + seed) % len(schedules)]
        streams = cache.setdefault(id(sched), _streams(sched))
        copies.append(_Copy(sched, rng.uniform(0.0, window), streams))
    bucket = TokenBucket(capacity, refill, 0.0, [(0.0, float("inf"), background)] if background else [])
    heap: list[tuple[float, int, int, int, bool]] = []  # (time, copy, stream, call index, is a retry)
    for i, c in enumerate(copies):
        for s, st in enumerate(c.streams):
            if st.calls:
                heapq.heappush(heap, (c.due(st.calls[0]), i, s, 0, False))
    calls = throttled = budget_waits = 0
    failed_by: Counter[str] = Counter()
    share_tat: float | None = None  # albgate's share of the bucket (budget.admit), shared by every copy
    booked: set[tuple[int, int, int]] = set()  # (copy, stream, call) that go at their booked slot
    while heap:
        t, i, s, j, retry = heapq.heappop(heap)
        c = copies[i]
        if c.failed:
            continue
        st = c.streams[s]
        call = st.calls[j]
        due = c.due(call)
        if not retry and due > t + 1e-9:  # the rollout got later since this call was queued
            heapq.heappush(heap, (due, i, s, j, False))
            continue
        if call.step_start is not None:
            c.step_shift.setdefault(call.step_start, c.shift)
        if budget is not None and call.caller == "albgate" and (i, s, j) not in booked:
            a = admit(share_tat, t, call.tokens, budget, reserve=True)
            share_tat = a.tat
            if a.wait > 0:  # booked: the call goes at its turn (whole seconds of Wait) without asking again
                budget_waits += 1
                wait = float(max(1, math.ceil(a.wait)))
                if not _is_preflight(call) and _gate_gives_up(c, call, t, wait):
                    c.failed = True  # the step deadline passed while the gate waited for its turn
                    failed_by["gate_past_step_deadline"] += 1
                    continue
                nxt = _fold(c, st, j, t + wait)
                booked.add((i, s, nxt))
                heapq.heappush(heap, (t + wait, i, s, nxt, True))
                continue
        booked.discard((i, s, j))
        calls += 1
        if bucket.take(t, call.tokens):
            c.consecutive[call.caller] = 0
            if call.caller == "albgate":
                c.throttled_wait = 0.0
            if st.decisive[j] and t > due:
                c.shift += t - due
            if j + 1 < len(st.calls):
                heapq.heappush(heap, (max(t, c.due(st.calls[j + 1])), i, s, j + 1, False))
            continue
        throttled += 1
        c.throttled += 1
        c.consecutive[call.caller] += 1
        k = c.consecutive[call.caller]
        wait = _backoff(call, k, interval, f"{i}:{j}", preflight_retry, jitter)
        if wait is None:
            c.failed = True  # Preflight's retries exhausted: the Catch refuses the rollout
            failed_by["preflight_refused"] += 1
            continue
        if _is_preflight(call):
            c.preflight_retries = max(c.preflight_retries, k)
        elif call.caller == "albgate" and _gate_gives_up(c, call, t, wait):
            c.failed = True  # the gate throttled past the step deadline
            failed_by["gate_past_step_deadline"] += 1
            continue
        if t + wait - c.offset > EXECUTION_TIMEOUT_SECONDS:
            c.failed = True
            failed_by["execution_timed_out"] += 1
            continue
        heapq.heappush(heap, (t + wait, i, s, _fold(c, st, j, t + wait), True))
    slow = [c.shift / c.sched.rollout_seconds for c in copies if not c.failed and c.sched.rollout_seconds > 0]
    return {
        "n": n, "calls": calls, "throttled_calls": throttled, "budget_waits": budget_waits,
        "throttled_rollouts": sum(1 for c in copies if c.throttled),
        "failed_rollouts": sum(1 for c in copies if c.failed), "failed_by": dict(failed_by),
        "max_slowdown": max(slow, default=0.0),
        "preflight_retries_max": max((c.preflight_retries for c in copies), default=0),
        "slowdowns": slow,
    }


def replay_at(schedules: Sequence[Schedule], ns: Iterable[int], *, window: float, background: float, trials: int,
              preflight_retry: RetryPolicy | None, budget: BudgetSpec | None = None) -> list[dict[str, Any]]:
    """What N concurrent rollouts see, for each given N, over ``trials`` replays: throttled calls per replay
    (median, max), rollouts given up (max in one replay, total), why, and the slow-down of the rollouts that
    finished (median, p90 and max over every rollout of every trial), with the most Preflight retries used."""
    rows = []
    for n in ns:
        rs = [replay(schedules, n, window=window, background=background, seed=s, preflight_retry=preflight_retry,
                     budget=budget) for s in range(trials)]
        slow = [x for r in rs for x in r["slowdowns"]]
        rows.append({
            "n": n, "trials": trials,
            "throttled_calls_median": statistics.median(r["throttled_calls"] for r in rs),
            "throttled_calls_max": max(r["throttled_calls"] for r in rs),
            "budget_waits_median": statistics.median(r["budget_waits"] for r in rs),
            "throttled_rollouts_max": max(r["throttled_rollouts"] for r in rs),
            "failed_rollouts_max": max(r["failed_rollouts"] for r in rs),
            "failed_rollouts_total": sum(r["failed_rollouts"] for r in rs),
            "failed_by": dict(sum((Counter(r["failed_by"]) for r in rs), Counter())),
            "slowdown_median": statistics.median(slow) if slow else None,
            "slowdown_p90": percentile(slow, 90),
            "slowdown_max": max(slow, default=None),
            "rollouts_over_slow_limit": sum(1 for x in slow if x > 0.10),
            "rollouts": len(slow) + sum(r["failed_rollouts"] for r in rs),
            "preflight_retries_max": max(r["preflight_retries_max"] for r in rs),
        })
    return rows


def _next_n(n: int, fine: bool) -> int:
    """The concurrency grid: every N while ``fine`` (up to 100), then every 5th up to 200, then every 25th."""
    if fine and n < 100:
        return n + 1
    step = 5 if n < 200 else 25
    return (n // step + 1) * step


def concurrency_limits(schedules: Sequence[Schedule], *, window: float, background: float, trials: int,
                       preflight_retry: RetryPolicy | None, slow_limit: float = 0.10,
                       n_max: int = 400, budget: BudgetSpec | None = None) -> dict[str, Any]:
    """The largest N (every N' <= N on the grid passing in every trial) with (a) no throttled call, (b) no
    rollout failed and none slowed by more than ``slow_limit``, (c) no rollout failed (Preflight refused
    after its retries, a gate throttled past the step deadline, or the execution timed out). Grid: every N
    until (a) and (b) are found (at most to 100), then every 5th N up to 200 and every 25th up to ``n_max``,
    stopping at the first failure; when that failure follows a coarse step, the N skipped over are looked at
    too (each one after a step of 5, every 5th after a step of 25), so (c) is exact to 1 below 200 and to 5
    above."""
    no_throttle = ok = no_failure = 0
    first_throttle: dict[str, Any] | None = None
    first_bad: dict[str, Any] | None = None
    first_failed: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = []
    n = 1
    todo: list[int] = []  # after a coarse step ended in a failure: the N skipped over, to look at first
    while n <= n_max:
        rs = [replay(schedules, n, window=window, background=background, seed=s, preflight_retry=preflight_retry,
                     budget=budget) for s in range(trials)]
        worst = {
            "n": n,
            "trials_with_throttling": sum(1 for r in rs if r["throttled_calls"]),
            "throttled_calls_max": max(r["throttled_calls"] for r in rs),
            "failed_rollouts_max": max(r["failed_rollouts"] for r in rs),
            "failed_by": dict(sum((Counter(r["failed_by"]) for r in rs), Counter())),
            "max_slowdown": max(r["max_slowdown"] for r in rs),
            "preflight_retries_max": max(r["preflight_retries_max"] for r in rs),
        }
        rows.append(worst)
        if first_throttle is None:
            if worst["trials_with_throttling"] == 0:
                no_throttle = n
            else:
                first_throttle = worst
        bad = worst["failed_rollouts_max"] > 0 or worst["max_slowdown"] > slow_limit
        if first_bad is None:
            if not bad:
                ok = n
            else:
                first_bad = worst
        if worst["failed_rollouts_max"] == 0:
            no_failure = n
        elif not todo and rows[-2:-1] and n - rows[-2]["n"] > 1:
            # a failure after a coarse step: look at the N skipped over (every one if the step was 5, else
            # every 5th), so that "largest N without failure" is exact to the finer step
            gap = n - rows[-2]["n"]
            todo = list(range(rows[-2]["n"] + (1 if gap <= 5 else 5), n, 1 if gap <= 5 else 5)) + [n]
            rows.pop()
        else:
            first_failed = worst
            break
        if todo:
            n = todo.pop(0)
            continue
        n = _next_n(n, first_throttle is None or first_bad is None)
    return {"window_seconds": window, "background_calls_per_second": background, "trials": trials,
            "preflight_retry": preflight_retry.as_dict() if preflight_retry else None,
            "largest_n_without_throttling": no_throttle, "largest_n_within_slowdown": ok,
            "largest_n_without_failure": no_failure, "slow_limit": slow_limit, "first_throttled": first_throttle,
            "first_too_slow": first_bad, "first_failed": first_failed, "grid": rows}
