#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Build the pinned Go binaries Meshfleet needs (Kubernetes control plane +
# kubectl, etcd, kwok/kwokctl, istioctl/pilot-discovery/pilot-agent) from
# source into one cache folder outside the repo, and reuse them afterwards.
#
#   tools/build-tools.sh [TOOL...]   build what is missing (all tools by default);
#                                    the last line of stdout is
#                                    MESHFLEET_TOOLS_BIN=<bin dir>
#   tools/build-tools.sh --print-bin print the bin dir, build nothing
#   tools/build-tools.sh --check     exit 0 only if every tool is already cached
#   tools/build-tools.sh --sync      regenerate tools/*/go.mod + go.sum from
#                                    tools/versions.env (needs the module proxy)
#   tools/build-tools.sh --list      list the tools and where they come from
#   tools/build-tools.sh --node ...  the same for the node tool set instead (kubelet,
#                                    kube-proxy, coredns: a real node per local
#                                    cluster), pinned in tools/node-versions.env,
#                                    built from source into its own cache folder
#                                    <cache>/node-<key>/ (never a release download)
#   tools/build-tools.sh --bench ... the same for the bench tool set (fortio, Istio's load
#                                    generator: bench/bench_real_pods.py), pinned in
#                                    tools/bench-versions.env, into <cache>/bench-<key>/
#
# Tools SOURCE (--source auto|release|build, else $MESHFLEET_TOOLS_SOURCE, else
# auto): everything but `build` -- and --inventory PATH (only what an inventory
# needs), --needed, --explain -- is handled by tools/fetch-tools.py, which takes
# the upstream release artefacts when it can and calls this script with
# `--source build` for the rest (see tools/README.md). What follows describes
# the build.
#
# Pins live in tools/versions.env; every wrapper module (tools/<module>/go.mod)
# requires the upstream module at the pinned version and lists the binaries as
# `tool` directives, so `go build -mod=readonly <package>` inside it builds
# exactly what the committed go.sum describes. Modules come through the
# configured Go module proxy (GOPROXY, default proxy.golang.org); nothing is
# vendored and no prebuilt binary is downloaded.
#
# Cache layout (MESHFLEET_TOOLS_CACHE, default ~/.cache/meshfleet/tools):
#   <cache>/<key>/bin/<tool>           the binaries
#   <cache>/<key>/stamps/<tool>.ok     written after a completed build
#   <cache>/<key>/logs/<tool>.log      go build -v output of the last build (in full;
#                                      while it runs, a progress line every 30 s on
#                                      stderr names the last package: tools/progress.sh)
#   <cache>/<key>/build-report.txt     per-tool build seconds and peak memory
#   <cache>/<key>/share/istio/         Istio sidecar package files (envoy
#                                      bootstrap template, istio-start.sh,
#                                      istio.service, sidecar.env) from the
#                                      pinned istio module, for VM sidecars
#   <cache>/current -> <key>           refreshed after a complete run
#   <cache>/node-<key>/...             the node tool set (--node), same layout;
#                                      its key also hashes node-versions.env
#   <cache>/bench-<key>/...            the bench tool set (--bench), same layout; its
#                                      key hashes bench-versions.env, its wrapper
#                                      module and the Go version/platform only
# <key> hashes versions.env, the wrapper go.mod/go.sum files and the Go
# version/platform, so a changed pin builds into a new folder and an
# unchanged one is reused. Tools are built one after another (go build
# already uses every core), under a flock on <cache>/<key>/.lock.
set -euo pipefail

TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# progress_watch: a line every 30 s (MESHFLEET_PROGRESS_INTERVAL) while go build runs
# shellcheck source=progress.sh
. "$TOOLS_DIR/progress.sh"
VERSIONS_FILE="$TOOLS_DIR/versions.env"
NODE_VERSIONS_FILE="$TOOLS_DIR/node-versions.env"
MODULE_DIRS=(kubernetes etcd kwok istio)
# The node tool set (--node): its own wrapper modules and cache folder, so the main
# set's key (and CI's cache) never changes when a node pin moves.
NODE_MODULE_DIRS=(node-kubernetes coredns)
# The bench tool set (--bench): the same, for what only the benchmarks run.
BENCH_VERSIONS_FILE="$TOOLS_DIR/bench-versions.env"
BENCH_MODULE_DIRS=(fortio)
TOOLSET=main

