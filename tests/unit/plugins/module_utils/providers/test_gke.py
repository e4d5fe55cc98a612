# -*- coding: utf-8 -*-
"""GKE provider tests.

GCP has no emulator for GKE here: the real google-cloud-container ClusterManagerClient
(REST transport) and real google-auth service-account credentials (a key generated
for the test, JWT-bearer grant) run against a stateful fake of container.googleapis.com/v1
and the OAuth2 token endpoint answering with the API's JSON shapes
(tests/fakes/gcp_http.py): operations polled to DONE (or DONE with an error), 404 when
absent, 409/400 conflicts, 429 throttling with Retry-After, regional quota, per-zone node
counts. Most tests reach it through requests-mock; the exec-plugin tests serve it over
real HTTP on 127.0.0.1 (``settings.api_endpoint: http://...``, the key's ``token_uri``),
since the kubeconfig's plugin runs in a subprocess. Every test drives the real module
path: ``plugins/modules/cluster.py`` ``main()`` with ``patch_module_args``.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import stat
import subprocess
import sys

import pytest
import requests_mock
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ansible_collections.meshfleet.mesh.plugins.modules import cluster as cluster_module
from ansible_collections.meshfleet.mesh.plugins.module_utils.providers import gke
from ansible_collections.meshfleet.mesh.tests.fakes.gcp_http import TOKEN_URI, FakeGke, serve
from ansible_collections.meshfleet.mesh.tests.fakes.modrun import run_module

CLUSTER_PATH = "/v1/projects/proj-1/locations/europe-west1/clusters/gke1"


@pytest.fixture(scope="module")
def sa_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def write_sa_file(path, sa_key, token_uri=TOKEN_URI):
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "proj-1", "private_key_id": "k1",
        "private_key": sa_key, "client_email": "meshfleet@proj-1.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": token_uri}))
    return str(path)


@pytest.fixture
def sa_file(tmp_path, sa_key):
    return write_sa_file(tmp_path / "sa.json", sa_key)


@pytest.fixture
def fake(monkeypatch):
    sleeps = []
    monkeypatch.setattr(gke.GkeProvider, "sleep", staticmethod(sleeps.append))
    monkeypatch.setattr(gke.GkeProvider, "poll_interval", 0.01)
    fake = FakeGke()
    fake.sleeps = sleeps
    with requests_mock.Mocker() as m:
        fake.install(m)
        yield fake


def settings(sa_file, **over):
    s = dict(project="proj-1", location="europe-west1", release_channel="regular",
             kubernetes_version="1.33", network="mesh-net", subnetwork="mesh-subnet",
             workload_identity=True, credentials_file=sa_file,
             node_pools=[dict(name="pool1", machine_type="e2-standard-4", count=2, min_count=1,
                              max_count=3)])
    s.update(over)
    return s


def run(state_dir, s, **kw):
    args = dict(name="gke1", provider="gke", settings=s, state_dir=state_dir, wait_timeout=60)
    args.update(kw.pop("args", {}))
    return run_module(cluster_module.main, args, **kw)


def test_lifecycle(fake, sa_file, state_dir):
    s = settings(sa_file)
    r = run(state_dir, s)
    assert r["rc"] == 0, r
    assert r["changed"] is True
    c = r["cluster"]
    assert c["ready"] and c["api_server"] == "https://34.0.0.1"
    assert c["settings"]["release_channel"] == "REGULAR" and c["settings"]["workload_identity"] is True
    create = [b for m, p, b in fake.bodies if m == "POST"][0]["cluster"]
    assert create["workloadIdentityConfig"] == {"workloadPool": "proj-1.svc.id.goog"}
    assert create["nodePools"][0]["autoscaling"] == {"enabled": True, "minNodeCount": 1, "maxNodeCount": 3}
    # the REST transport sends enums as numbers (enum-encoding=int): REGULAR = 2
    assert create["network"] == "mesh-net" and create["releaseChannel"] == {"channel": 2}
    assert any("/operations/operation-" in p for m, p in fake.log)

    cfg = yaml.safe_load(open(c["kubeconfig"]))
    assert stat.S_IMODE(os.stat(c["kubeconfig"]).st_mode) == 0o600
    assert cfg["clusters"][0]["cluster"] == {"server": "https://34.0.0.1",
                                             "certificate-authority-data": "RkFLRS1HS0UtQ0E="}
    script = os.path.join(state_dir, "clusters", "gke1", "meshfleet-credential.py")
    assert cfg["users"][0]["user"] == {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1beta1", "command": sys.executable,
        "args": [script, "gke", "--credentials-file", sa_file], "interactiveMode": "Never"}}
    assert "ya29" not in repr(r)
    # regional location: the pool spans 3 zones, count is per zone (2 -> 6 nodes)
    pool = c["settings"]["node_pools"][0]
    assert pool["count"] == 2 and pool["zones"] == 3
    assert fake.clusters[("proj-1", "europe-west1", "gke1")]["currentNodeCount"] == 6

    # idempotent
    n = len(fake.writes)
    r = run(state_dir, s)
    assert r["rc"] == 0 and r["changed"] is False, r
    assert len(fake.writes) == n

    # check mode of mutable changes: no write
    s2 = settings(sa_file, kubernetes_version="1.34", workload_identity=False,
                  node_pools=[dict(s["node_pools"][0], max_count=5)])
    r = run(state_dir, s2, check_mode=True)
    assert r["changed"] is True
    assert r["changes"] == ["kubernetes_version", "node_pools.pool1.max_count", "workload_identity"]
    assert len(fake.writes) == n

    r = run(state_dir, s2)
    assert r["rc"] == 0 and r["changed"] is True, r
    puts = [b["update"] for m, p, b in fake.bodies if m == "PUT"]
    assert {"desiredMasterVersion": "1.34"} in puts
    assert {"desiredWorkloadIdentityConfig": {}} in puts or \
        {"desiredWorkloadIdentityConfig": {"workloadPool": ""}} in puts
    assert ("POST", CLUSTER_PATH + "/nodePools/pool1:setAutoscaling") in fake.writes
    assert r["cluster"]["settings"]["kubernetes_version"].startswith("1.34.")
    assert run(state_dir, s2)["changed"] is False

    # immutable
    n = len(fake.writes)
    r = run(state_dir, dict(s2, network="other-net"))
    assert r["rc"] == 1 and r["immutable_fields"] == ["network"], r
    r = run(state_dir, dict(s2, node_pools=[dict(s2["node_pools"][0], machine_type="n2-standard-8")]))
    assert r["rc"] == 1 and "node_pools.pool1.machine_type" in r["msg"], r
    assert len(fake.writes) == n

    # new node pool
    s3 = dict(s2, node_pools=s2["node_pools"] + [dict(name="pool2", machine_type="e2-small", count=1)])
    r = run(state_dir, s3)
    assert r["rc"] == 0 and r["changed"] is True, r
    assert [p["name"] for p in r["cluster"]["settings"]["node_pools"]] == ["pool1", "pool2"]

    # delete: check mode, real, absent
    n = len(fake.writes)
    r = run(state_dir, s3, args=dict(state="absent"), check_mode=True)
    assert r["changed"] is True and len(fake.writes) == n
    r = run(state_dir, s3, args=dict(state="absent"))
    assert r["rc"] == 0 and r["changed"] is True, r
    assert ("DELETE", CLUSTER_PATH) in fake.writes and not fake.clusters
    r = run(state_dir, s3, args=dict(state="absent"))
    assert r["rc"] == 0 and r["changed"] is False


def test_check_mode_create(fake, sa_file, state_dir):
    r = run(state_dir, settings(sa_file), check_mode=True)
    assert r["rc"] == 0 and r["changed"] is True
    assert fake.writes == [] and fake.log == [("GET", CLUSTER_PATH)]


def test_throttling_retried_after_retry_after(fake, sa_file, state_dir):
    fake.fail("GET", "/clusters/gke1", 429, "RESOURCE_EXHAUSTED", "Quota exceeded",
              headers={"Retry-After": "4"}, times=2)
    r = run(state_dir, settings(sa_file))
    assert r["rc"] == 0 and r["changed"] is True, r
    assert fake.sleeps[:2] == [4.0, 4.0]
    assert fake.log[:3] == [("GET", CLUSTER_PATH)] * 3


def test_zonal_location_has_one_zone(fake, sa_file, state_dir):
    s = settings(sa_file, location="europe-west1-b")
    r = run(state_dir, s)
    assert r["rc"] == 0, r
    assert r["cluster"]["settings"]["node_pools"][0]["zones"] == 1
    assert fake.clusters[("proj-1", "europe-west1-b", "gke1")]["currentNodeCount"] == 2
    assert run(state_dir, s)["changed"] is False


def test_regional_quota_counts_every_zone(fake, sa_file, state_dir):
    # 2 nodes x 4 vCPUs fit a 16-vCPU quota in one zone, not in 3 zones (24 vCPUs)
    fake.cpu_quota = 16
    r = run(state_dir, settings(sa_file))
    assert r["rc"] == 1, r
    assert r["msg"].startswith("GKE creation of cluster gke1 failed (HTTP 403): ")
    assert "Insufficient regional quota to satisfy request: resource \"CPUS\"" in r["msg"]
    assert "request requires '24.0' and is short '8.0'" in r["msg"] and "count is per zone" in r["msg"]
    assert fake.clusters == {}
    fake.cpu_quota = 24
    r = run(state_dir, settings(sa_file))
    assert r["rc"] == 0 and r["changed"] is True, r


def test_creation_ending_in_error_is_recreated_by_the_next_run(fake, sa_file, state_dir):
    fake.fail_operation("CREATE_CLUSTER", "Google Compute Engine: Not all instances running in IGM after "
                        "37m. Expected 2, running 0, transitioning 2.")
    r = run(state_dir, settings(sa_file))
    assert r["rc"] == 1, r
    assert r["msg"].startswith("GKE creation of cluster gke1 failed: Google Compute Engine: Not all instances")
    assert "if the cluster is left in ERROR state, the next run deletes it and creates it again" in r["msg"]
    assert fake.clusters[("proj-1", "europe-west1", "gke1")]["status"] == "ERROR"
    r = run(state_dir, settings(sa_file), check_mode=True)
    assert r["changed"] is True and r["changes"] == ["status"]
    n = len(fake.writes)
    r = run(state_dir, settings(sa_file))
    assert r["rc"] == 0 and r["changed"] is True and r["cluster"]["ready"], r
    assert [m for m, p in fake.writes[n:]] == ["DELETE", "POST"]
    assert run(state_dir, settings(sa_file))["changed"] is False


def test_throttling_beyond_retries_is_reported(fake, sa_file, state_dir):
    fake.fail("GET", "/clusters/gke1", 429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Requests'",
              headers={"Retry-After": "2"}, times=6)
    r = run(state_dir, settings(sa_file))
    assert r["rc"] == 1, r
    assert r["msg"].startswith("GKE read of cluster gke1 failed (HTTP 429): ")
    assert r["msg"].endswith("Quota exceeded for quota metric 'Requests' (still refused after 5 retries; re-run later)")
    assert fake.sleeps == [2.0] * 5 and fake.writes == []
    r = run(state_dir, settings(sa_file))
    assert r["rc"] == 0 and r["changed"] is True, r


def test_conflicts(fake, sa_file, state_dir):
    fake.fail("POST", "/clusters", 409, "ALREADY_EXISTS",
              "Already exists: projects/proj-1/locations/europe-west1/clusters/gke1.")
    r = run(state_dir, settings(sa_file))
    assert r["rc"] == 1 and "HTTP 409" in r["msg"] and "Already exists" in r["msg"], r
    # an operation still running: GKE refuses the next change with FAILED_PRECONDITION
    r = run(state_dir, settings(sa_file), args=dict(wait=False))
    assert r["rc"] == 0 and r["cluster"]["ready"] is False, r
    r = run(state_dir, settings(sa_file, kubernetes_version="1.34"), args=dict(wait=False))
    assert r["rc"] == 1 and "incompatible operation" in r["msg"], r
    assert "(HTTP 400)" in r["msg"] and "re-run when it is done" in r["msg"]
    # the operation ends; the same run again converges
    fake.finish_operations()
    r = run(state_dir, settings(sa_file, kubernetes_version="1.34"))
    assert r["rc"] == 0 and r["changed"] is True, r


def test_missing_credentials(fake, state_dir, monkeypatch, tmp_path):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.delenv("GCE_METADATA_HOST", raising=False)
    monkeypatch.delenv("GCE_METADATA_IP", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    r = run(state_dir, settings(None))
    assert r["rc"] == 1 and "no Google credentials found" in r["msg"]
    assert "settings.credentials_file" in r["msg"] and "GOOGLE_APPLICATION_CREDENTIALS" in r["msg"]
    r = run(state_dir, settings(str(tmp_path / "nope.json")))
    assert r["rc"] == 1 and "settings.credentials_file" in r["msg"] and "does not exist" in r["msg"]
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "gac.json"))
    r = run(state_dir, settings(None))
    assert r["rc"] == 1 and "GOOGLE_APPLICATION_CREDENTIALS" in r["msg"]
    assert fake.log == [] and fake.tokens_issued == 0


def test_token_endpoint_refusal_is_reported(fake, sa_file, state_dir, monkeypatch):
    from ansible_collections.meshfleet.mesh.tests.fakes import gcp_http
    monkeypatch.setattr(gcp_http.FakeGke, "_token", lambda self, raw: (
        400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, {}))
    # the API calls authenticate with a self-signed JWT; a static kubeconfig token needs the token endpoint
    r = run(state_dir, settings(sa_file, credential_plugin="static"))
    assert r["rc"] == 1 and "cannot get an access token" in r["msg"] and "invalid_grant" in r["msg"], r


def test_adc_from_environment(fake, sa_file, state_dir, monkeypatch):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", sa_file)
    r = run(state_dir, settings(None))
    assert r["rc"] == 0 and r["changed"] is True, r
    # the plugin is told where the key is: a later client's environment may not say it
    spec = yaml.safe_load(open(r["cluster"]["kubeconfig"]))["users"][0]["user"]["exec"]
    assert spec["args"][1:] == ["gke", "--credentials-file", sa_file]


def test_static_token_and_gcloud_plugin(fake, sa_file, state_dir):
    r = run(state_dir, settings(sa_file, credential_plugin="static"))
    assert r["rc"] == 0, r
    user = yaml.safe_load(open(r["cluster"]["kubeconfig"]))["users"][0]["user"]
    assert user["token"].startswith("ya29.fake-access-token")
    assert run(state_dir, settings(sa_file, credential_plugin="static"))["changed"] is False  # fresh token only
    r = run(state_dir, settings(sa_file, credential_plugin="gke-gcloud-auth-plugin"))
    assert r["rc"] == 0 and r["changed"] is True, r
    spec = yaml.safe_load(open(r["cluster"]["kubeconfig"]))["users"][0]["user"]["exec"]
    assert spec["command"] == "gke-gcloud-auth-plugin" and spec["provideClusterInfo"] is True
    assert spec["args"] == ["--use_application_default_credentials"]
    assert spec["env"] == [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": sa_file}]
    assert not os.path.exists(os.path.join(state_dir, "clusters", "gke1", "meshfleet-credential.py"))


def test_unknown_credential_plugin_and_bad_endpoint(fake, sa_file, state_dir):
    r = run(state_dir, settings(sa_file, credential_plugin="aws-cli"))
    assert r["rc"] == 1 and "settings.credential_plugin 'aws-cli' is not one of: meshfleet, " \
        "gke-gcloud-auth-plugin, static" in r["msg"], r
    r = run(state_dir, settings(sa_file, api_endpoint="http://x y"))
    assert r["rc"] == 1 and "settings.api_endpoint" in r["msg"], r
    assert fake.log == []


def run_exec(kubeconfig, env):
    cfg = yaml.safe_load(open(kubeconfig))
    spec = cfg["users"][0]["user"]["exec"]
    full = dict(env)
    full.update((i["name"], i["value"]) for i in spec.get("env") or [])
    proc = subprocess.run([spec["command"]] + spec["args"], env=full, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=60, check=False)
    return proc


def test_api_endpoint_and_exec_plugin_over_loopback(sa_key, tmp_path, state_dir, monkeypatch):
    """No requests-mock: the client reaches ``api_endpoint: http://127.0.0.1:<port>`` and the
    kubeconfig's plugin, in a subprocess, gets its token from the key's token_uri there."""
    monkeypatch.setattr(gke.GkeProvider, "sleep", staticmethod(lambda s: None))
    monkeypatch.setattr(gke.GkeProvider, "poll_interval", 0.01)
    fake = FakeGke()
    with serve(fake) as url:
        key = write_sa_file(tmp_path / "sa-loop.json", sa_key, token_uri=url + "/token")
        s = settings(key, api_endpoint=url)
        r = run(state_dir, s)
        assert r["rc"] == 0 and r["cluster"]["ready"], r
        assert ("POST", "/v1/projects/proj-1/locations/europe-west1/clusters") in fake.writes
        assert run(state_dir, s)["changed"] is False
        issued = fake.tokens_issued
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
               "CLOUDSDK_CONFIG": str(tmp_path / "no-gcloud")}
        proc = run_exec(r["cluster"]["kubeconfig"], env)
        assert proc.returncode == 0, proc.stderr
        cred = json.loads(proc.stdout)
        assert cred["kind"] == "ExecCredential" and cred["apiVersion"] == "client.authentication.k8s.io/v1beta1"
        assert cred["status"]["token"] == "ya29.fake-access-token-%d" % (issued + 1)
        assert cred["status"]["expirationTimestamp"].endswith("Z")
        # each run is a fresh token
        assert json.loads(run_exec(r["cluster"]["kubeconfig"], env).stdout)["status"]["token"] != \
            cred["status"]["token"]
        # a refused grant: rc 1 and a message on stderr, nothing on stdout
        fake._token = lambda raw: (400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
                                   {})
        proc = run_exec(r["cluster"]["kubeconfig"], env)
        assert proc.returncode == 1 and proc.stdout == ""
        assert "meshfleet credential plugin (gke): cannot get a Google access token" in proc.stderr
        assert "invalid_grant" in proc.stderr
