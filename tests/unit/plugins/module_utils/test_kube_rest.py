# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""kube_rest.KubeRest against a real local HTTP server that answers like an API server
(discovery, objects, 401/403/404/409 Status bodies). TLS and client certificates are covered
by the integration tests against kwok's real kube-apiserver (remote secrets, the mesh)."""

from __future__ import absolute_import, division, print_function

import json
import threading

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError
from ansible_collections.meshfleet.mesh.plugins.module_utils.kube_rest import KubeRest
from ansible_collections.meshfleet.mesh.tests.fakes.kubeapi import send_json

OBJECTS = {
    "/api/v1": {"resources": [{"name": "namespaces", "kind": "Namespace", "namespaced": False},
                              {"name": "namespaces/status", "kind": "Namespace", "namespaced": False},
                              {"name": "secrets", "kind": "Secret", "namespaced": True}]},
    "/apis/apps/v1": {"resources": [{"name": "deployments", "kind": "Deployment", "namespaced": True}]},
    "/api/v1/namespaces/istio-system": {"kind": "Namespace", "metadata": {"name": "istio-system"}},
    "/apis/apps/v1/namespaces/istio-system/deployments/istiod": {
        "kind": "Deployment", "metadata": {"name": "istiod"}},
}


class Handler(BaseHTTPRequestHandler):
    seen = []

    def log_message(self, *args):
        pass

    def _answer(self, code, body):
        send_json(self, code, body)

    def do_GET(self):
        Handler.seen.append(("GET", self.path, self.headers.get("Authorization")))
        if self.path.startswith("/api/v1/namespaces/forbidden"):
            return self._answer(403, {"kind": "Status", "message": "namespaces \"forbidden\" is forbidden: no"})
        if self.path.startswith("/api/v1/namespaces/unauth"):
            return self._answer(401, {"kind": "Status", "message": "Unauthorized"})
        if self.path in OBJECTS:
            return self._answer(200, OBJECTS[self.path])
        return self._answer(404, {"kind": "Status", "message": "not found", "code": 404})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        Handler.seen.append(("POST", self.path, body))
        return self._answer(409, {"kind": "Status", "message": "secrets \"x\" already exists"})


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % httpd.server_address[1]
    httpd.shutdown()


def kubeconfig(tmp_path, server, user=None, context="c1"):
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": context,
           "clusters": [{"name": "c1", "cluster": {"server": server}}],
           "contexts": [{"name": "c1", "context": {"cluster": "c1", "user": "u1"}}],
           "users": [{"name": "u1", "user": user or {"token": "secret-token"}}]}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_get_sends_the_token_and_decodes_json(tmp_path, server):
    kube = KubeRest(kubeconfig(tmp_path, server), label="c1")
    ns = kube.get("read namespace istio-system", "/api/v1/namespaces/istio-system")
    assert ns["metadata"]["name"] == "istio-system"
    assert Handler.seen[-1] == ("GET", "/api/v1/namespaces/istio-system", "Bearer secret-token")


def test_not_found_value_and_error(tmp_path, server):
    kube = KubeRest(kubeconfig(tmp_path, server), label="c1")
    assert kube.get("read namespace nope", "/api/v1/namespaces/nope", not_found=None) is None
    with pytest.raises(MeshfleetError) as e:
        kube.get("read namespace nope", "/api/v1/namespaces/nope")
    assert "c1 cluster (%s): cannot read namespace nope: not found (HTTP 404)" % server == e.value.msg


def test_forbidden_and_unauthorized_messages(tmp_path, server):
    kube = KubeRest(kubeconfig(tmp_path, server), label="c1")
    with pytest.raises(MeshfleetError) as e:
        kube.get("read namespace forbidden", "/api/v1/namespaces/forbidden")
    assert "forbidden to read namespace forbidden" in e.value.msg and e.value.details["status"] == 403
    with pytest.raises(MeshfleetError) as e:
        kube.get("read namespace unauth", "/api/v1/namespaces/unauth")
    assert "rejected the credentials of kubeconfig" in e.value.msg and "401" in e.value.msg


