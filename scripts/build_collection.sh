#!/usr/bin/env bash
# Build the installable collection tarball into dist/.
# `ansible-galaxy collection build` skips symlinked folders that point outside the collection
# root, and collection/ links to the top-level module_utils/, roles/ and playbooks/; so this
# assembles a real copy (links dereferenced) in a private temporary folder and builds from
# there (private: two builds at once, such as two test workers, do not share a staging folder).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-dist}"
STAGE_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/hardening-collection-build.XXXXXX")
trap 'rm -rf "$STAGE_ROOT"' EXIT
STAGE=$STAGE_ROOT/ansible_collections/hardening/docker_authz
mkdir -p "$STAGE" "$OUT"
cp -rL collection/. "$STAGE/"
cp README.md LICENSE "$STAGE/"
[[ -d docs ]] && cp -r docs "$STAGE/docs"
find "$STAGE" \( -name __pycache__ -o -name '*.pyc' -o -name .pytest_cache \) -prune -exec rm -rf {} +
if find "$STAGE" -type l | grep -q .; then
  echo "build: symlinks left in the staged collection:" >&2; find "$STAGE" -type l >&2; exit 1
fi
ansible-galaxy collection build "$STAGE" --output-path "$OUT" --force
