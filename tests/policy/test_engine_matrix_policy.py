"""What the engine matrix found about the policy (docs/engines.md), on both dialects.

CLI 20.10 (Debian 11 and 12) sends `docker commit` without --change with the JSON document
`null` as its body (a nil *container.Config encoded by the client): opa-docker-authz hands that
over as Body null, the same as a body it never got, and the invisible-body rule denied an
ordinary `docker commit` (tests/e2e/test_engine_matrix.py saw it on both 20.10 engines). The
Content-Length tells the two apart: the document `null` is 4 or 5 bytes; a body the daemon did
not forward is chunked (no Content-Length), empty (0) or over the plugin limit.
"""

from __future__ import annotations

import pytest

from tests.policy.harness import compiled, request

DIALECTS = ("v1", "v0")
COMMIT = "/v1.41/commit?author=&comment=&container=cap-exec&pause=1&repo=capture-commit&tag=1"


def _commit(body: bytes | None, length: str | None, **headers: str):
    hdrs = {"Content-Type": "application/json", **headers}
    if length is not None:
        hdrs["Content-Length"] = length
    return request("POST", COMMIT, body, headers=hdrs)


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("profile", ["baseline", "restricted"])
def test_a_null_json_body_is_not_an_invisible_body(dialect: str, profile: str) -> None:
    policy = compiled(dialect, profile=profile)
    for body in (b"null\n", b"null"):
        allow, deny = policy.decide(_commit(body, str(len(body))))
        assert allow, (body, sorted(deny))


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_body_the_plugin_did_not_get_is_still_denied(dialect: str) -> None:
    policy = compiled(dialect, profile="baseline")
    cases = {
        "chunked (no Content-Length)": _commit(None, None, **{"Transfer-Encoding": "chunked"}),
        "empty Content-Length": _commit(None, "0"),
        "over 1 MiB": _commit(None, str((1 << 20) + 10)),
        "a 6-byte body not forwarded": _commit(None, "6"),
    }
    for what, req in cases.items():
        allow, deny = policy.decide(req)
        assert not allow and any(r.startswith("body:") for r in deny), (what, sorted(deny))
    # and a create whose body is `null` stays denied by the body endpoints' rule
    allow, deny = policy.decide(
        request(
            "POST",
            "/v1.41/containers/create",
            b"null\n",
            headers={"Content-Type": "application/json", "Content-Length": "5"},
        )
    )
    assert not allow and any(r.startswith("body:") for r in deny), sorted(deny)
