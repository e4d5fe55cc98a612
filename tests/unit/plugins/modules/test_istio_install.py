# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""meshfleet.mesh.istio_install with a stand-in istioctl (a script that prints manifests and
counts its runs) and a local HTTP server holding objects the way an API server does
(GET, server-side apply PATCH with dryRun, status PATCH, a CRD whose kind is served only
after it was applied). The real istioctl and kube-apiserver path runs in the molecule
scenarios and the mesh tests."""

from __future__ import absolute_import, division, print_function

import base64
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from ansible_collections.meshfleet.mesh.plugins.module_utils import istio_install as plan
from ansible_collections.meshfleet.mesh.plugins.modules import istio_install as module

MANIFEST = """\
2026-11-25T00:00:00Z\twarn\tsome istioctl warning on stdout
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gateways.networking.istio.io
spec:
  group: networking.istio.io
  versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}]
---
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
    "/apis/apiextensions.k8s.io/v1": [("customresourcedefinitions", "CustomResourceDefinition", False)],
}
GATEWAY_DISCOVERY = [("gateways", "Gateway", True)]   # served once its CRD exists
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gateways.networking.istio.io"


class Api(BaseHTTPRequestHandler):
    objects = {}
    patches = []   # (path, query) of every PATCH
    version = [0]

    def log_message(self, *args):
        pass

    def reply(self, code, body):
        data = json.dumps(body).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path in DISCOVERY:
            self.reply(200, {"resources": [{"name": n, "kind": k, "namespaced": ns} for n, k, ns in DISCOVERY[self.path]]})
        elif self.path == "/apis/networking.istio.io/v1" and CRD_PATH in Api.objects:
            self.reply(200, {"resources": [{"name": n, "kind": k, "namespaced": ns} for n, k, ns in GATEWAY_DISCOVERY]})
        elif self.path in Api.objects:
            self.reply(200, Api.objects[self.path])
        elif self.is_collection(self.path):
            # a LIST (the drift check asks for metadata only)
            items = [o for p, o in sorted(Api.objects.items()) if p.rsplit("/", 1)[0] == self.path]
            if "PartialObjectMetadataList" in self.headers.get("Accept", ""):
                items = [{"metadata": o.get("metadata") or {}} for o in items]
            self.reply(200, {"items": items})
        else:
            self.reply(404, {"kind": "Status", "message": "not found"})

    @staticmethod
    def is_collection(path):
        served = dict(DISCOVERY)
        if CRD_PATH in Api.objects:
            served["/apis/networking.istio.io/v1"] = GATEWAY_DISCOVERY
        for base, resources in served.items():
            for plural, _kind, namespaced in resources:
                if not namespaced and path == "%s/%s" % (base, plural):
                    return True
                if namespaced and path.startswith(base + "/namespaces/") and path.endswith("/" + plural) \
                        and path.count("/") == base.count("/") + 3:
                    return True
        return False

    def do_PATCH(self):
        path, dummy, query = self.path.partition("?")
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Api.patches.append((path, query))
        if path.endswith("/status"):
            obj = Api.objects.get(path[:-len("/status")])
            if obj is None:
                return self.reply(404, {"kind": "Status", "message": "not found"})
            obj["status"] = body["status"]
            return self.reply(200, obj)
        assert self.headers["Content-Type"] == "application/apply-patch+yaml"
        assert "fieldManager=meshfleet" in query and "force=true" in query
        live = Api.objects.get(path)
        new = json.loads(json.dumps(body))
        new.setdefault("metadata", {})
        same = live is not None and plan.comparable(live) == plan.comparable(new)
        rv = (live or {}).get("metadata", {}).get("resourceVersion")
        if not same:
            Api.version[0] += 1
            rv = str(Api.version[0])
        new["metadata"]["resourceVersion"] = rv
        if "dryRun=All" not in query:
            Api.objects[path] = new
        self.reply(200, new)


@pytest.fixture(scope="module")
def api():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d" % httpd.server_address[1]
    httpd.shutdown()


@pytest.fixture
def env(tmp_path, api):
    Api.objects = {}
    Api.patches = []
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


def writes():
    """Paths written (not dry-run) by server-side apply so far."""
    return [p for p, q in Api.patches if "dryRun" not in q and not p.endswith("/status")]


def cacerts_of(text_of):
    return {"data": dict((n, base64.b64encode(text_of(n).encode()).decode()) for n in plan.CACERTS_FILES)}


def test_parse_manifests_skips_istioctl_warnings():
    objs = plan.parse_manifests(MANIFEST, "x")
    assert [plan.describe(o) for o in objs] == ["CustomResourceDefinition gateways.networking.istio.io",
                                                "Deployment istio-system/istiod", "Service istio-system/istiod"]


def test_parse_manifests_without_objects():
    with pytest.raises(plan.MeshfleetError, match="printed no manifests"):
        plan.parse_manifests("only a warning\n", "istio-operator.yaml")


