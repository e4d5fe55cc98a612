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

import os

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


def test_site_rerun_changes_nothing(site):
    if "first" not in site.runs:
        pytest.skip("needs the first run")
    run = site.play("site.yml")
    print("[site] no-op re-run: %.1fs" % run.seconds)
    assert_ok(run)
    assert set(CLUSTERS) | {"localhost"} <= set(run.recap), run.recap
    changed = dict((h, c["changed"]) for h, c in run.recap.items() if c.get("changed"))
    assert not changed, "a re-run changed something: %s\n%s" % (changed, run.tail(80))
    # no time limit here: site.yml also converges Istio; bench/bench_clusters.py measures
    # the no-op run against its 10 s target


def test_teardown_leaves_nothing(site):
    pids = {}
    for name in CLUSTERS:
        pids.update(helpers.read_pids(os.path.join(site.state_dir, "kwok", "clusters", name)))
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
