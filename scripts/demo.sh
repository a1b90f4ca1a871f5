#!/usr/bin/env bash
# Interim demo (until the end-to-end demo lands): run hardening.docker_authz.daemon_json on a
# throwaway copy of an example daemon.json, show the diff and the result, then run it again to
# show that nothing changes. Touches nothing outside a temporary folder.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export ANSIBLE_CONFIG="$ROOT/ansible.cfg" ANSIBLE_NOCOLOR=1 ANSIBLE_DISPLAY_SKIPPED_HOSTS=false
PLAYBOOK_BIN="$ROOT/.venv/bin/ansible-playbook"
[[ -x $PLAYBOOK_BIN ]] || { echo "[demo] .venv missing: run scripts/setup.sh (make demo does)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/docker-authz-demo.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
CONF="$WORK/etc/docker/daemon.json"
mkdir -p "$(dirname "$CONF")"

# An existing daemon.json with keys this project does not own: they must survive untouched.
cat >"$CONF" <<'JSON'
{
    "log-driver": "json-file",
    "log-opts": { "max-size": "10m", "max-file": "3" },
    "storage-driver": "overlay2",
    "default-address-pools": [ { "base": "172.30.0.0/16", "size": 24 } ],
    "authorization-plugins": [ "existing-legacy-authz" ]
}
JSON

cat >"$WORK/demo.yml" <<YAML
- name: Merge the authorization plugin and the local registry into daemon.json
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Add the OPA authorization plugin and trust the local registry
      hardening.docker_authz.daemon_json:
        path: "$CONF"
        settings:
          authorization-plugins: [opa-docker-authz]
          insecure-registries: ["127.0.0.1:5000"]
        backup: true
      register: docker_authz_demo
    - name: Show what the module reports
      ansible.builtin.debug:
        msg:
          changed: "{{ docker_authz_demo.changed }}"
          changed_keys: "{{ docker_authz_demo.changed_keys }}"
          reload_required: "{{ docker_authz_demo.reload_required }}"
          restart_required: "{{ docker_authz_demo.restart_required }}"
          backup_file: "{{ docker_authz_demo.backup_file | default('none') }}"
YAML

banner() { printf '\n==== %s ====\n' "$*"; }

banner "example daemon.json before ($CONF)"
cat "$CONF"

banner "run 1: ansible-playbook --diff (expect changed=1)"
"$PLAYBOOK_BIN" "$WORK/demo.yml" --diff

banner "daemon.json after run 1"
cat "$CONF"

banner "run 2: the same playbook again (expect changed=0)"
out=$("$PLAYBOOK_BIN" "$WORK/demo.yml" --diff)
printf '%s\n' "$out"
if ! grep -Eq 'localhost +: ok=2 +changed=0 ' <<<"$out"; then
  echo "[demo] FAILED: the second run changed something" >&2
  exit 1
fi
banner "result: unrelated keys kept, plugin and registry merged, second run changed nothing"
