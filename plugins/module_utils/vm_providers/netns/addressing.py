# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""netns VMs, pure: a group's subnet, its VMs' names and addresses, their interface names,
and how Ansible reaches them (paths under the state dir, connection vars).

Shared by the topology validation, the inventory plugin and the provider; no process,
no file is touched here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import ipaddress
import os
import re

from collections.abc import Mapping

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError
from ansible_collections.meshfleet.mesh.plugins.module_utils.provider_spec import DEFAULT_VM_COUNT

SSH_PORT = 22
VM_USER = "root"
VM_PYTHON = "/usr/bin/python3"
#: the smallest subnet: network, .1 (the host), one VM, broadcast
MAX_PREFIXLEN = 30


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


def vm_names(group, hosts=None, count=None):
    """A netns group's VM names, in address order: its listed ``hosts`` (a list, or the
    topology's mapping), else ``<group>-1`` .. ``<group>-<count>`` (``count`` None: the default
    one VM; not a whole number >= 0: none)."""
    if isinstance(hosts, (list, tuple, Mapping)) and hosts:
        return ["%s" % (h,) for h in hosts]
    count = DEFAULT_VM_COUNT if count is None else count
    if not (isinstance(count, int) and not isinstance(count, bool) and count >= 0):
        return []
    return ["%s-%d" % (group, i) for i in range(1, count + 1)]


def addresses(net, names):
    """{vm name: address} of ``names`` in ``net`` (.2, .3, ...), those that fit."""
    return dict((n, str(net.network_address + 2 + i)) for i, n in enumerate(names) if i < capacity(net))


def group_vm_names(group_name, group):
    """The VM names of a topology VM group (``vm_groups.<group_name>``) of provider netns."""
    group = group if isinstance(group, Mapping) else {}
    settings = group.get("settings") if isinstance(group.get("settings"), Mapping) else {}
    return vm_names(group_name, group.get("hosts"), settings.get("count"))


def group_addresses(group_name, group):
    """{vm name: address} of a topology netns VM group; {} when its subnet is not usable."""
    settings = group.get("settings") if isinstance(group, Mapping) else None
    subnet = settings.get("subnet") if isinstance(settings, Mapping) else None
    if subnet is None or subnet_problem(subnet):
        return {}
    return addresses(ipaddress.ip_network(u"%s" % subnet), group_vm_names(group_name, group))


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


def subnet_problem(value, show=repr, kind=None):
    """Why ``value`` is not a usable netns subnet (an IPv4 CIDR, /30 or larger), or None.
    ``show`` quotes a value and ``kind`` names a type in the message (the topology's own)."""
    kind = kind or (lambda v: "a %s" % type(v).__name__)
    if not isinstance(value, str):
        return "must be an IPv4 network in CIDR notation such as 10.77.0.0/24, got %s" % (
            show(value) if not isinstance(value, (list, dict)) else kind(value))
    try:
        net = ipaddress.ip_network(u"%s" % value, strict=False)
    except ValueError:
        return "%s is not an IPv4 network in CIDR notation such as 10.77.0.0/24" % show(value)
    if net.version != 4:
        return "%s is not an IPv4 network; netns VMs use IPv4 (e.g. 10.77.0.0/24)" % show(value)
    if "/" not in value:
        return "%s has no prefix length; write it as %s" % (show(value), net)
    if str(net) != value:
        return "%s has host bits set; the network is %s" % (show(value), net)
    if net.prefixlen > MAX_PREFIXLEN:
        return "%s is too small: netns VMs need a /30 or larger (.1 is the host, VMs from .2)" \
            % show(value)
    return None


def parse_subnet(subnet, what="settings.subnet"):
    """``10.77.0.0/24`` -> IPv4Network; MeshfleetError with the reason otherwise."""
    problem = subnet_problem(subnet)
    if problem:
        raise MeshfleetError("%s: %r is not an IPv4 network in CIDR notation such as 10.77.0.0/24, "
                             "/30 or larger (%s)" % (what, subnet, problem))
    return ipaddress.ip_network(u"%s" % (subnet,))
