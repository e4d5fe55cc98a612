# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real node on this machine (root): its network namespace, host link and host routes, the
mount-namespace holder, containerd, kubelet, kube-proxy, the API forwarder, and a teardown
that leaves no process, mount, namespace, veth, cgroup or runtime file behind.

Everything is idempotent: :meth:`Node.up` starts what is missing (a re-run of an interrupted
create finishes it), :meth:`Node.down` removes whatever is there (a re-run of an interrupted
removal finishes it), :meth:`Node.leftovers` says what is still there.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import shutil
import subprocess
import sys
import time

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError, write_file_atomic
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet import addressing
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnode import certs, config, forward
from ansible_collections.meshfleet.mesh.plugins.module_utils.localproc import (
    https_get, kill_until_gone, pid_alive, read_pid, stop_pid)

CGROUP_FS = "/sys/fs/cgroup"
PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: the node's long-running processes, in start order
PROCESSES = ("forwarder", "holder", "containerd", "kubelet", "kube-proxy")
NODE_TOOLS = ("kubelet", "kube-proxy", "coredns")
NODE_TOOLS_HINT = ("build them with `tools/build-tools.sh --node` (or set settings.node_tools_bin / "
                   "MESHFLEET_NODE_TOOLS_BIN)")
HOST_TOOLS = ("ip", "nsenter", "unshare", "mount", "containerd", "containerd-shim-runc-v2", "ctr", "iptables")


def node_tools_bin(explicit=None):
    """The node tool set's bin dir: explicit > $MESHFLEET_NODE_TOOLS_BIN > the newest node-* build."""
    candidates = [explicit, os.environ.get("MESHFLEET_NODE_TOOLS_BIN")]
    for c in candidates:
        if c and os.path.isdir(c):
            return os.path.realpath(c)
    cache = os.environ.get("MESHFLEET_TOOLS_CACHE") or os.path.expanduser("~/.cache/meshfleet/tools")
    try:
        built = [os.path.join(cache, d, "bin") for d in os.listdir(cache) if d.startswith("node-")]
    except OSError:
        built = []
    built = [b for b in built if all(os.access(os.path.join(b, t), os.X_OK) for t in NODE_TOOLS)]
    if built:
        return max(built, key=os.path.getmtime)
    raise MeshfleetError("the node tools (kubelet, kube-proxy, coredns) were not found; %s" % NODE_TOOLS_HINT)


def _run(cmd, check=True, timeout=120, env=None):
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False,
                              universal_newlines=True, timeout=timeout, env=env)
    except OSError as e:
        raise MeshfleetError("cannot run %s: %s" % (cmd[0], e))
    if check and proc.returncode != 0:
        raise MeshfleetError("command failed (rc=%d): %s: %s" % (proc.returncode, " ".join(cmd), proc.stdout.strip()))
    return proc


