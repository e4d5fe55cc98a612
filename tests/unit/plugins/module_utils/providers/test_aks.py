# -*- coding: utf-8 -*-
"""AKS provider tests.

Azure has no emulator here: real azure-mgmt-containerservice SDK over a fake HTTP
transport replaying recorded-shape responses (tests/fakes/azure_transport.py):
the SDK's own serialization, ARM pipeline (bearer token, retry policy honouring
``Retry-After``), and LRO poller following ``Azure-AsyncOperation`` all run; only
the socket is replaced. Injected through the provider's private ``sdk_hooks``
(transport + a static-token credential). Every test drives the real module path:
``plugins/modules/cluster.py`` ``main()`` with ``patch_module_args``.
"""

from __future__ import absolute_import, division, print_function

import os
import stat

import pytest
import yaml

from ansible_collections.meshfleet.mesh.plugins.modules import cluster as cluster_module
from ansible_collections.meshfleet.mesh.plugins.module_utils.providers import aks
from ansible_collections.meshfleet.mesh.tests.fakes.azure_transport import (
    FakeArm, FakeArmTransport, FakeCredential)
from ansible_collections.meshfleet.mesh.tests.fakes.modrun import run_module

SUB = "00000000-0000-0000-0000-000000000001"
MC_PATH = ("/subscriptions/%s/resourceGroups/rg-mesh/providers/Microsoft.ContainerService/"
           "managedClusters/aks1" % SUB)


@pytest.fixture
def arm(monkeypatch):
    arm = FakeArm()
    transport = FakeArmTransport(arm)
    monkeypatch.setattr(aks.AksProvider, "sdk_hooks", dict(transport=transport, credential=FakeCredential()))
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUB)
    arm.transport = transport
    return arm


def settings(**over):
    s = dict(resource_group="rg-mesh", location="westeurope", kubernetes_version="1.33",
             dns_prefix="aks1-mesh", tags={"team": "mesh"},
             node_pools=[dict(name="system", vm_size="Standard_D4s_v5", count=2, mode="System")],
             network_profile=dict(network_plugin="azure", pod_cidr="10.244.0.0/16",
                                  service_cidr="10.0.0.0/16", dns_service_ip="10.0.0.10"))
    s.update(over)
    return s


def run(state_dir, s, **kw):
    args = dict(name="aks1", provider="aks", settings=s, state_dir=state_dir, wait_timeout=60)
    args.update(kw.pop("args", {}))
    return run_module(cluster_module.main, args, **kw)


def test_lifecycle(arm, state_dir):
    s = settings()
    r = run(state_dir, s)
    assert r["rc"] == 0, r
    assert r["changed"] is True
    c = r["cluster"]
    assert c["exists"] and c["ready"] and c["api_server"].startswith("https://aks1-mesh-")
    assert c["settings"]["network_profile"]["pod_cidr"] == "10.244.0.0/16"
    # the create went through the LRO: PUT (201 + Azure-AsyncOperation), operation polled
    assert ("PUT", MC_PATH) in arm.log
    assert any("/operations/op-" in p for m, p in arm.log)
    assert 1 in arm.transport.sleeps  # Retry-After honoured by the poller
    put = [b for m, p, b in arm.bodies if m == "PUT"][0]
    assert put["properties"]["agentPoolProfiles"][0] == dict(
        name="system", vmSize="Standard_D4s_v5", count=2, mode="System", osType="Linux",
        type="VirtualMachineScaleSets")
    assert put["properties"]["networkProfile"]["networkPlugin"] == "azure"
    # kubeconfig: 0600, renamed to the cluster, credentials only in the file
    kubeconfig = c["kubeconfig"]
    assert stat.S_IMODE(os.stat(kubeconfig).st_mode) == 0o600
    cfg = yaml.safe_load(open(kubeconfig))
    assert cfg["current-context"] == "aks1"
    assert cfg["users"][0]["user"]["token"] == "fake-user-token-0123456789"
    assert "fake-user-token" not in repr(r)

    # idempotent
    n = len(arm.writes)
    r = run(state_dir, s)
    assert r["rc"] == 0 and r["changed"] is False, r
    assert len(arm.writes) == n

    # check mode of a mutable change: no PUT/POST/DELETE
    s2 = settings(kubernetes_version="1.34", tags={"team": "mesh", "env": "dev"},
                  node_pools=[dict(s["node_pools"][0], count=3, min_count=2, max_count=4)])
    r = run(state_dir, s2, check_mode=True)
    assert r["changed"] is True
    assert r["changes"] == ["kubernetes_version", "node_pools.system.count", "node_pools.system.max_count",
                            "node_pools.system.min_count", "tags"]
    assert len(arm.writes) == n

    # the update (upgrade + tags + node count) is one PUT through the poller
    r = run(state_dir, s2)
    assert r["rc"] == 0 and r["changed"] is True, r
    put = [b for m, p, b in arm.bodies if m == "PUT"][-1]
    assert put["properties"]["kubernetesVersion"] == "1.34"
    pool = put["properties"]["agentPoolProfiles"][0]
    assert (pool["count"], pool["minCount"], pool["maxCount"], pool["enableAutoScaling"]) == (3, 2, 4, True)
    assert put["tags"] == {"team": "mesh", "env": "dev"}
    # GET -> modify -> PUT: the SDK's serializer left the read-only fields out
    assert "provisioningState" not in put["properties"] and "fqdn" not in put["properties"]
    assert "provisioningState" not in put["properties"]["agentPoolProfiles"][0]
    assert "id" not in put and "currentKubernetesVersion" not in put["properties"]
    assert r["cluster"]["settings"]["kubernetes_version"] == "1.34.4"
    assert run(state_dir, s2)["changed"] is False

    # immutable changes are refused with the field path, before any write
    n = len(arm.writes)
    r = run(state_dir, dict(s2, network_profile=dict(s2["network_profile"], pod_cidr="10.250.0.0/16")))
    assert r["rc"] == 1 and r["immutable_fields"] == ["network_profile.pod_cidr"], r
    assert "network_profile.pod_cidr" in r["msg"]
    r = run(state_dir, dict(s2, location="northeurope",
                            node_pools=[dict(s2["node_pools"][0], vm_size="Standard_D8s_v5")]))
    assert r["rc"] == 1 and r["immutable_fields"] == ["location", "node_pools.system.vm_size"], r
    assert len(arm.writes) == n

    # adding a node pool is an in-place change
    s3 = dict(s2, node_pools=s2["node_pools"] + [dict(name="user1", vm_size="Standard_D2s_v5", count=1)])
    r = run(state_dir, s3, check_mode=True)
    assert r["changes"] == ["node_pools.user1"] and len(arm.writes) == n
    r = run(state_dir, s3)
    assert r["rc"] == 0 and r["changed"] is True, r
    assert [p["name"] for p in r["cluster"]["settings"]["node_pools"]] == ["system", "user1"]

    # delete: check mode, for real (202 + polling), then absent
    n = len(arm.writes)
    r = run(state_dir, s3, args=dict(state="absent"), check_mode=True)
    assert r["changed"] is True and len(arm.writes) == n
    r = run(state_dir, s3, args=dict(state="absent"))
    assert r["rc"] == 0 and r["changed"] is True, r
    assert ("DELETE", MC_PATH) in arm.log and not arm.clusters
    r = run(state_dir, s3, args=dict(state="absent"))
    assert r["rc"] == 0 and r["changed"] is False
    assert arm.log[-1] == ("GET", MC_PATH)  # 404 -> absent


