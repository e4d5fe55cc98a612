# -*- coding: utf-8 -*-
"""AKS provider tests.

Azure has no emulator here: real azure-mgmt-containerservice SDK over a fake HTTP
transport (tests/fakes/azure_transport.py): the SDK's own serialization, ARM pipeline
(bearer token, retry policy honouring ``Retry-After``), and LRO poller following
``Azure-AsyncOperation`` all run; only the socket is replaced. The service model behind
it (FakeArm) refuses what ARM refuses (its RULES, with sources), so a provider that sends
a request AKS would reject fails here too. Injected through the provider's private
``sdk_hooks`` (transport + a static-token credential). Every provider test drives the real
module path: ``plugins/modules/cluster.py`` ``main()`` with ``patch_module_args``.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import stat

import pytest
import yaml

from ansible_collections.meshfleet.mesh.plugins.modules import cluster as cluster_module
from ansible_collections.meshfleet.mesh.plugins.module_utils import topology
from ansible_collections.meshfleet.mesh.plugins.module_utils.providers import aks
from ansible_collections.meshfleet.mesh.tests.fakes.azure_transport import (
    RULES, FakeArm, FakeArmTransport, FakeCredential)
from ansible_collections.meshfleet.mesh.tests.fakes.modrun import run_module

SUB = "00000000-0000-0000-0000-000000000001"
MC_PATH = ("/subscriptions/%s/resourceGroups/rg-mesh/providers/Microsoft.ContainerService/"
           "managedClusters/aks1" % SUB)


def pool_path(name):
    return MC_PATH + "/agentPools/" + name


@pytest.fixture
def arm(monkeypatch):
    arm = FakeArm()
    transport = FakeArmTransport(arm)
    arm.credential = FakeCredential()
    monkeypatch.setattr(aks.AksProvider, "sdk_hooks", dict(transport=transport, credential=arm.credential))
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUB)
    arm.transport = transport
    return arm


def settings(**over):
    s = dict(resource_group="rg-mesh", location="westeurope", kubernetes_version="1.33",
             dns_prefix="aks1-mesh", tags={"team": "mesh"},
             node_pools=[dict(name="system", vm_size="Standard_D4s_v5", count=2, mode="System")],
             network_profile=dict(network_plugin="azure", network_plugin_mode="overlay",
                                  pod_cidr="10.244.0.0/16", service_cidr="10.0.0.0/16",
                                  dns_service_ip="10.0.0.10"))
    s.update(over)
    return s


def run(state_dir, s, **kw):
    args = dict(name="aks1", provider="aks", settings=s, state_dir=state_dir, wait_timeout=60)
    args.update(kw.pop("args", {}))
    return run_module(cluster_module.main, args, **kw)


def mc_puts(arm):
    """Bodies of the managed-cluster PUTs."""
    return [b for m, p, b in arm.bodies if m == "PUT" and p == MC_PATH]


def pool_writes(arm):
    return [(m, p.rsplit("/", 1)[1]) for m, p in arm.writes if "/agentPools/" in p]


def converged(arm, state_dir, s):
    """A re-run reports no change and sends no write."""
    n = len(arm.writes)
    r = run(state_dir, s)
    assert r["rc"] == 0 and r["changed"] is False, r
    assert arm.writes[n:] == []
    return r


# --- lifecycle ----------------------------------------------------------------------------

def test_lifecycle(arm, state_dir):
    s = settings()
    r = run(state_dir, s)
    assert r["rc"] == 0, r
    assert r["changed"] is True
    c = r["cluster"]
    assert c["exists"] and c["ready"] and c["api_server"].startswith("https://aks1-mesh-")
    assert c["settings"]["network_profile"]["pod_cidr"] == "10.244.0.0/16"
    assert c["settings"]["network_profile"]["network_plugin_mode"] == "overlay"
    # the create went through the LRO: PUT (201 + Azure-AsyncOperation), operation polled
    assert ("PUT", MC_PATH) in arm.log
    assert any("/operations/op-" in p for m, p in arm.log)
    assert 1 in arm.transport.sleeps  # Retry-After honoured by the poller
    put = mc_puts(arm)[0]
    assert put["properties"]["agentPoolProfiles"][0] == dict(
        name="system", vmSize="Standard_D4s_v5", count=2, mode="System", osType="Linux",
        type="VirtualMachineScaleSets")
    assert put["properties"]["networkProfile"] == dict(
        networkPlugin="azure", networkPluginMode="overlay", podCidr="10.244.0.0/16",
        serviceCidr="10.0.0.0/16", dnsServiceIP="10.0.0.10")
    # kubeconfig: 0600, renamed to the cluster, credentials only in the file
    kubeconfig = c["kubeconfig"]
    assert stat.S_IMODE(os.stat(kubeconfig).st_mode) == 0o600
    cfg = yaml.safe_load(open(kubeconfig))
    assert cfg["current-context"] == "aks1"
    assert cfg["users"][0]["user"]["token"] == "fake-user-token-0123456789"
    assert "fake-user-token" not in repr(r)

    converged(arm, state_dir, s)

    # check mode of a mutable change: no PUT/POST/DELETE
    n = len(arm.writes)
    s2 = settings(kubernetes_version="1.34", tags={"team": "mesh", "env": "dev"},
                  node_pools=[dict(s["node_pools"][0], count=3)])
    r = run(state_dir, s2, check_mode=True)
    assert r["changed"] is True
    assert r["changes"] == ["kubernetes_version", "node_pools.system.count", "tags"]
    assert len(arm.writes) == n

    # upgrade + tags: one managed-cluster PUT of the same pools; the pool's count: its own operation
    r = run(state_dir, s2)
    assert r["rc"] == 0 and r["changed"] is True, r
    assert arm.writes[n:] == [("PUT", MC_PATH), ("PUT", pool_path("system"))]
    put = mc_puts(arm)[-1]
    assert put["properties"]["kubernetesVersion"] == "1.34"
    assert put["properties"]["agentPoolProfiles"][0]["count"] == 2  # unchanged in the cluster PUT
    assert put["tags"] == {"team": "mesh", "env": "dev"}
    # GET -> modify -> PUT: the SDK's serializer left the read-only fields out
    assert "provisioningState" not in put["properties"] and "fqdn" not in put["properties"]
    assert "provisioningState" not in put["properties"]["agentPoolProfiles"][0]
    assert "id" not in put and "currentKubernetesVersion" not in put["properties"]
    pool_put = arm.bodies[-1][2]
    assert pool_put["properties"]["count"] == 3 and pool_put["properties"]["mode"] == "System"
    assert "provisioningState" not in pool_put["properties"] and "id" not in pool_put
    assert r["cluster"]["settings"]["kubernetes_version"] == "1.34.4"
    converged(arm, state_dir, s2)

    # immutable changes are refused with the field path, before any write
    n = len(arm.writes)
    r = run(state_dir, dict(s2, network_profile=dict(s2["network_profile"], pod_cidr="10.250.0.0/16")))
    assert r["rc"] == 1 and r["immutable_fields"] == ["network_profile.pod_cidr"], r
    assert "network_profile.pod_cidr" in r["msg"]
    r = run(state_dir, dict(s2, location="northeurope",
                            node_pools=[dict(s2["node_pools"][0], vm_size="Standard_D8s_v5")]))
    assert r["rc"] == 1 and r["immutable_fields"] == ["location", "node_pools.system.vm_size"], r
    assert len(arm.writes) == n

    # adding a node pool: agentPools PUT, never the managed-cluster PUT
    s3 = dict(s2, node_pools=s2["node_pools"] + [dict(name="user1", vm_size="Standard_D2s_v5", count=1)])
    r = run(state_dir, s3, check_mode=True)
    assert r["changes"] == ["node_pools.user1"] and len(arm.writes) == n
    r = run(state_dir, s3)
    assert r["rc"] == 0 and r["changed"] is True, r
    assert arm.writes[n:] == [("PUT", pool_path("user1"))]
    assert arm.bodies[-1][2] == {"properties": dict(vmSize="Standard_D2s_v5", count=1, mode="User",
                                                    osType="Linux", type="VirtualMachineScaleSets")}
    assert [p["name"] for p in r["cluster"]["settings"]["node_pools"]] == ["system", "user1"]
    converged(arm, state_dir, s3)

    # removing it: agentPools DELETE
    n = len(arm.writes)
    r = run(state_dir, s2, check_mode=True)
    assert r["changes"] == ["node_pools.user1"] and len(arm.writes) == n
    r = run(state_dir, s2)
    assert r["rc"] == 0 and r["changed"] is True, r
    assert arm.writes[n:] == [("DELETE", pool_path("user1"))]
    assert [p["name"] for p in r["cluster"]["settings"]["node_pools"]] == ["system"]

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


# --- System pool ------------------------------------------------------------------------------

def test_first_pool_becomes_system_when_none_is_marked(arm, state_dir):
    # the multicloud example's shape: pools without mode (AKS would answer 400
    # MustDefineAtLeastOneSystemPool if the first went as User)
    s = settings(node_pools=[dict(name="system", vm_size="Standard_D4s_v5", count=3),
                             dict(name="apps", vm_size="Standard_D4s_v5", count=1)])
    r = run(state_dir, s)
    assert r["rc"] == 0, r
    modes = [(p["name"], p["mode"]) for p in mc_puts(arm)[0]["properties"]["agentPoolProfiles"]]
    assert modes == [("system", "System"), ("apps", "User")]
    converged(arm, state_dir, s)
    # a pool marked System elsewhere keeps the first one a User pool
    assert aks.desired_pools([dict(name="a"), dict(name="b", mode="system")]) == [
        dict(name="a", mode="User"), dict(name="b", mode="System")]


def test_the_multicloud_example_converges(arm, state_dir):
    """The AKS cluster of inventories/multicloud-example as written: created (a System pool,
    overlay with its pod CIDR), then converged even after the autoscaler moved the apps pool."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "..", "..", "..", "..", "inventories", "multicloud-example",
                           "mesh.meshfleet.yml")) as f:
        s = yaml.safe_load(f)["clusters"]["aks-weu"]["settings"]
    args = dict(name="aks-weu", provider="aks", settings=s, state_dir=state_dir, wait_timeout=60)
    r = run_module(cluster_module.main, args)
    assert r["rc"] == 0 and r["changed"] is True, r
    put = [b for m, p, b in arm.bodies if m == "PUT"][0]["properties"]
    assert [(p["name"], p["mode"]) for p in put["agentPoolProfiles"]] == [("system", "System"), ("apps", "User")]
    assert put["networkProfile"]["networkPluginMode"] == "overlay"
    arm.autoscale("aks-weu", "apps", 5)
    n = len(arm.writes)
    r = run_module(cluster_module.main, args)
    assert r["rc"] == 0 and r["changed"] is False and arm.writes[n:] == [], r


