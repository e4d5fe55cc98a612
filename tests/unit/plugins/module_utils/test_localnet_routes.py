# -*- coding: utf-8 -*-
"""The local networks' plan (module_utils/localnet/routes.py): which namespaces, links and
routes three clusters on two Istio networks get, and what each can reach by those routes."""

from __future__ import absolute_import, division, print_function

import pytest

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet import addressing as a
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet.routes import mesh_plan, reachable, route_lines

CLUSTERS = [dict(name="cluster1", network="network1", slot=4),
            dict(name="cluster2", network="network1", slot=5),
            dict(name="cluster3", network="network2", slot=7)]
NETS = {"network1": 2, "network2": 3}


@pytest.fixture
def plan():
    return mesh_plan(CLUSTERS, NETS, 1)


def test_namespaces_and_who_owns_them(plan):
    ns = plan["namespaces"]
    assert sorted(ns) == ["mfc-1", "mfn-4", "mfn-5", "mfn-7", "mfr-2", "mfr-3"]
    assert [n for n in ns if ns[n]["owned"]] == ["mfc-1", "mfr-2", "mfr-3"]
    assert all(ns[n]["forward"] == ns[n]["owned"] for n in ns)      # forwarding only where we own it
    assert plan["routers"] == {"network1": "mfr-2", "network2": "mfr-3"} and plan["core"] == "mfc-1"


def test_links(plan):
    pairs = sorted((v["a"]["netns"], v["a"]["ifname"], v["a"]["address"], v["b"]["netns"], v["b"]["ifname"],
                    v["b"]["address"]) for v in plan["veths"])
    assert pairs == [
        ("mfc-1", "r2", "10.134.0.9/30", "mfr-2", "uplink", "10.134.0.10/30"),
        ("mfc-1", "r3", "10.134.0.13/30", "mfr-3", "uplink", "10.134.0.14/30"),
        ("mfr-2", "n4", "10.133.0.17/30", "mfn-4", "eth0", "10.133.0.18/30"),
        ("mfr-2", "n5", "10.133.0.21/30", "mfn-5", "eth0", "10.133.0.22/30"),
        ("mfr-3", "n7", "10.133.0.29/30", "mfn-7", "eth0", "10.133.0.30/30"),
    ]


def test_routes_of_each_namespace(plan):
    ns = plan["namespaces"]
    # the core: each cluster's load-balancer pool to its network's router, nothing else
    assert route_lines(ns["mfc-1"]["routes"]) == [
        "10.130.4.0/24 via 10.134.0.10 dev r2", "10.130.5.0/24 via 10.134.0.10 dev r2",
        "10.130.7.0/24 via 10.134.0.14 dev r3"]
    # network1's router: its nodes' pods, services and pools; network2's pool and the core links to the core
    assert route_lines(ns["mfr-2"]["routes"]) == [
        "10.112.64.0/20 via 10.133.0.18 dev n4", "10.112.80.0/20 via 10.133.0.22 dev n5",
        "10.130.4.0/24 via 10.133.0.18 dev n4", "10.130.5.0/24 via 10.133.0.22 dev n5",
        "10.130.7.0/24 via 10.134.0.9 dev uplink",
        "10.131.4.0/24 via 10.133.0.18 dev n4", "10.131.5.0/24 via 10.133.0.22 dev n5",
        "10.134.0.0/16 via 10.134.0.9 dev uplink"]
    assert route_lines(ns["mfr-3"]["routes"]) == [
        "10.112.112.0/20 via 10.133.0.30 dev n7", "10.130.4.0/24 via 10.134.0.13 dev uplink",
        "10.130.5.0/24 via 10.134.0.13 dev uplink", "10.130.7.0/24 via 10.133.0.30 dev n7",
        "10.131.7.0/24 via 10.133.0.30 dev n7", "10.134.0.0/16 via 10.134.0.13 dev uplink"]
    assert route_lines(ns["mfn-4"]["routes"]) == ["default via 10.133.0.17 dev eth0"]
    assert ns["mfr-2"]["snat"] == "-A POSTROUTING -o uplink -j SNAT --to-source 10.134.0.10"
    assert ns["mfc-1"]["snat"] is None and ns["mfn-4"]["snat"] is None
    # no namespace routes any pod or service address of another network
    for router, own in (("mfr-2", (4, 5)), ("mfr-3", (7,))):
        for dst in ns[router]["routes"]:
            rng = a.which_range(dst.split("/")[0])
            if rng in (a.POD_RANGE, a.SERVICE_RANGE):
                assert any(dst in (str(a.pod_cidr(s)), str(a.service_cidr(s))) for s in own), (router, dst)


def test_node_plans_match_the_address_plan(plan):
    assert plan["nodes"]["cluster3"] == a.node_plan(7, 3, 1)


def test_what_each_node_reaches(plan):
    pod = dict((c["name"], str(a.pod_cidr(c["slot"]).network_address + 5)) for c in CLUSTERS)
    lb = dict((c["name"], a.lb_addresses(c["slot"])[0]) for c in CLUSTERS)
    assert reachable(plan, "mfn-4", pod["cluster2"]) == ["mfn-4", "mfr-2", "mfn-5"]
    assert reachable(plan, "mfn-4", pod["cluster3"]) is None                 # across networks: no route
    assert reachable(plan, "mfn-7", pod["cluster1"]) is None
    assert reachable(plan, "mfn-4", str(a.service_cidr(7).network_address + 1)) is None
    assert reachable(plan, "mfn-4", lb["cluster3"]) == ["mfn-4", "mfr-2", "mfc-1", "mfr-3", "mfn-7"]
    assert reachable(plan, "mfn-7", lb["cluster2"]) == ["mfn-7", "mfr-3", "mfc-1", "mfr-2", "mfn-5"]
    assert reachable(plan, "mfn-5", lb["cluster1"]) == ["mfn-5", "mfr-2", "mfn-4"]    # same network: direct
    assert reachable(plan, "mfc-1", pod["cluster1"]) is None                 # the core holds no pod route
    assert reachable(plan, "mfn-4", "8.8.8.8") is None                       # nothing leaves the machine