def test_install_then_no_op_then_repair(run_module, env):
    res = run_module(module, env["args"])
    assert res["rc"] == 0 and res["changed"], res
    assert res["pending"] and res["reasons"] == ["first install"]
    assert res["cacerts"]["current"] is False and "cacerts missing" in res["cacerts"]["reason"]
    assert res["cacerts"]["changed"] is True
    assert env["runs"]() == 1 and res["cached"] == {"istio-operator": False}
    # in order: namespace, plug-in CA, CRD, the rest, the Gateway (after its CRD is served), the record
    assert writes() == [
        "/api/v1/namespaces/istio-system",
        "/api/v1/namespaces/istio-system/secrets/cacerts",
        CRD_PATH,
        "/apis/apps/v1/namespaces/istio-system/deployments/istiod",
        "/api/v1/namespaces/istio-system/services/istiod",
        "/apis/networking.istio.io/v1/namespaces/istio-system/gateways/cross-network-gateway",
        "/api/v1/namespaces/istio-system/configmaps/meshfleet-install"]
    record = Api.objects["/api/v1/namespaces/istio-system/configmaps/meshfleet-install"]
    assert record["data"]["manifests_sha256"] == res["manifests_sha256"]
    assert Api.objects["/api/v1/namespaces/istio-system/secrets/cacerts"]["data"]["ca-key.pem"] == \
        base64.b64encode(b"pem of ca-key.pem\n").decode()
    assert "pem of" not in res["_stdout"] and base64.b64encode(b"pem of ca-key.pem\n").decode() not in res["_stdout"]

    Api.patches = []
    res = run_module(module, env["args"], diff=True)
    assert not res["changed"] and not res["pending"] and res["reasons"] == [] and res["applied"] == []
    assert res["cacerts"] == dict(current=True, changed=False, reason="matches %s" % env["args"]["pki_dir"])
    assert "diff" not in res
    assert env["runs"]() == 1 and res["cached"] == {"istio-operator": True}  # istioctl not run again
    assert Api.patches == []  # a no-op writes nothing

    # someone deleted the Service and relabelled the namespace
    del Api.objects["/api/v1/namespaces/istio-system/services/istiod"]
    ns = Api.objects["/api/v1/namespaces/istio-system"]
    ns["metadata"]["labels"] = {}
    res = run_module(module, env["args"])
    assert res["changed"] and res["pending"]
    assert "missing: Service istio-system/istiod" in res["reasons"]
    assert "Namespace istio-system label topology.istio.io/network=network1" in res["reasons"]
    # the objects that were right are applied but not changed
    assert res["applied"] == ["Namespace istio-system", "Service istio-system/istiod"]
    assert Api.objects["/api/v1/namespaces/istio-system"]["metadata"]["labels"] == {
        "topology.istio.io/network": "network1"}


def test_check_mode_diff_shows_what_the_server_would_change(run_module, env):
    run_module(module, env["args"])
    Api.objects["/apis/apps/v1/namespaces/istio-system/deployments/istiod"]["spec"] = {"replicas": 3}
    args = dict(env["args"], reconcile=True)
    Api.patches = []
    before = json.dumps(Api.objects, sort_keys=True)
    res = run_module(module, args, check_mode=True, diff=True)
    assert res["changed"] and res["applied"] == ["Deployment istio-system/istiod"]
    assert res["diff"]["before"]["Deployment istio-system/istiod"]["spec"] == {"replicas": 3}
    assert "spec" not in res["diff"]["after"]["Deployment istio-system/istiod"]
    assert "resourceVersion" not in res["diff"]["after"]["Deployment istio-system/istiod"]["metadata"]
    assert json.dumps(Api.objects, sort_keys=True) == before  # nothing written
    assert writes() == [] and all("dryRun=All" in q for _p, q in Api.patches)


def test_check_mode_on_a_new_cluster_lists_what_would_be_created(run_module, env):
    res = run_module(module, env["args"], check_mode=True, diff=True)
    assert res["changed"] and res["reasons"] == ["first install"]
    assert res["applied"][:3] == ["Namespace istio-system", "Secret istio-system/cacerts",
                                  "CustomResourceDefinition gateways.networking.istio.io"]
    assert "Gateway istio-system/cross-network-gateway" in res["applied"]
    after = res["diff"]["after"]
    assert after["Secret istio-system/cacerts"]["data"]["ca-key.pem"] == "(24 bytes, hidden)"
    assert after["CustomResourceDefinition gateways.networking.istio.io"]["spec"]["versions"] == ["v1"]
    assert Api.patches == [] and Api.objects == {}
    assert "pem of" not in res["_stdout"]
    assert not os.path.exists(env["args"]["work_dir"])  # no IstioOperator file, no cache


def test_changed_operator_renders_again_and_applies(run_module, env):
    run_module(module, env["args"])
    args = dict(env["args"], operators={"istio-operator": "kind: IstioOperator\nspec: {revision: x}\n"})
    (env["tmp"] / "manifest.yaml").write_text(MANIFEST.replace("name: istiod\n  namespace", "name: istiod-x\n  namespace", 1))
    res = run_module(module, args)
    assert res["pending"] and res["reasons"] == ["rendered objects changed since the last apply"]
    assert env["runs"]() == 2 and res["cached"] == {"istio-operator": False}
    assert res["applied"] == ["Deployment istio-system/istiod-x", "ConfigMap istio-system/meshfleet-install"]
    assert "/apis/apps/v1/namespaces/istio-system/deployments/istiod-x" in Api.objects


