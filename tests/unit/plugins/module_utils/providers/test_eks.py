# -*- coding: utf-8 -*-
"""EKS provider tests against moto in server mode (one path on botocore's Stubber, see below).

moto runs as a real HTTP server on 127.0.0.1 (free port, session fixture in
tests/fakes/aws.py) and the provider talks to it through real boto3 clients with
``settings.endpoint_url``; credentials are fake ones from the environment. The
lifecycle tests drive the real module path: ``plugins/modules/cluster.py`` ``main()`` with
``patch_module_args``, reading the JSON it prints.

moto's EKS has no ``UpdateClusterVersion``, so the lifecycle's mutable-field step updates
tags and the node group's scaling (both implemented by moto), and the version upgrade
is checked on botocore's Stubber (real client, canned responses) in its own test.
"""

from __future__ import absolute_import, division, print_function

import base64
import os
import stat
from urllib.parse import parse_qs, urlparse

import boto3
import pytest
import yaml

from ansible_collections.meshfleet.mesh.plugins.modules import cluster as cluster_module
from ansible_collections.meshfleet.mesh.plugins.module_utils.providers import eks
from ansible_collections.meshfleet.mesh.tests.fakes.aws import no_aws_credentials
from ansible_collections.meshfleet.mesh.tests.fakes.modrun import run_module


@pytest.fixture(autouse=True)
def fast_waiters(monkeypatch):
    monkeypatch.setattr(eks.EksProvider, "waiter_delay", 0.2)


def settings(endpoint, **over):
    s = dict(region="us-east-1", role_arn="arn:aws:iam::123456789012:role/eks",
             subnet_ids=["subnet-b", "subnet-a"], kubernetes_version="1.30",
             security_group_ids=["sg-1"], tags={"team": "mesh"}, endpoint_url=endpoint,
             node_group=dict(name="ng1", node_role_arn="arn:aws:iam::123456789012:role/node",
                             instance_types=["t3.large"], scaling=dict(min=1, max=3, desired=2)))
    s.update(over)
    return s


def run(state_dir, s, **kw):
    args = dict(name="eks1", provider="eks", settings=s, state_dir=state_dir,
                wait_timeout=30)
    args.update(kw.pop("args", {}))
    return run_module(cluster_module.main, args, **kw)


class CallCounter:
    """Counts the EKS API calls boto3 sends (by operation name)."""

    def __init__(self, monkeypatch):
        self.calls = []
        real = eks.aws_client

        def client(session, service, endpoint_url=None):
            c = real(session, service, endpoint_url)
            c.meta.events.register("before-call", self._record)
            return c
        monkeypatch.setattr(eks, "aws_client", client)

    def _record(self, model, **kwargs):
        self.calls.append(model.name)

    @property
    def writes(self):
        return [c for c in self.calls if not c.startswith(("Describe", "List"))]


