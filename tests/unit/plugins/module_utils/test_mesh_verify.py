# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""meshfleet.mesh.mesh_verify against local servers: each cluster is a local API server
answering with real objects (istio-ca-root-cert, cacerts made with module_utils/pki.py), each
istiod a local server answering its debug API (/debug/clusterz, endpointShardz, networkz) the
way Istio 1.30 does. The module runs for real (its own HTTP client, its own certificate
checks); what it reports is asserted, and the objects it creates are read from the servers'
request logs."""

from __future__ import absolute_import, division, print_function

import base64

import pytest
import yaml

from ansible_collections.meshfleet.mesh.plugins.module_utils import pki
from ansible_collections.meshfleet.mesh.plugins.modules import mesh_verify as module
from ansible_collections.meshfleet.mesh.tests.fakes.kubeapi import RecordedApi

NS = "istio-system"
PROBE_NS = "meshfleet-verify"
EASTWEST = {"c1": "172.18.0.11", "c2": "172.18.0.12"}
NETWORK = {"c1": "network1", "c2": "network2"}


def pem(cert):
    return pki.cert_pem(cert).decode()


def b64(text):
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def created(body):
    return 201, dict(body, metadata=dict(body.get("metadata") or {}, uid="0b6d8f52-1", resourceVersion="1"))


class Mesh:
    """Two clusters on two networks, a root, per-cluster intermediates, and their servers."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.root_key = pki.generate_key("ecdsa-p256")
        self.root = pki.build_root_cert(self.root_key)
        self.kube = {}
        self.istiod = {}
        self.cacerts = {}
        for name in ("c1", "c2"):
            key = pki.generate_key("ecdsa-p256")
            self.cacerts[name] = (pki.build_intermediate_cert(key, name, self.root, self.root_key), key)
        (tmp_path / "root-bundle.pem").write_text(pem(self.root))

    def cluster_routes(self, name, root_pem=None, ca=None):
        ca_cert, ca_key = ca or self.cacerts[name]
        root_pem = root_pem or pem(self.root)
        return {
            ("GET", "/api/v1/namespaces/%s/configmaps/istio-ca-root-cert" % NS): (200, {
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio-ca-root-cert", "namespace": NS},
                "data": {"root-cert.pem": root_pem}}),
            ("GET", "/api/v1/namespaces/%s/secrets/cacerts" % NS): (200, {
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "namespace": NS},
                "data": {"ca-cert.pem": b64(pem(ca_cert)), "ca-key.pem": b64(pki.key_pem(ca_key)),
                         "root-cert.pem": b64(pem(self.root)),
                         "cert-chain.pem": b64(pem(ca_cert) + pem(self.root))}}),
            # the API server answers a create with the object it stored
            ("POST", "/api/v1/namespaces"): created,
            ("POST", "/api/v1/namespaces/%s/services" % PROBE_NS): created,
            ("POST", "/apis/apps/v1/namespaces/%s/deployments" % PROBE_NS): created,
            ("DELETE", "/api/v1/namespaces/%s" % PROBE_NS): (200, {
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PROBE_NS},
                "status": {"phase": "Terminating"}}),
        }

    @staticmethod
    def istiod_routes(name, synced=True, endpoint_network=None, gateway=None):
        other = "c2" if name == "c1" else "c1"
        host = "probe-%s.%s.svc.cluster.local" % (other, PROBE_NS)
        return {
            ("GET", "/debug/clusterz"): (200, [
                {"id": name, "secretName": "", "syncStatus": "synced"},
                {"id": other, "secretName": "istio-system/istio-remote-secret-" + other,
                 "syncStatus": "synced" if synced else "syncing"}]),
            ("GET", "/debug/endpointShardz"): (200, {host: {PROBE_NS: {"Shards": {"Kubernetes/" + other: [
                {"Labels": {"app": "probe-" + other}, "Addresses": ["10.244.0.7"],
                 "Network": endpoint_network or NETWORK[other]}]}}}}),
            ("GET", "/debug/networkz"): (200, [
                {"Network": NETWORK[other], "Cluster": other, "Addr": gateway or EASTWEST[other], "Port": 15443}]),
        }

    def kubeconfig(self, name, url):
        path = self.tmp / ("%s.kubeconfig" % name)
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": name,
            "clusters": [{"name": name, "cluster": {"server": url}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": "admin"}}],
            "users": [{"name": "admin", "user": {"token": "admin-" + name}}]}))
        return str(path)

    def args(self, **kw):
        clusters = []
        for name in ("c1", "c2"):
            clusters.append(dict(name=name, kubeconfig=self.kubeconfig(name, self.kube[name].url),
                                 network=NETWORK[name], role="primary", eastwest_address=EASTWEST[name],
                                 istiod_url=self.istiod[name].url))
        return dict(dict(clusters=clusters, root_bundle_file=str(self.tmp / "root-bundle.pem"), wait_timeout=3), **kw)


