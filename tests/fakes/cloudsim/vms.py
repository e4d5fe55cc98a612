# -*- coding: utf-8 -*-
"""The fake clouds' instances as real machines: each one a netns VM at the address the cloud reports.

When cloudsim runs with VMs (``--vms``), every instance the fake clouds create (EC2 RunInstances
through moto, an OpenStack server) is backed by a local netns VM
(plugins/module_utils/vm_providers/netns.py: a network namespace with its own Debian root
filesystem and sshd) whose ``eth0`` has the instance's private address, on a bridge for the
instance's subnet whose .1 is the host (the cloud's router: AWS and neutron both give a subnet's
first address to the gateway). Before the instance is reported running (EC2 ``running``, nova
``ACTIVE``) a stand-in for cloud-init does what the clouds' images do with the instance's key
pair (cloud-init ``users: [default]`` + ``disable_root: true``):

- the image's default user (``ubuntu`` on Ubuntu images, ``ec2-user`` on Amazon Linux) with the
  key pair's public key in ``~/.ssh/authorized_keys`` and passwordless sudo
  (``/etc/sudoers.d/90-cloud-init-users``);
- root's ``authorized_keys`` holds the same key behind cloud-init's forced command ("Please login
  as the user ... rather than the user root"), so root cannot log in;
- the VM's own ssh host key, made in its rootfs when it is created; nothing on the controller
  pins it: the mesh pins it on first contact, as for any cloud VM.

Deleting the instance (TerminateInstances, server DELETE, or the sim stopping) deletes the VM:
processes, netns, veth, bridge (when its last VM goes) and rootfs.

**Addresses, and why no packet leaves this machine.** The sim takes one /16 of
:data:`SLOTS` (10.83.0.0/16 .. 10.86.0.0/16, beside the project's other netns ranges 10.77-10.82)
under a host-wide lock for its lifetime, and the fake clouds' VM subnets live in it (the EC2 VPC
and its subnets, the OpenStack VM network's subnet). Starting with VMs, the sim

- refuses to start when the host already routes into that /16 through anything but Meshfleet's
  own bridges (the range belongs to a real network here);
- adds ``unreachable <range>`` to the host's routing table (removed at stop): an address of the
  range that is not on one of the VMs' bridges (a /24, more specific) is refused on this machine
  instead of following the default route out;
- reports an instance running only once its VM answers SSH at the reported address.
"""

from __future__ import absolute_import, division, print_function

import fcntl
import ipaddress
import logging
import os
import subprocess
import threading
import time

from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers import netns

LOG = logging.getLogger("cloudsim.vms")

#: the /16s a sim can take (one per running sim, under a host-wide lock)
SLOTS = ("10.83.0.0/16", "10.84.0.0/16", "10.85.0.0/16", "10.86.0.0/16")
LOCK_DIR = netns.RUN_DIR
MESH = "cloudsim"
BOOT_TIMEOUT = 60

#: cloud-init's ``disable_root`` forced command (cloudinit/config/cc_ssh.py DISABLE_USER_OPTS)
DISABLE_ROOT_OPTS = ('no-port-forwarding,no-agent-forwarding,no-X11-forwarding,'
                     'command="echo \'Please login as the user \\"%s\\" rather than the user '
                     '\\"root\\".\';echo;sleep 10;exit 142"')


def default_user(image_name):
    """The default user of a cloud image, as its cloud-init configuration names it."""
    name = (image_name or "").lower()
    if "ubuntu" in name:
        return "ubuntu"
    if "debian" in name:
        return "admin"
    # Amazon Linux (amzn-, amzn2-, al2023-) and the rest of moto's AMIs
    return "ec2-user"