def test_lifecycle(aws_env, state_dir, monkeypatch):
    s = settings(aws_env)
    r = run(state_dir, s)
    assert r["rc"] == 0, r
    assert r["changed"] is True
    c = r["cluster"]
    assert c["exists"] and c["ready"] and c["provider"] == "eks"
    assert c["settings"]["node_group"]["scaling"] == dict(min=1, max=3, desired=2)
    assert "token" not in repr(r) and "k8s-aws-v1" not in repr(r)

    # kubeconfig: 0600, endpoint + CA + presigned-STS token
    path = c["kubeconfig"]
    assert path == os.path.join(state_dir, "clusters", "eks1", "kubeconfig")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    cfg = yaml.safe_load(open(path))
    assert cfg["current-context"] == "eks1"
    assert cfg["clusters"][0]["cluster"]["server"] == c["api_server"]
    token = cfg["users"][0]["user"]["token"]
    assert token.startswith("k8s-aws-v1.") and "=" not in token

    # idempotent re-run: a refreshed token is not a change
    r = run(state_dir, s)
    assert r["rc"] == 0 and r["changed"] is False, r

    # check mode on a mutable change: reports, writes nothing
    counter = CallCounter(monkeypatch)
    s2 = settings(aws_env, tags={"team": "mesh", "env": "dev"},
                  node_group=dict(s["node_group"], scaling=dict(min=1, max=5, desired=3)))
    r = run(state_dir, s2, check_mode=True)
    assert r["rc"] == 0 and r["changed"] is True
    assert set(r["changes"]) == {"tags", "node_group.scaling.max", "node_group.scaling.desired"}
    assert counter.writes == [], counter.calls

    # the mutable update itself
    r = run(state_dir, s2)
    assert r["rc"] == 0 and r["changed"] is True, r
    assert "UpdateNodegroupConfig" in counter.writes and "TagResource" in counter.writes
    assert r["cluster"]["settings"]["tags"] == {"team": "mesh", "env": "dev"}
    assert r["cluster"]["settings"]["node_group"]["scaling"] == dict(min=1, max=5, desired=3)
    r = run(state_dir, s2)
    assert r["changed"] is False

    # refused immutable change names the field
    del counter.calls[:]
    r = run(state_dir, settings(aws_env, role_arn="arn:aws:iam::123456789012:role/other",
                                tags=s2["tags"], node_group=s2["node_group"]))
    assert r["rc"] == 1 and "role_arn" in r["msg"] and r["immutable_fields"] == ["role_arn"]
    r = run(state_dir, settings(aws_env, tags=s2["tags"],
                                node_group=dict(s2["node_group"], instance_types=["m5.large"])))
    assert r["rc"] == 1 and "node_group.instance_types" in r["msg"], r
    assert counter.writes == []

    # delete in check mode: no write
    r = run(state_dir, s2, args=dict(state="absent"), check_mode=True)
    assert r["changed"] is True and counter.writes == []
    # delete, then delete when absent
    r = run(state_dir, s2, args=dict(state="absent"))
    assert r["rc"] == 0 and r["changed"] is True, r
    assert "DeleteNodegroup" in counter.writes and "DeleteCluster" in counter.writes
    assert r["cluster"]["exists"] is False
    r = run(state_dir, s2, args=dict(state="absent"))
    assert r["rc"] == 0 and r["changed"] is False
    assert boto3.client("eks", endpoint_url=aws_env).list_clusters()["clusters"] == []


def test_check_mode_create_makes_no_calls(aws_env, state_dir, monkeypatch):
    counter = CallCounter(monkeypatch)
    r = run(state_dir, settings(aws_env), check_mode=True)
    assert r["rc"] == 0 and r["changed"] is True
    assert counter.writes == [] and counter.calls == ["DescribeCluster"]
    assert not os.path.exists(os.path.join(state_dir, "clusters", "eks1", "kubeconfig"))


def test_token_is_a_presigned_get_caller_identity(aws_env):
    session = boto3.session.Session(region_name="eu-west-1")
    token = eks.eks_token(session, "my-cluster", "eu-west-1")
    assert token.startswith("k8s-aws-v1.")
    body = token[len("k8s-aws-v1."):]
    url = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    parsed = urlparse(url)
    q = parse_qs(parsed.query)
    assert parsed.netloc == "sts.eu-west-1.amazonaws.com"
    assert q["Action"] == ["GetCallerIdentity"]
    assert q["X-Amz-Expires"] == ["60"]
    assert "x-k8s-aws-id" in q["X-Amz-SignedHeaders"][0].split(";")

    assert q["X-Amz-Credential"][0].split("/")[2:4] == ["eu-west-1", "sts"]

    # with a custom endpoint (moto) the URL points there
    token = eks.eks_token(session, "my-cluster", "eu-west-1", endpoint_url=aws_env)
    body = token[len("k8s-aws-v1."):]
    url = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    assert url.startswith(aws_env + "/?Action=GetCallerIdentity")


def test_missing_credentials_fail_before_any_call(state_dir, monkeypatch, tmp_path, moto_endpoint):
    no_aws_credentials(monkeypatch, tmp_path)
    r = run(state_dir, settings(moto_endpoint))
    assert r["rc"] == 1
    assert "no AWS credentials found" in r["msg"] and "AWS_ACCESS_KEY_ID" in r["msg"]


def test_missing_settings(aws_env, state_dir):
    r = run(state_dir, dict(region="us-east-1"))
    assert r["rc"] == 1 and "role_arn" in r["msg"] and "subnet_ids" in r["msg"]


def test_version_upgrade_uses_update_cluster_version(aws_env, state_dir):
    """moto has no UpdateClusterVersion: this one path runs on botocore's Stubber instead."""
    from botocore.stub import Stubber
    s = settings(aws_env, kubernetes_version="1.31")
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
