# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of meshfleet.mesh.remote_secret: the logic that needs no cluster.

Renewal decision, the kubeconfig istiod gets, redaction, JWT claims, RBAC coverage, and
the module's argument checks (a kubeconfig pointing at a closed port stands in for an
unreachable cluster). The API calls are covered by tests/integration/test_remote_secret.py.
"""

from __future__ import absolute_import, division, print_function

import base64
import datetime
import json

import pytest
import yaml

from ansible_collections.meshfleet.mesh.plugins.module_utils import pki
from ansible_collections.meshfleet.mesh.plugins.module_utils import remote_secret as rs
from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError
from ansible_collections.meshfleet.mesh.plugins.modules import remote_secret as module

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
DAY = 86400
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUZmFrZQ==\n-----END CERTIFICATE-----\n"
CA = rs.ca_b64(CA_PEM)
SERVER = "https://10.0.0.1:6443"
SA = ("istio-system", "istio-reader-service-account", "uid-1")


def b64url(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def make_jwt(exp=None, ns="istio-system", name="istio-reader-service-account", uid="uid-1", legacy=False):
    if legacy:
        claims = {"iss": "kubernetes/serviceaccount", "kubernetes.io/serviceaccount/namespace": ns,
                  "kubernetes.io/serviceaccount/service-account.name": name,
                  "kubernetes.io/serviceaccount/service-account.uid": uid}
    else:
        claims = {"aud": ["https://kubernetes.default.svc"], "iat": 1, "iss": "https://kubernetes.default.svc",
                  "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": name, "uid": uid}},
                  "sub": "system:serviceaccount:%s:%s" % (ns, name)}
    if exp is not None:
        claims["exp"] = int(exp.timestamp())
    return "%s.%s.c2lnbmF0dXJl" % (b64url({"alg": "RS256", "kid": "k"}), b64url(claims))


def make_secret(token, cluster="c1", server=SERVER, ca=CA, expires=None, tls=None, labels=None,
                annotations=None, data=None):
    kc = rs.remote_kubeconfig(cluster, server, ca, token, tls)
    ann = {rs.ANNOTATION_CLUSTER: cluster, rs.ANNOTATION_SERVER: server}
    if expires is not None:
        ann[rs.ANNOTATION_EXPIRES] = rs.rfc3339(expires)
    ann.update(annotations or {})
    lab = {rs.LABEL_MULTICLUSTER: "true", rs.LABEL_MANAGED_BY: "meshfleet"}
    lab.update(labels or {})
    return {"metadata": {"name": rs.secret_name(cluster), "namespace": "istio-system", "labels": lab,
                         "annotations": ann, "resourceVersion": "42"},
            "type": "Opaque",
            "data": data if data is not None else {
                cluster: base64.b64encode(rs.dump(kc).encode()).decode()}}


def reasons_for(secret, server=SERVER, ca=CA, tls=None, sa=SA, now=NOW, renew_before=10 * DAY):
    current = rs.inspect_secret(secret, "c1") if secret is not None else None
    return rs.renewal_reasons(current, server, ca, tls, sa, now, renew_before)


# --- JWT and time ---------------------------------------------------------------------------
def test_jwt_exp_and_service_account_claims():
    exp = NOW + datetime.timedelta(days=30)
    claims = rs.jwt_claims(make_jwt(exp))
    assert rs.claims_expiry(claims) == exp
    assert rs.claims_service_account(claims) == SA


def test_legacy_token_has_no_expiry_but_names_its_service_account():
    claims = rs.jwt_claims(make_jwt(legacy=True))
    assert rs.claims_expiry(claims) is None
    assert rs.claims_service_account(claims) == SA


@pytest.mark.parametrize("token", [None, "", "opaque-token", "a.b", "a.!!!.c",
                                   "a.%s.c" % base64.urlsafe_b64encode(b"[1]").decode()])
def test_not_a_jwt(token):
    assert rs.jwt_claims(token) is None


@pytest.mark.parametrize("exp", ["soon", True, None])
def test_exp_claim_must_be_a_number(exp):
    assert rs.claims_expiry({"exp": exp}) is None


@pytest.mark.parametrize("text,expected", [
    ("2026-11-25T12:00:00Z", NOW),
    ("2026-11-25T13:00:00+01:00", NOW),
    ("2026-11-25T12:00:00.123456Z", NOW.replace(microsecond=123456)),
    ("tomorrow", None), ("", None), (None, None),
])
def test_parse_rfc3339(text, expected):
    assert rs.parse_rfc3339(text) == expected


def test_rfc3339_is_utc_with_z():
    assert rs.rfc3339(NOW) == "2026-11-25T12:00:00Z"
    assert rs.rfc3339(datetime.datetime(2026, 11, 25, 12)) == "2026-11-25T12:00:00Z"


# --- names -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["c1", "cluster-1", "a" * 63])
def test_valid_cluster_names(name):
    rs.check_cluster_name(name)
    assert rs.secret_name(name) == "istio-remote-secret-" + name


@pytest.mark.parametrize("name", ["", "C1", "-c1", "c1-", "c_1", "c.1", "a" * 64])
def test_invalid_cluster_names(name):
    with pytest.raises(MeshfleetError, match="DNS-1123"):
        rs.check_cluster_name(name)


# --- the kubeconfig istiod reads -------------------------------------------------------------
def test_remote_kubeconfig_shape_matches_istioctl():
    kc = rs.remote_kubeconfig("c1", SERVER, CA, "tok")
    assert kc == {
        "apiVersion": "v1", "kind": "Config", "current-context": "c1",
        "clusters": [{"name": "c1", "cluster": {"server": SERVER, "certificate-authority-data": CA}}],
        "contexts": [{"name": "c1", "context": {"cluster": "c1", "user": "c1"}}],
        "users": [{"name": "c1", "user": {"token": "tok"}}],
    }
    assert base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"]).decode() == CA_PEM


def test_remote_kubeconfig_tls_server_name():
    kc = rs.remote_kubeconfig("c1", SERVER, CA, "tok", tls_server_name="kubernetes.default.svc")
    assert kc["clusters"][0]["cluster"]["tls-server-name"] == "kubernetes.default.svc"


def test_parse_remote_kubeconfig_round_trip():
    kc = rs.remote_kubeconfig("c1", SERVER, CA, "tok", "api.internal")
    fields, problem = rs.parse_remote_kubeconfig(rs.dump(kc), "c1")
    assert problem is None
    assert (fields["server"], fields["ca"], fields["token"], fields["tls_server_name"]) == (
        SERVER, CA, "tok", "api.internal")


@pytest.mark.parametrize("mutate,problem", [
    (lambda kc: kc.update({"current-context": "other"}), "current context"),
    (lambda kc: kc["users"][0]["user"].update({"exec": {"command": "x"}}), "more than a token (exec)"),
    (lambda kc: kc["users"][0]["user"].update({"tokenFile": "/t"}), "more than a token (tokenFile)"),
    (lambda kc: kc["users"][0]["user"].pop("token"), "no token"),
    (lambda kc: kc["clusters"][0]["cluster"].pop("server"), "no server"),
    (lambda kc: kc.update({"users": []}), "no cluster or user"),
])
def test_parse_remote_kubeconfig_problems(mutate, problem):
    kc = rs.remote_kubeconfig("c1", SERVER, CA, "tok")
    mutate(kc)
    fields, why = rs.parse_remote_kubeconfig(rs.dump(kc), "c1")
    assert fields is None and problem in why


@pytest.mark.parametrize("text", ["", "::: not yaml :::\n\t- [", "- a list\n"])
def test_parse_remote_kubeconfig_garbage(text):
    assert rs.parse_remote_kubeconfig(text, "c1")[0] is None


def test_same_ca_ignores_whitespace():
    assert rs.same_ca(CA, base64.b64encode(("  " + CA_PEM.replace("\n", "\r\n") + "\n\n").encode()).decode())
    assert not rs.same_ca(CA, rs.ca_b64(CA_PEM.replace("ZmFrZQ", "b3RoZXI")))


# --- renewal decision ---------------------------------------------------------------------------
def test_missing_secret_is_created():
    assert reasons_for(None) == ["created"]


def test_fresh_token_is_kept():
    exp = NOW + datetime.timedelta(days=25)
    assert reasons_for(make_secret(make_jwt(exp), expires=exp)) == []


def test_expiring_token_is_renewed():
    exp = NOW + datetime.timedelta(days=9)
    assert reasons_for(make_secret(make_jwt(exp), expires=exp)) == ["expiring"]


def test_renew_before_equal_to_what_is_left_renews():
    exp = NOW + datetime.timedelta(days=10)
    assert reasons_for(make_secret(make_jwt(exp), expires=exp), renew_before=10 * DAY) == ["expiring"]
    assert reasons_for(make_secret(make_jwt(exp), expires=exp), renew_before=10 * DAY - 1) == []


def test_expired_token():
    exp = NOW - datetime.timedelta(seconds=1)
    assert reasons_for(make_secret(make_jwt(exp), expires=exp)) == ["expired"]


def test_exp_claim_earlier_than_annotation_wins():
    """The annotation says 25 days, the token itself 5: the token is what the server enforces."""
    real = NOW + datetime.timedelta(days=5)
    secret = make_secret(make_jwt(real), expires=NOW + datetime.timedelta(days=25))
    assert rs.inspect_secret(secret, "c1")["expires"] == real
    assert reasons_for(secret) == ["expiring"]


def test_annotation_earlier_than_claim_wins():
    secret = make_secret(make_jwt(NOW + datetime.timedelta(days=25)), expires=NOW + datetime.timedelta(days=2))
    assert reasons_for(secret) == ["expiring"]


def test_missing_annotation_falls_back_to_claim():
    exp = NOW + datetime.timedelta(days=25)
    secret = make_secret(make_jwt(exp))
    assert rs.inspect_secret(secret, "c1")["expires"] == exp
    assert reasons_for(secret) == []


def test_istioctl_legacy_token_is_replaced():
    assert reasons_for(make_secret(make_jwt(legacy=True))) == ["not time-bound"]


@pytest.mark.parametrize("kwargs,reason", [
    (dict(server="https://10.0.0.2:6443"), "server changed"),
    (dict(ca=rs.ca_b64(CA_PEM.replace("ZmFrZQ", "b3RoZXI"))), "ca changed"),
    (dict(tls="api.internal"), "tls server name changed"),
    (dict(sa=("istio-system", "other-sa", "uid-1")), "service account changed"),
    (dict(sa=("istio-system", "istio-reader-service-account", "uid-2")), "service account re-created"),
])
def test_changes_that_need_a_new_token(kwargs, reason):
    exp = NOW + datetime.timedelta(days=25)
    assert reasons_for(make_secret(make_jwt(exp), expires=exp), **kwargs) == [reason]


def test_unknown_service_account_uid_does_not_renew():
    """Check mode before the SA exists: the uid is unknown, the claims alone decide."""
    exp = NOW + datetime.timedelta(days=25)
    assert reasons_for(make_secret(make_jwt(exp), expires=exp), sa=SA[:2] + (None,)) == []


def test_several_reasons_are_all_reported():
    exp = NOW + datetime.timedelta(days=1)
    assert reasons_for(make_secret(make_jwt(exp), expires=exp), server="https://x:6443") == [
        "server changed", "expiring"]


@pytest.mark.parametrize("secret,problem", [
    (make_secret("t", data={}), "no key c1"),
    (make_secret("t", data={"c1": "%%%"}), "not base64"),
    (make_secret("opaque-token"), "not a JWT"),
    (make_secret("t", data={"c1": base64.b64encode(b"kind: Config\n").decode()}), "current context"),
])
def test_malformed_secrets_are_renewed(secret, problem):
    reasons = reasons_for(secret)
    assert len(reasons) == 1 and reasons[0].startswith("malformed: ") and problem in reasons[0]


# --- the secret written -------------------------------------------------------------------------
def test_secret_body_metadata_and_data():
    exp = NOW + datetime.timedelta(days=30)
    kc = rs.remote_kubeconfig("c1", SERVER, CA, "tok")
    body = rs.secret_body("c1", "istio-system", kc, exp, SERVER)
    assert body["metadata"]["name"] == "istio-remote-secret-c1"
    assert body["metadata"]["labels"] == {"istio/multiCluster": "true", "app.kubernetes.io/managed-by": "meshfleet"}
    assert body["metadata"]["annotations"] == {
        "networking.istio.io/cluster": "c1", "meshfleet.io/token-expires": "2026-12-25T12:00:00Z",
        "meshfleet.io/source-server": SERVER}
    assert list(body["data"]) == ["c1"]
    assert yaml.safe_load(base64.b64decode(body["data"]["c1"])) == kc


def test_secret_body_keeps_foreign_metadata_and_resource_version():
    existing = make_secret("t", labels={"team": "mesh"}, annotations={"note": "x"})
    body = rs.secret_body("c1", "istio-system", rs.remote_kubeconfig("c1", SERVER, CA, "t"), NOW, SERVER, existing)
    assert body["metadata"]["labels"]["team"] == "mesh"
    assert body["metadata"]["annotations"]["note"] == "x"
    assert body["metadata"]["resourceVersion"] == "42"


def test_secret_differs_only_on_meaningful_changes():
    exp = NOW + datetime.timedelta(days=25)
    token = make_jwt(exp)
    existing = make_secret(token, expires=exp)
    same = rs.secret_body("c1", "istio-system", rs.remote_kubeconfig("c1", SERVER, CA, token), exp, SERVER, existing)
    assert not rs.secret_differs(existing, same, "c1")
    # same kubeconfig in istioctl's formatting (another key order, block style) is no change
    kc_text = rs.dump(rs.remote_kubeconfig("c1", SERVER, CA, token))
    reformatted = dict(existing, data={"c1": base64.b64encode(
        yaml.safe_dump(yaml.safe_load(kc_text), sort_keys=False, indent=4).encode()).decode()})
    assert not rs.secret_differs(reformatted, same, "c1")
    assert rs.secret_differs(None, same, "c1")
    assert rs.secret_differs(make_secret(token), same, "c1")  # the expiry annotation is missing
    other = rs.secret_body("c1", "istio-system", rs.remote_kubeconfig("c1", SERVER, CA, "new"), exp, SERVER,
                           existing)
    assert rs.secret_differs(existing, other, "c1")
    extra_key = dict(existing, data=dict(existing["data"], c9="eA=="))
    assert rs.secret_differs(extra_key, same, "c1")


# --- redaction ----------------------------------------------------------------------------------------
def test_diff_view_redacts_every_token():
    token = make_jwt(NOW + datetime.timedelta(days=25))
    secret = make_secret(token)
    other = rs.remote_kubeconfig("c9", SERVER, CA, "other-secret-token")
    secret["data"]["c9"] = base64.b64encode(rs.dump(other).encode()).decode()
    secret["data"]["junk"] = base64.b64encode(b"password=hunter2").decode()
    view = rs.diff_view(secret, "c1", "expires 2026-12-20T12:00:00Z")
    text = json.dumps(view)
    for leaked in (token, "other-secret-token", "hunter2", secret["data"]["junk"]):
        assert leaked not in text
    user = view["stringData"]["c1"]["users"][0]["user"]
    assert user == {"token": "<redacted, expires 2026-12-20T12:00:00Z>"}
    assert view["stringData"]["c1"]["clusters"][0]["cluster"]["server"] == SERVER
    assert view["metadata"]["annotations"][rs.ANNOTATION_CLUSTER] == "c1"
    assert "resourceVersion" not in view["metadata"]
    assert rs.diff_view(None, "c1", "x") == {}


def test_redact_does_not_touch_the_original():
    kc = rs.remote_kubeconfig("c1", SERVER, CA, "tok")
    red = rs.redact_kubeconfig(kc, "n")
    assert kc["users"][0]["user"]["token"] == "tok"
    assert red["users"][0]["user"]["token"] == "<redacted, n>"


# --- RBAC -----------------------------------------------------------------------------------------
def test_reader_rules_are_read_only_except_the_chart_s_exceptions():
    writes = set()
    for group, resource, verb in rs._triples(rs.READER_RULES):
        if verb not in ("get", "list", "watch"):
            writes.add((group, resource, verb))
    assert writes == {("multicluster.x-k8s.io", "serviceexports", "create"),
                      ("multicluster.x-k8s.io", "serviceexports", "delete"),
                      ("authentication.k8s.io", "tokenreviews", "create"),
                      ("authorization.k8s.io", "subjectaccessreviews", "create")}


def test_rules_cover():
    assert rs.rules_cover(rs.READER_RULES, rs.READER_RULES)
    assert rs.rules_cover([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}], rs.READER_RULES)
    assert not rs.rules_cover(rs.READER_RULES, rs.READER_RULES + rs.ISTIOD_REMOTE_RULES)
    assert rs.rules_cover(rs.READER_RULES + rs.ISTIOD_REMOTE_RULES, rs.READER_RULES)
    # resourceNames-restricted rules grant less than the whole resource
    named = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"], "resourceNames": ["x"]}]
    assert not rs.rules_cover(named, rs.READER_RULES)
    # a concrete resource does not stand in for the "*" the chart grants on Istio's groups
    concrete = [{"apiGroups": ["networking.istio.io"], "resources": ["virtualservices"], "verbs": ["get"]}]
    assert not rs.rules_cover(concrete, rs.READER_RULES[:1])
    lacking = [r for r in rs.READER_RULES if "endpointslices" not in r["resources"]]
    assert rs.missing_rules(lacking, rs.READER_RULES) == [
        ("discovery.k8s.io", "endpointslices", v) for v in ("get", "list", "watch")]


def test_normalise_rules_ignores_order():
    shuffled = [dict(r, verbs=list(reversed(r["verbs"]))) for r in reversed(rs.READER_RULES)]
    assert rs.normalise_rules(shuffled) == rs.normalise_rules(rs.READER_RULES)


# --- the module's argument checks (no cluster needed) ----------------------------------------------
@pytest.fixture
def dead_kubeconfig(tmp_path):
    """A kubeconfig whose server is a closed port on loopback."""
    path = tmp_path / "dead.kubeconfig"
    # a real CA certificate: the client builds its TLS context before it connects
    root = pki.build_root_cert(pki.generate_key("ecdsa-p256"), organization="dead")
    ca = rs.ca_b64(pki.cert_pem(root).decode("ascii"))
    path.write_text(rs.dump(rs.remote_kubeconfig("dead", "https://127.0.0.1:1", ca, "dead-token")))
    return str(path)


def test_invalid_cluster_name_fails(run_module, dead_kubeconfig):
    res = run_module(module, dict(cluster_name="Bad_Name", source_kubeconfig=dead_kubeconfig,
                                  target_kubeconfig=dead_kubeconfig))
    assert res["failed"] and "DNS-1123" in res["msg"]


def test_missing_kubeconfig_file_fails(run_module, dead_kubeconfig, tmp_path):
    res = run_module(module, dict(cluster_name="c1", source_kubeconfig=str(tmp_path / "nope"),
                                  target_kubeconfig=dead_kubeconfig))
    assert res["failed"]
    assert "source kubeconfig %s does not exist" % (tmp_path / "nope") in res["msg"]


def test_unknown_context_fails(run_module, dead_kubeconfig):
    res = run_module(module, dict(cluster_name="c1", source_kubeconfig=dead_kubeconfig,
                                  target_kubeconfig=dead_kubeconfig, target_context="nope"))
    assert res["failed"] and "target kubeconfig" in res["msg"] and "nope" in res["msg"]


def test_short_token_lifetime_fails(run_module, dead_kubeconfig):
    res = run_module(module, dict(cluster_name="c1", source_kubeconfig=dead_kubeconfig,
                                  target_kubeconfig=dead_kubeconfig, token_lifetime=599))
    assert res["failed"] and "at least 600" in res["msg"]


def test_source_kubeconfig_required_when_present(run_module, dead_kubeconfig):
    res = run_module(module, dict(cluster_name="c1", target_kubeconfig=dead_kubeconfig))
    assert res["failed"] and "source_kubeconfig" in res["msg"]


@pytest.mark.parametrize("state", ["present", "absent"])
def test_unreachable_target_is_named(run_module, dead_kubeconfig, state):
    res = run_module(module, dict(cluster_name="c1", source_kubeconfig=dead_kubeconfig,
                                  target_kubeconfig=dead_kubeconfig, state=state))
    assert res["failed"]
    assert res["msg"].startswith("target cluster (https://127.0.0.1:1) is unreachable")
    assert res["cluster"] == "target" and res["server"] == "https://127.0.0.1:1"
    assert "dead-token" not in res["_stdout"]


def test_sources_and_cluster_name_are_exclusive(run_module, dead_kubeconfig):
    res = run_module(module, dict(cluster_name="c1", sources=[dict(cluster_name="c2", source_kubeconfig=dead_kubeconfig)],
                                  target_kubeconfig=dead_kubeconfig))
    assert res["failed"] and "mutually exclusive" in res["msg"]
    res = run_module(module, dict(target_kubeconfig=dead_kubeconfig))
    assert res["failed"] and "one of the following is required: cluster_name, sources" in res["msg"]


def test_sources_duplicates_are_refused(run_module, dead_kubeconfig):
    one = dict(cluster_name="c2", source_kubeconfig=dead_kubeconfig)
    res = run_module(module, dict(sources=[one, one], target_kubeconfig=dead_kubeconfig))
    assert res["failed"] and res["msg"] == "sources: cluster_name c2 given more than once"


def test_sources_error_names_the_source_and_hides_tokens(run_module, dead_kubeconfig):
    res = run_module(module, dict(sources=[dict(cluster_name="c2", source_kubeconfig=dead_kubeconfig)],
                                  target_kubeconfig=dead_kubeconfig))
    assert res["failed"] and res["msg"].startswith("source c2: target cluster (https://127.0.0.1:1) is unreachable")
    assert res["secrets"] == [] and "dead-token" not in res["_stdout"]
