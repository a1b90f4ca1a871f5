"""Build the collection tarball, install it, and run a smoke playbook from the installed copy.

Run with the pinned ansible-core (.venv), with the oldest release of meta/runtime.yml's
`requires_ansible` range (.venv-ansible-min) and with the newest ansible-core release
(.venv-ansible-max, on Python >= 3.12), so that range is one we actually test. The smoke run
uses the modules, and renders the policy through the packaged playbook by FQCN (role,
template, filter plugins and rego_check from the tarball): it must be byte-identical to the
checkout's rendering.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.lib.ansible_run import ROOT
from tests.policy import harness

VENV_BIN = Path(sys.executable).parent
MIN_BIN = ROOT / ".venv-ansible-min" / "bin"
MAX_BIN = ROOT / ".venv-ansible-max" / "bin"


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    proc = subprocess.run(
        ["scripts/build_collection.sh", str(out)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    galaxy = yaml.safe_load((ROOT / "collection" / "galaxy.yml").read_text())
    path = out / f"{galaxy['namespace']}-{galaxy['name']}-{galaxy['version']}.tar.gz"
    assert path.is_file(), list(out.iterdir())
    return path


def test_builds_at_the_same_time_do_not_share_their_staging(tarball: Path, tmp_path: Path) -> None:
    # Two test workers may build at once (the execution environment's test builds too). With one
    # staging folder in the checkout, one build removed the other's files or copied docs/ into
    # docs/docs (seen by hand: a failed build, or 152 entries instead of 138).
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    staged_before = (ROOT / "build").exists()  # a checkout may keep one from an older script
    outs = [tmp_path / f"out{n}" for n in range(3)]
    procs = [
        subprocess.Popen(
            ["scripts/build_collection.sh", str(out)], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for out in outs
    ]
    for proc in procs:
        output, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, output
    with tarfile.open(tarball) as tf:
        expected = sorted(tf.getnames())
    for out in outs:
        (built,) = out.glob("*.tar.gz")
        with tarfile.open(built) as tf:
            assert sorted(tf.getnames()) == expected, out
    assert staged_before or not (ROOT / "build").exists(), "the build staged its copy in the checkout"


def test_tarball_holds_real_files_and_no_test_code(tarball: Path) -> None:
    with tarfile.open(tarball) as tf:
        members = {m.name: m for m in tf.getmembers()}
        manifest = json.load(tf.extractfile("MANIFEST.json"))  # type: ignore[arg-type]
    assert not [n for n, m in members.items() if m.issym() or m.islnk()], "links in the tarball"
    for required in (
        "MANIFEST.json",
        "FILES.json",
        "meta/runtime.yml",
        "plugins/module_utils/docker_api.py",
        "plugins/modules/daemon_json.py",
        "README.md",
        "LICENSE",
    ):
        assert required in members, f"{required} missing from the tarball"
    assert manifest["collection_info"]["namespace"] == "hardening"
    assert manifest["collection_info"]["name"] == "docker_authz"
    assert "security" in manifest["collection_info"]["tags"]
    assert not [n for n in members if n.startswith("tests/") or "__pycache__" in n]
    # Every module and module_util of the checkout made it in.
    for src in (ROOT / "collection" / "plugins" / "modules").glob("*.py"):
        assert f"plugins/modules/{src.name}" in members
    for src in (ROOT / "module_utils").glob("*.py"):
        assert f"plugins/module_utils/{src.name}" in members
    for src in (ROOT / "playbooks").glob("*.yml"):
        assert f"playbooks/{src.name}" in members
    for role in (ROOT / "roles").iterdir():
        assert f"roles/{role.name}/meta/argument_specs.yml" in members, role.name


@pytest.mark.parametrize(
    "bindir", [VENV_BIN, MIN_BIN, MAX_BIN], ids=["ansible-pinned", "ansible-min", "ansible-max"]
)
def test_installed_tarball_runs_smoke_playbook(bindir: Path, tarball: Path, tmp_path: Path) -> None:
    assert (bindir / "ansible-playbook").exists(), (
        f"{bindir} missing: run scripts/setup.sh (.venv-ansible-max needs a Python >= 3.12)"
    )
    colls = tmp_path / "collections"
    work = tmp_path / "work"
    work.mkdir()
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text(f"[defaults]\ncollections_path = {colls}\n")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")
    } | {
        "ANSIBLE_CONFIG": str(cfg),
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
        "ANSIBLE_NOCOLOR": "1",
    }
    inst = subprocess.run(
        [bindir / "ansible-galaxy", "collection", "install", str(tarball), "-p", str(colls)],
        cwd=work, env=env, capture_output=True, text=True,
    )
    assert inst.returncode == 0, inst.stdout + inst.stderr
    installed = colls / "ansible_collections" / "hardening" / "docker_authz"
    assert (installed / "plugins" / "module_utils" / "docker_api.py").is_file()

    version = subprocess.run([bindir / "ansible", "--version"], env=env, capture_output=True, text=True)
    assert str(colls) in version.stdout, version.stdout  # only the temp path, not the checkout

    proc = subprocess.run(
        [
            bindir / "ansible-playbook",
            str(ROOT / "tests" / "integration" / "smoke" / "smoke.yml"),
            "-i", "localhost,", "-c", "local",
            "-e", json.dumps({"smoke_dir": str(work), "ansible_python_interpreter": sys.executable}),
        ],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "failed=0" in proc.stdout
    assert json.loads((work / "daemon.json").read_text()) == {"authorization-plugins": ["opa-docker-authz"]}

    # The packaged playbook by FQCN renders (and compiles) exactly the checkout's policy.
    dest = work / "authz.rego"
    render = subprocess.run(
        [
            bindir / "ansible-playbook", "hardening.docker_authz.render_policy",
            "-i", "localhost,", "-c", "local",
            "-e", json.dumps({
                "docker_authz_render_dest": str(dest),
                "docker_authz_profile": "restricted",
                "ansible_python_interpreter": sys.executable,
            }),
        ],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )
    assert render.returncode == 0, render.stdout + render.stderr
    assert dest.read_text() == harness.render(profile="restricted")

    doc = subprocess.run(
        [bindir / "ansible-doc", "-t", "module", "hardening.docker_authz.daemon_json"],
        cwd=work, env=env, capture_output=True, text=True,
    )
    assert doc.returncode == 0 and str(installed) in doc.stdout, doc.stdout + doc.stderr