log() { printf '[tools] %s\n' "$*" >&2; }
die() { printf '[tools] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '3,/^set -euo pipefail/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

[[ -f "$VERSIONS_FILE" ]] || die "missing $VERSIONS_FILE"
# shellcheck source=versions.env
. "$VERSIONS_FILE"

# name|wrapper module dir|main package
TOOLS=(
  "kube-apiserver|kubernetes|k8s.io/kubernetes/cmd/kube-apiserver"
  "kube-controller-manager|kubernetes|k8s.io/kubernetes/cmd/kube-controller-manager"
  "kube-scheduler|kubernetes|k8s.io/kubernetes/cmd/kube-scheduler"
  "kubectl|kubernetes|k8s.io/kubernetes/cmd/kubectl"
  "etcd|etcd|go.etcd.io/etcd/server/v3"
  "kwok|kwok|sigs.k8s.io/kwok/cmd/kwok"
  "kwokctl|kwok|sigs.k8s.io/kwok/cmd/kwokctl"
  "istioctl|istio|istio.io/istio/istioctl/cmd/istioctl"
  "pilot-discovery|istio|istio.io/istio/pilot/cmd/pilot-discovery"
  "pilot-agent|istio|istio.io/istio/pilot/cmd/pilot-agent"
)

# name|wrapper module dir|main package, for --node
NODE_TOOLS=(
  "kubelet|node-kubernetes|k8s.io/kubernetes/cmd/kubelet"
  "kube-proxy|node-kubernetes|k8s.io/kubernetes/cmd/kube-proxy"
  "coredns|coredns|github.com/coredns/coredns"
)

# name|wrapper module dir|main package, for --bench
BENCH_TOOLS=(
  "fortio|fortio|fortio.org/fortio"
)

# The upstream module (path + pinned version) behind each wrapper module.
module_path() {
  case "$1" in
    kubernetes | node-kubernetes) echo k8s.io/kubernetes ;;
    coredns) echo github.com/coredns/coredns ;;
    fortio) echo fortio.org/fortio ;;
    etcd) echo go.etcd.io/etcd/server/v3 ;;
    kwok) echo sigs.k8s.io/kwok ;;
    istio) echo istio.io/istio ;;
    *) die "unknown wrapper module '$1'" ;;
  esac
}
module_version() {
  case "$1" in
    kubernetes | node-kubernetes) echo "$K8S_VERSION" ;;
    coredns) echo "${COREDNS_VERSION:?COREDNS_VERSION is not set (tools/node-versions.env)}" ;;
    fortio) echo "${FORTIO_VERSION:?FORTIO_VERSION is not set (tools/bench-versions.env)}" ;;
    etcd) echo "$ETCD_VERSION" ;;
    kwok) echo "$KWOK_VERSION" ;;
    istio) echo "$ISTIO_MODULE_VERSION" ;;
    *) die "unknown wrapper module '$1'" ;;
  esac
}

# Extra `replace` targets (module=version ...) for a wrapper module, used for
# dependencies the module proxy does not serve at the upstream-pinned version.
dep_overrides() {
  case "$1" in
    kubernetes) echo "${K8S_DEP_OVERRIDES:-}" ;;
    etcd) echo "${ETCD_DEP_OVERRIDES:-}" ;;
    kwok) echo "${KWOK_DEP_OVERRIDES:-}" ;;
    istio) echo "${ISTIO_DEP_OVERRIDES:-}" ;;
  esac
}

# --------------------------------------------------------------------------
# Go toolchain
# --------------------------------------------------------------------------
export GOWORK=off      # never pick up a go.work from the surrounding checkout
export CGO_ENABLED=0   # static binaries, no C toolchain needed
# Build with the go on PATH unless the caller explicitly allows toolchain
# switching (GOTOOLCHAIN=auto lets go fetch a newer one via the module proxy).
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

version_ge() { # version_ge A B: A >= B (dotted numbers)
  [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]
}

GO_VERSION=""
detect_go() {
  local need="Go >= ${GO_MIN_VERSION} is required to build the Meshfleet tools (install golang or put go on PATH)"
  command -v go >/dev/null 2>&1 || die "$need"
  local v
  # Ask from inside a wrapper module so that an allowed toolchain switch
  # (GOTOOLCHAIN=auto) is reflected in the version we key the cache on.
  if ! v="$(cd "$TOOLS_DIR/kubernetes" && go env GOVERSION 2>/dev/null)" || [[ -z "$v" ]]; then
    v="$(cd / && go env GOVERSION 2>/dev/null)" || v=""
    die "$need; found ${v:-an unusable go at $(command -v go)} (or set GOTOOLCHAIN=auto to let go download a newer toolchain through the module proxy)"
  fi
  local num="${v#go}"; num="${num%%[!0-9.]*}"
  if [[ "$v" != go* ]] || ! version_ge "$num" "$GO_MIN_VERSION"; then
    die "$need; found $v at $(command -v go) (or set GOTOOLCHAIN=auto to let go download a newer toolchain through the module proxy)"
  fi
  GO_VERSION="$v"
}