def test_typed_call_posts_the_body_and_never_echoes_it(tmp_path, server):
    kube = KubeRest(kubeconfig(tmp_path, server), label="target")
    body = {"metadata": {"name": "x"}, "data": {"token": "c2VjcmV0"}}
    with pytest.raises(MeshfleetError) as e:
        kube.call("create secret ns/x", kube.core.create_namespaced_secret, "ns", body)
    assert Handler.seen[-1] == ("POST", "/api/v1/namespaces/ns/secrets", body)
    assert "already exists (HTTP 409)" in e.value.msg and "c2VjcmV0" not in e.value.msg


def test_object_paths_from_discovery(tmp_path, server):
    kube = KubeRest(kubeconfig(tmp_path, server), label="c1")
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "istiod", "namespace": "istio-system"}}
    assert kube.object_path(dep) == "/apis/apps/v1/namespaces/istio-system/deployments/istiod"
    assert kube.object_path({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}) == \
        "/api/v1/namespaces/a"
    assert kube.read_object(dep)["metadata"]["name"] == "istiod"
    # a kind the cluster does not serve (a CRD not installed yet) reads as absent
    gw = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "g", "namespace": "x"}}
    assert kube.object_path(gw) is None and kube.read_object(gw) is None


def test_unreachable_server_is_named(tmp_path):
    kube = KubeRest(kubeconfig(tmp_path, "http://127.0.0.1:1"), label="source")
    with pytest.raises(MeshfleetError) as e:
        kube.get("read namespace a", "/api/v1/namespaces/a")
    assert e.value.msg.startswith("source cluster (http://127.0.0.1:1) is unreachable while trying to read namespace a")


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p.write_text("- just\n- a list\n"), "no context given and no current-context"),
    (lambda p: p.write_text(p.read_text().replace("current-context: c1", "current-context: other")),
     "no context named 'other'"),
    (lambda p: p.write_text(p.read_text().replace("server: ", "serverx: ")), "has no server"),
])
def test_bad_kubeconfigs(tmp_path, server, mutate, message):
    path = kubeconfig(tmp_path, server)
    mutate(tmp_path / "kubeconfig")
    with pytest.raises(MeshfleetError) as e:
        KubeRest(path, label="c1")
    assert message in e.value.msg and path in e.value.msg


def test_missing_kubeconfig(tmp_path):
    with pytest.raises(MeshfleetError) as e:
        KubeRest(str(tmp_path / "nope"), label="target", option="target_kubeconfig")
    assert "target kubeconfig %s does not exist" % (tmp_path / "nope") in e.value.msg


def test_exec_plugin_token(tmp_path, server):
    plugin = tmp_path / "plugin.sh"
    plugin.write_text('#!/bin/sh\necho \'{"apiVersion":"client.authentication.k8s.io/v1beta1",'
                      '"kind":"ExecCredential","status":{"token":"from-plugin"}}\'\n')
    plugin.chmod(0o700)
    kube = KubeRest(kubeconfig(tmp_path, server, user={"exec": {"command": str(plugin)}}), label="c1")
    kube.get("read namespace istio-system", "/api/v1/namespaces/istio-system")
    assert Handler.seen[-1][2] == "Bearer from-plugin"


def test_failing_exec_plugin_is_named(tmp_path):
    plugin = tmp_path / "plugin.sh"
    plugin.write_text("#!/bin/sh\necho 'no credentials: run login first' >&2\nexit 3\n")
    plugin.chmod(0o700)
    kube = KubeRest(kubeconfig(tmp_path, "https://127.0.0.1:1", user={"exec": {"command": str(plugin)}}), label="c1")
    with pytest.raises(MeshfleetError) as e:
        kube.get("read namespace a", "/api/v1/namespaces/a")
    assert "credential plugin %s failed (rc=3): no credentials: run login first" % plugin in e.value.msg
