# -*- coding: utf-8 -*-
"""Load-balancer addresses of local real-node clusters (module_utils/localnet/lb.py):
the pure assignment, then the module against the recorded API server (tests/fakes/kubeapi.py)
answering like kube-apiserver for the status writes: a merge patch with a stale
``metadata.resourceVersion`` is refused with 409 Conflict, an ingress ``ip`` that is not an IP
with 422 Invalid (apimachinery's optimistic concurrency; core validation of
``status.loadBalancer.ingress[].ip``)."""

from __future__ import absolute_import, division, print_function

import copy
import ipaddress
import re

import pytest
import yaml

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet import addressing as a
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet.lb import assign, pool_addresses
from ansible_collections.meshfleet.mesh.plugins.modules import local_lb
from ansible_collections.meshfleet.mesh.tests.fakes.kubeapi import RecordedApi, status
from ansible_collections.meshfleet.mesh.tests.fakes.modrun import run_module

POOL = a.lb_addresses(3)


def svc(ns, name, created, type_="LoadBalancer", ingress=(), request=None, klass=None):
    spec = {"type": type_}
    if request:
        spec["loadBalancerIP"] = request
    if klass:
        spec["loadBalancerClass"] = klass
    st = {"loadBalancer": {"ingress": [{"ip": ip} for ip in ingress]}} if ingress else {"loadBalancer": {}}
    return {"apiVersion": "v1", "kind": "Service", "spec": spec, "status": st,
            "metadata": {"namespace": ns, "name": name, "creationTimestamp": created, "resourceVersion": "1"}}


def test_pool_of_a_slot_and_of_a_cidr():
    assert POOL[0] == "10.130.3.10" and POOL[-1] == "10.130.3.254" and len(POOL) == 245
    assert pool_addresses("10.130.3.0/24") == POOL
    assert pool_addresses("10.130.9.0/27") == ["10.130.9.%d" % i for i in range(10, 31)]
    for bad in ("10.77.0.0/24", "10.130.3.0/28", "not-a-cidr", "10.130.3.1/24"):
        with pytest.raises(MeshfleetError, match="pool"):
            pool_addresses(bad)


def test_assignment_keeps_hands_out_lowest_and_never_twice():
    services = [
        svc("istio-system", "istio-eastwestgateway", "2026-12-01T10:00:00Z"),
        svc("istio-system", "istio-ingressgateway", "2026-12-01T10:00:01Z", ingress=["10.130.3.12"]),
        svc("sample", "web", "2026-12-01T11:00:00Z", ingress=["10.130.3.12"]),      # a duplicate: the older keeps it
        svc("sample", "old", "2026-12-01T09:00:00Z", ingress=["10.77.0.1"]),        # outside the pool: re-assigned
        svc("sample", "asks", "2026-12-01T12:00:00Z", request="10.130.3.200"),
        svc("sample", "asks-held", "2026-12-01T12:00:01Z", request="10.130.3.12"),
        svc("sample", "asks-outside", "2026-12-01T12:00:02Z", request="192.0.2.1"),
        svc("sample", "clusterip", "2026-12-01T12:00:03Z", type_="ClusterIP"),
        svc("sample", "metallb", "2026-12-01T12:00:04Z", klass="metallb.io/metallb"),
    ]
    out = assign(services, POOL)
    assert out == {
        "istio-system/istio-ingressgateway": ("10.130.3.12", None),
        "sample/old": ("10.130.3.10", None),
        "istio-system/istio-eastwestgateway": ("10.130.3.11", None),
        "sample/web": ("10.130.3.13", None),
        "sample/asks": ("10.130.3.200", None),
        "sample/asks-held": (None, "the address it asks for, 10.130.3.12, is held by Service istio-system/istio-ingressgateway"),
        "sample/asks-outside": (None, "the address it asks for, 192.0.2.1, is not in the pool 10.130.3.10 .. 10.130.3.254"),
    }
    ips = [ip for ip, dummy in out.values() if ip]
    assert len(ips) == len(set(ips))
    # stable: with the addresses written, the same answer again, whatever the order of the list
    for s in services:
        got = out.get("%s/%s" % (s["metadata"]["namespace"], s["metadata"]["name"]))
        if got and got[0]:
            s["status"] = {"loadBalancer": {"ingress": [{"ip": got[0]}]}}
    assert assign(list(reversed(services)), POOL) == out
    # a request beside the Service's own (the inventory's east-west address) wins over what it has
    again = assign(services, POOL, requests={"istio-system/istio-eastwestgateway": "10.130.3.100"})
    assert again["istio-system/istio-eastwestgateway"] == ("10.130.3.100", None)


