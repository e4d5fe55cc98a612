#!/usr/bin/env bash
# Idempotent setup for a fresh machine: Python virtualenv (.venv) with the locked
# dependencies (uv.lock), the Galaxy collections from the installed `ansible`
# package, and (when asked) the pinned Go tool build.
#   scripts/setup.sh            Python side only
#   scripts/setup.sh --tools    also fetch or build/reuse the tools (kwok, Kubernetes, etcd, Istio)
#     [--source auto|release|build]  where from (default $MESHFLEET_TOOLS_SOURCE or auto)
#     [--inventory PATH]             only what this inventory needs (default: every tool)
#   scripts/setup.sh --browser  also Debian's Chromium (and a font), for the mesh report's
#                               headless-browser test (apt-get, root; only when missing)
#   scripts/setup.sh --node     also what a real node of a local cluster needs (`real_node: true`):
#                               Debian's containerd, runc, containernetworking-plugins and
#                               iptables (apt-get, root; only when missing), and with --tools
#                               the node tool set (kubelet, kube-proxy, coredns: build-tools.sh --node)
#   scripts/setup.sh --images   also Debian's umoci, skopeo, gcc and libc6-dev, which build the
#                               real-pod images (docs/real-pods.md; apt-get, root; only when missing)
#   Everything the tools step prints is also written to $MESHFLEET_TOOLS_LOG (.venv/.tools.log).
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
PYTHON=${MESHFLEET_PYTHON:-python3}

log() { printf '[setup] %s\n' "$*"; }

# apt_need READY ERROR|NOTE [PACKAGE...]: install the missing Debian packages (root, apt-get);
# none missing: log READY; not root or no apt-get: exit 1 (ERROR) or only say so (NOTE)
apt_need() {
  local ready=$1 otherwise=$2
  shift 2
  if [ $# -eq 0 ]; then
    log "$ready"
  elif [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    [ "$otherwise" = NOTE ] || { echo "[setup] error: $* missing; install them as root (apt-get install $*)" >&2; exit 1; }
    log "note: $* missing; real-node clusters need them (apt-get install $*, as root)"
  else
    log "installing $* with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1; then
      apt-get update -q >/dev/null
      apt-get install -y -q --no-install-recommends "$@" >/dev/null
    fi
  fi
}

want_tools=0
want_browser=0
want_node=0
want_images=0
tools_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --tools) want_tools=1 ;;
    --browser) want_browser=1 ;;
    --node) want_node=1 ;;
    --images) want_images=1 ;;
    --source | --inventory)
      [ $# -ge 2 ] || { echo "usage: $0 [--browser] [--images] [--node] [--tools [--source auto|release|build] [--inventory PATH]]" >&2; exit 2; }
      tools_args+=("$1" "$2"); shift ;;
    *) echo "usage: $0 [--browser] [--images] [--node] [--tools [--source auto|release|build] [--inventory PATH]]" >&2; exit 2 ;;
  esac
  shift
done

if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
  for cand in python3.11 /root/.pyenv/versions/3.11*/bin/python3; do
    if command -v "$cand" >/dev/null 2>&1; then PYTHON=$cand; break; fi
  done
fi
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' 2>/dev/null || {
  echo "[setup] error: Python 3.11 is required (set MESHFLEET_PYTHON to its path)" >&2; exit 1; }

stamp=.venv/.meshfleet-stamp
want=$( (cat uv.lock pyproject.toml; echo bytecode) | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/ansible-playbook ]; then
  log "python environment up to date (.venv)"
else
  start=$SECONDS
  if [ ! -x .venv/bin/python ]; then
    log "creating .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
  fi
  if ! .venv/bin/python -m uv --version 2>/dev/null | grep -q "$UV_VERSION"; then
    log "installing uv $UV_VERSION"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
  fi
  log "installing locked Python dependencies (uv.lock)"
  # --compile-bytecode: every ansible-playbook run and module imports thousands of files;
  # without .pyc files (uv writes none by default, and PYTHONDONTWRITEBYTECODE stops Python
  # from writing them) each run compiles them again: ~0.15 s of every playbook's start.
  UV_PROJECT_ENVIRONMENT=.venv .venv/bin/python -m uv sync --frozen --quiet --python .venv/bin/python \
    --compile-bytecode
  echo "$want" > "$stamp"
  log "python environment ready in $((SECONDS - start))s"
