"""Build the AWX / Automation Controller execution environment (execution-environment.yml) here.

    .venv/bin/python -m tests.images.ee [--force] [--tag REF] [--base-image REF]   (`make ee`)

Nothing is pulled from outside and nothing is downloaded inside the build:

1. the base image local/ee-base:<key>: the shared Debian 12 minbase root filesystem of
   tests/images/build.py plus EE_BASE_PACKAGES (python3, pip, venv, ssh client), made with
   apt-get in a chroot and `docker import` (skipped with --base-image);
2. a staging folder $HARDENING_STATE_DIR/images/ee/<key>/ with a copy of execution-environment.yml
   and what it reads: dist/ee/collection/hardening-docker_authz.tar.gz (scripts/build_collection.sh)
   and dist/ee/wheels/ (`pip download` on this machine of every Python package the image gets:
   the pins of the EE file, of the collection's requirements.txt and of requirements.txt);
3. `ansible-builder build --container-runtime docker` with the base image as EE_BASE_IMAGE:
   local/hardening-ee:<key> (+ :latest).

The key hashes every input (the EE file, the collection's files, requirements.txt, this recipe
and the base image's key): an unchanged checkout finds its image at once. Builds share the
image cache lock of tests/images/build.py.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.images import build as images  # noqa: E402
from tests.images.build import BuildError, Built, log, run, run_progress, sha  # noqa: E402

EE_FILE = ROOT / "execution-environment.yml"
COLLECTION = ROOT / "collection"
BASE_IMAGE = "local/ee-base"
EE_IMAGE = "local/hardening-ee"
# What ansible-builder's base image needs (python3 with pip and venv), the SSH client Ansible
# reaches hosts with, ca-certificates, and libatomic1 (regopy loads it: the collection's
# bindep.txt; installed here because nothing is installed from a network during the build).
EE_BASE_PACKAGES = [
    "python3",
    "python3-pip",
    "python3-venv",
    "openssh-client",
    "ca-certificates",
    "libatomic1",
]
EE_BASE_RECIPE = {"packages": EE_BASE_PACKAGES, "recipe": 1}
# The image's Python and glibc (Debian 12): the wheels are downloaded for them.
EE_PYTHON = "3.11"
EE_GLIBC_MINOR = 36
# ansible-builder's builder stage installs these (bindep and what introspection imports).
BUILDER_PACKAGES = ["bindep", "PyYAML", "packaging"]
# Pins for what requirements.txt does not pin (ansible-runner's and pbr's dependencies).
EXTRA_PINS = [
    "pexpect==4.9.0",
    "ptyprocess==0.7.0",
    "python-daemon==3.1.2",
    "lockfile==0.12.2",
    "setuptools==80.9.0",
]
EE_RECIPE = {"pins": EXTRA_PINS, "builder": BUILDER_PACKAGES, "python": EE_PYTHON, "recipe": 1}
OPA_PACKAGE = "opa-golib-python-bindings"
COLLECTION_TARBALL = "hardening-docker_authz.tar.gz"
SKIP_PARTS = {"__pycache__", ".pytest_cache"}


# ------------------------------------------------------------------------- base image


def ee_lock() -> contextlib.AbstractContextManager[None]:
    """Serialise EE builds (not with the other images: their lock stays free meanwhile)."""
    return images.build_lock(".ee-lock", "execution environment build")


def base_image(force: bool = False) -> Built:
    """local/ee-base:<key>: Debian 12 minbase + EE_BASE_PACKAGES, made in a chroot (no pull)."""
    start = time.monotonic()
    key = sha(images.base_key(), repr(sorted(EE_BASE_RECIPE.items())))
    ref = f"{BASE_IMAGE}:{key}"
    if images.image_exists(ref) and not force:
        run(["docker", "tag", ref, f"{BASE_IMAGE}:latest"])
        return Built(ref, key, True, time.monotonic() - start)
    tar = images.base_tar()
    log(f"building {ref}: apt-get install {' '.join(EE_BASE_PACKAGES)} in a chroot")
    with tempfile.TemporaryDirectory(dir=images.CACHE, prefix="ee-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        images._extract(tar, rootfs)
        images.apt_install(rootfs, EE_BASE_PACKAGES, "ee-base")
        images.slim(rootfs)
        images.docker_import(
            rootfs, ref, ['CMD ["bash"]', f"LABEL org.hardening.test=ee-base org.hardening.key={key}"]
        )
    run(["docker", "tag", ref, f"{BASE_IMAGE}:latest"])
    images._prune_tags(BASE_IMAGE, keep={key, "latest"})
    return Built(ref, key, False, time.monotonic() - start)


# ------------------------------------------------------------------------- inputs


def definition(path: Path = EE_FILE) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict) or doc.get("version") != 3:
        raise BuildError(f"{path}: not an ansible-builder version 3 definition")
    return doc


def _requirement_lines(path: Path) -> list[str]:
    return [
        line.split("#", 1)[0].strip()
        for line in path.read_text().splitlines()
        if line.split("#", 1)[0].strip()
    ]


def collection_requirements() -> list[str]:
    """The Python requirements the collection declares (meta/execution-environment.yml)."""
    meta = yaml.safe_load((COLLECTION / "meta" / "execution-environment.yml").read_text())
    rel = meta["dependencies"]["python"]
    return _requirement_lines(COLLECTION / rel)


def image_packages(doc: dict[str, Any]) -> list[str]:
    """Every pip requirement the build installs (the EE file's, the collection's, the builder's)."""
    deps = doc.get("dependencies", {})
    init = doc.get("options", {}).get("container_init", {})
    out = [deps["ansible_core"]["package_pip"], deps["ansible_runner"]["package_pip"]]
    if init.get("package_pip"):
        out.append(init["package_pip"])
    return [*out, *BUILDER_PACKAGES, *collection_requirements()]


def _tree_files(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_PARTS)
        files += [Path(dirpath) / f for f in sorted(filenames) if not f.endswith(".pyc")]
    return files


def inputs_key(doc_text: str, base_key: str) -> str:
    """A hash of everything the image is made from."""
    parts: list[str | bytes] = [doc_text, base_key, repr(sorted(EE_RECIPE.items()))]
    parts.append((ROOT / "requirements.txt").read_bytes())
    parts.append((ROOT / "scripts" / "build_collection.sh").read_bytes())
    for path in [
        *_tree_files(COLLECTION),
        *_tree_files(ROOT / "docs"),
        ROOT / "README.md",
        ROOT / "LICENSE",
    ]:
        parts += [str(path.relative_to(ROOT)), path.read_bytes()]
    return sha(*parts)


# ------------------------------------------------------------------------- staging


def build_collection(dest: Path) -> Path:
    """scripts/build_collection.sh into a temporary folder; the tarball copied to dest."""
    dest.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    with tempfile.TemporaryDirectory(prefix="ee-collection-") as out:
        run([str(ROOT / "scripts" / "build_collection.sh"), out], cwd=ROOT, env=env)
        built = sorted(Path(out).glob("hardening-docker_authz-*.tar.gz"))
        if len(built) != 1:
            raise BuildError(f"scripts/build_collection.sh made {built}, expected one tarball")
        target = dest / COLLECTION_TARBALL
        shutil.copyfile(built[0], target)
    return target


def download_wheels(packages: Sequence[str], dest: Path) -> list[Path]:
    """`pip download` of the packages and their dependencies, as wheels for the image's Python."""
    dest.mkdir(parents=True, exist_ok=True)
    pins = [*_requirement_lines(ROOT / "requirements.txt"), *EXTRA_PINS]
    pins = [p for p in pins if not p.lower().startswith(OPA_PACKAGE)]
    constraints = dest.parent / "constraints.txt"
    constraints.write_text("\n".join(pins) + "\n")
    arch = os.uname().machine
    platforms = [f"manylinux_2_{m}_{arch}" for m in range(17, EE_GLIBC_MINOR + 1)]
    platforms += [f"manylinux2014_{arch}", "linux_" + arch]
    common = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        "--python-version",
        EE_PYTHON,
        *[a for p in platforms for a in ("--platform", p)],
        "-d",
        str(dest),
    ]
    opa = [p for p in packages if p.lower().startswith(OPA_PACKAGE)]
    rest = [p for p in packages if p not in opa]
    log(f"pip download (wheels for Python {EE_PYTHON}, glibc 2.{EE_GLIBC_MINOR}): {' '.join(rest + opa)}")
    run([*common, "-c", str(constraints), *rest])
    if opa:
        # OPA's engine declares Python >= 3.14 (it runs on 3.11): no dependencies of its own.
        run([*common, "--no-deps", "--ignore-requires-python", *opa])
    return sorted(dest.glob("*.whl"))


