# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every namespace of a mesh's local networks holds, pure (no process, no file).

Given the real-node clusters of one mesh (name, Istio network, node slot), the slot of each
network and of the mesh, :func:`mesh_plan` says which namespaces exist, which veth pairs join
them, the address of each end, the routes each namespace gets, where forwarding is on and
the one source NAT rule of each router:

- the **core** (``mfc-<m>``, one per mesh) has one veth to each router and one route per
  cluster: that cluster's load-balancer pool via its network's router. Nothing else: a pod
  address of another network is unreachable from the core;
- a **router** (``mfr-<n>``, one per Istio network) has one veth to each of its nodes and
  routes each node's pod CIDR, service CIDR and load-balancer pool to it (clusters of one
  network reach each other's pods); the load-balancer pools of the other networks' clusters
  go to the core, and so does the core link range (10.134.0.0/16), the only other thing: a
  connection leaving for the core leaves with the router's uplink address (source NAT), so
  that the answer finds its way back while no pod address of one network is ever routed in
  another (as in production, where a pod reaches another network's east-west gateway through
  its cloud's NAT);
- a **node** (``mfn-<s>``, made by the node runtime, not here) gets ``eth0`` on its router
  and a default route via the router; everything else in it belongs to the node runtime;
- a **netns VM** (``mf-<name>``, made by the VM provider, not here) of a network with a router
  gets ``mesh0`` on that router and routes for the pod range and the load-balancer range
  through it; the router routes the VM's own address (``/32``) to it. So the VM is one more
  host of its Istio network: the network's pods reach it and it reaches them, and it reaches
  the other networks' east-west gateways (through the core, source NAT) but not their pods.
  Its ``eth0`` (its subnet, SSH from the host) stays the VM provider's.

Forwarding (``net.ipv4.ip_forward``) is on in the core and the routers only: namespaces the
project creates (where "unreachable" is also answered without rate limit, ``kernel.set_forward``). The host is never touched: no host route, no host sysctl.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet import addressing as a

CORE = "core"
ROUTER = "router"
NODE = "node"
VM = "vm"


def _prefix(cidr):
    return cidr.split("/", 1)[1]


def check_clusters(clusters):
    """``clusters``: [{name, network, slot}]; refuses duplicates naming the field."""
    names, slots = {}, {}
    for i, c in enumerate(clusters):
        for key in ("name", "network"):
            if not isinstance(c.get(key), str) or not c.get(key):
                raise MeshfleetError("clusters[%d].%s: a non-empty string is required" % (i, key))
        if c["name"] in names:
            raise MeshfleetError("clusters[%d].name: cluster %s is listed twice" % (i, c["name"]))
        names[c["name"]] = i
        slot = c.get("slot")
        a.node_netns(slot)  # range check with the plan's own message
        if slot in slots:
            raise MeshfleetError("clusters[%d]: cluster %s has the node slot %d of cluster %s (%s)"
                                 % (i, c["name"], slot, slots[slot], a.node_netns(slot)))
        slots[slot] = c["name"]


def check_vms(vms):
    """``vms``: [{name, network, slot, netns, address}]; refuses duplicates naming the field."""
    seen = {}
    for i, v in enumerate(vms):
        for key in ("name", "network", "netns", "address"):
            if not isinstance(v.get(key), str) or not v.get(key):
                raise MeshfleetError("vms[%d].%s: a non-empty string is required" % (i, key))
        a.vm_link(v.get("slot"))
        for key in ("name", "slot", "address"):
            if (key, v[key]) in seen:
                raise MeshfleetError("vms[%d].%s: %s is also VM %s's" % (i, key, v[key], seen[(key, v[key])]))
            seen[(key, v[key])] = v["name"]


def mesh_plan(clusters, network_slots, mesh_slot, vms=()):
    """The desired state of a mesh's local networks.

    ``clusters``: [{name, network, slot}]; ``network_slots``: {network: slot}; ``mesh_slot``;
    ``vms``: [{name, network, slot (VM link slot), netns, address}] of networks that have a
    real-node cluster. Returns ``{"namespaces": {netns: {role, owned, forward, routes, snat}},
    "veths": [...], "nodes": {cluster: node_plan}, "vms": {name: vm_plan}}``:

    - ``routes``: {destination CIDR or "default": {"via": address, "dev": interface}};
    - ``veths``: [{"a": {netns, if, address}, "b": {netns, if, address}}], created from side a;
    - ``snat``: the source NAT rule of a router (``iptables -S`` form) or None;
    - ``owned``: made (and removed) here; a node's namespace is the node runtime's.
    """
    check_clusters(clusters)
    core = a.core_netns(mesh_slot)
    namespaces = {core: dict(role=CORE, owned=True, forward=True, routes={}, snat=None)}
    veths, nodes = [], {}
    networks = sorted(set(c["network"] for c in clusters))
    for net in networks:
        if net not in network_slots:
            raise MeshfleetError("network %s has no network slot" % net)
    if len(set(network_slots[n] for n in networks)) != len(networks):
        raise MeshfleetError("two networks share a network slot: %s" % ", ".join(
            "%s=%s" % (n, network_slots[n]) for n in networks))
    for net in networks:
        n = network_slots[net]
        cnet, core_end, router_end = a.core_link(n)
        router = a.router_netns(n)
        namespaces[router] = dict(role=ROUTER, owned=True, forward=True, network=net, snat=(
            "-A POSTROUTING -o %s -j SNAT --to-source %s" % (a.ROUTER_UPLINK_IF, router_end)),
            routes={str(a.CORE_LINK_RANGE): dict(via=core_end, dev=a.ROUTER_UPLINK_IF)})
        veths.append(dict(a=dict(netns=core, ifname=a.core_router_if(n), address="%s/%s" % (core_end, _prefix(str(cnet)))),
                          b=dict(netns=router, ifname=a.ROUTER_UPLINK_IF,
                                 address="%s/%s" % (router_end, _prefix(str(cnet))))))
    for c in sorted(clusters, key=lambda c: c["slot"]):
        n = network_slots[c["network"]]
        plan = a.node_plan(c["slot"], n, mesh_slot)
        nodes[c["name"]] = plan
        rl = plan["router_link"]
        router = plan["router_netns"]
        veths.append(dict(a=dict(netns=router, ifname=rl["router_if"], address="%s/%s" % (rl["router"], _prefix(rl["cidr"]))),
                          b=dict(netns=plan["netns"], ifname=rl["node_if"],
                                 address="%s/%s" % (rl["node"], _prefix(rl["cidr"])))))
        namespaces[plan["netns"]] = dict(role=NODE, owned=False, forward=False, cluster=c["name"], snat=None,
                                         routes={"default": dict(via=rl["router"], dev=rl["node_if"])})
        for dst in (plan["pod_cidr"], plan["service_cidr"], plan["lb_pool"]):
            namespaces[router]["routes"][dst] = dict(via=rl["node"], dev=rl["router_if"])
        # the core: this pool via the cluster's router; the other routers: via the core
        namespaces[core]["routes"][plan["lb_pool"]] = dict(via=plan["core_link"]["router"], dev=plan["core_link"]["core_if"])
        for other in networks:
            if other != c["network"]:
                o = network_slots[other]
                namespaces[a.router_netns(o)]["routes"][plan["lb_pool"]] = dict(
                    via=a.core_link(o)[1], dev=a.ROUTER_UPLINK_IF)
    vm_plans = {}
    check_vms(vms)
    for v in sorted(vms, key=lambda v: v["slot"]):
        if v["network"] not in networks:
            raise MeshfleetError("VM %s: network %s has no real-node cluster (no router to join)" % (v["name"], v["network"]))
        plan = a.vm_plan(v["slot"], network_slots[v["network"]], v["netns"], v["address"])
        vm_plans[v["name"]] = plan
        link, router = plan["link"], plan["router_netns"]
        veths.append(dict(a=dict(netns=router, ifname=link["router_if"], address="%s/%s" % (link["router"], _prefix(link["cidr"]))),
                          b=dict(netns=v["netns"], ifname=link["vm_if"], address="%s/%s" % (link["vm"], _prefix(link["cidr"])))))
        namespaces[router]["routes"]["%s/32" % plan["address"]] = dict(via=link["vm"], dev=link["router_if"])
        namespaces[v["netns"]] = dict(role=VM, owned=False, forward=False, vm=v["name"], snat=None,
                                      routes=dict((dst, dict(via=link["router"], dev=link["vm_if"]))
                                                  for dst in plan["vm_routes"]))
    return dict(namespaces=namespaces, veths=veths, nodes=nodes, vms=vm_plans, core=core,
                routers=dict((net, a.router_netns(network_slots[net])) for net in networks))


def route_lines(routes):
    """``{dst: {via, dev}}`` -> sorted ``dst via X dev Y`` lines (the diff's view)."""
    return sorted("%s via %s dev %s" % (dst, r["via"], r["dev"]) for dst, r in routes.items())


def reachable(plan, src_netns, dst_address):
    """Follow the plan's routes from ``src_netns`` to ``dst_address`` (connected links
    first, then the longest matching route), as the kernel would: the list of namespaces a
    packet crosses, ending with the one that holds ``dst_address`` on a link of the plan or
    routes it to a node, or ``None`` when some namespace has no route (unreachable). For
    tests and the docs' table; the real proof is the integration test's traffic."""
    import ipaddress
    ip = ipaddress.ip_address(dst_address)
    ends = {}
    for v in plan["veths"]:
        for side, other in (("a", "b"), ("b", "a")):
            ends.setdefault(v[side]["netns"], []).append((ipaddress.ip_interface(v[side]["address"]), v[other]["netns"]))
    path, here = [], src_netns
    for dummy in range(16):
        path.append(here)
        hop = None
        for iface, peer in ends.get(here, []):
            if ip == iface.ip:
                return path
            if ip in iface.network:
                hop = peer
        if hop is None:
            best = None
            for dst, r in plan["namespaces"].get(here, {}).get("routes", {}).items():
                net = ipaddress.ip_network("0.0.0.0/0" if dst == "default" else dst)
                if ip in net and (best is None or net.prefixlen > best[0].prefixlen):
                    best = (net, r)
            if best is None:
                return None
            via = ipaddress.ip_address(best[1]["via"])
            hop = next((peer for iface, peer in ends.get(here, []) if via in iface.network), None)
        if hop is None:
            return None
        if plan["namespaces"].get(hop, {}).get("role") == NODE:
            node = plan["nodes"][plan["namespaces"][hop]["cluster"]]
            if any(ip in ipaddress.ip_network(node[k]) for k in ("pod_cidr", "service_cidr", "lb_pool")) \
                    or ip == ipaddress.ip_address(node["router_link"]["node"]):
                path.append(hop)
                return path
        if plan["namespaces"].get(hop, {}).get("role") == VM and ip == ipaddress.ip_address(
                plan["vms"][plan["namespaces"][hop]["vm"]]["address"]):
            path.append(hop)
            return path
        here = hop
    return None