fi

# The collection's own Python, compiled too (the controller imports it on every run:
# inventory and action plugins, the converge receipt's checks); only changed files are.
.venv/bin/python -m compileall -q -j 0 plugins >/dev/null || log "warning: could not precompile plugins/"

# Galaxy content (requirements.yml: kubernetes.core) comes from the `ansible` package installed above; check it is there.
for coll in kubernetes/core; do
  [ -d ".venv/lib/python3.11/site-packages/ansible_collections/$coll" ] || {
    echo "[setup] error: collection ${coll/\//.} missing from the ansible package" >&2; exit 1; }
done

# The repo root is the collection meshfleet.mesh; make sure the lookup symlink exists.
link=collections/ansible_collections/meshfleet/mesh
if [ ! -L "$link" ]; then
  mkdir -p "$(dirname "$link")"
  ln -sfn ../../.. "$link"
fi

if [ "$want_tools" = 1 ]; then
  if [ -x tools/build-tools.sh ]; then
    # auto (the default) takes the upstream release artefacts when they can be fetched,
    # else builds from source; either way a cached set is reused (tools/README.md).
    # Everything it prints (the [tools] progress lines are on stderr) also goes to the setup
    # log; the Go build's full output is in the per-tool logs the progress lines name.
    tools_log=${MESHFLEET_TOOLS_LOG:-.venv/.tools.log}
    log "tools log: $tools_log"
    bash tools/build-tools.sh ${tools_args[@]+"${tools_args[@]}"} 2>&1 | tee "$tools_log"
    if [ "$want_node" = 1 ]; then
      bash tools/build-tools.sh --node 2>&1 | tee -a "$tools_log"
    fi
  else
    log "no tools/build-tools.sh yet; skipping the Go tool build"
  fi
fi

if [ "$want_node" = 1 ]; then
  # a real kubelet node per local cluster (docs/real-pods.md, "The node")
  need=()
  command -v containerd >/dev/null 2>&1 || need+=(containerd)
  command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || need+=(runc)
  [ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
  command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || need+=(iptables)
  apt_need "node packages ready (containerd, runc, CNI plugins, iptables)" ERROR "${need[@]}"
fi

if [ "$want_browser" = 1 ]; then
  # tests/integration/test_mesh_report.py opens the mesh report in headless Chromium
  need=()
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
  apt_need "browser ready ($(command -v chromium))" ERROR "${need[@]}"
fi

if [ "$want_images" = 1 ]; then
  # plugins/module_utils/images/: umoci and skopeo make the OCI archives, gcc -static the pause binary
  need=()
  command -v umoci >/dev/null 2>&1 || need+=(umoci)
  command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
  command -v gcc >/dev/null 2>&1 || need+=(gcc)
  [ -f /usr/lib/x86_64-linux-gnu/libc.a ] || [ -n "$(find /usr/lib -name libc.a -print -quit 2>/dev/null)" ] || need+=(libc6-dev)
  apt_need "image tools ready (umoci, skopeo, gcc)" ERROR "${need[@]}"
fi

if [ "$want_tools" = 1 ]; then
  # The local networks of real-node clusters (meshfleet.mesh.local_network, docs/real-pods.md):
  # ip (iproute2), sysctl (procps) and iptables, run inside the namespaces they create.
  need=()
  command -v ip >/dev/null 2>&1 || need+=(iproute2)
  command -v sysctl >/dev/null 2>&1 || need+=(procps)
  command -v iptables >/dev/null 2>&1 || need+=(iptables)
  apt_need "local networks ready (ip, sysctl, iptables)" NOTE "${need[@]}"
fi