def stage(workdir: Path, doc: dict[str, Any], doc_text: str) -> Path:
    """The folder ansible-builder runs in: the EE file and its dist/ee/ inputs."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    ee_file = workdir / "execution-environment.yml"
    ee_file.write_text(doc_text)
    if doc.get("dependencies", {}).get("galaxy"):
        build_collection(workdir / "dist" / "ee" / "collection")
    else:
        (workdir / "dist" / "ee" / "collection").mkdir(parents=True)
    wheels = cached_wheels(image_packages(doc))
    shutil.copytree(wheels, workdir / "dist" / "ee" / "wheels")
    return ee_file


def cached_wheels(packages: Sequence[str]) -> Path:
    """The wheels for these packages, downloaded once per package list and pins."""
    pins = (ROOT / "requirements.txt").read_bytes()
    key = sha(*packages, pins, repr(sorted(EE_RECIPE.items())), os.uname().machine)
    dest = images.CACHE / "ee-wheels" / key
    if dest.is_dir():
        return dest
    with tempfile.TemporaryDirectory(dir=images.CACHE, prefix="ee-wheels-") as tmp:
        download_wheels(packages, Path(tmp) / "wheels")
        dest.parent.mkdir(parents=True, exist_ok=True)
        (Path(tmp) / "wheels").rename(dest)
    for old in dest.parent.iterdir():
        if old != dest:
            shutil.rmtree(old, ignore_errors=True)
    return dest


def without_collection(doc_text: str) -> str:
    """The EE file as someone who dropped the collection would have it (no dependencies.galaxy)."""
    doc = yaml.safe_load(doc_text)
    doc["dependencies"].pop("galaxy", None)
    return yaml.safe_dump(doc, sort_keys=False)


# ------------------------------------------------------------------------- build


def ansible_builder(ee_file: Path, tag: str, base: str, context: Path) -> None:
    exe = Path(sys.executable).parent / "ansible-builder"
    cmd = [
        str(exe if exe.exists() else "ansible-builder"),
        "build",
        "-f",
        str(ee_file),
        "-t",
        tag,
        "--context",
        str(context),
        "--container-runtime",
        "docker",
        "--build-arg",
        f"EE_BASE_IMAGE={base}",
        # No network inside the build (everything comes from the staged wheels and tarball); a
        # failed step leaves no container behind.
        "--extra-build-cli-args",
        "--network none --force-rm",
        "-v",
        "3",
    ]
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    run_progress(cmd, "ansible-builder", interesting=r"^(Step \d+/\d+|Successfully)", env=env)


def prune_stages() -> None:
    """Remove the untagged stage images (galaxy, builder) EE builds leave behind: they carry the
    base image's label. They would be rebuilt anyway when the collection changes."""
    out = run(
        ["docker", "images", "-q", "-f", "dangling=true", "-f", "label=org.hardening.test=ee-base"],
        check=False,
    )
    ids = sorted(set(out.split()))
    if ids:
        run(["docker", "rmi", *ids], check=False)