sha256() { if command -v sha256sum >/dev/null 2>&1; then sha256sum; else shasum -a 256; fi; }
file_size() { stat -c %s "$1" 2>/dev/null || stat -f %z "$1"; }

pin_file() { # wrapper module dir -> the file that pins it
  case "$1" in
    coredns) echo node-versions.env ;;
    fortio) echo bench-versions.env ;;
    *) echo versions.env ;;
  esac
}

# The pins in versions.env must match the wrapper go.mod files; otherwise the
# ldflags would claim one version while go.mod builds another.
check_pins() {
  local dir mod ver gomod ov bad=0
  for dir in "${MODULE_DIRS[@]}"; do
    mod="$(module_path "$dir")"; ver="$(module_version "$dir")"
    gomod="$TOOLS_DIR/$dir/go.mod"
    if [[ ! -f "$gomod" || ! -f "$TOOLS_DIR/$dir/go.sum" ]]; then
      log "tools/$dir/go.mod or go.sum is missing"; bad=1; continue
    fi
    if ! grep -Eq "^[[:space:]]*(require[[:space:]]+)?${mod//./\\.}[[:space:]]+${ver//./\\.}([[:space:]]|$)" "$gomod"; then
      log "tools/$dir/go.mod does not require $mod $ver (pinned in tools/$(pin_file "$dir"))"; bad=1
    fi
    for ov in $(dep_overrides "$dir"); do
      if ! grep -Eq "=>[[:space:]]+${ov%%=*}[[:space:]]+${ov#*=}([[:space:]]|$)" "$gomod"; then
        log "tools/$dir/go.mod does not replace ${ov%%=*} with ${ov#*=} (tools/versions.env)"; bad=1
      fi
    done
  done
  for dir in "${MODULE_DIRS[@]}"; do
    [[ "$dir" == kubernetes || "$dir" == node-kubernetes ]] || continue
    if ! grep -Eq "=>[[:space:]]+k8s\.io/api[[:space:]]+${K8S_STAGING_VERSION//./\\.}([[:space:]]|$)" "$TOOLS_DIR/$dir/go.mod" 2>/dev/null; then
      log "tools/$dir/go.mod does not replace the staging modules with $K8S_STAGING_VERSION"; bad=1
    fi
  done
  ((bad == 0)) || die "tools/versions.env and the wrapper modules disagree; run tools/build-tools.sh --sync"
}

CACHE_ROOT="" KEY="" KEY_DIR="" BIN_DIR="" STAMP_DIR="" LOG_DIR=""
compute_paths() {
  local goos goarch dir
  goos="$(cd / && go env GOOS)"; goarch="$(cd / && go env GOARCH)"
  KEY="$(
    {
      echo "go=$GO_VERSION $goos/$goarch"
      # Up to the release-artefacts marker: the lines after it are fetch-tools.py's.
      # (The bench set builds nothing pinned there: a main pin move never rebuilds fortio.)
      [[ "$TOOLSET" == bench ]] || { echo "--- versions.env"; sed '/^# >>> release artefacts/,$d' "$VERSIONS_FILE"; }
      for dir in "${MODULE_DIRS[@]}"; do
        echo "--- $dir/go.mod"; cat "$TOOLS_DIR/$dir/go.mod"
        echo "--- $dir/go.sum"; cat "$TOOLS_DIR/$dir/go.sum"
      done
      if [[ "$TOOLSET" == node ]]; then echo "--- node-versions.env"; cat "$NODE_VERSIONS_FILE"; fi
      if [[ "$TOOLSET" == bench ]]; then echo "--- bench-versions.env"; cat "$BENCH_VERSIONS_FILE"; fi
    } | sha256 | cut -c1-16
  )"
  CACHE_ROOT="${MESHFLEET_TOOLS_CACHE:-$HOME/.cache/meshfleet/tools}"
  KEY_DIR="$CACHE_ROOT/$KEY"
  [[ "$TOOLSET" == main ]] || KEY_DIR="$CACHE_ROOT/$TOOLSET-$KEY"
  BIN_DIR="$KEY_DIR/bin"
  STAMP_DIR="$KEY_DIR/stamps"
  LOG_DIR="$KEY_DIR/logs"
}

