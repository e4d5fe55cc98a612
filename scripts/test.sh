#!/usr/bin/env bash
# Runs Meshfleet's test stages; `make test` runs them all. Each stage prints a
# header and its own runner's summary; the script fails if any stage fails.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$PWD
export PATH="$root/.venv/bin:$PATH"
export ANSIBLE_CONFIG="$root/ansible.cfg"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 ANSIBLE_NOCOLOR=1
stage=${1:-all}
failed=()
passed=()

run_stage() {
  local name=$1; shift
  local start=$SECONDS
  echo "=== [test] $name"
  if "$@"; then
    passed+=("$name")
    echo "=== [test] $name ok ($((SECONDS - start))s)"
  else
    failed+=("$name")
    echo "=== [test] $name FAILED ($((SECONDS - start))s)"
  fi
}

unit() { pytest -q -m "not integration and not vm" tests/unit; }
# ansible-lint over the whole collection (galaxy.yml, meta/, roles, playbooks, molecule;
# .ansible-lint's exclude_paths), then the changelog fragments (antsibull-changelog).
lint() {
  ansible-lint --profile production --offline -q || return 1
  if command -v antsibull-changelog >/dev/null 2>&1; then
    antsibull-changelog lint
  else
    echo "antsibull-changelog is not installed in .venv: changelog fragments not checked" >&2
    return 1
  fi
}
sanity() { scripts/sanity.sh; }
integration() {
  local bin
  bin=$(bash tools/build-tools.sh --print-bin) || return 1
  MESHFLEET_TOOLS_BIN=$bin pytest -q -m "integration" tests/integration
}
vm() { pytest -q -m vm tests/integration; }
molecule_all() {
  local rc=0 s
  for s in molecule/*/; do
    s=$(basename "$s")
    echo "--- molecule scenario $s"
    molecule test -s "$s" || rc=1
  done
  return $rc
}

case "$stage" in
  unit) run_stage unit unit ;;
  lint) run_stage lint lint ;;
  sanity) run_stage sanity sanity ;;
  integration) run_stage integration integration ;;
  molecule) run_stage molecule molecule_all ;;
  vm) run_stage vm vm ;;
  all)
    run_stage unit unit
    run_stage lint lint
    run_stage sanity sanity
    [ -d tests/integration ] && run_stage integration integration
    [ -d tests/integration ] && run_stage vm vm
    compgen -G "molecule/*/molecule.yml" >/dev/null && run_stage molecule molecule_all
    ;;
  *) echo "usage: $0 [all|unit|lint|sanity|integration|vm|molecule]" >&2; exit 2 ;;
esac

echo "=== [test] stages passed: ${passed[*]:-none}; failed: ${failed[*]:-none}"
[ ${#failed[@]} -eq 0 ]
