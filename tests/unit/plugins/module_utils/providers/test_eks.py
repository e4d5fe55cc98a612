# -*- coding: utf-8 -*-
"""EKS provider tests against moto in server mode behind the EKS rule layer (one path on
botocore's Stubber, see below).

moto runs as a real HTTP server on 127.0.0.1 (free port, session fixture in
tests/fakes/aws.py) with :class:`EksRules` in front of it (CREATING/DELETING timing, the
node-group rules, injected failures, a request log). The provider reaches it the way a
user's environment would point boto3 elsewhere: ``AWS_ENDPOINT_URL`` (boto3 reads it
itself), or ``settings.endpoint_url``; credentials are fake ones from the environment.
The lifecycle tests drive the real module path: ``plugins/modules/cluster.py``
``main()`` with ``patch_module_args``, reading the JSON it prints. The kubeconfig's exec
credential plugin is run the way kubectl runs it: the command and arguments it names, in
a subprocess, with an environment that has credentials but no region and no endpoint.

moto's EKS has no ``UpdateClusterVersion``, so the version upgrade is checked on
botocore's Stubber (real client, canned responses) in its own test.
"""

from __future__ import absolute_import, division, print_function

import base64
import json
import os
import stat
import subprocess
import sys
import zipfile
from urllib.parse import parse_qs, urlparse

import boto3
import botocore.exceptions
import pytest
import requests
import yaml

from ansible_collections.meshfleet.mesh.plugins.modules import cluster as cluster_module
from ansible_collections.meshfleet.mesh.plugins.module_utils import exec_credential as xc
from ansible_collections.meshfleet.mesh.plugins.module_utils.providers import eks
from ansible_collections.meshfleet.mesh.tests.fakes.aws import no_aws_credentials
from ansible_collections.meshfleet.mesh.tests.fakes.modrun import run_module


@pytest.fixture(autouse=True)
def fast_waiters(monkeypatch):
    monkeypatch.setattr(eks.EksProvider, "waiter_delay", 0.05)
    # botocore's standard retry mode backs off up to 20 s between throttled attempts
    import botocore.retries.standard
    monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount",
                        lambda self, context: 0)


@pytest.fixture
def eks_env(aws_env, monkeypatch):
    """moto through boto3's own endpoint variable (the provider passes no endpoint_url)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_env)
    return aws_env


def settings(**over):
    s = dict(region="us-east-1", role_arn="arn:aws:iam::123456789012:role/eks",
             subnet_ids=["subnet-b", "subnet-a"], kubernetes_version="1.30",
             security_group_ids=["sg-1"], tags={"team": "mesh"},
             node_group=dict(name="ng1", node_role_arn="arn:aws:iam::123456789012:role/node",
                             instance_types=["t3.large"], scaling=dict(min=1, max=3, desired=2)))
    s.update(over)
    return s


def run(state_dir, s, **kw):
    args = dict(name="eks1", provider="eks", settings=s, state_dir=state_dir,
                wait_timeout=30)
    args.update(kw.pop("args", {}))
    return run_module(cluster_module.main, args, **kw)


def caller_env(**extra):
    """What a later kubectl / client might have: credentials, no region, no endpoint."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_SESSION_TOKEN": "testing", "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
    env.update(extra)
    return env


