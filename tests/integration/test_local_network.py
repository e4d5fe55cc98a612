# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""meshfleet.mesh.local_network on this machine, proven with real traffic (root).

No kubelet: each "node" is a stand-in made here the way the node runtime makes one - the
network namespace ``mfn-<slot>`` with its host link (``mfnh-<slot>`` <-> ``host0``), a "pod"
address from its pod CIDR on its loopback, and a "load balancer" address from its pool that
a DNAT rule sends to the pod, as kube-proxy does for a LoadBalancer Service. Three clusters: cluster1 and cluster2 on network1, cluster3 on network2. Then TCP
between the namespaces: same-network pod to pod works, cross-network pod to pod fails
(unreachable), cross-network to a load-balancer address works; the host gains no route, no
link and no changed sysctl; a re-run changes nothing; state=absent leaves nothing.
"""

from __future__ import absolute_import, division, print_function

import errno
import glob
import json
import os
import re
import subprocess
import sys
import time

import pytest

from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet import addressing as a
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet.network import attach_node, detach_node
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet.slots import SlotRegistry
from ansible_collections.meshfleet.mesh.plugins.modules import local_network

from ansible_collections.meshfleet.mesh.tests.fakes.modrun import run_module

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")]

PORT = 18080
CLUSTERS = (("cluster1", "network1"), ("cluster2", "network1"), ("cluster3", "network2"))

SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(8)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    c.sendall(("%s %s %s" % (sys.argv[2], c.getsockname()[0], peer[0])).encode()); c.close()
"""

CLIENT = r"""
import json, socket, sys
s = socket.socket(); s.settimeout(5)
s.bind((sys.argv[1], 0))
try:
    s.connect((sys.argv[2], int(sys.argv[3])))
    print(json.dumps({"answer": s.recv(200).decode()}))
except OSError as e:
    print(json.dumps({"errno": e.errno, "error": str(e)}))
"""


def sh(*cmd, check=True):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=check)


def host_state():
    """What the host holds that the module must never touch: routes (every table), links, the
    forwarding sysctls."""
    routes = sorted(json.dumps(r, sort_keys=True) for r in json.loads(sh("ip", "-j", "route", "show", "table", "all").stdout))
    links = sorted(l["ifname"] for l in json.loads(sh("ip", "-j", "link", "show").stdout))
    sysctls = {}
    for path in ["/proc/sys/net/ipv4/ip_forward"] + glob.glob("/proc/sys/net/ipv4/conf/*/forwarding") \
            + glob.glob("/proc/sys/net/ipv4/conf/*/rp_filter"):
        with open(path) as f:
            sysctls[path] = f.read().strip()
    return dict(routes=routes, links=links, sysctls=sysctls)


#: host links other tests may make meanwhile (other node runtimes, netns VMs): not ours to judge
FOREIGN = re.compile(r"^(mfnh-[0-9]+|mfv-.*|mfbr-.*|mf-.*)$")


def assert_host_unchanged(before, mine):
    """The host as ``before``, but for what other tests on this machine made meanwhile (links
    of the foreign kinds that are not ``mine``, and their routes and sysctls)."""
    now = host_state()
    new_links = set(now["links"]) - set(before["links"])
    gone_links = set(before["links"]) - set(now["links"])
    assert not [l for l in new_links | gone_links if not FOREIGN.match(l) or l in mine], (new_links, gone_links)
    theirs = new_links | gone_links

    def ours(routes):
        return set(r for r in routes if json.loads(r).get("dev") not in theirs)

    def sysctls(values):
        return dict((k, v) for k, v in values.items() if k.split("/")[-2] not in theirs)
    assert ours(now["routes"]) == ours(before["routes"])
    assert sysctls(now["sysctls"]) == sysctls(before["sysctls"])


