"""Build (or find in the cache) the images the integration tests, molecule and `make demo` use.

    .venv/bin/python -m tests.images.build [dind-host] [busybox] [plugin-double]
        [dind-host-bullseye] [dind-host-trixie] [--force]

Nothing is pulled from a registry. Everything starts from ONE shared Debian 12 root filesystem
made by `debootstrap --variant=minbase bookworm`, with the Debian mirror read from this
machine's own apt configuration at run time (override: HARDENING_DEBIAN_MIRROR). The engine
matrix (docs/engines.md) adds DinD hosts made the same way from Debian 11 (bullseye) and 13
(trixie) root filesystems, each with its own release's docker.io: local/dind-host-<suite>.

Every stage is keyed by a hash of what defines it (the stage recipe below plus the files it
copies in) and stored under $HARDENING_STATE_DIR/images (default
/var/tmp/hardening-docker-authz/images):

    base rootfs tar       debian-<suite>-minbase-<key>.tar      (debootstrap, ~2 minutes)
    local/dind-host-base:<key>   base + docker.io, sshd, ...     (apt-get in a chroot)
    local/dind-host:<key> (+ :latest)  + tests/images/dind-host/*  (seconds; bookworm)
    local/dind-host-bullseye:<key>, local/dind-host-trixie:<key> (+ :latest)  the same recipe
    local/busybox:<key>   (+ :latest)  from this machine's busybox-static
    plugin rootfs tar     opa-double-rootfs-<key>.tar           (base + python3, OPA bindings)
    127.0.0.1:5000/opa-docker-authz-double:<key> and :v0.10-linux-amd64 / :v0.10
                          the managed plugin made from tests/opa_docker_authz_double/ on the
                          plugin rootfs slimmed (SLIM_RECIPE: no apt/dpkg/perl/tools, OPA's
                          engine stripped), then smoke-tested with the double's own code
    old-tag rootfs tar    opa-double-old-rootfs-<key>.tar       (plugin rootfs + regopy)
    127.0.0.1:5000/opa-docker-authz-double:<key> and :0.8  (plugin-double-0.8) the same sources,
                          config.json with OPA_DOUBLE_TAG=0.8: tag 0.8's behaviour, Rego v0

An unchanged source finds its images at once; a changed file rebuilds only the stages after it.
Concurrent builds (several pytest sessions) are serialised by a lock file.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DOUBLE_DIR = ROOT / "tests" / "opa_docker_authz_double"
STATE_DIR = Path(os.environ.get("HARDENING_STATE_DIR", "/var/tmp/hardening-docker-authz"))
CACHE = STATE_DIR / "images"
REGISTRY = "127.0.0.1:5000"

SUITE = "bookworm"
# The engine matrix: Debian 11, 12 and 13, each with its own docker.io (docs/engines.md).
DIND_SUITES = ("bullseye", "bookworm", "trixie")
# The recipes are part of the cache keys: editing one rebuilds that stage and those after it.
BASE_RECIPE = {"suite": SUITE, "variant": "minbase", "include": [], "recipe": 1}
DIND_PACKAGES = ["docker.io", "iptables", "python3", "openssh-server", "ca-certificates", "procps"]
DIND_RECIPE = {"packages": DIND_PACKAGES, "recipe": 1}
# Debian 13 split the CLI out of docker.io (docker.io only Recommends docker-cli).
DIND_EXTRA_PACKAGES = {"trixie": ["docker-cli"]}
DIND_FINAL_RECIPE = 2  # bump when dind_host()'s final stage (copy, customize, commit) changes
# The double runs OPA's own engine (a Go c-shared library: glibc >= 2.34, bookworm has 2.36);
# python3-yaml reads YAML OPA configs, python3-cryptography verifies RS256 bundle signatures.
PLUGIN_PACKAGES = ["python3", "python3-yaml", "python3-cryptography"]
OPA_BINDINGS = "opa-golib-python-bindings==0.4.4"  # OPA 1.20.2; the wheel says Python >= 3.14
PLUGIN_RECIPE = {"packages": PLUGIN_PACKAGES, "pip": OPA_BINDINGS, "recipe": 2}

DIND_IMAGE = "local/dind-host"
BUSYBOX_IMAGE = "local/busybox"
PLUGIN_REPO = "opa-docker-authz-double"
# edge: a tag that names no release (the role cannot know its flags: tests of a plugin that
# exits at start on an argument it does not have)
PLUGIN_TAGS = ("v0.10-linux-amd64", "v0.10", "edge")
PLUGIN_SOURCES = ("server.py", "opa_input.py", "config.json")
# The old-tag double (OPA_DOUBLE_TAG): tag 0.8 embeds OPA 0.30 (Rego v0), evaluated with regopy.
REGOPY = "regopy==1.5.2"  # as requirements.txt
OLD_PLUGIN_TAG = "0.8"
OLD_PACKAGES = ["libatomic1"]  # regopy's librego_shared.so needs it
OLD_RECIPE = {"packages": OLD_PACKAGES, "pip": REGOPY, "tag": OLD_PLUGIN_TAG, "recipe": 1}
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"

# The pushed plugin's root filesystem is slimmed at the last stage (plugin_double; the rootfs tars
# above stay full, old_rootfs_tar's apt-get needs them): every host pulls and unpacks it at install
# (issue 13), and the real plugin is one ~37 MB Go binary. Removed: the files of these Debian
# packages (package manager, shells and tools, libraries only they link, tzdata: OPA's Go code
# embeds time/tzdata and Python's datetime here is UTC only), unless a kept package owns them too...
SLIM_DROP_PACKAGES = (
    "adduser", "apt", "bash", "bsdutils", "coreutils", "debconf", "debian-archive-keyring",
    "debianutils", "diffutils", "dpkg", "e2fsprogs", "findutils", "gpgv", "grep", "gzip", "hostname",
    "init-system-helpers", "libacl1", "libapt-pkg6.0", "libattr1", "libaudit-common", "libaudit1",
    "libblkid1", "libc-bin", "libcap-ng0", "libcap2", "libcom-err2", "libdb5.3", "libdebconfclient0",
    "libext2fs2", "libgcrypt20", "libgmp10", "libgnutls30", "libgpg-error0", "libgssapi-krb5-2",
    "libhogweed6", "libidn2-0", "libk5crypto3", "libkeyutils1", "libkrb5-3", "libkrb5support0",
    "liblz4-1", "libmd0", "libmount1", "libncursesw6", "libnettle8", "libnsl2", "libp11-kit0",
    "libpam-modules", "libpam-modules-bin", "libpam-runtime", "libpam0g", "libpcre2-8-0",
    "libreadline8", "libseccomp2", "libselinux1", "libsemanage-common", "libsemanage2", "libsepol2",
    "libsmartcols1", "libsqlite3-0", "libss2", "libstdc++6", "libsystemd0", "libtasn1-6", "libtinfo6",
    "libtirpc-common", "libtirpc3", "libudev1", "libunistring2", "libxxhash0", "libzstd1", "login",
    "logsave", "mawk", "mount", "ncurses-base", "ncurses-bin", "passwd", "perl-base",
    "readline-common", "sed", "sysvinit-utils", "tar", "tzdata", "usr-is-merged", "util-linux",
    "util-linux-extra",
)  # fmt: skip
# ... what the old-tag double still needs (regopy's librego_shared.so is C++) ...
SLIM_OLD_KEEP = ("libstdc++6",)
# ... and these paths: package databases, docs, the Python stdlib's tests, IDE, Tk, pip bootstrap,
# 2to3, pydoc topics, asyncio, unittest, xmlrpc, wsgiref, curses, venv, the extension modules of
# the libraries dropped above, and glibc's iconv modules (Python and Go bring their own codecs).
SLIM_DROP_PATHS = (
    "var/lib/dpkg", "var/lib/apt", "var/cache/apt", "var/cache/debconf", "var/log/*", "etc/apt",
    "etc/localtime", "etc/timezone", "usr/share/doc", "usr/share/man", "usr/share/info",
    "usr/share/locale", "usr/share/lintian", "usr/share/bug", "usr/share/zoneinfo",
    "usr/lib/x86_64-linux-gnu/gconv",
    "usr/lib/python3.11/test", "usr/lib/python3.11/idlelib", "usr/lib/python3.11/tkinter",
    "usr/lib/python3.11/turtledemo", "usr/lib/python3.11/ensurepip", "usr/lib/python3.11/lib2to3",
    "usr/lib/python3.11/pydoc_data", "usr/lib/python3.11/sqlite3", "usr/lib/python3.11/turtle.py",
    "usr/lib/python3.11/__pycache__/turtle.*", "usr/lib/python3.11/asyncio",
    "usr/lib/python3.11/unittest", "usr/lib/python3.11/xmlrpc", "usr/lib/python3.11/wsgiref",
    "usr/lib/python3.11/curses", "usr/lib/python3.11/venv",
    "usr/lib/python3.11/lib-dynload/_test*", "usr/lib/python3.11/lib-dynload/_ctypes_test.*",
    "usr/lib/python3.11/lib-dynload/xxlimited*", "usr/lib/python3.11/lib-dynload/_xxtestfuzz.*",
    "usr/lib/python3.11/lib-dynload/_dbm.*", "usr/lib/python3.11/lib-dynload/_sqlite3.*",
    "usr/lib/python3.11/lib-dynload/_asyncio.*", "usr/lib/python3.11/lib-dynload/_curses*",
    "usr/lib/python3.11/lib-dynload/readline.*", "usr/lib/python3.11/lib-dynload/nis.*",
    "usr/lib/python3.11/lib-dynload/ossaudiodev.*", "usr/lib/python3.11/lib-dynload/audioop.*",
)  # fmt: skip
# OPA's engine (a Go c-shared library built with debug info): `strip --strip-unneeded` (binutils).
SLIM_STRIP = ("usr/local/lib/python3.11/dist-packages/opa_bindings/libopabridge.so",)
SLIM_RECIPE = {
    "packages": SLIM_DROP_PACKAGES, "old_keep": SLIM_OLD_KEEP, "paths": SLIM_DROP_PATHS,
    "strip": SLIM_STRIP, "recipe": 1,
}  # fmt: skip

_T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[images {time.monotonic() - _T0:6.1f}s] {msg}", flush=True)


class BuildError(RuntimeError):
    pass


# ---------------------------------------------------------------------------- helpers


def sha(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:16]


def files_hash(paths: Sequence[Path]) -> str:
    return sha(*[f"{p.name}\0".encode() + p.read_bytes() for p in sorted(paths)])


def run(cmd: Sequence[str], *, check: bool = True, capture: bool = True, **kw: object) -> str:
    proc = subprocess.run(list(cmd), capture_output=capture, text=True, check=False, **kw)  # type: ignore[call-overload]
    if check and proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout or ""


def run_progress(
    cmd: Sequence[str], label: str, *, interesting: str = r".", env: dict[str, str] | None = None
) -> None:
    """Run a long command, showing a progress line every few seconds so it never looks hung."""
    start = time.monotonic()
    last_print = 0.0
    tail: list[str] = []
    proc = subprocess.Popen(
        list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1
    )
    assert proc.stdout is not None
    pat = re.compile(interesting)
    for line in proc.stdout:
        line = line.rstrip()
        tail = [*tail[-40:], line]
        now = time.monotonic()
        if pat.search(line) and now - last_print >= 3:
            log(f"{label}: {line[:100]} ({now - start:.0f}s)")
            last_print = now
    rc = proc.wait()
    if rc != 0:
        raise BuildError(f"{label} failed ({rc}): {' '.join(cmd)}\n" + "\n".join(tail))
    log(f"{label}: done in {time.monotonic() - start:.0f}s")


@contextlib.contextmanager
def build_lock(name: str = ".lock", what: str = "build") -> Iterator[None]:
    """Serialise builds that share the lock file CACHE/<name> (other locks stay free meanwhile)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / name, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another {what} holds the lock {name} in the image cache; waiting for it")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def image_exists(ref: str) -> bool:
    return (
        subprocess.run(["docker", "image", "inspect", ref], capture_output=True, check=False).returncode == 0
    )