is_cached() { # tool
  local bin="$BIN_DIR/$1" stamp="$STAMP_DIR/$1.ok"
  [[ -x "$bin" && -f "$stamp" ]] || return 1
  grep -qx "size=$(file_size "$bin")" "$stamp"
}

# --------------------------------------------------------------------------
# Version ldflags per wrapper module
# --------------------------------------------------------------------------
module_time() { # RFC3339 publish time of the pinned upstream module version
  (cd "$TOOLS_DIR/$1" && go list -mod=readonly -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' "$(module_path "$1")")
}

ldflags_for() { # wrapper module dir
  local dir="$1" goos goarch date rev
  case "$dir" in
    kubernetes | node-kubernetes)
      # Same variables hack/lib/version.sh sets; buildDate is the module's
      # publish time so that rebuilds are reproducible.
      date="$(module_time "$dir")"; date="${date:-1970-01-01T00:00:00Z}"
      local minor="${K8S_VERSION#v*.}"; minor="${minor%%.*}"
      local major="${K8S_VERSION#v}"; major="${major%%.*}"
      local pkg flags=""
      for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
        flags+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit= -X $pkg.buildDate=$date"
      done
      echo "$flags"
      ;;
    etcd)
      # version.Version is a constant-like var already set to the release;
      # the git SHA is unknown for a module build.
      echo " -X go.etcd.io/etcd/api/v3/version.GitSHA=unknown"
      ;;
    kwok)
      echo " -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${K8S_VERSION#v}"
      ;;
    istio)
      # Same variables as istio's common/scripts/report_build_info.sh.
      goos="$(cd / && go env GOOS)"; goarch="$(cd / && go env GOARCH)"
      rev="${ISTIO_MODULE_VERSION##*-}"
      local p=istio.io/istio/pkg/version
      echo " -X $p.buildVersion=$ISTIO_BUILD_VERSION -X $p.buildGitRevision=$rev -X $p.buildStatus=Clean" \
        "-X $p.buildTag=$ISTIO_MODULE_VERSION -X $p.buildHub=$ISTIO_HUB -X $p.buildOS=$goos -X $p.buildArch=$goarch"
      ;;
    coredns)
      # what CoreDNS's Makefile sets (the git commit is unknown for a module build)
      echo " -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION"
      ;;
  esac
}

# --------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------
GNU_TIME=""
if [[ -x /usr/bin/time ]] && /usr/bin/time -v true >/dev/null 2>&1; then GNU_TIME=/usr/bin/time; fi

# Peak of the summed RSS of a process tree (go build runs compile/link
# processes in parallel, so this is what the machine actually has to hold).
sample_tree_rss() { # root_pid out_file
  local root="$1" out="$2" peak=0 cur
  command -v ps >/dev/null 2>&1 || return 0
  while kill -0 "$root" 2>/dev/null; do
    cur="$(ps -A -o pid= -o ppid= -o rss= 2>/dev/null | awk -v r="$root" '
      { parent[$1] = $2; rss[$1] = $3 }
      END { s = 0
            for (p in parent) { q = p; n = 0
              while (q != "" && q > 1 && n++ < 64) { if (q == r) { s += rss[p]; break }; q = parent[q] } }
            print s }')" || cur=0
    if ((cur > peak)); then peak=$cur; echo "$peak" >"$out"; fi
    sleep 1
  done
}

