# -*- coding: utf-8 -*-
"""The local_network module's plan (module_utils/localnet/network.py) over a recorded kernel
state: which steps, in which order, for a fresh machine, a converged one, a network gone and
state=absent. Nothing runs (``kernel.observe`` answers from a table); the kernel itself is
exercised by tests/integration/test_local_network.py."""

from __future__ import absolute_import, division, print_function

import os

import pytest

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet import kernel
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet import network as netmod
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet.routes import mesh_plan
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet.slots import SlotRegistry

EMPTY = dict(exists=False, links={}, routes={}, forward=False, icmp_ratelimit=None, snat=[])


def converged_state(plan):
    """What the kernel holds once ``plan`` (routes.mesh_plan) is applied."""
    state, index = {}, [10]
    for ns, spec in plan["namespaces"].items():
        state[ns] = dict(exists=True, links={"lo": dict(kind=None, ifindex=1, peer_index=None, up=True,
                                                        addresses=["127.0.0.1/8"])},
                         routes=dict(spec["routes"]), forward=spec["forward"],
                         icmp_ratelimit=0 if spec["forward"] else 1000, snat=[spec["snat"]] if spec["snat"] else [])
    for v in plan["veths"]:
        ia, ib = index[0], index[0] + 1
        index[0] += 2
        for end, me, peer in ((v["a"], ia, ib), (v["b"], ib, ia)):
            link = dict(kind="veth", ifindex=me, peer_index=peer, up=True, addresses=[end["address"]])
            state[end["netns"]]["links"][end["ifname"]] = link
    return state


@pytest.fixture
def world(tmp_path, monkeypatch):
    state_dir = tmp_path / "state"
    for c in ("c1", "c2", "c3"):
        (state_dir / "clusters" / c).mkdir(parents=True)
    reg = SlotRegistry(str(tmp_path / "reg"), in_use=lambda kind, slot: False)
    for i, c in enumerate(("c1", "c2", "c3")):
        assert reg.reserve("node", str(state_dir / "clusters" / c)) == i
    kstate = {}
    monkeypatch.setattr(kernel, "observe", lambda ns, nat=False: kstate.get(ns, EMPTY))
    monkeypatch.setattr(netmod.os, "geteuid", lambda: 0)
    clusters = [dict(name=c, network=n, node_slot=None, node_netns=None, cluster_dir=str(state_dir / "clusters" / c))
                for c, n in (("c1", "network1"), ("c2", "network1"), ("c3", "network2"))]
    return dict(state_dir=str(state_dir), reg=reg, kernel=kstate, clusters=clusters)


def plan_of(world, state="present", clusters=None):
    mod = netmod.LocalNetworkModule(params=dict(state_dir=world["state_dir"], state=state,
                                                clusters=world["clusters"] if clusters is None else clusters),
                                    registry=world["reg"])
    observed = mod.observe()
    return mod, mod.plan(observed)


def test_fresh_machine_order_of_steps(world):
    for s in range(3):
        world["kernel"]["mfn-%d" % s] = dict(EMPTY, exists=True, links={})
    mod, plan = plan_of(world)
    steps = plan.reasons
    assert steps[:3] == ["reserve mesh slot 0 (mfc-0)", "reserve network slot 0 for network1 (mfr-0)",
                         "reserve network slot 1 for network2 (mfr-1)"]
    kinds = [s.split(" ")[0] for s in steps[3:]]
    # namespaces (each with its settings), then links (each with its addresses), then routes and NAT
    phase = {"create": 0, "turn": 0, "link": 1, "address": 1, "route": 2, "nat": 2}
    assert set(kinds) == set(phase)
    assert [phase[k] for k in kinds] == sorted(phase[k] for k in kinds), steps
    assert steps.index("link mfr-0:n0 <-> mfn-0:eth0") < steps.index("address 10.133.0.1/30 on mfr-0:n0")
    assert "route default via 10.133.0.1 dev eth0 in mfn-0" in steps
    assert not [s for s in steps if " mfnh-" in s or s.startswith("remove")]
    assert mod.out_fields["routers"] == {"network1": "mfr-0", "network2": "mfr-1"}
    assert plan.before["mfc-0"] is None and plan.after["mfc-0"]["forward"] is True
    assert world["reg"].get("mesh", os.path.abspath(world["state_dir"])) is None   # planning reserves nothing


def test_converged_machine_plans_nothing_and_drift_is_one_step(world):
    reg = world["reg"]
    owner = os.path.abspath(world["state_dir"])
    reg.reserve("mesh", owner)
    reg.reserve("network", owner + "#network1")
    reg.reserve("network", owner + "#network2")
    want = mesh_plan([dict(name=c["name"], network=c["network"], slot=i) for i, c in enumerate(world["clusters"])],
                     {"network1": 0, "network2": 1}, 0)
    world["kernel"].update(converged_state(want))
    mod, plan = plan_of(world)
    assert plan.reasons == []
    world["kernel"]["mfr-1"]["icmp_ratelimit"] = 1000
    world["kernel"]["mfr-0"]["snat"].append("-A POSTROUTING -j MASQUERADE")
    del world["kernel"]["mfc-0"]["routes"]["10.130.2.0/24"]
    mod, plan = plan_of(world)
    assert sorted(plan.reasons) == sorted([
        "turn on forwarding (and unreachable answers without rate limit) in mfr-1",
        "remove nat rule '-A POSTROUTING -j MASQUERADE' from mfr-0",
        "route 10.130.2.0/24 via 10.134.0.6 dev r1 in mfc-0"])
    # a network no longer used: its router goes, its slot is released, the core's link too
    moved = [dict(c, network="network1") for c in world["clusters"]]
    mod, plan = plan_of(world, clusters=moved)
    assert plan.reasons[:3] == ["remove network namespace mfr-1 (network network2 is gone)",
                                "release network slot 1 (network2)", "remove link r1 of mfc-0 (its router is gone)"]
    assert plan.after["mfr-1"] is None
    # absent: the core and both routers go, the slots are released, the nodes are not touched
    mod, plan = plan_of(world, state="absent", clusters=[])
    assert plan.reasons == ["remove network namespace mfc-0", "remove network namespace mfr-0",
                            "remove network namespace mfr-1", "release network slot 0 (network1)",
                            "release network slot 1 (network2)", "release mesh slot 0"]


