# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""meshfleet.mesh.istio_plan with a stand-in istioctl (a script that prints manifests and
counts its runs) and a local HTTP server holding objects the way an API server does. The
real istioctl and kube-apiserver path runs in the molecule scenarios and the mesh tests."""

from __future__ import absolute_import, division, print_function

import base64
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from ansible_collections.meshfleet.mesh.plugins.module_utils import istio_plan as plan
from ansible_collections.meshfleet.mesh.plugins.modules import istio_plan as module

MANIFEST = """\
2026-11-25T00:00:00Z\twarn\tsome istioctl warning on stdout
apiVersion: apps/v1
kind: Deployment
metadata:
  name: istiod
  namespace: istio-system
---
apiVersion: v1
kind: Service
metadata:
  name: istiod
  namespace: istio-system
  labels: {app: istiod}
"""

NAMESPACE = {"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": "istio-system", "labels": {"topology.istio.io/network": "network1"}}}
GATEWAY = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
           "metadata": {"name": "cross-network-gateway", "namespace": "istio-system"}, "spec": {}}

DISCOVERY = {
    "/api/v1": [("namespaces", "Namespace", False), ("services", "Service", True),
                ("configmaps", "ConfigMap", True), ("secrets", "Secret", True)],
    "/apis/apps/v1": [("deployments", "Deployment", True)],
    "/apis/networking.istio.io/v1": [("gateways", "Gateway", True)],
}


class Api(BaseHTTPRequestHandler):
    objects = {}

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path in DISCOVERY:
            body = {"resources": [{"name": n, "kind": k, "namespaced": ns} for n, k, ns in DISCOVERY[self.path]]}
            code = 200
        elif self.path in Api.objects:
            body, code = Api.objects[self.path], 200
        else:
            body, code = {"kind": "Status", "message": "not found"}, 404
        data = json.dumps(body).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def api():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d" % httpd.server_address[1]
    httpd.shutdown()


@pytest.fixture
def env(tmp_path, api):
    Api.objects = {}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    runs = tmp_path / "istioctl.runs"
    istioctl = bin_dir / "istioctl"
    (tmp_path / "manifest.yaml").write_text(MANIFEST)
    istioctl.write_text("#!/bin/sh\necho \"$@\" >> %s\ncat %s\n" % (runs, tmp_path / "manifest.yaml"))
    istioctl.chmod(0o755)
    kc = tmp_path / "kubeconfig"
    kc.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": api}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    pki = tmp_path / "pki"
    pki.mkdir()
    for name in plan.CACERTS_FILES:
        (pki / name).write_text("pem of %s\n" % name)
    args = dict(kubeconfig=str(kc), work_dir=str(tmp_path / "istio"), tools_bin=str(bin_dir), pki_dir=str(pki),
                operators={"istio-operator": "kind: IstioOperator\nspec: {}\n"},
                namespace_object=NAMESPACE, objects=[GATEWAY])

    def istioctl_runs():
        return len(runs.read_text().splitlines()) if runs.exists() else 0

    return dict(args=args, runs=istioctl_runs, tmp=tmp_path)


def install(result):
    """Store every object of the batches the way an apply would."""
    for batch in result["batches"]:
        for obj in batch:
            meta = obj["metadata"]
            ns = meta.get("namespace")
            kind = obj["kind"]
            base = "/api/v1" if obj["apiVersion"] == "v1" else "/apis/%s" % obj["apiVersion"]
            plural = {"Namespace": "namespaces", "Service": "services", "ConfigMap": "configmaps",
                      "Deployment": "deployments", "Gateway": "gateways"}[kind]
            path = "%s%s/%s/%s" % (base, "/namespaces/%s" % ns if ns else "", plural, meta["name"])
            Api.objects[path] = obj


def test_parse_manifests_skips_istioctl_warnings():
    objs = plan.parse_manifests(MANIFEST, "x")
    assert [plan.describe(o) for o in objs] == ["Deployment istio-system/istiod", "Service istio-system/istiod"]


def test_parse_manifests_without_objects():
    with pytest.raises(plan.MeshfleetError, match="printed no manifests"):
        plan.parse_manifests("only a warning\n", "istio-operator.yaml")


def test_first_install_then_current_then_drift(run_module, env):
    res = run_module(module, env["args"])
    assert res["rc"] == 0 and not res["changed"]
    assert res["pending"] and res["reasons"] == ["first install"]
    kinds = [[o["kind"] for o in batch] for batch in res["batches"]]
    assert kinds == [["Namespace", "Deployment", "Service"], ["Gateway", "ConfigMap"]]
    assert res["batches"][1][-1]["data"]["manifests_sha256"] == res["manifests_sha256"]
    assert res["cacerts"]["current"] is False and "cacerts missing" in res["cacerts"]["reason"]
    assert env["runs"]() == 1 and res["cached"] == {"istio-operator": False}

    install(res)
    Api.objects["/api/v1/namespaces/istio-system/secrets/cacerts"] = {"data": dict(
        (n, base64.b64encode(("pem of %s\n" % n).encode()).decode()) for n in plan.CACERTS_FILES)}
    res = run_module(module, env["args"])
    assert not res["pending"] and res["batches"] == [] and res["reasons"] == []
    assert res["cacerts"]["current"] is True
    assert env["runs"]() == 1 and res["cached"] == {"istio-operator": True}  # istioctl not run again

    # someone deleted the Service and relabelled the namespace
    del Api.objects["/api/v1/namespaces/istio-system/services/istiod"]
    Api.objects["/api/v1/namespaces/istio-system"] = dict(NAMESPACE, metadata={"name": "istio-system"})
    res = run_module(module, env["args"])
    assert res["pending"]
    assert "missing: Service istio-system/istiod" in res["reasons"]
    assert "Namespace istio-system label topology.istio.io/network=network1" in res["reasons"]


def test_changed_operator_renders_again_and_is_pending(run_module, env):
    res = run_module(module, env["args"])
    install(res)
    args = dict(env["args"], operators={"istio-operator": "kind: IstioOperator\nspec: {revision: x}\n"})
    (env["tmp"] / "manifest.yaml").write_text(MANIFEST.replace("name: istiod\n  namespace", "name: istiod-x\n  namespace", 1))
    res = run_module(module, args)
    assert res["pending"] and res["reasons"] == ["rendered objects changed since the last apply"]
    assert env["runs"]() == 2 and res["cached"] == {"istio-operator": False}


def test_reconcile_is_always_pending(run_module, env):
    install(run_module(module, env["args"]))
    res = run_module(module, dict(env["args"], reconcile=True))
    assert res["pending"] and res["reasons"][0].startswith("reconcile asked for")


def test_changed_pki_makes_cacerts_stale(run_module, env):
    Api.objects["/api/v1/namespaces/istio-system/secrets/cacerts"] = {"data": dict(
        (n, base64.b64encode(b"old").decode()) for n in plan.CACERTS_FILES)}
    res = run_module(module, env["args"])
    assert res["cacerts"]["current"] is False
    assert res["cacerts"]["reason"] == ("secret istio-system/cacerts differs in ca-cert.pem, ca-key.pem, "
                                        "cert-chain.pem, root-cert.pem")
    assert "pem of" not in res["_stdout"]  # no key material in the result


def test_check_mode_without_a_cluster_writes_nothing(run_module, env):
    args = dict(env["args"], kubeconfig=str(env["tmp"] / "not-created"))
    res = run_module(module, args, check_mode=True)
    assert res["rc"] == 0 and res["pending"] and not res["cluster_exists"]
    assert res["reasons"] == ["cluster not created yet"]
    assert not os.path.exists(env["args"]["work_dir"])  # no IstioOperator file, no cache


def test_missing_cluster_outside_check_mode_fails(run_module, env):
    res = run_module(module, dict(env["args"], kubeconfig=str(env["tmp"] / "not-created")))
    assert res["failed"] and "create the cluster first" in res["msg"]


def test_missing_istioctl_fails_clearly(run_module, env):
    res = run_module(module, dict(env["args"], tools_bin=str(env["tmp"] / "nowhere")))
    assert res["failed"] and "istioctl not found at" in res["msg"] and "build-tools.sh" in res["msg"]


def test_failing_istioctl_shows_its_error(run_module, env):
    istioctl = os.path.join(env["args"]["tools_bin"], "istioctl")
    with open(istioctl, "w") as f:
        f.write("#!/bin/sh\necho 'Error: unknown field \"spek\"' >&2\nexit 1\n")
    res = run_module(module, env["args"])
    assert res["failed"] and "istioctl manifest generate failed for istio-operator (rc=1)" in res["msg"]
    assert 'unknown field "spek"' in res["msg"]


def test_bad_namespace_object(run_module, env):
    res = run_module(module, dict(env["args"], namespace_object={"kind": "Secret"}))
    assert res["failed"] and "namespace_object must be a Namespace" in res["msg"]


def test_gateway_is_current_only_when_the_override_is_published(run_module, env):
    svc_path = "/api/v1/namespaces/istio-system/services/istio-eastwestgateway"
    args = dict(env["args"], gateway=dict(address="10.1.2.3", publish=True))
    res = run_module(module, args)
    assert res["gateway"] == dict(current=False, address="10.1.2.3", source="no gateway service yet")
    Api.objects[svc_path] = {"kind": "Service", "status": {"loadBalancer": {}}}
    assert run_module(module, args)["gateway"]["current"] is False
    Api.objects[svc_path]["status"]["loadBalancer"] = {"ingress": [{"ip": "10.1.2.3"}]}
    assert run_module(module, args)["gateway"] == dict(current=True, address="10.1.2.3",
                                                       source="inventory override")
    # no override: a load balancer IP is current, nothing yet means gateway_address must wait
    args = dict(env["args"], gateway=dict())
    assert run_module(module, args)["gateway"]["address"] == "10.1.2.3"
    Api.objects[svc_path]["status"]["loadBalancer"] = {}
    assert run_module(module, args)["gateway"]["current"] is False
