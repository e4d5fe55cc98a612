# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""inventories/multicloud-example end to end against the fake clouds (tests/fakes/cloudsim).

One cloudsim process serves Azure (AAD + ARM over HTTPS), GKE (+ OAuth2), OpenStack and AWS
(moto); every cloud cluster it creates is a real kwok cluster whose API server checks the
clouds' bearer tokens through the sim's token webhook, and its cloud controller gives the
east-west gateways load balancer addresses. The test runs, as a user would:

    site.yml -> verify.yml -> site.yml again (changed=0) -> teardown.yml

against an overlay of the example inventory (tests/integration/multicloud.py), and checks the
clouds' records, Istio on each cluster, the remote secrets in every direction, and that the
teardown leaves no cluster, load balancer, VM or process behind.

Knobs (environment): MESHFLEET_E2E_TOKEN_TTL (seconds the sim's AAD/Google access tokens
live, default 60: a run outlives them, so credentials must refresh); MESHFLEET_E2E_CLUSTERS
(comma-separated subset of the example's clusters, for debugging one provider).
"""

from __future__ import absolute_import, division, print_function

import json
import os
import time

import pytest

import helpers
import multicloud

pytestmark = pytest.mark.integration

#: bounds of each step (seconds); the whole test aims at < 4 minutes on 2 cores
SITE_TIMEOUT = 420
VERIFY_TIMEOUT = 180
TEARDOWN_TIMEOUT = 300
GONE_TIMEOUT = 45


#: The fake clouds' VMs are records with made-up private addresses (moto, the OpenStack fake):
#: no machine answers there, and nothing may be sent to an address outside this machine's
#: loopback and the project's own namespaces. So every run leaves the VM hosts out: the VMs are
#: provisioned and removed (plays on localhost) and their WorkloadGroups made, but nothing
#: connects to them over SSH (the VM side of onboarding is proven on the netns VMs instead).
NO_VM_HOSTS = ("--limit", "all:!vms:localhost")


def _run(step, playbook, inventory, tools_bin, env, timeout):
    started = time.monotonic()
    run = helpers.run_playbook(playbook, inventory, tools_bin, timeout=timeout, env=env,
                               args=NO_VM_HOSTS)
    print("%s: %r in %.0fs" % (step, run, time.monotonic() - started))
    return run


def _assert_ok(run, sim):
    try:
        helpers.assert_ok(run)
    except AssertionError as e:
        raise AssertionError("%s\n--- cloudsim log ---\n%s\n--- sim inventory ---\n%s" % (
            e, sim.log_tail(60), json.dumps(_safe_inventory(sim), indent=1)[:4000]))


def _safe_inventory(sim):
    try:
        return sim.inventory()
    except Exception as e:
        return {"error": str(e)}


def _kube(kubeconfig):
    from kubernetes import client
    api = helpers.kube_client(kubeconfig)
    return client.CoreV1Api(api)


@pytest.fixture
def cloudsim(tmp_path, tools_bin):
    sim = multicloud.CloudSimProcess(str(tmp_path / "sim"), tools_bin,
                                     token_ttl=int(os.environ.get("MESHFLEET_E2E_TOKEN_TTL", "60")))
    try:
        yield sim
    finally:
        left = sim.stop()
        assert not left, "the cloudsim left processes behind: %s" % left


def test_multicloud_example_against_fake_clouds(tmp_path, tools_bin, cloudsim, monkeypatch):
    missing = multicloud.missing_endpoint_settings()
    if missing:
        pytest.fail("the providers cannot be pointed at the fake clouds yet: no setting %s "
                    "(plugins/module_utils/provider_spec.py); without it they would call "
                    "the real cloud" % ", ".join(missing), pytrace=False)
    only = [c for c in os.environ.get("MESHFLEET_E2E_CLUSTERS", "").split(",") if c] or None
    vms = multicloud.cloud_vms_wired()
    inv_dir = str(tmp_path / "inventory")
    inventory, notes = multicloud.make_overlay(inv_dir, cloudsim.endpoints, keep_vm_groups=vms,
                                               clusters=only)
    if not vms:
        print("NOTE: site.yml does not provision cloud VMs yet: the overlay leaves the VM groups out")
    for note in notes:
        print("NOTE:", note)
    state_dir = os.path.join(inv_dir, ".meshfleet")
    helpers.safety_net(state_dir)
    env = multicloud.overlay_env(cloudsim.endpoints, str(tmp_path))
    # the test's own Kubernetes clients run the kubeconfigs' exec credential plugins in this
    # process's environment: the same credentials, endpoints and CA as the playbooks'
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with open(inventory) as f:
        import yaml
        topo = yaml.safe_load(f)
    clusters = topo["clusters"]
    started = time.monotonic()
    try:
        # --- converge ---------------------------------------------------------------------
        site = _run("site.yml", "site.yml", inv_dir, tools_bin, env, SITE_TIMEOUT)
        _assert_ok(site, cloudsim)
        inv = cloudsim.inventory()
        _assert_cloud_shapes(inv, clusters)
        for name, cluster in clusters.items():
            _assert_istio(name, cluster, clusters, state_dir, inv)
        if vms:
            want = sum(g["settings"].get("count", 1) for g in topo.get("vm_groups", {}).values())
            assert len(inv["vms"]) == want, inv["vms"]

        # wait until every access token issued during site.yml has expired (+ the API servers'
        # 5 s webhook cache): verify.yml and the running istiods then only work if the
        # credentials refresh (exec credential plugins), as on real clouds
        if cloudsim.endpoints["token_ttl"] <= 120:
            time.sleep(max(0.0, inv["tokens_expire"] + 6 - time.time()))
        verify = _run("verify.yml", "verify.yml", inv_dir, tools_bin, env, VERIFY_TIMEOUT)
        _assert_ok(verify, cloudsim)

        again = _run("site.yml (again)", "site.yml", inv_dir, tools_bin, env, SITE_TIMEOUT)
        _assert_ok(again, cloudsim)
        changed = dict((h, c.get("changed", 0)) for h, c in again.recap.items() if c.get("changed"))
        assert not changed, "a second site.yml changed %s:\n%s" % (changed, "\n".join(again.changed_tasks()))
        stats = cloudsim.inventory()["stats"]
        assert stats["webhook_ok"] > 0, stats
    finally:
        # --- teardown (also when a step above failed: nothing billable may be left) ----------
        teardown = _run("teardown.yml", "teardown.yml", inv_dir, tools_bin, env, TEARDOWN_TIMEOUT)
        print("total %.0fs" % (time.monotonic() - started))
    _assert_ok(teardown, cloudsim)
    left = _wait_all_gone(cloudsim)
    assert not left, "the teardown left billable things in the fake clouds: %s" % json.dumps(left, indent=1)
    procs = helpers.processes_under(state_dir)
    assert not procs, "processes of the mesh state dir left: %s" % procs


def _assert_cloud_shapes(inv, clusters):
    """The clusters exist in the fake clouds with the shapes the inventory asks for."""
    by_provider = {}
    for name, c in clusters.items():
        by_provider.setdefault(c["provider"], {})[name] = c["settings"]
    for name, s in by_provider.get("aks", {}).items():
        mc = next((c for c in inv["clusters"]["aks"] if c["name"] == name), None)
        assert mc and mc["state"] == "Succeeded", inv["clusters"]["aks"]
        assert mc["resource_group"] == s["resource_group"].lower()
        want = [(p["name"], p["count"], p["vm_size"]) for p in s["node_pools"]]
        assert [(p["name"], p["count"], p["vm_size"]) for p in mc["pools"]] == want, mc
    for name, s in by_provider.get("gke", {}).items():
        gc = next((c for c in inv["clusters"]["gke"] if c["name"] == name), None)
        assert gc and gc["status"] == "RUNNING" and gc["location"] == s["location"], inv["clusters"]["gke"]
        want = [(p["name"], p["count"], p["machine_type"]) for p in s["node_pools"]]
        assert [(p["name"], p["count"], p["machine_type"]) for p in gc["pools"]] == want, gc
    for name, s in by_provider.get("eks", {}).items():
        ec = next((c for c in inv["clusters"]["eks"] if c["name"] == name), None)
        assert ec and ec["status"] == "ACTIVE" and ec["region"] == s["region"], inv["clusters"]["eks"]
        ng = s["node_group"]
        got = ec["nodegroups"][ng["name"]]
        assert got["status"] == "ACTIVE" and got["instance_types"] == ng["instance_types"], got
        assert (got["scaling"]["minSize"], got["scaling"]["maxSize"]) == (ng["scaling"]["min"], ng["scaling"]["max"])
    kwok = inv["kwok"]
    assert sorted(kwok) == sorted("%s/%s" % (c["provider"], n) for n, c in clusters.items()), kwok
    assert all(k["state"] == "ready" for k in kwok.values()), kwok


def _assert_istio(name, cluster, clusters, state_dir, inv):
    """Istio on one kwok-backed cluster, reached with the kubeconfig the cloud handed out."""
    kubeconfig = os.path.join(state_dir, "clusters", name, "kubeconfig")
    with open(kubeconfig) as f:
        server = f.read()
    kwok = inv["kwok"]["%s/%s" % (cluster["provider"], name)]
    assert kwok["server"] in server, "the kubeconfig of %s does not point at its API server" % name
    core = _kube(kubeconfig)
    ns = core.read_namespace("istio-system")
    assert ns.metadata.labels.get("topology.istio.io/network") == cluster["network"], ns.metadata.labels
    core.read_namespaced_secret("cacerts", "istio-system")
    gw = core.read_namespaced_service("istio-eastwestgateway", "istio-system")
    assert gw.spec.type == "LoadBalancer"
    ingress = [i.ip for i in (gw.status.load_balancer.ingress or [])]
    assert len(ingress) == 1 and ingress[0].startswith("127.0.0.") and ingress[0] != "127.0.0.1", ingress
    assert "service.kubernetes.io/load-balancer-cleanup" in (gw.metadata.finalizers or [])
    lb = [lb for lb in inv["load_balancers"] if lb.get("cluster") == "%s/%s" % (cluster["provider"], name)
          or (cluster["provider"] == "eks" and lb["provider"] == "eks")]
    assert lb, "no load balancer for %s in the fake cloud: %s" % (name, inv["load_balancers"])
    secrets = set(s.metadata.name for s in core.list_namespaced_secret(
        "istio-system", label_selector="istio/multiCluster=true").items)
    others = set("istio-remote-secret-%s" % o for o in clusters if o != name)
    assert others <= secrets, "%s lacks remote secrets %s" % (name, sorted(others - secrets))


def _wait_all_gone(sim):
    deadline = time.monotonic() + GONE_TIMEOUT
    while True:
        inv = sim.inventory()
        left = dict((k, v) for k, v in (
            ("clusters", dict((p, c) for p, c in inv["clusters"].items() if c)),
            ("kwok", inv["kwok"]), ("load_balancers", inv["load_balancers"]), ("vms", inv["vms"])) if v)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(1)