BUILD_PID="" SAMPLER_PID="" PROGRESS_PID="" TMP_BIN=""
cleanup() {
  if [[ -n "$BUILD_PID" ]]; then kill "$BUILD_PID" 2>/dev/null || true; fi
  if [[ -n "$SAMPLER_PID" ]]; then kill "$SAMPLER_PID" 2>/dev/null || true; fi
  if [[ -n "$PROGRESS_PID" ]]; then kill "$PROGRESS_PID" 2>/dev/null || true; fi
  if [[ -n "$TMP_BIN" ]]; then rm -f "$TMP_BIN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

label_for() { echo "$(module_path "$1") $(module_version "$1")"; }

build_tool() { # name dir pkg
  local name="$1" dir="$2" pkg="$3" label ldflags start end secs rc=0
  local logf="$LOG_DIR/$name.log" timef="$LOG_DIR/$name.time" peakf="$LOG_DIR/$name.peak"
  label="$(label_for "$dir")"
  log "building $name ($label); a progress line every $(progress_interval)s, full log: $logf"
  ldflags="-s -w$(ldflags_for "$dir")"
  TMP_BIN="$BIN_DIR/.$name.tmp.$$"
  rm -f "$timef" "$peakf" "$TMP_BIN"
  start="$(date +%s)"
  # -v: each package's import path as it is compiled, into the log (the progress lines show the last)
  local -a cmd=(go build -v -mod=readonly -trimpath -ldflags "$ldflags" -o "$TMP_BIN" "$pkg")
  {
    echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) in tools/$dir: ${cmd[*]}"
    echo "# GOVERSION=$GO_VERSION CGO_ENABLED=$CGO_ENABLED GOFLAGS=${GOFLAGS:-} GOPROXY=$(go env GOPROXY) GOCACHE=$(go env GOCACHE)"
  } >"$logf"
  if [[ -n "$GNU_TIME" ]]; then
    (cd "$TOOLS_DIR/$dir" && exec "$GNU_TIME" -v -o "$timef" "${cmd[@]}") >>"$logf" 2>&1 &
  else
    (cd "$TOOLS_DIR/$dir" && exec "${cmd[@]}") >>"$logf" 2>&1 &
  fi
  BUILD_PID=$!
  sample_tree_rss "$BUILD_PID" "$peakf" &
  SAMPLER_PID=$!
  progress_watch "$BUILD_PID" "$logf" "$name" "$start" &
  PROGRESS_PID=$!
  wait "$BUILD_PID" || rc=$?
  BUILD_PID=""
  kill "$SAMPLER_PID" "$PROGRESS_PID" 2>/dev/null || true
  wait "$SAMPLER_PID" 2>/dev/null || true
  wait "$PROGRESS_PID" 2>/dev/null || true
  SAMPLER_PID="" PROGRESS_PID=""
  end="$(date +%s)"; secs=$((end - start))
  if ((rc != 0)) || [[ ! -s "$TMP_BIN" ]]; then
    log "ERROR: building $name ($label) failed after ${secs}s (exit $rc). Last lines of the go output:"
    grep -v '^\s*Command exited with non-zero status' "$logf" | tail -n 40 | sed 's/^/    /' >&2
    log "full log: $logf"
    exit 1
  fi
  chmod 0755 "$TMP_BIN"
  mv -f "$TMP_BIN" "$BIN_DIR/$name"
  TMP_BIN=""
  local maxrss="" peak="" size
  [[ -f "$timef" ]] && maxrss="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$timef")"
  [[ -f "$peakf" ]] && peak="$(cat "$peakf")"
  size="$(file_size "$BIN_DIR/$name")"
  {
    echo "tool=$name"
    echo "source=$label"
    echo "package=$pkg"
    echo "seconds=$secs"
    echo "max_rss_kb=${maxrss:-}"
    echo "tree_peak_rss_kb=${peak:-}"
    echo "size=$size"
    echo "go=$GO_VERSION"
    echo "built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } >"$STAMP_DIR/$name.ok.tmp"
  mv -f "$STAMP_DIR/$name.ok.tmp" "$STAMP_DIR/$name.ok"
  log "$name built in ${secs}s"
}

stamp_field() { sed -n "s/^$2=//p" "$STAMP_DIR/$1.ok" 2>/dev/null | head -n1; }
mib() { [[ -n "$1" ]] && awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }' || echo "-"; }

write_report() {
  local report="$KEY_DIR/build-report.txt" entry name
  {
    echo "# Meshfleet tools build report"
    echo "# key: $KEY   go: $GO_VERSION   cpus: $(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?')"
    echo "# bin: $BIN_DIR"
    echo "# seconds = wall time of 'go build' (cold = empty GOCACHE; later tools reuse packages compiled for earlier ones)"
    echo "# max_rss = largest single process (GNU time); tree_peak = peak summed RSS of the go build process tree (1 s samples)"
    printf '%-24s %-52s %8s %12s %14s %9s  %s\n' tool source seconds max_rss_MiB tree_peak_MiB size_MiB built_at
    for entry in "${TOOLS[@]}"; do
      name="${entry%%|*}"
      if [[ -f "$STAMP_DIR/$name.ok" ]]; then
        printf '%-24s %-52s %8s %12s %14s %9s  %s\n' "$name" "$(stamp_field "$name" source)" \
          "$(stamp_field "$name" seconds)" "$(mib "$(stamp_field "$name" max_rss_kb)")" \
          "$(mib "$(stamp_field "$name" tree_peak_rss_kb)")" "$(mib "$(($(stamp_field "$name" size) / 1024))")" \
          "$(stamp_field "$name" built_at)"
      else
        printf '%-24s %-52s %8s\n' "$name" "-" "not built"
      fi
    done
  } >"$report.tmp"
  mv -f "$report.tmp" "$report"
}

