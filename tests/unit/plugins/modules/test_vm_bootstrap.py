# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of meshfleet.mesh.vm_bootstrap: the file contents (istioctl's keys, values,
quoting and YAML), the token renewal decision, redaction, and the module against a fake
cluster (idempotence, check mode, diff without the token)."""

from __future__ import absolute_import, division, print_function

import base64
import datetime
import json
import os

import pytest
import yaml

from ansible_collections.meshfleet.mesh.plugins.module_utils import vm_bootstrap as vb
from ansible_collections.meshfleet.mesh.plugins.modules import vm_bootstrap as module
from ansible_collections.meshfleet.mesh.tests.fakes.kubeapi import RecordedApi

MESH = """defaultConfig:
  discoveryAddress: istiod.istio-system.svc:15012
  meshId: mesh1
  proxyMetadata:
    ISTIO_META_DNS_CAPTURE: "true"
defaultProviders:
  metrics:
  - prometheus
enablePrometheusMerge: true
rootNamespace: istio-system
trustDomain: cluster.local
"""

WG = {
    "apiVersion": "networking.istio.io/v1", "kind": "WorkloadGroup",
    "metadata": {"name": "web", "namespace": "vm-web"},
    "spec": {"metadata": {"labels": {"app": "web"}},
             "template": {"serviceAccount": "web", "network": "network1", "ports": {"http": 8080}}},
}

# What `istioctl x workload entry configure -f wg.yaml -o out --clusterID cluster1
# --autoregister` wrote for WG against a demo cluster (Istio 1.30, this repo's build).
ISTIOCTL_CLUSTER_ENV = """CANONICAL_REVISION='latest'
CANONICAL_SERVICE='web'
ISTIO_INBOUND_PORTS='8080'
ISTIO_LOCAL_EXCLUDE_PORTS='22,15090,15021,15020'
ISTIO_METAJSON_LABELS='{"app":"web","service.istio.io/canonical-name":"web","service.istio.io/canonical-revision":"latest"}'
ISTIO_META_AUTO_REGISTER_GROUP='web'
ISTIO_META_CLUSTER_ID='cluster1'
ISTIO_META_DNS_CAPTURE='true'
ISTIO_META_MESH_ID='mesh1'
ISTIO_META_NETWORK='network1'
ISTIO_META_POD_PORTS='[{"name":"http","containerPort":8080,"protocol":""}]'
ISTIO_META_WORKLOAD_NAME='web'
ISTIO_NAMESPACE='vm-web'
ISTIO_SERVICE='web.vm-web'
ISTIO_SERVICE_CIDR='*'
POD_NAMESPACE='vm-web'
SERVICE_ACCOUNT='web'
TRUST_DOMAIN='cluster.local'
"""

ISTIOCTL_MESH_YAML = """defaultConfig:
  discoveryAddress: istiod.istio-system.svc:15012
  meshId: mesh1
  proxyMetadata:
    CANONICAL_REVISION: latest
    CANONICAL_SERVICE: web
    ISTIO_META_AUTO_REGISTER_GROUP: web
    ISTIO_META_CLUSTER_ID: cluster1
    ISTIO_META_DNS_CAPTURE: "true"
    ISTIO_META_MESH_ID: mesh1
    ISTIO_META_NETWORK: network1
    ISTIO_META_POD_PORTS: '[{"name":"http","containerPort":8080,"protocol":""}]'
    ISTIO_META_WORKLOAD_NAME: web
    ISTIO_METAJSON_LABELS: '{"app":"web","service.istio.io/canonical-name":"web","service.istio.io/canonical-revision":"latest"}'
    POD_NAMESPACE: vm-web
    SERVICE_ACCOUNT: web
    TRUST_DOMAIN: cluster.local
