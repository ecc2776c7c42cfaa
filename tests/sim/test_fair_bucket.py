"""The account's Describe* bucket serves every call in arrival order, the scenario's other callers included
(albgate/sim/alb.py, TokenBucket; docs/facts.md, "ELB API throttling"): each caller gets tokens in proportion
to how often it asks, nobody is throttled below the refill, the lazy service of the background equals serving
its calls one by one, and a seed always gives the same arrivals."""

from __future__ import annotations

import math
import random

import pytest

from albgate.sim.alb import BACKGROUND, TokenBucket
from albgate.sim.engine import EPOCH
from lambdas.domain.errors import ThrottledError
from tests.sim.conftest import scenario, started

REFILL, CAPACITY = 10.0, 40  # the account's defaults (docs/facts.md, ELB API throttling)


def _ask(bucket: TokenBucket, times: list[float]) -> int:
    """How many of one caller's calls, at these times, the bucket served."""
    return sum(bucket.take(t) for t in times)


def _poisson(rate: float, end: float, seed: str) -> list[float]:
    draws, t, out = random.Random(seed), 0.0, []
    while (t := t + draws.expovariate(rate)) < end:
        out.append(t)
    return out


def _tolerance(share: float, calls: int) -> float:
    """Four standard deviations of the served fraction of ``calls`` independent calls each served with
    probability ``share``, plus what the full bucket at the start can add (at most CAPACITY calls)."""
    return 4 * math.sqrt(share * (1 - share) / calls) + CAPACITY / calls


# (foreground calls/s, background calls/s): the background from just above the refill to ten times it
SHARES = [(1.0, 12.0), (5.0, 12.0), (1.0, 30.0), (0.5, 100.0)]
HOURS = 2 * 3600.0


@pytest.mark.parametrize("f,r", SHARES, ids=[f"{f:g}-among-{r:g}" for f, r in SHARES])
def test_a_caller_among_others_above_the_refill_gets_its_share_of_the_tokens(f, r):
    # Given other callers asking r calls/s, more than the refill, for two hours
    bucket = TokenBucket(CAPACITY, REFILL, 0.0, [(0.0, HOURS, r)], random.Random(f"{f}:{r}"))
    # When one more caller asks f calls/s at random instants
    times = _poisson(f, HOURS, f"fg:{f}:{r}")
    served = _ask(bucket, times) / len(times)
    # Then it is served about refill / (f + r) of its calls: every call finds a token with the same chance
    # (random arrivals see the bucket as it is on average), and together they are served the refill
    share = REFILL / (f + r)
    assert served == pytest.approx(share, abs=_tolerance(share, len(times)))
    # and the background was served the rest of the refill, not all of it
    bg_share = bucket.background_calls / (bucket.background_calls + bucket.background_throttled)
    assert bg_share == pytest.approx(share, abs=_tolerance(share, bucket.background_calls))


def test_a_caller_on_a_fixed_grid_gets_its_share_whatever_the_seed():
    # Given a caller asking once a second on whole seconds, a grid of the refill period (0.1 s at 10/s), as
    # the simulated albgate's calls fall, among others asking 12 calls/s
    times = [float(s) for s in range(1, 3601)]
    shares = []
    for seed in range(6):
        bucket = TokenBucket(CAPACITY, REFILL, 0.0, [(0.0, 3600.0, 12.0)], random.Random(seed))
        shares.append(_ask(bucket, times) / len(times))
    # Then every seed serves it about its share: without the calls' latency each would see the same fraction
    # of a token at every call and be served nearly always or nearly never (measured: 0.65 to 1.0 across
    # seeds at these rates; 0.0 at 100 calls/s). A periodic caller does a little better than a random one
    # (it never bunches its own calls; measured about 5 % here), hence the bounds
    share = REFILL / 13.0
    assert all(0.9 * share <= s <= 1.1 * share for s in shares), shares
    assert max(shares) - min(shares) < 0.05, shares


def test_nobody_is_throttled_while_everybody_together_asks_less_than_the_refill():
    # Given others asking 5 calls/s and one caller 2 calls/s, 70 % of the refill, for two hours (a Poisson
    # background empties the 40 tokens with a probability of about exp(-0.68 * 39) ~ 1e-12 at this load)
    bucket = TokenBucket(CAPACITY, REFILL, 0.0, [(0.0, HOURS, 5.0)], random.Random(3))
    times = _poisson(2.0, HOURS, "fg-below")
    # Then every call is served, the background's too
    assert _ask(bucket, times) == len(times)
    bucket.advance(HOURS)
    assert bucket.background_throttled == 0
    # and the background did ask at its rate (Poisson: within four standard deviations)
    assert bucket.background_calls == pytest.approx(5.0 * HOURS, abs=4 * math.sqrt(5.0 * HOURS))


def test_without_a_background_the_bucket_is_the_plain_one():
    # Given no other callers / When 41 calls come at once, then one a refill period later
    bucket = TokenBucket(CAPACITY, REFILL, EPOCH, [])
    served = [bucket.take(EPOCH) for _ in range(41)]
    # Then the bucket's 40 tokens serve 40 of them, the 41st is throttled, and one token later one more goes:
    # no latency is added to a call and nothing else spends
    assert served == [True] * 40 + [False]
    assert bucket.take(EPOCH + 1 / REFILL) and not bucket.take(EPOCH + 1 / REFILL)
    assert bucket.tokens == 0.0 and bucket.background_calls == bucket.background_throttled == 0