def test_all_user_pools_refused_before_any_request(arm, state_dir):
    s = settings(node_pools=[dict(name="apps", count=1, mode="User"), dict(name="batch", count=1)])
    r = run(state_dir, s)
    assert r["rc"] == 1 and "settings.node_pools: no System pool" in r["msg"], r
    assert "aks1" in r["msg"] and "mode: System" in r["msg"]
    assert arm.log == []


def test_topology_names_the_key_path():
    topo = dict(mesh=dict(id="m1"), clusters=dict(aks1=dict(
        provider="aks", network="n1", settings=dict(
            resource_group="rg", location="westeurope",
            node_pools=[dict(name="apps", mode="User")],
            network_profile=dict(network_plugin="azure", pod_cidr="10.244.0.0/16")))))
    problems = topology.validate(topo)
    assert [p.split(": ")[0] for p in problems] == [
        "clusters.aks1.settings.node_pools", "clusters.aks1.settings.network_profile.pod_cidr"], problems
    topo["clusters"]["aks1"]["settings"]["node_pools"] = [dict(name="apps")]
    topo["clusters"]["aks1"]["settings"]["network_profile"]["network_plugin_mode"] = "overlay"
    assert topology.validate(topo) == []


def test_replacing_the_system_pool_keeps_one_at_every_step(arm, state_dir):
    s = settings()
    assert run(state_dir, s)["rc"] == 0
    n = len(arm.writes)
    # a new first pool without mode becomes the System pool; the old one goes
    s2 = settings(node_pools=[dict(name="sys2", vm_size="Standard_D4s_v5", count=2)])
    r = run(state_dir, s2)
    assert r["rc"] == 0 and r["changed"] is True, r
    # create first, then delete: the fake refuses deleting the last System pool
    assert arm.writes[n:] == [("PUT", pool_path("sys2")), ("DELETE", pool_path("system"))]
    assert arm.bodies[-2][2]["properties"]["mode"] == "System"
    converged(arm, state_dir, s2)
    # swap the roles of two existing pools: the new System pool first, then the old one to User
    s3 = settings(node_pools=[dict(name="sys2", vm_size="Standard_D4s_v5", count=2, mode="User"),
                              dict(name="apps", vm_size="Standard_D4s_v5", count=1, mode="System")])
    n = len(arm.writes)
    r = run(state_dir, s3)
    assert r["rc"] == 0, r
    assert arm.writes[n:] == [("PUT", pool_path("apps")), ("PUT", pool_path("sys2"))]
    assert [(p["name"], p["mode"]) for p in r["cluster"]["settings"]["node_pools"]] == [
        ("sys2", "User"), ("apps", "System")]


