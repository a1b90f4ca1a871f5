#!/usr/bin/env bash
# One-time (and idempotent) set-up for `make demo` and `make test` on a Debian 12 machine:
#   1. the Debian packages the tests and the demo need (only when one is missing);
#   2. .venv with the pinned Python tooling from requirements.txt (rebuilt when it changes)
#      and OPA's engine (opa-golib-python-bindings, see OPA_BINDINGS);
#   3. .venv-ansible-min with the oldest ansible-core of meta/runtime.yml's range and
#      .venv-ansible-max with the newest release (it needs Python >= 3.12: pyenv's, here), so
#      the collection tarball is smoke-tested at both ends of the range too.
# Re-running it when nothing changed takes well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(curl docker.io docker-registry busybox-static debootstrap iptables openssh-client ca-certificates qemu-system-x86 qemu-utils binutils)
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
ANSIBLE_MIN="2.17.14"
ANSIBLE_MAX="2.21.5"
OPA_BINDINGS="opa-golib-python-bindings==0.4.4"

log() { printf '[setup] %s\n' "$*"; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "[setup] missing Debian packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [[ ! -x .venv/bin/python || "$(cat .venv/.requirements.sha256 2>/dev/null)" != "$want" ]]; then
  log "creating .venv from requirements.txt ($PYTHON)"
  rm -rf .venv
  "$PYTHON" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  echo "$want" > .venv/.requirements.sha256
  rm -f .venv/.opa-bindings
fi
# OPA's own Rego engine (OPA 1.20.2 as a Go c-shared library) for the policy tests, the
# controller-side compile check and the plugin double. Its wheel declares Python >= 3.14 but
# runs on 3.11, which requirements.txt cannot express: installed here with
# --ignore-requires-python (again whenever .venv is rebuilt or the pin below changes).
if [[ "$(cat .venv/.opa-bindings 2>/dev/null)" != "$OPA_BINDINGS" ]]; then
  log "installing $OPA_BINDINGS into .venv"
  .venv/bin/pip install -q --disable-pip-version-check --ignore-requires-python "$OPA_BINDINGS"
  .venv/bin/python -c 'import opa_bindings; opa_bindings.OpaEngine().close()'
  echo "$OPA_BINDINGS" > .venv/.opa-bindings
fi

if [[ ! -x .venv-ansible-min/bin/ansible-playbook || "$(cat .venv-ansible-min/.version 2>/dev/null)" != "$ANSIBLE_MIN" ]]; then
  log "creating .venv-ansible-min (ansible-core $ANSIBLE_MIN)"
  rm -rf .venv-ansible-min
  "$PYTHON" -m venv .venv-ansible-min
  .venv-ansible-min/bin/pip install -q --disable-pip-version-check "ansible-core==$ANSIBLE_MIN"
  echo "$ANSIBLE_MIN" > .venv-ansible-min/.version
fi
# ansible-core 2.20 and later need Python >= 3.12 on the controller; Debian 12 has 3.11, so
# take the first newer interpreter found (pyenv's shims fail here: use its versions directly).
find_python312() {
  local c
  for c in python3.13 python3.12 "$(pyenv root 2>/dev/null || echo /root/.pyenv)"/versions/3.1[2-9]*/bin/python3; do
    [[ -n "$c" ]] || continue
    "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1 && { command -v "$c"; return 0; }
  done
  return 1
}
if [[ ! -x .venv-ansible-max/bin/ansible-playbook || "$(cat .venv-ansible-max/.version 2>/dev/null)" != "$ANSIBLE_MAX" ]]; then
  if PY312=$(find_python312); then
    log "creating .venv-ansible-max (ansible-core $ANSIBLE_MAX, $PY312)"
    rm -rf .venv-ansible-max
    "$PY312" -m venv .venv-ansible-max
    .venv-ansible-max/bin/pip install -q --disable-pip-version-check "ansible-core==$ANSIBLE_MAX"
    echo "$ANSIBLE_MAX" > .venv-ansible-max/.version
  else
    log "WARNING: no Python >= 3.12 found: .venv-ansible-max (ansible-core $ANSIBLE_MAX) not created; its collection test will fail"
  fi
fi
log "ready"
