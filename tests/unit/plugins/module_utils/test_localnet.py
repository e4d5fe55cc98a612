# -*- coding: utf-8 -*-
"""The local real-node address plan (module_utils/localnet/addressing.py) and the machine-wide
slot registry (module_utils/localnet/slots.py)."""

from __future__ import absolute_import, division, print_function

import ipaddress
import itertools
import os

import pytest

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet import addressing as a
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet.slots import SlotRegistry


def test_first_and_last_node_slot():
    first = a.node_plan(0, 0, 0)
    assert first["pod_cidr"] == "10.112.0.0/20"
    assert first["pod_gateway"] == "10.112.0.1"
    assert first["host_link"] == {"cidr": "10.132.0.0/30", "host": "10.132.0.1", "node": "10.132.0.2",
                                  "host_if": "mfnh-0", "node_if": "host0"}
    assert first["node_ip"] == "10.132.0.2"
    assert first["service_cidr"] == "10.131.0.0/24" and first["cluster_dns"] == "10.131.0.10"
    assert first["lb_pool"] == "10.130.0.0/24"
    assert (first["netns"], first["router_netns"], first["core_netns"]) == ("mfn-0", "mfr-0", "mfc-0")
    last = a.node_plan(255, 63, 63)
    assert last["pod_cidr"] == "10.127.240.0/20"
    assert last["host_link"]["cidr"] == "10.132.3.252/30"
    assert last["router_link"]["node"] == "10.133.3.254"
    assert last["core_link"]["cidr"] == "10.134.0.252/30"
    assert last["lb_pool"] == "10.130.255.0/24"
    assert a.lb_addresses(255)[0] == "10.130.255.10" and a.lb_addresses(255)[-1] == "10.130.255.254"


def test_no_two_slots_share_an_address_and_ranges_do_not_overlap():
    for r1, r2 in itertools.combinations(a.ALL_RANGES, 2):
        assert not r1.overlaps(r2), (r1, r2)
    for f in (a.pod_cidr, a.lb_pool, a.service_cidr, lambda s: a.host_link(s)[0], lambda s: a.router_link(s)[0]):
        nets = [f(s) for s in range(a.MAX_NODE_SLOTS)]
        assert all(not x.overlaps(y) for x, y in itertools.combinations(nets[:40], 2))
        assert len(set(nets)) == a.MAX_NODE_SLOTS
        assert all(a.which_range(n.network_address) is a.which_range(nets[0].network_address) for n in nets)
    # the netns VMs and cloud VMs keep their own ranges
    for other in ("10.77.0.0/16", "10.83.0.0/16", "10.86.0.0/16", "10.96.0.0/12", "10.0.0.0/16"):
        assert not any(r.overlaps(ipaddress.ip_network(other)) for r in a.ALL_RANGES), other


def test_interface_names_fit_the_kernel_limit():
    names = [a.node_host_veth(255), a.router_node_if(255), a.core_router_if(63), a.ROUTER_UPLINK_IF,
             a.NODE_HOST_IF, a.NODE_UPLINK_IF, a.NODE_BRIDGE_IF]
    assert all(len(n) <= 15 for n in names)


@pytest.mark.parametrize("call", [lambda: a.pod_cidr(256), lambda: a.pod_cidr(-1), lambda: a.node_plan(0, 64, 0),
                                  lambda: a.core_netns(64), lambda: a.pod_cidr(True), lambda: a.lb_pool("1")])
def test_out_of_range_slots_are_refused(call):
    with pytest.raises(MeshfleetError, match="slot .* out of range"):
        call()


def test_registry_keeps_reuses_and_prunes(tmp_path):
    busy = set()
    reg = SlotRegistry(str(tmp_path / "reg"), in_use=lambda kind, slot: (kind, slot) in busy)
    c1, c2 = tmp_path / "c1", tmp_path / "c2"
    c1.mkdir()
    c2.mkdir()
    assert reg.reserve("node", str(c1)) == 0
    assert reg.reserve("node", str(c2)) == 1
    assert reg.reserve("node", str(c1)) == 0          # kept
    assert reg.reserve("network", str(c1) + "#network1") == 0   # kinds count apart
    assert reg.reserve("network", str(c1) + "#network2") == 1
    reg.release("node", str(c1))
    assert reg.get("node", str(c1)) is None
    busy.add(("node", 0))                              # a remnant namespace holds slot 0
    c3 = tmp_path / "c3"
    c3.mkdir()
    assert reg.reserve("node", str(c3)) == 2
    os.rmdir(str(c2))                                  # its owner is gone: pruned, slot 1 free again
    c4 = tmp_path / "c4"
    c4.mkdir()
    assert reg.reserve("node", str(c4)) == 1
    assert oct(os.stat(reg.path).st_mode & 0o777) == "0o600"


def test_registry_refuses_bad_requests_and_a_full_range(tmp_path):
    reg = SlotRegistry(str(tmp_path / "reg"), in_use=lambda kind, slot: True)
    with pytest.raises(MeshfleetError, match="unknown slot kind"):
        reg.reserve("pod", str(tmp_path))
    with pytest.raises(MeshfleetError, match="not an absolute path"):
        reg.reserve("node", "relative/dir")
    with pytest.raises(MeshfleetError, match="no free mesh slot left"):
        reg.reserve("mesh", str(tmp_path))