def test_removing_the_last_system_pool_is_refused_before_any_request(arm, state_dir):
    assert run(state_dir, settings())["rc"] == 0
    # settings that the validation refuses anyway (all User); the plan refuses on its own too
    p = aks.AksProvider("aks1", settings(node_pools=[dict(name="apps", count=1, mode="User")]),
                        state_dir)
    observed = [dict(name="system", mode="System"), dict(name="apps", mode="User")]
    with pytest.raises(aks.MeshfleetError,
                       match=r"removing pool system would leave the cluster without a System pool"):
        p.pool_plan(observed, {"node_pools.system": ({}, None)})
    p = aks.AksProvider("aks1", settings(node_pools=[dict(name="system", count=1, mode="User")]),
                        state_dir)
    with pytest.raises(aks.MeshfleetError, match="making User the pool system"):
        p.pool_plan(observed[:1], {"node_pools.system.mode": ("System", "User")})
    n = len(arm.writes)
    r = run(state_dir, settings(node_pools=[dict(name="apps", count=1, mode="User")]))
    assert r["rc"] == 1 and "no System pool" in r["msg"] and arm.writes[n:] == []


# --- autoscaler -----------------------------------------------------------------------------

def test_autoscaler_owns_the_count(arm, state_dir):
    pool = dict(name="system", vm_size="Standard_D4s_v5", count=2, min_count=1, max_count=5)
    s = settings(node_pools=[pool])
    r = run(state_dir, s)
    assert r["rc"] == 0, r
    body = mc_puts(arm)[0]["properties"]["agentPoolProfiles"][0]
    assert (body["count"], body["enableAutoScaling"], body["minCount"], body["maxCount"]) == (2, True, 1, 5)
    # the autoscaler moves the count between runs: no change, NO write
    arm.autoscale("aks1", "system", 4)
    r = converged(arm, state_dir, s)
    assert r["cluster"]["settings"]["node_pools"][0]["count"] == 4
    arm.autoscale("aks1", "system", 1)
    converged(arm, state_dir, s)
    arm.autoscale("aks1", "system", 3)
    # a bound changes: the agent pool operation, with the autoscaler's count left as it is
    n = len(arm.writes)
    s2 = settings(node_pools=[dict(pool, max_count=6)])
    r = run(state_dir, s2, check_mode=True)
    assert r["changes"] == ["node_pools.system.max_count"]
    r = run(state_dir, s2)
    assert r["rc"] == 0 and r["changed"] is True, r
    assert arm.writes[n:] == [("PUT", pool_path("system"))]
    props = arm.bodies[-1][2]["properties"]
    assert (props["count"], props["minCount"], props["maxCount"], props["enableAutoScaling"]) == (3, 1, 6, True)
    converged(arm, state_dir, s2)
    # an upgrade re-sends the pools as they are (count 3, the autoscaler's): accepted
    n = len(arm.writes)
    arm.autoscale("aks1", "system", 5)
    r = run(state_dir, dict(s2, kubernetes_version="1.34"))
    assert r["rc"] == 0 and arm.writes[n:] == [("PUT", MC_PATH)], r
    assert mc_puts(arm)[-1]["properties"]["agentPoolProfiles"][0]["count"] == 5


