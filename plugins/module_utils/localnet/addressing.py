# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The address plan of local real-node clusters, pure (no process, no file).

Every real node lives in a network namespace of its own; the nodes of one Istio network
are joined by that network's router namespace; the routers of one mesh by the mesh's core
namespace, which routes only load-balancer addresses (so a pod reaches another network's
pods only through that network's east-west gateway, as in production). The host reaches
every node (API server -> kubelet, webhooks, pods) through one veth per node, and routes
nothing between them (``net.ipv4.ip_forward`` on the host is never touched).

Numbers come from the machine-wide slot registry (``localnet.slots``), because several
meshes (the demo, test runs) share one machine and interface names are machine-wide:

* node slot ``s`` (0..255), one per real-node cluster:

  ======================  =====================  ==========================================
  what                    range                  slot ``s``
  ======================  =====================  ==========================================
  pod CIDR                10.112.0.0/12          /20 number ``s`` (4096 pods)
  host <-> node link      10.132.0.0/16          /30 number ``s``: host .1, node .2
  router <-> node link    10.133.0.0/16          /30 number ``s``: router .1, node .2
  load-balancer pool      10.130.0.0/16          10.130.s.0/24
  service CIDR            10.131.0.0/16          10.131.s.0/24, cluster DNS at .10
  ======================  =====================  ==========================================

* network slot ``n`` (0..63), one per Istio network of a mesh: core <-> router link
  10.134.0.0/16, /30 number ``n``: core .1, router .2.
* mesh slot ``m`` (0..63): the core namespace ``mfc-<m>``.
* VM link slot ``v`` (0..16383), one per netns VM joined to its network's router: router
  <-> VM link 10.135.0.0/16, /30 number ``v``: router .1 (``v<v>``), VM .2 (``mesh0``).
  The VM keeps its own address (its subnet's, e.g. 10.77.0.2): the router routes it to the
  VM, the VM routes the pod range and the load-balancer range to the router.

Nothing here overlaps the netns VMs (10.77.0.0/16 and the groups' own subnets), the cloud
VMs (10.83.0.0/16 to 10.86.0.0/16), Kubernetes' usual service range 10.96.0.0/12 or
kube-apiserver's default 10.0.0.0/24; every address stays inside
namespaces the project creates and the host's own veths.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError

MAX_NODE_SLOTS = 256
MAX_NETWORK_SLOTS = 64
MAX_MESH_SLOTS = 64

POD_RANGE = ipaddress.ip_network("10.112.0.0/12")
POD_PREFIX = 20
HOST_LINK_RANGE = ipaddress.ip_network("10.132.0.0/16")
ROUTER_LINK_RANGE = ipaddress.ip_network("10.133.0.0/16")
CORE_LINK_RANGE = ipaddress.ip_network("10.134.0.0/16")
LB_RANGE = ipaddress.ip_network("10.130.0.0/16")
SERVICE_RANGE = ipaddress.ip_network("10.131.0.0/16")
VM_LINK_RANGE = ipaddress.ip_network("10.135.0.0/16")
MAX_VM_LINK_SLOTS = 16384
#: every range above: what the plan may route
ALL_RANGES = (POD_RANGE, HOST_LINK_RANGE, ROUTER_LINK_RANGE, CORE_LINK_RANGE, LB_RANGE, SERVICE_RANGE, VM_LINK_RANGE)
#: what a VM joined to its router sends there: pods (of its network) and load-balancer addresses
#: (its network's, and the other networks' east-west gateways through the core)
VM_ROUTED_RANGES = (POD_RANGE, LB_RANGE)
#: the first load-balancer address handed out in a pool (.1-.9 left for the plan)
LB_FIRST = 10
CLUSTER_DNS_OFFSET = 10


def _check(slot, limit, what):
    if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < limit:
        raise MeshfleetError("%s slot %r is out of range: from 0 to %d" % (what, slot, limit - 1))
    return slot


def _link(rng, slot):
    net = ipaddress.ip_network("%s/30" % (rng.network_address + 4 * slot))
    return net, str(net.network_address + 1), str(net.network_address + 2)


# --- node slot -------------------------------------------------------------------------

def pod_cidr(slot):
    """The node's pod CIDR (one /20)."""
    _check(slot, MAX_NODE_SLOTS, "node")
    return ipaddress.ip_network("%s/%d" % (POD_RANGE.network_address + slot * 2 ** (32 - POD_PREFIX), POD_PREFIX))


def pod_gateway(slot):
    """The CNI bridge's address in the node namespace (.1 of the pod CIDR)."""
    return str(pod_cidr(slot).network_address + 1)


def host_link(slot):
    """(network, host end, node end) of the host <-> node veth."""
    _check(slot, MAX_NODE_SLOTS, "node")
    return _link(HOST_LINK_RANGE, slot)


def router_link(slot):
    """(network, router end, node end) of the router <-> node veth."""
    _check(slot, MAX_NODE_SLOTS, "node")
    return _link(ROUTER_LINK_RANGE, slot)


def node_ip(slot):
    """The node's address (kubelet's --node-ip): its end of the host link, which the API
    server on the host reaches directly."""
    return host_link(slot)[2]


def lb_pool(slot):
    _check(slot, MAX_NODE_SLOTS, "node")
    return ipaddress.ip_network("%s/24" % (LB_RANGE.network_address + 256 * slot))


def lb_addresses(slot):
    """The pool's addresses in the order they are handed out (.10 .. .254)."""
    pool = lb_pool(slot)
    return [str(pool.network_address + i) for i in range(LB_FIRST, pool.num_addresses - 1)]


def service_cidr(slot):
    _check(slot, MAX_NODE_SLOTS, "node")
    return ipaddress.ip_network("%s/24" % (SERVICE_RANGE.network_address + 256 * slot))


def cluster_dns(slot):
    return str(service_cidr(slot).network_address + CLUSTER_DNS_OFFSET)


def node_netns(slot):
    _check(slot, MAX_NODE_SLOTS, "node")
    return "mfn-%d" % slot


def node_host_veth(slot):
    """The host end of the host <-> node veth (names have at most 15 characters)."""
    _check(slot, MAX_NODE_SLOTS, "node")
    return "mfnh-%d" % slot


#: interface names inside a node namespace
NODE_HOST_IF = "host0"
NODE_UPLINK_IF = "eth0"
NODE_BRIDGE_IF = "cni0"


def router_node_if(slot):
    """The router's end of its link to node ``slot`` (inside the router namespace)."""
    _check(slot, MAX_NODE_SLOTS, "node")
    return "n%d" % slot


# --- network slot ----------------------------------------------------------------------

def router_netns(network_slot):
    _check(network_slot, MAX_NETWORK_SLOTS, "network")
    return "mfr-%d" % network_slot


def core_link(network_slot):
    """(network, core end, router end) of the core <-> router veth."""
    _check(network_slot, MAX_NETWORK_SLOTS, "network")
    return _link(CORE_LINK_RANGE, network_slot)


ROUTER_UPLINK_IF = "uplink"


def core_router_if(network_slot):
    _check(network_slot, MAX_NETWORK_SLOTS, "network")
    return "r%d" % network_slot


# --- VM link slot ----------------------------------------------------------------------

#: the VM's end of its router link (inside the VM's network namespace)
VM_UPLINK_IF = "mesh0"


def vm_link(slot):
    """(network, router end, VM end) of the router <-> VM veth."""
    _check(slot, MAX_VM_LINK_SLOTS, "VM link")
    return _link(VM_LINK_RANGE, slot)


def router_vm_if(slot):
    """The router's end of its link to the VM of link slot ``slot``."""
    _check(slot, MAX_VM_LINK_SLOTS, "VM link")
    return "v%d" % slot


def vm_plan(slot, network_slot, netns, address):
    """One netns VM joined to its network's router: the link, and the routes on each side."""
    net, router_end, vm_end = vm_link(slot)
    return {
        "slot": slot,
        "netns": netns,
        "address": str(ipaddress.ip_address(address)),
        "router_netns": router_netns(network_slot),
        "link": {"cidr": str(net), "router": router_end, "vm": vm_end,
                 "router_if": router_vm_if(slot), "vm_if": VM_UPLINK_IF},
        "vm_routes": [str(r) for r in VM_ROUTED_RANGES],
    }


# --- mesh slot -------------------------------------------------------------------------

def core_netns(mesh_slot):
    _check(mesh_slot, MAX_MESH_SLOTS, "mesh")
    return "mfc-%d" % mesh_slot


# --- the whole plan ----------------------------------------------------------------------

def node_plan(slot, network_slot, mesh_slot):
    """Everything one real node needs, as plain data (for the node runtime, the network
    step, the inventory and the report)."""
    hnet, host_end, node_end = host_link(slot)
    rnet, router_end, node_up = router_link(slot)
    cnet, core_end, router_up = core_link(network_slot)
    return {
        "slot": slot,
        "network_slot": network_slot,
        "mesh_slot": mesh_slot,
        "netns": node_netns(slot),
        "router_netns": router_netns(network_slot),
        "core_netns": core_netns(mesh_slot),
        "node_ip": node_ip(slot),
        "pod_cidr": str(pod_cidr(slot)),
        "pod_gateway": pod_gateway(slot),
        "service_cidr": str(service_cidr(slot)),
        "cluster_dns": cluster_dns(slot),
        "lb_pool": str(lb_pool(slot)),
        "host_link": {"cidr": str(hnet), "host": host_end, "node": node_end,
                      "host_if": node_host_veth(slot), "node_if": NODE_HOST_IF},
        "router_link": {"cidr": str(rnet), "router": router_end, "node": node_up,
                        "router_if": router_node_if(slot), "node_if": NODE_UPLINK_IF},
        "core_link": {"cidr": str(cnet), "core": core_end, "router": router_up,
                      "core_if": core_router_if(network_slot), "router_if": ROUTER_UPLINK_IF},
    }


def which_range(address):
    """The plan's range holding ``address`` (an ipaddress network), or None."""
    ip = ipaddress.ip_address(address)
    for rng in ALL_RANGES:
        if ip in rng:
            return rng
    return None
