# -*- coding: utf-8 -*-
"""The cloud simulator (tests/fakes/cloudsim) over real sockets, with the real SDKs.

The sim runs in this process without kwok clusters (``with_kube=False``: a cluster is ready at
once, its credentials point at a closed port); the end-to-end test
(tests/integration/test_multicloud_fakes.py) runs it as a process with kwok clusters.
"""

from __future__ import absolute_import, division, print_function

import base64
import json
import time

import pytest
import requests

from ansible_collections.meshfleet.mesh.tests.fakes.cloudsim.sim import CloudSim


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = CloudSim(str(tmp_path_factory.mktemp("cloudsim")), with_kube=False, token_ttl=120).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def ca_env(sim, monkeypatch):
    for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", sim.pki["ca"])
    return sim


def test_https_only_with_the_sims_ca(sim):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(sim.url + "/sim/health", timeout=5, verify=True)
    assert requests.get(sim.url + "/sim/health", timeout=5, verify=sim.pki["ca"]).json() == {"ok": True}


def _azure_client(sim, secret=None):
    from azure.identity import ClientSecretCredential
    from azure.mgmt.containerservice import ContainerServiceClient
    cred = ClientSecretCredential(sim.azure["tenant_id"], sim.azure["client_id"],
                                  secret or sim.azure["client_secret"], authority=sim.url,
                                  disable_instance_discovery=True)
    return ContainerServiceClient(cred, sim.azure["subscription_id"], base_url=sim.url,
                                  credential_scopes=["https://management.azure.com/.default"],
                                  polling_interval=0.1)


def test_aks_lifecycle_through_aad_and_arm(ca_env):
    sim = ca_env
    client = _azure_client(sim)
    body = {"location": "westeurope", "identity": {"type": "SystemAssigned"},
            "properties": {"dnsPrefix": "aks1", "agentPoolProfiles": [
                {"name": "system", "count": 3, "vmSize": "Standard_D4s_v5", "mode": "System"}]}}
    mc = client.managed_clusters.begin_create_or_update("rg1", "aks1", body).result()
    assert mc.provisioning_state == "Succeeded"
    creds = client.managed_clusters.list_cluster_user_credentials("rg1", "aks1")
    kubeconfig = json.loads(creds.kubeconfigs[0].value)
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:9"
    token = kubeconfig["users"][0]["user"]["token"]
    # the cluster's API server asks the sim's webhook about that token
    review = requests.post(sim.url + "/sim/tokenreview/aks/aks1", json={
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}},
        timeout=5).json()
    assert review["status"]["authenticated"] is True
    assert "system:masters" in review["status"]["user"]["groups"]
    wrong = requests.post(sim.url + "/sim/tokenreview/aks/other", json={"spec": {"token": token}},
                          timeout=5).json()
    assert wrong["status"]["authenticated"] is False
    inv = requests.get(sim.url + "/sim/inventory", timeout=5).json()
    assert [(c["name"], c["pools"][0]["count"]) for c in inv["clusters"]["aks"]] == [("aks1", 3)]
    client.managed_clusters.begin_delete("rg1", "aks1").result()
    assert requests.get(sim.url + "/sim/inventory", timeout=5).json()["clusters"]["aks"] == []


def test_aad_refuses_a_wrong_secret_and_arm_a_missing_token(ca_env):
    from azure.core.exceptions import ClientAuthenticationError
    sim = ca_env
    with pytest.raises(ClientAuthenticationError) as e:
        _azure_client(sim, secret="wrong").managed_clusters.get("rg1", "nope")
    assert "AADSTS7000215" in str(e.value)
    r = requests.get(sim.url + "/subscriptions/%s/resourceGroups/rg1/providers/Microsoft.ContainerService/"
                     "managedClusters/x" % sim.azure["subscription_id"], timeout=5)
    assert r.status_code == 401 and r.json()["error"]["code"] == "AuthenticationFailed"