def _routes():
    out = subprocess.run(["ip", "-o", "-4", "route", "show", "table", "all"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, universal_newlines=True, check=False).stdout
    for line in out.splitlines():
        words = line.split()
        if not words:
            continue
        kind = "unicast"
        if words[0] in ("unreachable", "blackhole", "prohibit", "local", "broadcast", "unicast",
                        "multicast", "throw"):
            kind = words.pop(0)
        if not words or words[0] == "default":
            continue
        try:
            net = ipaddress.ip_network(words[0], strict=False)
        except ValueError:
            continue
        dev = words[words.index("dev") + 1] if "dev" in words else None
        yield kind, net, dev


def foreign_routes(rng):
    """Routes of this host into ``rng`` that are not Meshfleet's (its bridges, its unreachable route)."""
    out = []
    for kind, net, dev in _routes():
        if not net.overlaps(rng):
            continue
        if kind == "unreachable" and net == rng:
            continue
        if dev and dev.startswith("mfbr-"):
            continue
        out.append("%s %s%s" % (kind, net, " dev %s" % dev if dev else ""))
    return out


def route_device(address):
    """The device ``ip route get`` sends ``address`` to (None when unroutable)."""
    proc = subprocess.run(["ip", "-o", "route", "get", str(address)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    words = proc.stdout.split()
    if proc.returncode != 0 or "dev" not in words:
        return None
    return words[words.index("dev") + 1]


class CloudVms:
    """The netns VMs behind the fake clouds' instances (one sim, one slot)."""

    def __init__(self, work_dir, rootfs=None):
        if os.geteuid() != 0:
            raise RuntimeError("cloudsim --vms needs root (network namespaces)")
        self.state_dir = os.path.join(os.path.abspath(work_dir), "netns")
        os.makedirs(self.state_dir, 0o700, exist_ok=True)
        self.rootfs = rootfs or netns.find_base_rootfs()
        self.lock = threading.RLock()
        self.vms = {}                 # key -> dict(name, address, state, error, user)
        self._lock_fd = None
        self.slot, self.range = self._take_slot()
        self.prefix = "cs%d-" % self.slot
        self._reclaim()
        problems = foreign_routes(self.range)
        if problems:
            self._release()
            raise RuntimeError("the fake clouds' VM range %s is routed on this host already (%s): "
                               "it belongs to a real network here; refusing to put VMs there"
                               % (self.range, "; ".join(problems)))
        subprocess.run(["ip", "route", "replace", "unreachable", str(self.range)], check=True)
        LOG.info("VM range %s (slot %d); addresses outside the VMs' bridges are unreachable",
                 self.range, self.slot)

    # --- the range ------------------------------------------------------------------
    def _take_slot(self):
        os.makedirs(LOCK_DIR, 0o700, exist_ok=True)
        for i, rng in enumerate(SLOTS):
            fd = os.open(os.path.join(LOCK_DIR, "cloudsim-slot-%d.lock" % i), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self._lock_fd = fd
            return i, ipaddress.ip_network(rng)
        raise RuntimeError("every cloudsim VM range (%s) is taken by a running sim" % ", ".join(SLOTS))

    def _release(self):
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _reclaim(self):
        """VMs of this slot left by a sim that was killed (we hold the slot: none is live)."""
        names = [r["netns"][len("mf-"):] for r in netns.owner_records()
                 if r["netns"].startswith("mf-" + self.prefix)]
        if names:
            removed = netns.remove_orphans(names, reclaim=True)
            LOG.warning("removed VMs a killed sim left behind: %s", ", ".join(removed))

    def subnet(self, index, prefixlen=24):
        """The ``index``-th /24 of the range (10.8x.<index>.0/24)."""
        return list(self.range.subnets(new_prefix=prefixlen))[index]

    # --- instances -------------------------------------------------------------------
    def vm_name(self, key):
        return self.prefix + key

    def launch(self, key, subnet, address, user, public_key, on_ready, on_failed):
        """Create and boot the VM of instance ``key`` in a thread; then ``on_ready()`` or ``on_failed(msg)``."""
        net = ipaddress.ip_network(subnet)
        if ipaddress.ip_address(address) not in net or not net.subnet_of(self.range):
            raise ValueError("address %s / subnet %s is outside the sim's VM range %s" % (address, net, self.range))
        rec = dict(name=self.vm_name(key), address=str(address), subnet=str(net), user=user, state="creating",
                   state_dir=self.state_dir)
        with self.lock:
            self.vms[key] = rec
        threading.Thread(target=self._create, args=(key, rec, net, public_key, on_ready, on_failed),
                         name="vm-" + key, daemon=True).start()

    def _create(self, key, rec, net, public_key, on_ready, on_failed):
        started = time.monotonic()
        vm = netns.NetnsVm(self.state_dir, rec["name"])
        try:
            vm.create(MESH, key, net, rec["address"], self.rootfs)
            cloud_init(vm.rootfs, rec["user"], public_key)
            vm.wait_ssh(rec["address"], BOOT_TIMEOUT)
        except Exception as e:  # the instance fails to launch (reported by the cloud)
            LOG.exception("VM of %s failed", key)
            with self.lock:
                rec.update(state="failed", error=str(e))
            self._delete(rec)
            on_failed(str(e))
            return
        with self.lock:
            if rec.get("state") == "deleting":
                return
            rec["state"] = "running"
        LOG.info("VM %s for %s up at %s (user %s) in %.1fs", rec["name"], key, rec["address"],
                 rec["user"], time.monotonic() - started)
        on_ready()

    def remove(self, key):
        """Delete the VM of instance ``key`` (now; no-op when there is none)."""
        with self.lock:
            rec = self.vms.pop(key, None)
            if rec is None:
                return
            rec["state"] = "deleting"
        self._delete(rec)

    def _delete(self, rec):
        vm = netns.NetnsVm(self.state_dir, rec["name"])
        for _attempt in range(50):  # a create still copying the rootfs: wait for it
            try:
                vm.delete()
                break
            except Exception as e:
                LOG.warning("deleting VM %s: %s (retrying)", rec["name"], e)
                time.sleep(0.2)
        LOG.info("VM %s (%s) deleted", rec["name"], rec["address"])

    def describe(self):
        with self.lock:
            return dict((k, dict(v)) for k, v in self.vms.items())

    def shutdown(self):
        for key in list(self.vms):
            try:
                self.remove(key)
            except Exception:
                LOG.exception("removing the VM of %s", key)
        subprocess.run(["ip", "route", "del", "unreachable", str(self.range)], check=False,
                       stderr=subprocess.DEVNULL)
        self._release()


def cloud_init(rootfs, user, public_key):
    """What cloud-init does with the instance's key pair on a cloud image (see the module docstring)."""
    def chroot(*cmd):
        subprocess.run(["chroot", rootfs] + list(cmd), check=True, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    entry = _passwd_entry(rootfs, user)
    if entry is None:
        chroot("/usr/sbin/useradd", "--create-home", "--shell", "/bin/bash", "--user-group",
               "--groups", "sudo", user)
        entry = _passwd_entry(rootfs, user)
    uid, gid, home = entry
    sudoers = os.path.join(rootfs, "etc/sudoers.d/90-cloud-init-users")
    with open(sudoers, "w") as f:
        f.write("# Created by cloud-init (cloudsim's stand-in)\n%s ALL=(ALL) NOPASSWD:ALL\n" % user)
    os.chmod(sudoers, 0o440)
    ssh_dir = os.path.join(rootfs, home.lstrip("/"), ".ssh")
    os.makedirs(ssh_dir, 0o700, exist_ok=True)
    keys = os.path.join(ssh_dir, "authorized_keys")
    with open(keys, "w") as f:
        f.write(public_key.strip() + "\n")
    os.chmod(keys, 0o600)
    for path in (ssh_dir, keys):
        os.chown(path, uid, gid)
    root_keys = os.path.join(rootfs, "root/.ssh/authorized_keys")
    with open(root_keys, "w") as f:
        f.write("%s %s\n" % (DISABLE_ROOT_OPTS % user, public_key.strip()))
    os.chmod(root_keys, 0o600)


def _passwd_entry(rootfs, user):
    with open(os.path.join(rootfs, "etc/passwd")) as f:
        for line in f:
            parts = line.rstrip("\n").split(":")
            if len(parts) >= 6 and parts[0] == user:
                return int(parts[2]), int(parts[3]), parts[5]
    return None