# ------------------------------------------------------------------ the Debian mirror


def _deb822_stanzas(text: str) -> Iterator[dict[str, str]]:
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace() and key:
                fields[key] += " " + line.strip()
                continue
            if ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields:
            yield fields


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The URI this machine's apt uses for `<SUITE> main` (the first enabled deb entry)."""
    override = os.environ.get("HARDENING_DEBIAN_MIRROR")
    if override:
        return override
    candidates: list[str] = []
    lists = [
        apt_dir / "sources.list",
        *sorted(Path(p) for p in glob.glob(str(apt_dir / "sources.list.d/*.list"))),
    ]
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            line = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()  # type: ignore[assignment]
            if len(line) >= 4 and line[0] == "deb" and line[2] == SUITE and "main" in line[3:]:
                candidates.append(line[1])
    for path in sorted(Path(p) for p in glob.glob(str(apt_dir / "sources.list.d/*.sources"))):
        for st in _deb822_stanzas(path.read_text(errors="replace")):
            if st.get("enabled", "yes").lower() == "no":
                continue
            if (
                "deb" in st.get("types", "").split()
                and SUITE in st.get("suites", "").split()
                and "main" in st.get("components", "").split()
            ):
                candidates.extend(st.get("uris", "").split())
    if not candidates:
        raise BuildError(
            f"no enabled 'deb ... {SUITE} main' entry in {apt_dir}/sources.list(.d): "
            "configure apt for Debian 12 or set HARDENING_DEBIAN_MIRROR"
        )
    return candidates[0].rstrip("/")