def test_a_full_pool_is_reported():
    pool = pool_addresses("10.130.9.0/27")
    services = [svc("ns", "s%02d" % i, "2026-12-01T10:00:%02dZ" % i) for i in range(len(pool) + 2)]
    out = assign(services, pool)
    assert [out["ns/s%02d" % i][0] for i in range(len(pool))] == pool
    assert out["ns/s%02d" % len(pool)] == (None, "the pool 10.130.9.10 .. 10.130.9.30 is full")


class Cluster:
    """Services behind the recorded API server, written through their status subresource."""

    def __init__(self, services):
        self.services = dict(("%s/%s" % (s["metadata"]["namespace"], s["metadata"]["name"]), s) for s in services)
        self.patches = []

    def routes(self):
        routes = {("GET", "/api/v1/services"): lambda body: (200, {
            "kind": "ServiceList", "apiVersion": "v1", "items": copy.deepcopy(list(self.services.values()))})}
        for k in self.services:
            ns, name = k.split("/")
            routes[("PATCH", "/api/v1/namespaces/%s/services/%s/status" % (ns, name))] = lambda body, k=k: self.patch(k, body)
        return routes

    def patch(self, k, body):
        cur = self.services[k]
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv is not None and rv != cur["metadata"]["resourceVersion"]:
            return 409, status(409, 'Operation cannot be fulfilled on services "%s": the object has been modified; '
                                    'please apply your changes to the latest version and try again' % k.split("/")[1],
                               "Conflict")
        ingress = body["status"]["loadBalancer"]["ingress"]
        for i, entry in enumerate(ingress):
            try:
                ipaddress.ip_address(entry.get("ip", ""))
            except ValueError:
                return 422, status(422, 'Service "%s" is invalid: status.loadBalancer.ingress[%d].ip: Invalid value: '
                                        '"%s": must be a valid IP address' % (k, i, entry.get("ip")), "Invalid")
        self.patches.append((k, [e["ip"] for e in ingress]))
        cur["status"] = {"loadBalancer": {"ingress": ingress}}
        cur["metadata"]["resourceVersion"] = str(int(cur["metadata"]["resourceVersion"]) + 1)
        return 200, cur


@pytest.fixture
def cluster(tmp_path):
    c = Cluster([svc("istio-system", "istio-eastwestgateway", "2026-12-01T10:00:00Z"),
                 svc("sample", "web", "2026-12-01T11:00:00Z", ingress=["10.130.3.50"]),
                 svc("sample", "db", "2026-12-01T11:00:01Z", type_="ClusterIP")])
    with RecordedApi(c.routes()) as api:
        kc = tmp_path / "kubeconfig"
        kc.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": api.url}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "users": [{"name": "u", "user": {"token": "t"}}]}))
        c.api, c.kubeconfig = api, str(kc)
        yield c