@pytest.fixture
def mesh(tmp_path):
    m = Mesh(tmp_path)
    servers = []
    for name in ("c1", "c2"):
        m.kube[name] = RecordedApi(m.cluster_routes(name)).start()
        m.istiod[name] = RecordedApi(m.istiod_routes(name)).start()
        servers += [m.kube[name], m.istiod[name]]
    try:
        yield m
    finally:
        for s in servers:
            s.stop()


def test_a_healthy_mesh_passes_every_check(run_module, mesh):
    res = run_module(module, mesh.args())
    assert not res.get("failed"), res.get("msg")
    report = res["report"]
    assert res["changed"] is False and report["failures"] == []
    assert report["roots"] == [pki.fingerprint(mesh.root)]
    for name in ("c1", "c2"):
        entry = report["clusters"][name]
        assert entry["root_cert_fingerprints"] == [pki.fingerprint(mesh.root)]
        assert entry["intermediate_fingerprint"] == pki.fingerprint(mesh.cacerts[name][0])
        assert "ok: %s: istio-ca-root-cert holds the mesh root" % name in report["checks"]
    assert "ok: c1: istiod reports c2 synced" in report["checks"]
    probes = dict((p["istiod_of"], p) for p in report["probes"])
    assert probes["c1"]["in_cluster"] == "c2" and probes["c1"]["gateway"] == ["172.18.0.12:15443"]
    assert probes["c2"]["endpoints"] == [{"address": "10.244.0.7", "network": "network1"}]
    assert res["summary"] == "%d checks passed" % len(report["checks"])


def test_probe_objects_are_created_then_deleted(run_module, mesh):
    res = run_module(module, mesh.args())
    assert not res.get("failed"), res.get("msg")
    for name in ("c1", "c2"):
        posts = dict((r[1], r[3]) for r in mesh.kube[name].requests("POST"))
        assert posts["/api/v1/namespaces"]["metadata"]["name"] == PROBE_NS
        svc = posts["/api/v1/namespaces/%s/services" % PROBE_NS]
        assert svc["spec"]["selector"] == {"app": "probe-" + name}
        assert svc["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": 8080}]
        dep = posts["/apis/apps/v1/namespaces/%s/deployments" % PROBE_NS]
        assert dep["spec"]["template"]["metadata"]["labels"]["security.istio.io/tlsMode"] == "istio"
        assert [r[1] for r in mesh.kube[name].requests("DELETE")] == ["/api/v1/namespaces/" + PROBE_NS]
        # every request carried the cluster's own credential
        assert all(("Authorization", "Bearer admin-" + name) in r[2] for r in mesh.kube[name].seen)


