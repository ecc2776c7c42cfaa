"""The credentials helm logs in to a private ECR registry with: ``ecr:GetAuthorizationToken``.

Job: for a registry host ``<account>.dkr.ecr.<region>.amazonaws.com``, ask ECR in that Region for an
authorization token and split it into the user name and password ``helm registry login`` takes. The token is
base64 of ``<user>:<password>`` (the user is ``AWS``), valid 12 hours, and good for every registry the caller
may pull from; ``registryIds`` is deprecated and not sent (docs/facts.md, "Private ECR mirror of the
controller").

Invariant: the password is never logged or printed (it carries the function's pull rights); AWS errors become
domain errors through the same mapping as the ELB adapter, raised ``from`` their cause.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.adapters.ecr import RegionalEcrClients
from lambdas.adapters.elbv2 import map_aws_error
from lambdas.domain.bootstrap import ecr_chart_mirror
from lambdas.domain.errors import AccessDeniedError, InvalidInputError


@dataclass(frozen=True)
class RegistryCredentials:
    """What ``helm registry login`` takes for one registry host; valid until ``expires_at`` (epoch seconds)."""

    host: str
    username: str
    password: str = field(repr=False)
    expires_at: float


class EcrRegistryAuth(RegionalEcrClients):
    """``credentials(host)``: a fresh ECR authorization token for the registry host, from its own Region."""

    def credentials(self, host: str) -> RegistryCredentials:
        mirror = ecr_chart_mirror(f"oci://{host}")
        if mirror is None:
            raise InvalidInputError(f"registry: {host!r} is not a private ECR registry; albgate logs in to ECR only")
        action = f"ecr:GetAuthorizationToken for {host}"
        try:
            answer = self._client(mirror.region).get_authorization_token()
        except (ClientError, BotoCoreError) as e:
            raise map_aws_error(e, action) from e
        data = (answer.get("authorizationData") or [{}])[0]
        try:
            decoded = base64.b64decode(data.get("authorizationToken") or "", validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as e:
            raise AccessDeniedError(f"{action}: ECR answered a token that is not base64 of user:password") from e
        username, sep, password = decoded.partition(":")
        if not sep or not username or not password:
            raise AccessDeniedError(f"{action}: ECR answered no usable token; check the function's ECR permissions")
        expires = data.get("expiresAt")
        expires_at = expires.timestamp() if hasattr(expires, "timestamp") else float(expires or 0)
        return RegistryCredentials(host, username, password, expires_at)