def test_module_check_mode_then_assign_then_no_op(cluster):
    args = dict(kubeconfig=cluster.kubeconfig, node_slot=3)
    preview = run_module(local_lb.main, args, check_mode=True, diff=True)
    assert preview["changed"] and cluster.patches == [], preview
    assert preview["diff"] == {"before": {"istio-system/istio-eastwestgateway": []},
                               "after": {"istio-system/istio-eastwestgateway": ["10.130.3.10"]}}
    res = run_module(local_lb.main, args)
    assert res["changed"] and res["addresses"] == {"istio-system/istio-eastwestgateway": "10.130.3.10",
                                                   "sample/web": "10.130.3.50"}, res
    assert cluster.patches == [("istio-system/istio-eastwestgateway", ["10.130.3.10"])]
    patch = cluster.api.requests("PATCH")[0]
    assert dict((k.lower(), v) for k, v in patch[2])["content-type"] == "application/merge-patch+json"
    assert patch[3]["metadata"]["resourceVersion"] == "1"
    again = run_module(local_lb.main, dict(kubeconfig=cluster.kubeconfig, pool="10.130.3.0/24"))
    assert again["changed"] is False and len(cluster.patches) == 1, again


def test_module_reports_a_conflict_and_bad_arguments(cluster):
    cluster.services["istio-system/istio-eastwestgateway"]["metadata"]["resourceVersion"] = "7"
    # the API server moved on between the list and the write: refused, said, nothing half-done
    real = cluster.routes()[("GET", "/api/v1/services")]

    def stale(body):
        code, doc = real(body)
        for item in doc["items"]:
            item["metadata"]["resourceVersion"] = "6"
        return code, doc
    cluster.api.routes[("GET", "/api/v1/services")] = stale
    out = run_module(local_lb.main, dict(kubeconfig=cluster.kubeconfig, node_slot=3))
    assert out.failed and "the object has been modified" in out["msg"] and "10.130.3.10" in out["msg"], out
    assert cluster.patches == []
    out = run_module(local_lb.main, dict(kubeconfig=cluster.kubeconfig, pool="10.77.0.0/24"))
    assert out.failed and re.search(r"pool: 10.77.0.0/24 is not a load-balancer pool", out["msg"]), out
    out = run_module(local_lb.main, dict(kubeconfig=cluster.kubeconfig))
    assert out.failed and "one of the following is required: pool, node_slot" in out["msg"], out


def test_gateway_address_from_the_pool_on_real_node_clusters(cluster):
    """The east-west gateway's address on a real-node cluster comes from the pool, beside the other
    LoadBalancer Services (sample/web holds .50); an override must be in the pool."""
    from ansible_collections.meshfleet.mesh.plugins.modules import gateway_address
    cluster.services["sample/web"]["status"] = {"loadBalancer": {"ingress": [{"ip": "10.130.3.10"}]}}
    cluster.api.routes[("GET", "/api/v1/namespaces/istio-system/services/istio-eastwestgateway")] = \
        lambda body: (200, copy.deepcopy(cluster.services["istio-system/istio-eastwestgateway"]))
    args = dict(kubeconfig=cluster.kubeconfig, lb_pool="10.130.3.0/24", publish=True)
    preview = run_module(gateway_address.main, args, check_mode=True, diff=True)
    assert preview["changed"] and preview["address"] == "10.130.3.11" and cluster.patches == [], preview
    assert preview["diff"] == {"before": {"ingress": []}, "after": {"ingress": ["10.130.3.11"]}}
    res = run_module(gateway_address.main, args)
    assert res["changed"] and res["address"] == "10.130.3.11" and res["source"] == "local load balancer", res
    assert cluster.patches == [("istio-system/istio-eastwestgateway", ["10.130.3.11"])]   # only the gateway
    assert run_module(gateway_address.main, args)["changed"] is False
    moved = run_module(gateway_address.main, dict(args, address="10.130.3.99"))
    assert moved["changed"] and moved["address"] == "10.130.3.99", moved
    out = run_module(gateway_address.main, dict(args, address="10.77.0.1"))
    assert out.failed and "the east-west address 10.77.0.1 is not in the cluster's load-balancer pool" in out["msg"]
    # fake-node clusters (no pool): the override is published as before
    fake = run_module(gateway_address.main, dict(kubeconfig=cluster.kubeconfig, address="10.77.0.1", publish=True))
    assert fake["changed"] and fake["source"] == "inventory override"
    assert cluster.patches[-1] == ("istio-system/istio-eastwestgateway", ["10.77.0.1"])