def test_check_mode_create_writes_nothing(arm, state_dir):
    r = run(state_dir, settings(), check_mode=True)
    assert r["rc"] == 0 and r["changed"] is True
    assert arm.writes == [] and arm.log == [("GET", MC_PATH)]


def test_throttling_is_retried_after_retry_after(arm, state_dir):
    arm.fail("GET", "/managedClusters/aks1", 429, code="TooManyRequests",
             message="throttled", headers={"Retry-After": "7"}, times=1)
    r = run(state_dir, settings())
    assert r["rc"] == 0 and r["changed"] is True, r
    assert arm.log[:2] == [("GET", MC_PATH), ("GET", MC_PATH)]
    assert arm.transport.sleeps[0] == 7


def test_conflict_is_reported(arm, state_dir):
    arm.fail("PUT", "/managedClusters/aks1", 409, code="OperationNotAllowed",
             message="Operation is not allowed because there's an in progress create managed cluster "
                     "operation")
    r = run(state_dir, settings())
    assert r["rc"] == 1
    assert "HTTP 409" in r["msg"] and "OperationNotAllowed" in r["msg"] and "aks1" in r["msg"]


def test_conflict_from_service_state(arm, state_dir, monkeypatch):
    # start a create without waiting, then try to change it while the operation runs
    r = run(state_dir, settings(), args=dict(wait=False))
    assert r["rc"] == 0 and r["changed"] is True and r["cluster"]["ready"] is False, r
    assert not os.path.exists(r["cluster"]["kubeconfig"])
    r = run(state_dir, settings(tags={"x": "y"}), args=dict(wait=False))
    assert r["rc"] == 1 and "HTTP 409" in r["msg"] and "in progress" in r["msg"], r


def test_missing_subscription(arm, state_dir, monkeypatch):
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID")
    r = run(state_dir, settings())
    assert r["rc"] == 1 and "AZURE_SUBSCRIPTION_ID" in r["msg"] and "settings.subscription_id" in r["msg"]
    assert arm.log == []


def test_missing_credentials_fail_before_any_call(arm, state_dir, monkeypatch, tmp_path):
    monkeypatch.setattr(aks.AksProvider, "sdk_hooks", dict(transport=arm.transport))
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_TOKEN_CREDENTIALS",
                 "AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_CERTIFICATE_PATH", "IDENTITY_ENDPOINT",
                 "MSI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no `az`
    r = run(state_dir, settings())
    assert r["rc"] == 1 and "no Azure credentials found" in r["msg"] and "AZURE_CLIENT_SECRET" in r["msg"]
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "s3cret")
    r = run(state_dir, settings())
    assert r["rc"] == 1 and "AZURE_CLIENT_ID and AZURE_TENANT_ID" in r["msg"]
    assert arm.log == []


def test_check_azure_credentials_paths(tmp_path):
    ok = aks.check_azure_credentials
    assert ok({"AZURE_CLIENT_ID": "a", "AZURE_TENANT_ID": "t", "AZURE_CLIENT_SECRET": "s"}) == "environment"
    assert ok({"AZURE_CLIENT_ID": "a"}) == "managed identity"
    assert ok({"AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential"}) == "AZURE_TOKEN_CREDENTIALS"
    with pytest.raises(aks.MeshfleetError, match="AZURE_FEDERATED_TOKEN_FILE"):
        ok({"AZURE_CLIENT_ID": "a", "AZURE_TENANT_ID": "t",
            "AZURE_FEDERATED_TOKEN_FILE": str(tmp_path / "nope")})