def test_a_cluster_without_a_node_fails_first_when_applied(world, tmp_path):
    (tmp_path / "state" / "clusters" / "c4").mkdir()
    clusters = world["clusters"] + [dict(name="c4", network="network2", node_slot=None, node_netns=None,
                                         cluster_dir=str(tmp_path / "state" / "clusters" / "c4"))]
    mod, plan = plan_of(world, clusters=clusters)
    assert plan.reasons[0] == "attach the node of cluster c4 (it has none yet)"
    assert plan.reasons[1] == "attach the nodes mfn-0, mfn-1, mfn-2 (not there yet)"
    with pytest.raises(MeshfleetError, match="cluster c4 has no real node yet .* converge the cluster first"):
        plan.run()
    assert world["reg"].get("mesh", os.path.abspath(world["state_dir"])) is None


def test_vms_are_joined_when_their_namespace_exists(world, monkeypatch):
    reg = world["reg"]
    owner = os.path.abspath(world["state_dir"])
    reg.reserve("mesh", owner)
    reg.reserve("network", owner + "#network1")
    reg.reserve("network", owner + "#network2")
    want = mesh_plan([dict(name=c["name"], network=c["network"], slot=i) for i, c in enumerate(world["clusters"])],
                     {"network1": 0, "network2": 1}, 0)
    world["kernel"].update(converged_state(want))
    world["kernel"]["mf-vm1"] = dict(EMPTY, exists=True, links={})
    monkeypatch.setattr(kernel, "netns_exists", lambda ns: ns in world["kernel"])
    done = []   # the kernel's changes are recorded, never made
    for name in ("add_veth", "set_address", "set_route", "link_up", "del_link", "del_route"):
        monkeypatch.setattr(kernel, name, lambda *args, **kw: done.append(args))
    vms = [dict(name="vm1", network="network1", address="10.77.0.2", netns=None),
           dict(name="vm2", network="network2", address="10.77.1.2", netns=None),     # not started yet
           dict(name="vm3", network="network9", address="10.77.2.2", netns=None)]     # no real-node cluster there

    def plan_vms(vms):
        mod = netmod.LocalNetworkModule(params=dict(state_dir=world["state_dir"], state="present",
                                                    clusters=world["clusters"], vms=vms), registry=reg)
        return mod, mod.plan(mod.observe())

    mod, plan = plan_vms(vms)
    assert plan.reasons == [
        "reserve VM link slot 0 for VM vm1",
        "link mfr-0:v0 <-> mf-vm1:mesh0", "address 10.135.0.1/30 on mfr-0:v0", "address 10.135.0.2/30 on mf-vm1:mesh0",
        "route 10.112.0.0/12 via 10.135.0.1 dev mesh0 in mf-vm1", "route 10.130.0.0/16 via 10.135.0.1 dev mesh0 in mf-vm1",
        "route 10.77.0.2/32 via 10.135.0.2 dev v0 in mfr-0"]
    assert mod.out_fields["vms_waiting"] == ["vm2"] and mod.out_fields["vms_not_routed"] == ["vm3"]
    assert reg.get("vm_link", netmod.vm_owner(world["state_dir"], "vm1")) is None        # planning reserves nothing
    plan.run()
    assert reg.get("vm_link", netmod.vm_owner(world["state_dir"], "vm1")) == 0
    assert done[0] == ("mfr-0", "v0", "mf-vm1", "mesh0") and ("mfr-0", "10.77.0.2/32", "10.135.0.2", "v0") in done
    # converged: nothing to do; the VM's own links and routes (eth0, its default route) are not ours
    world["kernel"].update(converged_state(mod.desired))
    world["kernel"]["mf-vm1"]["routes"]["default"] = dict(via="10.77.0.1", dev="eth0")
    mod, plan = plan_vms(vms)
    assert plan.reasons == []
    assert plan.before["mf-vm1"]["routes"] == ["10.112.0.0/12 via 10.135.0.1 dev mesh0",
                                               "10.130.0.0/16 via 10.135.0.1 dev mesh0"]
    # the VM gone from the list: its link in the router goes, its slot is released
    mod, plan = plan_vms(vms[1:])
    assert plan.reasons == ["release VM link slot 0 (VM vm1 is gone)", "remove link v0 of mfr-0 (its VM is gone)",
                            "remove route 10.77.0.2/32 from mfr-0"]
    # absent releases the VM link slots with the rest
    mod, plan = plan_of(world, state="absent", clusters=[])
    assert "release VM link slot 0 (vm1)" in plan.reasons