class StandIn:
    """One stand-in node (see the module docstring)."""

    def __init__(self, root, name, network, registry):
        self.name, self.network = name, network
        self.dir = os.path.join(root, "clusters", name)
        os.makedirs(self.dir)
        self.slot = registry.reserve("node", self.dir)
        self.ns, self.veth = a.node_netns(self.slot), a.node_host_veth(self.slot)
        self.pod = str(a.pod_cidr(self.slot).network_address + 5)
        self.lb = a.lb_addresses(self.slot)[0]
        self.procs = []

    def create(self):
        dummy, host_end, node_end = a.host_link(self.slot)
        sh("ip", "netns", "add", self.ns)
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", a.NODE_HOST_IF, "netns", self.ns)
        with open("/proc/sys/net/ipv6/conf/%s/disable_ipv6" % self.veth, "w") as f:
            f.write("1")  # as the netns VMs' host ends: no link-local route appears later
        sh("ip", "addr", "add", "%s/30" % host_end, "dev", self.veth)
        sh("ip", "link", "set", self.veth, "up")
        sh("ip", "-n", self.ns, "addr", "add", "%s/30" % node_end, "dev", a.NODE_HOST_IF)
        sh("ip", "-n", self.ns, "link", "set", a.NODE_HOST_IF, "up")
        # the pod address on lo (this kernel has no dummy links); the load-balancer address is not
        # the node's own: it is translated to the pod on the way in, as kube-proxy does
        sh("ip", "-n", self.ns, "addr", "add", self.pod + "/32", "dev", "lo")
        sh("ip", "netns", "exec", self.ns, "iptables", "-w", "-t", "nat", "-A", "PREROUTING", "-d", self.lb,
           "-p", "tcp", "--dport", str(PORT), "-j", "DNAT", "--to-destination", self.pod)

    def serve(self):
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns, sys.executable, "-c", SERVER, str(PORT), self.name],
                                stdout=subprocess.PIPE, universal_newlines=True)
        self.procs.append(proc)
        assert proc.stdout.readline().strip() == "ready"

    def connect(self, address):
        """From this node's pod address to ``address``:PORT: {"answer": ...} or {"errno": ...}."""
        out = sh("ip", "netns", "exec", self.ns, sys.executable, "-c", CLIENT, self.pod, address, str(PORT)).stdout
        return json.loads(out)

    def remove(self, registry):
        for proc in self.procs:
            proc.kill()
            proc.wait()
        sh("ip", "netns", "del", self.ns, check=False)
        sh("ip", "link", "del", self.veth, check=False)
        registry.release("node", self.dir)


@pytest.fixture
def standins(tmp_path):
    registry = SlotRegistry()
    state_dir = str(tmp_path / "state")
    os.makedirs(state_dir)
    nodes = []
    try:
        for name, network in CLUSTERS:
            nodes.append(StandIn(state_dir, name, network, registry))
            nodes[-1].create()
        yield state_dir, dict((n.name, n) for n in nodes), registry
    finally:
        # the networks first (whatever the test left), then the stand-ins
        run_module(local_network.main, dict(state_dir=state_dir, state="absent"))
        for n in nodes:
            n.remove(registry)


def params(state_dir, nodes, **kw):
    clusters = [dict(name=n.name, network=n.network, cluster_dir=n.dir) for n in nodes.values()]
    clusters[2] = dict(name="cluster3", network="network2", node_netns=nodes["cluster3"].ns)  # the other way to name a node
    return dict(dict(state_dir=state_dir, clusters=clusters), **kw)