update_current_link() {
  local link="$CACHE_ROOT/current"
  ln -sfn "$KEY" "$link.tmp.$$"
  mv -Tf "$link.tmp.$$" "$link" 2>/dev/null || { rm -f "$link.tmp.$$"; ln -sfn "$KEY" "$link"; }
}

acquire_lock() {
  local lockf="$KEY_DIR/.lock"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$lockf"
    if ! flock -n 9; then
      log "another build-tools.sh run holds $lockf; waiting for it..."
      flock 9
    fi
  else
    # Portable fallback: mkdir is atomic. Stale locks (dead pid) are removed.
    local d="$lockf.d" waited=0
    until mkdir "$d" 2>/dev/null; do
      local holder; holder="$(cat "$d/pid" 2>/dev/null || true)"
      if [[ -n "$holder" ]] && ! kill -0 "$holder" 2>/dev/null; then rm -rf "$d"; continue; fi
      ((waited++ == 0)) && log "another build-tools.sh run holds $d; waiting for it..."
      sleep 2
    done
    echo $$ >"$d/pid"
    trap 'cleanup; rm -rf "'"$d"'"' EXIT
  fi
}

# Files of the Istio sidecar package (what the istio-sidecar .deb/.rpm ships
# besides the binaries) staged from the pinned istio.io/istio module into
# <cache>/<key>/share/istio/ for the VM sidecar role's "binaries" install
# (roles/vm_sidecar): the Envoy bootstrap template, istio-start.sh, the
# systemd unit, sidecar.env and the package's postinst.sh (the tests build an
# istio-sidecar .deb from these). Copied at build time, never committed.
ISTIO_SHARE_FILES=(envoy_bootstrap.json istio-start.sh istio.service sidecar.env postinst.sh)
stage_istio_share() {
  local share="$KEY_DIR/share/istio" f missing=0 src
  for f in "${ISTIO_SHARE_FILES[@]}"; do [[ -s "$share/$f" ]] || missing=1; done
  ((missing)) || return 0
  src="$(cd "$TOOLS_DIR/istio" && go list -mod=readonly -m -f '{{.Dir}}' istio.io/istio 2>/dev/null)" || src=""
  if [[ -z "$src" || ! -d "$src/tools/packaging/common" ]]; then
    log "WARNING: istio.io/istio is not in the module cache; share/istio not staged"
    return 0
  fi
  mkdir -p "$share"
  for f in "${ISTIO_SHARE_FILES[@]}"; do
    local from="$src/tools/packaging/common/$f"
    [[ "$f" == postinst.sh ]] && from="$src/tools/packaging/postinst.sh"   # the package's postinst
    install -m 0644 "$from" "$share/$f.tmp.$$"
    mv -f "$share/$f.tmp.$$" "$share/$f"
  done
  chmod 0755 "$share/istio-start.sh" "$share/postinst.sh"
  log "staged the Istio sidecar package files into $share"
}

