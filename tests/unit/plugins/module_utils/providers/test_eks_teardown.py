# -*- coding: utf-8 -*-
"""EKS teardown order on moto (server mode): the LoadBalancer Services step comes first (here the
cluster's API is unreachable, as moto's endpoint is not a Kubernetes API: the module says so and
goes on), then the node groups are deleted and waited for, then the cluster. moto refuses
DeleteCluster while node groups exist (ResourceInUseException, as EKS does; cloud-facts.md)."""

from __future__ import absolute_import, division, print_function

import boto3
import botocore.exceptions
import pytest

from ansible_collections.meshfleet.mesh.plugins.modules import cluster as cluster_module
from ansible_collections.meshfleet.mesh.plugins.module_utils.providers import eks
from ansible_collections.meshfleet.mesh.tests.fakes.modrun import run_module


@pytest.fixture(autouse=True)
def fast_waiters(monkeypatch):
    monkeypatch.setattr(eks.EksProvider, "waiter_delay", 0.2)


def settings(endpoint):
    return dict(region="us-east-1", role_arn="arn:aws:iam::123456789012:role/eks",
                subnet_ids=["subnet-a"], endpoint_url=endpoint,
                node_group=dict(name="ng1", node_role_arn="arn:aws:iam::123456789012:role/node",
                                scaling=dict(min=1, max=2, desired=1)))


def test_fake_refuses_delete_cluster_with_node_groups(aws_env, state_dir):
    r = run_module(cluster_module.main, dict(name="eks1", provider="eks", settings=settings(aws_env),
                                             state_dir=state_dir))
    assert r["rc"] == 0, r
    client = boto3.client("eks", region_name="us-east-1", endpoint_url=aws_env)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.delete_cluster(name="eks1")
    assert e.value.response["Error"]["Code"] == "ResourceInUseException"


def test_teardown_order(aws_env, state_dir, monkeypatch):
    r = run_module(cluster_module.main, dict(name="eks1", provider="eks", settings=settings(aws_env),
                                             state_dir=state_dir))
    assert r["rc"] == 0, r
    calls = []
    real = eks.aws_client

    def client(session, service, endpoint_url=None):
        c = real(session, service, endpoint_url)
        c.meta.events.register("before-call", lambda model, **kw: calls.append(model.name))
        return c
    monkeypatch.setattr(eks, "aws_client", client)
    # module-side warnings, kept once per process (a test before this one may have said the same,
    # or imported controller code, which sends module warnings to the console instead)
    from ansible.module_utils import _internal
    from ansible.module_utils.common import warnings as ansible_warnings
    monkeypatch.setattr(ansible_warnings, "_global_warnings", {})
    monkeypatch.setattr(_internal, "is_controller", False)
    r = run_module(cluster_module.main, dict(name="eks1", provider="eks", settings=settings(aws_env),
                                             state_dir=state_dir, state="absent",
                                             wait_timeouts=dict(load_balancers=5)))
    assert r["rc"] == 0 and r["changed"] is True, r
    # the drain step ran first and said why it could not delete the Services
    assert "its API cannot be reached" in r["load_balancers"]["skipped"]
    assert "cluster eks1: its API cannot be reached" in repr(r["warnings"]), r
    writes = [c for c in calls if not c.startswith(("Describe", "List"))]
    assert writes == ["DeleteNodegroup", "DeleteCluster"], calls
    # the node group's deletion was waited for (DescribeNodegroup) before DeleteCluster
    between = calls[calls.index("DeleteNodegroup"):calls.index("DeleteCluster")]
    assert "DescribeNodegroup" in between, calls
    assert boto3.client("eks", region_name="us-east-1", endpoint_url=aws_env).list_clusters()["clusters"] == []
