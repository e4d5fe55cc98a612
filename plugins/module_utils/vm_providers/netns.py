# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""netns VM provider: local test VMs that are really separate hosts, on this machine.

Each VM of a group is

- a network namespace ``mf-<name>`` whose ``eth0`` (one end of a veth pair) has the VM's
  address from ``settings.subnet`` (.2, .3, ... in the order of the VM names), ``lo`` up
  and a default route via .1; the host end ``mfv-<short>`` is a port of the bridge
  ``mfbr-<subnet in hex>`` that carries .1 and is shared by the VMs of that subnet. The
  bridge never forwards to other interfaces (``net.ipv4.conf.<bridge>.forwarding=0``,
  a per-interface setting), and nothing is NATed: the VMs reach each other on one subnet
  and the host's .1 address, nothing else;
- its own root filesystem, a copy (``cp -a --reflink=auto``) of the base tree that
  ``roles/vms_local/files/vm-rootfs.sh`` debootstraps once into the cache, at
  ``<state_dir>/vms/<name>/rootfs``;
- a "boot": ``unshare --mount --pid --uts --ipc --fork`` in the netns, ``chroot`` into the
  rootfs and run ``/sbin/meshfleet-init`` as PID 1 of the new PID namespace. It mounts
  /proc, /sys, a tmpfs /dev with the basic nodes, /dev/pts, /dev/shm and a tmpfs /run (in
  the VM's own mount namespace only), sets the host name, runs ``sshd -D`` on the VM's
  address (restarted if it dies) and then every ``/etc/rc2.d/S*`` script with ``start``,
  as a SysV boot would, so an init script that a play installs and enables comes back
  after :func:`reboot`. Killing that PID 1 kills every process of the VM.

Ansible reaches a VM over real SSH as root with the mesh's key pair
``<state_dir>/vms/ssh/id_ed25519``; the VM's ed25519 host key is generated in its rootfs
when it is created and pinned in ``<state_dir>/vms/known_hosts``. Nothing here writes to
the machine's /etc or ~/.ssh: the host side is the netns, veth and bridge, the state dir,
and ``/run/meshfleet/netns`` (a lock and which state dir owns which VM name).

VM names: the group's listed hosts (``settings.hosts``, in order), else ``<group>-1`` ..
``<group>-<count>``. Network namespace names are host-wide, so a VM name belongs to one
state dir at a time.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fcntl
import glob
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import (
    MeshfleetError, WaitTimeout, ensure_private_dir, write_file_atomic)
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers.base import VmProvider

ROOTFS_MARKER = ".meshfleet-rootfs"
RUN_DIR = "/run/meshfleet/netns"
INIT_PATH = "/sbin/meshfleet-init"
SSH_PORT = 22
VM_USER = "root"
VM_PYTHON = "/usr/bin/python3"
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
TOOLS = ("ip", "unshare", "chroot", "setsid", "cp")


# --- naming and addressing (pure) --------------------------------------------------

def parse_subnet(subnet, what="settings.subnet"):
    """``10.77.0.0/24`` -> IPv4Network; MeshfleetError with the reason otherwise."""
    try:
        net = ipaddress.ip_network(u"%s" % (subnet,), strict=True)
    except ValueError as e:
        raise MeshfleetError("%s: %r is not an IPv4 network in CIDR notation such as "
                             "10.77.0.0/24 (%s)" % (what, subnet, e))
    if net.version != 4 or net.prefixlen > 30:
        raise MeshfleetError("%s: %s must be an IPv4 network of /30 or larger" % (what, subnet))
    return net


def capacity(net):
    """How many VMs fit: every address but the network, .1 (the host) and broadcast."""
    return net.num_addresses - 3


def gateway_address(net):
    return str(net.network_address + 1)


def vm_address(net, index):
    """The address of the ``index``-th (0-based) VM: .2, .3, ..."""
    if index >= capacity(net):
        raise MeshfleetError("subnet %s has room for %d VMs" % (net, capacity(net)))
    return str(net.network_address + 2 + index)


def netns_name(name):
    return "mf-%s" % name


def veth_name(name):
    """Host end of the VM's veth pair; interface names have at most 15 characters."""
    if len(name) <= 11 and re.match(r"^[a-z0-9-]+$", name):
        return "mfv-%s" % name
    return "mfv-%s-%s" % (re.sub(r"[^a-z0-9]", "", name)[:4],
                          hashlib.sha1(name.encode("utf-8")).hexdigest()[:6])


def bridge_name(net):
    """``mfbr-0a4d000018`` for 10.77.0.0/24: the network address and prefix in hex."""
    return "mfbr-%08x%02x" % (int(net.network_address), net.prefixlen)


def vm_names(group, settings):
    """The group's VM names: ``settings.hosts`` if given, else ``<group>-1`` .. ``<group>-N``."""
    hosts = settings.get("hosts")
    if hosts:
        return ["%s" % h for h in hosts]
    count = settings.get("count")
    count = 1 if count is None else count
    return ["%s-%d" % (group, i) for i in range(1, count + 1)]


def vms_dir(state_dir):
    return os.path.join(os.path.abspath(os.path.expanduser(state_dir)), "vms")


def ssh_paths(state_dir):
    base = vms_dir(state_dir)
    return dict(dir=os.path.join(base, "ssh"), key=os.path.join(base, "ssh", "id_ed25519"),
                pub=os.path.join(base, "ssh", "id_ed25519.pub"),
                known_hosts=os.path.join(base, "known_hosts"))


def ssh_common_args(state_dir, strict=True):
    """``ansible_ssh_common_args`` of a mesh VM: host keys pinned in ``<state_dir>/vms/known_hosts``.

    ``strict`` (netns VMs, whose keys the provider writes): only the pinned key is accepted.
    Otherwise (``existing``, openstack, ec2 VMs) ``accept-new``: the key is recorded on first
    contact (meshfleet.mesh.vm_host_key does it before the first connection) and enforced
    from then on. Either way a changed key is refused.
    """
    return "-o StrictHostKeyChecking=%s -o UserKnownHostsFile=%s" % (
        "yes" if strict else "accept-new", ssh_paths(state_dir)["known_hosts"])


def connection_vars(state_dir, address):
    """The host vars Ansible needs to reach a netns VM at ``address`` (for add_host/inventory)."""
    paths = ssh_paths(state_dir)
    return dict(
        ansible_host=address,
        ansible_user=VM_USER,
        ansible_ssh_private_key_file=paths["key"],
        ansible_ssh_common_args=ssh_common_args(state_dir, strict=True),
        ansible_python_interpreter=VM_PYTHON,
        # the VM's own address (ISTIO_SVC_IP): the same whether the host comes from the
        # inventory plugin (vms.yml alone) or from add_host (site.yml)
        meshfleet_vm_private_ip=address,
    )


def default_cache():
    return os.environ.get("MESHFLEET_VM_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "meshfleet", "vm-rootfs")


def find_base_rootfs(cache=None):
    """The built base tree: ``cache`` itself if it is one, else the newest under it."""
    cache = os.path.abspath(os.path.expanduser(cache or default_cache()))
    if os.path.isfile(os.path.join(cache, ROOTFS_MARKER)):
        return cache
    built = [d for d in glob.glob(os.path.join(cache, "*"))
             if not os.path.basename(d).startswith(".")
             and os.path.isfile(os.path.join(d, ROOTFS_MARKER))]
    if not built:
        raise MeshfleetError(
            "no VM root filesystem in %s; build it with roles/vms_local/files/vm-rootfs.sh "
            "(MESHFLEET_VM_CACHE=%s roles/vms_local/files/vm-rootfs.sh; the meshfleet.mesh.vms_local role "
            "runs it)" % (cache, cache))
    return max(built, key=lambda d: os.stat(os.path.join(d, ROOTFS_MARKER)).st_mtime)


# --- processes and namespaces ----------------------------------------------------------

def _run(cmd, check=True, input_data=None):
    proc = subprocess.run(cmd, input=input_data, stdout=subprocess.PIPE, check=False,
                          stderr=subprocess.PIPE, universal_newlines=True)
    if check and proc.returncode != 0:
        raise MeshfleetError("command failed (rc=%d): %s: %s" % (
            proc.returncode, " ".join(cmd), (proc.stderr or proc.stdout).strip()))
    return proc


def _netns_path(ns):
    return os.path.join("/run/netns", ns)


def netns_exists(ns):
    return os.path.exists(_netns_path(ns))


def _netns_inode(ns):
    try:
        return os.stat(_netns_path(ns)).st_ino
    except OSError:
        return None


def netns_pids(ns):
    """Live (not zombie) processes whose network namespace is ``ns``."""
    ino = _netns_inode(ns)
    if ino is None:
        return []
    want = "net:[%d]" % ino
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink("/proc/%s/ns/net" % entry) == want:
                out.append(int(entry))
        except OSError:
            continue
    return sorted(out)


def _status(pid):
    fields = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                key, _sep, value = line.partition(":")
                fields[key] = value.strip()
    except (IOError, OSError):
        return None
    return fields


def find_init(ns):
    """Host PID of the VM's init (PID 1 of its PID namespace, inside netns ``ns``), or None."""
    for pid in netns_pids(ns):
        st = _status(pid)
        if not st or st.get("State", "").startswith("Z"):
            continue
        nspid = st.get("NSpid", "").split()
        if len(nspid) > 1 and nspid[-1] == "1":
            return pid
    return None


def _kill_all(ns, timeout=15.0):
    """SIGKILL the VM's init (that kills its whole PID namespace), then anything else in ``ns``."""
    init = find_init(ns)
    if init:
        try:
            os.kill(init, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + timeout
    while True:
        pids = netns_pids(ns)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if time.monotonic() > deadline:
            raise WaitTimeout("processes %s of network namespace %s did not go away"
                              % (", ".join(map(str, pids)), ns))
        time.sleep(0.1)


def _link_exists(name):
    return os.path.exists("/sys/class/net/%s" % name)


def _write_sys(path, value):
    try:
        with open(path, "w") as f:
            f.write(value)
    except (IOError, OSError):
        pass


class _HostLock:
    """One host-wide lock for network and rootfs changes (bridges are shared by meshes)."""

    def __enter__(self):
        ensure_private_dir(RUN_DIR)
        self.fd = os.open(os.path.join(RUN_DIR, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


# --- files ---------------------------------------------------------------------------

INIT_SCRIPT = r'''#!/bin/sh
# Meshfleet netns VM init: PID 1 of the VM's PID namespace, in its own mount, UTS and
# IPC namespaces, chrooted into the VM's rootfs. Written by the netns VM provider
# (plugins/module_utils/vm_providers/netns.py); rewritten on every create.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
umask 022
say() { echo "meshfleet-init: $*"; }
say "booting $(cat /etc/hostname)"
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys
mount -t tmpfs -o nosuid,mode=0755,size=16m dev /dev
for spec in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
  set -- $spec
  mknod -m 666 "/dev/$1" c "$2" "$3"
done
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,nosuid,noexec,gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
mount -t tmpfs -o nosuid,nodev,mode=1777 shm /dev/shm
mount -t tmpfs -o nosuid,nodev,mode=0755,size=64m run /run
mkdir -p /run/lock /run/sshd
chmod 1777 /run/lock
: > /run/utmp
cat /etc/hostname > /proc/sys/kernel/hostname
[ -s /etc/machine-id ] || tr -d - < /proc/sys/kernel/random/uuid > /etc/machine-id
[ -f /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
# sshd on the VM's address (sshd_config.d/10-meshfleet-vm.conf), restarted if it dies
(
  while :; do
    /usr/sbin/sshd -D -e
    say "sshd exited ($?); restarting it"
    sleep 1
  done
) &
# SysV runlevel 2: what a play installs and enables (update-rc.d) starts on every boot
RUNLEVEL=2
PREVLEVEL=N
export RUNLEVEL PREVLEVEL
for script in /etc/rc2.d/S*; do
  [ -x "$script" ] || continue
  case "${script##*/}" in
    S[0-9][0-9]ssh) continue ;;   # sshd is run above
  esac
  say "$script start"
  "$script" start < /dev/null || say "$script start failed ($?)"
done
say "up"
# reap orphans until killed (the host kills this PID 1: the whole VM goes with it)
while :; do
  wait
  sleep 60
done
'''

SSHD_VM_CONF = """# Written by the Meshfleet netns VM provider.
ListenAddress %(address)s
HostKey /etc/ssh/ssh_host_ed25519_key
"""


def _filter_known_hosts(path, addresses, add_lines=()):
    """Drop the lines of ``addresses`` from a known_hosts file, then append ``add_lines``."""
    keep = []
    try:
        with open(path) as f:
            for line in f:
                hosts = line.split(" ", 1)[0].split(",") if line.strip() else []
                if any(h in addresses or h.strip("[]").split("]:")[0] in addresses
                       for h in hosts):
                    continue
                keep.append(line if line.endswith("\n") else line + "\n")
    except IOError:
        pass
    keep.extend(l + "\n" for l in add_lines)
    write_file_atomic(path, "".join(keep), mode=0o600)


def ensure_ssh_key(state_dir):
    """The mesh's VM key pair (ed25519, OpenSSH format); created once. Returns the public key line."""
    paths = ssh_paths(state_dir)
    ensure_private_dir(vms_dir(state_dir))
    ensure_private_dir(paths["dir"])
    if os.path.isfile(paths["key"]) and os.path.isfile(paths["pub"]):
        os.chmod(paths["key"], 0o600)
        with open(paths["pub"]) as f:
            return f.read().strip()
    comment = "meshfleet-vms@%s" % socket.gethostname()
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
        key = ed25519.Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH)
        public = public.decode("ascii") + " " + comment
    except ImportError:
        tmp = paths["key"] + ".new"
        for p in (tmp, tmp + ".pub"):
            if os.path.exists(p):
                os.unlink(p)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", tmp])
        with open(tmp, "rb") as f:
            private = f.read()
        with open(tmp + ".pub") as f:
            public = f.read().strip()
        os.unlink(tmp)
        os.unlink(tmp + ".pub")
    write_file_atomic(paths["key"], private, mode=0o600)
    write_file_atomic(paths["pub"], public + "\n", mode=0o644)
    return public


# --- one VM ------------------------------------------------------------------------------

class NetnsVm:
    """One netns VM, addressed by its state dir and name (the record is ``vm.json``)."""

    def __init__(self, state_dir, name):
        self.state_dir = os.path.abspath(os.path.expanduser(state_dir))
        self.name = name
        self.dir = os.path.join(vms_dir(self.state_dir), name)
        self.rootfs = os.path.join(self.dir, "rootfs")
        self.record_path = os.path.join(self.dir, "vm.json")
        self.pid_path = os.path.join(self.dir, "init.pid")
        self.console = os.path.join(self.dir, "console.log")
        self.ns = netns_name(name)
        self.veth = veth_name(name)

    # --- record -------------------------------------------------------------------
    def record(self):
        try:
            with open(self.record_path) as f:
                return json.load(f)
        except (IOError, ValueError):
            return None

    def owner_path(self):
        return os.path.join(RUN_DIR, "%s.json" % self.ns)

    def owner(self):
        try:
            with open(self.owner_path()) as f:
                return json.load(f).get("state_dir")
        except (IOError, ValueError):
            return None

    def running(self):
        return find_init(self.ns) is not None

    def view(self, rec=None):
        rec = rec or self.record() or {}
        running = self.running()
        settings = dict(subnet=rec.get("subnet"), address=rec.get("address"),
                        netns=self.ns, veth=self.veth, bridge=rec.get("bridge"),
                        rootfs=self.rootfs, base_rootfs=rec.get("base_rootfs"))
        return dict(name=self.name, id=self.ns, status="running" if running else "stopped",
                    private_ip=rec.get("address"), public_ip=None, group=rec.get("group"),
                    mesh=rec.get("mesh"), settings=settings,
                    hostvars=connection_vars(self.state_dir, rec.get("address")))

    # --- create --------------------------------------------------------------------
    def create(self, mesh, group, net, address, base_rootfs):
        """Set up (or re-use) the rootfs, the network and boot. Idempotent per step."""
        for tool in TOOLS:
            if not shutil.which(tool):
                raise MeshfleetError("the netns VM provider needs %s on the controller" % tool)
        if os.geteuid() != 0:
            raise MeshfleetError("the netns VM provider needs root (network namespaces, chroot)")
        public_key = ensure_ssh_key(self.state_dir)
        with _HostLock():
            self._claim(address)
            ensure_private_dir(self.dir)
            rec = dict(name=self.name, mesh=mesh, group=group, subnet=str(net), address=address,
                       gateway=gateway_address(net), bridge=bridge_name(net), netns=self.ns,
                       veth=self.veth, base_rootfs=base_rootfs)
            old = self.record() or {}
            rec["created"] = old.get("created") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self._ensure_rootfs(base_rootfs)
            host_key = self._configure_rootfs(address, public_key)
            _filter_known_hosts(ssh_paths(self.state_dir)["known_hosts"], {address},
                                ["%s %s" % (address, host_key)])
            write_file_atomic(self.record_path, json.dumps(rec, indent=2, sort_keys=True) + "\n")
            write_file_atomic(self.owner_path(), json.dumps(dict(
                state_dir=self.state_dir, mesh=mesh, group=group, address=address,
                netns=self.ns, bridge=bridge_name(net))) + "\n")
            self._ensure_network(net, address)
            if not self.running():
                self._boot()

    def _claim(self, address):
        for other in owner_records():
            if other.get("address") == address and other.get("netns") != self.ns \
                    and netns_exists(other["netns"]):
                raise MeshfleetError(
                    "address %s of VM %s is taken by VM %s (mesh state dir %s); give the VM "
                    "groups subnets that do not overlap" % (
                        address, self.name, other["netns"][len("mf-"):], other.get("state_dir")))
        owner = self.owner()
        if owner and owner != self.state_dir and netns_exists(self.ns):
            raise MeshfleetError(
                "VM name %s (network namespace %s) is in use by the mesh state dir %s; VM names "
                "are host-wide: rename the host, or remove that VM first" % (
                    self.name, self.ns, owner))
        if netns_exists(self.ns) and not owner and netns_pids(self.ns):
            raise MeshfleetError(
                "network namespace %s exists with processes in it and was not made by Meshfleet;"
                " remove it (ip netns pids %s; ip netns del %s) or rename the VM"
                % (self.ns, self.ns, self.ns))

    def _ensure_rootfs(self, base_rootfs):
        if os.path.isfile(os.path.join(self.rootfs, ROOTFS_MARKER)):
            return False
        if os.path.exists(self.rootfs):
            self._remove_tree(self.rootfs)
        tmp = "%s.tmp-%d" % (self.rootfs, os.getpid())
        if os.path.exists(tmp):
            self._remove_tree(tmp)
        _run(["cp", "-a", "--reflink=auto", base_rootfs, tmp])
        os.rename(tmp, self.rootfs)
        return True

    def _configure_rootfs(self, address, public_key):
        r = self.rootfs
        write_file_atomic(os.path.join(r, "etc/hostname"), self.name + "\n", mode=0o644)
        write_file_atomic(os.path.join(r, "etc/hosts"), self._hosts_file(address), mode=0o644)
        ssh_dir = os.path.join(r, "root/.ssh")
        if not os.path.isdir(ssh_dir):
            os.makedirs(ssh_dir, 0o700)
        os.chmod(ssh_dir, 0o700)
        write_file_atomic(os.path.join(ssh_dir, "authorized_keys"), public_key + "\n", mode=0o600)
        write_file_atomic(os.path.join(r, "etc/ssh/sshd_config.d/10-meshfleet-vm.conf"),
                          SSHD_VM_CONF % dict(address=address), mode=0o644)
        write_file_atomic(os.path.join(r, INIT_PATH.lstrip("/")), INIT_SCRIPT, mode=0o755)
        key = os.path.join(r, "etc/ssh/ssh_host_ed25519_key")
        if not os.path.isfile(key):
            # the VM's own ssh-keygen, run in its tree: the host key is born inside the rootfs
            _run(["chroot", r, "/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "",
                  "-C", "root@%s" % self.name, "-f", "/etc/ssh/ssh_host_ed25519_key"])
        with open(key + ".pub") as f:
            parts = f.read().split()
        return "%s %s" % (parts[0], parts[1])

    def _hosts_file(self, address):
        """localhost and the VM's own name first; lines a play added later are kept."""
        base = "127.0.0.1\tlocalhost\n%s\t%s\n" % (address, self.name)
        try:
            with open(os.path.join(self.rootfs, "etc/hosts")) as f:
                text = f.read()
        except IOError:
            return base
        return text if text.startswith(base) else base

    def _ensure_network(self, net, address):
        br = bridge_name(net)
        gw = gateway_address(net)
        if not _link_exists(br):
            _run(["ip", "link", "add", br, "type", "bridge"])
        # the bridge routes nothing anywhere: per-interface, not the machine-wide switch
        _write_sys("/proc/sys/net/ipv4/conf/%s/forwarding" % br, "0")
        _write_sys("/proc/sys/net/ipv6/conf/%s/disable_ipv6" % br, "1")
        have = _run(["ip", "-o", "-4", "addr", "show", "dev", br]).stdout
        if " %s/%d " % (gw, net.prefixlen) not in have:
            _run(["ip", "addr", "add", "%s/%d" % (gw, net.prefixlen), "dev", br])
        _run(["ip", "link", "set", br, "up"])
        if not netns_exists(self.ns):
            _run(["ip", "netns", "add", self.ns])
        _run(["ip", "-n", self.ns, "link", "set", "lo", "up"])
        if not _link_exists(self.veth):
            # a leftover eth0 in the netns (its host end is gone) is replaced
            _run(["ip", "-n", self.ns, "link", "del", "eth0"], check=False)
            _run(["ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0",
                  "netns", self.ns])
        _write_sys("/proc/sys/net/ipv6/conf/%s/disable_ipv6" % self.veth, "1")
        _run(["ip", "link", "set", self.veth, "master", br, "up"])
        have = _run(["ip", "-n", self.ns, "-o", "-4", "addr", "show", "dev", "eth0"]).stdout
        if " %s/%d " % (address, net.prefixlen) not in have:
            _run(["ip", "-n", self.ns, "addr", "flush", "dev", "eth0"])
            _run(["ip", "-n", self.ns, "addr", "add", "%s/%d" % (address, net.prefixlen),
                  "dev", "eth0"])
        _run(["ip", "-n", self.ns, "link", "set", "eth0", "up"])
        _run(["ip", "-n", self.ns, "route", "replace", "default", "via", gw, "dev", "eth0"])

    # --- boot / stop -------------------------------------------------------------------
    def _boot(self):
        with open(self.console, "ab") as log:
            log.write(("--- boot %s\n" % time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
                      .encode("ascii"))
            log.flush()
            env = dict(PATH="/usr/sbin:/usr/bin:/sbin:/bin", LANG="C.UTF-8", HOME="/root",
                       TERM="dumb")
            # setsid -f: the VM is re-parented to the host's init, not to this process
            subprocess.check_call(
                ["setsid", "-f", "ip", "netns", "exec", self.ns,
                 "unshare", "--mount", "--pid", "--uts", "--ipc", "--fork", "--kill-child",
                 "--propagation", "private", "--",
                 "chroot", self.rootfs, INIT_PATH],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                close_fds=True, env=env, cwd="/")
        deadline = time.monotonic() + 10
        while True:
            init = find_init(self.ns)
            if init:
                break
            if time.monotonic() > deadline:
                raise MeshfleetError("VM %s did not start; see %s:\n%s" % (
                    self.name, self.console, self.console_tail()))
            time.sleep(0.05)
        st = _status(init) or {}
        write_file_atomic(self.pid_path, "%d\n" % init, mode=0o644)
        return dict(init_pid=init, unshare_pid=int(st.get("PPid", 0) or 0))

    def console_tail(self, lines=20):
        try:
            with open(self.console, "rb") as f:
                return b"".join(f.read().splitlines(True)[-lines:]).decode("utf-8", "replace")
        except IOError:
            return ""

    def stop(self):
        """Kill every process of the VM (its init's PID namespace and anything in its netns)."""
        _kill_all(self.ns)
        if os.path.exists(self.pid_path):
            os.unlink(self.pid_path)

    def reboot(self, timeout=60):
        """Kill every process of the VM and boot it again; wait for sshd. Network and disk stay."""
        rec = self.record()
        if not rec:
            raise MeshfleetError("no netns VM %s in %s" % (self.name, self.state_dir))
        self.stop()
        with _HostLock():
            self._ensure_network(parse_subnet(rec["subnet"]), rec["address"])
            self._boot()
        self.wait_ssh(rec["address"], timeout)

    def wait_ssh(self, address, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if ssh_banner(address):
                return True
            if not self.running():
                raise MeshfleetError("VM %s stopped while booting; see %s:\n%s" % (
                    self.name, self.console, self.console_tail()))
            if time.monotonic() > deadline:
                raise WaitTimeout("timed out after %ss waiting for sshd on VM %s (%s:22); see %s"
                                  % (timeout, self.name, address, self.console))
            time.sleep(0.2)

    # --- delete ----------------------------------------------------------------------
    def delete(self):
        rec = self.record() or {}
        with _HostLock():
            _kill_all(self.ns)
            if netns_exists(self.ns):
                _run(["ip", "netns", "del", self.ns])
            if _link_exists(self.veth):
                _run(["ip", "link", "del", self.veth], check=False)
            br = rec.get("bridge")
            if br and _link_exists(br) and not os.listdir("/sys/class/net/%s/brif" % br):
                _run(["ip", "link", "del", br], check=False)
            if rec.get("address"):
                _filter_known_hosts(ssh_paths(self.state_dir)["known_hosts"], {rec["address"]})
            if os.path.isdir(self.dir):
                self._remove_tree(self.dir)
            if self.owner() in (None, self.state_dir) and os.path.exists(self.owner_path()):
                os.unlink(self.owner_path())

    def gone(self):
        return not netns_exists(self.ns) and not _link_exists(self.veth) \
            and not os.path.exists(self.dir)

    @staticmethod
    def _remove_tree(path):
        """rm -rf that refuses to descend into anything still mounted below ``path``."""
        real = os.path.realpath(path)
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mnt = line.split()[4].replace("\\040", " ")
                if mnt == real or mnt.startswith(real + "/"):
                    raise MeshfleetError("refusing to remove %s: %s is mounted" % (path, mnt))
        shutil.rmtree(path)


def ssh_banner(address, port=SSH_PORT, timeout=1.0):
    """True when an SSH server answers with its banner at ``address``:``port``."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(64).startswith(b"SSH-")
    except (socket.error, socket.timeout, OSError):
        return False


def owner_records():
    """What ``/run/meshfleet/netns`` says about every netns VM on this host: [record]."""
    out = []
    for path in sorted(glob.glob(os.path.join(RUN_DIR, "mf-*.json"))):
        try:
            with open(path) as f:
                rec = json.load(f)
        except (IOError, ValueError):
            continue
        rec.setdefault("netns", os.path.basename(path)[:-len(".json")])
        out.append(rec)
    return out


def remove_orphans(names=None, reclaim=False):
    """Remove the netns VMs whose mesh state dir is gone (a test run killed before its
    teardown); only ``names`` when given. Returns the names removed.

    ``reclaim=True`` (only with ``names``) also removes those VMs when their state dir still
    exists: for names a caller owns outright, such as the reserved names of a test suite whose
    earlier run was killed and left its temporary state dir behind."""
    if reclaim and names is None:
        raise ValueError("remove_orphans(reclaim=True) needs the list of names to reclaim")
    removed = []
    for rec in owner_records():
        name = rec["netns"][len("mf-"):]
        if names is not None and name not in names:
            continue
        state_dir = rec.get("state_dir")
        if state_dir and os.path.isdir(state_dir) and not reclaim:
            continue
        vm = NetnsVm(state_dir or "/nonexistent", name)
        with _HostLock():
            _kill_all(vm.ns)
            if netns_exists(vm.ns):
                _run(["ip", "netns", "del", vm.ns], check=False)
            if _link_exists(vm.veth):
                _run(["ip", "link", "del", vm.veth], check=False)
            br = rec.get("bridge")
            if br and _link_exists(br) and not os.listdir("/sys/class/net/%s/brif" % br):
                _run(["ip", "link", "del", br], check=False)
            os.unlink(vm.owner_path())
        removed.append(name)
    return removed


def reboot(state_dir, name, timeout=60):
    """Reboot netns VM ``name`` of the mesh state dir ``state_dir`` (for tests and humans).

    Kills every process of the VM, boots it again (sshd + the enabled rc2.d services) and
    waits for sshd. The VM keeps its disk, address and host key.
    """
    NetnsVm(state_dir, name).reboot(timeout)


def list_vms(state_dir):
    """Every netns VM recorded in ``state_dir``: [view dict]."""
    out = []
    for path in sorted(glob.glob(os.path.join(vms_dir(state_dir), "*", "vm.json"))):
        vm = NetnsVm(state_dir, os.path.basename(os.path.dirname(path)))
        rec = vm.record()
        if rec:
            out.append(vm.view(rec))
    return out


# --- the provider ----------------------------------------------------------------------

class NetnsVmProvider(VmProvider):
    """Local VMs in network namespaces (see the module docstring)."""

    name = "netns"
    required_settings = ("subnet", "state_dir")
    compared_settings = ("subnet",)

    def validate(self):
        super(NetnsVmProvider, self).validate()
        s = self.settings
        self.net = parse_subnet(s["subnet"])
        hosts = s.get("hosts")
        if isinstance(hosts, dict):
            hosts = list(hosts)
            s["hosts"] = hosts
        if hosts is not None and not (isinstance(hosts, list) and all(
                isinstance(h, str) for h in hosts)):
            raise MeshfleetError("VM group %s: settings.hosts must be a list of VM names" % self.group)
        if hosts and s.get("count") is not None and s["count"] != len(hosts):
            raise MeshfleetError("VM group %s: settings.count is %d but %d hosts are listed (%s); "
                                 "drop count or make it match" % (
                                     self.group, s["count"], len(hosts), ", ".join(hosts)))
        self.names = vm_names(self.group, s)
        for n in self.names:
            if not (NAME_RE.match(n) and len(n) <= 63):
                raise MeshfleetError("VM group %s: %r is not a valid VM name (lowercase letters, "
                                     "digits, '-' and '.')" % (self.group, n))
        if len(set(self.names)) != len(self.names):
            raise MeshfleetError("VM group %s: VM names repeat: %s" % (self.group, ", ".join(self.names)))
        if len(self.names) > capacity(self.net):
            raise MeshfleetError("VM group %s: %d VMs do not fit in %s (room for %d)" % (
                self.group, len(self.names), self.net, capacity(self.net)))
        self.state_dir = os.path.abspath(os.path.expanduser(s["state_dir"]))
        self.addresses = dict((n, vm_address(self.net, i)) for i, n in enumerate(self.names))

    @property
    def count(self):
        return len(self.names)

    def desired_names(self):
        return list(self.names)

    def _params(self):
        return getattr(self.module, "params", None) or {}

    def list(self):
        # A VM whose processes are gone (host reboot, crash) counts as missing for
        # state=present, so that create() boots it again on its kept disk; for
        # state=absent and the _info module it is listed with status "stopped".
        booting = self._params().get("state") == "present"
        out = []
        for view in list_vms(self.state_dir):
            if view.get("group") != self.group or view.get("mesh") != self.mesh:
                continue
            if booting and view["status"] != "running":
                continue
            out.append(view)
        return out

    def immutable_changes(self, instance):
        seen = instance.get("settings") or {}
        changed = []
        if seen.get("subnet") and seen["subnet"] != str(self.net):
            changed.append("subnet")
        want = self.addresses.get(instance.get("name"))
        if want and seen.get("address") and seen["address"] != want:
            changed.append("address (the VM's position in hosts)")
        return changed

    def create(self, name):
        base = find_base_rootfs(self.settings.get("rootfs_cache"))
        NetnsVm(self.state_dir, name).create(self.mesh, self.group, self.net,
                                             self.addresses[name], base)
        return netns_name(name)

    def _vm(self, ident):
        name = ident[len("mf-"):] if ident.startswith("mf-") else ident
        return NetnsVm(self.state_dir, name)

    def wait_ready(self, ids, timeout):
        deadline = time.monotonic() + timeout
        for ident in ids:
            vm = self._vm(ident)
            vm.wait_ssh((vm.record() or {}).get("address"), max(1, deadline - time.monotonic()))

    def delete(self, instance):
        NetnsVm(self.state_dir, instance["name"]).delete()

    def wait_deleted(self, ids, timeout):
        deadline = time.monotonic() + timeout
        for ident in ids:
            vm = self._vm(ident)
            while not vm.gone():
                if time.monotonic() > deadline:
                    raise WaitTimeout("timed out after %ss waiting for VM %s to go" % (timeout, vm.name))
                time.sleep(0.2)

    def reboot(self, name, timeout=60):
        NetnsVm(self.state_dir, name).reboot(timeout)
