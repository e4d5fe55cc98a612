# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""module_utils/lb_drain.py against a small in-process Kubernetes API (HTTP on 127.0.0.1) that
keeps a deleted Service while it has finalizers, as the API server does (it sets
metadata.deletionTimestamp and removes the object when the last finalizer goes). The real
API server is used by tests/integration/test_cluster_teardown.py."""

from __future__ import absolute_import, division, print_function

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError, WaitTimeout
from ansible_collections.meshfleet.mesh.plugins.module_utils.kube_rest import KubeRest
from ansible_collections.meshfleet.mesh.plugins.module_utils.lb_drain import (
    FINALIZER, Unreachable, drain_load_balancers)


class FakeApi:
    def __init__(self):
        self.services = {}
        self.deletes = []
        self.lists = 0
        self.forbidden = False
        self.cloud_after_lists = None  # the "cloud" removes finalizers after this many lists

    def add(self, ns, name, type_="LoadBalancer", finalizers=(FINALIZER,), uid=None):
        self.services[(ns, name)] = dict(
            metadata=dict(namespace=ns, name=name, uid=uid or "%s-%s" % (ns, name), finalizers=list(finalizers)),
            spec=dict(type=type_))

    def handle(self, method, path):
        if self.forbidden:
            return 403, dict(kind="Status", message='services is forbidden: User "x" cannot list resource')
        if method == "GET" and path == "/api/v1/services":
            self.lists += 1
            if self.cloud_after_lists is not None and self.lists > self.cloud_after_lists:
                for key, svc in list(self.services.items()):
                    if svc["metadata"].get("deletionTimestamp"):
                        del self.services[key]  # finalizer removed: the object goes
            return 200, dict(kind="ServiceList", items=list(self.services.values()))
        m = re.match(r"^/api/v1/namespaces/([^/]+)/services/([^/]+)$", path)
        if method == "DELETE" and m:
            key = (m.group(1), m.group(2))
            self.deletes.append("%s/%s" % key)
            svc = self.services.get(key)
            if svc is None:
                return 404, dict(kind="Status", message="not found")
            if svc["metadata"]["finalizers"]:
                svc["metadata"]["deletionTimestamp"] = "2026-12-01T15:00:00Z"
            else:
                del self.services[key]
            return 200, svc
        return 404, dict(kind="Status", message="no route")


@pytest.fixture
def api(tmp_path):
    fake = FakeApi()

    class Handler(BaseHTTPRequestHandler):
        def _do(self):
            status, body = fake.handle(self.command, self.path.split("?")[0])
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        do_GET = do_DELETE = _do

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.kubeconfig = write_kubeconfig(tmp_path, "http://127.0.0.1:%d" % server.server_address[1])
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def write_kubeconfig(tmp_path, server):
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c1",
        "clusters": [{"name": "c1", "cluster": {"server": server}}],
        "users": [{"name": "c1", "user": {"token": "t"}}],
        "contexts": [{"name": "c1", "context": {"cluster": "c1", "user": "c1"}}]}))
    return str(path)


def no_sleep(_seconds):
    pass


def test_deletes_the_load_balancers_only_and_waits_until_they_are_gone(api):
    api.add("istio-system", "istio-eastwestgateway")
    api.add("ingress", "istio-ingressgateway")
    api.add("default", "plain", type_="ClusterIP", finalizers=())
    api.cloud_after_lists = 3
    kube = KubeRest(api.kubeconfig, label="c1")
    deleted = drain_load_balancers(kube, 30, "c1", sleeper=no_sleep)
    assert deleted == ["ingress/istio-ingressgateway", "istio-system/istio-eastwestgateway"]
    assert sorted(api.deletes) == deleted
    assert list(api.services) == [("default", "plain")]
    assert api.lists == 4  # it kept looking until the cloud was done


def test_timeout_names_the_services_still_there(api):
    api.add("istio-system", "istio-eastwestgateway")
    api.add("ingress", "istio-ingressgateway")
    kube = KubeRest(api.kubeconfig, label="c1")
    with pytest.raises(WaitTimeout) as e:
        drain_load_balancers(kube, 0, "c1", sleeper=no_sleep)
    assert e.value.msg == (
        "timed out after 0s waiting for the cloud to delete the load balancers of cluster c1's Services "
        "ingress/istio-ingressgateway, istio-system/istio-eastwestgateway (a Service of type LoadBalancer stays "
        "until the cloud controller removed its load balancer and then its finalizer "
        "service.kubernetes.io/load-balancer-cleanup; still there: ingress/istio-ingressgateway, "
        "istio-system/istio-eastwestgateway)")


def test_a_rerun_waits_for_services_being_deleted_without_deleting_them_again(api):
    api.add("istio-system", "istio-eastwestgateway")
    api.services[("istio-system", "istio-eastwestgateway")]["metadata"]["deletionTimestamp"] = "2026-12-01T15:00:00Z"
    api.cloud_after_lists = 1
    kube = KubeRest(api.kubeconfig, label="c1")
    assert drain_load_balancers(kube, 30, "c1", sleeper=no_sleep) == ["istio-system/istio-eastwestgateway"]
    assert api.deletes == []


def test_a_service_recreated_with_the_same_name_is_not_waited_for(api):
    api.add("istio-system", "istio-eastwestgateway")
    kube = KubeRest(api.kubeconfig, label="c1")
    original = api.handle

    def handle(method, path):
        status, body = original(method, path)
        if method == "DELETE":  # someone re-creates it at once (another uid, no finalizer yet)
            api.services.pop(("istio-system", "istio-eastwestgateway"))
            api.add("istio-system", "istio-eastwestgateway", finalizers=(), uid="new")
        return status, body
    api.handle = handle
    assert drain_load_balancers(kube, 30, "c1", sleeper=no_sleep) == ["istio-system/istio-eastwestgateway"]


def test_nothing_to_do(api):
    api.add("default", "plain", type_="ClusterIP", finalizers=())
    assert drain_load_balancers(KubeRest(api.kubeconfig, label="c1"), 30, "c1", sleeper=no_sleep) == []
    assert api.deletes == []


def test_unreachable_and_forbidden_are_told_apart(api, tmp_path):
    (tmp_path / "closed").mkdir()
    closed = write_kubeconfig(tmp_path / "closed", "http://127.0.0.1:1")
    with pytest.raises(Unreachable) as e:
        drain_load_balancers(KubeRest(closed, label="c1", timeout=5), 30, "c1", sleeper=no_sleep)
    assert "unreachable" in e.value.msg
    api.forbidden = True
    with pytest.raises(MeshfleetError) as e:
        drain_load_balancers(KubeRest(api.kubeconfig, label="c1"), 30, "c1", sleeper=no_sleep)
    assert not isinstance(e.value, Unreachable)
    assert e.value.details["status"] == 403 and "forbidden" in e.value.msg
