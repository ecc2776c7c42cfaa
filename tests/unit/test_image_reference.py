"""Image references (lambdas/domain/image_reference.py, models.parse_image, rollout.pin_image).

The valid and invalid cases come from the distribution reference package's own tables (reference_test.go
TestReferenceParse, normalize_test.go TestValidateReferenceName and TestValidateRemoteName, v0.6.0; docs/facts.md,
"Image references"). Where that package's bare ``Parse`` and Docker's normalisation disagree about the domain
(``foo/foo_bar.com:8080``: Parse says domain ``foo``), the expected value here is the normalisation's, the one
a runtime pulls by; those rows say so in their id.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from albgate.sim.scenario import ScenarioError, parse_scenario
from lambdas.domain.documents import quote
from lambdas.domain.image_reference import PATH_LENGTH_MAX, ImageReference, ImageReferenceError
from lambdas.domain.models import parse_image
from lambdas.domain.ports import Ports
from lambdas.domain.rollout.preflight import pin_image

F64 = "f" * 64
SHA256 = "sha256:" + F64
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"

# (input, domain, path, tag, digest)
VALID = [
    # reference_test.go, TestReferenceParse
    pytest.param("test_com", None, "test_com", None, None, id="upstream-underscore-name"),
    pytest.param("test.com:tag", None, "test.com", "tag", None, id="upstream-dotted-name-with-tag"),
    pytest.param("test.com:5000", None, "test.com", "5000", None, id="upstream-numeric-tag-not-port"),
    pytest.param("test.com/repo:tag", "test.com", "repo", "tag", None, id="upstream-domain-repo-tag"),
    pytest.param("test:5000/repo", "test:5000", "repo", None, None, id="upstream-domain-with-port"),
    pytest.param("test:5000/repo:tag", "test:5000", "repo", "tag", None, id="upstream-port-and-tag"),
    pytest.param(f"test:5000/repo@{SHA256}", "test:5000", "repo", None, SHA256, id="upstream-port-and-digest"),
    pytest.param(f"test:5000/repo:tag@{SHA256}", "test:5000", "repo", "tag", SHA256, id="upstream-tag-and-digest"),
    pytest.param("lowercase:Uppercase", None, "lowercase", "Uppercase", None, id="upstream-upper-case-tag"),
    pytest.param("a/" * 127 + "a:tag-puts-this-over-max", None, "a/" * 127 + "a", "tag-puts-this-over-max", None,
                 id="upstream-255-character-path-normalised-no-domain"),
    pytest.param("example.com/" + "a" * 255 + ":tag", "example.com", "a" * 255, "tag", None,
                 id="upstream-domain-not-counted-in-length"),
    pytest.param("sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com", "bar/baz/quux", None, None, id="upstream-subdomain"),
    pytest.param("sub-dom1.foo.com/bar/baz/quux:some-long-tag", "sub-dom1.foo.com", "bar/baz/quux", "some-long-tag",
                 None, id="upstream-subdomain-tag"),
    pytest.param("b.gcr.io/test.example.com/my-app:test.example.com", "b.gcr.io", "test.example.com/my-app",
                 "test.example.com", None, id="upstream-dotted-path-and-tag"),
    pytest.param("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com", "myimage", "xn--n3h.com", None, id="upstream-punycode"),
    pytest.param("xn--7o8h.com/myimage:xn--7o8h.com@sha512:" + "f" * 128, "xn--7o8h.com", "myimage", "xn--7o8h.com",
                 "sha512:" + "f" * 128, id="upstream-sha512-digest"),
    pytest.param("foo_bar.com:8080", None, "foo_bar.com", "8080", None, id="upstream-underscore-dotted-name-tag"),
    pytest.param("foo/foo_bar.com:8080", None, "foo/foo_bar.com", "8080", None, id="upstream-first-component-not-domain-normalised"),
    pytest.param("192.168.1.1", None, "192.168.1.1", None, None, id="upstream-ipv4-alone-is-a-name"),
    pytest.param("192.168.1.1:tag", None, "192.168.1.1", "tag", None, id="upstream-ipv4-name-tag"),
    pytest.param("192.168.1.1:5000", None, "192.168.1.1", "5000", None, id="upstream-ipv4-name-numeric-tag"),
    pytest.param("192.168.1.1/repo", "192.168.1.1", "repo", None, None, id="upstream-ipv4-domain"),
    pytest.param("192.168.1.1:5000/repo", "192.168.1.1:5000", "repo", None, None, id="upstream-ipv4-domain-port"),
    pytest.param("192.168.1.1:5000/repo:5050", "192.168.1.1:5000", "repo", "5050", None, id="upstream-ipv4-port-tag"),
    pytest.param("[2001:db8::1]/repo", "[2001:db8::1]", "repo", None, None, id="upstream-ipv6-domain"),
    pytest.param("[2001:db8:1:2:3:4:5:6]/repo:tag", "[2001:db8:1:2:3:4:5:6]", "repo", "tag", None, id="upstream-ipv6-full"),
    pytest.param("[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "repo", None, None, id="upstream-ipv6-port"),
    pytest.param("[2001:db8::1]:5000/repo:tag", "[2001:db8::1]:5000", "repo", "tag", None, id="upstream-ipv6-port-tag"),
    pytest.param(f"[2001:db8::1]:5000/repo@{SHA256}", "[2001:db8::1]:5000", "repo", None, SHA256, id="upstream-ipv6-digest"),
    pytest.param("[2001:db8::]:5000/repo", "[2001:db8::]:5000", "repo", None, None, id="upstream-ipv6-trailing-colons"),
    pytest.param("[::1]:5000/repo", "[::1]:5000", "repo", None, None, id="upstream-ipv6-loopback"),
    # normalize_test.go, TestValidateReferenceName / TestValidateRemoteName
    pytest.param("docker/docker", None, "docker/docker", None, None, id="upstream-hub-namespace"),
    pytest.param("localhost/library/debian", "localhost", "library/debian", None, None, id="upstream-localhost-domain"),
    pytest.param("LOCALDOMAIN/debian", "LOCALDOMAIN", "debian", None, None, id="upstream-upper-case-first-is-domain"),
    pytest.param("index.docker.io/debian", "index.docker.io", "debian", None, None, id="upstream-legacy-hub-domain"),
    pytest.param("127.0.0.1:5000/library/debian", "127.0.0.1:5000", "library/debian", None, None, id="upstream-ip-port-domain"),
    pytest.param("192.168.0.1:80", None, "192.168.0.1", "80", None, id="upstream-ip-like-name-tag"),
    pytest.param("[fc00::1]:5000/docker/docker", "[fc00::1]:5000", "docker/docker", None, None, id="upstream-ipv6-nested"),
    pytest.param("thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", None,
                 "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", None, None,
                 id="upstream-64-characters-not-hex"),
    pytest.param("docker.io/" + "1a3f5e7d9c1b3a5f" * 4, "docker.io", "1a3f5e7d9c1b3a5f" * 4, None, None,
                 id="upstream-64-hex-with-domain"),
    pytest.param("docker---rules/docker", None, "docker---rules/docker", None, None, id="upstream-repeated-dashes"),
    pytest.param("dock__er/docker", None, "dock__er/docker", None, None, id="upstream-double-underscore"),
    pytest.param("jess/t", None, "jess/t", None, None, id="upstream-single-character-name"),
    # albgate's own: the names that were refused, and the registries it pins from
    pytest.param("redis:7", None, "redis", "7", None, id="redis-7-is-a-tag"),
    pytest.param("node:20", None, "node", "20", None, id="node-20-is-a-tag"),
    pytest.param("nginx:1", None, "nginx", "1", None, id="nginx-1-is-a-tag"),
    pytest.param("localhost:5000/app:v1", "localhost:5000", "app", "v1", None, id="localhost-port-is-a-port"),
    pytest.param("localhost/app:v1", "localhost", "app", "v1", None, id="localhost-is-a-domain"),
    pytest.param(f"{ECR}/team/app:v2", ECR, "team/app", "v2", None, id="ecr-nested-tag"),
    pytest.param(f"{ECR}/app@{SHA256}", ECR, "app", None, SHA256, id="ecr-digest"),
    pytest.param("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app:v1", "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                 "app", "v1", None, id="ecr-china"),
    pytest.param("public.ecr.aws/nginx/nginx:1.27", "public.ecr.aws", "nginx/nginx", "1.27", None, id="ecr-public"),
    pytest.param("app@sha384:" + "a" * 96, None, "app", None, "sha384:" + "a" * 96, id="sha384-digest"),
]


@pytest.mark.parametrize(("text", "domain", "path", "tag", "digest"), VALID)
def test_valid_references_split_into_their_parts(text, domain, path, tag, digest) -> None:
    # Given a reference the grammar accepts
    # When it is parsed
    ref = ImageReference.parse(text)
    # Then each part is the expected one, and the reference prints back as written
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    assert str(ref) == text


# (input, a phrase of the reason)
INVALID = [
    pytest.param("", "at least a repository name", id="upstream-empty"),
    pytest.param(":justtag", "starts with a separator", id="upstream-tag-only"),
    pytest.param(f"@{SHA256}", "starts with a separator", id="upstream-digest-only"),
    pytest.param("repo@sha256:" + "f" * 34, "exactly 64", id="upstream-short-digest"),
    pytest.param(f"validname@invaliddigest:{F64}", "not one a container runtime accepts", id="upstream-unregistered-algorithm"),
    pytest.param("Uppercase:tag", "lower-case", id="upstream-upper-case-name"),
    pytest.param("test:5000/Uppercase/lowercase:tag", "lower-case", id="upstream-upper-case-path"),
    pytest.param("domain/" + "a" * 256 + ":tag", "at most 255", id="upstream-path-too-long"),
    pytest.param("aa/asdf$$^/aa", "does not fit the grammar", id="upstream-punctuation"),
    pytest.param("[2001:db8::1]", "does not fit the grammar", id="upstream-ipv6-alone"),
    pytest.param("[2001:db8::1]:5000", "does not fit the grammar", id="upstream-ipv6-port-alone"),
    pytest.param("[2001:db8::1]:tag", "does not fit the grammar", id="upstream-ipv6-tag"),
    pytest.param("[fe80::1%eth0]:5000/repo", "does not fit the grammar", id="upstream-ipv6-zone"),
    pytest.param("[fe80::1%@invalidzone]:5000/repo", "does not fit the grammar", id="upstream-ipv6-bad-zone"),
    pytest.param("https://github.com/docker/docker", "looks like a URL", id="upstream-url"),
    pytest.param("docker/Docker", "lower-case", id="upstream-upper-case-repository"),
    pytest.param("-docker", "does not fit the grammar", id="upstream-leading-dash"),
    pytest.param("-docker.io/docker/docker", "does not fit the grammar", id="upstream-domain-leading-dash"),
    pytest.param("docker///docker", "does not fit the grammar", id="upstream-empty-components"),
    pytest.param("docker.io/docker/Docker", "lower-case", id="upstream-upper-case-after-domain"),
    pytest.param("[fc00::1]:5000", "does not fit the grammar", id="upstream-ipv6-no-path"),
    pytest.param("fc00::1:5000/debian", "does not fit the grammar", id="upstream-ipv6-without-brackets"),
    pytest.param("[2001:db8:3:4::192.0.2.33]:5000/debian", "does not fit the grammar", id="upstream-ipv4-mapped-ipv6"),
    pytest.param("1a3f5e7d9c1b3a5f" * 4, "image ID", id="upstream-64-hex-alone"),
    pytest.param("docker-/docker", "does not fit the grammar", id="upstream-trailing-dash"),
    pytest.param("____/____", "does not fit the grammar", id="upstream-underscores-only"),
    pytest.param("dock..er/docker", "does not fit the grammar", id="upstream-double-period"),
    pytest.param("dock_.er/docker", "does not fit the grammar", id="upstream-underscore-period"),
    pytest.param("docker/", "does not fit the grammar", id="upstream-no-repository"),
    pytest.param("_".join(["this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255"] * 4) + "/docker", "at most 255",
                 id="upstream-namespace-too-long"),
    # albgate's own
    pytest.param("App:v1", "lower-case", id="upper-case-single-name"),
    pytest.param("a" * 250 + ":v1", "at most 255", id="hub-name-too-long-once-under-library"),
    pytest.param("app:-v1", "does not fit the grammar", id="tag-starting-with-dash"),
    pytest.param("app:" + "v" * 129, "does not fit the grammar", id="tag-of-129"),
    pytest.param("app:vé", "does not fit the grammar", id="tag-non-ascii-letter"),
    pytest.param("app@sha256:" + "F" * 64, "upper-case letters", id="digest-upper-case-hex"),
    pytest.param("app@sha256:" + "a" * 128, "exactly 64", id="sha256-with-sha512-length"),
    pytest.param("nginx:v1; rm -rf /", "does not fit the grammar", id="shell-text"),
]


@pytest.mark.parametrize(("text", "reason"), INVALID)
def test_invalid_references_are_refused_with_the_reason(text, reason) -> None:
    # Given text the grammar refuses
    # When it is parsed
    with pytest.raises(ImageReferenceError) as err:
        ImageReference.parse(text)
    # Then the error says why
    assert reason in str(err.value)


PARSE_IMAGE = [
    pytest.param("redis:7", ("redis", "7", None), id="redis-7"),
    pytest.param("node:20", ("node", "20", None), id="node-20"),
    pytest.param("nginx:1", ("nginx", "1", None), id="nginx-1"),
    pytest.param("localhost:5000/app:v1", ("localhost:5000/app", "v1", None), id="localhost-port"),
    pytest.param(f"{ECR}/app@{SHA256}", (f"{ECR}/app", None, SHA256), id="ecr-digest"),
    pytest.param(f"{ECR}/team/app:v2@{SHA256}", (f"{ECR}/team/app", "v2", SHA256), id="ecr-tag-and-digest"),
]


@pytest.mark.parametrize(("image", "expected"), PARSE_IMAGE)
def test_parse_image_keeps_its_repository_tag_digest_split(image, expected) -> None:
    # Given an image a rollout may ask for / When parse_image reads it / Then (repository, tag, digest)
    assert parse_image(image) == expected


NOT_ROLLABLE = [
    pytest.param("redis", "with a tag or digest", id="no-tag"),
    pytest.param("localhost:5000/app", "with a tag or digest", id="port-is-not-a-tag"),
    pytest.param("App:v1", "lower-case", id="upper-case"),
    pytest.param("a" * 256 + ":v1", "at most 255", id="too-long"),
]


@pytest.mark.parametrize(("image", "phrase"), NOT_ROLLABLE)
def test_parse_image_refuses_what_a_rollout_cannot_run_with_an_example(image, phrase) -> None:
    # Given an image with no tag or digest, or not an image reference at all
    # When parse_image reads it
    with pytest.raises(ValueError) as err:
        parse_image(image)
    # Then the message quotes it, says why, and shows a reference that works
    message = str(err.value)
    assert quote(image) in message and phrase in message and "write e.g. 'redis:7'" in message


def test_helpers_name_registry_and_digest_parts() -> None:
    # Given a Docker Hub name and an ECR reference
    hub = ImageReference.parse("redis:7")
    ecr = ImageReference.parse(f"{ECR}/app:v2")
    # When the helpers are read / Then they name the registry pulled from and the digest parts
    assert hub.registry == "docker.io" and ecr.registry == ECR
    assert hub.repository == "redis" and not hub.pinned
    pinned = ecr.with_digest(SHA256)
    assert str(pinned) == f"{ECR}/app@{SHA256}" and pinned.pinned
    assert (pinned.digest_algorithm, pinned.digest_hex) == ("sha256", F64)
    with pytest.raises(ImageReferenceError):
        ecr.with_digest("md5:" + "a" * 32)


class _EcrLikeRegistry:
    """An ImagePort that answers as ECR does for the one repository it holds, and None for other registries."""

    def __init__(self, repository: str, tag: str, digest: str) -> None:
        self.repository, self.tag, self.digest = repository, tag, digest

    def resolve_digest(self, image: str) -> str | None:
        ref = ImageReference.parse(image)
        if not ref.registry.endswith(".amazonaws.com"):
            return None
        assert (ref.repository, ref.tag) == (self.repository, self.tag), image
        return f"{ref.repository}@{self.digest}"


PINS = [
    pytest.param(f"{ECR}/team/app:v2", f"{ECR}/team/app@{SHA256}", "pinned to", id="ecr-tag-pinned"),
    pytest.param(f"{ECR}/team/app@{SHA256}", f"{ECR}/team/app@{SHA256}", None, id="digest-kept"),
    pytest.param("redis:7", "redis:7", "is not pinned", id="hub-tag-noted"),
]


@pytest.mark.parametrize(("image", "expected", "note"), PINS)
def test_pin_image_turns_an_ecr_tag_into_its_digest(image, expected, note) -> None:
    # Given a registry that holds team/app:v2 at a digest
    ports = Ports(kube=None, elb=None, clock=None, images=_EcrLikeRegistry(f"{ECR}/team/app", "v2", SHA256))  # type: ignore[arg-type]
    # When the rollout's image is pinned
    pinned, notes = pin_image(ports, image)
    # Then an ECR tag becomes its digest, a digest stays, another registry's tag is kept with a note
    assert pinned == expected
    assert (note is None and notes == []) or (note is not None and note in notes[0])


@pytest.mark.parametrize("image", ["redis:7", "node:20", f"{ECR}/app@{SHA256}"])
def test_the_simulation_accepts_the_same_images(image) -> None:
    # Given a scenario whose rollout and pending-pods window name the image
    # When it is validated
    sc = parse_scenario({"name": "t", "rollout": {"image": image}, "faults": {"pods_pending": [{"at_seconds": 0, "images": [image]}]}})
    # Then it is accepted as written
    assert sc.rollout.image == image and sc.faults.pods_pending[0].images == [image]


def test_the_simulation_refuses_what_a_rollout_refuses() -> None:
    # Given a pending-pods window naming an image without a tag / When validated / Then the field is named
    with pytest.raises(ScenarioError, match="pods_pending.0.images"):
        parse_scenario({"name": "t", "faults": {"pods_pending": [{"at_seconds": 0, "images": ["redis"]}]}})


# --- properties --------------------------------------------------------------------------------------------
_alnum = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6)


def _component(separators: list[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda first, rest: first + "".join(s + a for s, a in rest), _alnum,
                     st.lists(st.tuples(st.sampled_from(separators), _alnum), max_size=2))


# The first component has no '.', so Docker's rule never reads it as a domain (a dotted first component followed
# by '/' is one: the table above covers that).
_path = st.builds(lambda first, rest: "/".join([first, *rest]), _component(["_", "__", "-", "--"]),
                  st.lists(_component([".", "_", "__", "-", "--"]), max_size=3))
_domain = st.one_of(
    st.none(),
    st.just("localhost"),
    st.builds(lambda a, b, port: f"{a}.{b}" + (f":{port}" if port is not None else ""),
              st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True),
              st.sampled_from(["com", "io", "amazonaws.com"]), st.none() | st.integers(1, 65535)),
)
_tag = st.none() | st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_digest = st.none() | st.sampled_from(["sha256", "sha384", "sha512"]).flatmap(
    lambda alg: st.text("0123456789abcdef", min_size={"sha256": 64, "sha384": 96, "sha512": 128}[alg],
                        max_size={"sha256": 64, "sha384": 96, "sha512": 128}[alg]).map(lambda h: f"{alg}:{h}"))


@settings(max_examples=300, deadline=None)
@given(_domain, _path, _tag, _digest)
def test_any_reference_built_from_the_grammar_parses_back_into_its_parts(domain, path, tag, digest) -> None:
    # Given a reference assembled from grammar pieces
    text = (f"{domain}/" if domain else "") + path + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    if len(path if domain or "/" in path else "library/" + path) > PATH_LENGTH_MAX:
        return
    # When it is parsed / Then the parts come back, whichever tag looks like a port
    ref = ImageReference.parse(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="abAB09:/@._-[]%", max_size=40))
def test_any_text_is_either_refused_or_printed_back_unchanged(text) -> None:
    # Given arbitrary text over the grammar's characters
    # When it is parsed
    try:
        ref = ImageReference.parse(text)
    except ImageReferenceError:
        return  # Then either it is refused with a reason...
    # ...or the reference prints back as written and its path is lower-case
    assert str(ref) == text and ref.path == ref.path.lower()