def test_one_network_one_cluster():
    plan = mesh_plan([dict(name="c", network="n", slot=0)], {"n": 0}, 0)
    assert route_lines(plan["namespaces"]["mfc-0"]["routes"]) == ["10.130.0.0/24 via 10.134.0.2 dev r0"]
    assert route_lines(plan["namespaces"]["mfr-0"]["routes"]) == [
        "10.112.0.0/20 via 10.133.0.2 dev n0", "10.130.0.0/24 via 10.133.0.2 dev n0",
        "10.131.0.0/24 via 10.133.0.2 dev n0", "10.134.0.0/16 via 10.134.0.1 dev uplink"]


@pytest.mark.parametrize("clusters,nets,match", [
    ([dict(name="c", network="n", slot=0), dict(name="c", network="n", slot=1)], {"n": 0}, r"clusters\[1\].name: cluster c is listed twice"),
    ([dict(name="c", network="n", slot=0), dict(name="d", network="n", slot=0)], {"n": 0}, r"clusters\[1\]: cluster d has the node slot 0 of cluster c"),
    ([dict(name="c", network="n", slot=0)], {}, "network n has no network slot"),
    ([dict(name="c", network="n", slot=0), dict(name="d", network="m", slot=1)], {"n": 0, "m": 0}, "two networks share a network slot"),
    ([dict(name="c", network="", slot=0)], {"": 0}, r"clusters\[0\].network: a non-empty string"),
    ([dict(name="c", network="n", slot=300)], {"n": 0}, "node slot 300 is out of range"),
])
def test_bad_input_is_refused(clusters, nets, match):
    with pytest.raises(MeshfleetError, match=match):
        mesh_plan(clusters, nets, 0)


VMS = [dict(name="vm1", network="network1", slot=3, netns="mf-vm1", address="10.77.0.2"),
       dict(name="vm2", network="network2", slot=0, netns="mf-vm2", address="10.77.1.2")]


def test_vms_join_their_networks_router():
    plan = mesh_plan(CLUSTERS, NETS, 1, VMS)
    ns = plan["namespaces"]
    assert ns["mf-vm1"]["owned"] is False and ns["mf-vm1"]["forward"] is False
    assert route_lines(ns["mf-vm1"]["routes"]) == ["10.112.0.0/12 via 10.135.0.13 dev mesh0",
                                                   "10.130.0.0/16 via 10.135.0.13 dev mesh0"]
    assert ns["mfr-2"]["routes"]["10.77.0.2/32"] == dict(via="10.135.0.14", dev="v3")
    assert ns["mfr-3"]["routes"]["10.77.1.2/32"] == dict(via="10.135.0.2", dev="v0")
    assert "10.77.0.2/32" not in ns["mfr-3"]["routes"] and "10.77.0.2/32" not in ns["mfc-1"]["routes"]
    veth = [v for v in plan["veths"] if v["b"]["netns"] == "mf-vm1"]
    assert veth == [dict(a=dict(netns="mfr-2", ifname="v3", address="10.135.0.13/30"),
                         b=dict(netns="mf-vm1", ifname="mesh0", address="10.135.0.14/30"))]
    assert plan["vms"]["vm1"]["router_netns"] == "mfr-2"


def test_what_a_vm_reaches_and_what_reaches_it():
    plan = mesh_plan(CLUSTERS, NETS, 1, VMS)
    pod = dict((c["name"], str(a.pod_cidr(c["slot"]).network_address + 5)) for c in CLUSTERS)
    lb = dict((c["name"], a.lb_addresses(c["slot"])[0]) for c in CLUSTERS)
    assert reachable(plan, "mf-vm1", pod["cluster1"]) == ["mf-vm1", "mfr-2", "mfn-4"]     # its network's pods
    assert reachable(plan, "mf-vm1", pod["cluster3"]) is None                             # not another network's
    assert reachable(plan, "mf-vm1", lb["cluster3"]) == ["mf-vm1", "mfr-2", "mfc-1", "mfr-3", "mfn-7"]
    assert reachable(plan, "mf-vm2", lb["cluster1"]) == ["mf-vm2", "mfr-3", "mfc-1", "mfr-2", "mfn-4"]
    assert reachable(plan, "mfn-5", "10.77.0.2") == ["mfn-5", "mfr-2", "mf-vm1"]           # pods reach their VM
    assert reachable(plan, "mfn-7", "10.77.0.2") is None                                  # other networks don't
    assert reachable(plan, "mf-vm1", "10.77.1.2") is None                                 # nor VM to VM across


@pytest.mark.parametrize("vms,match", [
    ([dict(VMS[0], network="network9")], "VM vm1: network network9 has no real-node cluster"),
    ([VMS[0], dict(VMS[1], slot=3)], r"vms\[1\].slot: 3 is also VM vm1's"),
    ([VMS[0], dict(VMS[1], address="10.77.0.2")], r"vms\[1\].address: 10.77.0.2 is also VM vm1's"),
    ([dict(VMS[0], slot=16384)], "VM link slot 16384 is out of range"),
    ([dict(VMS[0], netns="")], r"vms\[0\].netns: a non-empty string is required"),
])
def test_bad_vms_are_refused(vms, match):
    with pytest.raises(MeshfleetError, match=match):
        mesh_plan(CLUSTERS, NETS, 1, vms)