# ---------------------------------------------------------------------- root filesystems


def base_recipe(suite: str = SUITE) -> dict[str, object]:
    """The minbase recipe of a release (bookworm's is BASE_RECIPE itself: its cache key stays)."""
    if suite not in DIND_SUITES:
        raise BuildError(f"unknown Debian release {suite!r}: use one of {', '.join(DIND_SUITES)}")
    return {**BASE_RECIPE, "suite": suite}


def base_key(suite: str = SUITE) -> str:
    return sha(json.dumps(base_recipe(suite), sort_keys=True), platform.machine())


def base_tar(suite: str = SUITE) -> Path:
    """A release's minbase root filesystem, as a tar (debootstrap on a cache miss). Every release
    comes from the mirror this machine's apt uses for Debian 12 (deb.debian.org carries them all)."""
    key = base_key(suite)
    tar = CACHE / f"debian-{suite}-minbase-{key}.tar"
    if tar.exists():
        return tar
    mirror = debian_mirror()
    log(f"debootstrap --variant=minbase {suite} (first run only: about 2-4 minutes)")
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="debootstrap-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        cmd = ["debootstrap", "--variant=minbase"]
        if BASE_RECIPE["include"]:
            cmd.append("--include=" + ",".join(BASE_RECIPE["include"]))  # type: ignore[arg-type]
        run_progress([*cmd, suite, str(rootfs), mirror], f"debootstrap {suite}", interesting=r"^I: ")
        _tar_dir(rootfs, tar)
    log(f"base root filesystem cached: {tar.name} ({tar.stat().st_size // 2**20} MB)")
    return tar


