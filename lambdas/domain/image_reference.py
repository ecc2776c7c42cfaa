"""Container image references read by the grammar of the distribution ``reference`` package, as a runtime reads them.

Job: split ``[domain/]path[:tag][@digest]`` into its parts, or refuse it with the reason. The grammar, the
domain rule, the digest rule and the length limit are the ones Docker, containerd and the kubelet apply
(docs/facts.md, "Image references"):

- path components are lower-case ``[a-z0-9]+`` joined by one ``.``, one or two ``_`` or any number of ``-``,
  and separated by ``/``;
- the first component is the registry (the domain) only when a ``/`` follows it and it contains ``.`` or ``:``,
  is ``localhost``, or has an upper-case letter (Docker's normalisation); otherwise it is part of the path, so
  the ``:7`` of ``redis:7`` is a tag, not a port;
- a tag is ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`` (``IMAGE_TAG`` of lambdas/domain/validators.py);
- a digest is ``algorithm:hex``; only the algorithms the runtimes register are accepted (sha256, sha384,
  sha512), each with exactly its length of lower-case hex;
- the path, as the runtime normalises it (``redis`` is ``library/redis`` on Docker Hub), is at most 255
  characters.

Invariant: pure, no I/O. ``ImageReference.parse(text)`` either returns a reference whose ``str()`` is ``text``
or raises ``ImageReferenceError`` (a ValueError) whose message says what is wrong with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from lambdas.domain.validators import IMAGE_TAG_PATTERN

# --- the grammar (docs/facts.md, "Image references") ---------------------------------------------------------
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_PATH = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[[a-fA-F0-9:]+\]"
_DOMAIN = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_TAG = IMAGE_TAG_PATTERN  # the grammar's [\w][\w.-]{0,127}, Go's \w (ASCII) written out
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_REFERENCE = re.compile(rf"(?P<name>(?:{_DOMAIN}/)?{_PATH})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?")
_DOMAIN_RE = re.compile(_DOMAIN)
_PATH_RE = re.compile(_PATH)
# A bare 64-hex string is an image ID, never a name (ParseNormalizedNamed refuses it).
_IDENTIFIER = re.compile(r"[a-f0-9]{64}")

PATH_LENGTH_MAX = 255  # RepositoryNameTotalLengthMax, counted on the normalised path
DOCKER_HUB_DOMAIN = "docker.io"
_OFFICIAL_PREFIX = "library/"
LOCALHOST = "localhost"
# The registered digest algorithms and their hex length (go-digest: sha256, sha384, sha512; lower-case hex).
DIGEST_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}


class ImageReferenceError(ValueError):
    """Text that is not an image reference; the message says why."""


@dataclass(frozen=True)
class ImageReference:
    """An image reference as written: ``domain`` is None when the image lives on the default registry."""

    domain: str | None
    path: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> "ImageReference":
        """The reference ``text`` names, or ImageReferenceError saying what is wrong with it."""
        if not isinstance(text, str) or not text:
            raise ImageReferenceError("an image reference needs at least a repository name")
        if _IDENTIFIER.fullmatch(text):
            raise ImageReferenceError("a 64-character hexadecimal string is an image ID, not a repository name")
        m = _REFERENCE.fullmatch(text)
        if m is None:
            raise ImageReferenceError(_format_problem(text))
        name, tag, digest = m.group("name"), m.group("tag"), m.group("digest")
        domain, path = split_domain(name)
        normalised = normalised_path(domain, path)
        if len(normalised) > PATH_LENGTH_MAX:
            raise ImageReferenceError(
                f"the repository path {'(as the runtime normalises it) ' if normalised != path else ''}is "
                f"{len(normalised)} characters; at most {PATH_LENGTH_MAX} are allowed"
            )
        if digest is not None:
            _check_digest(digest)
        return cls(domain=domain, path=path, tag=tag, digest=digest)

    @property
    def repository(self) -> str:
        """The name without tag and digest, as written: ``domain/path`` or ``path``."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def registry(self) -> str:
        """The registry the runtime pulls from: the domain, or Docker Hub when there is none."""
        return self.domain or DOCKER_HUB_DOMAIN

    @property
    def digest_algorithm(self) -> str | None:
        return self.digest.split(":", 1)[0] if self.digest else None

    @property
    def digest_hex(self) -> str | None:
        return self.digest.split(":", 1)[1] if self.digest else None

    @property
    def pinned(self) -> bool:
        """True when the reference names exact bytes (a digest), whatever tag it also carries."""
        return self.digest is not None

    def with_digest(self, digest: str) -> "ImageReference":
        """The same repository pinned to ``digest`` (the tag is dropped: with a digest it selects nothing)."""
        _check_digest(digest)
        return replace(self, tag=None, digest=digest)

    def __str__(self) -> str:
        return self.repository + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def split_domain(name: str) -> tuple[str | None, str]:
    """(domain or None, path) of a repository name, by Docker's rule: the first component is a domain only when
    a path follows it and it has a '.' or ':', is 'localhost', or is not all lower-case. A component picked by
    that rule but outside the domain grammar (``foo_bar.com``) stays part of the path, as the parser keeps it."""
    first, slash, rest = name.partition("/")
    if slash and (first == LOCALHOST or "." in first or ":" in first or first.lower() != first):
        if _DOMAIN_RE.fullmatch(first) and _PATH_RE.fullmatch(rest):
            return first, rest
    return None, name


def normalised_path(domain: str | None, path: str) -> str:
    """The path the runtime pulls: Docker Hub's one-component names live under ``library/``."""
    if domain in (None, DOCKER_HUB_DOMAIN, "index.docker.io") and "/" not in path:
        return _OFFICIAL_PREFIX + path
    return path


def _check_digest(digest: str) -> None:
    algorithm, _, hex_part = digest.partition(":")
    length = DIGEST_HEX_LENGTH.get(algorithm)
    if length is None:
        raise ImageReferenceError(
            f"digest algorithm {algorithm!r} is not one a container runtime accepts; use "
            f"{', '.join(DIGEST_HEX_LENGTH)}"
        )
    if len(hex_part) != length or not re.fullmatch(r"[a-f0-9]+", hex_part):
        raise ImageReferenceError(
            f"a {algorithm} digest is exactly {length} lower-case hex characters; this one has {len(hex_part)}"
            + ("" if hex_part == hex_part.lower() else " and upper-case letters")
        )


def _format_problem(text: str) -> str:
    """Why ``text`` does not match the grammar, as precisely as a second look can tell."""
    if _REFERENCE.fullmatch(text.lower()):
        return "the repository name must be lower-case (a tag may have upper-case letters)"
    if text.startswith(("@", ":", "/")):
        return "it starts with a separator; a reference starts with the repository name"
    if "://" in text:
        return "it looks like a URL; write the registry host without a scheme, e.g. 'registry.example.com/app:v1'"
    return (
        "it does not fit the grammar [registry/]path[:tag][@algorithm:hex]: path components are lower-case "
        "letters and digits joined by '.', '_', '__' or '-', a tag is at most 128 letters, digits, '_', '.' "
        "or '-' and does not start with '.' or '-'"
    )