def test_reconcile_applies_but_changes_nothing_that_matches(run_module, env):
    run_module(module, env["args"])
    Api.patches = []
    res = run_module(module, dict(env["args"], reconcile=True))
    assert res["pending"] and res["reasons"][0].startswith("reconcile asked for")
    assert not res["changed"] and res["applied"] == []
    assert len(writes()) == 6  # every object and the record sent again; the server kept them


def test_changed_pki_rewrites_cacerts_only(run_module, env):
    run_module(module, env["args"])
    for name in plan.CACERTS_FILES:
        (env["tmp"] / "pki" / name).write_text("rotated %s\n" % name)
    Api.patches = []
    res = run_module(module, env["args"], diff=True)
    assert res["cacerts"]["current"] is False and res["cacerts"]["changed"] is True
    assert res["cacerts"]["reason"] == ("secret istio-system/cacerts differs in ca-cert.pem, ca-key.pem, "
                                        "cert-chain.pem, root-cert.pem")
    assert not res["pending"] and res["applied"] == ["Secret istio-system/cacerts"]
    assert writes() == ["/api/v1/namespaces/istio-system", "/api/v1/namespaces/istio-system/secrets/cacerts"]
    assert "rotated" not in res["_stdout"] and "pem of" not in res["_stdout"]  # no key material, diff included
    assert set(res["diff"]["after"]["Secret istio-system/cacerts"]["data"]) == set(plan.CACERTS_FILES)


def test_a_kind_never_served_fails_clearly(run_module, env, monkeypatch):
    monkeypatch.setattr(plan, "SERVED_TIMEOUT", 1)
    (env["tmp"] / "manifest.yaml").write_text(MANIFEST.split("---\n", 1)[1])  # no CRD in the manifests
    res = run_module(module, env["args"])
    assert res["failed"]
    assert "Gateway istio-system/cross-network-gateway: the API server does not serve kind Gateway" in res["msg"]
    assert "CustomResourceDefinition" in res["msg"]


def test_check_mode_without_a_cluster_writes_nothing(run_module, env):
    args = dict(env["args"], kubeconfig=str(env["tmp"] / "not-created"))
    res = run_module(module, args, check_mode=True)
    assert res["rc"] == 0 and res["pending"] and res["changed"] and not res["cluster_exists"]
    assert res["reasons"] == ["cluster not created yet"]
    assert res["applied"][:2] == ["Namespace istio-system", "Secret istio-system/cacerts"]
    assert res["objects"] == 5 and len(res["applied"]) == 6
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


def test_gateway_override_is_published_once(run_module, env):
    svc_path = "/api/v1/namespaces/istio-system/services/istio-eastwestgateway"
    args = dict(env["args"], gateway=dict(address="10.1.2.3", publish=True))
    res = run_module(module, args)
    assert res["failed"] and "service istio-system/istio-eastwestgateway does not exist" in res["msg"]
    Api.objects[svc_path] = {"kind": "Service", "metadata": {"name": "istio-eastwestgateway"},
                             "status": {"loadBalancer": {}}}
    res = run_module(module, args, check_mode=True, diff=True)
    assert res["changed"] and res["gateway"]["address"] == "10.1.2.3"
    assert res["diff"]["after"]["Service istio-system/istio-eastwestgateway status"] == {"ingress": ["10.1.2.3"]}
    assert Api.objects[svc_path]["status"]["loadBalancer"] == {}
    res = run_module(module, args)
    assert res["changed"] and "Service istio-system/istio-eastwestgateway status" in res["applied"]
    assert Api.objects[svc_path]["status"]["loadBalancer"] == {"ingress": [{"ip": "10.1.2.3"}]}
    res = run_module(module, args)
    assert not res["changed"]
    assert res["gateway"] == dict(address="10.1.2.3", source="inventory override", changed=False)


def test_gateway_address_from_the_load_balancer(run_module, env):
    svc_path = "/api/v1/namespaces/istio-system/services/istio-eastwestgateway"
    run_module(module, env["args"])
    Api.objects[svc_path] = {"kind": "Service", "metadata": {"name": "istio-eastwestgateway"},
                             "status": {"loadBalancer": {"ingress": [{"ip": "10.9.8.7"}]}}}
    res = run_module(module, dict(env["args"], gateway=dict()))
    assert not res["changed"] and res["gateway"]["address"] == "10.9.8.7"
    assert res["gateway"]["source"] == "load balancer ip"
    Api.objects[svc_path]["status"]["loadBalancer"] = {}
    res = run_module(module, dict(env["args"], gateway=dict(wait_timeout=1)))
    assert res["failed"] and "no load balancer address appeared" in res["msg"]
    assert "eastwest_address" in res["msg"]
