"""module_utils/rego_check.py: the engine choice (OPA's own for v1, regopy for v0 or without
opa_bindings) and the bundle check (several modules, data files, manifest roots)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from module_utils import rego_check
from module_utils.rego_check import (
    RegoCheckError,
    check_bundle,
    check_bundle_files,
    check_policy,
    compile_policy,
    engine_for,
)
from tests.lib.ansible_run import run_playbook
from tests.policy.harness import render

LIB = """package docker.authz.lib

import rego.v1

privileged(body) if body.HostConfig.Privileged == true
"""

MAIN = """package docker.authz

import rego.v1

import data.docker.authz.config
import data.docker.authz.lib

default allow := false

allow if count(deny) == 0

deny contains "privileged: privileged containers are not allowed" if {
\tconfig.deny_privileged
\tlib.privileged(input.Body)
}
"""


def make_bundle(root: Path, *, main: str = MAIN, roots: list[str] | None = None, data: object = None) -> Path:
    (root / "docker" / "authz" / "config").mkdir(parents=True)
    (root / ".manifest").write_text(json.dumps({"revision": "abc", "roots": roots or ["docker/authz"]}))
    (root / "docker" / "authz" / "authz.rego").write_text(main)
    (root / "docker" / "authz" / "lib.rego").write_text(LIB)
    cfg = {"deny_privileged": True} if data is None else data
    (root / "docker" / "authz" / "config" / "data.json").write_text(json.dumps(cfg))
    return root


def tree(root: Path) -> dict[str, str]:
    """The bundle directory as the role holds it before writing it: {path inside: text}."""
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_v1_is_compiled_by_opa_and_v0_by_regopy():
    assert engine_for("v1") == "opa" and engine_for("v0") == "regopy"
    assert check_policy(render("v1"), "v1")["engine"] == "opa"
    assert check_policy(render("v0"), "v0")["engine"] == "regopy"
    with pytest.raises(RegoCheckError, match=r"OPA 1\.x parses Rego v1 only"):
        compile_policy(render("v0"), engine="opa", dialect="v0")


def test_without_opa_bindings_v1_falls_back_to_regopy(monkeypatch):
    monkeypatch.setattr(rego_check, "_import_opa", lambda: None)
    assert engine_for("v1") == "regopy"
    assert check_policy(render("v1"), "v1")["engine"] == "regopy"


def test_both_engines_agree_on_the_samples():
    text = render("v1", profile="restricted")
    assert compile_policy(text, engine="opa") == compile_policy(text, engine="regopy")


def test_opa_reports_its_own_errors():
    with pytest.raises(RegoCheckError, match="rego_parse_error: `if` keyword is required before rule body"):
        compile_policy("package docker.authz\nallow { true }\n", engine="opa")
    with pytest.raises(RegoCheckError, match="var x assigned above"):
        # regopy accepts this; OPA does not
        compile_policy("package docker.authz\nallow if { x := 1; x := 2 }\ndeny := set()\n", engine="opa")


@pytest.mark.parametrize("engine", ["opa", "regopy"])
def test_a_bundle_with_a_library_and_data_is_checked_whole(tmp_path, engine):
    root = make_bundle(tmp_path / "bundle")
    result = check_bundle(str(root), "v1", engine=engine)
    assert result["engine"] == engine and result["revision"] == "abc"
    assert result["files"] == [
        ".manifest",
        "docker/authz/authz.rego",
        "docker/authz/config/data.json",
        "docker/authz/lib.rego",
    ]
    assert result["samples"] == [
        {"allow": True, "deny": []},
        {"allow": False, "deny": ["privileged: privileged containers are not allowed"]},
    ]
    assert "count" in result["builtins"] and "lib.privileged" not in result["builtins"]
    # the data decides: the same modules with the rule's switch off allow the privileged sample
    off = make_bundle(tmp_path / "off", data={"deny_privileged": False})
    assert check_bundle(str(off), "v1", engine=engine)["samples"][1] == {"allow": True, "deny": []}
    # the same files given in memory (rego_check bundle_files, what the role passes) are judged
    # exactly as the written directory
    assert check_bundle_files(tree(root), "v1", engine=engine) == result
    assert check_bundle_files(tree(off), "v1", engine=engine)["samples"][1] == {"allow": True, "deny": []}


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (
            lambda r: (r / "docker/authz/lib.rego").write_text("package docker.authz.lib\nf(x) { x }\n"),
            "requires 'if'",
        ),
        (
            lambda r: (r / "docker/authz/lib.rego").write_text(LIB + "broken if {\n"),
            "does not compile",
        ),
        (
            lambda r: (r / "docker/authz/x.rego").write_text("package other\nimport rego.v1\nx := 1\n"),
            "outside the manifest roots",
        ),
        (lambda r: (r / "docker/authz/config/data.json").write_text("{nope"), "does not parse"),
        (lambda r: (r / "docker/authz/authz.rego").unlink(), "no module declares 'package docker.authz'"),
        (
            lambda r: (r / "docker/authz/lib.rego").write_text(
                LIB + 'g if regex.match("a", "b") == re_match("a", "b")\n'
            ),
            "'re_match' is not a builtin of OPA 1.3.0",
        ),
    ],
)
def test_a_bad_bundle_is_refused_naming_the_problem(tmp_path, mutate, problem):
    root = make_bundle(tmp_path / "bundle")
    mutate(root)
    with pytest.raises(RegoCheckError, match=re.escape(problem)):
        check_bundle(str(root), "v1")
    with pytest.raises(RegoCheckError, match=re.escape(problem)):
        check_bundle_files(tree(root), "v1")


def test_a_missing_or_empty_bundle_dir_is_refused(tmp_path):
    with pytest.raises(RegoCheckError, match="is not a directory"):
        check_bundle(str(tmp_path / "nope"), "v1")
    with pytest.raises(RegoCheckError, match=r"holds no \.rego file"):
        check_bundle(str(tmp_path), "v1")


@pytest.mark.slow
def test_the_module_checks_a_bundle_dir(tmp_path):
    good = make_bundle(tmp_path / "good")
    bad = make_bundle(tmp_path / "bad", roots=["docker/authz/config"])
    play = f"""
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Check the bundle
      hardening.docker_authz.rego_check:
        bundle_dir: {good}
        dialect: v1
    - name: Check the bundle whose roots do not cover its packages
      hardening.docker_authz.rego_check:
        bundle_dir: {bad}
        dialect: v1
      ignore_errors: true
    - name: Check both a file and a bundle
      hardening.docker_authz.rego_check:
        bundle_dir: {good}
        path: {good}/docker/authz/authz.rego
        dialect: v1
      ignore_errors: true
"""
    run = run_playbook(play, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    ok = run.task("Check the bundle")
    assert ok["status"] == "ok" and ok["result"]["engine"] == "opa" and ok["result"]["revision"] == "abc"
    assert ok["result"]["samples"][1]["allow"] is False
    refused = run.task("Check the bundle whose roots do not cover its packages")
    assert refused["status"] == "failed"
    assert f"the bundle {bad} must not be deployed" in refused["result"]["msg"]
    assert "outside the manifest roots" in refused["result"]["msg"]
    both = run.task("Check both a file and a bundle")
    assert both["status"] == "failed" and "mutually exclusive" in both["result"]["msg"]
