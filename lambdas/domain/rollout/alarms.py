"""The CloudWatch alarms a rollout watches (``policy.alarms``): which DescribeAlarms calls a look makes, and what
their answers decide.

Job: ``Watch`` is what a policy watches and which states fail it; ``queries`` and ``overflow_queries`` are the
calls of one look and ``look`` makes them; what decides from the answers is pure (``failing``,
``failure_reason``, ``selector_problems``, ``history_candidates``, ``went_failing``). Three entry points call
``look``: Preflight (``check_at_start``: an entry that matches no alarm is refused, and so is an alarm already failing,
unless ``start_despite_alarms``), every look of a step's gate and drain (``during``), and Start Step
(``since_gate``: the time since the previous step's gate passed, its drain, bake and any approval wait included,
read from each alarm's history, so an alarm that went to ALARM and back between two looks fails the step too). A
non-empty answer fails the step; the state machine takes it from there as it does any failed gate or drain: the
rollback decision, then the gated rollback.

Invariant: a look makes at most ``1 + 3 * MAX_ALARM_PREFIXES`` DescribeAlarms calls (one for the exact names,
one per prefix, and per prefix matching more than a page one more per failing state); normally ``1 + prefixes``.
Start Step adds at most ``MAX_HISTORY_CALLS`` DescribeAlarmHistory calls. What albgate could not read whole counts
against the rollout, never for it. A rollback watches nothing: the alarms that failed the rollout may well still be
in ALARM while the previous version comes back, and a rollback is never stopped by them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from lambdas.domain.errors import InvalidInputError, UnsafeConfigurationError
from lambdas.domain.models import RolloutPolicy
from lambdas.domain.ports import ALARM, INSUFFICIENT_DATA, Alarm, AlarmPage, AlarmPort, Ports, StateChanges
from lambdas.domain.state import RolloutState
from lambdas.domain.validators import alarm_prefix

# DescribeAlarmHistory calls Start Step may make: one per alarm whose state changed since the previous step's gate
# passed and that is not failing now. More such alarms than this fail the step: albgate cannot tell whether one of
# them was in ALARM meanwhile (CloudWatch listed DescribeAlarmHistory at 3 calls/s per account; docs/facts.md,
# "CloudWatch alarms albgate watches").
MAX_HISTORY_CALLS = 10
# A reason lists at most this many alarms, each StateReason cut to REASON_CHARS: the gate's reason is carried in
# the state (docs/rollout.md, Limits: 256 KB per state).
MAX_LISTED = 3
REASON_CHARS = 120


@dataclass(frozen=True)
class Watch:
    """What a policy watches: exact alarm names, name prefixes, the states that fail a step, and (with
    ``start_despite_alarms``) when the rollout started: a failing state an alarm entered by then does not count."""

    names: tuple[str, ...]
    prefixes: tuple[str, ...]
    failing_states: tuple[str, ...]
    started_at: float | None = None

    @classmethod
    def of(cls, policy: RolloutPolicy, started_at: float) -> Watch | None:
        """None when the policy watches no alarm."""
        if not policy.alarms:
            return None
        prefixes = tuple(p for a in policy.alarms if (p := alarm_prefix(a)) is not None)
        names = tuple(a for a in policy.alarms if alarm_prefix(a) is None)
        states = (ALARM, INSUFFICIENT_DATA) if policy.insufficient_data_fails else (ALARM,)
        return cls(names, prefixes, states, started_at if policy.start_despite_alarms else None)

    def counts(self, alarm: Alarm) -> bool:
        """Whether the alarm, as CloudWatch shows it now, fails the rollout."""
        if alarm.state not in self.failing_states:
            return False
        return self.started_at is None or alarm.state_since > self.started_at


@dataclass(frozen=True)
class Query:
    """One DescribeAlarms call: exact ``names``, or a ``prefix``, optionally only alarms in ``state``."""

    names: tuple[str, ...] = ()
    prefix: str | None = None
    state: str | None = None


def queries(watch: Watch) -> list[Query]:
    """The calls of one look: one for every exact name together (the policy has at most 10, a call takes 100),
    one per prefix."""
    first = [Query(names=watch.names)] if watch.names else []
    return first + [Query(prefix=p) for p in watch.prefixes]


def overflow_queries(watch: Watch, prefix: str) -> list[Query]:
    """For a prefix that matched more alarms than one answer holds: one call per failing state, which finds the
    failing ones among them (there are few, or the rollout fails anyway)."""
    return [Query(prefix=prefix, state=s) for s in watch.failing_states]


@dataclass(frozen=True)
class AlarmLook:
    """What one look saw: every alarm once, by name; the prefixes that matched more than one answer holds
    (``crowded``); the failing states whose alarms under a prefix did not fit one answer either (``overflowing``,
    as "<prefix>* in <STATE>"); the calls it made."""

    alarms: tuple[Alarm, ...]
    crowded: tuple[str, ...] = ()
    overflowing: tuple[str, ...] = ()
    calls: int = 0


def _ask(port: AlarmPort, q: Query) -> AlarmPage:
    return port.describe_alarms(names=q.names, prefix=q.prefix, state=q.state)


def look(port: AlarmPort, watch: Watch) -> AlarmLook:
    """Make the calls of one look (``queries``, then ``overflow_queries`` for a crowded prefix) and merge them."""
    seen: dict[str, Alarm] = {}
    crowded: list[str] = []
    overflowing: list[str] = []
    calls = 0
    for q in queries(watch):
        page = _ask(port, q)
        calls += 1
        seen.update((a.name, a) for a in page.alarms)
        if q.prefix is None or not page.more:
            continue
        crowded.append(q.prefix)
        for extra in overflow_queries(watch, q.prefix):
            more = _ask(port, extra)
            calls += 1
            seen.update((a.name, a) for a in more.alarms)
            if more.more:
                overflowing.append(f"{q.prefix}* in {extra.state}")
    return AlarmLook(tuple(seen[n] for n in sorted(seen)), tuple(crowded), tuple(overflowing), calls)


def failing(seen: AlarmLook, watch: Watch) -> list[Alarm]:
    return [a for a in seen.alarms if watch.counts(a)]


def utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _listed(alarms: list[Alarm]) -> str:
    def one(a: Alarm) -> str:
        why = a.reason if len(a.reason) <= REASON_CHARS else a.reason[: REASON_CHARS - 3] + "..."
        return f"{a.name} in {a.state} since {utc(a.state_since)}" + (f" ({why})" if why else "")

    shown = "; ".join(one(a) for a in alarms[:MAX_LISTED])
    rest = len(alarms) - MAX_LISTED
    return shown + (f"; and {rest} more" if rest > 0 else "")


def failure_reason(seen: AlarmLook, watch: Watch, during: str) -> str | None:
    """Why this look fails the step (``during`` says when: "during step 2's gate"), or None."""
    bad = failing(seen, watch)
    if not bad and not seen.overflowing:
        return None
    parts = [_listed(bad)] if bad else []
    if seen.overflowing:
        parts.append(f"more than one answer of alarms {', '.join(seen.overflowing)}")
    return f"CloudWatch alarm(s) {during}: " + "; ".join(parts) + " (policy.alarms)"


# ---------------------------------------------------------------------------------------------------------
# Preflight
# ---------------------------------------------------------------------------------------------------------
def selector_problems(seen: AlarmLook, watch: Watch) -> list[str]:
    """Entries of ``policy.alarms`` that watch nothing (a typo, another Region, a composite alarm) or too much."""
    names = {a.name for a in seen.alarms}
    out = [f"no metric alarm named {n!r} in this account and Region (names are case-sensitive; composite alarms "
           "are not watched)" for n in watch.names if n not in names]
    out += [f"no metric alarm's name starts with {p!r} in this account and Region" for p in watch.prefixes
            if p not in seen.crowded and not any(n.startswith(p) for n in names)]
    out += [f"{p + '*'!r} matches more than 100 alarms; name a longer prefix" for p in seen.crowded]
    return out


def already_failing(seen: AlarmLook, watch: Watch) -> list[Alarm]:
    """The alarms in a failing state now, whenever they entered it."""
    return [a for a in seen.alarms if a.state in watch.failing_states]


def check_at_start(ports: Ports, policy: RolloutPolicy, now: float) -> list[str]:
    """Preflight's look. Raises InvalidInputError for entries that watch nothing, UnsafeConfigurationError for an
    alarm already failing (unless ``start_despite_alarms``); returns the notes for the state."""
    watch = Watch.of(policy, now)
    if watch is None:
        return []
    seen = look(port_of(ports), watch)
    problems = selector_problems(seen, watch)
    if problems:
        raise InvalidInputError("; ".join(f"policy.alarms: {p}" for p in problems))
    already = already_failing(seen, watch)
    if not already:
        return []
    if not policy.start_despite_alarms:
        raise UnsafeConfigurationError(
            f"CloudWatch alarm(s) already failing before the rollout starts: {_listed(already)}. Nothing was changed; "
            "start again once they are back to OK, or with policy.start_despite_alarms=true to roll anyway (a fix "
            "for what they report): each then counts again once it has left that state"
        )
    names, states = ", ".join(a.name for a in already), "/".join(sorted({a.state for a in already}))
    return [f"alarms: started despite {names} ({states}); each fails the rollout again once it has left that state "
            "and comes back"]


# ---------------------------------------------------------------------------------------------------------
# A step's gate and drain, and the time between two steps
# ---------------------------------------------------------------------------------------------------------
def port_of(ports: Ports) -> AlarmPort:
    if ports.alarms is None:
        raise InvalidInputError(
            "policy.alarms: this albgate reaches no CloudWatch (no alarm port is wired), so it cannot watch alarms; "
            "remove policy.alarms"
        )
    return ports.alarms


def during(ports: Ports, s: RolloutState, when: str) -> str | None:
    """Why a look of a rollout's gate or drain fails on the alarms (``when``: "during step 2's gate"), or None.
    A rollback, or a policy without alarms, makes no call."""
    watch = Watch.of(s.request.policy, s.started_at)
    if watch is None or s.mode != "rollout":
        return None
    return failure_reason(look(port_of(ports), watch), watch, when)


def history_candidates(seen: AlarmLook, watch: Watch, since: float) -> list[Alarm]:
    """The alarms not failing now whose state changed after ``since``: each may have been failing meanwhile."""
    return [a for a in seen.alarms if a.state_since > since and not watch.counts(a)]


def went_failing(changes: StateChanges, watch: Watch, since: float) -> str | None:
    """How one alarm's history after ``since`` fails the rollout: its latest change into a failing state, or an
    answer that left older changes out (albgate cannot tell what they were, so they count); None when neither."""
    hit = next((c for c in changes.changes if c.at > since and c.new in watch.failing_states), None)
    if hit is not None:
        return f"went from {hit.old or 'an unknown state'} to {hit.new} at {utc(hit.at)}"
    if changes.more:
        return f"changed state more than {len(changes.changes)} times, more than albgate reads"
    return None


def since_gate(ports: Ports, s: RolloutState, now: float) -> str | None:
    """Start Step's look, before it writes anything: why the time since the previous step's gate passed (before
    step 1: since Preflight) fails the rollout, or None. An alarm failing now fails it as in a gate; so does one
    whose history shows a change into a failing state meanwhile (the drain, the bake, an approval wait)."""
    watch = Watch.of(s.request.policy, s.started_at)
    if watch is None or s.mode != "rollout":
        return None
    port = port_of(ports)
    previous = s.steps[-1] if s.steps else None
    since = previous.gate_passed_at if previous and previous.gate_passed_at is not None else s.started_at
    when = (f"since step {previous.step} passed its gate ({utc(since)}: its drain, bake and any approval wait)"
            if previous else f"since Preflight ({utc(since)})")
    seen = look(port, watch)
    now_failing = failure_reason(seen, watch, when)
    if now_failing:
        return now_failing
    changed = history_candidates(seen, watch, since)
    if len(changed) > MAX_HISTORY_CALLS:
        return (f"CloudWatch alarm(s) {when}: {len(changed)} alarms changed state, more than the "
                f"{MAX_HISTORY_CALLS} whose history albgate reads, so it cannot tell whether one was in "
                f"{' or '.join(watch.failing_states)} (policy.alarms: watch fewer, or steadier, alarms)")
    hits = []
    for a in changed:
        hit = went_failing(port.state_changes(a.name, since, now), watch, since)
        if hit is not None:
            hits.append(f"{a.name} {hit}, {a.state} since {utc(a.state_since)}")
    if not hits:
        return None
    shown = "; ".join(hits[:MAX_LISTED]) + (f"; and {len(hits) - MAX_LISTED} more" if len(hits) > MAX_LISTED else "")
    return f"CloudWatch alarm(s) {when}: {shown} (policy.alarms)"
