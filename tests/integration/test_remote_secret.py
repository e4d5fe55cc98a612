# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""meshfleet.mesh.remote_secret against two real kwok clusters (real kube-apiservers).

The clusters come from the shared ``kwok_clusters`` fixture (tests/integration/conftest.py)
and are deleted when this module's tests are done. The module is run the way a user runs
it, ``ansible localhost -m meshfleet.mesh.remote_secret``, and every run's whole output is
checked for every token seen so far.

The tests run in file order and build on each other (one secret, c1 -> c2, renewed, broken,
repaired, removed); the reverse direction (c2 -> c1) covers Istio's chart RBAC already
being there. ``test_istioctl_comparison`` runs the built ``istioctl create-remote-secret``.
"""

from __future__ import absolute_import, division, print_function

import base64
import json
import os
import socket
import subprocess

import pytest
import yaml

import helpers

from ansible_collections.meshfleet.mesh.plugins.module_utils import remote_secret as rs

pytestmark = pytest.mark.integration

NS = "istio-system"
SA = "istio-reader-service-account"
LIFETIME = 3600


class Env:
    """Shared state of the module's tests: clusters, kubeconfigs, tokens seen."""

    def __init__(self, mesh, names, tools_bin, work):
        self.mesh, self.tools_bin, self.work = mesh, tools_bin, work
        self.c1, self.c2 = names
        self.k1, self.k2 = mesh.kubeconfig(self.c1), mesh.kubeconfig(self.c2)
        self.tokens = set()
        self.output = ""
        self._clients = {}

    def client(self, kubeconfig):
        if kubeconfig not in self._clients:
            self._clients[kubeconfig] = helpers.kube_client(kubeconfig)
        return self._clients[kubeconfig]

    def core(self, kubeconfig):
        from kubernetes import client
        return client.CoreV1Api(self.client(kubeconfig))

    def rbac(self, kubeconfig):
        from kubernetes import client
        return client.RbacAuthorizationV1Api(self.client(kubeconfig))

    def run(self, check=False, diff=False, expect_failure=False, **args):
        """``ansible localhost -m meshfleet.mesh.remote_secret``; returns the result.

        The whole output (stdout and stderr) is kept in ``self.output``."""
        full = dict(cluster_name=self.c1, source_kubeconfig=self.k1, target_kubeconfig=self.k2,
                    token_lifetime=LIFETIME)
        full.update(args)
        full = dict((k, v) for k, v in full.items() if v is not None)
        cmd = [helpers.venv_tool("ansible"), "localhost", "-m", "meshfleet.mesh.remote_secret",
               "-a", json.dumps(full)]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        env = helpers.ansible_env(self.tools_bin, dict(
            ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
            ANSIBLE_LOCAL_TEMP=os.path.join(self.work, "tmp")))
        p = subprocess.run(cmd, cwd=helpers.REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=180, check=False)
        output = p.stdout + p.stderr
        try:
            result = json.loads(p.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
        except (ValueError, KeyError, IndexError):
            raise AssertionError("no JSON result (rc=%d)\n%s" % (p.returncode, output[-4000:]))
        if expect_failure:
            assert result.get("failed"), result
        else:
            assert not result.get("failed"), result
        self.remember(self.secret_token())
        self.assert_no_token(output)
        self.output = output
        return result

    def remember(self, token):
        if token:
            self.tokens.add(token)

    def assert_no_token(self, text):
        for token in self.tokens:
            assert token not in text, "a token leaked into the output"
            assert token.split(".")[2] not in text, "a token signature leaked into the output"

    # --- the secret in the target ---------------------------------------------------
    def secret(self, name=None, kubeconfig=None):
        try:
            return self.core(kubeconfig or self.k2).read_namespaced_secret(
                name or rs.secret_name(self.c1), NS)
        except Exception as e:
            if getattr(e, "status", None) == 404:
                return None
            raise

    def secret_kubeconfig(self, secret=None, cluster=None):
        secret = secret or self.secret()
        return yaml.safe_load(base64.b64decode(secret.data[cluster or self.c1]).decode())

    def secret_token(self):
        secret = self.secret()
        if secret is None or not secret.data or self.c1 not in secret.data:
            return None
        try:
            return self.secret_kubeconfig(secret)["users"][0]["user"]["token"]
        except (TypeError, KeyError, IndexError, ValueError):
            return None

    def reader_kubeconfig(self, kubeconfig_dict):
        """Write a kubeconfig taken from a secret to a 0600 file; return its path."""
        path = os.path.join(self.work, "reader-%d.kubeconfig" % len(os.listdir(self.work)))
        with open(path, "w") as f:
            yaml.safe_dump(kubeconfig_dict, f)
        os.chmod(path, 0o600)
        return path

    def reader_client(self, kubeconfig_dict):
        """An ApiClient that uses only what the secret's kubeconfig holds."""
        return helpers.kube_client(self.reader_kubeconfig(kubeconfig_dict))


@pytest.fixture(scope="module")
def env(kwok_mesh, kwok_clusters, tools_bin, tmp_path_factory):
    names = sorted(kwok_clusters(2, prefix="rs"))
    work = str(tmp_path_factory.mktemp("remote-secret"))
    try:
        yield Env(kwok_mesh, names, tools_bin, work)
    finally:
        kwok_mesh.delete(names)


def forbidden(fn, *args, **kwargs):
    from kubernetes.client.exceptions import ApiException
    with pytest.raises(ApiException) as exc:
        fn(*args, **kwargs)
    assert exc.value.status == 403, exc.value
    return True


# --- create -----------------------------------------------------------------------------------

def test_create(env):
    assert env.secret() is None
    res = env.run()
    assert res["changed"] and res["renewed"] and res["reason"] == "created"
    assert res["secret_name"] == "istio-remote-secret-%s" % env.c1 and res["namespace"] == NS
    src_kc = yaml.safe_load(open(env.k1))
    server = src_kc["clusters"][0]["cluster"]["server"]
    assert res["server"] == server
    assert res["reader"]["managed"] and res["reader"]["cluster_roles"] == ["istio-reader-clusterrole-istio-system"]
    assert "created service account istio-system/%s" % SA in res["reader"]["actions"]

    secret = env.secret()
    assert secret.metadata.labels["istio/multiCluster"] == "true"
    ann = secret.metadata.annotations
    assert ann["networking.istio.io/cluster"] == env.c1
    assert ann["meshfleet.io/source-server"] == server
    assert ann["meshfleet.io/token-expires"] == res["token_expires"]
    assert list(secret.data) == [env.c1]

    kc = env.secret_kubeconfig(secret)
    assert kc["current-context"] == env.c1
    assert kc["contexts"] == [{"name": env.c1, "context": {"cluster": env.c1, "user": env.c1}}]
    assert kc["clusters"][0]["name"] == env.c1
    cluster = kc["clusters"][0]["cluster"]
    assert cluster == {"server": server, "certificate-authority-data": cluster["certificate-authority-data"]}
    assert rs.same_ca(cluster["certificate-authority-data"], src_kc["clusters"][0]["cluster"]["certificate-authority-data"])
    assert kc["users"][0]["name"] == env.c1 and list(kc["users"][0]["user"]) == ["token"]

    token = kc["users"][0]["user"]["token"]
    claims = rs.jwt_claims(token)
    assert rs.rfc3339(rs.claims_expiry(claims)) == res["token_expires"]
    assert rs.claims_service_account(claims)[:2] == (NS, SA)
    lifetime = claims["exp"] - claims["iat"]
    assert LIFETIME - 5 <= lifetime <= LIFETIME + 5

    # no long-lived token secret in the source
    src_secrets = env.core(env.k1).list_namespaced_secret(NS).items
    assert [s.metadata.name for s in src_secrets if s.type == "kubernetes.io/service-account-token"] == []

    # the RBAC is the chart's, labelled as Meshfleet's
    role = env.rbac(env.k1).read_cluster_role("istio-reader-clusterrole-istio-system")
    assert role.metadata.labels["app.kubernetes.io/managed-by"] == "meshfleet"
    rules = env.client(env.k1).sanitize_for_serialization(role.rules)
    assert rs.normalise_rules(rules) == rs.normalise_rules(rs.READER_RULES)
    binding = env.rbac(env.k1).read_cluster_role_binding("istio-reader-clusterrole-istio-system")
    assert binding.role_ref.name == "istio-reader-clusterrole-istio-system"
    assert [(s.kind, s.namespace, s.name) for s in binding.subjects] == [("ServiceAccount", NS, SA)]


def test_secret_kubeconfig_works_with_least_privilege(env):
    from kubernetes import client
    api_client = env.reader_client(env.secret_kubeconfig())
    core = client.CoreV1Api(api_client)
    # what istiod reads
    assert core.list_pod_for_all_namespaces().items is not None
    assert core.list_service_for_all_namespaces().items is not None
    assert any(n.metadata.name == "kube-system" for n in core.list_namespace().items)
    assert core.list_node().items
    assert core.list_secret_for_all_namespaces().items is not None  # the chart grants it (see docs)
    assert client.DiscoveryV1Api(api_client).list_endpoint_slice_for_all_namespaces().items is not None
    assert client.ApiextensionsV1Api(api_client).list_custom_resource_definition().items is not None
    assert client.AppsV1Api(api_client).list_replica_set_for_all_namespaces().items is not None
    # what it must not do
    pod = {"metadata": {"name": "nope"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    assert forbidden(core.create_namespaced_pod, "default", pod)
    assert forbidden(core.delete_namespace, "kube-public")
    assert forbidden(core.create_namespaced_secret, "default", {"metadata": {"name": "nope"}})
    assert forbidden(core.create_namespaced_config_map, "default", {"metadata": {"name": "nope"}})
    assert forbidden(core.patch_namespaced_service_account, SA, NS, {"metadata": {"labels": {"x": "y"}}})
    assert forbidden(client.AppsV1Api(api_client).list_deployment_for_all_namespaces)
    assert forbidden(client.RbacAuthorizationV1Api(api_client).list_cluster_role)
    assert forbidden(core.create_namespaced_service_account_token, SA, NS,
                     {"spec": {"audiences": [], "expirationSeconds": 600}})


def test_rerun_is_unchanged_and_mints_no_token(env):
    before = env.secret()
    token = env.secret_token()
    res = env.run()
    assert not res["changed"] and not res["renewed"] and res["reason"] == "unchanged"
    assert res["reader"]["actions"] == []
    after = env.secret()
    assert after.metadata.resource_version == before.metadata.resource_version
    assert env.secret_token() == token
    assert res["token_expires"] == before.metadata.annotations["meshfleet.io/token-expires"]


def test_check_mode_writes_nothing(env):
    before = env.secret()
    token = env.secret_token()
    res = env.run(check=True, renew_before=LIFETIME)
    assert res["changed"] and res["renewed"] and res["reason"] == "expiring"
    assert env.secret().metadata.resource_version == before.metadata.resource_version
    assert env.secret_token() == token


def test_renew_before_lifetime_renews(env):
    old = env.secret_token()
    res = env.run(renew_before=LIFETIME, diff=True)
    assert res["changed"] and res["renewed"] and res["reason"] == "expiring"
    new = env.secret_token()
    assert new and new != old
    env.assert_no_token(env.output)  # the new one too (run() remembers it first)
    diff = res["diff"]
    assert diff["before"]["stringData"][env.c1]["users"][0]["user"]["token"].startswith("<redacted, expires ")
    assert diff["after"]["stringData"][env.c1]["users"][0]["user"]["token"].startswith("<redacted, new token, expires ")
    assert diff["after"]["metadata"]["annotations"]["meshfleet.io/token-expires"] == res["token_expires"]
    # the new token works
    api_client = env.reader_client(env.secret_kubeconfig())
    from kubernetes import client
    assert client.CoreV1Api(api_client).list_namespace().items


def test_diff_of_an_unchanged_run_shows_no_token(env):
    res = env.run(diff=True)
    assert not res["changed"]
    assert res["diff"]["before"] == res["diff"]["after"]
    assert "<redacted, expires " in env.output


def test_server_override_and_tls_server_name(env):
    port = yaml.safe_load(open(env.k1))["clusters"][0]["cluster"]["server"].rsplit(":", 1)[1]
    res = env.run(server="https://localhost:%s" % port)
    assert res["renewed"] and res["reason"] == "server changed" and res["server"] == "https://localhost:%s" % port
    secret = env.secret()
    assert secret.metadata.annotations["meshfleet.io/source-server"] == res["server"]
    assert env.secret_kubeconfig(secret)["clusters"][0]["cluster"]["server"] == res["server"]
    res = env.run(server="https://127.0.0.1:%s" % port, tls_server_name="kubernetes.default.svc")
    assert res["renewed"] and res["reason"] == "server changed, tls server name changed"
    kc = env.secret_kubeconfig()
    assert kc["clusters"][0]["cluster"]["tls-server-name"] == "kubernetes.default.svc"
    from kubernetes import client
    api_client = env.reader_client(kc)
    assert client.CoreV1Api(api_client).list_namespace().items
    # back to the kubeconfig's server
    res = env.run()
    assert res["renewed"] and res["reason"] == "tls server name changed"


def test_broken_secret_is_repaired(env):
    core = env.core(env.k2)
    name = rs.secret_name(env.c1)
    core.patch_namespaced_secret(name, NS, {"data": {env.c1: base64.b64encode(b"garbage: [").decode()}})
    res = env.run()
    assert res["renewed"] and res["reason"].startswith("malformed: ")
    # labels/annotations removed by hand: put back without a new token
    token = env.secret_token()
    core.patch_namespaced_secret(name, NS, {"metadata": {"labels": {"istio/multiCluster": None},
                                                         "annotations": {"networking.istio.io/cluster": None}}})
    res = env.run()
    assert res["changed"] and not res["renewed"] and res["reason"] == "metadata changed"
    assert env.secret_token() == token
    assert env.secret().metadata.labels["istio/multiCluster"] == "true"


def test_recreated_service_account_gets_a_new_token(env):
    old = env.secret_token()
    env.core(env.k1).delete_namespaced_service_account(SA, NS)
    res = env.run()
    assert res["renewed"] and res["reason"] == "service account re-created"
    assert "created service account istio-system/%s" % SA in res["reader"]["actions"]
    assert env.secret_token() != old


def test_rejected_token_is_renewed(env):
    """A token with the right claims that the source API server rejects (bad signature)."""
    core = env.core(env.k2)
    kc = env.secret_kubeconfig()
    token = kc["users"][0]["user"]["token"]
    head, payload, sig = token.split(".")
    tampered = "%s.%s.%s" % (head, payload, sig[:-4] + ("AAAA" if sig[-4:] != "AAAA" else "BBBB"))
    env.remember(tampered)
    kc["users"][0]["user"]["token"] = tampered
    core.patch_namespaced_secret(rs.secret_name(env.c1), NS, {
        "data": {env.c1: base64.b64encode(rs.dump(kc).encode()).decode()}})
    res = env.run()
    assert res["renewed"] and res["reason"] == "token rejected"
    assert env.secret_token() not in (token, tampered)


def test_reverse_direction_uses_istio_chart_rbac(env):
    """c2 -> c1 where Istio's chart RBAC already exists in c2: Meshfleet adds none."""
    rbac = env.rbac(env.k2)
    name = "istio-reader-clusterrole-istio-system"
    chart_labels = {"app": "istio-reader", "app.kubernetes.io/managed-by": "Helm", "release": "istio"}
    rbac.create_cluster_role({"metadata": {"name": name, "labels": chart_labels}, "rules": rs.READER_RULES})
    rbac.create_cluster_role_binding({
        "metadata": {"name": name, "labels": chart_labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": SA, "namespace": NS}]})
    res = env.run(cluster_name=env.c2, source_kubeconfig=env.k2, target_kubeconfig=env.k1)
    assert res["reason"] == "created"
    assert res["reader"]["managed"] is False and res["reader"]["cluster_roles"] == [name]
    assert not [a for a in res["reader"]["actions"] if "cluster role" in a]
    assert rbac.read_cluster_role(name).metadata.labels["app.kubernetes.io/managed-by"] == "Helm"
    reverse = env.secret(rs.secret_name(env.c2), env.k1)
    assert reverse.metadata.annotations["networking.istio.io/cluster"] == env.c2
    env.remember(env.secret_kubeconfig(reverse, env.c2)["users"][0]["user"]["token"])

    # the chart's role lacking rules (an older chart): left alone, Meshfleet's role beside it
    rbac.patch_cluster_role(name, {"rules": [r for r in rs.READER_RULES if "endpointslices" not in r["resources"]]})
    res = env.run(cluster_name=env.c2, source_kubeconfig=env.k2, target_kubeconfig=env.k1)
    assert res["changed"] and res["reader"]["managed"] and not res["renewed"]
    assert res["reader"]["cluster_roles"] == ["meshfleet-" + name]
    assert "endpointslices" not in json.dumps(env.client(env.k2).sanitize_for_serialization(
        rbac.read_cluster_role(name).rules))
    # with istiod_remote, the remote-profile rules are added to Meshfleet's role
    res = env.run(cluster_name=env.c2, source_kubeconfig=env.k2, target_kubeconfig=env.k1,
                  istiod_remote=True)
    assert res["changed"] and "updated cluster role meshfleet-%s" % name in res["reader"]["actions"]
    from kubernetes import client
    api_client = env.reader_client(env.secret_kubeconfig(env.secret(rs.secret_name(env.c2), env.k1), env.c2))
    assert client.DiscoveryV1Api(api_client).list_endpoint_slice_for_all_namespaces().items is not None
    assert client.CoreV1Api(api_client).create_namespaced_config_map(
        "default", {"metadata": {"name": "istio-ca-root-cert-test"}, "data": {"x": "y"}})


def test_forbidden_target_is_named(env):
    """The reader's own kubeconfig may read secrets but not write them."""
    path = env.reader_kubeconfig(env.secret_kubeconfig())
    res = env.run(cluster_name="forbidden1", target_kubeconfig=path, expect_failure=True)
    assert res["msg"].startswith("target cluster (https://127.0.0.1:")
    assert "forbidden to create secret istio-system/istio-remote-secret-forbidden1" in res["msg"]
    assert "system:serviceaccount:istio-system:%s" % SA in res["msg"]
    assert res["status"] == 403


def test_dead_target_is_named(env):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    kc = yaml.safe_load(open(env.k2))
    kc["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:%d" % port
    path = os.path.join(env.work, "dead.kubeconfig")
    with open(path, "w") as f:
        yaml.safe_dump(kc, f)
    res = env.run(target_kubeconfig=path, expect_failure=True)
    assert res["msg"].startswith("target cluster (https://127.0.0.1:%d) is unreachable" % port), res["msg"]
    assert "Connection refused" in res["msg"]


def test_istioctl_comparison(env):
    """``istioctl create-remote-secret`` on a kwok cluster: same labels, annotation and kubeconfig
    shape; its token is long-lived, and the module replaces it with a time-bound one."""
    istioctl = os.path.join(env.tools_bin, "istioctl")
    if not os.access(istioctl, os.X_OK):
        pytest.fail("istioctl is not built in %s" % env.tools_bin)
    p = subprocess.run([istioctl, "create-remote-secret", "--kubeconfig", env.k1, "--name", env.c1],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=120,
                       check=False)
    assert p.returncode == 0, p.stderr
    theirs = [d for d in yaml.safe_load_all(p.stdout) if d][0]
    their_kc = yaml.safe_load(theirs["stringData"][env.c1])
    their_token = their_kc["users"][0]["user"]["token"]
    env.remember(their_token)
    ours = env.secret()
    our_kc = env.secret_kubeconfig(ours)

    assert theirs["metadata"]["name"] == ours.metadata.name
    assert theirs["metadata"]["labels"].items() <= ours.metadata.labels.items()
    assert theirs["metadata"]["annotations"].items() <= ours.metadata.annotations.items()
    assert list(theirs["stringData"]) == list(ours.data)

    def shape(kc):
        return {k: (sorted(v) if isinstance(v, dict) else
                    [sorted((e.get("cluster") or e.get("context") or e.get("user")).keys()) + [e["name"]]
                     for e in v] if isinstance(v, list) else v)
                for k, v in kc.items() if k != "preferences"}

    assert shape(their_kc) == shape(our_kc)
    their_cluster, our_cluster = their_kc["clusters"][0]["cluster"], our_kc["clusters"][0]["cluster"]
    assert their_cluster["server"] == our_cluster["server"]
    assert rs.same_ca(their_cluster["certificate-authority-data"], our_cluster["certificate-authority-data"])
    # the difference: istioctl's token never expires and lives in a token secret in the source
    assert rs.claims_expiry(rs.jwt_claims(their_token)) is None
    token_secret = env.core(env.k1).read_namespaced_secret(SA + "-istio-remote-secret-token", NS)
    assert token_secret.type == "kubernetes.io/service-account-token"

    # istioctl's secret applied over ours: the module migrates it to a time-bound token
    env.core(env.k2).replace_namespaced_secret(ours.metadata.name, NS, {
        "metadata": dict(theirs["metadata"], resourceVersion=ours.metadata.resource_version),
        "stringData": theirs["stringData"]})
    res = env.run()
    assert res["renewed"] and res["reason"] == "not time-bound"
    assert rs.claims_expiry(rs.jwt_claims(env.secret_token())) is not None
    env.core(env.k1).delete_namespaced_secret(SA + "-istio-remote-secret-token", NS)


def test_absent(env):
    res = env.run(state="absent", check=True)
    assert res["changed"] and env.secret() is not None
    res = env.run(state="absent", diff=True)
    assert res["changed"] and res["reason"] == "deleted" and env.secret() is None
    assert res["diff"]["after"] == {} and res["diff"]["before"]["metadata"]["name"] == rs.secret_name(env.c1)
    res = env.run(state="absent")
    assert not res["changed"] and res["reason"] == "absent"
    # the reader stays in the source unless asked
    env.core(env.k1).read_namespaced_service_account(SA, NS)
    res = env.run(state="absent", remove_reader=True)
    assert res["changed"]
    assert sorted(res["reader"]["actions"]) == sorted([
        "deleted cluster role binding istio-reader-clusterrole-istio-system",
        "deleted cluster role istio-reader-clusterrole-istio-system",
        "deleted service account istio-system/%s" % SA])
    res = env.run(state="absent", remove_reader=True)
    assert not res["changed"]
    # c2 -> c1: the chart's objects in c2 stay, Meshfleet's go
    res = env.run(cluster_name=env.c2, source_kubeconfig=env.k2, target_kubeconfig=env.k1,
                  state="absent", remove_reader=True)
    assert res["changed"] and env.secret(rs.secret_name(env.c2), env.k1) is None
    assert sorted(res["reader"]["actions"]) == sorted([
        "deleted cluster role binding meshfleet-istio-reader-clusterrole-istio-system",
        "deleted cluster role meshfleet-istio-reader-clusterrole-istio-system",
        "deleted service account istio-system/%s" % SA])
    env.rbac(env.k2).read_cluster_role("istio-reader-clusterrole-istio-system")


def test_sources_write_several_secrets_in_one_run(env):
    """``sources``: one process writes a secret per source into the same target (the
    mesh_links role's shape: each primary gets every other cluster's secret in one run)."""
    sources = [dict(cluster_name=env.c1, source_kubeconfig=env.k1),
               dict(cluster_name="alias-of-c1", source_kubeconfig=env.k1)]
    names = [rs.secret_name(s["cluster_name"]) for s in sources]
    res = env.run(cluster_name=None, source_kubeconfig=None, sources=sources, check=True)
    assert res["changed"] and [s["reason"] for s in res["secrets"]] == ["created", "created"]
    assert env.secret(names[0]) is None and env.secret(names[1]) is None

    res = env.run(cluster_name=None, source_kubeconfig=None, sources=sources, diff=True)
    assert res["changed"] and [s["secret_name"] for s in res["secrets"]] == names
    assert res["renewed"] is True and [s["renewed"] for s in res["secrets"]] == [True, True]
    assert sorted(res["diff"]["after"]) == sorted(names)
    tokens = []
    for name, source in zip(names, sources):
        kc = env.secret_kubeconfig(env.secret(name), source["cluster_name"])
        tokens.append(kc["users"][0]["user"]["token"])
        env.remember(tokens[-1])
        # each secret's kubeconfig really reads the source with its own token
        pods = helpers.kube_client(env.reader_kubeconfig(kc))
        from kubernetes import client
        client.CoreV1Api(pods).list_namespaced_pod(NS)
    env.assert_no_token(env.output)

    res = env.run(cluster_name=None, source_kubeconfig=None, sources=sources)
    assert not res["changed"] and [s["reason"] for s in res["secrets"]] == ["unchanged", "unchanged"]
    assert res["renewed"] is False
    for name, source, token in zip(names, sources, tokens):
        assert env.secret_kubeconfig(env.secret(name), source["cluster_name"])["users"][0]["user"]["token"] == token

    res = env.run(cluster_name=None, source_kubeconfig=None, sources=sources, state="absent", remove_reader=True)
    assert res["changed"] and env.secret(names[0]) is None and env.secret(names[1]) is None


def test_sources_errors_name_the_source(env):
    sources = [dict(cluster_name="ok-one", source_kubeconfig=env.k1),
               dict(cluster_name="Bad_Name", source_kubeconfig=env.k1)]
    res = env.run(cluster_name=None, source_kubeconfig=None, sources=sources, check=True, expect_failure=True)
    assert res["msg"].startswith("source Bad_Name: ") and "DNS-1123" in res["msg"]
    res = env.run(sources=sources[:1], check=True, expect_failure=True)
    assert "mutually exclusive" in res["msg"]