def test_gke_lifecycle_with_the_sa_key_and_token_endpoint(ca_env):
    from google.cloud.container_v1 import ClusterManagerClient
    from google.oauth2 import service_account
    sim = ca_env
    creds = service_account.Credentials.from_service_account_file(
        sim.sa_key_file, scopes=["https://www.googleapis.com/auth/cloud-platform"])
    client = ClusterManagerClient(credentials=creds, transport="rest",
                                  client_options={"api_endpoint": sim.url})
    parent = "projects/acme-mesh-prod/locations/europe-west1"
    pool = {"name": "default", "initial_node_count": 3, "config": {"machine_type": "e2-standard-4"}}
    op = client.create_cluster(parent=parent, cluster={"name": "gke1", "node_pools": [pool]})
    for _i in range(20):
        if client.get_operation(name="%s/operations/%s" % (parent, op.name)).status.name == "DONE":
            break
    cluster = client.get_cluster(name=parent + "/clusters/gke1")
    assert cluster.status.name == "RUNNING" and cluster.endpoint == "127.0.0.1:9"
    assert base64.b64decode(cluster.master_auth.cluster_ca_certificate).decode() == open(sim.pki["ca"]).read()
    # an access token from the sim's token endpoint is what the API server's webhook accepts
    import google.auth.transport.requests
    creds.refresh(google.auth.transport.requests.Request())
    ok = requests.post(sim.url + "/sim/tokenreview/gke/gke1", json={"spec": {"token": creds.token}},
                       timeout=5).json()
    assert ok["status"]["authenticated"] is True
    sim.google_tokens[creds.token] = time.time() - 1   # expired
    expired = requests.post(sim.url + "/sim/tokenreview/gke/gke1", json={"spec": {"token": creds.token}},
                            timeout=5).json()
    assert expired["status"]["authenticated"] is False and "expired" in expired["status"]["error"]
    client.delete_cluster(name=parent + "/clusters/gke1")


def test_google_token_endpoint_refuses_a_jwt_from_another_key(ca_env, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.auth.exceptions import RefreshError
    from google.oauth2 import service_account
    import google.auth.transport.requests
    sim = ca_env
    info = sim.sa_key.info()
    info["private_key"] = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    creds = service_account.Credentials.from_service_account_info(
        info, scopes=["https://www.googleapis.com/auth/cloud-platform"])
    with pytest.raises(RefreshError) as e:
        creds.refresh(google.auth.transport.requests.Request())
    assert "signature" in str(e.value)


def _eks_token(sim, cluster, monkeypatch, **kw):
    import boto3
    from ansible_collections.meshfleet.mesh.plugins.module_utils.providers.eks import eks_token
    for k, v in dict(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing").items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    session = boto3.session.Session(region_name=sim.aws_region)
    return eks_token(session, cluster, sim.aws_region, endpoint_url=sim.moto_url)


def test_eks_token_checked_like_aws_iam_authenticator(ca_env, monkeypatch):
    sim = ca_env
    token = _eks_token(sim, "eks1", monkeypatch)
    good = requests.post(sim.url + "/sim/tokenreview/eks/eks1", json={"spec": {"token": token}},
                         timeout=10).json()
    assert good["status"]["authenticated"] is True, good
    assert good["status"]["user"]["uid"].startswith("arn:aws:")
    other = requests.post(sim.url + "/sim/tokenreview/eks/eks2", json={"spec": {"token": token}},
                          timeout=10).json()
    assert other["status"]["authenticated"] is False
    # a URL signed 16 minutes ago is refused (EKS accepts a token for 15 minutes)
    raw = token[len("k8s-aws-v1."):]
    url = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    old = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 16 * 60))
    import re
    stale_url = re.sub(r"X-Amz-Date=\d{8}T\d{6}Z", "X-Amz-Date=" + old, url)
    stale = "k8s-aws-v1." + base64.urlsafe_b64encode(stale_url.encode()).decode().rstrip("=")
    res = requests.post(sim.url + "/sim/tokenreview/eks/eks1", json={"spec": {"token": stale}},
                        timeout=10).json()
    assert res["status"]["authenticated"] is False and "expired" in res["status"]["error"]