def _which(name):
    for d in PATH_ENV.split(":"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None


def link_exists(name):
    return os.path.exists("/sys/class/net/%s" % name)


def netns_exists(name):
    return os.path.exists("/run/netns/%s" % name)


def _ns_inode(pid_or_path, kind="net"):
    path = pid_or_path if isinstance(pid_or_path, str) else "/proc/%d/ns/%s" % (pid_or_path, kind)
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def pids_in_ns(path_or_inode, kind="net"):
    """Live processes whose ``kind`` namespace is the one at ``path`` (or that inode)."""
    ino = path_or_inode if isinstance(path_or_inode, int) else _ns_inode(path_or_inode)
    if not ino:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat("/proc/%s/ns/%s" % (entry, kind)).st_ino == ino and pid_alive(int(entry)):
                    out.append(int(entry))
            except OSError:
                continue
    return sorted(out)


def current_cgroup():
    """The cgroup (v1: the memory controller's, which accounts; v2: the unified one) of this process."""
    paths = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            parts = line.rstrip("\n").split(":", 2)
            if len(parts) == 3:
                for ctrl in parts[1].split(","):
                    paths[ctrl] = parts[2]
    return paths.get("memory") or paths.get("") or "/"


def cgroup_hierarchies():
    """Every cgroup hierarchy's mount point (v1 controllers and, on a hybrid host, the unified
    one: runc creates the containers' cgroups there too)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, dummy, right = line.partition(" - ")
            fstype = right.split()[0] if right else ""
            if fstype in ("cgroup", "cgroup2"):
                out.append(left.split()[4])
    return sorted(set(out))


def mounts_under(*prefixes):
    """Mount points of this mount namespace (/proc/self/mountinfo) under any of ``prefixes``."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4]
            if any(point == p or point.startswith(p.rstrip("/") + "/") for p in prefixes):
                found.append(point)
    return found


class Node:
    """The real node of one cluster."""

    def __init__(self, cluster_name, cluster_dir, slot, kwok_dir, api_port, bin_dir, log=None):
        self.cluster_name = cluster_name
        self.cluster_dir = os.path.abspath(cluster_dir)
        self.slot = slot
        self.kwok_dir = kwok_dir
        self.api_port = int(api_port) if api_port else None
        self.bin_dir = bin_dir
        self.name = config.node_name(cluster_name)
        self.netns = addressing.node_netns(slot)
        self.host_veth = addressing.node_host_veth(slot)
        self.paths = config.layout(self.cluster_dir, slot)
        self.log = log or (lambda msg: None)

    # --- records ------------------------------------------------------------------------
    def _pid_path(self, name):
        return os.path.join(self.paths["pid_dir"], "%s.pid" % name)

    def pid(self, name):
        pid = read_pid(self._pid_path(name))
        if not pid or not pid_alive(pid):
            return None
        if name == "holder" and not self._is_holder(pid):
            return None
        return pid

    def _is_holder(self, pid):
        try:
            with open("/proc/%d/comm" % pid) as f:
                comm = f.read().strip()
        except IOError:
            return False
        return comm == "sleep" and _ns_inode(pid, "mnt") != _ns_inode(os.getpid(), "mnt")

    def _cgroup_record(self):
        return os.path.join(self.paths["node_dir"], "cgroups.json")

    @property
    def cgroup_root(self):
        try:
            with open(self._cgroup_record()) as f:
                return json.load(f)["root"]
        except (IOError, ValueError, KeyError):
            return config.cgroup_root(current_cgroup(), self.slot)

    # --- state --------------------------------------------------------------------------
    def running(self):
        return all(self.pid(p) for p in PROCESSES)

    def exists(self):
        return bool(netns_exists(self.netns) or link_exists(self.host_veth)
                    or os.path.isdir(self.paths["node_dir"]) or os.path.isdir(self.paths["run_dir"])
                    or any(self.pid(p) for p in PROCESSES))

    def ready(self, kc):
        """True when the API server lists the node with condition Ready=True (``kc``: the admin
        kubeconfig's server, ca, cert, key)."""
        status, body = https_get("%s/api/v1/nodes/%s" % (kc["server"], self.name), ca_file=kc["ca"],
                                 cert_file=kc["cert"], key_file=kc["key"])
        if status != 200:
            return False
        try:
            conds = json.loads(body).get("status", {}).get("conditions") or []
        except ValueError:
            return False
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)

    # --- checks ---------------------------------------------------------------------------
    def check_host(self):
        if os.geteuid() != 0:
            raise MeshfleetError("cluster %s: real_node needs root (network and mount namespaces, containerd)"
                                 % self.cluster_name)
        missing = [t for t in HOST_TOOLS if not _which(t)]
        if not os.access(config.RUNC, os.X_OK):
            missing.append("runc (%s)" % config.RUNC)
        if not os.access(os.path.join(config.CNI_BIN_DIR, "bridge"), os.X_OK):
            missing.append("the CNI plugins (%s)" % config.CNI_BIN_DIR)
        if missing:
            raise MeshfleetError("cluster %s: real_node needs %s on this machine; `scripts/setup.sh --node` "
                                 "installs them" % (self.cluster_name, ", ".join(missing)))
        for t in ("kubelet", "kube-proxy"):
            if not os.access(os.path.join(self.bin_dir, t), os.X_OK):
                raise MeshfleetError("cluster %s: %s is missing from %s; %s"
                                     % (self.cluster_name, t, self.bin_dir, NODE_TOOLS_HINT))

    # --- up -------------------------------------------------------------------------------
    def up(self, images):
        """Create and start whatever is missing. ``images``: dict(pause=<ref>, archives=[...])."""
        self.check_host()
        self._network()
        self._files(images["pause"])
        self._cgroups()
        self._start_forwarder()
        holder = self.pid("holder")
        if not holder:
            # a node process outside a live holder's namespace is from an older run: restart all
            self._stop_node_processes()
            holder = self._start_holder()
        if not self.pid("containerd"):
            self._spawn("containerd", config.enter_argv(holder, config.containerd_argv(
                _which("containerd"), self.paths)))
            self._wait(lambda: os.path.exists(self.paths["containerd_sock"]), 60, "containerd's socket")
        self._import(images.get("archives") or [])
        if not self.pid("kubelet"):
            self._spawn("kubelet", config.enter_argv(holder, config.kubelet_argv(
                os.path.join(self.bin_dir, "kubelet"), self.slot, self.paths, self.name)))
        if not self.pid("kube-proxy"):
            self._spawn("kube-proxy", config.enter_argv(holder, config.kube_proxy_argv(
                os.path.join(self.bin_dir, "kube-proxy"), self.paths)))

    def _network(self):
        net, host_end, node_end = addressing.host_link(self.slot)
        plen = net.prefixlen
        if not netns_exists(self.netns):
            _run(["ip", "netns", "add", self.netns])
        ns = ["ip", "-n", self.netns]
        if not link_exists(self.host_veth):
            _run(["ip", "link", "add", self.host_veth, "type", "veth", "peer", "name",
                  addressing.NODE_HOST_IF, "netns", self.netns])
        _run(["ip", "addr", "replace", "%s/%d" % (host_end, plen), "dev", self.host_veth])
        _run(["ip", "link", "set", self.host_veth, "up"])
        _run(ns + ["link", "set", "lo", "up"])
        _run(ns + ["addr", "replace", "%s/%d" % (node_end, plen), "dev", addressing.NODE_HOST_IF])
        _run(ns + ["link", "set", addressing.NODE_HOST_IF, "up"])
        for dst in config.node_routes(self.slot):
            _run(ns + ["route", "replace", dst, "via", host_end, "dev", addressing.NODE_HOST_IF])
        for dst in config.host_routes(self.slot):
            _run(["ip", "route", "replace", dst, "via", node_end, "dev", self.host_veth])
        # forwarding inside the node's own namespace (per namespace; the host's stays as it is)
        _run(["nsenter", "--net=/run/netns/%s" % self.netns, "--", "sh", "-c",
              "echo 1 > /proc/sys/net/ipv4/ip_forward"])

    def _files(self, pause_image):
        p = self.paths
        for d in ("node_dir", "conf_dir", "pki_dir", "log_dir", "sysctl_dir", "cni_conf_dir",
                  "containerd_root", "pod_logs"):
            os.makedirs(p[d], 0o700, exist_ok=True)
        for d in ("run_dir", "pid_dir", "kubelet_root", "containerd_state"):
            os.makedirs(p[d], 0o700, exist_ok=True)
        os.chmod(p["pod_logs"], 0o755)
        ca_crt = os.path.join(self.kwok_dir, "pki", "ca.crt")
        ca_key = os.path.join(self.kwok_dir, "pki", "ca.key")
        with open(ca_crt, "rb") as f:
            ca_pem = f.read()
        with open(ca_key, "rb") as f:
            ca_key_pem = f.read()
        server = "https://%s:%d" % (addressing.host_link(self.slot)[1], self.api_port)
        from ansible_collections.meshfleet.mesh.plugins.module_utils import kubeconfig as kcmod
        for who, (user, groups), kubeconfig in (
                ("kubelet", certs.node_identity(self.name), p["kubelet_kubeconfig"]),
                ("kube-proxy", certs.PROXY_IDENTITY, p["proxy_kubeconfig"])):
            crt = os.path.join(p["pki_dir"], "%s.crt" % who)
            key = os.path.join(p["pki_dir"], "%s.key" % who)
            have = None
            if os.path.exists(crt) and os.path.exists(key):
                with open(crt, "rb") as f:
                    have = f.read()
                if not certs.is_signed_by(have, ca_pem):
                    have = None
            if have is None:
                cert_pem, key_pem = certs.sign_client(ca_pem, ca_key_pem, user, groups)
                write_file_atomic(key, key_pem.decode(), mode=0o600)
                write_file_atomic(crt, cert_pem.decode(), mode=0o600)
            with open(crt) as f:
                cert_text = f.read()
            with open(key) as f:
                key_text = f.read()
            kc = kcmod.build_kubeconfig(self.cluster_name, server, kcmod.cert_user(cert_text, key_text),
                                        ca=ca_pem.decode())
            kcmod.write_kubeconfig(kubeconfig, kc)
        write_file_atomic(os.path.join(p["pki_dir"], "ca.crt"), ca_pem.decode(), mode=0o644)
        # the host's own values: what kubelet reads first (it writes its wishes into these files)
        for name in config.GUARDED_SYSCTLS:
            path = config.sysctl_file(p["sysctl_dir"], name)
            if not os.path.exists(path):
                with open("/proc/sys/%s" % name) as f:
                    write_file_atomic(path, f.read(), mode=0o644)
        write_file_atomic(p["holder"], config.holder_script(p), mode=0o700)
        write_file_atomic(p["forwarder"], forward.SCRIPT, mode=0o600)
        write_file_atomic(p["resolv_conf"], "# no upstream resolvers on a Meshfleet real node\n", mode=0o644)
        write_file_atomic(p["containerd_conf"], config.containerd_config(p, pause_image), mode=0o600)
        write_file_atomic(os.path.join(p["cni_conf_dir"], "10-meshfleet.conflist"),
                          json.dumps(config.cni_config(self.slot), indent=1), mode=0o644)
        import yaml
        write_file_atomic(p["kubelet_conf"], yaml.safe_dump(config.kubelet_config(
            self.slot, p, self.cgroup_root, os.path.join(p["pki_dir"], "ca.crt"))), mode=0o600)
        write_file_atomic(p["proxy_conf"], yaml.safe_dump(config.kube_proxy_config(self.slot, p, self.name)),
                          mode=0o600)
        for folder in config.PRIVATE_TMPFS:  # mount points of the holder's private tmpfs
            os.makedirs(folder, 0o711, exist_ok=True)

    def _cgroups(self):
        record = self._cgroup_record()
        if os.path.exists(record):
            with open(record) as f:
                data = json.load(f)
        else:
            data = dict(root=config.cgroup_root(current_cgroup(), self.slot), created=[])
        root = data["root"]
        created = set(data["created"])
        for hier in cgroup_hierarchies():
            parts = [x for x in root.split("/") if x]
            path = hier
            for part in parts:
                parent, path = path, os.path.join(path, part)
                if not os.path.isdir(path):
                    os.mkdir(path)
                    created.add(path)
                    for knob in ("cpuset.cpus", "cpuset.mems"):
                        src = os.path.join(parent, knob)
                        if os.path.exists(src):
                            with open(src) as f:
                                value = f.read().strip()
                            with open(os.path.join(path, knob), "w") as f:
                                f.write(value)
        data["created"] = sorted(created)
        write_file_atomic(record, json.dumps(data, indent=1), mode=0o600)

    def _spawn(self, name, argv):
        logf = open(os.path.join(self.paths["log_dir"], "%s.log" % name), "ab")
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                    start_new_session=True, close_fds=True, cwd="/",
                                    env=config.daemon_env(name, dict(PATH=PATH_ENV, HOME="/root", LANG="C.UTF-8")))
        except OSError as e:
            raise MeshfleetError("cluster %s: cannot start %s: %s" % (self.cluster_name, name, e))
        finally:
            logf.close()
        write_file_atomic(self._pid_path(name), "%d\n" % proc.pid, mode=0o600)
        self.log("started %s (pid %d)" % (name, proc.pid))
        return proc

    def _start_forwarder(self):
        if self.pid("forwarder"):
            return
        host_end = addressing.host_link(self.slot)[1]
        self._spawn("forwarder", [sys.executable, self.paths["forwarder"], host_end, str(self.api_port),
                                  "127.0.0.1", str(self.api_port)])

    def _start_holder(self):
        proc = self._spawn("holder", config.holder_argv(self.netns, self.paths))
        self._wait(lambda: self.pid("holder") or proc.poll() is not None, 20, "the node's namespace holder")
        if not self.pid("holder"):
            raise MeshfleetError("cluster %s: the node's mount namespace could not be set up; see %s"
                                 % (self.cluster_name, os.path.join(self.paths["log_dir"], "holder.log")))
        return proc.pid

    def _import(self, archives):
        if not archives:
            return
        from ansible_collections.meshfleet.mesh.plugins.module_utils.images import containerd as ctrd
        self._wait(lambda: _run(["ctr", "--address", self.paths["containerd_sock"], "version"],
                                check=False, timeout=10).returncode == 0, 60, "containerd to answer")
        try:
            ctrd.import_images(self.paths["containerd_sock"], archives)
        except ctrd.ContainerdError as e:
            raise MeshfleetError("cluster %s: importing images into the node failed: %s" % (self.cluster_name, e))

    def _wait(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise MeshfleetError("cluster %s: timed out after %ds waiting for %s (logs: %s)"
                                     % (self.cluster_name, timeout, what, self.paths["log_dir"]))
            time.sleep(0.2)

    # --- down -----------------------------------------------------------------------------
    def _cgroup_dirs(self):
        """Every cgroup folder of the node (kubelet's subtree in each hierarchy), deepest first."""
        out = []
        root = self.cgroup_root.strip("/")
        for hier in cgroup_hierarchies():
            top = os.path.join(hier, root)
            for dirpath, dirnames, dummy in os.walk(top):
                out.append(dirpath)
        return sorted(out, key=lambda p: p.count("/"), reverse=True)

    def _cgroup_pids(self):
        pids = set()
        for d in self._cgroup_dirs():
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    pids.update(int(x) for x in f.read().split())
            except (IOError, ValueError):
                continue
        return sorted(p for p in pids if pid_alive(p))

    def node_pids(self):
        """Every live process of the node: its recorded processes, whatever runs in its network
        namespace or its holder's mount namespace (containerd, shims), and the pods' processes
        (in its cgroups)."""
        pids = set(p for p in (self.pid(n) for n in PROCESSES) if p)
        if netns_exists(self.netns):
            pids.update(pids_in_ns("/run/netns/%s" % self.netns, "net"))
        holder = self.pid("holder")
        if holder:
            mnt = _ns_inode(holder, "mnt")
            if mnt and mnt != _ns_inode(os.getpid(), "mnt"):
                pids.update(pids_in_ns(mnt, "mnt"))
        pids.update(self._cgroup_pids())
        pids.discard(os.getpid())
        return sorted(p for p in pids if pid_alive(p))

    def _stop_node_processes(self):
        for name in ("kube-proxy", "kubelet"):
            stop_pid(self.pid(name), timeout=10)
        stop_pid(self.pid("containerd"), timeout=10)
        left = kill_until_gone(lambda: [p for p in self.node_pids() if p != self.pid("forwarder")], 30)
        if left:
            raise MeshfleetError("cluster %s: processes %s of the node did not go away"
                                 % (self.cluster_name, ", ".join(map(str, left))))

    def down(self):
        """Stop and remove everything of the node."""
        self._stop_node_processes()
        stop_pid(self.pid("forwarder"), timeout=5)
        if netns_exists(self.netns):
            _run(["ip", "netns", "del", self.netns])
        if link_exists(self.host_veth):
            _run(["ip", "link", "del", self.host_veth], check=False)
        created = []
        try:
            with open(self._cgroup_record()) as f:
                created = json.load(f).get("created") or []
        except (IOError, ValueError):
            pass
        for d in self._cgroup_dirs() + sorted(created, key=lambda p: p.count("/"), reverse=True):
            try:
                os.rmdir(d)
            except OSError as e:
                if e.errno == errno.ENOENT or (d in created and e.errno in (errno.EBUSY, errno.ENOTEMPTY)):
                    continue  # gone, or a folder above the node's that another node still uses
                raise MeshfleetError("cluster %s: cannot remove the node's cgroup %s: %s"
                                     % (self.cluster_name, d, e))
        for d in (self.paths["run_dir"], self.paths["node_dir"]):
            if os.path.isdir(d):
                shutil.rmtree(d)

    def leftovers(self):
        """What of the node is still on this machine (empty after :meth:`down`)."""
        out = []
        pids = self.node_pids()
        if pids:
            out.append("processes %s" % pids)
        if netns_exists(self.netns):
            out.append("network namespace %s" % self.netns)
        if link_exists(self.host_veth):
            out.append("veth %s" % self.host_veth)
        cg = [d for d in self._cgroup_dirs() if os.path.isdir(d)]
        if cg:
            out.append("cgroups %s" % cg)
        mounts = mounts_under(self.paths["run_dir"], self.paths["node_dir"])
        if mounts:
            out.append("mounts %s" % mounts)
        for d in (self.paths["run_dir"], self.paths["node_dir"]):
            if os.path.exists(d):
                out.append("folder %s" % d)
        return out