def test_networks_for_real(standins):
    state_dir, nodes, registry = standins
    n1, n2, n3 = nodes["cluster1"], nodes["cluster2"], nodes["cluster3"]
    before = host_state()
    args = params(state_dir, nodes)

    # check mode: says what it would do, does nothing
    preview = run_module(local_network.main, args, check_mode=True, diff=True)
    assert preview["changed"] and not preview.get("failed"), preview
    assert preview["diff"]["before"][n1.ns]["links"] == []
    assert registry.get("mesh", os.path.abspath(state_dir)) is None
    assert not [ns for ns in os.listdir("/run/netns") if ns == preview["core"]]

    t0 = time.monotonic()
    res = run_module(local_network.main, args)
    converge_s = time.monotonic() - t0
    assert res["changed"] and not res.get("failed"), res
    core, routers = res["core"], res["routers"]
    assert set(routers) == {"network1", "network2"}
    assert res["clusters"]["cluster3"]["lb_pool"] == str(a.lb_pool(n3.slot))

    for n in nodes.values():
        n.serve()
    # same network: pod to pod, both ways, with the pods' own addresses (no NAT)
    assert n1.connect(n2.pod) == {"answer": "cluster2 %s %s" % (n2.pod, n1.pod)}
    assert n2.connect(n1.pod) == {"answer": "cluster1 %s %s" % (n1.pod, n2.pod)}
    # across networks: no route, refused at the router at once (not a timeout)
    for src, dst in ((n1, n3), (n3, n1), (n2, n3), (n1, n3), (n1, n3)):   # again and again: no rate limit
        out = src.connect(dst.pod)
        assert out.get("errno") in (errno.ENETUNREACH, errno.EHOSTUNREACH), (src.name, dst.name, out)
        out = src.connect(str(a.service_cidr(dst.slot).network_address + 1))
        assert out.get("errno") in (errno.ENETUNREACH, errno.EHOSTUNREACH), out
    # across networks to a load-balancer address: through the core, from the router's uplink address
    uplink1 = a.core_link(res["network_slots"]["network1"])[2]
    uplink2 = a.core_link(res["network_slots"]["network2"])[2]
    assert n1.connect(n3.lb) == {"answer": "cluster3 %s %s" % (n3.pod, uplink1)}
    assert n3.connect(n2.lb) == {"answer": "cluster2 %s %s" % (n2.pod, uplink2)}
    # same network to a load-balancer address: direct
    assert n2.connect(n1.lb) == {"answer": "cluster1 %s %s" % (n1.pod, n2.pod)}

    # the host: not one route, link or forwarding sysctl more or changed
    assert_host_unchanged(before, set(n.veth for n in nodes.values()))

    # a re-run changes nothing, also in check mode
    again = run_module(local_network.main, args)
    assert again["changed"] is False and again["steps"] == [], again
    assert run_module(local_network.main, args, check_mode=True)["changed"] is False

    # drift is repaired: a route removed in a router, a link down in the core
    slot2 = res["network_slots"]["network2"]
    sh("ip", "-n", routers["network1"], "route", "del", str(a.lb_pool(n3.slot)))
    sh("ip", "-n", core, "link", "set", a.core_router_if(slot2), "down")   # its route goes with it
    fix = run_module(local_network.main, args)
    assert fix["changed"] and sorted(fix["steps"]) == sorted([
        "set %s:%s up" % (core, a.core_router_if(slot2)),
        "route %s via %s dev %s in %s" % (a.lb_pool(n3.slot), a.core_link(slot2)[2], a.core_router_if(slot2), core),
        "route %s via %s dev uplink in %s" % (a.lb_pool(n3.slot), a.core_link(res["network_slots"]["network1"])[1], routers["network1"]),
    ]), fix["steps"]
    assert n1.connect(n3.lb)["answer"].startswith("cluster3")

    # the node runtime's functions: detach a node (it is cut off), attach it again (as converged)
    plan2 = res["clusters"]["cluster2"]
    detach_node(plan2)
    assert n1.connect(n2.pod).get("errno") in (errno.EHOSTUNREACH, errno.ENETUNREACH)
    assert "eth0" not in sh("ip", "-n", n2.ns, "link").stdout
    attach_node(plan2)
    assert n1.connect(n2.pod) == {"answer": "cluster2 %s %s" % (n2.pod, n1.pod)}
    assert run_module(local_network.main, args)["changed"] is False

    # cluster3 moves to network1: network2's router goes, cluster3 reaches cluster1's pods
    moved = params(state_dir, nodes)
    moved["clusters"][2]["network"] = "network1"
    res2 = run_module(local_network.main, moved)
    assert res2["changed"] and set(res2["routers"]) == {"network1"}, res2
    assert not os.path.exists("/run/netns/" + routers["network2"])
    assert registry.get("network", "%s#network2" % os.path.abspath(state_dir)) is None
    assert n3.connect(n1.pod) == {"answer": "cluster1 %s %s" % (n1.pod, n3.pod)}

    # absent: nothing left (namespaces, links in the nodes, slots)
    gone = run_module(local_network.main, dict(state_dir=state_dir, state="absent"))
    assert gone["changed"]
    assert not [ns for ns in os.listdir("/run/netns") if ns in (core, routers["network1"], routers["network2"])]
    for n in nodes.values():
        links = json.loads(sh("ip", "-n", n.ns, "-j", "link", "show").stdout)
        assert sorted(l["ifname"] for l in links) == ["host0", "lo"]
        assert "default" not in sh("ip", "-n", n.ns, "route").stdout
    assert registry.get("mesh", os.path.abspath(state_dir)) is None
    assert not [o for o in registry.entries("network") if o.startswith(os.path.abspath(state_dir) + "#")]
    assert run_module(local_network.main, dict(state_dir=state_dir, state="absent"))["changed"] is False
    assert_host_unchanged(before, set(n.veth for n in nodes.values()))
    print("local_network: converge of 3 clusters on 2 networks %.2f s" % converge_s)


def test_a_missing_node_is_refused_before_anything_changes(standins):
    state_dir, nodes, registry = standins
    args = params(state_dir, nodes)
    args["clusters"].append(dict(name="cluster4", network="network2", cluster_dir=os.path.join(state_dir, "clusters", "c4")))
    # check mode (a first run, before the clusters exist): said, not refused
    preview = run_module(local_network.main, args, check_mode=True)
    assert preview["changed"] and not preview.failed and preview["steps"][0] == \
        "attach the node of cluster cluster4 (it has none yet)", preview
    out = run_module(local_network.main, args)
    assert out.failed and "cluster cluster4 has no real node yet" in out["msg"], out
    assert registry.get("mesh", os.path.abspath(state_dir)) is None
    args["clusters"][3] = dict(name="cluster4", network="network2", node_slot=a.MAX_NODE_SLOTS - 1)
    out = run_module(local_network.main, args)
    assert out.failed and "node network namespace mfn-255 does not exist" in out["msg"], out
    both = dict(name="x", network="n", node_slot=1, node_netns="mfn-1")
    out = run_module(local_network.main, dict(state_dir=state_dir, clusters=[both]))
    assert out.failed and "give exactly one of node_slot, node_netns, cluster_dir" in out["msg"], out


