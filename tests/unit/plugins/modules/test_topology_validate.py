# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""meshfleet.mesh.topology_validate (run as Ansible runs it) and the meshfleet.mesh.validate
role (run by ansible-playbook against good and bad inventories)."""

from __future__ import absolute_import, division, print_function

import os
import shutil
import subprocess
import sys

import pytest

from ansible_collections.meshfleet.mesh.plugins.module_utils import topology as t
from ansible_collections.meshfleet.mesh.plugins.modules import topology_validate

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
FIXTURES = os.path.join(REPO, "tests", "unit", "fixtures", "topologies")
BIN = os.path.dirname(sys.executable)


def topology(name):
    with open(name if os.path.isabs(name) else os.path.join(FIXTURES, name)) as f:
        data, _dups = t.load_topology(f.read())
    return data


GOOD = topology(os.path.join(REPO, "inventories", "local", "mesh.meshfleet.yml"))


# --- the module ----------------------------------------------------------------------------

@pytest.mark.parametrize("check_mode", [False, True])
def test_valid_topology(run_module, check_mode):
    r = run_module(topology_validate, dict(topology=GOOD), check_mode=check_mode)
    assert r["rc"] == 0 and not r.get("failed")
    assert r["changed"] is False
    assert r["errors"] == []
    assert r["summary"]["line"] == ("3 clusters on 2 networks, 3 primaries, 0 remotes; "
                                    "VM groups: web (1 host), db (1 host)")
    assert r["summary"]["primaries"] == ["cluster1", "cluster2", "cluster3"]


def test_normalised_topology_is_valid_too(run_module):
    r = run_module(topology_validate, dict(topology=t.normalise(GOOD, "/srv")))
    assert r["errors"] == [] and not r.get("failed")


@pytest.mark.parametrize("check_mode", [False, True])
def test_bad_topology_fails_with_every_problem(run_module, check_mode):
    r = run_module(topology_validate, dict(topology=topology("bad/two-problems.meshfleet.yml")),
                   check_mode=check_mode)
    assert r["failed"] is True and r["rc"] == 1
    assert r["changed"] is False
    assert r["errors"] == [
        'clusters.cluster-2.netwrok: unknown cluster key (did you mean "network"?); expected '
        'one of eastwest_address, network, primary, provider, role, settings, wait_timeouts',
        'clusters.cluster-2.provider: unknown provider "kwak"; choose one of aks, eks, gke, '
        'kwok, minikube',
    ]
    assert r["msg"] == "topology has 2 problems:\n- %s\n- %s" % tuple(r["errors"])


def test_one_problem_is_singular(run_module):
    r = run_module(topology_validate, dict(topology=topology("bad/mesh-missing.meshfleet.yml")))
    assert r["msg"] == "topology has 1 problem:\n- mesh: missing; every topology needs a mesh " \
                       "block with at least id"


def test_extra_errors_are_merged_once(run_module):
    dup = "clusters.cluster1: defined twice (lines 8 and 10); YAML would silently keep only " \
          "the last one"
    bad = topology("bad/provider-unknown.meshfleet.yml")
    found = t.validate(bad)
    r = run_module(topology_validate, dict(topology=bad, extra_errors=[dup] + found))
    assert r["errors"] == [dup] + found
    assert r["msg"].startswith("topology has 2 problems:\n- clusters.cluster1: defined twice")
    # a duplicate alone fails a topology that is otherwise fine
    r = run_module(topology_validate, dict(topology=GOOD, extra_errors=[dup]))
    assert r["failed"] is True and r["errors"] == [dup]


def test_topology_is_required(run_module):
    r = run_module(topology_validate, dict())
    assert r["failed"] is True
    assert "topology" in r["msg"]


# --- the role, through ansible-playbook ----------------------------------------------------------

PLAYBOOK = """\
- name: Validate the mesh
  hosts: localhost
  gather_facts: false
  roles:
    - meshfleet.mesh.validate
"""


def playbook(tmp_path, inventory, *args):
    play = tmp_path / "play.yml"
    play.write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", str(inventory),
                           str(play)] + list(args),
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_role_passes_on_the_local_inventory(tmp_path):
    r = playbook(tmp_path, os.path.join(REPO, "inventories", "local"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 clusters on 2 networks, 3 primaries, 0 remotes; VM groups: web (1 host)" in \
        r.stdout.replace("\n        ", " ")
    assert "changed=0" in r.stdout and "failed=0" in r.stdout


def test_role_fails_on_a_bad_inventory_and_creates_nothing(tmp_path):
    inv = tmp_path / "inventory"
    inv.mkdir()
    shutil.copy(os.path.join(FIXTURES, "bad", "cluster-duplicate.meshfleet.yml"),
                str(inv / "mesh.meshfleet.yml"))
    with open(str(inv / "mesh.meshfleet.yml"), "a") as f:
        f.write("  cluster3: {provider: kwak, network: network1}\n"
                "vm_groups:\n  web:\n    cluster: cluster9\n    hosts:\n"
                "      vm1: {ansible_host: 10.77.0.2}\n")
    r = playbook(tmp_path, inv)
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "topology has 3 problems:" in out
    assert "- clusters.cluster1: defined twice (lines 8 and 10)" in out
    assert '- clusters.cluster3.provider: unknown provider "kwak"' in out
    assert '- vm_groups.web.cluster: no cluster named "cluster9"' in out
    assert "failed=1" in out
    # nothing was created: no state dir, no other file
    assert not (inv / ".meshfleet").exists()
    assert sorted(os.listdir(str(inv))) == ["mesh.meshfleet.yml"]
    assert sorted(os.listdir(str(tmp_path))) == ["inventory", "play.yml"]


def test_role_without_a_topology_inventory_says_so(tmp_path):
    hosts = tmp_path / "hosts.ini"
    hosts.write_text("[clusters]\ncluster1 ansible_connection=local\n")
    r = playbook(tmp_path, hosts)
    assert r.returncode == 2
    assert "no meshfleet_topology: use an inventory with a *.meshfleet.yml file" in r.stdout
