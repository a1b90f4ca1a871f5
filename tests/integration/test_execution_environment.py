"""The execution environment for AWX / Automation Controller (execution-environment.yml).

Built here with ansible-builder and the machine's dockerd from local images only (tests/images/ee.py:
a Debian 12 base made from the cached debootstrap root filesystem, every wheel downloaded on this
machine, `docker build --network none`), then used the way AWX uses it: `ansible-playbook` runs
INSIDE the image, as its non-root user, against a disposable Docker-in-Docker host over SSH, with
the job template's extra vars in a file. The image is cached by a hash of its inputs: a first
build costs about 2-3 minutes, a re-run with unchanged inputs seconds (plus the converge).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import ALIAS, BUSYBOX, DENIED
from tests.images import build as images
from tests.images import ee
from tests.lib import dind
from tests.lib.ansible_run import CALLBACKS

ROOT = Path(__file__).resolve().parents[2]
EE_USER = 1000  # options.user: AWX runs the EE as this uid
MISSING_COLLECTION = "ERROR: this execution environment has no hardening.docker_authz collection"
TIMINGS: dict[str, float] = {}


def _pin(lines: list[str], name: str) -> str:
    found = [line for line in lines if re.split(r"[=<>!~; ]", line, maxsplit=1)[0].lower() == name.lower()]
    assert len(found) == 1, f"{name}: {found}"
    return found[0]


def _docker_run(
    image: str, *cmd: str, args: tuple[str, ...] = (), timeout: int = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            *(args if "--network" in args else ("--network", "none", *args)),
            image,
            *cmd,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def ee_image() -> Iterator[str]:
    t0 = time.monotonic()
    try:
        built = ee.build_ee()
    except images.BuildError as e:
        pytest.fail(f"the execution environment did not build: {e}", pytrace=False)
    TIMINGS["ee build (cached)" if built.cached else "ee build"] = time.monotonic() - t0
    yield built.ref
    print("\n" + "\n".join(f"[ee timing] {k}: {v:.1f}s" for k, v in TIMINGS.items()))


# ------------------------------------------------------------------ the definition itself


def test_definition_pins_what_the_project_tests_with() -> None:
    doc = ee.definition()
    project = ee._requirement_lines(ROOT / "requirements.txt")
    collection = ee.collection_requirements()
    assert doc["dependencies"]["ansible_core"]["package_pip"] == _pin(project, "ansible-core")
    assert _pin(collection, "regopy") == _pin(project, "regopy")
    assert _pin(collection, "opa-golib-python-bindings") == images.OPA_BINDINGS
    # The collection goes in from the tarball scripts/build_collection.sh makes, not from a server.
    (entry,) = doc["dependencies"]["galaxy"]["collections"]
    assert entry == {"name": f"/build/collection/{ee.COLLECTION_TARBALL}", "type": "file"}


def test_ansible_builder_reads_the_collections_python_requirements(tmp_path: Path) -> None:
    """AWX users who add the collection to their own EE get its Python requirements: ansible-builder
    introspects an installed collection's meta/execution-environment.yml (the check runs the real
    introspection on the tarball installed with ansible-galaxy)."""
    tarball = ee.build_collection(tmp_path / "dist")
    with tarfile.open(tarball) as tf:
        names = set(tf.getnames())
    assert {"meta/execution-environment.yml", "requirements.txt"} <= names
    # Away from the checkout's ansible.cfg (its collections_path has the collection already).
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_GALAXY_DISABLE_GPG_VERIFY"] = "1"
    bin_dir = Path(ee.sys.executable).parent
    proc = subprocess.run(
        [
            str(bin_dir / "ansible-galaxy"),
            "collection",
            "install",
            str(tarball),
            "-p",
            str(tmp_path / "cols"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = subprocess.run(
        [str(bin_dir / "ansible-builder"), "introspect", "--sanitize", str(tmp_path / "cols")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = yaml.safe_load(proc.stdout)
    origin = "  # from collection hardening.docker_authz"
    assert found["python"] == [f"{req}{origin}" for req in ee.collection_requirements()], found
    assert f"libatomic1 [platform:dpkg]{origin}" in found["system"], found


def test_survey_example_matches_the_argument_spec() -> None:
    """docs/awx.md's survey spec names real variables with choices the role accepts."""
    text = (ROOT / "docs" / "awx.md").read_text()
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, re.S)]
    (survey,) = [b for b in blocks if "spec" in b]
    specs = yaml.safe_load((ROOT / "roles/opa_authz/meta/argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    harden = (ROOT / "playbooks" / "harden.yml").read_text()
    assert len(survey["spec"]) >= 5
    for q in survey["spec"]:
        var = q["variable"]
        assert q["type"] in {
            "text",
            "textarea",
            "password",
            "integer",
            "float",
            "multiplechoice",
            "multiselect",
        }
        if var not in options:
            # Play-level variables (serial, max_fail_percentage) are read by harden.yml itself.
            assert var in harden, f"{var}: neither in the argument spec nor read by harden.yml"
            continue
        spec = options[var]
        if q["type"] == "multiplechoice":
            choices = q["choices"].split("\n")
            allowed = [str(c) for c in spec["choices"]] if "choices" in spec else None
            if spec["type"] == "bool":
                allowed = ["true", "false"]
            assert allowed is not None and set(choices) <= set(allowed), (var, choices, allowed)
            assert q["default"] in choices, (var, q["default"])
            assert q["default"] == str(spec["default"]).lower(), (var, q["default"], spec["default"])
        # A survey answers strings: lists and mappings belong in the template's extra vars.
        assert spec["type"] not in ("list", "dict"), f"{var} ({spec['type']}) in a survey"


# ------------------------------------------------------------------ the image


def test_image_has_the_collection_core_and_rego_engines(ee_image: str) -> None:
    script = (
        "set -e; id -u; ansible --version | head -1; ansible-runner --version;"
        " ansible-galaxy collection list hardening.docker_authz 2>/dev/null | grep '^hardening';"
        " python3 -c 'import opa_bindings, regopy; e = opa_bindings.OpaEngine();"
        ' e.add_policy("p.rego", "package p\\nx := 1 + 1\\n"); print("opa", e.eval_document("p.x"))\''
    )
    proc = _docker_run(ee_image, "bash", "-c", script)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout.splitlines()
    core = ee.definition()["dependencies"]["ansible_core"]["package_pip"].split("==")[1]
    version = yaml.safe_load((ROOT / "collection" / "galaxy.yml").read_text())["version"]
    assert out[0] == str(EE_USER), out
    assert f"core {core}" in out[1], out
    assert re.fullmatch(rf"hardening\.docker_authz\s+{re.escape(version)}", out[3].strip()), out
    assert out[4] == "opa 2", out
    # Nothing of the offline build is left behind: pip in the image reads its usual configuration.
    proc = _docker_run(ee_image, "bash", "-c", 'test ! -e /output && echo "[$PIP_CONFIG_FILE]"')
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_harden_runs_from_inside_the_ee(
    ee_image: str, dind_host: dind.DindHost, plugin_double: str, tmp_path: Path
) -> None:
    """What an AWX job does: the EE runs ansible-playbook with the job template's inventory, machine
    credential (an SSH key file) and extra vars; the host ends up hardened."""
    work = tmp_path / "runner"
    work.mkdir()
    key = work / "id_ed25519"
    shutil.copyfile(dind_host.key_path, key)
    os.chown(key, EE_USER, 0)
    key.chmod(0o600)
    mirror = plugin_double.replace("-linux-amd64", "-linux-{arch}")
    hostvars = dind_host.hostvars(ansible_ssh_private_key_file="/runner/job/id_ed25519")
    inventory = {"all": {"children": {"docker_hosts": {"hosts": {dind_host.name: hostvars}}}}}
    (work / "inventory.yml").write_text(json.dumps(inventory, indent=2))
    # The job template's extra vars with a survey's answers, as AWX passes them (-e @file): survey
    # answers are strings, "false" included. No bypass probes: the test stays short.
    extra_vars = {
        "docker_authz_plugin_image": mirror,
        "docker_authz_profile": "baseline",
        "docker_authz_serial": "1",
        "docker_authz_verify": "true",
        "docker_authz_verify_bypasses": "false",
    }
    (work / "extra_vars.yml").write_text(yaml.safe_dump(extra_vars))
    out = tmp_path / "out"
    out.mkdir()
    os.chown(out, EE_USER, 0)
    work.chmod(0o755)
    for f in ("inventory.yml", "extra_vars.yml"):
        (work / f).chmod(0o644)
    t0 = time.monotonic()
    proc = _docker_run(
        ee_image,
        "ansible-playbook",
        "hardening.docker_authz.harden",
        "-i",
        "/runner/job/inventory.yml",
        "-e",
        "@/runner/job/extra_vars.yml",
        args=(
            "--network",
            "host",
            "-v",
            f"{work}:/runner/job:ro",
            # The tests' results callback (one JSON line per task result), read-only.
            "-v",
            f"{CALLBACKS}:/runner/callbacks:ro",
            "-v",
            f"{out}:/runner/out",
            "-e",
            "ANSIBLE_CALLBACK_PLUGINS=/runner/callbacks",
            "-e",
            "ANSIBLE_CALLBACKS_ENABLED=jsonl_results",
            "-e",
            "HARDENING_RESULTS_FILE=/runner/out/results.jsonl",
            "-e",
            "ANSIBLE_NOCOLOR=1",
        ),
        timeout=900,
    )
    TIMINGS["harden.yml from inside the ee"] = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    recap = re.search(rf"^{re.escape(dind_host.name)}\s+:\s+(.*)$", proc.stdout, re.M)
    assert recap, proc.stdout[-3000:]
    counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", recap.group(1))}
    assert counts["failed"] == 0 and counts["unreachable"] == 0 and counts["changed"] > 0, counts
    # The controller-side compile check ran inside the EE, with OPA's own engine.
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line]
    compiled = [r for r in results if r["task"].endswith(" : Compile the policy on the controller")]
    assert compiled and compiled[-1]["status"] == "ok", compiled
    # one compile per distinct policy of the play: a loop run once
    assert compiled[-1]["result"]["results"][0]["engine"] == "opa", compiled[-1]["result"]
    # The host is hardened: a privileged create is denied by the plugin, a compliant run allowed.
    denied = dind_host.docker("run", "--rm", "--privileged", BUSYBOX, "true", check=False)
    assert f"{DENIED} {ALIAS}" in denied.stderr, denied.stderr
    ok = dind_host.docker("run", "--rm", BUSYBOX, "echo", "compliant-run-ok", check=False)
    assert ok.returncode == 0 and "compliant-run-ok" in ok.stdout, ok.stderr


def test_an_ee_built_without_the_collection_says_so() -> None:
    """Someone drops dependencies.galaxy from the definition: the build stops with a message naming
    the collection and the fix, and no image is tagged."""
    text = ee.without_collection(ee.EE_FILE.read_text())
    repo = "local/hardening-ee-without-collection"
    t0 = time.monotonic()
    with pytest.raises(images.BuildError) as err:
        ee.build_ee(doc_text=text, repo=repo)
    TIMINGS["ee build without the collection (fails)"] = time.monotonic() - t0
    message = str(err.value)
    assert MISSING_COLLECTION in message, message[-3000:]
    assert "dependencies.galaxy" in message and "make ee" in message, message[-3000:]
    assert not subprocess.run(
        ["docker", "images", "-q", repo], capture_output=True, text=True, check=True
    ).stdout.strip()
