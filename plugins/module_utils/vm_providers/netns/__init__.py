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

The package, one module per job:

- ``addressing``: pure: a group's subnet, its VMs' names and addresses, interface names, and
  how Ansible reaches a VM. The topology validation and the inventory plugin use it alone;
- ``initscript``: the VM's /sbin/meshfleet-init and sshd drop-in;
- ``keys``: the mesh's SSH key pair and the pinned host keys;
- ``runtime``: namespaces, veths, bridges, rootfs, boot, stop, reboot, removal;
- ``provider``: ``NetnsVmProvider``, the adapter meshfleet.mesh.vm_instance drives.

Importing the package loads ``addressing`` only; the other names are read from their module
on first use (``netns.NetnsVm``, ``netns.remove_orphans``, ...), so code that only needs the
addresses never imports the runtime.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib

from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers.netns.addressing import (  # noqa: F401
    MAX_PREFIXLEN, SSH_PORT, VM_PYTHON, VM_USER, addresses, bridge_name, capacity,
    connection_vars, gateway_address, group_addresses, group_vm_names, netns_name,
    parse_subnet, ssh_common_args, ssh_paths, subnet_problem, veth_name, vm_address,
    vm_names, vms_dir)

#: the names of the other modules, loaded on first use
_LAZY = dict(
    provider=("NetnsVmProvider",),
    runtime=("NetnsVm", "ROOTFS_MARKER", "RUN_DIR", "TOOLS", "default_cache", "find_base_rootfs",
             "find_init", "list_vms", "netns_exists", "netns_pids", "owner_records", "reboot",
             "remove_orphans", "ssh_banner", "_HostLock", "_kill_all", "_link_exists", "_run"),
    keys=("ensure_ssh_key", "filter_known_hosts"),
    initscript=("INIT_PATH", "INIT_SCRIPT", "SSHD_VM_CONF"),
)
_WHERE = dict((name, module) for module, names in _LAZY.items() for name in names)
_ALIASES = {"_filter_known_hosts": "filter_known_hosts"}


def __getattr__(name):
    name = _ALIASES.get(name, name)
    if name not in _WHERE:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    return getattr(importlib.import_module("%s.%s" % (__name__, _WHERE[name])), name)