class StandInVM:
    """A netns VM as the local network sees one: the namespace ``mf-<name>`` with the VM's
    address (on its loopback here: the VM provider's eth0 and host bridge are not what is tested)."""

    def __init__(self, name, address):
        self.name, self.address, self.ns, self.procs = name, address, "mf-" + name, []

    def create(self):
        sh("ip", "netns", "add", self.ns)
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.ns, "addr", "add", self.address + "/32", "dev", "lo")

    def serve(self):
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns, sys.executable, "-c", SERVER, str(PORT), self.name],
                                stdout=subprocess.PIPE, universal_newlines=True)
        self.procs.append(proc)
        assert proc.stdout.readline().strip() == "ready"

    def connect(self, address):
        out = sh("ip", "netns", "exec", self.ns, sys.executable, "-c", CLIENT, self.address, address, str(PORT)).stdout
        return json.loads(out)

    def remove(self):
        for proc in self.procs:
            proc.kill()
            proc.wait()
        sh("ip", "netns", "del", self.ns, check=False)


def test_a_netns_vm_joins_its_networks_router(standins):
    state_dir, nodes, registry = standins
    n1, n2, n3 = nodes["cluster1"], nodes["cluster2"], nodes["cluster3"]
    vm = StandInVM("mfltvm1", "10.80.0.2")
    late = dict(name="mfltvm2", network="network2", address="10.80.1.2")     # not started yet
    try:
        vm.create()
        args = params(state_dir, nodes, vms=[dict(name=vm.name, network="network1", address=vm.address), late])
        res = run_module(local_network.main, args)
        assert res["changed"] and not res.get("failed"), res
        assert res["vms_waiting"] == ["mfltvm2"] and list(res["vms"]) == [vm.name]
        plan = res["vms"][vm.name]
        assert plan["router_netns"] == res["routers"]["network1"] and plan["link"]["vm_if"] == "mesh0"
        slot = registry.get("vm_link", "%s#vm:%s" % (os.path.abspath(state_dir), vm.name))
        assert plan["link"]["router_if"] == "v%d" % slot
        for n in nodes.values():
            n.serve()
        vm.serve()
        # its network's pods, both ways, with the VM's own address (no NAT inside a network)
        assert vm.connect(n1.pod) == {"answer": "cluster1 %s %s" % (n1.pod, vm.address)}
        assert n2.connect(vm.address) == {"answer": "%s %s %s" % (vm.name, vm.address, n2.pod)}
        # another network: its pods are unreachable both ways, its load-balancer address is not
        assert vm.connect(n3.pod).get("errno") in (errno.ENETUNREACH, errno.EHOSTUNREACH)
        assert n3.connect(vm.address).get("errno") in (errno.ENETUNREACH, errno.EHOSTUNREACH)
        uplink1 = a.core_link(res["network_slots"]["network1"])[2]
        assert vm.connect(n3.lb) == {"answer": "cluster3 %s %s" % (n3.pod, uplink1)}
        # a re-run changes nothing; the VM's routes repaired when lost
        assert run_module(local_network.main, args)["changed"] is False
        sh("ip", "-n", vm.ns, "route", "del", str(a.LB_RANGE))
        fix = run_module(local_network.main, args)
        assert fix["steps"] == ["route %s via %s dev mesh0 in %s" % (a.LB_RANGE, plan["link"]["router"], vm.ns)], fix
        # the VM gone from the list: its link and the router's route to it go, its slot is released
        gone = run_module(local_network.main, params(state_dir, nodes))
        assert "release VM link slot %d (VM %s is gone)" % (slot, vm.name) in gone["steps"]
        assert "mesh0" not in sh("ip", "-n", vm.ns, "link").stdout
        assert vm.address not in sh("ip", "-n", res["routers"]["network1"], "route").stdout
        assert registry.get("vm_link", "%s#vm:%s" % (os.path.abspath(state_dir), vm.name)) is None
        # back, then the VM deleted: its namespace takes both ends of the link (and the router's
        # route) with it; the next run has nothing to undo and waits for the VM
        run_module(local_network.main, args)
        vm.remove()
        assert " v%d@" % slot not in sh("ip", "-n", res["routers"]["network1"], "link").stdout
        after = run_module(local_network.main, args)
        assert after["changed"] is False and after["vms_waiting"] == [vm.name, "mfltvm2"], after
        run_module(local_network.main, dict(state_dir=state_dir, state="absent"))
        assert not [o for o in registry.entries("vm_link") if o.startswith(os.path.abspath(state_dir) + "#")]
    finally:
        vm.remove()
