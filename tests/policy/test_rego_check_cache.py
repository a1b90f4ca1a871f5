"""The compile cache of module_utils/rego_check.py (docker_authz_compile_cache): a policy text
that passed is remembered under a key of the text, the dialect, the engine and its version and
the checker's own code; only that exact text is left out of the next compile, and a text that
failed is never remembered. The module writes the entries, the filter rego_uncached reads them
(both on the controller, through Ansible: tests the key is the same in a module run and in the
controller's process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from module_utils import rego_check
from tests.lib.ansible_run import run_playbook

GOOD = """package docker.authz

import rego.v1

default allow := false

allow if input.Method == "GET"

deny contains "privileged containers are not allowed" if input.Body.HostConfig.Privileged == true
"""

# compiles, but denies `docker ps`: the check refuses it
DENIES_PS = GOOD.replace('allow if input.Method == "GET"', 'allow if input.Method == "HEAD"')


def test_only_the_text_that_passed_is_remembered(tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    assert not rego_check.is_cached(GOOD, "v1", cache)
    path = rego_check.remember(GOOD, rego_check.check_policy(GOOD, "v1"), cache)
    assert path is not None and Path(path).parent == Path(cache)
    assert json.loads(Path(path).read_text()) == {"dialect": "v1", "engine": "opa"}
    assert rego_check.is_cached(GOOD, "v1", cache)
    assert not rego_check.is_cached(GOOD + "\n# one more line\n", "v1", cache)
    assert not rego_check.is_cached(GOOD, "v0", cache)


def test_the_key_names_the_engine_version_and_the_checker() -> None:
    key = rego_check.cache_key(GOOD, "v1", "opa")
    assert key is not None and key == rego_check.cache_key(GOOD, "v1", "opa")
    assert key != rego_check.cache_key(GOOD, "v1", "regopy")
    assert rego_check.cache_key(GOOD, "v1", "no-such-engine") is None


@pytest.mark.slow
def test_module_remembers_passes_only_and_the_filter_leaves_them_out(tmp_path: Path) -> None:
    cache_home = tmp_path / "xdg"
    play = f"""
- hosts: localhost
  gather_facts: false
  vars:
    good: {json.dumps(GOOD)}
    bad: {json.dumps(DENIES_PS)}
  tasks:
    - name: Check a policy that denies docker ps
      hardening.docker_authz.rego_check:
        content: "{{{{ bad }}}}"
        dialect: v1
        cache: true
      ignore_errors: true
    - name: Check the good policy
      hardening.docker_authz.rego_check:
        content: "{{{{ good }}}}"
        dialect: v1
        cache: true
      register: checked
    - name: Ask the filter which texts still need a check
      ansible.builtin.set_fact:
        left: >-
          {{{{ [['v1', good], ['v1', bad], ['v1', good ~ '# x']] | hardening.docker_authz.rego_uncached }}}}
        all_of_them: "{{{{ [['v1', good]] | hardening.docker_authz.rego_uncached(false) }}}}"
