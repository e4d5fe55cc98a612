#!/usr/bin/env bash
# ansible-test sanity for the collection. ansible-test needs the collection at
# .../ansible_collections/meshfleet/mesh, so the tracked files (and new, not
# ignored ones) are copied to a scratch tree and tested there, in this .venv
# (--local, no containers).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/meshfleet/mesh"
mkdir -p "$dest"
git ls-files -z --cached --others --exclude-standard \
  | grep -zv '^collections/' \
  | xargs -0 -I{} cp --parents -P {} "$dest"/ 2>/dev/null || true
# ansible-test bootstraps pip with a script from a host we cannot reach: use ours.
pipver=$(grep -oP "pip='\\K[0-9.]+" "$("$root/.venv/bin/python" -c 'import ansible_test._internal.python_requirements as r; print(r.__file__)')" | head -1) || pipver=""
if [ -n "$pipver" ]; then
  cache="$HOME/.ansible/test/cache/get_pip_${pipver//./_}.py"
  mkdir -p "$(dirname "$cache")"
  cmp -s "$root/scripts/get_pip_offline.py" "$cache" 2>/dev/null || cp "$root/scripts/get_pip_offline.py" "$cache"
fi
cd "$dest"
git init -q . && git add -A >/dev/null 2>&1   # ansible-test lists files through git
# Tests that need containers or network, or lint other projects' conventions, are skipped.
exec "$root/.venv/bin/ansible-test" sanity --local --python 3.11 \
  --skip-test shebang \
  --skip-test symlinks \
  "$@"