def _tar_dir(src: Path, dest: Path) -> None:
    part = dest.with_suffix(".part")
    run(["tar", "--numeric-owner", "-C", str(src), "-cf", str(part), "."])
    part.rename(dest)


def _extract(tar: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    run(["tar", "--numeric-owner", "-C", str(dest), "-xpf", str(tar)])


@contextlib.contextmanager
def chroot_mounts(rootfs: Path) -> Iterator[None]:
    """/proc bind-mounted, the machine's resolv.conf, and no service starts during apt-get."""
    mounted: list[Path] = []
    try:
        for sub in ("proc", "dev/pts"):
            target = rootfs / sub
            target.mkdir(parents=True, exist_ok=True)
            run(["mount", "--bind", f"/{sub}", str(target)])
            mounted.append(target)
        shutil.copyfile("/etc/resolv.conf", rootfs / "etc/resolv.conf")
        policy = rootfs / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        yield
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", "-l", str(target)], check=False)
        (rootfs / "usr/sbin/policy-rc.d").unlink(missing_ok=True)


def apt_install(rootfs: Path, packages: Sequence[str], label: str) -> None:
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND": "noninteractive",
        "LC_ALL": "C",
        "HOME": "/root",
    }
    with chroot_mounts(rootfs):
        run_progress(["chroot", str(rootfs), "apt-get", "-q", "update"], f"{label} apt-get update", env=env)
        run_progress(
            [
                "chroot",
                str(rootfs),
                "apt-get",
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "-o",
                "Dpkg::Use-Pty=0",
                *packages,
            ],
            f"{label} apt-get install",
            interesting=r"^(Get:|Unpacking|Setting up)",
            env=env,
        )
        run(["chroot", str(rootfs), "apt-get", "clean"], env=env)


def slim(rootfs: Path) -> None:
    """Drop what a test host never reads: apt lists, docs, man pages, locales, logs."""
    for pattern in (
        "var/lib/apt/lists/*",
        "var/cache/apt/*.bin",
        "usr/share/doc/*",
        "usr/share/man/*",
        "usr/share/info/*",
        "usr/share/locale/*",
        "var/log/apt/*",
        "var/log/dpkg.log",
        "var/cache/debconf/*-old",
        "etc/ssh/ssh_host_*",
    ):
        for p in glob.glob(str(rootfs / pattern)):
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.unlink(p)
    (rootfs / "etc/resolv.conf").write_text("")


def docker_import(rootfs: Path, ref: str, changes: Sequence[str] = ()) -> None:
    cmd = ["docker", "import"]
    for c in changes:
        cmd += ["--change", c]
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    try:
        run([*cmd, "-", ref], stdin=tar.stdout)
    finally:
        assert tar.stdout is not None
        tar.stdout.close()
        if tar.wait() != 0:
            raise BuildError(f"tar of {rootfs} failed")


# ------------------------------------------------------------------------- the images


@dataclass(frozen=True)
class Built:
    ref: str
    key: str
    cached: bool
    seconds: float


def dind_repo(suite: str = SUITE) -> str:
    """local/dind-host for Debian 12 (what every test uses by default), local/dind-host-<suite> else."""
    base_recipe(suite)  # validates the name
    return DIND_IMAGE if suite == SUITE else f"{DIND_IMAGE}-{suite}"


def dind_recipe(suite: str = SUITE) -> dict[str, list[str] | int]:
    """The packages of a release's host (bookworm's is DIND_RECIPE itself: its cache key stays)."""
    extra = DIND_EXTRA_PACKAGES.get(suite, [])
    return {**DIND_RECIPE, "packages": [*DIND_PACKAGES, *extra]} if extra else dict(DIND_RECIPE)