def test_enabling_the_autoscaler_never_scales_in_the_same_update(arm, state_dir):
    s = settings(node_pools=[dict(name="system", vm_size="Standard_D4s_v5", count=2)])
    assert run(state_dir, s)["rc"] == 0
    n = len(arm.writes)
    # count 3 as the new initial size: AKS refuses a scale together with enabling the autoscaler
    s2 = settings(node_pools=[dict(name="system", vm_size="Standard_D4s_v5", count=3, min_count=2,
                                   max_count=5)])
    r = run(state_dir, s2)
    assert r["rc"] == 0 and r["changed"] is True, r
    assert arm.writes[n:] == [("PUT", pool_path("system"))]
    props = arm.bodies[-1][2]["properties"]
    assert (props["count"], props["enableAutoScaling"], props["minCount"], props["maxCount"]) == (2, True, 2, 5)
    converged(arm, state_dir, s2)
    # turned off again: sized by count, bounds dropped
    n = len(arm.writes)
    s3 = settings(node_pools=[dict(name="system", vm_size="Standard_D4s_v5", count=3,
                                   enable_auto_scaling=False)])
    r = run(state_dir, s3)
    assert r["rc"] == 0 and arm.writes[n:] == [("PUT", pool_path("system"))], r
    props = arm.bodies[-1][2]["properties"]
    assert props["enableAutoScaling"] is False and props["count"] == 3
    assert props.get("minCount") is None and props.get("maxCount") is None
    converged(arm, state_dir, s3)


# --- network -------------------------------------------------------------------------------

def test_pod_cidr_with_azure_cni_needs_overlay(arm, state_dir):
    net = dict(network_plugin="azure", pod_cidr="10.244.0.0/16")
    r = run(state_dir, settings(network_profile=net))
    assert r["rc"] == 1 and "settings.network_profile.pod_cidr" in r["msg"] and "overlay" in r["msg"], r
    assert arm.log == []
    # kubenet takes a pod CIDR; plain Azure CNI without one is fine
    r = run(state_dir, settings(network_profile=dict(network_plugin="kubenet", pod_cidr="10.244.0.0/16")))
    assert r["rc"] == 0, r
    assert mc_puts(arm)[0]["properties"]["networkProfile"] == dict(networkPlugin="kubenet",
                                                                   podCidr="10.244.0.0/16")


# --- endpoints and credentials -----------------------------------------------------------------

def test_arm_endpoint_is_the_base_url_and_the_token_scope(arm, state_dir):
    s = settings(arm_endpoint="https://arm.example.test/")
    r = run(state_dir, s)
    assert r["rc"] == 0, r
    assert set(q["base_url"] for q in arm.requests) == {"https://arm.example.test"}  # LRO URLs too
    assert set(arm.credential.scopes) == {"https://arm.example.test/.default"}


def test_cloud_environment_picks_endpoint_and_scope(arm, state_dir):
    r = run(state_dir, settings(cloud_environment="AzureUSGovernment", location="usgovvirginia"))
    assert r["rc"] == 0, r
    assert set(q["base_url"] for q in arm.requests) == {"https://management.usgovcloudapi.net"}
    assert set(arm.credential.scopes) == {"https://management.core.usgovcloudapi.net/.default"}


