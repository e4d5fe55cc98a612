# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Converge a mesh's local networks (module meshfleet.mesh.local_network): the core
namespace, one router per Istio network, each real node attached to its network's router,
the routes of :mod:`.routes` and nothing else; ``state=absent`` removes them all.

observe (the slots in the registry, the kernel state of every namespace involved) -> plan
(each difference one step, in the order namespaces, links, addresses, routes, NAT, then what
is no longer wanted) -> apply. A node's namespace is the node runtime's: here it only gets
``eth0`` and its default route; it must exist (the cluster step makes it) before apply.

Slots: the mesh's (owner ``<state_dir>``) and each network's (owner ``<state_dir>#<network>``)
from :class:`.slots.SlotRegistry`; a node's slot is the node runtime's (owner: the cluster's
folder), given as ``node_slot``, ``node_netns`` or looked up from ``cluster_dir``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError, MeshfleetModule, Plan
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet import addressing as a
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet import kernel
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet.routes import ROUTER, VM, mesh_plan, route_lines
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet.slots import SlotRegistry
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers.netns.addressing import netns_name

NODE_NETNS = re.compile(r"^mfn-(0|[1-9][0-9]{0,2})$")
ROUTER_NODE_IF = re.compile(r"^[nv][0-9]+$")  # a router's links to its nodes (n<s>) and VMs (v<v>)
CORE_ROUTER_IF = re.compile(r"^r[0-9]+$")


def mesh_owner(state_dir):
    return os.path.abspath(os.path.expanduser(state_dir))


def network_owner(state_dir, network):
    return "%s#%s" % (mesh_owner(state_dir), network)


def vm_owner(state_dir, name):
    return "%s#vm:%s" % (mesh_owner(state_dir), name)


def node_slot(cluster, registry, index=0):
    """The node slot of one ``clusters`` entry (``node_slot``, ``node_netns`` or
    ``cluster_dir``), or None when its node has none yet."""
    given = [k for k in ("node_slot", "node_netns", "cluster_dir") if cluster.get(k) is not None]
    if len(given) != 1:
        raise MeshfleetError("clusters[%d] (%s): give exactly one of node_slot, node_netns, cluster_dir%s"
                             % (index, cluster.get("name"), " (got %s)" % ", ".join(given) if given else ""))
    if given[0] == "node_slot":
        slot = cluster["node_slot"]
        a.node_netns(slot)
        return slot
    if given[0] == "node_netns":
        m = NODE_NETNS.match(cluster["node_netns"])
        if not m or int(m.group(1)) >= a.MAX_NODE_SLOTS:
            raise MeshfleetError("clusters[%d].node_netns: %r is not a node namespace (mfn-0 .. mfn-%d)"
                                 % (index, cluster["node_netns"], a.MAX_NODE_SLOTS - 1))
        return int(m.group(1))
    for owner in (mesh_owner(cluster["cluster_dir"]), os.path.realpath(mesh_owner(cluster["cluster_dir"]))):
        slot = registry.get("node", owner)
        if slot is not None:
            return slot
    return None


# --- node plans: for the node runtime ---------------------------------------------------------

def attach_node(node_plan):
    """Join one node (``addressing.node_plan``) to its network's router, which must exist:
    the veth ``router_if`` <-> ``eth0``, its addresses, the node's default route and the
    router's routes to the node's pod CIDR, service CIDR and pool. Idempotent."""
    router, node, rl = node_plan["router_netns"], node_plan["netns"], node_plan["router_link"]
    for ns in (router, node):
        if not kernel.netns_exists(ns):
            raise MeshfleetError("network namespace %s does not exist (converge the local networks and the node first)" % ns)
    plen = rl["cidr"].split("/")[1]
    if not kernel.is_pair(kernel.observe(router), rl["router_if"], kernel.observe(node), rl["node_if"]):
        kernel.add_veth(router, rl["router_if"], node, rl["node_if"])
    kernel.set_address(router, rl["router_if"], "%s/%s" % (rl["router"], plen))
    kernel.set_address(node, rl["node_if"], "%s/%s" % (rl["node"], plen))
    kernel.set_route(node, "default", rl["router"], rl["node_if"])
    for dst in (node_plan["pod_cidr"], node_plan["service_cidr"], node_plan["lb_pool"]):
        kernel.set_route(router, dst, rl["node"], rl["router_if"])


def detach_node(node_plan):
    """Undo :func:`attach_node` (the router's end of the veth goes, and the node's with it)."""
    kernel.del_link(node_plan["router_netns"], node_plan["router_link"]["router_if"])
    kernel.del_link(node_plan["netns"], node_plan["router_link"]["node_if"])


# --- the module ----------------------------------------------------------------------------------

def _view(obs, role, want_ifs=None, want_routes=("default",)):
    """What the diff shows of one observed namespace (None: it does not exist). A namespace
    that is not ours (a node's, a VM's) shows only ``want_ifs`` and ``want_routes``."""
    if not obs["exists"]:
        return None
    links = obs["links"]
    ifs = sorted(i for i in links if i != "lo" and (want_ifs is None or i in want_ifs))
    view = dict(links=["%s %s%s" % (i, " ".join(links[i]["addresses"]) or "-", "" if links[i]["up"] else " down") for i in ifs],
                routes=route_lines(obs["routes"] if want_ifs is None else
                                   dict((d, r) for d, r in obs["routes"].items() if d in want_routes)))
    if role not in ("node", VM):
        view["forward"] = obs["forward"]
        view["icmp_ratelimit"] = obs["icmp_ratelimit"]
    if role == ROUTER:
        view["snat"] = obs["snat"]
    return view


class LocalNetworkModule(MeshfleetModule):
    argument_spec = dict(
        state_dir=dict(type="path", required=True),
        clusters=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True),
            network=dict(type="str", required=True),
            node_slot=dict(type="int"),
            node_netns=dict(type="str"),
            cluster_dir=dict(type="path"),
        )),
        vms=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True),
            network=dict(type="str", required=True),
            address=dict(type="str", required=True),
            netns=dict(type="str"),
        )),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )
    receipt_step = True

    def __init__(self, module=None, params=None, registry=None):
        super(LocalNetworkModule, self).__init__(module, params)
        self.registry = registry

    # --- observe --------------------------------------------------------------------------
    def observe(self):
        p = self.params
        if os.geteuid() != 0:
            raise MeshfleetError("meshfleet.mesh.local_network needs root (network namespaces)")
        reg = self.registry = self.registry or SlotRegistry()
        owner = mesh_owner(p["state_dir"])
        clusters = []
        for i, c in enumerate(p["clusters"] or []):
            clusters.append(dict(name=c["name"], network=c["network"], slot=node_slot(c, reg, i)))
        networks = sorted(set(c["network"] for c in clusters))
        mine = dict((o.split("#", 1)[1], s) for o, s in reg.entries("network").items()
                    if o.startswith(owner + "#"))
        vm_links = dict((o.split("#vm:", 1)[1], s) for o, s in reg.entries("vm_link").items()
                        if o.startswith(owner + "#vm:"))
        vms, waiting, not_routed = [], [], []
        for v in p.get("vms") or []:
            ns = v.get("netns") or netns_name(v["name"])
            if v["network"] not in networks:
                not_routed.append(v["name"])
            elif not kernel.netns_exists(ns):
                waiting.append(v["name"])
            else:
                vms.append(dict(name=v["name"], network=v["network"], address=v["address"], netns=ns,
                                slot=vm_links.get(v["name"])))
        obs = dict(owner=owner, clusters=clusters, networks=networks, registered=mine,
                   mesh_slot=reg.get("mesh", owner), kernel={}, vms=vms, vm_links=vm_links,
                   vms_waiting=waiting, vms_not_routed=not_routed)
        names = set()
        if obs["mesh_slot"] is not None:
            names.add(a.core_netns(obs["mesh_slot"]))
        names.update(a.router_netns(s) for s in mine.values())
        if p["state"] == "present":
            names.update(a.node_netns(c["slot"]) for c in clusters if c["slot"] is not None)
            names.update(v["netns"] for v in vms)
        for ns in sorted(names):
            obs["kernel"][ns] = kernel.observe(ns, nat=ns.startswith("mfr-"))
        return obs

    # --- plan -----------------------------------------------------------------------------
    def plan(self, observed):
        if self.params["state"] == "absent":
            return self._plan_absent(observed)
        return self._plan_present(observed)

    def _plan_absent(self, obs):
        reg, plan = self.registry, Plan(before={}, after={})
        for ns, o in sorted(obs["kernel"].items()):
            if o["exists"] and not ns.startswith("mfn-"):
                plan.before[ns] = _view(o, "core" if ns.startswith("mfc-") else ROUTER)
                plan.add("remove network namespace %s" % ns, lambda ns=ns: kernel.del_netns(ns))
        for net, slot in sorted(obs["registered"].items()):
            plan.add("release network slot %d (%s)" % (slot, net),
                     lambda net=net: reg.release("network", network_owner(self.params["state_dir"], net)))
        for name, slot in sorted(obs["vm_links"].items()):
            plan.add("release VM link slot %d (%s)" % (slot, name),
                     lambda name=name: reg.release("vm_link", vm_owner(self.params["state_dir"], name)))
        if obs["mesh_slot"] is not None:
            plan.add("release mesh slot %d" % obs["mesh_slot"], lambda: reg.release("mesh", obs["owner"]))
        return plan

    def _plan_present(self, obs):
        p, reg = self.params, self.registry
        if not obs["clusters"]:
            return self._plan_absent(obs)  # no real-node cluster left: nothing to join
        plan = Plan(before={}, after={})
        pending = [c for c in obs["clusters"] if c["slot"] is None]
        for c in pending:
            # shown in check mode; a real run stops here, before anything changes
            plan.add("attach the node of cluster %s (it has none yet)" % c["name"], lambda c=c: self.fail(
                "cluster %s has no real node yet (no node slot for %s in %s): converge the cluster first"
                % (c["name"], mesh_owner(dict((x["name"], x) for x in p["clusters"])[c["name"]]["cluster_dir"]),
                   reg.path)))
        missing = sorted(a.node_netns(c["slot"]) for c in obs["clusters"] if c["slot"] is not None
                         and not obs["kernel"][a.node_netns(c["slot"])]["exists"])
        if missing:
            plan.add("attach the nodes %s (not there yet)" % ", ".join(missing), lambda: self.fail(
                "the node network namespace%s %s do%s not exist: converge the cluster%s first (its node makes it)"
                % ("s" if len(missing) > 1 else "", ", ".join(missing), "" if len(missing) > 1 else "es",
                   "s" if len(missing) > 1 else "")))
        clusters = [c for c in obs["clusters"] if c["slot"] is not None]

        # slots: the recorded ones, else what reserving would give (reserved when applied)
        mesh_slot = obs["mesh_slot"]
        if mesh_slot is None:
            mesh_slot = reg.peek("mesh", obs["owner"])
            plan.add("reserve mesh slot %d (%s)" % (mesh_slot, a.core_netns(mesh_slot)),
                     lambda: self._reserve("mesh", obs["owner"], mesh_slot))
        net_slots, peeked = {}, set()
        for net in obs["networks"]:
            if net in obs["registered"]:
                net_slots[net] = obs["registered"][net]
                continue
            slot = reg.peek("network", network_owner(p["state_dir"], net),
                            also_taken=peeked | set(obs["registered"].values()))
            peeked.add(slot)
            net_slots[net] = slot
            plan.add("reserve network slot %d for %s (%s)" % (slot, net, a.router_netns(slot)),
                     lambda net=net, slot=slot: self._reserve("network", network_owner(p["state_dir"], net), slot))
        # VM link slots: kept, else reserved; released for VMs no longer listed
        listed = set(v["name"] for v in p.get("vms") or [])
        for name, slot in sorted(obs["vm_links"].items()):
            if name not in listed:
                plan.add("release VM link slot %d (VM %s is gone)" % (slot, name),
                         lambda name=name: reg.release("vm_link", vm_owner(p["state_dir"], name)))
        vm_peeked = set()
        for v in obs["vms"]:
            if v["slot"] is None:
                v["slot"] = reg.peek("vm_link", vm_owner(p["state_dir"], v["name"]),
                                     also_taken=vm_peeked | set(obs["vm_links"].values()))
                vm_peeked.add(v["slot"])
                plan.add("reserve VM link slot %d for VM %s" % (v["slot"], v["name"]),
                         lambda v=v: self._reserve("vm_link", vm_owner(p["state_dir"], v["name"]), v["slot"]))
        self.desired = want = mesh_plan(clusters, net_slots, mesh_slot, obs["vms"])
        self.out_fields = dict(core=want["core"], routers=want["routers"], mesh_slot=mesh_slot, network_slots=net_slots,
                               clusters=want["nodes"], vms=want["vms"], vms_waiting=obs["vms_waiting"],
                               vms_not_routed=obs["vms_not_routed"])

        def seen(ns):
            if ns not in obs["kernel"]:
                obs["kernel"][ns] = dict(exists=False, links={}, routes={}, forward=False, icmp_ratelimit=None, snat=[])
            return obs["kernel"][ns]

        # what is no longer wanted: routers of networks gone from the list, stale links
        for net, slot in sorted(obs["registered"].items()):
            if net not in net_slots:
                ns = a.router_netns(slot)
                if seen(ns)["exists"]:
                    plan.before[ns] = _view(seen(ns), ROUTER)
                    plan.add("remove network namespace %s (network %s is gone)" % (ns, net),
                             lambda ns=ns: kernel.del_netns(ns))
                plan.add("release network slot %d (%s)" % (slot, net),
                         lambda net=net: reg.release("network", network_owner(p["state_dir"], net)))
        wanted_ifs = set((v[s]["netns"], v[s]["ifname"]) for v in want["veths"] for s in ("a", "b"))
        for ns, spec in sorted(want["namespaces"].items()):
            if not spec["owned"]:
                continue
            pattern = CORE_ROUTER_IF if spec["role"] == "core" else ROUTER_NODE_IF
            for ifname in sorted(seen(ns)["links"]):
                if pattern.match(ifname) and (ns, ifname) not in wanted_ifs:
                    plan.add("remove link %s of %s (its %s is gone)" % (ifname, ns, "router" if spec["role"] == "core" else
                                                                        "VM" if ifname.startswith("v") else "node"),
                             lambda ns=ns, ifname=ifname: kernel.del_link(ns, ifname))

        # namespaces and forwarding
        for ns, spec in sorted(want["namespaces"].items()):
            o = seen(ns)
            if spec["owned"]:
                plan.before[ns] = _view(o, spec["role"])
            elif spec["role"] == VM:
                plan.before[ns] = _view(o, VM, (a.VM_UPLINK_IF,), tuple(spec["routes"]))
            else:
                plan.before[ns] = _view(o, spec["role"], (a.NODE_UPLINK_IF,))
            if spec["owned"] and not o["exists"]:
                plan.add("create network namespace %s (%s)" % (ns, spec["role"] if spec["role"] == "core" else
                                                               "router of %s" % spec["network"]),
                         lambda ns=ns: kernel.add_netns(ns))
            if spec["forward"] and (not o["forward"] or o["icmp_ratelimit"] != 0):
                plan.add("turn on forwarding (and unreachable answers without rate limit) in %s" % ns,
                         lambda ns=ns: kernel.set_forward(ns))

        # links and their addresses (routes through a link made, re-addressed or set up now
        # are lost with it: they are planned again below)
        redone = set()
        for v in want["veths"]:
            ea, eb = v["a"], v["b"]
            oa, ob = seen(ea["netns"]), seen(eb["netns"])
            fresh = not kernel.is_pair(oa, ea["ifname"], ob, eb["ifname"])
            if fresh:
                plan.add("link %s:%s <-> %s:%s" % (ea["netns"], ea["ifname"], eb["netns"], eb["ifname"]),
                         lambda ea=ea, eb=eb: kernel.add_veth(ea["netns"], ea["ifname"], eb["netns"], eb["ifname"]))
            for end, o in ((ea, oa), (eb, ob)):
                have = o["links"].get(end["ifname"]) if not fresh else None
                if have is None or have["addresses"] != [end["address"]] or not have["up"]:
                    redone.add((end["netns"], end["ifname"]))
                if have is None or have["addresses"] != [end["address"]]:
                    plan.add("address %s on %s:%s" % (end["address"], end["netns"], end["ifname"]),
                             lambda end=end: kernel.set_address(end["netns"], end["ifname"], end["address"]))
                elif not have["up"]:
                    plan.add("set %s:%s up" % (end["netns"], end["ifname"]),
                             lambda end=end: kernel.link_up(end["netns"], end["ifname"]))

        # routes and the routers' source NAT
        for ns, spec in sorted(want["namespaces"].items()):
            o = seen(ns)
            for dst, r in sorted(spec["routes"].items()):
                if o["routes"].get(dst) != r or (ns, r["dev"]) in redone:
                    plan.add("route %s via %s dev %s in %s" % (dst, r["via"], r["dev"], ns),
                             lambda ns=ns, dst=dst, r=r: kernel.set_route(ns, dst, r["via"], r["dev"]))
            if spec["owned"]:
                for dst in sorted(set(o["routes"]) - set(spec["routes"])):
                    plan.add("remove route %s from %s" % (dst, ns), lambda ns=ns, dst=dst: kernel.del_route(ns, dst))
            if spec["snat"]:
                for rule in o["snat"]:
                    if rule != spec["snat"]:
                        plan.add("remove nat rule '%s' from %s" % (rule, ns), lambda ns=ns, rule=rule: kernel.del_rule(ns, rule))
                if spec["snat"] not in o["snat"]:
                    plan.add("nat rule '%s' in %s" % (spec["snat"], ns),
                             lambda ns=ns, rule=spec["snat"]: kernel.add_rule(ns, rule))
            view = dict(links=[], routes=route_lines(spec["routes"]))
            for v in want["veths"]:
                for s in ("a", "b"):
                    if v[s]["netns"] == ns:
                        view["links"].append("%s %s" % (v[s]["ifname"], v[s]["address"]))
            view["links"].sort()
            if spec["owned"]:
                view["forward"] = True
                view["icmp_ratelimit"] = 0
            if spec["snat"]:
                view["snat"] = [spec["snat"]]
            plan.after[ns] = view
        for ns in list(plan.before):
            if ns not in plan.after:
                plan.after[ns] = None
        return plan

    def _reserve(self, kind, owner, expected):
        got = self.registry.reserve(kind, owner)
        if got != expected:
            self.registry.release(kind, owner)
            raise MeshfleetError("the %s slot %d planned for %s was taken meanwhile (another mesh converged at the "
                                 "same time); run again" % (kind, expected, owner))

    def result(self, observed, plan):
        out = dict(getattr(self, "out_fields", None) or dict(clusters={}, routers={}, core=None, vms={}))
        out["steps"] = plan.reasons
        return out
