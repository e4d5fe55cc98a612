# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The netns VM runtime: network namespaces, veths and bridges, the VM's root filesystem,
its boot (unshare + chroot + /sbin/meshfleet-init), stop, reboot and removal, and the
host-wide records of which state dir owns which VM (``/run/meshfleet/netns``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fcntl
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import time

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import (
    MeshfleetError, WaitTimeout, ensure_private_dir, write_file_atomic)
from ansible_collections.meshfleet.mesh.plugins.module_utils.localproc import kill_until_gone
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers.netns.addressing import (
    SSH_PORT, bridge_name, connection_vars, gateway_address, netns_name, parse_subnet, ssh_paths,
    veth_name, vms_dir)
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers.netns.initscript import INIT_PATH, INIT_SCRIPT, SSHD_VM_CONF
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers.netns.keys import ensure_ssh_key, filter_known_hosts

ROOTFS_MARKER = ".meshfleet-rootfs"
RUN_DIR = "/run/meshfleet/netns"
TOOLS = ("ip", "unshare", "chroot", "setsid", "cp")


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
    left = kill_until_gone(lambda: netns_pids(ns), timeout)
    if left:
        raise WaitTimeout("processes %s of network namespace %s did not go away"
                          % (", ".join(map(str, left)), ns))


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
            host_key = self._configure_rootfs(address, public_key, gateway_address(net))
            filter_known_hosts(ssh_paths(self.state_dir)["known_hosts"], {address},
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

    def _configure_rootfs(self, address, public_key, gateway):
        r = self.rootfs
        write_file_atomic(os.path.join(r, "etc/hostname"), self.name + "\n", mode=0o644)
        write_file_atomic(os.path.join(r, "etc/hosts"), self._hosts_file(address), mode=0o644)
        # A resolver, as every host has (the template has none): the subnet's gateway. Nothing answers
        # DNS there; Istio's DNS capture (istio-iptables captures queries to the resolv.conf servers)
        # answers the mesh's names. A resolv.conf a play wrote with a nameserver is kept.
        resolv = os.path.join(r, "etc/resolv.conf")
        if os.path.islink(resolv):      # would point into the host's tree
            os.unlink(resolv)
        try:
            with open(resolv) as f:
                has_ns = any(line.split()[:1] == ["nameserver"] for line in f)
        except (IOError, OSError):
            has_ns = False
        if not has_ns:
            write_file_atomic(resolv, "nameserver %s\n" % gateway, mode=0o644)
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
                filter_known_hosts(ssh_paths(self.state_dir)["known_hosts"], {rec["address"]})
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