@pytest.mark.parametrize("over, env, want", [
    ({}, {}, dict(base_url="https://management.azure.com",
                  credential_scopes=["https://management.azure.com/.default"],
                  authority="login.microsoftonline.com", disable_instance_discovery=False)),
    (dict(cloud_environment="AzureChinaCloud"), {}, dict(
        base_url="https://management.chinacloudapi.cn",
        credential_scopes=["https://management.chinacloudapi.cn/.default"],
        authority="login.chinacloudapi.cn", disable_instance_discovery=False)),
    (dict(cloud_environment="AzureUSGovernment"), {}, dict(
        base_url="https://management.usgovcloudapi.net",
        credential_scopes=["https://management.core.usgovcloudapi.net/.default"],
        authority="login.microsoftonline.us", disable_instance_discovery=False)),
    (dict(arm_endpoint="https://management.local.azurestack.external"),
     {"AZURE_AUTHORITY_HOST": "https://adfs.local.azurestack.external/adfs"}, dict(
         base_url="https://management.local.azurestack.external",
         credential_scopes=["https://management.local.azurestack.external/.default"],
         authority="https://adfs.local.azurestack.external/adfs", disable_instance_discovery=True)),
    ({}, {"AZURE_AUTHORITY_HOST": "https://login.microsoftonline.us"}, dict(
        base_url="https://management.azure.com", credential_scopes=["https://management.azure.com/.default"],
        authority="https://login.microsoftonline.us", disable_instance_discovery=False)),
])
def test_arm_endpoints(over, env, want):
    assert aks.arm_endpoints(over, env) == want


def test_credential_construction_kwargs(monkeypatch, state_dir):
    """The credential and client the provider builds (no network: nothing asks for a token)."""
    import azure.identity
    made = []

    class Recorder(object):
        def __init__(self, **kwargs):
            made.append(kwargs)

    monkeypatch.setattr(aks.AksProvider, "sdk_hooks", {})
    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", Recorder)
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUB)
    for k, v in dict(AZURE_CLIENT_ID="c", AZURE_TENANT_ID="t", AZURE_CLIENT_SECRET="s").items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AZURE_AUTHORITY_HOST", raising=False)

    def client(**over):
        p = aks.AksProvider("aks1", settings(**over), state_dir)
        p.validate()
        return p.client

    c = client()
    assert made[-1] == dict(authority="login.microsoftonline.com")
    assert c._config.base_url == "https://management.azure.com"
    assert c._config.credential_scopes == ["https://management.azure.com/.default"]
    c = client(cloud_environment="AzureChinaCloud")
    assert made[-1] == dict(authority="login.chinacloudapi.cn")
    assert c._config.credential_scopes == ["https://management.chinacloudapi.cn/.default"]
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", "login.example.test")
    c = client(arm_endpoint="https://arm.example.test")
    assert made[-1] == dict(authority="login.example.test", disable_instance_discovery=True)
    assert c._config.base_url == "https://arm.example.test"
    assert c._config.credential_scopes == ["https://arm.example.test/.default"]


def test_real_credentials_accept_disable_instance_discovery(monkeypatch):
    """azure-identity's DefaultAzureCredential hands the keywords to its service-principal
    credential; ClientSecretCredential takes them directly (construction only, no network)."""
    from azure.identity import ClientSecretCredential, DefaultAzureCredential
    for k, v in dict(AZURE_CLIENT_ID="c", AZURE_TENANT_ID="t", AZURE_CLIENT_SECRET="s").items():
        monkeypatch.setenv(k, v)
    ep = aks.arm_endpoints({}, {"AZURE_AUTHORITY_HOST": "https://login.example.test"})
    dac = DefaultAzureCredential(**aks.credential_kwargs(ep))
    env_cred = [c for c in dac.credentials if type(c).__name__ == "EnvironmentCredential"][0]
    inner = env_cred._credential
    assert type(inner).__name__ == "ClientSecretCredential"
    assert inner._authority == "https://login.example.test" and inner._instance_discovery is False
    csc = ClientSecretCredential("t", "c", "s", **aks.credential_kwargs(ep))
    assert csc._authority == "https://login.example.test" and csc._instance_discovery is False
    # Microsoft's own authority: instance discovery stays on
    ep = aks.arm_endpoints(dict(cloud_environment="AzureChinaCloud"), {})
    csc = ClientSecretCredential("t", "c", "s", **aks.credential_kwargs(ep))
    assert csc._authority == "https://login.chinacloudapi.cn" and csc._instance_discovery is None


def test_clouds_match_the_validation_and_the_sdk():
    from azure.core import AzureClouds
    from azure.mgmt.core.tools import get_arm_endpoints
    assert sorted(aks.CLOUDS) == sorted(topology.AKS_CLOUD_ENVIRONMENTS)
    sdk = dict(AzurePublicCloud=AzureClouds.AZURE_PUBLIC_CLOUD, AzureChinaCloud=AzureClouds.AZURE_CHINA_CLOUD,
               AzureUSGovernment=AzureClouds.AZURE_US_GOVERNMENT)
    for name, cloud in aks.CLOUDS.items():
        want = get_arm_endpoints(sdk[name])
        assert cloud["arm"] == want["resource_manager"].rstrip("/") and [cloud["scope"]] == want["credential_scopes"]


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


# --- injected failures: a clear message (cluster, operation, HTTP status, ARM code), then a
# --- re-run converges ------------------------------------------------------------------------