def dind_host(force: bool = False, suite: str = SUITE) -> Built:
    """local/dind-host:<key>: Debian 12 + docker.io + sshd + python3, entrypoint dind-entrypoint
    (local/dind-host-<suite>:<key>: the same recipe on another release's root filesystem)."""
    start = time.monotonic()
    repo = dind_repo(suite)
    pkg_key = sha(base_key(suite), json.dumps(dind_recipe(suite), sort_keys=True))
    key = sha(pkg_key, files_hash(list((HERE / "dind-host").iterdir())), f"final-{DIND_FINAL_RECIPE}")
    ref = f"{repo}:{key}"
    if image_exists(ref) and not force:
        run(["docker", "tag", ref, f"{repo}:latest"])
        return Built(ref, key, True, time.monotonic() - start)
    base_ref = f"{DIND_IMAGE}-base:{pkg_key}"
    if not image_exists(base_ref) or force:
        tar = base_tar(suite)
        packages = dind_recipe(suite)["packages"]
        log(f"building {base_ref} ({suite}): apt-get install {' '.join(packages)} in a chroot")
        with tempfile.TemporaryDirectory(dir=CACHE, prefix="dind-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            _extract(tar, rootfs)
            apt_install(rootfs, packages, f"dind-host {suite}")
            slim(rootfs)
            log(f"importing {base_ref}")
            docker_import(rootfs, base_ref)
    log(f"building {ref} from {base_ref} + tests/images/dind-host/")
    create = ["docker", "create", "--network", "none", base_ref, "/bin/sh", "/usr/local/sbin/dind-customize"]
    cid = run(create).strip()
    try:
        for src, dest in (("dind-entrypoint", "dind-entrypoint"), ("customize.sh", "dind-customize")):
            run(["docker", "cp", str(HERE / "dind-host" / src), f"{cid}:/usr/local/sbin/{dest}"])
        run(["docker", "start", "-a", cid])
        changes = [
            'ENTRYPOINT ["/usr/local/sbin/dind-entrypoint"]',
            "CMD []",
            f"LABEL org.hardening.test=dind-host org.hardening.key={key}",
        ]
        run(["docker", "commit", *[a for c in changes for a in ("--change", c)], cid, ref])
    finally:
        run(["docker", "rm", "-f", cid], check=False)
    run(["docker", "tag", ref, f"{repo}:latest"])
    _prune_tags(repo, keep={key, "latest"})
    return Built(ref, key, False, time.monotonic() - start)


def busybox(force: bool = False) -> Built:
    """local/busybox:<key>: this machine's static busybox plus its applet links."""
    start = time.monotonic()
    src = Path("/bin/busybox")
    if not src.exists() or not _static(src):
        raise BuildError(
            "/bin/busybox (static) is missing: apt-get install busybox-static (scripts/setup.sh does)"
        )
    key = sha(src.read_bytes(), "busybox-recipe-1")
    ref = f"{BUSYBOX_IMAGE}:{key}"
    if image_exists(ref) and not force:
        run(["docker", "tag", ref, f"{BUSYBOX_IMAGE}:latest"])
        return Built(ref, key, True, time.monotonic() - start)
    log(f"building {ref}")
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="busybox-") as tmp:
        root = Path(tmp)
        for d in ("bin", "tmp", "etc", "proc", "sys", "dev"):
            (root / d).mkdir()
        shutil.copy2(src, root / "bin/busybox")
        for applet in run([str(src), "--list"]).split():
            if applet != "busybox":
                (root / "bin" / applet).symlink_to("busybox")
        (root / "etc/passwd").write_text(
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"
        )
        (root / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
        docker_import(root, ref, ['CMD ["sh"]', f"LABEL org.hardening.test=busybox org.hardening.key={key}"])
    run(["docker", "tag", ref, f"{BUSYBOX_IMAGE}:latest"])
    _prune_tags(BUSYBOX_IMAGE, keep={key, "latest"})
    return Built(ref, key, False, time.monotonic() - start)


def _static(path: Path) -> bool:
    # `file` may be absent: a static ELF has no PT_INTERP program header.
    return b"/lib64/ld-linux" not in path.read_bytes()[:4096]


def _prune_tags(repo: str, keep: set[str]) -> None:
    out = run(["docker", "images", repo, "--format", "{{.Tag}}"], check=False)
    for tag in out.split():
        if tag not in keep and tag != "<none>":
            run(["docker", "rmi", f"{repo}:{tag}"], check=False)


def plugin_rootfs_tar() -> Path:
    """Debian minbase + python3 (+ yaml, cryptography) + OPA's engine (opa-golib-python-bindings,
    the wheel fetched from PyPI with pip on this machine and installed with --ignore-requires-python:
    it declares Python >= 3.14 but runs on bookworm's 3.11)."""
    key = sha(base_key(), json.dumps(PLUGIN_RECIPE, sort_keys=True))
    tar = CACHE / f"opa-double-rootfs-{key}.tar"
    if tar.exists():
        return tar
    base = base_tar()
    log(
        "building the plugin double's root filesystem: "
        f"apt-get install {' '.join(PLUGIN_PACKAGES)}, pip install {OPA_BINDINGS}"
    )
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="double-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _extract(base, rootfs)
        apt_install(rootfs, PLUGIN_PACKAGES, "plugin-double")
        pyver, glibc = run(
            [
                "chroot",
                str(rootfs),
                "python3",
                "-c",
                "import platform, sys; print('%d.%d' % sys.version_info[:2], platform.libc_ver()[1])",
            ]
        ).split()
        arch = platform.machine()
        glibc_minor = int(glibc.split(".")[1])
        platforms = [f"manylinux_2_{m}_{arch}" for m in range(17, glibc_minor + 1)] + [
            f"manylinux2014_{arch}"
        ]
        wheels = Path(tmp) / "wheels"
        log(f"pip download {OPA_BINDINGS} (manylinux wheel for glibc {glibc})")
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--disable-pip-version-check",
                "--no-deps",
                "--only-binary=:all:",
                "--ignore-requires-python",
                "--python-version",
                pyver,
                *[a for p in platforms for a in ("--platform", p)],
                "-d",
                str(wheels),
                OPA_BINDINGS,
            ]
        )
        site = rootfs / f"usr/local/lib/python{pyver}/dist-packages"
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "--no-deps",
                "--no-index",
                "--no-compile",
                "--ignore-requires-python",
                "--target",
                str(site),
                *map(str, wheels.glob("*.whl")),
            ]
        )
        smoke = (
            "import opa_bindings, yaml, cryptography; e = opa_bindings.OpaEngine(); "
            "e.add_policy('p.rego', 'package p\\nx := true\\n'); assert e.eval_document('p.x') is True"
        )
        run(["chroot", str(rootfs), "python3", "-c", smoke])
        slim(rootfs)
        _tar_dir(rootfs, tar)
    log(f"plugin root filesystem cached: {tar.name} ({tar.stat().st_size // 2**20} MB)")
    return tar