def run_exec(kubeconfig, env):
    """Run the kubeconfig's exec plugin as kubectl does; return the ExecCredential."""
    cfg = yaml.safe_load(open(kubeconfig))
    spec = cfg["users"][0]["user"]["exec"]
    full = dict(env)
    full.update((i["name"], i["value"]) for i in spec.get("env") or [])
    full["KUBERNETES_EXEC_INFO"] = json.dumps({"apiVersion": spec["apiVersion"], "kind": "ExecCredential",
                                               "spec": {"interactive": False}})
    proc = subprocess.run([spec["command"]] + spec["args"], env=full, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def token_url(token):
    assert token.startswith("k8s-aws-v1.") and "=" not in token
    body = token[len("k8s-aws-v1."):]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


def test_lifecycle(eks_env, eks_rules, state_dir):
    s = settings()
    r = run(state_dir, s)
    assert r["rc"] == 0, r
    assert r["changed"] is True
    c = r["cluster"]
    assert c["exists"] and c["ready"] and c["provider"] == "eks"
    assert c["settings"]["node_group"]["scaling"] == dict(min=1, max=3, desired=2)
    assert "token" not in repr(r) and "k8s-aws-v1" not in repr(r)
    # the node group was created once the cluster had left CREATING (the rule layer refuses before)
    assert eks_rules.writes() == ["CreateCluster", "CreateNodegroup"]

    # kubeconfig: 0600, endpoint + CA + the meshfleet exec plugin (no static token)
    path = c["kubeconfig"]
    assert path == os.path.join(state_dir, "clusters", "eks1", "kubeconfig")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    cfg = yaml.safe_load(open(path))
    assert cfg["current-context"] == "eks1"
    assert cfg["clusters"][0]["cluster"]["server"] == c["api_server"]
    user = cfg["users"][0]["user"]
    assert "token" not in user
    script = os.path.join(state_dir, "clusters", "eks1", "meshfleet-credential.py")
    assert user["exec"] == {
        "apiVersion": "client.authentication.k8s.io/v1beta1", "command": sys.executable,
        "args": [script, "eks", "--cluster", "eks1", "--region", "us-east-1"],
        "env": [{"name": "AWS_ENDPOINT_URL", "value": eks_env}], "interactiveMode": "Never"}
    assert stat.S_IMODE(os.stat(script).st_mode) == 0o600

    # the plugin, run like kubectl runs it, mints a token without AWS_REGION / AWS_ENDPOINT_URL
    cred = run_exec(path, caller_env())
    assert cred["kind"] == "ExecCredential" and cred["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    url = token_url(cred["status"]["token"])
    q = parse_qs(urlparse(url).query)
    assert url.startswith(eks_env + "/?Action=GetCallerIdentity")
    assert "x-k8s-aws-id" in q["X-Amz-SignedHeaders"][0].split(";")
    assert q["X-Amz-Credential"][0].split("/")[2:4] == ["us-east-1", "sts"]
    assert cred["status"]["expirationTimestamp"].endswith("Z")
    # what EKS's authenticator does with the token: GET the presigned URL with the header
    answer = requests.get(url, headers={"x-k8s-aws-id": "eks1"}, timeout=10)
    assert answer.status_code == 200 and "GetCallerIdentityResult" in answer.text
    assert eks_rules.sts_log == ["GetCallerIdentity"]

    # idempotent re-run
    r = run(state_dir, s)
    assert r["rc"] == 0 and r["changed"] is False, r

    # check mode on a mutable change: reports, writes nothing; desired is not compared
    n = len(eks_rules.log)
    s2 = settings(tags={"team": "mesh", "env": "dev"},
                  node_group=dict(s["node_group"], scaling=dict(min=1, max=5, desired=3)))
    r = run(state_dir, s2, check_mode=True)
    assert r["rc"] == 0 and r["changed"] is True
    assert set(r["changes"]) == {"tags", "node_group.scaling.max"}
    assert [op for op in eks_rules.log[n:] if not op.startswith(("Describe", "List"))] == []

    # the mutable update itself: min/max sent, desired left where it is (2, inside [1, 5])
    r = run(state_dir, s2)
    assert r["rc"] == 0 and r["changed"] is True, r
    assert "UpdateNodegroupConfig" in eks_rules.writes() and "TagResource" in eks_rules.writes()
    assert r["cluster"]["settings"]["tags"] == {"team": "mesh", "env": "dev"}
    assert r["cluster"]["settings"]["node_group"]["scaling"] == dict(min=1, max=5, desired=2)
    assert run(state_dir, s2)["changed"] is False

    # refused immutable change names the field
    n = len(eks_rules.writes())
    r = run(state_dir, settings(role_arn="arn:aws:iam::123456789012:role/other",
                                tags=s2["tags"], node_group=s2["node_group"]))
    assert r["rc"] == 1 and "role_arn" in r["msg"] and r["immutable_fields"] == ["role_arn"]
    r = run(state_dir, settings(tags=s2["tags"], node_group=dict(s2["node_group"], instance_types=["m5.large"])))
    assert r["rc"] == 1 and "node_group.instance_types" in r["msg"], r
    assert len(eks_rules.writes()) == n

    # delete in check mode: no write
    r = run(state_dir, s2, args=dict(state="absent"), check_mode=True)
    assert r["changed"] is True and len(eks_rules.writes()) == n
    # delete (the node group first, DELETING until gone, then the cluster), then delete when absent
    r = run(state_dir, s2, args=dict(state="absent"))
    assert r["rc"] == 0 and r["changed"] is True, r
    assert eks_rules.writes()[n:] == ["DeleteNodegroup", "DeleteCluster"]
    assert r["cluster"]["exists"] is False
    # nothing of the deleted cluster is left on the controller (kubeconfig, credential plugin)
    assert not os.path.exists(os.path.join(state_dir, "clusters", "eks1"))
    r = run(state_dir, s2, args=dict(state="absent"))
    assert r["rc"] == 0 and r["changed"] is False
    assert boto3.client("eks").list_clusters()["clusters"] == []


def test_rule_node_group_needs_active_cluster(eks_env, eks_rules):
    client = boto3.client("eks")
    client.create_cluster(name="c1", roleArn="arn:aws:iam::123456789012:role/eks",
                          resourcesVpcConfig={"subnetIds": ["subnet-a"]})
    assert client.describe_cluster(name="c1")["cluster"]["status"] == "CREATING"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.create_nodegroup(clusterName="c1", nodegroupName="ng", nodeRole="arn:aws:iam::1:role/n",
                                subnets=["subnet-a"])
    assert e.value.response["Error"]["Code"] == "InvalidRequestException"
    assert "not in ACTIVE status" in e.value.response["Error"]["Message"]


def test_rule_cluster_with_node_groups_cannot_be_deleted(eks_env, eks_rules, state_dir):
    assert run(state_dir, settings())["rc"] == 0
    client = boto3.client("eks")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.delete_cluster(name="eks1")
    assert e.value.response["Error"]["Code"] == "ResourceInUseException"
    client.delete_nodegroup(clusterName="eks1", nodegroupName="ng1")
    assert client.list_nodegroups(clusterName="eks1")["nodegroups"] == ["ng1"]  # DELETING
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.delete_cluster(name="eks1")
    assert e.value.response["Error"]["Message"] == "Cluster has nodegroups attached"


def test_autoscaler_moved_desired_is_no_change(eks_env, eks_rules, state_dir):
    s = settings()
    assert run(state_dir, s)["rc"] == 0
    eks_rules.autoscaler_moves("eks1", "ng1", 3)
    n = len(eks_rules.log)
    r = run(state_dir, s)
    assert r["rc"] == 0 and r["changed"] is False, r
    assert r["cluster"]["settings"]["node_group"]["scaling"]["desired"] == 3
    assert "UpdateNodegroupConfig" not in eks_rules.log[n:]
    # a new max below the autoscaler's choice moves desired into the range, not back to 2
    eks_rules.autoscaler_moves("eks1", "ng1", 3)
    r = run(state_dir, settings(node_group=dict(s["node_group"], scaling=dict(min=1, max=2, desired=2))))
    assert r["rc"] == 0 and r["changed"] is True, r
    assert r["cluster"]["settings"]["node_group"]["scaling"] == dict(min=1, max=2, desired=2)


def test_creation_ending_failed_is_recreated_by_the_next_run(eks_env, eks_rules, state_dir):
    eks_rules.fail_creation("eks1")
    r = run(state_dir, settings())
    assert r["rc"] == 1, r
    assert "cluster eks1 to become active failed: it is FAILED" in r["msg"]
    assert "InsufficientFreeAddresses" in r["msg"] and "next run deletes" in r["msg"], r
    assert eks_rules.writes() == ["CreateCluster"]
    r = run(state_dir, settings(), check_mode=True)
    assert r["changed"] is True and r["changes"] == ["status"]
    r = run(state_dir, settings())
    assert r["rc"] == 0 and r["changed"] is True and r["cluster"]["ready"], r
    assert eks_rules.writes() == ["CreateCluster", "DeleteCluster", "CreateCluster", "CreateNodegroup"]
    assert run(state_dir, settings())["changed"] is False


def test_throttling_is_retried_then_reported(eks_env, eks_rules, state_dir):
    eks_rules.fail("CreateCluster", "ThrottlingException", "Rate exceeded", times=2)
    r = run(state_dir, settings())
    assert r["rc"] == 0 and r["changed"] is True, r
    assert eks_rules.log.count("CreateCluster") == 3
    # more throttling than botocore's 8 retries (9 attempts): a clear message; the next run converges
    eks_rules.fail("DescribeCluster", "ThrottlingException", "Rate exceeded", times=9)
    r = run(state_dir, settings())
    assert r["rc"] == 1, r
    assert r["msg"] == "EKS describe of cluster eks1 failed: ThrottlingException: Rate exceeded"
    r = run(state_dir, settings())
    assert r["rc"] == 0 and r["changed"] is False, r


def test_resource_limit_exceeded(eks_env, eks_rules, state_dir):
    eks_rules.fail("CreateNodegroup", "ResourceLimitExceededException",
                   "Cannot create more than 30 managed node groups per cluster")
    r = run(state_dir, settings())
    assert r["rc"] == 1, r
    assert r["msg"] == ("EKS node group creation of cluster eks1 failed: ResourceLimitExceededException: "
                        "Cannot create more than 30 managed node groups per cluster")
    r = run(state_dir, settings())
    assert r["rc"] == 0 and r["changed"] is True and r["cluster"]["ready"], r
    assert eks_rules.writes() == ["CreateCluster", "CreateNodegroup", "CreateNodegroup"]


def test_check_mode_create_makes_no_calls(eks_env, eks_rules, state_dir):
    r = run(state_dir, settings(), check_mode=True)
    assert r["rc"] == 0 and r["changed"] is True
    assert eks_rules.log == ["DescribeCluster"]
    assert not os.path.exists(os.path.join(state_dir, "clusters", "eks1", "kubeconfig"))


def test_service_specific_endpoints(aws_env, eks_rules, state_dir, monkeypatch):
    """AWS_ENDPOINT_URL_EKS / _STS reach boto3 untouched; _STS is carried into the kubeconfig."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: must be overridden
    monkeypatch.setenv("AWS_ENDPOINT_URL_EKS", aws_env)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", aws_env + "/sts-path")
    r = run(state_dir, settings(node_group=None))
    assert r["rc"] == 0 and r["cluster"]["ready"], r
    spec = yaml.safe_load(open(r["cluster"]["kubeconfig"]))["users"][0]["user"]["exec"]
    assert spec["env"] == [{"name": "AWS_ENDPOINT_URL", "value": "http://127.0.0.1:9"},
                           {"name": "AWS_ENDPOINT_URL_STS", "value": aws_env + "/sts-path"}]
    url = token_url(run_exec(r["cluster"]["kubeconfig"], caller_env())["status"]["token"])
    assert url.startswith(aws_env + "/sts-path?Action=GetCallerIdentity")


def test_settings_endpoint_url(aws_env, eks_rules, state_dir, monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "mesh-admin")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.path.join(state_dir, "aws-config"))
    with open(os.path.join(state_dir, "aws-config"), "w") as f:
        f.write("[profile mesh-admin]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    r = run(state_dir, settings(endpoint_url=aws_env, node_group=None))
    assert r["rc"] == 0 and r["cluster"]["ready"], r
    spec = yaml.safe_load(open(r["cluster"]["kubeconfig"]))["users"][0]["user"]["exec"]
    assert spec["args"][1:] == ["eks", "--cluster", "eks1", "--region", "us-east-1", "--endpoint-url", aws_env,
                                "--profile", "mesh-admin"]
    assert "env" not in spec
    env = caller_env(AWS_CONFIG_FILE=os.path.join(state_dir, "aws-config"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        del env[name]  # the profile's keys only
    url = token_url(run_exec(r["cluster"]["kubeconfig"], env)["status"]["token"])
    assert url.startswith(aws_env + "/?Action=GetCallerIdentity")


@pytest.mark.parametrize("plugin,command,args", [
    ("aws-cli", "aws", ["eks", "get-token", "--cluster-name", "eks1", "--region", "us-east-1", "--output", "json"]),
    ("aws-iam-authenticator", "aws-iam-authenticator", ["token", "-i", "eks1", "--region", "us-east-1"]),
])
def test_standard_credential_plugins(eks_env, state_dir, plugin, command, args):
    r = run(state_dir, settings(node_group=None, credential_plugin=plugin))
    assert r["rc"] == 0, r
    spec = yaml.safe_load(open(r["cluster"]["kubeconfig"]))["users"][0]["user"]["exec"]
    assert spec["command"] == command and spec["args"] == args
    assert spec["env"] == [{"name": "AWS_ENDPOINT_URL", "value": eks_env}]
    assert spec["apiVersion"] == "client.authentication.k8s.io/v1beta1" and spec["installHint"]
    assert not os.path.exists(os.path.join(state_dir, "clusters", "eks1", "meshfleet-credential.py"))


def test_static_token_and_switching_plugins(eks_env, state_dir):
    r = run(state_dir, settings(node_group=None, credential_plugin="static"))
    assert r["rc"] == 0, r
    user = yaml.safe_load(open(r["cluster"]["kubeconfig"]))["users"][0]["user"]
    assert token_url(user["token"]).startswith(eks_env + "/?Action=GetCallerIdentity")
    # a fresh static token is no change; switching to the exec plugin is one
    assert run(state_dir, settings(node_group=None, credential_plugin="static"))["changed"] is False
    r = run(state_dir, settings(node_group=None))
    assert r["changed"] is True and "exec" in yaml.safe_load(open(r["cluster"]["kubeconfig"]))["users"][0]["user"]
    assert run(state_dir, settings(node_group=None))["changed"] is False


def test_unknown_credential_plugin_fails_before_any_call(eks_env, eks_rules, state_dir):
    r = run(state_dir, settings(credential_plugin="kubelogin"))
    assert r["rc"] == 1 and "settings.credential_plugin 'kubelogin'" in r["msg"]
    assert "meshfleet, aws-cli, aws-iam-authenticator, static" in r["msg"]
    assert eks_rules.log == []


def test_plugin_reports_missing_credentials(aws_env, state_dir, tmp_path):
    script = xc.install_script(str(tmp_path))[0]
    env = caller_env()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        del env[name]
    proc = subprocess.run([sys.executable, script, "eks", "--cluster", "c", "--region", "eu-west-1"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60,
                          check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "meshfleet credential plugin (eks): no AWS credentials found" in proc.stderr


def test_plugin_source_is_found_inside_an_ansiballz_zip(tmp_path):
    """Modules import module_utils from a zip: install_script must still write the plugin."""
    source = open(xc.__file__).read()
    name = "ansible_collections/meshfleet/mesh/plugins/module_utils/exec_credential.py"
    zpath = tmp_path / "payload.zip"
    with zipfile.ZipFile(str(zpath), "w") as z:
        z.writestr(name, source)
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):  # AnsiballZ adds the package __init__ files
            z.writestr("/".join(parts[:i]) + "/__init__.py", "")
    code = ("import sys; sys.path.insert(0, %r); "
            "import ansible_collections.meshfleet.mesh.plugins.module_utils.exec_credential as m; "
            "assert '.zip' in m.__file__, m.__file__; print(m.install_script(%r)[0])" % (str(zpath), str(tmp_path)))
    proc = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60, cwd=str(tmp_path), check=False)
    assert proc.returncode == 0, proc.stderr
    written = proc.stdout.strip()
    assert open(written).read() == source


def test_token_is_a_presigned_get_caller_identity(aws_env):
    session = boto3.session.Session(region_name="eu-west-1")
    token = eks.eks_token(session, "my-cluster", "eu-west-1")
    url = token_url(token)
    parsed = urlparse(url)
    q = parse_qs(parsed.query)
    assert parsed.netloc == "sts.eu-west-1.amazonaws.com"
    assert q["Action"] == ["GetCallerIdentity"]
    assert q["X-Amz-Expires"] == ["60"]
    assert "x-k8s-aws-id" in q["X-Amz-SignedHeaders"][0].split(";")
    assert q["X-Amz-Credential"][0].split("/")[2:4] == ["eu-west-1", "sts"]

    # with a custom endpoint (moto) the URL points there
    url = token_url(eks.eks_token(session, "my-cluster", "eu-west-1", endpoint_url=aws_env))
    assert url.startswith(aws_env + "/?Action=GetCallerIdentity")


def test_missing_credentials_fail_before_any_call(state_dir, monkeypatch, tmp_path, moto_endpoint):
    no_aws_credentials(monkeypatch, tmp_path)
    r = run(state_dir, settings(endpoint_url=moto_endpoint))
    assert r["rc"] == 1
    assert "no AWS credentials found" in r["msg"] and "AWS_ACCESS_KEY_ID" in r["msg"]


def test_missing_settings(aws_env, state_dir):
    r = run(state_dir, dict(region="us-east-1"))
    assert r["rc"] == 1 and "role_arn" in r["msg"] and "subnet_ids" in r["msg"]


def test_version_upgrade_uses_update_cluster_version(aws_env, state_dir):
    """moto has no UpdateClusterVersion: this one path runs on botocore's Stubber instead."""
    from botocore.stub import Stubber
    s = settings(kubernetes_version="1.31", endpoint_url=aws_env)
    del s["node_group"]
    provider = eks.EksProvider("eks1", s, state_dir)
    provider.validate()
    described = {"cluster": {
        "name": "eks1", "arn": "arn:aws:eks:us-east-1:123456789012:cluster/eks1", "version": "1.30",
        "status": "ACTIVE", "roleArn": s["role_arn"], "endpoint": "https://ABC.gr7.us-east-1.eks.amazonaws.com",
        "resourcesVpcConfig": {"subnetIds": s["subnet_ids"], "securityGroupIds": ["sg-1"]}}}
    described["cluster"]["tags"] = {"team": "mesh"}
    with Stubber(provider.eks) as stub:
        for _call in range(2):  # diff(get()) here, and update()'s own get()
            stub.add_response("describe_cluster", described, {"name": "eks1"})
        stub.add_response("update_cluster_version", {"update": {"id": "u-1", "status": "InProgress",
                                                                "type": "VersionUpdate"}},
                          {"name": "eks1", "version": "1.31"})
        stub.add_response("describe_cluster", described, {"name": "eks1"})  # the cluster_active waiter
        changes = provider.diff(provider.get())
        assert changes == {"kubernetes_version": ("1.30", "1.31")}
        provider.update(changes)
        stub.assert_no_pending_responses()


def test_kube_rest_authenticates_through_the_kubeconfig_plugin(eks_env, eks_rules, state_dir, tmp_path):
    """The whole chain: the module's kubeconfig -> KubeRest runs the exec plugin -> an API
    server that checks the token the way EKS does (GET the presigned STS URL with x-k8s-aws-id)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from ansible_collections.meshfleet.mesh.plugins.module_utils.kube_rest import KubeRest

    class ApiServer(BaseHTTPRequestHandler):
        seen = []

        def log_message(self, *args):
            pass

        def do_GET(self):
            auth = self.headers.get("Authorization") or ""
            url = token_url(auth[len("Bearer "):]) if auth.startswith("Bearer k8s-aws-v1.") else None
            ok = url is not None and requests.get(url, headers={"x-k8s-aws-id": "eks1"}, timeout=10).ok
            ApiServer.seen.append(ok)
            data = json.dumps({"kind": "Namespace", "metadata": {"name": "default"}} if ok else
                              {"kind": "Status", "message": "Unauthorized"}).encode()
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    r = run(state_dir, settings(node_group=None))
    assert r["rc"] == 0, r
    cfg = yaml.safe_load(open(r["cluster"]["kubeconfig"]))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ApiServer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        cfg["clusters"][0]["cluster"] = {"server": "http://127.0.0.1:%d" % httpd.server_address[1]}
        local = tmp_path / "kubeconfig"
        local.write_text(yaml.safe_dump(cfg))
        kube = KubeRest(str(local), label="eks1")
        assert kube.get("read namespace default", "/api/v1/namespaces/default")["metadata"]["name"] == "default"
        assert ApiServer.seen == [True] and eks_rules.sts_log == ["GetCallerIdentity"]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_kubernetes_python_client_reads_the_exec_entry(eks_env, state_dir):
    """The kubernetes package (what kubernetes.core uses in roles) runs the same plugin."""
    from kubernetes import client, config
    r = run(state_dir, settings(node_group=None))
    assert r["rc"] == 0, r
    conf = client.Configuration()
    config.load_kube_config(config_file=r["cluster"]["kubeconfig"], client_configuration=conf)
    header = conf.api_key["BearerToken"]
    assert header.startswith("Bearer k8s-aws-v1.")
    assert token_url(header[len("Bearer "):]).startswith(eks_env + "/?Action=GetCallerIdentity")
