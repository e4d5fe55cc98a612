# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The local networks with real nodes (root; what tests/integration/test_real_node.py needs):
three kwok clusters with ``real_node: true`` - rnet1 and rnet2 on network1, rnet3 on
network2 - joined by meshfleet.mesh.local_network, helloworld in each, a curl pod in rnet1,
rnet3's helloworld behind a LoadBalancer Service given its address by meshfleet.mesh.local_lb.
From the curl pod: rnet2's pod answers by its pod address (same network), rnet3's pod does not
(another network: no route), rnet3's load-balancer address answers (kube-proxy in rnet3's node
forwards it to the pod). Everything is removed at the end."""

from __future__ import absolute_import, division, print_function

import ipaddress
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import helpers  # noqa: E402
import test_real_node as rn  # noqa: E402

from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet import addressing  # noqa: E402
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet.slots import SlotRegistry  # noqa: E402
from ansible_collections.meshfleet.mesh.plugins.modules import local_lb, local_network  # noqa: E402
from ansible_collections.meshfleet.mesh.tests.fakes.modrun import run_module  # noqa: E402

pytestmark = pytest.mark.integration

NETWORKS = {"rnet1": "network1", "rnet2": "network1", "rnet3": "network2"}


kubectl = rn.kubectl_in


@pytest.fixture(scope="module")
def mesh(tmp_path_factory, tools_bin):
    why = rn._skip_reason()
    if why:
        pytest.skip(why)
    m = helpers.KwokMesh(str(tmp_path_factory.mktemp("realnet") / "state"), tools_bin, wait_timeout=600)
    try:
        m.converge(dict((n, dict(real_node=True)) for n in NETWORKS))
        yield m
    finally:
        run_module(local_network.main, dict(state_dir=m.state_dir, state="absent"))
        problems = m.teardown()
        assert not problems, "the real-node clusters were not torn down cleanly: %s" % problems


def test_real_pods_across_the_local_networks(mesh):
    slots = dict((n, SlotRegistry().get("node", mesh.port_owner(n))) for n in NETWORKS)
    res = run_module(local_network.main, dict(state_dir=mesh.state_dir, clusters=[
        dict(name=n, network=net, cluster_dir=mesh.cluster_dir(n)) for n, net in NETWORKS.items()]))
    assert res["changed"] and not res.get("failed"), res
    assert run_module(local_network.main, dict(state_dir=mesh.state_dir, clusters=[
        dict(name=n, network=net, node_slot=slots[n]) for n, net in NETWORKS.items()]))["changed"] is False

    images = {}
    for n in NETWORKS:
        rn.NAME = n          # test_real_node's helpers work on the cluster named there
        images = rn._images(mesh)
    hello = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hello", "labels": {"app": "hello"}},
              "spec": {"containers": [{"name": "hello", "image": images["helloworld"], "imagePullPolicy": "Never",
                                       "ports": [{"containerPort": 5000}]}]}}]
    for n in NETWORKS:
        kubectl(mesh, n, "apply", "-f", "-", input=json.dumps(hello[0]))
    kubectl(mesh, "rnet1", "apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
         "spec": {"containers": [{"name": "curl", "image": images["curl"], "imagePullPolicy": "Never"}]}}))
    kubectl(mesh, "rnet3", "apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hello"},
         "spec": {"type": "LoadBalancer", "selector": {"app": "hello"}, "ports": [{"port": 5000, "targetPort": 5000}]}}))
    lb = run_module(local_lb.main, dict(kubeconfig=mesh.kubeconfig("rnet3"), node_slot=slots["rnet3"]))
    assert lb["changed"] and lb["addresses"] == {"default/hello": addressing.lb_addresses(slots["rnet3"])[0]}, lb

    def pod_ip(n, pod):
        doc = json.loads(kubectl(mesh, n, "get", "pod", pod, "-o", "json"))
        return doc["status"].get("podIP") if doc["status"].get("phase") == "Running" else None
    ips = dict((n, helpers.wait_until(lambda n=n: pod_ip(n, "hello"), 180, "hello in " + n)) for n in NETWORKS)
    helpers.wait_until(lambda: pod_ip("rnet1", "client"), 180, "the client pod")
    for n, ip in ips.items():
        assert ipaddress.ip_address(ip) in addressing.pod_cidr(slots[n])

    def curl(url):
        return kubectl(mesh, "rnet1", "exec", "client", "--", "curl", "-sS", "-m", "5", url, check=False)
    same = helpers.wait_until(lambda: "Hello version" in curl("http://%s:5000/hello" % ips["rnet2"]) or None,
                              60, "rnet2's pod from rnet1")
    assert same
    other = curl("http://%s:5000/hello" % ips["rnet3"])
    # refused by rnet1's router at once (curl: "Failed to connect", exit code 7), not a timeout
    assert "Hello version" not in other and "exit code 7" in other and "timed out" not in other, other
    lb_ip = lb["addresses"]["default/hello"]

    def through_lb():
        out = curl("http://%s:5000/hello" % lb_ip)
        return out if "Hello version" in out else None
    answer = helpers.wait_until(through_lb, 60, "rnet3's load-balancer address from rnet1")
    assert "instance: hello" in answer
    print("[real-networks] same network %s ok; other network %s refused; load balancer %s ok"
          % (ips["rnet2"], ips["rnet3"], lb_ip))