# --------------------------------------------------------------------------
# --sync: regenerate the wrapper modules from versions.env
# --------------------------------------------------------------------------
sync_module() { # dir
  local dir="$1" mod ver gomod_file goline out tmp
  mod="$(module_path "$dir")"; ver="$(module_version "$dir")"
  log "sync tools/$dir: $mod $ver"
  tmp="$(mktemp -d)"
  out="$(cd "$tmp" && go mod download -json "$mod@$ver")" || die "go mod download $mod@$ver failed: $out"
  rm -rf "$tmp"
  gomod_file="$(printf '%s\n' "$out" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -f "$gomod_file" ]] || die "could not locate the go.mod of $mod@$ver"
  goline="$(awk '$1 == "go" { print $2; exit }' "$gomod_file")"

  # replace directives of the upstream go.mod (single-line and block form)
  local replaces=() lhs rhs line
  local -a words
  while IFS= read -r line; do
    # normalise whitespace: "mod [ver] => target [ver]"
    read -r -a words <<<"${line%%=>*}"; lhs="${words[*]}"
    read -r -a words <<<"${line#*=>}"; rhs="${words[*]}"
    case "$rhs" in
      */FORBIDDEN_DEPENDENCY) ;; # etcd's guard against bad imports; nothing to map
      ./* | ../*)
        # Local-path replaces point into the upstream repository; use the
        # published copy of the same release instead.
        if [[ "$dir" == kubernetes || "$dir" == node-kubernetes ]]; then
          replaces+=("$lhs => ${lhs%% *} $K8S_STAGING_VERSION")   # staging modules
        elif [[ "$dir" == etcd && "$lhs" == go.etcd.io/etcd/* ]]; then
          replaces+=("$lhs => ${lhs%% *} $ETCD_VERSION")          # sibling modules
        else
          die "$mod@$ver replaces $lhs with the local path $rhs; add a published version for it to tools/versions.env and teach --sync about it"
        fi
        ;;
      *) replaces+=("$lhs => $rhs") ;;
    esac
  done < <(awk '
    /^replace[[:space:]]*\(/ { inblock = 1; next }
    inblock && /^\)/ { inblock = 0; next }
    inblock { sub(/\/\/.*/, ""); if ($0 ~ /=>/) print; next }
    /^replace[[:space:]]/ { sub(/^replace[[:space:]]+/, ""); sub(/\/\/.*/, ""); print }
  ' "$gomod_file")

  # Overrides for dependencies the module proxy does not serve (versions.env).
  local ov
  for ov in $(dep_overrides "$dir"); do
    replaces+=("${ov%%=*} => ${ov%%=*} ${ov#*=}")
  done

  local entry name tdir pkg
  {
    echo "// Generated by tools/build-tools.sh --sync from tools/$(pin_file "$dir"); do not edit by hand."
    echo "// Wrapper module pinning $mod $ver for building its binaries."
    echo "module meshfleet/tools/$dir"
    echo
    echo "go ${goline:-$GO_MIN_VERSION}"
    echo
    echo "require $mod $ver"
    echo
    echo "tool ("
    for entry in "${TOOLS[@]}"; do
      IFS='|' read -r name tdir pkg <<<"$entry"
      [[ "$tdir" == "$dir" ]] && printf '\t%s\n' "$pkg"
    done
    echo ")"
    if ((${#replaces[@]})); then
      echo
      echo "// Copied from $mod@$ver's go.mod (local paths mapped to published versions),"
      echo "// plus the *_DEP_OVERRIDES of tools/versions.env."
      echo "replace ("
      printf '\t%s\n' "${replaces[@]}"
      echo ")"
    fi
  } >"$TOOLS_DIR/$dir/go.mod.new"
  mv -f "$TOOLS_DIR/$dir/go.mod.new" "$TOOLS_DIR/$dir/go.mod"
  rm -f "$TOOLS_DIR/$dir/go.sum"
  (cd "$TOOLS_DIR/$dir" && GOFLAGS="${GOFLAGS:-}" go mod tidy) >&2 || die "go mod tidy failed in tools/$dir"
}

# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------
mode=build
selected=()
source_choice="${MESHFLEET_TOOLS_SOURCE:-auto}"
delegate=0
orig_args=("$@")
while (($#)); do
  case "$1" in
    --print-bin) mode=print-bin ;;
    --check) mode=check ;;
    --sync) mode=sync ;;
    --list) mode=list ;;
    --node) [[ "$TOOLSET" != bench ]] || die "--node and --bench are two tool sets: choose one"; TOOLSET=node ;;
    --bench) [[ "$TOOLSET" != node ]] || die "--node and --bench are two tool sets: choose one"; TOOLSET=bench ;;
    --source) [[ $# -ge 2 ]] || die "--source needs auto, release or build"; source_choice="$2"; shift ;;
    --source=*) source_choice="${1#*=}" ;;
    --inventory | --vm-install-method) [[ $# -ge 2 ]] || die "$1 needs a value"; delegate=1; shift ;;
    --inventory=* | --vm-install-method=* | --needed | --explain) delegate=1 ;;
    -h | --help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) selected+=("$1") ;;
  esac
  shift
done
case "$source_choice" in
  auto | release | build) ;;
  *) die "tools source '$source_choice' (--source / MESHFLEET_TOOLS_SOURCE): choose auto, release or build" ;;