# --- the lazy service equals serving the background call by call -------------------------------------------
def _reference(capacity: float, refill: float, t0: float, load: list[tuple[float, float, float]], seed: int,
               asks: list[tuple[float, int]], horizon: float) -> tuple[list[bool], int, int, float]:
    """Every background call listed, all calls served one by one in time order (the draws as TokenBucket
    documents them). Returns each ask's outcome, the background's served and throttled calls, the tokens."""
    draws = random.Random(seed)
    arrivals: list[tuple[float, int]] = []
    jittered = False
    for i, (start, end, rate) in enumerate(load):
        stream = random.Random(draws.getrandbits(64))
        t = max(start, t0) + stream.expovariate(rate)
        jittered |= t < end
        while t < end and t <= horizon:
            arrivals.append((t, i))
            t += stream.expovariate(rate)
    arrivals.sort()
    jitter = random.Random(draws.getrandbits(64))
    tokens, last, k = float(capacity), t0, 0
    served = refused = 0
    outcomes = []

    def refill_to(t: float) -> None:
        nonlocal tokens, last
        if t > last:
            tokens, last = min(capacity, tokens + refill * (t - last)), t

    def background_until(t: float) -> None:
        nonlocal k, tokens, served, refused
        while k < len(arrivals) and arrivals[k][0] <= t:
            refill_to(arrivals[k][0])
            if tokens >= 1 - 1e-6:
                tokens, served = max(0.0, tokens - 1), served + 1
            else:
                refused += 1
            k += 1

    for now, n in asks:
        if jittered:
            now = max(last, now + jitter.random() / refill)
        background_until(now)
        refill_to(now)
        ok = tokens >= n - 1e-6
        if ok:
            tokens = max(0.0, tokens - n)
        outcomes.append(ok)
    background_until(horizon)
    return outcomes, served, refused, tokens


@pytest.mark.parametrize("case", range(40))
def test_the_lazy_service_equals_serving_every_background_call_in_turn(case):
    # Given random overlapping windows (some begun before the bucket, some endless, below and above the
    # refill), a random bucket, and random asks of 1 or 2 tokens, several at the same instant
    g = random.Random(case)
    t0 = EPOCH if case % 2 else 0.0
    capacity, refill = g.randint(1, 50), g.choice([0.5, 3.0, 10.0, 17.5])
    load = []
    for _ in range(g.randint(1, 4)):
        start = t0 + g.uniform(-50, 300)
        end = math.inf if g.random() < 0.25 else start + g.uniform(1, 400)
        load.append((start, end, g.choice([0.3, 2.0, 9.0, 12.0, 40.0])))
    asks, t = [], t0
    for _ in range(g.randint(1, 300)):
        t += 0.0 if g.random() < 0.15 else g.expovariate(0.5)
        asks.append((t, g.choice([1, 1, 1, 2])))
    horizon = t + 30.0
    # When the bucket serves them, read now and then in between (as Alb.throttled reads it)
    bucket = TokenBucket(capacity, refill, t0, load, random.Random(case))
    outcomes = []
    for now, n in asks:
        if g.random() < 0.3:
            bucket.advance(now - g.uniform(0, 5))
        outcomes.append(bucket.take(now, n))
    bucket.advance(horizon)
    # Then each call, and the background's counts, are what serving every call in turn gives
    ref_outcomes, ref_served, ref_refused, ref_tokens = _reference(capacity, refill, t0, load, case, asks, horizon)
    assert outcomes == ref_outcomes
    assert (bucket.background_calls, bucket.background_throttled) == (ref_served, ref_refused)
    assert bucket.tokens == ref_tokens


def test_an_hour_of_a_busy_background_is_served_in_well_under_a_second():
    # Given 10 calls/s for an hour (about 36,000 background calls) / When one call comes at the end
    import time

    bucket = TokenBucket(CAPACITY, REFILL, 0.0, [(0.0, 3600.0, 10.0)], random.Random(0))
    wall = time.perf_counter()
    bucket.take(3600.0)
    # Then they were all served in one pass, each in a few steps
    assert bucket.background_calls + bucket.background_throttled == pytest.approx(36_000, abs=4 * 190)
    assert time.perf_counter() - wall < 1.0


# --- in the simulation ------------------------------------------------------------------------------------
def _probe(seed: int) -> tuple[list[bool], dict[str, int]]:
    """One DescribeTargetHealth a second for 200 s while other callers ask 15 calls/s."""
    sim = started(scenario(faults={"describe_load": [{"at_seconds": 0, "duration_seconds": 600,
                                                      "rate_per_second": 15}]}), seed)
    tg = next(iter(sim.alb.tgs.values()))
    seen = []
    for _ in range(200):
        sim.advance(1.0)
        try:
            sim.alb.describe_target_health(tg.arn, caller="probe")
            seen.append(True)
        except ThrottledError:
            seen.append(False)
    return seen, dict(sim.alb.throttled)


def test_the_simulation_draws_the_background_from_its_seed():
    # Given the same scenario and seed twice, and another seed
    first, again, other = _probe(1), _probe(1), _probe(2)
    # Then the same seed gives the same calls served and throttled, another seed others
    assert first == again
    assert first != other
    # And the background's throttled calls are counted under their own name, the probe's under its own
    seen, throttled = first
    assert throttled["probe"] == seen.count(False) > 0 and throttled[BACKGROUND] > 0
    # and the probe got about its share (10 / 16 of its calls), not nothing as when others came first
    assert 0.45 <= seen.count(True) / len(seen) <= 0.8
