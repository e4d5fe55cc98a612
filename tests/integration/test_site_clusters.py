# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/site.yml and playbooks/teardown.yml on a copy of the local inventory.

The copy keeps the three kwok clusters of ``inventories/local/mesh.meshfleet.yml`` and
drops ``vm_groups``: its netns VMs use fixed addresses (10.77.x) that the demo, which may
be running on this machine, owns; the VM tests have their own subnets (conftest_vms.py).
The state dir is the default ``.meshfleet`` next to the copied file, in a temporary folder,
so nothing collides with the demo's ``inventories/local/.meshfleet``.
"""

from __future__ import absolute_import, division, print_function

import glob
import hashlib
import json
import os
import signal
import time

import pytest
import yaml

import helpers

CLUSTERS = ("cluster1", "cluster2", "cluster3")


class Site:
    def __init__(self, folder, tools_bin):
        self.folder = folder
        self.tools_bin = tools_bin
        self.inventory = os.path.join(folder, "mesh.meshfleet.yml")
        self.state_dir = os.path.join(folder, ".meshfleet")
        self.runs = {}
        self.torn_down = False

    def write_inventory(self):
        with open(os.path.join(helpers.REPO, "inventories", "local", "mesh.meshfleet.yml")) as f:
            topology = yaml.safe_load(f)
        topology.pop("vm_groups", None)
        assert sorted(topology["clusters"]) == list(CLUSTERS)
        with open(self.inventory, "w") as f:
            f.write("# copy of inventories/local/mesh.meshfleet.yml without vm_groups (test)\n")
            yaml.safe_dump(topology, f, default_flow_style=False, sort_keys=False)

    def play(self, playbook, *args):
        return helpers.run_playbook(playbook, self.inventory, tools_bin=self.tools_bin, args=args)

    def kubeconfig(self, name):
        return os.path.join(self.state_dir, "clusters", name, "kubeconfig")


assert_ok = helpers.assert_ok


@pytest.fixture(scope="module")
def site(tmp_path_factory, tools_bin):
    folder = str(tmp_path_factory.mktemp("site"))
    s = Site(folder, tools_bin)
    helpers.safety_net(s.state_dir)
    s.write_inventory()
    try:
        yield s
    finally:
        problems = []
        if not s.torn_down:
            run = s.play("teardown.yml")
            if run.rc != 0:
                problems.append("teardown.yml failed: %s" % run.tail(30))
        left = helpers.leftovers(s.state_dir)
        if left:
            problems.extend(left)
            helpers.force_cleanup(s.state_dir)
        assert not problems, "site clusters were not torn down cleanly: %s" % "; ".join(problems)


def test_site_creates_every_cluster(site):
    run = site.play("site.yml")
    site.runs["first"] = run
    print("[site] first run: %.1fs %s" % (run.seconds, run.recap))
    assert_ok(run)
    assert set(CLUSTERS) <= set(run.recap)
    for name in CLUSTERS:
        assert run.recap[name]["changed"] >= 1, run.recap

    from kubernetes import client
    servers = set()
    for name in CLUSTERS:
        api = helpers.kube_client(site.kubeconfig(name))
        namespaces = [ns.metadata.name for ns in client.CoreV1Api(api).list_namespace().items]
        assert "kube-system" in namespaces
        assert client.VersionApi(api).get_code().git_version.startswith("v1.")
        servers.add(api.configuration.host)
    assert len(servers) == 3, servers  # three clusters, not one answering thrice


def fast_path(run):
    """Whether site.yml skipped the mesh plays (the converge receipt checked clean)."""
    return "nothing to change: " in run.output


def test_site_rerun_changes_nothing(site):
    if "first" not in site.runs:
        pytest.skip("needs the first run")
    assert os.path.isfile(os.path.join(site.state_dir, "converge-receipt.json"))
    assert os.stat(os.path.join(site.state_dir, "converge-receipt.json")).st_mode & 0o777 == 0o600
    run = site.play("site.yml")
    print("[site] no-op re-run: %.1fs" % run.seconds)
    assert_ok(run)
    changed = dict((h, c["changed"]) for h, c in run.recap.items() if c.get("changed"))
    assert not changed, "a re-run changed something: %s\n%s" % (changed, run.tail(80))
    # the fast path: every recorded step checked in one process, the mesh plays skipped
    assert fast_path(run), run.tail(40)
    assert "steps on 4 hosts would change nothing" in run.output
    assert set(run.recap) == {"localhost"}, run.recap
    for name in CLUSTERS:  # the summary still shows every cluster, from the checks
        assert "%s (primary, network" % name in run.output
    run = site.play("site.yml", "-C", "--diff")
    assert_ok(run)
    assert fast_path(run) and not any(c.get("changed") for c in run.recap.values()), run.tail(40)
    site.runs["noop"] = run
    # no time limit here: bench/bench_mesh.py measures the no-op run against its target


def test_drift_takes_the_normal_path_and_is_repaired(site):
    """What the fast path's checks must not miss: a deleted remote secret, a removed network
    label, a killed istiod. The re-run finds them, repairs them, and the next is fast again."""
    if "noop" not in site.runs:
        pytest.skip("needs the no-op run")
    from kubernetes import client
    core1 = client.CoreV1Api(helpers.kube_client(site.kubeconfig("cluster1")))
    core3 = client.CoreV1Api(helpers.kube_client(site.kubeconfig("cluster3")))
    core1.delete_namespaced_secret("istio-remote-secret-cluster2", "istio-system")
    core3.patch_namespace("istio-system", {"metadata": {"labels": {"topology.istio.io/network": None}}})
    pid_file = os.path.join(site.state_dir, "clusters", "cluster2", "istiod", "istiod.pid")
    with open(pid_file) as f:
        istiod_pid = int(f.read().strip())
    os.kill(istiod_pid, 9)
    deadline = time.monotonic() + 30
    while helpers.alive(istiod_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not helpers.alive(istiod_pid)

    run = site.play("site.yml")
    assert_ok(run)
    assert not fast_path(run), run.tail(40)
    assert "converged by the mesh plays (" in run.output
    assert run.recap["cluster1"]["changed"] >= 1 and run.recap["cluster3"]["changed"] >= 1, run.recap
    assert run.recap["cluster2"]["changed"] >= 1, run.recap  # istiod started again
    core1.read_namespaced_secret("istio-remote-secret-cluster2", "istio-system")
    labels = core3.read_namespace("istio-system").metadata.labels
    assert labels.get("topology.istio.io/network") == "network2", labels

    run = site.play("site.yml")
    assert_ok(run)
    assert fast_path(run) and not any(c.get("changed") for c in run.recap.values()), run.tail(40)


def test_changed_inputs_take_the_normal_path(site):
    if "noop" not in site.runs:
        pytest.skip("needs the no-op run")
    run = site.play("site.yml", "-e", "control_plane_reconcile=true")
    assert_ok(run)
    assert not fast_path(run)
    assert "inputs changed since the last converge: extra_vars" in run.output, run.tail(40)
    assert not any(c.get("changed") for c in run.recap.values()), run.tail(60)  # reconcile: nothing differs
    run = site.play("site.yml", "-e", "meshfleet_fast_noop=false")
    assert_ok(run)
    assert not fast_path(run) and "fast no-op off" in run.output
    assert set(CLUSTERS) <= set(run.recap)


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def mesh_state(site):
    """What a fault must not lose or duplicate: each cluster's cacerts and remote secrets, and
    the PKI on the controller."""
    from kubernetes import client
    clusters = {}
    for name in CLUSTERS:
        core = client.CoreV1Api(helpers.kube_client(site.kubeconfig(name)))
        secrets = core.list_namespaced_secret("istio-system").items
        cacerts = [s for s in secrets if s.metadata.name == "cacerts"]
        clusters[name] = dict(
            cacerts=[_sha256(json.dumps(s.data, sort_keys=True).encode()) for s in cacerts],
            remote_secrets=sorted(s.metadata.name for s in secrets
                                  if (s.metadata.labels or {}).get("istio/multiCluster") == "true"))
    pki = {}
    for path in sorted(glob.glob(os.path.join(site.state_dir, "pki", "*", "*.pem"))):
        with open(path, "rb") as f:
            pki[os.path.relpath(path, site.state_dir)] = _sha256(f.read())
    return clusters, pki


def test_api_server_killed_mid_run_fails_naming_it_and_rerun_converges(site):
    """An API server that dies while site.yml installs Istio: the run fails naming that
    cluster, the re-run converges, and no secret, certificate or remote secret is lost or
    duplicated."""
    if "noop" not in site.runs:
        pytest.skip("needs the no-op run")
    before = mesh_state(site)
    assert all(len(c["cacerts"]) == 1 and len(c["remote_secrets"]) == 2 for c in before[0].values()), before
    victim = helpers.read_pids(os.path.join(site.state_dir, "kwok", "clusters", "cluster2"))["kube-apiserver"]

    def kill_api_server(_process):
        os.kill(victim, signal.SIGKILL)

    run, fired = helpers.run_playbook_interrupted(
        "site.yml", site.inventory, "PLAY [Control plane | Install Istio on the primaries", kill_api_server,
        tools_bin=site.tools_bin, args=("-e", "meshfleet_fast_noop=false"))
    assert fired, run.tail(40)
    assert run.rc != 0, run.tail(40)
    failures = run.failures()
    assert "fatal: [cluster2]" in failures or "cluster2" in failures.split("fatal:", 1)[-1], failures
    assert not helpers.alive(victim)

    run = site.play("site.yml")
    assert_ok(run)
    assert not fast_path(run), run.tail(40)
    assert run.recap["cluster2"]["changed"] >= 1, run.recap  # its API server started again
    assert mesh_state(site) == before
    run = site.play("site.yml")
    assert_ok(run)
    assert fast_path(run), run.tail(40)


def cluster_pids(site):
    """{(cluster, component): pid} of every local cluster's processes."""
    return {(name, component): pid for name in CLUSTERS
            for component, pid in helpers.read_pids(
                os.path.join(site.state_dir, "kwok", "clusters", name)).items()}