def test_eks_cluster_in_moto_gets_the_sims_endpoint(ca_env):
    sim = ca_env
    eks = sim.boto("eks")
    eks.create_cluster(name="eks1", roleArn="arn:aws:iam::123456789012:role/eks",
                       resourcesVpcConfig={"subnetIds": sim.aws["subnet_ids"]})
    c = eks.describe_cluster(name="eks1")["cluster"]
    assert c["status"] == "ACTIVE" and c["endpoint"] == "https://127.0.0.1:9"
    assert base64.b64decode(c["certificateAuthority"]["data"]).decode().startswith("-----BEGIN CERTIFICATE")
    eks.delete_cluster(name="eks1")
    left = requests.get(sim.url + "/sim/inventory", timeout=5).json()["clusters"]["eks"]
    assert "eks1" not in [(c["name"]) for c in left if c["region"] == sim.aws_region]


def test_openstack_through_openstacksdk(ca_env, monkeypatch):
    import openstack
    sim = ca_env
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", sim.clouds_yaml())
    conn = openstack.connect(cloud="onprem")
    assert "m1.medium" in [f.name for f in conn.compute.flavors()]
    net = conn.network.find_network("billing-net")
    image = conn.image.find_image("ubuntu-24.04")
    flavor = conn.compute.find_flavor("m1.medium")
    server = conn.compute.create_server(name="billing-1", image_id=image.id, flavor_id=flavor.id,
                                        networks=[{"uuid": net.id}])
    server = conn.compute.wait_for_server(server, wait=30, interval=0.1)
    assert server.status == "ACTIVE"
    vms = requests.get(sim.url + "/sim/inventory", timeout=5).json()["vms"]
    assert [v["name"] for v in vms if v["provider"] == "openstack"] == ["billing-1"]
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=30, interval=0.1)
    vms = requests.get(sim.url + "/sim/inventory", timeout=5).json()["vms"]
    assert [v for v in vms if v["provider"] == "openstack"] == []


def test_load_balancer_records(ca_env):
    sim = ca_env
    svc = {"metadata": {"namespace": "istio-system", "name": "istio-eastwestgateway", "uid": "u1"}}
    address = sim.create_lb("eks/eks9", svc)
    assert address.startswith("127.0.0.") and address != "127.0.0.1"
    assert sim.create_lb("eks/eks9", svc) == address          # idempotent
    arn = sim.lbs[("eks/eks9", "istio-system", "istio-eastwestgateway")]["id"]
    lbs = requests.get(sim.url + "/sim/inventory", timeout=5).json()["load_balancers"]
    assert ("eks", arn) in [(lb["provider"], lb["id"]) for lb in lbs]   # an ELBv2 load balancer in moto
    sim.delete_lb("eks/eks9", svc)
    lbs = requests.get(sim.url + "/sim/inventory", timeout=5).json()["load_balancers"]
    assert arn not in [lb["id"] for lb in lbs]


def test_ec2_instances_count_as_leftovers(ca_env):
    sim = ca_env
    ec2 = sim.boto("ec2")
    iid = ec2.run_instances(ImageId=sim.aws["ami"], MinCount=1, MaxCount=1, InstanceType="t3.large",
                            SubnetId=sim.aws["subnet_ids"][0])["Instances"][0]["InstanceId"]
    # (moto's state is per process: other tests' instances may be there too)
    vms = requests.get(sim.url + "/sim/inventory", timeout=5).json()["vms"]
    assert ("ec2", iid) in [(v["provider"], v["id"]) for v in vms]
    ec2.terminate_instances(InstanceIds=[iid])
    assert iid not in [v["id"] for v in requests.get(sim.url + "/sim/inventory", timeout=5).json()["vms"]]
