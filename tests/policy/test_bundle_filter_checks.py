"""The bundle filters' own checks: policy_bundle's check of what it built, bundle_dialect's refusals."""

from __future__ import annotations

import json
import re

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.hardening.docker_authz.plugins.filter.bundle import bundle_dialect
from ansible_collections.hardening.docker_authz.plugins.filter.policy import _bundle_problem
from tests.policy.harness import bundle_files


@pytest.mark.parametrize("profile", ["baseline", "restricted"])
def test_the_built_bundle_passes_its_check(profile: str) -> None:
    assert _bundle_problem(bundle_files(profile=profile)) == ""


def _broken(change: str) -> dict[str, str]:
    files = dict(bundle_files(profile="baseline"))
    manifest = json.loads(files[".manifest"])
    if change == "no-manifest":
        del files[".manifest"]
    elif change == "roots":
        files[".manifest"] = json.dumps({**manifest, "roots": ["docker"]})
    elif change == "revision":
        files[".manifest"] = json.dumps({**manifest, "revision": ""})
    elif change == "no-data":
        del files["docker/authz/data.json"]
    elif change == "config-not-object":
        files["docker/authz/data.json"] = json.dumps({"config": []})
    elif change == "no-rego":
        files = {k: v for k, v in files.items() if not k.endswith(".rego")}
    return files


@pytest.mark.parametrize(
    "change", ["no-manifest", "roots", "revision", "no-data", "config-not-object", "no-rego"]
)
def test_an_incomplete_bundle_is_named(change: str) -> None:
    assert _bundle_problem(_broken(change)) != ""


def test_bundle_dialect() -> None:
    assert bundle_dialect("ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-amd64", "auto") == "v1"
    with pytest.raises(AnsibleFilterError, match="a bundle is Rego v1 only"):
        bundle_dialect("ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-amd64", "v0")
    with pytest.raises(AnsibleFilterError, match=re.escape("opa-docker-authz 0.4 has no -config-file")):
        bundle_dialect("openpolicyagent/opa-docker-authz-v2:0.4", "auto")
    with pytest.raises(AnsibleFilterError, match="docker_authz_rego_version"):
        bundle_dialect("ghcr.io/open-policy-agent/opa-docker-authz:v0.10", "v2")
