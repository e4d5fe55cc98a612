# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""meshfleet.mesh.local_lb against a real kube-apiserver (one kwok cluster): the addresses
land in the Services' status, a re-run changes nothing, and the two refusals the unit tests'
recorded API server makes are the real server's (a stale resourceVersion: 409 Conflict; an
ingress ip that is not an IP: 422 Invalid)."""

from __future__ import absolute_import, division, print_function

import pytest

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError
from ansible_collections.meshfleet.mesh.plugins.module_utils.kube_rest import KubeRest
from ansible_collections.meshfleet.mesh.plugins.modules import local_lb
from ansible_collections.meshfleet.mesh.tests.fakes.modrun import run_module

NAME = "lb1"
POOL = "10.130.7.0/24"


@pytest.fixture(scope="module")
def kubeconfig(kwok_mesh, kwok_clusters):
    kwok_clusters([NAME])
    try:
        yield kwok_mesh.kubeconfig(NAME)
    finally:
        kwok_mesh.run([NAME], state="absent")


def service(kube, name, type_="LoadBalancer"):
    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": type_, "ports": [{"name": "tcp", "port": 15443}], "selector": {"app": name}}}
    return kube.request("create Service " + name, "POST", "/api/v1/namespaces/default/services", body)


def ingress(kube, name):
    svc = kube.get("read " + name, "/api/v1/namespaces/default/services/" + name)
    return [i.get("ip") for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []]


def test_addresses_from_the_pool_on_a_real_api_server(kubeconfig):
    kube = KubeRest(kubeconfig, label=NAME)
    first = service(kube, "gw-a")
    service(kube, "gw-b")
    service(kube, "plain", "ClusterIP")
    res = run_module(local_lb.main, dict(kubeconfig=kubeconfig, pool=POOL))
    assert res["changed"] and not res.get("failed"), res
    assert res["addresses"] == {"default/gw-a": "10.130.7.10", "default/gw-b": "10.130.7.11"}, res
    assert ingress(kube, "gw-a") == ["10.130.7.10"] and ingress(kube, "gw-b") == ["10.130.7.11"]
    assert ingress(kube, "plain") == []
    again = run_module(local_lb.main, dict(kubeconfig=kubeconfig, pool=POOL))
    assert again["changed"] is False, again

    # the real server's refusals, as the recorded one makes them
    path = "/api/v1/namespaces/default/services/gw-a/status"
    with pytest.raises(MeshfleetError, match="the object has been modified"):
        kube.request("write with a stale resourceVersion", "PATCH", path,
                     {"metadata": {"resourceVersion": first["metadata"]["resourceVersion"]},
                      "status": {"loadBalancer": {"ingress": [{"ip": "10.130.7.99"}]}}},
                     content_type="application/merge-patch+json")
    with pytest.raises(MeshfleetError, match=r"status.loadBalancer.ingress\[0\].ip: Invalid value"):
        kube.request("write a non-IP", "PATCH", path, {"status": {"loadBalancer": {"ingress": [{"ip": "not-an-ip"}]}}},
                     content_type="application/merge-patch+json")
    assert ingress(kube, "gw-a") == ["10.130.7.10"]
