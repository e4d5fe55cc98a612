# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The VM mesh of the vm tests: two kwok primaries on two networks with a real local istiod
each, one netns VM per network, converged with playbooks/site.yml (it imports vms.yml).

- ``vm_mesh`` (session): the mesh, made once per session and shared by
  test_vm_onboarding.py and test_root_rotation.py (the machine has 2 cores: one mesh);
  torn down with playbooks/teardown.yml at the end of the session, which fails if a
  process, port reservation, folder or netns is left.
- ``onboarded`` (session): the same mesh once its VMs are onboarded.

A copy of the local inventory with cluster1 (network1) and cluster3 (network2) only, VM
groups on 10.81.0.0/24 and 10.81.1.0/24 (the demo owns 10.77.x, conftest_vms 10.78.x) whose
host sides are the clusters' east-west addresses, where the local istiods listen.
"""

from __future__ import absolute_import, division, print_function

import os

import pytest
import yaml

import helpers
from conftest_vms import vm_support_problem

from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers import netns

CLUSTERS = {"cluster1": ("network1", "10.81.0.1"), "cluster3": ("network2", "10.81.1.1")}
VMS = {  # vm -> (group, cluster, namespace, service account, address)
    "mfi-web1": ("web", "cluster1", "vm-web", "web", "10.81.0.2"),
    "mfi-db1": ("db", "cluster3", "vm-db", "db", "10.81.1.2"),
}


def log(msg):
    print("[vm-onboarding] %s" % msg)


class Mesh:
    def __init__(self, folder, tools_bin):
        self.folder = folder
        self.tools_bin = tools_bin
        self.inventory = os.path.join(folder, "mesh.meshfleet.yml")
        self.state_dir = os.path.join(folder, ".meshfleet")
        self.torn_down = False

    def write_inventory(self):
        with open(os.path.join(helpers.REPO, "inventories", "local", "mesh.meshfleet.yml")) as f:
            topo = yaml.safe_load(f)
        topo["clusters"] = dict((name, dict(topo["clusters"][name], network=net, eastwest_address=addr))
                                for name, (net, addr) in CLUSTERS.items())
        groups = {}
        for vm, (group, cluster, ns, sa, _addr) in VMS.items():
            src = topo["vm_groups"][group]
            net, ew = CLUSTERS[cluster]
            groups[group] = dict(src, cluster=cluster, network=net, namespace=ns, service_account=sa,
                                 settings={"subnet": ew.rsplit(".", 1)[0] + ".0/24"}, hosts={vm: {}})
        topo["vm_groups"] = groups
        with open(self.inventory, "w") as f:
            f.write("# VM onboarding test: copy of inventories/local/mesh.meshfleet.yml\n")
            yaml.safe_dump(topo, f, default_flow_style=False, sort_keys=False)

    def play(self, playbook, *args, **kw):
        run = helpers.run_playbook(playbook, self.inventory, tools_bin=self.tools_bin, args=args, **kw)
        log("%s %s: %.1fs %s" % (playbook, " ".join(args), run.seconds, run.recap))
        return run

    def kubeconfig(self, cluster):
        return os.path.join(self.state_dir, "clusters", cluster, "kubeconfig")

    def rootfs(self, vm, *path):
        return os.path.join(self.state_dir, "vms", vm, "rootfs", *path)

    def bootstrap(self, vm, name):
        return os.path.join(self.state_dir, "vms", vm, "bootstrap", name)


assert_ok = helpers.assert_ok


@pytest.fixture(scope="session")
def vm_mesh(tmp_path_factory, tools_bin):
    problem = vm_support_problem()
    if problem:
        pytest.skip(problem)
    netns.remove_orphans(list(VMS), reclaim=True)
    folder = str(tmp_path_factory.mktemp("vm-onboarding"))
    m = Mesh(folder, tools_bin)
    helpers.safety_net(m.state_dir)
    m.write_inventory()
    try:
        run = m.play("site.yml", timeout=1800)
        assert_ok(run)
        m.site_run = run
        yield m
    finally:
        problems = []
        if not m.torn_down:
            run = m.play("teardown.yml", timeout=900)
            if run.rc != 0:
                problems.append("teardown.yml failed: %s" % run.tail(30))
        left = helpers.leftovers(m.state_dir)
        if left:
            problems.extend(left)
            helpers.force_cleanup(m.state_dir)
        for vm in VMS:
            if netns.netns_exists(netns.netns_name(vm)):
                problems.append("netns of %s left" % vm)
        assert not problems, "VM onboarding mesh was not torn down cleanly: %s" % "; ".join(problems)


@pytest.fixture(scope="session")
def onboarded(vm_mesh):
    """site.yml imports vms.yml: the VMs are onboarded by then (else vms.yml does it)."""
    mesh = vm_mesh
    if "PLAY [VMs | Istio sidecar on every VM" not in mesh.site_run.output:
        run = mesh.play("vms.yml", timeout=900)
        assert_ok(run)
        log("onboarding %d VMs (vms.yml): %.1fs" % (len(VMS), run.seconds))
    else:
        log("onboarding %d VMs: in site.yml (%.1fs with the mesh)" % (len(VMS), mesh.site_run.seconds))
    return mesh