def _pip_into(rootfs: Path, tmp: Path, requirement: str) -> None:
    """pip download the manylinux wheel of ``requirement`` for the root filesystem's Python and
    glibc, and install it into the root filesystem's dist-packages."""
    pyver, glibc = run(
        [
            "chroot",
            str(rootfs),
            "python3",
            "-c",
            "import platform, sys; print('%d.%d' % sys.version_info[:2], platform.libc_ver()[1])",
        ]
    ).split()
    arch = platform.machine()
    platforms = [f"manylinux_2_{m}_{arch}" for m in range(17, int(glibc.split(".")[1]) + 1)] + [
        f"manylinux2014_{arch}"
    ]
    wheels = tmp / "wheels"
    log(f"pip download {requirement} (manylinux wheel for Python {pyver}, glibc {glibc})")
    run(
        [
            sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
            "--only-binary=:all:", "--python-version", pyver,
            *[a for p in platforms for a in ("--platform", p)],
            "-d", str(wheels), requirement,
        ]
    )  # fmt: skip
    site = rootfs / f"usr/local/lib/python{pyver}/dist-packages"
    run(
        [
            sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
            "--no-index", "--no-compile", "--target", str(site), *map(str, wheels.glob("*.whl")),
        ]
    )  # fmt: skip


def old_rootfs_tar() -> Path:
    """The plugin double's root filesystem plus regopy (the old-tag mode's Rego v0 engine)."""
    base = plugin_rootfs_tar()
    key = sha(base.name, json.dumps(OLD_RECIPE, sort_keys=True))
    tar = CACHE / f"opa-double-old-rootfs-{key}.tar"
    if tar.exists():
        return tar
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="double-old-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _extract(base, rootfs)
        apt_install(rootfs, OLD_PACKAGES, "plugin-double old tag")
        _pip_into(rootfs, Path(tmp), REGOPY)
        smoke = (
            "import regopy; r = regopy.Interpreter(); r.add_module('p.rego', 'package p\\nx { true }\\n'); "
            "assert str(r.query('data.p.x')) == '{\"expressions\":[true]}', r.query('data.p.x')"
        )
        run(["chroot", str(rootfs), "python3", "-c", smoke])
        slim(rootfs)
        _tar_dir(rootfs, tar)
    log(f"old-tag plugin root filesystem cached: {tar.name} ({tar.stat().st_size // 2**20} MB)")
    return tar


# Runs in a chroot of the plugin's root filesystem, with its own python3: every path (and every
# absolute symlink in one, such as /lib64's) resolves inside the root filesystem.
_SLIM_SCRIPT = r"""
import glob, json, os, shutil, subprocess, sys
drop, paths = json.loads(sys.argv[1])
def owned(pkg):
    out = set()
    for lst in glob.glob(f"/var/lib/dpkg/info/{pkg}.list") + glob.glob(f"/var/lib/dpkg/info/{pkg}:*.list"):
        out.update(line.rstrip("\n") for line in open(lst) if line.strip())
    return out
lists = glob.glob("/var/lib/dpkg/info/*.list")
installed = {os.path.basename(p).rsplit(".", 1)[0].split(":")[0] for p in lists}
kept = set().union(*(owned(p) for p in installed - set(drop)))
removed = 0
for pkg in sorted(installed & set(drop)):
    for path in sorted(owned(pkg) - kept, reverse=True):
        if os.path.islink(path) or os.path.isfile(path):
            os.unlink(path)
            removed += 1
        elif os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)
for pattern in paths:
    for path in glob.glob("/" + pattern):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
        removed += 1
loader = sorted(glob.glob("/usr/lib64/ld-linux-*.so.*") + glob.glob("/usr/lib/*/ld-linux-*.so.*"))[0]
missing = []
for top in ("/usr", "/opt"):
    for d, _, names in os.walk(top):
        for n in names:
            f = os.path.join(d, n)
            if os.path.islink(f) or not os.path.isfile(f):
                continue
            with open(f, "rb") as fh:
                if fh.read(4) != b"\x7fELF":
                    continue
            out = subprocess.run([loader, "--list", f], capture_output=True, text=True).stdout
            missing += [f"{f}: {l.strip()}" for l in out.splitlines() if "not found" in l]
if missing:
    sys.exit("shared libraries removed that are still needed:\n" + "\n".join(missing))
print(removed)
"""