def test_failure_create_dies_half_way_then_rerun_reconciles(arm, state_dir):
    s = settings()
    arm.fail_operation("PUT", "/managedClusters/aks1", code="VMExtensionProvisioningError",
                       message="Unable to establish outbound connection from agents (exit status=50)")
    r = run(state_dir, s)
    assert r["rc"] == 1, r
    assert r["msg"].startswith("AKS creation of cluster aks1 failed (HTTP 201, then the operation ended "
                               "Failed, VMExtensionProvisioningError): Unable to establish"), r["msg"]
    assert arm.clusters and list(arm.clusters.values())[0]["properties"]["provisioningState"] == "Failed"
    n = len(arm.writes)
    r = run(state_dir, s, check_mode=True)
    assert r["changed"] is True and r["changes"] == ["provisioning_state"] and arm.writes[n:] == []
    r = run(state_dir, s)
    assert r["rc"] == 0 and r["changed"] is True and r["cluster"]["ready"] is True, r
    assert arm.writes[n:] == [("PUT", MC_PATH)]  # the same cluster re-PUT
    converged(arm, state_dir, s)


def test_failure_agent_pool_operation_fails(arm, state_dir):
    s = settings()
    assert run(state_dir, s)["rc"] == 0
    s2 = dict(s, node_pools=s["node_pools"] + [dict(name="user1", vm_size="Standard_D2s_v5", count=2)])
    arm.fail_operation("PUT", "/agentPools/user1", code="AllocationFailed",
                       message="Allocation failed. We do not have sufficient capacity for the requested VM size")
    r = run(state_dir, s2)
    assert r["rc"] == 1
    assert r["msg"].startswith("AKS agent pool user1 creation of cluster aks1 failed (HTTP 201, then the "
                               "operation ended Failed, AllocationFailed)"), r["msg"]
    n = len(arm.writes)
    r = run(state_dir, s2)
    assert r["rc"] == 0 and r["changed"] is True and r["cluster"]["ready"] is True, r
    assert arm.writes[n:] == [("PUT", MC_PATH)]  # the Failed cluster (and its pool) reconciled
    assert arm.pools("aks1")["user1"]["provisioningState"] == "Succeeded"
    converged(arm, state_dir, s2)


@pytest.mark.parametrize("listed", [True, False])
def test_a_pool_left_failed_is_put_again(arm, state_dir, listed):
    """A pool whose last operation failed while the cluster itself is fine (e.g. a scale the
    autoscaler started): its agent pool is re-PUT as it is, listed in the settings or not."""
    s = settings(node_pools=[dict(name="system", vm_size="Standard_D4s_v5", count=2),
                             dict(name="apps", vm_size="Standard_D4s_v5", count=1)])
    assert run(state_dir, s)["rc"] == 0
    arm.pools("aks1")["apps"]["provisioningState"] = "Failed"
    s2 = s if listed else dict((k, v) for k, v in s.items() if k != "node_pools")
    n = len(arm.writes)
    r = run(state_dir, s2, check_mode=True)
    assert r["changes"] == ["node_pools.apps.provisioning_state"] and arm.writes[n:] == []
    r = run(state_dir, s2)
    assert r["rc"] == 0 and r["changed"] is True, r
    assert arm.writes[n:] == [("PUT", pool_path("apps"))]
    props = arm.bodies[-1][2]["properties"]
    assert (props["count"], props["mode"], props["vmSize"]) == (1, "User", "Standard_D4s_v5")
    assert arm.pools("aks1")["apps"]["provisioningState"] == "Succeeded"
    converged(arm, state_dir, s2)


def test_failure_throttled_then_retried_after_retry_after(arm, state_dir):
    arm.fail("GET", "/managedClusters/aks1", 429, code="TooManyRequests",
             message="throttled", headers={"Retry-After": "7"}, times=1)
    r = run(state_dir, settings())
    assert r["rc"] == 0 and r["changed"] is True, r
    assert arm.log[:2] == [("GET", MC_PATH), ("GET", MC_PATH)]
    assert arm.transport.sleeps[0] == 7


def test_failure_throttled_beyond_the_retries(arm, state_dir):
    arm.fail("GET", "/managedClusters/aks1", 429, code="TooManyRequests",
             message="The request is being throttled.", headers={"Retry-After": "3"}, times=100)
    r = run(state_dir, settings())
    assert r["rc"] == 1
    assert r["msg"] == ("AKS read of cluster aks1 failed (HTTP 429, TooManyRequests): The request is "
                        "being throttled."), r["msg"]
    assert arm.transport.sleeps.count(3) >= 3  # the SDK retried, honouring Retry-After
    arm.faults.clear()
    r = run(state_dir, settings())
    assert r["rc"] == 0 and r["changed"] is True, r
    converged(arm, state_dir, settings())


def test_failure_conflict_injected(arm, state_dir):
    arm.fail("PUT", "/managedClusters/aks1", 409, code="OperationNotAllowed",
             message="Operation is not allowed because there's an in progress create managed cluster "
                     "operation")
    r = run(state_dir, settings())
    assert r["rc"] == 1
    assert r["msg"].startswith("AKS creation of cluster aks1 failed (HTTP 409, OperationNotAllowed): "), r
    r = run(state_dir, settings())
    assert r["rc"] == 0 and r["changed"] is True, r
    converged(arm, state_dir, settings())