def test_keep_probe_and_check_mode_leave_the_probe_alone(run_module, mesh):
    assert not run_module(module, mesh.args(keep_probe=True)).get("failed")
    assert not mesh.kube["c1"].requests("DELETE") and mesh.kube["c1"].requests("POST")
    for name in ("c1", "c2"):
        mesh.kube[name].seen[:] = []
    res = run_module(module, mesh.args(), check_mode=True)
    assert not res.get("failed") and "probes" not in res["report"]
    assert not any(s.requests("POST") or s.requests("DELETE") for s in mesh.kube.values())


def test_a_foreign_root_in_the_config_map_fails_naming_the_cluster(run_module, mesh):
    other_key = pki.generate_key("ecdsa-p256")
    other = pki.build_root_cert(other_key, organization="Other")
    mesh.kube["c2"].routes.update(mesh.cluster_routes("c2", root_pem=pem(other)))
    res = run_module(module, mesh.args(probe=False))
    assert res["failed"] and "mesh verification failed" in res["msg"]
    assert "c2: istio-ca-root-cert holds %s, the mesh roots are %s" % (
        [pki.fingerprint(other)], [pki.fingerprint(mesh.root)]) in res["msg"]
    assert "c1:" not in res["msg"]


def test_an_intermediate_from_another_root_fails(run_module, mesh):
    other_key = pki.generate_key("ecdsa-p256")
    other = pki.build_root_cert(other_key, organization="Other")
    key = pki.generate_key("ecdsa-p256")
    stray = pki.build_intermediate_cert(key, "c1", other, other_key)
    mesh.kube["c1"].routes.update(mesh.cluster_routes("c1", ca=(stray, key)))
    res = run_module(module, mesh.args(probe=False))
    assert res["failed"] and "c1: its intermediate CA" in res["msg"] and "is not signed by a mesh root" in res["msg"]


def test_missing_objects_are_named(run_module, mesh):
    del mesh.kube["c1"].routes[("GET", "/api/v1/namespaces/%s/secrets/cacerts" % NS)]
    del mesh.kube["c2"].routes[("GET", "/api/v1/namespaces/%s/configmaps/istio-ca-root-cert" % NS)]
    res = run_module(module, mesh.args(probe=False, wait_timeout=1))
    assert "c1: no cacerts secret in istio-system" in res["msg"]
    assert "c2: no istio-ca-root-cert ConfigMap in istio-system (is istiod running for it?)" in res["msg"]


def test_an_unsynced_remote_cluster_fails(run_module, mesh):
    mesh.istiod["c1"].routes.update(mesh.istiod_routes("c1", synced=False))
    res = run_module(module, mesh.args(probe=False, wait_timeout=1))
    assert res["failed"] and "c1: istiod reports" in res["msg"] and "expected ['c2'] synced" in res["msg"]
    assert res["report"]["clusters"]["c1"]["clusterz"] == {"c1": "synced", "c2": "syncing"}


def test_a_wrong_gateway_address_fails(run_module, mesh):
    mesh.istiod["c1"].routes.update(mesh.istiod_routes("c1", gateway="10.9.9.9"))
    res = run_module(module, mesh.args())
    assert res["failed"]
    assert ("c1's istiod sends network2 traffic to ['10.9.9.9:15443'], expected c2's east-west address "
            "172.18.0.12") in res["msg"]


def test_endpoints_without_their_network_fail(run_module, mesh):
    mesh.istiod["c2"].routes.update(mesh.istiod_routes("c2", endpoint_network="network9"))
    res = run_module(module, mesh.args())
    assert res["failed"] and "c2: endpoints of probe-c1.meshfleet-verify.svc.cluster.local carry networks ['network9'], expected network1" \
        in res["msg"]


def test_an_unreachable_cluster_is_named(run_module, mesh):
    mesh.kube["c2"].stop()
    res = run_module(module, mesh.args(probe=False))
    assert res["failed"] and res["msg"].startswith("c2 cluster (http://127.0.0.1:")
    assert "is unreachable while trying to read configmap istio-system/istio-ca-root-cert" in res["msg"]
