"""ECR push -> release, the use case: a push to a release's repository starts that release, once per digest, one
release execution of a name at a time, newest push next.

Job: for a successful push (``EcrPush``), find the releases whose ``ecr_repository`` is the pushed repository and
whose ``tag_pattern`` matches the tag; for each, claim the release's lease (key ``release/<name>``, in the release
stack's own lease table) and start the release execution for the image by digest, or, while another execution of
that release runs, wait as the newest pending push: exactly the ordering rules a Deployment's pushes follow
(lambdas/domain/trigger_use_case.py ``claim``; two pushes of one second ordered by ECR's ``imagePushedAt``).
When a release execution ends (``release_ended``), its lease is released or handed to the pending push, which
starts then.

Why a lease per release and not only per Deployment: every child of a release takes its Deployment's lease, so two
releases of one app running at once would refuse each other's children in the middle of a wave; serializing the
releases keeps every wave whole, and the newest image is the one that goes out next.

Invariant: the execution name is a function of (release, digest), so a replayed push starts nothing new
(StartExecution of an existing name starts nothing: docs/facts.md, "Releases across accounts and Regions"), and a
push of an image a release already rolled is let go at once. The release state machine announces its own start;
this use case publishes only ``Release Queued`` and ``Release Order Unknown``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from typing import Any

from lambdas.domain.contract import RELEASE_ORDER_UNKNOWN, RELEASE_QUEUED
from lambdas.domain.release import MAX_EXECUTION_NAME, ReleaseSpec
from lambdas.domain.trigger import EcrPush, ExecutionEnded, Ignored, Pending, image_uri
from lambdas.domain.trigger_ports import RolloutMachine
from lambdas.domain.trigger_use_case import Announcements, TriggerPorts, claim, finish_holder

RELEASES = Announcements(started=None, queued=RELEASE_QUEUED, unordered=RELEASE_ORDER_UNKNOWN, what="release")
LOCK_PREFIX = "release/"  # a Deployment's key has three parts (cluster/namespace/deployment), a release's two
_DIGEST_CHARS = 12
_HASH_CHARS = 16


def release_lock_key(release: str) -> str:
    return LOCK_PREFIX + release


def release_execution_name(release: str, digest: str) -> str:
    """``<release>-<12 digest hex>-<16 hash hex>``: the same for every push of one image, at most 80 characters."""
    h = hashlib.sha256(f"{release}/{digest}".encode()).hexdigest()[:_HASH_CHARS]
    hex_digest = digest.split(":", 1)[-1][:_DIGEST_CHARS]
    room = MAX_EXECUTION_NAME - len(hex_digest) - len(h) - 2
    return f"{release[:room]}-{hex_digest}-{h}"


def matching_releases(specs: dict[str, ReleaseSpec], repository: str, tag: str) -> list[ReleaseSpec]:
    """Releases whose repository is the push's and whose tag_pattern matches its tag, by name."""
    return [s for _, s in sorted(specs.items())
            if s.ecr_repository == repository and fnmatch.fnmatchcase(tag, s.tag_pattern)]


def roll_release_push(push: EcrPush, specs: dict[str, ReleaseSpec], machine: RolloutMachine,
                      ports: TriggerPorts) -> dict[str, Any]:
    """What a push does to every release it matches; ``Ignored`` when it matches none (with the reason)."""
    found = matching_releases(specs, push.repository, push.tag)
    if not found:
        known = sorted({s.ecr_repository for s in specs.values() if s.ecr_repository})
        if push.repository not in known:
            raise Ignored(f"repository {push.repository!r} starts no release (known: {', '.join(known)})")
        raise Ignored(f"tag {push.tag!r} of {push.repository} matches no release's tag_pattern")
    results = []
    for spec in found:
        image = image_uri(push.account, push.region, push.repository, push.digest)
        name = release_execution_name(spec.name, push.digest)
        mine = Pending(name, json.dumps({"release": spec.name, "image": image}, sort_keys=True), push.time, image)
        results.append(claim(release_lock_key(spec.name), mine, push, machine, ports, RELEASES))
    return {"outcome": "handled", "image": f"{push.repository}:{push.tag}@{push.digest}", "results": results}


def release_ended(ended: ExecutionEnded, machine: RolloutMachine, ports: TriggerPorts) -> dict[str, Any]:
    """A release execution ended: let its release's lease go, or start the push waiting for it."""
    name = (ended.request or {}).get("release")
    if not isinstance(name, str) or not name:
        raise Ignored(f"execution {ended.name} has no release input: it held no release lease")
    return finish_holder(release_lock_key(name), ended.name, machine, ports, announce=RELEASES)