def test_failure_conflict_from_service_state(arm, state_dir):
    # start a create without waiting, then try to change it while the operation runs
    r = run(state_dir, settings(), args=dict(wait=False))
    assert r["rc"] == 0 and r["changed"] is True and r["cluster"]["ready"] is False, r
    assert not os.path.exists(r["cluster"]["kubeconfig"])
    s2 = settings(tags={"x": "y"})
    r = run(state_dir, s2, args=dict(wait=False))
    assert r["rc"] == 1
    assert r["msg"].startswith("AKS update of cluster aks1 failed (HTTP 409, OperationNotAllowed): "
                               "Operation is not allowed because there's an in progress create"), r["msg"]
    arm.finish_operations()  # time passes
    r = run(state_dir, s2)
    assert r["rc"] == 0 and r["changed"] is True and r["cluster"]["ready"] is True, r
    converged(arm, state_dir, s2)


def test_failure_quota_exceeded(arm, state_dir):
    arm.vcpu_quota = 12
    s = settings()  # 2 x Standard_D4s_v5 = 8 vCPUs
    assert run(state_dir, s)["rc"] == 0
    s2 = dict(s, node_pools=s["node_pools"] + [dict(name="user1", vm_size="Standard_D4s_v5", count=2)])
    n = len(arm.writes)
    r = run(state_dir, s2)
    assert r["rc"] == 1
    assert r["msg"].startswith("AKS agent pool user1 creation of cluster aks1 failed (HTTP 400, "
                               "ErrCode_InsufficientVCPUQuota): Insufficient regional vcpu quota"), r["msg"]
    assert "user1" not in arm.pools("aks1")  # refused up front: nothing was made
    arm.vcpu_quota = 32  # the quota was raised
    r = run(state_dir, s2)
    assert r["rc"] == 0 and r["changed"] is True, r
    assert arm.writes[n:] == [("PUT", pool_path("user1")), ("PUT", pool_path("user1"))]
    converged(arm, state_dir, s2)


def test_error_messages_carry_no_token(arm, state_dir):
    arm.fail("PUT", "/managedClusters/aks1", 400, code="InvalidParameter", message="bad")
    r = run(state_dir, settings())
    assert r["rc"] == 1 and "fake-arm-token" not in json.dumps(r)


# --- the fake itself refuses what ARM refuses (model API, as an HTTPS server would call it) ---

class Arm(object):
    """FakeArm.handle with the headers and api-version every request carries."""

    def __init__(self):
        self.arm = FakeArm(polls_before_done=0)

    def __call__(self, method, path, body=None, query=None):
        q = {"api-version": "2026-08-01"}
        q.update(query or {})
        status, headers, payload = self.arm.handle(
            method, path, q, {"Authorization": "Bearer fake-arm-token"},
            json.dumps(body) if body is not None else None)
        return status, headers, payload

    def settle(self):
        self.arm.finish_operations()


def cluster_body(pools, net=None):
    props = dict(dnsPrefix="aks1", agentPoolProfiles=pools)
    if net:
        props["networkProfile"] = net
    return dict(location="westeurope", properties=props)


SYS = dict(name="system", vmSize="Standard_D4s_v5", count=2, mode="System")


def test_docs_tables_name_these_tests_and_the_fakes_sources():
    """docs/providers.md's AKS rows of "Rules the fakes enforce" and "Injected failures" name
    tests that exist here, and cite every issue the fake's RULES cite."""
    import re
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "..", "..", "..", "..", "docs", "providers.md")) as f:
        docs = f.read()
    rules = docs.split("## Rules the fakes enforce", 1)[1].split("\n### aks", 1)[1].split("\n## ", 1)[0]
    failures = docs.split("## Injected failures", 1)[1].split("\n### aks", 1)[1].split("\n## ", 1)[0]
    module = sys.modules[__name__]
    for table in (rules, failures):
        names = re.findall(r"`(test_\w+)`", table)
        assert names and all(callable(getattr(module, n, None)) for n in names), names
    for source in RULES.values():
        for ref in re.findall(r"[\w.-]+/[\w.-]+#\d+", source):
            assert ref in rules, ref
    failure_tests = set(n for n in dir(module) if n.startswith("test_failure_"))
    assert failure_tests <= set(re.findall(r"`(test_\w+)`", failures))


def test_fake_refuses_a_cluster_without_system_pool():
    arm = Arm()
    status, _h, body = arm("PUT", MC_PATH, cluster_body([dict(SYS, mode="User")]))
    assert status == 400 and body["error"]["code"] == "MustDefineAtLeastOneSystemPool"
    status, _h, body = arm("PUT", MC_PATH, cluster_body([{k: v for k, v in SYS.items() if k != "mode"}]))
    assert status == 400 and body["error"]["code"] == "MustDefineAtLeastOneSystemPool"  # no mode = User
    assert arm("PUT", MC_PATH, cluster_body([SYS]))[0] == 201
    arm.settle()
    # ... and after every update: managed-cluster PUT, agent pool PUT, agent pool DELETE
    status, _h, body = arm("PUT", MC_PATH, cluster_body([dict(SYS, mode="User")]))
    assert status == 400 and body["error"]["code"] == "MustDefineAtLeastOneSystemPool"
    status, _h, body = arm("PUT", pool_path("system"), {"properties": dict(SYS, mode="User")})
    assert status == 400 and body["error"]["code"] == "MustDefineAtLeastOneSystemPool"
    status, _h, body = arm("DELETE", pool_path("system"))
    assert status == 400 and body["error"]["code"] == "MustDefineAtLeastOneSystemPool"