"""
    run = run_playbook(play, tmp_path, env={"XDG_CACHE_HOME": str(cache_home)})
    assert run.returncode == 0, run.stdout + run.stderr
    refused = run.task("Check a policy that denies docker ps")
    assert refused["status"] == "failed" and "docker ps" in refused["result"]["msg"]
    cached_as = Path(run.task("Check the good policy")["result"]["cached_as"])
    assert cached_as.parent == cache_home / "hardening.docker_authz" / "rego_check"
    assert [p.name for p in cached_as.parent.iterdir()] == [cached_as.name], "the failure is not remembered"
    facts = run.task("Ask the filter which texts still need a check")["result"]["ansible_facts"]
    assert facts["left"] == [["v1", DENIES_PS], ["v1", GOOD + "# x"]]
    assert facts["all_of_them"] == [["v1", GOOD]]


# A bundle as the role holds it ({path inside the bundle: text}); BAD_BUNDLE compiles but
# denies docker ps, so the check refuses it.
BUNDLE = {
    ".manifest": json.dumps({"revision": "r1", "roots": ["docker/authz"]}),
    "docker/authz/authz.rego": GOOD,
    "docker/authz/data.json": json.dumps({"config": {"rules": {}}}),
}
BAD_BUNDLE = {**BUNDLE, "docker/authz/authz.rego": DENIES_PS}


def test_a_bundle_is_remembered_by_all_its_files(tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    text = rego_check.bundle_text(BUNDLE)
    assert text == rego_check.bundle_text(dict(reversed(list(BUNDLE.items())))), "order does not matter"
    assert not rego_check.is_cached(text, "v1", cache)
    rego_check.remember(text, rego_check.check_bundle_files(BUNDLE, "v1"), cache)
    assert rego_check.is_cached(text, "v1", cache)
    # any file's content, a file more or a file less is another bundle
    for other in (
        {**BUNDLE, "docker/authz/data.json": json.dumps({"config": {"rules": {"privileged": True}}})},
        {**BUNDLE, "docker/authz/extra.rego": "package docker.authz\n"},
        {k: v for k, v in BUNDLE.items() if k != "docker/authz/data.json"},
    ):
        assert not rego_check.is_cached(rego_check.bundle_text(other), "v1", cache)
    # the text that stands for a bundle is never a policy text that could share its key
    assert not rego_check.is_cached(GOOD, "v1", cache)
    with pytest.raises(rego_check.RegoCheckError, match="docker ps"):
        rego_check.check_bundle_files(BAD_BUNDLE, "v1")


@pytest.mark.slow
def test_module_remembers_bundles_that_pass_and_the_filter_leaves_them_out(tmp_path: Path) -> None:
    cache_home = tmp_path / "xdg"
    play = f"""
- hosts: localhost
  gather_facts: false
  vars:
    good: {json.dumps(BUNDLE)}
    bad: {json.dumps(BAD_BUNDLE)}
  tasks:
    - name: Check a bundle that denies docker ps
      hardening.docker_authz.rego_check:
        bundle_files: "{{{{ bad }}}}"
        dialect: v1
        cache: true
      ignore_errors: true
    - name: Check a bundle with a file that is not text
      hardening.docker_authz.rego_check:
        bundle_files: {{"docker/authz/authz.rego": ["not", "text"]}}
        dialect: v1
      ignore_errors: true
    - name: Check the good bundle
      hardening.docker_authz.rego_check:
        bundle_files: "{{{{ good }}}}"
        dialect: v1
        cache: true
      register: checked
    - name: Ask the filter which bundles still need a check
      ansible.builtin.set_fact:
        left: "{{{{ [['v1', good], ['v1', bad]] | hardening.docker_authz.rego_uncached }}}}"
"""
    run = run_playbook(play, tmp_path, env={"XDG_CACHE_HOME": str(cache_home)})
    assert run.returncode == 0, run.stdout + run.stderr
    refused = run.task("Check a bundle that denies docker ps")
    assert refused["status"] == "failed"
    assert "the bundle built from the rule variables must not be deployed" in refused["result"]["msg"]
    assert "docker ps" in refused["result"]["msg"]
    not_text = run.task("Check a bundle with a file that is not text")
    assert not_text["status"] == "failed" and "not text: docker/authz/authz.rego" in not_text["result"]["msg"]
    good = run.task("Check the good bundle")["result"]
    assert good["revision"] == "r1" and good["files"] == sorted(BUNDLE)
    cached_as = Path(good["cached_as"])
    assert [p.name for p in cached_as.parent.iterdir()] == [cached_as.name], "the failure is not remembered"
    facts = run.task("Ask the filter which bundles still need a check")["result"]["ansible_facts"]
    assert facts["left"] == [["v1", BAD_BUNDLE]]
