#!/usr/bin/env bash
# Build (once) and cache the base root filesystem of the local `netns` test VMs:
# a Debian bookworm tree made by debootstrap (minbase + sshd, python3, iproute2, ...).
# It lives in the role that runs it (roles/vms_local/files/), so an installed collection has it.
#
#   vm-rootfs.sh               ensure the cached rootfs exists; print its path last
#   vm-rootfs.sh --print-dir   print where the rootfs is (or will be) and exit
#   vm-rootfs.sh --check       exit 0 when it is built, 1 when not
#
# Cache: ${MESHFLEET_VM_CACHE:-$HOME/.cache/meshfleet/vm-rootfs}/<key>/, where <key>
# names the suite, architecture and a hash of the package list and of this script's
# build recipe: a change to either builds a new tree beside the old one. The build
# goes to a temporary directory under a lock and is renamed into place when complete
# (a finished tree has .meshfleet-rootfs at its top), so an interrupted build never
# leaves a half tree behind, and two concurrent callers build once.
#
# Mirror: the Debian mirror this machine's apt uses (/etc/apt/sources.list{,.d}), or
# $MESHFLEET_VM_MIRROR. Installs debootstrap and openssh-client with apt-get when
# missing (needs root, as the netns VMs themselves do).
set -euo pipefail

RECIPE=3   # bump when the post-debootstrap steps below change
SUITE=${MESHFLEET_VM_SUITE:-bookworm}
VARIANT=minbase
PACKAGES=openssh-server,python3,python3-apt,sudo,iproute2,iputils-ping,ca-certificates,procps,netbase,iptables,curl,less
CACHE=${MESHFLEET_VM_CACHE:-$HOME/.cache/meshfleet/vm-rootfs}
start=$SECONDS

log() { printf '[vm-rootfs] %s (%ss)\n' "$*" "$((SECONDS - start))"; }
die() { printf '[vm-rootfs] error: %s\n' "$*" >&2; exit 1; }

mode=ensure
for a in "$@"; do
  case "$a" in
    --print-dir) mode=print ;;
    --check) mode=check ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--print-dir|--check]" >&2; exit 2 ;;
  esac
done

arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
key="$SUITE-$VARIANT-$arch-$(printf '%s\n' "$RECIPE" "$PACKAGES" | sha256sum | cut -c1-10)"
dir="$CACHE/$key"
marker="$dir/.meshfleet-rootfs"

case "$mode" in
  print) echo "$dir"; exit 0 ;;
  check) [ -f "$marker" ]; exit $? ;;
esac

if [ -f "$marker" ]; then
  log "cached rootfs $dir"
  echo "$dir"
  exit 0
fi

[ "$(id -u)" = 0 ] || die "building the VM rootfs needs root (debootstrap, chroot)"

# --- host packages ----------------------------------------------------------------
need=()
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v flock >/dev/null 2>&1 || need+=(util-linux)
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1; then
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
  fi
fi

# --- mirror -------------------------------------------------------------------------
# The first `deb` source whose suites include $SUITE itself (not -updates/-security),
# from one-line .list files or deb822 .sources files.
find_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '
      $1 == "deb" {
        i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit }
      }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "" \
            && enabled !~ /^[Nn]o/) { split(uris, u, " "); print u[1]; found = 1; exit }
        types = ""; uris = ""; suites = ""; enabled = ""
      }
      /^[ \t]*$/ { flush(); next }
      /^#/ { next }
      /^Types:/ { sub(/^Types:[ \t]*/, ""); types = $0 }
      /^URIs:/ { sub(/^URIs:[ \t]*/, ""); uris = $0 }
      /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
      /^Enabled:/ { sub(/^Enabled:[ \t]*/, ""); enabled = $0 }
      END { if (!found) flush() }' "$f"
  done
}
mirror=${MESHFLEET_VM_MIRROR:-$(find_mirror | head -n1)}
mirror=${mirror:-http://deb.debian.org/debian}

# --- build under a lock -----------------------------------------------------------------
mkdir -p "$CACHE"
exec 9>"$CACHE/.$key.lock"
if ! flock -n 9; then
  log "another build of $key is running; waiting for it"
  flock 9
fi
if [ -f "$marker" ]; then
  log "cached rootfs $dir (built by another process)"
  echo "$dir"
  exit 0
fi

tmp="$CACHE/.$key.tmp-$$"
cleanup() {
  if [ -n "${tmp:-}" ] && [ -d "$tmp" ]; then rm -rf --one-file-system "$tmp"; fi
  return 0
}
trap cleanup EXIT
# leftovers of builds that were killed
for old in "$CACHE/.$key.tmp-"*; do
  if [ -d "$old" ]; then rm -rf --one-file-system "$old"; fi
done
if [ -d "$dir" ]; then rm -rf --one-file-system "$dir"; fi   # no marker: an incomplete tree

log "building $SUITE ($VARIANT, $arch) from $mirror into $dir"
log "packages: $PACKAGES"
keyring=()
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] && \
  keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
debootstrap_log="$CACHE/.$key.debootstrap.log"
(
  debootstrap --variant="$VARIANT" --include="$PACKAGES" "${keyring[@]}" \
    "$SUITE" "$tmp" "$mirror" >"$debootstrap_log" 2>&1
) &
pid=$!
last=""
while kill -0 "$pid" 2>/dev/null; do
  sleep 5
  line=$(grep -E '^I: (Retrieving|Validating|Extracting|Installing|Unpacking|Configuring|Base system)' \
           "$debootstrap_log" 2>/dev/null | tail -n1 || true)
  if [ -n "$line" ] && [ "$line" != "$last" ]; then
    log "debootstrap: ${line#I: }"
    last=$line
  fi
done
if ! wait "$pid"; then
  tail -n 20 "$debootstrap_log" >&2 || true
  die "debootstrap failed (full log: $debootstrap_log)"
fi
log "debootstrap done"

# --- make it a template -------------------------------------------------------------------
# Every VM generates its own ssh host keys and machine id on its first boot.
rm -f "$tmp"/etc/ssh/ssh_host_*
: > "$tmp/etc/machine-id"
rm -f "$tmp/var/lib/dbus/machine-id"
# The VMs have no route to a mirror: drop the package cache and lists (~60 MB per VM).
rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/cache/apt/*.bin "$tmp"/var/lib/apt/lists/*_*
mkdir -p "$tmp/var/lib/apt/lists/partial"
rm -f "$tmp"/var/log/*.log "$tmp"/var/log/apt/* 2>/dev/null || true
: > "$tmp/etc/resolv.conf"
mkdir -p "$tmp/etc/ssh/sshd_config.d" "$tmp/root/.ssh"
chmod 700 "$tmp/root/.ssh"
cat > "$tmp/etc/ssh/sshd_config.d/00-meshfleet.conf" <<'EOF'
# Meshfleet netns test VM: key-only root login, no DNS look-ups of clients.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
EOF
cat > "$tmp/.meshfleet-rootfs" <<EOF
key=$key
suite=$SUITE
variant=$VARIANT
arch=$arch
mirror=$mirror
packages=$PACKAGES
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF
mv "$debootstrap_log" "$tmp/.meshfleet-debootstrap.log"
mv -T "$tmp" "$dir"
tmp=""
log "done: $(du -sh --one-file-system "$dir" | cut -f1) in $dir"
echo "$dir"