def build_ee(
    *,
    force: bool = False,
    tag: str | None = None,
    base: str | None = None,
    doc_text: str | None = None,
    repo: str = EE_IMAGE,
) -> Built:
    """Build (or find) the EE image; returns local/hardening-ee:<key>. BuildError on failure."""
    start = time.monotonic()
    text = doc_text if doc_text is not None else EE_FILE.read_text()
    doc = yaml.safe_load(text)
    if base is None:
        with images.build_lock():
            base_ref = base_image().ref
    else:
        base_ref = base
    base_id = run(["docker", "image", "inspect", "-f", "{{.Id}}", base_ref], check=False).strip()
    if not base_id:
        raise BuildError(
            f"base image {base_ref} is not on this machine's dockerd (the build pulls nothing): "
            "pull or build it first, or leave --base-image out to use local/ee-base"
        )
    with ee_lock():
        key = inputs_key(text, base_id)
        ref = f"{repo}:{key}"
        if images.image_exists(ref) and not force:
            if tag:
                run(["docker", "tag", ref, tag])
            run(["docker", "tag", ref, f"{repo}:latest"])
            return Built(ref, key, True, time.monotonic() - start)
        workdir = images.CACHE / "ee" / key
        try:
            ee_file = stage(workdir, doc, text)
            log(f"building {ref} from {base_ref} (ansible-builder, docker)")
            ansible_builder(ee_file, ref, base_ref, workdir / "context")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            prune_stages()
        run(["docker", "tag", ref, f"{repo}:latest"])
        if tag:
            run(["docker", "tag", ref, tag])
        images._prune_tags(repo, keep={key, "latest"})
    return Built(ref, key, False, time.monotonic() - start)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--force", action="store_true", help="rebuild even when the inputs are unchanged")
    ap.add_argument("--tag", help="also tag the image as REF (e.g. registry.example/hardening-ee:0.1.0)")
    ap.add_argument("--base-image", help="use this base image (Debian 12-like) instead of local/ee-base")
    args = ap.parse_args(argv)
    try:
        built = build_ee(force=args.force, tag=args.tag, base=args.base_image)
    except BuildError as e:
        print(f"[ee] ERROR: {e}", file=sys.stderr)
        return 1
    what = "cached" if built.cached else "built"
    print(
        f"[ee] {built.ref} ({what}, {built.seconds:.0f}s); also {EE_IMAGE}:latest"
        + (f", {args.tag}" if args.tag else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