def test_teardown_leaves_nothing(site):
    pids = cluster_pids(site)
    run = site.play("teardown.yml")
    assert_ok(run)
    site.torn_down = True
    if pids:  # the clusters were up
        for name in CLUSTERS:
            assert run.recap[name]["changed"] >= 1, run.recap
    assert helpers.processes_under(site.state_dir) == {}
    assert helpers.leftovers(site.state_dir) == []
    assert not any(helpers.alive(p) for p in pids.values())
    # the trust material is kept (teardown.yml says so); a second teardown is a no-op
    run = site.play("teardown.yml")
    assert_ok(run)
    assert all(run.recap[name]["changed"] == 0 for name in CLUSTERS), run.recap


def test_interrupted_teardown_is_finished_by_a_rerun(site):
    """Ctrl-C while teardown.yml removes the clusters: the next teardown.yml finishes it."""
    run = site.play("site.yml")
    assert_ok(run)
    site.torn_down = False

    pids = cluster_pids(site)
    assert pids, "site.yml left no cluster processes to remove"

    def interrupt(process):
        # Ctrl-C as soon as the first cluster process is gone: the deletions are under way, and
        # not over (a fixed sleep raced a fast machine, where the whole teardown took 3.4 s)
        deadline = time.monotonic() + 120
        while all(helpers.alive(p) for p in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.005)
        os.killpg(process.pid, signal.SIGINT)

    run, fired = helpers.run_playbook_interrupted(
        "teardown.yml", site.inventory, "PLAY [Clusters | Remove the clusters]", interrupt, tools_bin=site.tools_bin)
    assert fired and run.rc != 0, run.tail(40)
    run = site.play("teardown.yml")
    assert_ok(run)
    site.torn_down = True
    assert helpers.processes_under(site.state_dir) == {}
    assert helpers.leftovers(site.state_dir) == []