"""

NOW = datetime.datetime(2026, 11, 25, 18, 0, 0, tzinfo=datetime.timezone.utc)


def jwt(claims):
    def enc(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
    return "%s.%s.%s" % (enc({"alg": "RS256"}), enc(claims), "c2ln")


def sa_token(exp, ns="vm-web", sa="web", uid="uid-1", aud=("istio-ca",)):
    return jwt({"aud": list(aud), "exp": int(exp.timestamp()), "iat": int(NOW.timestamp()),
                "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": sa, "uid": uid}},
                "sub": "system:serviceaccount:%s:%s" % (ns, sa)})


# --- content: byte for byte what istioctl writes -------------------------------------------------
def test_render_matches_istioctl_byte_for_byte():
    files = vb.render(WG, MESH, "cluster1", "ROOT\n", "10.77.0.1", "TOKEN")
    assert files["cluster.env"] == ISTIOCTL_CLUSTER_ENV
    assert files["mesh.yaml"] == ISTIOCTL_MESH_YAML
    assert files["hosts"] == "10.77.0.1 istiod.istio-system.svc\n"
    assert files["root-cert.pem"] == "ROOT\n"
    assert files["istio-token"] == "TOKEN"


def test_discovery_port_sets_address_and_ca_addr():
    files = vb.render(WG, MESH, "cluster1", "R", "10.77.0.1", "T", discovery_port=20034)
    mesh = yaml.safe_load(files["mesh.yaml"])["defaultConfig"]
    assert mesh["discoveryAddress"] == "istiod.istio-system.svc:20034"
    assert "CA_ADDR='istiod.istio-system.svc:20034'" in files["cluster.env"].splitlines()
    # the default port adds nothing istioctl would not write
    files = vb.render(WG, MESH, "cluster1", "R", "10.77.0.1", "T", discovery_port=15012)
    assert "CA_ADDR" not in files["cluster.env"]


def test_revision_uses_revisioned_istiod():
    files = vb.render(WG, MESH.replace("  discoveryAddress: istiod.istio-system.svc:15012\n", ""),
                      "c1", "R", "10.0.0.1", "T", revision="canary")
    assert files["hosts"] == "10.0.0.1 istiod-canary.istio-system.svc\n"
    assert "CA_ADDR='istiod-canary.istio-system.svc:15012'" in files["cluster.env"]
    assert yaml.safe_load(files["mesh.yaml"])["defaultConfig"]["discoveryAddress"] == \
        "istiod-canary.istio-system.svc:15012"


def test_no_ports_captures_everything_and_no_pod_ports():
    wg = json.loads(json.dumps(WG))
    del wg["spec"]["template"]["ports"]
    env = vb.build_cluster_env(wg, vb.build_proxy_config(wg, MESH, "c1")[0])
    assert env["ISTIO_INBOUND_PORTS"] == "*"
    pc, _td = vb.build_proxy_config(wg, MESH, "c1")
    assert "ISTIO_META_POD_PORTS" not in pc["proxyMetadata"]


def test_status_port_in_exclude_ports():
    pc, _td = vb.build_proxy_config(WG, MESH, "c1")
    pc["statusPort"] = 15999
    assert vb.build_cluster_env(WG, pc)["ISTIO_LOCAL_EXCLUDE_PORTS"] == "22,15090,15021,15999"
    pc["statusPort"] = 15021
    assert vb.build_cluster_env(WG, pc)["ISTIO_LOCAL_EXCLUDE_PORTS"] == "22,15090,15021"


def test_defaults_and_flags():
    wg = {"metadata": {"name": "g", "namespace": "n"}, "spec": {}}
    pc, td = vb.build_proxy_config(wg, MESH, "c9", auto_register=False, dns_capture=False)
    md = pc["proxyMetadata"]
    assert md["SERVICE_ACCOUNT"] == "default"          # istioctl's default service account
    assert md["CANONICAL_SERVICE"] == "g" and md["CANONICAL_REVISION"] == "latest"
    assert "ISTIO_META_AUTO_REGISTER_GROUP" not in md
    assert md["ISTIO_META_DNS_CAPTURE"] == "true"      # from the mesh config's proxyMetadata
    assert md["ISTIO_META_CLUSTER_ID"] == "c9" and td == "cluster.local"


def test_canonical_labels_and_template_labels_override():
    wg = json.loads(json.dumps(WG))
    wg["spec"]["metadata"]["labels"] = {"app": "a", "version": "v2", "app.kubernetes.io/name": "n"}
    wg["spec"]["template"]["labels"] = {"app": "b"}
    md = vb.build_proxy_config(wg, MESH, "c1")[0]["proxyMetadata"]
    assert md["CANONICAL_SERVICE"] == "n"              # app.kubernetes.io/name before app
    assert md["CANONICAL_REVISION"] == "v2"
    labels = json.loads(md["ISTIO_METAJSON_LABELS"])
    assert labels["app"] == "b"


def test_proxy_config_annotation_and_probe():
    wg = json.loads(json.dumps(WG))
    wg["metadata"]["annotations"] = {"proxy.istio.io/config": "proxyMetadata:\n  FOO: bar\nconcurrency: 2\n"}
    wg["spec"]["probe"] = {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5}
    pc, _td = vb.build_proxy_config(wg, MESH, "c1", proxy_metadata={"EXTRA": 1})
    assert pc["concurrency"] == 2
    assert pc["proxyMetadata"]["FOO"] == "bar" and pc["proxyMetadata"]["EXTRA"] == "1"
    assert pc["readinessProbe"]["httpGet"]["path"] == "/ready"
    env = vb.build_cluster_env(wg, pc)
    assert env["FOO"] == "bar"


def test_internal_and_external_ip():
    pc = vb.build_proxy_config(WG, MESH, "c1")[0]
    assert vb.build_cluster_env(WG, pc, internal_ip="10.1.1.1")["ISTIO_SVC_IP"] == "10.1.1.1"
    env = vb.build_cluster_env(WG, pc, external_ip="1.2.3.4")
    assert env["ISTIO_SVC_IP"] == "1.2.3.4" and env["REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION"] == "true"


@pytest.mark.parametrize("value,quoted", [
    ("", "''"), ("web", "'web'"), ("www", "www"), ("a/b.c", "'a/b.c'"), ("it's", "'it'\"'\"'s'"),
    ("22,15090", "'22,15090'"),
])
def test_shell_quote_is_istios(value, quoted):
    assert vb.shell_quote(value) == quoted


def test_go_json_and_yaml_key_order():
    assert vb.go_json({"b": "<&>", "a": 1}) == '{"a":1,"b":"\\u003c\\u0026\\u003e"}'
    keys = list(vb._go_ordered({"ISTIO_METAJSON_LABELS": 1, "ISTIO_META_X": 1, "a10": 1, "a9": 1, "B": 1}))
    assert keys == ["B", "ISTIO_META_X", "ISTIO_METAJSON_LABELS", "a9", "a10"]


def test_missing_name_is_an_error():
    with pytest.raises(vb.MeshfleetError):
        vb.normalize_workload_group({"metadata": {"name": "x"}})


# --- token renewal decision ------------------------------------------------------------------------
def test_token_decision():
    good = sa_token(NOW + datetime.timedelta(hours=1))
    assert vb.token_decision(good, NOW, 1200, "vm-web", "web", "uid-1")[:2] == (False, None)
    cases = [
        (None, "no token yet"),
        ("not-a-jwt", "not a JWT"),
        (jwt({"kubernetes.io": {}}), "does not expire"),
        (sa_token(NOW - datetime.timedelta(seconds=1)), "expired"),
        (sa_token(NOW + datetime.timedelta(seconds=600)), "expires within"),
        (sa_token(NOW + datetime.timedelta(hours=1), sa="other"), "another service account"),
        (sa_token(NOW + datetime.timedelta(hours=1), ns="other"), "another service account"),
        (sa_token(NOW + datetime.timedelta(hours=1), uid="uid-0"), "re-created"),
        (sa_token(NOW + datetime.timedelta(hours=1), aud=("api",)), "audience"),
    ]
    for token, reason in cases:
        renew, why, _exp = vb.token_decision(token, NOW, 1200, "vm-web", "web", "uid-1")
        assert renew and reason in why, (token, why)


def test_redact_token_never_shows_it():
    token = sa_token(NOW + datetime.timedelta(hours=1))
    text = vb.redact_token(token)
    assert token not in text and token.split(".")[1] not in text
    assert "vm-web/web" in text and "2026-11-25T19:00:00Z" in text


# --- the module against a local API server with recorded answers ------------------------------------
class FakeCluster:
    """The API answers VmBootstrapModule reads, served over HTTP by a local server
    (tests/fakes/kubeapi.py); TokenRequests mint a token each, kept in ``tokens``."""

    tokens = []
    requests = []

    @staticmethod
    def routes():
        def cm(name, ns, data):
            return (200, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns},
                          "data": data})

        def token_request(body):
            FakeCluster.requests.append(body)
            exp = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
                seconds=body["spec"]["expirationSeconds"])
            token = sa_token(exp)
            FakeCluster.tokens.append(token)
            return 201, dict(body, status={"token": token, "expirationTimestamp": exp.strftime("%Y-%m-%dT%H:%M:%SZ")})

        return {
            ("GET", "/api/v1/namespaces/istio-system/configmaps/istio"): cm("istio", "istio-system", {"mesh": MESH}),
            ("GET", "/api/v1/namespaces/vm-web/configmaps/istio-ca-root-cert"): cm(
                "istio-ca-root-cert", "vm-web", {"root-cert.pem": "ROOT\n"}),
            ("GET", "/api/v1/namespaces/istio-system/services/istio-eastwestgateway"): (200, {
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": "istio-eastwestgateway"},
                "spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {"ingress": [{"ip": "10.77.0.1"}]}}}),
            ("GET", "/api/v1/namespaces/vm-web/serviceaccounts/web"): (200, {
                "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web", "uid": "uid-1"}}),
            ("POST", "/api/v1/namespaces/vm-web/serviceaccounts/web/token"): token_request,
        }


@pytest.fixture
def fake_cluster(tmp_path):
    FakeCluster.tokens = []
    FakeCluster.requests = []
    with RecordedApi(FakeCluster.routes()) as api:
        kc = tmp_path / "kubeconfig"
        kc.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": api.url}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "users": [{"name": "u", "user": {"token": "admin-token"}}]}))
        yield dict(kubeconfig=str(kc), workload_group=WG, cluster_id="cluster1",
                   dest=str(tmp_path / "state" / "vms" / "vm1" / "bootstrap"))


def test_module_writes_files_then_is_idempotent(run_module, fake_cluster):
    res = run_module(module, fake_cluster, diff=True)
    assert not res.get("failed"), res
    assert res["changed"] and res["token_renewed"] and res["token_reason"] == "no token yet"
    dest = fake_cluster["dest"]
    assert sorted(os.listdir(dest)) == sorted(vb.FILES)
    assert oct(os.stat(dest).st_mode & 0o777) == "0o700"
    assert all(oct(os.stat(os.path.join(dest, f)).st_mode & 0o777) == "0o600" for f in vb.FILES)
    assert open(os.path.join(dest, "cluster.env")).read() == ISTIOCTL_CLUSTER_ENV
    assert open(os.path.join(dest, "hosts")).read() == "10.77.0.1 istiod.istio-system.svc\n"
    token = FakeCluster.tokens[0]
    assert token not in res["_stdout"]                 # neither in the result nor in the diff
    assert "<istio-token for vm-web/web" in json.dumps(res["diff"])
    again = run_module(module, fake_cluster, diff=True)
    assert not again["changed"] and not again["token_renewed"] and len(FakeCluster.tokens) == 1
    assert "diff" not in again or not again["diff"]


def test_module_check_mode_requests_no_token(run_module, fake_cluster):
    res = run_module(module, fake_cluster, check_mode=True, diff=True)
    assert res["changed"] and not res["token_renewed"] and FakeCluster.tokens == []
    assert not os.path.exists(fake_cluster["dest"])


def test_module_renews_a_token_near_expiry(run_module, fake_cluster):
    run_module(module, fake_cluster)
    path = os.path.join(fake_cluster["dest"], "istio-token")
    with open(path, "w") as f:
        f.write(sa_token(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=60)))
    res = run_module(module, fake_cluster)
    assert res["changed"] and res["token_renewed"] and "expires within" in res["token_reason"]
    assert res["changed_files"] == ["istio-token"]
    assert open(path).read() == FakeCluster.tokens[-1]


def test_module_config_change_rewrites_only_that_file(run_module, fake_cluster):
    run_module(module, fake_cluster)
    res = run_module(module, dict(fake_cluster, discovery_port=20034), diff=True)
    assert res["changed_files"] == ["cluster.env", "mesh.yaml"]
    assert res["discovery_address"] == "istiod.istio-system.svc:20034"


def test_module_argument_errors(run_module, fake_cluster):
    res = run_module(module, dict(fake_cluster, token_lifetime=300))
    assert res["failed"] and "at least 600" in res["msg"]
    res = run_module(module, dict(fake_cluster, renew_before=3600))
    assert res["failed"] and "renew_before" in res["msg"]


def test_module_absent(run_module, fake_cluster):
    run_module(module, fake_cluster)
    res = run_module(module, {"dest": fake_cluster["dest"], "state": "absent"})
    assert res["changed"] and not os.path.exists(fake_cluster["dest"])
    assert not run_module(module, {"dest": fake_cluster["dest"], "state": "absent"})["changed"]


def test_module_token_request_asks_for_istio_ca_and_the_lifetime(run_module, fake_cluster):
    res = run_module(module, dict(fake_cluster, token_lifetime=7200))
    assert res["token_renewed"], res
    assert [r["spec"] for r in FakeCluster.requests] == [{"audiences": ["istio-ca"], "expirationSeconds": 7200}]


def test_module_names_a_missing_service_account(run_module, fake_cluster):
    wg = json.loads(json.dumps(WG))
    wg["spec"]["template"]["serviceAccount"] = "nobody"
    res = run_module(module, dict(fake_cluster, workload_group=wg))
    assert res["failed"] and "ServiceAccount vm-web/nobody does not exist" in res["msg"]
