#!/usr/bin/env bash
# make demo: harden a disposable Docker host with the OPA authorization plugin, the way an
# operator would, and show the result.
#   1. images: the Docker-in-Docker host and the opa-docker-authz test double (built once and
#      cached; rebuilt only when their sources change), the double pushed to 127.0.0.1:5000;
#   2. a disposable Docker host: a Debian 12 container with its own dockerd and sshd
#      (never the machine's own dockerd or /etc/docker);
#   3. an operator's inventory for it, pointing the role at the registry mirror of the plugin;
#   4. ansible-playbook playbooks/harden.yml, then playbooks/verify.yml (the probe table);
#   5. the real `docker run --privileged` on that host, refused by the plugin, and a compliant
#      `docker run` that works.
# make demo CLEAN=1 removes the demo host and its files (the image cache stays, so the next run
# is fast).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE_DIR="${HARDENING_STATE_DIR:-/var/tmp/hardening-docker-authz}"
DEMO_DIR="$STATE_DIR/demo"
HOST=hardening-test-demo
PY="$ROOT/.venv/bin/python"
export ANSIBLE_CONFIG="$ROOT/ansible.cfg" PATH="$ROOT/.venv/bin:$PATH"
export ANSIBLE_DISPLAY_SKIPPED_HOSTS=false ANSIBLE_FORCE_COLOR="${ANSIBLE_FORCE_COLOR:-0}"
T0=$SECONDS

say() { printf '\n\033[1m==> [demo %3ss] %s\033[0m\n' "$((SECONDS - T0))" "$*"; }
[[ -x $PY ]] || { echo "[demo] .venv missing: run 'make demo' (it runs scripts/setup.sh first)" >&2; exit 1; }

if [[ "${CLEAN:-0}" == 1 ]]; then
  say "removing the demo host $HOST and $DEMO_DIR"
  if docker inspect "$HOST" >/dev/null 2>&1; then "$PY" -m tests.lib.dind down "$HOST"; fi
  rm -rf "$DEMO_DIR"
  say "done. Kept: the image cache ($STATE_DIR/images, local/* images, the double in 127.0.0.1:5000), which makes the next run fast."
  exit 0
fi

say "1/5 images (cached after the first run; the first run builds a Debian root filesystem, a few minutes)"
"$PY" -m tests.images.build dind-host busybox plugin-double

say "2/5 a disposable Docker host ($HOST: its own dockerd and sshd on 127.0.0.1)"
if docker inspect "$HOST" >/dev/null 2>&1; then
  echo "[demo] replacing the previous demo host"
  "$PY" -m tests.lib.dind down "$HOST" >/dev/null
fi
mkdir -p "$DEMO_DIR"
"$PY" -m tests.lib.dind up --name "$HOST" --inventory "$DEMO_DIR/hosts.json"

say "3/5 the operator's inventory ($DEMO_DIR/inventory.yml)"
"$PY" - "$DEMO_DIR/hosts.json" "$DEMO_DIR/inventory.yml" <<'PY'
import json, sys
hosts = json.load(open(sys.argv[1]))["all"]["children"]["docker_hosts"]["hosts"]
lines = ["# Written by scripts/demo.sh: one disposable Docker host, reached over SSH.",
         "docker_hosts:",
         "  vars:",
         "    # the registry mirror of ghcr.io/open-policy-agent/opa-docker-authz (here: the test double)",
         "    docker_authz_plugin_image: 127.0.0.1:5000/opa-docker-authz-double:v0.10-linux-amd64",
         "  hosts:"]
for name, hv in hosts.items():
    lines.append(f"    {name}:")
    lines += [f"      {k}: {json.dumps(v)}" for k, v in hv.items()]
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
PY
cat "$DEMO_DIR/inventory.yml"

say "4/5 ansible-playbook -i $DEMO_DIR/inventory.yml playbooks/harden.yml"
t=$SECONDS
ansible-playbook -i "$DEMO_DIR/inventory.yml" playbooks/harden.yml
converge=$((SECONDS - t))
t=$SECONDS
ansible-playbook -i "$DEMO_DIR/inventory.yml" playbooks/harden.yml | tail -n 3
echo "[demo] first converge ${converge}s; a second run changes nothing ($((SECONDS - t))s, see changed=0 above)"

say "    ansible-playbook -i $DEMO_DIR/inventory.yml playbooks/verify.yml  (the probe table)"
ansible-playbook -i "$DEMO_DIR/inventory.yml" playbooks/verify.yml

say "5/5 on $HOST: docker run --rm --privileged local/busybox true"
set +e
err=$(docker exec "$HOST" docker run --rm --privileged local/busybox true 2>&1)
set -e
echo "$err"
if ! grep -q "authorization denied by plugin" <<<"$err"; then
  echo "[demo] FAILED: the privileged run was not refused by the authorization plugin" >&2
  exit 1
fi
echo
echo "\$ docker run --rm local/busybox echo ...   (a compliant run)"
docker exec "$HOST" docker run --rm local/busybox echo "compliant container ran"

login=$("$PY" - "$DEMO_DIR/hosts.json" <<'PY'
import json, sys
h = next(iter(json.load(open(sys.argv[1]))["all"]["children"]["docker_hosts"]["hosts"].values()))
print(f"ssh -p {h['ansible_port']} -i {h['ansible_ssh_private_key_file']} root@127.0.0.1")
PY
)
say "done in $((SECONDS - T0))s. Log in: $login (or docker exec -it $HOST bash). Remove it: make demo CLEAN=1"