# The double's needs, checked on the slimmed root filesystem with the double's own code: its
# import, OPA's engine (policy-file evaluation and -check), a YAML config, an RS256 bundle signature
# verified and a tampered one refused (cryptography), http.server/urllib imported (its socket,
# remote bundles), and regopy for the old tag.
_DOUBLE_SMOKE = r"""
import base64, json, sys, tempfile
sys.path.insert(0, "/opt/opa-docker-authz-double")
import server, opa_input, http.server, urllib.request, socketserver
assert server.evaluate_policy("p.rego", "package p\nx := input.a + 1\n", {"a": 1}, "data.p.x") == 2
with tempfile.NamedTemporaryFile("w", suffix=".rego") as fh:
    fh.write("package p\nx if {\n"); fh.flush()
    rc, err = server.check_policy(fh.name)
    assert rc == 1 and "rego_parse_error" in err, (rc, err)
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
pem = key.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
).decode()
indented = "".join("      " + line + "\n" for line in pem.splitlines())
config = server.parse_config("keys:\n  k1:\n    algorithm: RS256\n    key: |\n" + indented)
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
files = {"data.yaml": b"a: [1, 2]\n"}
digest = server._file_hash("data.yaml", files["data.yaml"])
payload = {"files": [{"name": "data.yaml", "hash": digest, "algorithm": "SHA-256"}]}
signed = b64(json.dumps({"alg": "RS256", "kid": "k1"}).encode()) + "." + b64(json.dumps(payload).encode())
sig = key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
files[".signatures.json"] = json.dumps({"signatures": [signed + "." + b64(sig)]}).encode()
server.verify_signatures(files, {}, config.keys)
bad = signed + "." + b64(sig[:-1] + bytes([sig[-1] ^ 1]))
tampered = dict(files, **{".signatures.json": json.dumps({"signatures": [bad]}).encode()})
try:
    server.verify_signatures(tampered, {}, config.keys)
    raise AssertionError("a tampered RS256 signature verified")
except server.BundleError:
    pass
if server.emulated_tag():
    assert server.evaluate_policy_v0("p.rego", "package p\nx { true }\n", {}, "data.p.x") is True
print("double smoke ok")
"""


def slim_plugin_rootfs(rootfs: Path, old_tag: str = "") -> None:
    """Remove from the plugin's root filesystem what the double never reads (SLIM_RECIPE), strip
    OPA's engine, and fail when a remaining program or library misses a shared library."""
    drop = [p for p in SLIM_DROP_PACKAGES if not (old_tag and p in SLIM_OLD_KEEP)]
    strip = shutil.which("strip")
    if not strip:
        raise BuildError("strip is missing (slimming the plugin double): apt-get install binutils")
    for rel in SLIM_STRIP:
        target = (rootfs / rel).resolve()
        if not target.is_relative_to(rootfs.resolve()) or not target.is_file():
            raise BuildError(f"{rel} is not a file in the plugin's root filesystem")
        run([strip, "--strip-unneeded", str(target)])
    removed = run(["chroot", str(rootfs), "python3", "-c", _SLIM_SCRIPT, json.dumps([drop, SLIM_DROP_PATHS])])
    log(f"plugin root filesystem slimmed: {removed.strip()} paths removed")


