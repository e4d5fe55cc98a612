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

The cloud VMs are machines (``cloudsim --vms``, tests/fakes/cloudsim/vms.py): every EC2 instance
and OpenStack server is a netns VM at the address the cloud reports, with the key pair the test
imported (as a user does) authorised for the image's default user, as cloud-init does. site.yml
onboards them over real SSH (host keys pinned on first contact, sudo to root), and the test
checks each VM's auto-registered WorkloadEntry, its running pilot-agent and Envoy, the pinned
host key, verify.yml (incl. the cross-network mTLS probe between the OpenStack and the EC2 VM),
and that the teardown removes every VM (no netns, veth, bridge or process left). Needs root.

Safety: the VM addresses are in the sim's own /16 (10.83-10.86.0.0/16), which the sim refuses
when this host routes it elsewhere and marks ``unreachable`` outside the VMs' bridges; the test
also refuses to go on when an address the fake reports is not on a Meshfleet bridge or loopback.

Knobs (environment): MESHFLEET_E2E_TOKEN_TTL (seconds the sim's AAD/Google access tokens
live, default 60: a run outlives them, so credentials must refresh); MESHFLEET_E2E_CLUSTERS
(comma-separated subset of the example's clusters, for debugging one provider).
"""

from __future__ import absolute_import, division, print_function

import ipaddress
import json
import os
import subprocess
import time

import pytest

import helpers
import multicloud
from conftest_vms import ensure_rootfs, vm_support_problem

from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers import netns
from ansible_collections.meshfleet.mesh.tests.fakes.cloudsim import vms as sim_vms

pytestmark = pytest.mark.integration

#: bounds of each step (seconds)
SITE_TIMEOUT = 1200
VERIFY_TIMEOUT = 420
TEARDOWN_TIMEOUT = 600
GONE_TIMEOUT = 45
KEY_NAME = "mesh-deploy"    # settings.key_name of the example's VM groups


def _run(step, playbook, inventory, tools_bin, env, timeout):
    started = time.monotonic()
    run = helpers.run_playbook(playbook, inventory, tools_bin, timeout=timeout, env=env)
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
    problem = vm_support_problem()
    if problem:
        pytest.skip("the fake clouds' VMs are netns VMs: %s" % problem)
    sim = multicloud.CloudSimProcess(str(tmp_path / "sim"), tools_bin,
                                     token_ttl=int(os.environ.get("MESHFLEET_E2E_TOKEN_TTL", "60")),
                                     vm_rootfs=ensure_rootfs())
    rng = sim.endpoints["vms"]["range"]
    try:
        yield sim
    finally:
        left = sim.stop()
        assert not left, "the cloudsim left processes behind: %s" % left
        netns_left = [ns for ns in _netns_list() if ns.startswith("mf-cs")]
        assert not netns_left, "network namespaces of the fake clouds' VMs left: %s" % netns_left
        routes = subprocess.run(["ip", "-o", "route", "show", "table", "all"], stdout=subprocess.PIPE,
                                universal_newlines=True, check=True).stdout
        assert rng not in routes, "the sim left routes into its VM range %s:\n%s" % (rng, routes)


def _netns_list():
    out = subprocess.run(["ip", "netns", "list"], stdout=subprocess.PIPE, universal_newlines=True,
                         check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _check_vm_addresses(inv, endpoints):
    """Refuse to go on when the fake reports a VM address that is not one of the project's own
    netns VMs (or loopback): nothing may be sent to a made-up address."""
    rng = ipaddress.ip_network(endpoints["vms"]["range"])
    assert any(rng == ipaddress.ip_network(s) for s in sim_vms.SLOTS), rng
    for vm in inv["vms"]:
        for address in vm.get("addresses") or []:
            ip = ipaddress.ip_address(address)
            if ip.is_loopback:
                continue
            assert ip in rng, "the fake reports %s for %s, outside its VM range %s: refusing to go on" % (
                address, vm["id"], rng)
            dev = sim_vms.route_device(address)
            assert dev is None or dev.startswith("mfbr-"), (
                "the fake reports %s for %s, which this host routes to %s, not to a Meshfleet bridge: "
                "refusing to go on" % (address, vm["id"], dev))


def test_multicloud_example_against_fake_clouds(tmp_path, tools_bin, cloudsim, monkeypatch):
    missing = multicloud.missing_endpoint_settings()
    if missing:
        pytest.fail("the providers cannot be pointed at the fake clouds yet: no setting %s "
                    "(plugins/module_utils/provider_spec.py); without it they would call "
                    "the real cloud" % ", ".join(missing), pytrace=False)
    only = [c for c in os.environ.get("MESHFLEET_E2E_CLUSTERS", "").split(",") if c] or None
    assert multicloud.cloud_vms_wired(), "site.yml does not provision cloud VMs (role vms_provision)"
    # before anything runs: an address of the sim's VM range that is on no VM's bridge is refused
    # on this machine (never routed out)
    probe = str(ipaddress.ip_network(cloudsim.endpoints["vms"]["range"]).network_address + 0xfffe)
    assert sim_vms.route_device(probe) is None, "%s is routable: the sim's unreachable route is missing" % probe
    # the user's key pair, imported into both clouds under the name the example uses
    key_file = str(tmp_path / "deploy_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "deploy@e2e", "-f", key_file], check=True)
    with open(key_file + ".pub") as f:
        multicloud.register_key_pair(cloudsim.endpoints, KEY_NAME, f.read())
    inv_dir = str(tmp_path / "inventory")
    inventory, notes = multicloud.make_overlay(inv_dir, cloudsim.endpoints, clusters=only,
                                               vm_access=dict(key_file=key_file))
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
        _check_vm_addresses(inv, cloudsim.endpoints)
        _assert_cloud_vms(topo, inv, state_dir)

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
        assert "Probe mTLS | Both sides saw the other's SPIFFE id" in verify.output
    finally:
        # --- teardown (also when a step above failed: nothing billable may be left) ----------
        teardown = _run("teardown.yml", "teardown.yml", inv_dir, tools_bin, env, TEARDOWN_TIMEOUT)
        print("total %.0fs" % (time.monotonic() - started))
    _assert_ok(teardown, cloudsim)
    left = _wait_all_gone(cloudsim)
    assert not left, "the teardown left billable things in the fake clouds: %s" % json.dumps(left, indent=1)
    procs = helpers.processes_under(state_dir)
    assert not procs, "processes of the mesh state dir left: %s" % procs
    problems = helpers.leftovers(state_dir)
    assert not problems, "the teardown left: %s" % problems
    vm_netns = [ns for ns in _netns_list() if ns.startswith("mf-cs")]
    assert not vm_netns, "the teardown left the cloud VMs' network namespaces: %s" % vm_netns
    links = os.listdir("/sys/class/net")
    assert not [dev for dev in links if dev.startswith("mfv-cs")], links


def _assert_cloud_vms(topo, inv, state_dir):
    """Every cloud VM is a running netns VM, reached over SSH (host key pinned), onboarded:
    WorkloadEntry auto-registered in its group's cluster, pilot-agent and Envoy running."""
    from kubernetes import client
    groups = topo.get("vm_groups") or {}
    want = sum(g["settings"].get("count", 1) for g in groups.values())
    assert len(inv["vms"]) == want, inv["vms"]
    backing = inv["netns_vms"]
    with open(os.path.join(state_dir, "vms", "known_hosts")) as f:
        pinned = f.read()
    by_cluster = {}
    for vm in inv["vms"]:
        rec = backing.get(vm["id"]) or backing.get(vm["id"][:13])
        assert rec and rec["state"] == "running", (vm, backing)
        assert vm["addresses"] == [rec["address"]], (vm, rec)
        ns = netns.netns_name(rec["name"])
        assert netns.netns_exists(ns) and netns.find_init(ns), "no running netns VM behind %s" % vm
        comms = set()
        for pid in netns.netns_pids(ns):
            try:
                with open("/proc/%d/comm" % pid) as f:
                    comms.add(f.read().strip())
            except IOError:
                pass
        assert {"pilot-agent", "envoy"} <= comms, "%s (%s): pilot-agent/Envoy not running: %s" % (
            vm["id"], rec["address"], sorted(comms))
        # the mesh pinned the VM's own host key on first contact (vm_host_key, accept-new)
        with open(os.path.join(sim_vms_rootfs(rec), "etc/ssh/ssh_host_ed25519_key.pub")) as f:
            host_key = " ".join(f.read().split()[:2])
        assert "%s %s" % (rec["address"], host_key) in pinned, (rec["address"], pinned)
        by_cluster.setdefault(_group_of(vm, groups), []).append(rec["address"])
    for group_name, addresses in by_cluster.items():
        group = groups[group_name]
        kubeconfig = os.path.join(state_dir, "clusters", group["cluster"], "kubeconfig")
        api = client.CustomObjectsApi(helpers.kube_client(kubeconfig))
        entries = api.list_namespaced_custom_object("networking.istio.io", "v1", group["namespace"],
                                                    "workloadentries")["items"]
        registered = dict((e["spec"]["address"], e) for e in entries
                          if (e["metadata"].get("annotations") or {}).get("istio.io/autoRegistrationGroup") == group_name)
        assert sorted(registered) == sorted(addresses), (group_name, [e["spec"] for e in entries])
        for e in registered.values():
            assert e["spec"].get("network") == group["network"], e["spec"]
            assert e["spec"].get("serviceAccount") == group["service_account"], e["spec"]


def _group_of(vm, groups):
    name = vm.get("name") or (vm.get("tags") or {}).get("Name", "")
    return next(g for g in groups if name.startswith(g + "-"))


def sim_vms_rootfs(rec):
    return os.path.join(rec["state_dir"], "vms", rec["name"], "rootfs")


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