esac

if [[ "$TOOLSET" == node ]]; then
  # The node set has no release source yet: always the Go build, whatever the source.
  ((delegate == 0)) || die "--node takes no --inventory, --needed, --explain or --vm-install-method"
  [[ -f "$NODE_VERSIONS_FILE" ]] || die "missing $NODE_VERSIONS_FILE"
  # shellcheck source=node-versions.env
  . "$NODE_VERSIONS_FILE"
  TOOLS=("${NODE_TOOLS[@]}")
  MODULE_DIRS=("${NODE_MODULE_DIRS[@]}")
  source_choice=build
elif [[ "$TOOLSET" == bench ]]; then
  # The bench set is built from source too (fortio's releases are not among the tools' sources).
  ((delegate == 0)) || die "--bench takes no --inventory, --needed, --explain or --vm-install-method"
  [[ -f "$BENCH_VERSIONS_FILE" ]] || die "missing $BENCH_VERSIONS_FILE"
  # shellcheck source=bench-versions.env
  . "$BENCH_VERSIONS_FILE"
  TOOLS=("${BENCH_TOOLS[@]}")
  MODULE_DIRS=("${BENCH_MODULE_DIRS[@]}")
  source_choice=build
fi

# Any source but `build`, or a tool set computed from an inventory: tools/fetch-tools.py
# decides (release artefacts or this build) and calls back with --source build.
if [[ "$mode" != sync && "$mode" != list ]] && { [[ "$source_choice" != build ]] || ((delegate)); }; then
  py="${MESHFLEET_TOOLS_PYTHON:-}"
  if [[ -z "$py" ]]; then
    if [[ -x "$TOOLS_DIR/../.venv/bin/python" ]]; then py="$TOOLS_DIR/../.venv/bin/python"; else py=python3; fi
  fi
  exec "$py" "$TOOLS_DIR/fetch-tools.py" ${orig_args[@]+"${orig_args[@]}"}
fi

if [[ "$mode" == list ]]; then
  for entry in "${TOOLS[@]}"; do
    IFS='|' read -r name dir pkg <<<"$entry"
    printf '%-24s %-48s (%s)\n' "$name" "$pkg" "$(label_for "$dir")"
  done
  exit 0
fi

detect_go

if [[ "$mode" == sync ]]; then
  for dir in "${MODULE_DIRS[@]}"; do
    mkdir -p "$TOOLS_DIR/$dir"
    sync_module "$dir"
  done
  log "wrapper modules regenerated; review and commit tools/*/go.mod tools/*/go.sum"
  exit 0
fi

check_pins
compute_paths

# Which tools does this run cover?
want=()
if ((${#selected[@]})); then
  for name in "${selected[@]}"; do
    found=""
    for entry in "${TOOLS[@]}"; do [[ "${entry%%|*}" == "$name" ]] && found="$entry"; done
    [[ -n "$found" ]] || die "unknown tool '$name' (known: $(for e in "${TOOLS[@]}"; do printf '%s ' "${e%%|*}"; done))"
    want+=("$found")
  done
else
  want=("${TOOLS[@]}")
fi

case "$mode" in
  print-bin)
    echo "$BIN_DIR"
    exit 0
    ;;
  check)
    missing=()
    for entry in "${want[@]}"; do is_cached "${entry%%|*}" || missing+=("${entry%%|*}"); done
    if ((${#missing[@]})); then
      log "not cached in $BIN_DIR: ${missing[*]}"
      exit 1
    fi
    exit 0
    ;;
esac

mkdir -p "$BIN_DIR" "$STAMP_DIR" "$LOG_DIR"
acquire_lock
run_start="$(date +%s)"
built=0
for entry in "${want[@]}"; do
  IFS='|' read -r name dir pkg <<<"$entry"
  if is_cached "$name"; then
    log "$name cached"
    continue
  fi
  build_tool "$name" "$dir" "$pkg"
  built=$((built + 1))
done
write_report
if [[ "$TOOLSET" == main ]]; then
  stage_istio_share
  all_cached=1
  for entry in "${TOOLS[@]}"; do is_cached "${entry%%|*}" || all_cached=0; done
  ((all_cached)) && update_current_link
fi

log "${#want[@]} tools ready ($built built) in $(($(date +%s) - run_start))s; report: $KEY_DIR/build-report.txt"
echo "MESHFLEET_TOOLS_BIN=$BIN_DIR"