def test_fake_refuses_pool_changes_through_the_cluster_put():
    arm = Arm()
    assert arm("PUT", MC_PATH, cluster_body([SYS]))[0] == 201
    arm.settle()
    status, _h, body = arm("PUT", MC_PATH, cluster_body([SYS, dict(SYS, name="user1", mode="User")]))
    assert status == 400 and "Adding agent pools to an existing cluster is not allowed" in body["error"]["message"]
    assert arm("PUT", pool_path("user1"), {"properties": dict(SYS, mode="User")})[0] == 201
    arm.settle()
    status, _h, body = arm("PUT", MC_PATH, cluster_body([SYS]))
    assert status == 400 and "Removing agent pools from an existing cluster" in body["error"]["message"]
    assert arm("DELETE", pool_path("user1"))[0] == 202


def test_fake_refuses_manual_scale_of_an_autoscaled_pool():
    arm = Arm()
    auto = dict(SYS, enableAutoScaling=True, minCount=1, maxCount=5)
    assert arm("PUT", MC_PATH, cluster_body([auto]))[0] == 201
    arm.settle()
    status, _h, body = arm("PUT", pool_path("system"), {"properties": dict(auto, count=4)})
    assert status == 400 and "Cannot manually scale AgentPool 'system' with cluster autoscaler" in \
        body["error"]["message"]
    status, _h, body = arm("PUT", MC_PATH, cluster_body([dict(auto, count=4)]))
    assert status == 400 and "Cannot manually scale" in body["error"]["message"]
    assert arm("PUT", pool_path("system"), {"properties": dict(auto, maxCount=6)})[0] == 200


def test_fake_refuses_enabling_the_autoscaler_with_a_manual_scale():
    arm = Arm()
    assert arm("PUT", MC_PATH, cluster_body([SYS]))[0] == 201
    arm.settle()
    status, _h, body = arm("PUT", pool_path("system"), {"properties": dict(
        SYS, count=3, enableAutoScaling=True, minCount=1, maxCount=5)})
    assert status == 400 and "Cannot manually scale and enable cluster autoscaler in the same update" in \
        body["error"]["message"]
    assert arm("PUT", pool_path("system"), {"properties": dict(
        SYS, enableAutoScaling=True, minCount=1, maxCount=5)})[0] == 200


def test_fake_refuses_pod_cidr_with_azure_cni_without_overlay():
    arm = Arm()
    status, _h, body = arm("PUT", MC_PATH, cluster_body([SYS], dict(networkPlugin="azure", podCidr="10.244.0.0/16")))
    assert status == 400 and "podCidr" in body["error"]["message"]
    overlay = dict(networkPlugin="azure", networkPluginMode="overlay", podCidr="10.244.0.0/16")
    assert arm("PUT", MC_PATH, cluster_body([SYS], overlay))[0] == 201


def test_fake_conflict_quota_lro_failure_and_api_version():
    arm = Arm()
    status, _h, body = arm("PUT", MC_PATH, cluster_body([SYS]), query={"api-version": ""})
    assert status == 400 and body["error"]["code"] == "MissingApiVersionParameter"
    assert arm("PUT", MC_PATH, cluster_body([SYS]))[0] == 201
    status, _h, body = arm("PUT", pool_path("user1"), {"properties": dict(SYS, mode="User")})
    assert status == 409 and body["error"]["code"] == "OperationNotAllowed"  # the create still runs
    arm.settle()
    arm.arm.vcpu_quota = 10
    status, _h, body = arm("PUT", pool_path("user1"), {"properties": dict(SYS, mode="User")})
    assert status == 400 and body["error"]["code"] == "ErrCode_InsufficientVCPUQuota"
    arm.arm.fail_operation("PUT", "/agentPools/user1", code="AllocationFailed", message="no capacity")
    arm.arm.vcpu_quota = None
    status, headers, _b = arm("PUT", pool_path("user1"), {"properties": dict(SYS, mode="User")})
    assert status == 201
    op = headers["Azure-AsyncOperation"].split("https://management.azure.com", 1)[1].split("?")[0]
    status, _h, body = arm("GET", op)
    assert status == 200 and body["status"] == "Failed" and body["error"]["code"] == "AllocationFailed"
    assert arm.arm.pools("aks1")["user1"]["provisioningState"] == "Failed"
    status, _h, body = arm("GET", MC_PATH)
    assert body["properties"]["provisioningState"] == "Failed"
    # the operation URLs point back at the base URL the client used (an HTTPS server's own)
    status, headers, _b = arm.arm.handle("PUT", MC_PATH, {"api-version": "1"},
                                         {"Authorization": "Bearer fake-arm-token"},
                                         json.dumps(cluster_body([SYS, dict(SYS, name="user1", mode="User")])),
                                         base_url="https://127.0.0.1:8443")
    assert status == 200 and headers["Azure-AsyncOperation"].startswith("https://127.0.0.1:8443/subscriptions/")