def smoke_plugin_rootfs(rootfs: Path, old_tag: str = "") -> None:
    """Run the double's own code on its final root filesystem (with OPA_DOUBLE_TAG for the old tag)."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "HOME": "/root"}
    if old_tag:
        env["OPA_DOUBLE_TAG"] = old_tag
    proc = subprocess.run(
        ["chroot", str(rootfs), "python3", "-B", "-c", _DOUBLE_SMOKE], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise BuildError(
            "the double fails on its slimmed root filesystem (SLIM_RECIPE removed something it "
            f"needs; tests/images/build.py _DOUBLE_SMOKE):\n{proc.stdout}{proc.stderr}"
        )


def _registry(
    method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(f"http://{REGISTRY}{path}", data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)
    except OSError as e:
        raise BuildError(f"registry {REGISTRY} unreachable ({e}): run scripts/testenv.sh up") from e


def _manifest(tag: str) -> tuple[bytes, str] | None:
    status, body, headers = _registry(
        "GET", f"/v2/{PLUGIN_REPO}/manifests/{tag}", headers={"Accept": MANIFEST_V2}
    )
    if status != 200:
        return None
    return body, headers.get("Docker-Content-Digest", "")


def plugin_double(force: bool = False, old_tag: str = "") -> Built:
    """Build the opa-docker-authz test double and push it to 127.0.0.1:5000 under its tags
    (``old_tag`` "0.8": the old-tag double, tagged :0.8, its config.json setting OPA_DOUBLE_TAG)."""
    start = time.monotonic()
    missing = [n for n in PLUGIN_SOURCES if not (DOUBLE_DIR / n).is_file()]
    if missing:
        raise BuildError(f"tests/opa_docker_authz_double is missing {', '.join(missing)}")
    rootfs_tar = old_rootfs_tar() if old_tag else plugin_rootfs_tar()
    tags = (old_tag,) if old_tag else PLUGIN_TAGS
    key = sha(
        rootfs_tar.name,
        files_hash([DOUBLE_DIR / n for n in PLUGIN_SOURCES]),
        json.dumps(SLIM_RECIPE, sort_keys=True),
        _SLIM_SCRIPT,
        _DOUBLE_SMOKE,
    )
    if old_tag:
        key = sha(key, f"old-tag-{old_tag}")
    ref = f"{REGISTRY}/{PLUGIN_REPO}:{key}"
    have = _manifest(key)
    if have and not force:
        for tag in tags:
            current = _manifest(tag)
            if not current or current[1] != have[1]:
                _put_manifest(tag, have[0])
        return Built(f"{REGISTRY}/{PLUGIN_REPO}:{tags[0]}", key, True, time.monotonic() - start)
    log(f"building plugin {ref}")
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="double-plugin-") as tmp:
        build = Path(tmp)
        rootfs = build / "rootfs"
        _extract(rootfs_tar, rootfs)
        app = rootfs / "opt/opa-docker-authz-double"
        app.mkdir(parents=True)
        for name in PLUGIN_SOURCES:
            if name.endswith(".py"):
                shutil.copy2(DOUBLE_DIR / name, app / name)
        for d in ("opa", "run/docker/plugins"):
            (rootfs / d).mkdir(parents=True, exist_ok=True)
        slim_plugin_rootfs(rootfs, old_tag)
        smoke_plugin_rootfs(rootfs, old_tag)
        shutil.copy2(DOUBLE_DIR / "config.json", build / "config.json")
        if old_tag:
            config = json.loads((DOUBLE_DIR / "config.json").read_text())
            config["description"] = (
                f"TEST DOUBLE of opa-docker-authz {old_tag} (Rego v0 as its OPA 0.x parses, evaluated "
                "with regopy) for the hardening.docker_authz tests; not the official plugin"
            )
            config["env"] = [{"name": "OPA_DOUBLE_TAG", "description": "the tag emulated", "value": old_tag}]
            (build / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        run(["docker", "plugin", "rm", "-f", ref], check=False)
        run(["docker", "plugin", "create", ref, str(build)])
    try:
        log(f"pushing {ref}")
        run(["docker", "plugin", "push", ref])
    finally:
        # The registry is the cache; the machine's dockerd keeps no plugin (it never enables one).
        run(["docker", "plugin", "rm", "-f", ref], check=False)
    pushed = _manifest(key)
    if not pushed:
        raise BuildError(f"{ref} pushed but the registry has no manifest for it")
    for tag in tags:
        _put_manifest(tag, pushed[0])
    return Built(f"{REGISTRY}/{PLUGIN_REPO}:{tags[0]}", key, False, time.monotonic() - start)


def _put_manifest(tag: str, body: bytes) -> None:
    status, text, _ = _registry(
        "PUT", f"/v2/{PLUGIN_REPO}/manifests/{tag}", body=body, headers={"Content-Type": MANIFEST_V2}
    )
    if status not in (200, 201):
        raise BuildError(f"tagging {PLUGIN_REPO}:{tag} in {REGISTRY} failed: HTTP {status} {text[:200]!r}")


def _dind_builder(suite: str) -> Callable[[bool], Built]:
    return lambda force: dind_host(force, suite=suite)


BUILDERS: dict[str, Callable[[bool], Built]] = {
    "dind-host": dind_host,
    "busybox": busybox,
    "plugin-double": plugin_double,
    f"plugin-double-{OLD_PLUGIN_TAG}": lambda force: plugin_double(force, old_tag=OLD_PLUGIN_TAG),
    **{f"dind-host-{s}": _dind_builder(s) for s in DIND_SUITES if s != SUITE},
}


def build(names: Sequence[str], force: bool = False) -> dict[str, Built]:
    if os.geteuid() != 0:
        raise BuildError("image builds need root (debootstrap, chroot, mount)")
    out: dict[str, Built] = {}
    for name in names:
        # The other releases' hosts share no stage with the Debian 12 images: their own lock
        # lets a first (minutes long) bullseye/trixie build leave the everyday images free.
        suite = name.removeprefix("dind-host-") if name.startswith("dind-host-") else SUITE
        with build_lock() if suite == SUITE else build_lock(f".lock-{suite}", f"{suite} build"):
            result = BUILDERS[name](force)
        what = "cached" if result.cached else "built"
        log(f"{name}: {result.ref} ({what}, {result.seconds:.1f}s)")
        out[name] = result
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="*", help=f"any of {', '.join(BUILDERS)} (default: all)")
    ap.add_argument("--force", action="store_true", help="rebuild the named images' final stages")
    ap.add_argument("--mirror", action="store_true", help="print the Debian mirror apt uses here and exit")
    args = ap.parse_args(argv)
    unknown = [n for n in args.images if n not in BUILDERS]
    if unknown:
        ap.error(f"unknown image(s) {', '.join(unknown)}; choose from {', '.join(BUILDERS)}")
    if args.mirror:
        print(debian_mirror())
        return 0
    try:
        build(args.images or list(BUILDERS), force=args.force)
    except BuildError as e:
        print(f"[images] ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
