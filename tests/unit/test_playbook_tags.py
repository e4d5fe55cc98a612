# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every play of every playbook carries one tag, its step's (kubespray-style), as
ansible-playbook itself reports them (``--list-tags``, ``--list-tasks``: the tags of imported
playbooks included); the play's name starts with the step; the mesh plays of mesh.yml are
the receipt's steps and are gated by the group ``mesh_converged``; docs/architecture.md lists
every tag."""

from __future__ import absolute_import, division, print_function

import os
import re
import subprocess
import sys

import pytest
import yaml

from ansible_collections.meshfleet.mesh.plugins.module_utils import receipt

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.path.dirname(sys.executable)
PLAYBOOKS = sorted(n for n in os.listdir(os.path.join(REPO, "playbooks")) if n.endswith(".yml"))
STEP_TAGS = ("always", "trust", "vms", "clusters", "control_plane", "mesh_links", "verify", "report")
#: imported only, with the importing playbook's step tag (vms.yml, vms_absent.yml: vms;
#: vms_verify.yml: verify), checked there
HELPERS = ("vms_cloud_known.yml",)
PLAY = re.compile(r"^  play #\d+ \((?P<hosts>[^)]*)\): (?P<name>.*?)\tTAGS: \[(?P<tags>[^]]*)\]$")


def ansible_playbook(*args):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    r = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "inventories/local"] + list(args),
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


def plays(playbook, *args):
    """``[(hosts, name, [tags])]`` as ansible-playbook lists them."""
    out = []
    for line in ansible_playbook(os.path.join("playbooks", playbook), "--list-tags", *args).splitlines():
        m = PLAY.match(line)
        if m:
            out.append((m.group("hosts"), m.group("name"),
                        [t.strip() for t in m.group("tags").split(",") if t.strip()]))
    assert out, playbook
    return out


def step_of(name):
    """``Control plane | ...`` -> ``control_plane``; None without a step prefix."""
    return name.split(" | ", 1)[0].strip().lower().replace(" ", "_") if " | " in name else None


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_every_play_has_one_step_tag(playbook):
    if playbook in HELPERS:
        assert all(tags == [] for dummy, dummy2, tags in plays(playbook)), playbook
        return
    for hosts, name, tags in plays(playbook):
        assert len(tags) == 1 and tags[0] in STEP_TAGS, (playbook, name, tags)
        if tags != ["always"] and step_of(name) is not None:
            assert step_of(name) == tags[0], (playbook, name, tags)


def test_the_mesh_plays_are_the_receipts_steps_gated_once():
    listed = plays("mesh.yml")
    gated = [(name, tags[0]) for hosts, name, tags in listed if hosts.endswith(":!mesh_converged")]
    # in the order the data flows: trust, clusters, control plane, links (istiod ready last)
    order = []
    for dummy, tag in gated:
        if tag != "always" and tag not in order:
            order.append(tag)
    assert order == list(receipt.MESH_STEPS)
    # the record is gated too; nothing else is (validation, the gate, the VMs' machines)
    assert [n for n, t in gated if t == "always"] == ["Receipt | Record what converged (the next run checks it in one process)"]
    others = [(hosts, tags[0]) for hosts, name, tags in listed if not hosts.endswith(":!mesh_converged")]
    assert all(tag in ("always", "vms") for dummy, tag in others), others
    with open(os.path.join(REPO, "playbooks", "mesh.yml")) as f:
        raw = yaml.safe_load(f)
    # one gate: no mesh play's hosts are templated
    for play in raw:
        if "mesh_converged" in str(play.get("hosts")):
            assert "{{" not in play["hosts"], play["name"]


def test_site_is_validation_mesh_vms_summary():
    listed = plays("site.yml")
    tags = [t[0] for dummy, dummy2, t in listed]
    assert tags[0] == "always" and listed[0][1].startswith("Validate the mesh inventory")
    assert listed[-1][1] == "Summary" and tags[-1] == "always"
    steps = [t for t in tags if t in receipt.MESH_STEPS]
    assert sorted(set(steps), key=steps.index) == list(receipt.MESH_STEPS)
    # the VMs are onboarded after the mesh steps
    last_mesh = max(i for i, t in enumerate(tags) if t in receipt.MESH_STEPS)
    assert "vms" in tags[last_mesh:]


def test_tags_clusters_runs_that_step_and_the_validation():
    tasks = ansible_playbook("playbooks/site.yml", "--list-tasks", "--tags", "clusters")
    listed = re.findall(r"^      (.*?)\tTAGS: \[([^]]*)\]$", tasks, re.M)
    assert any(name.startswith("meshfleet.mesh.clusters : Clusters | Converge the cluster") for name, dummy in listed)
    assert any(name.startswith("meshfleet.mesh.validate : Validate the mesh topology") for name, dummy in listed)
    for name, tags in listed:
        tags = set(t.strip() for t in tags.split(","))
        assert "clusters" in tags or "always" in tags, (name, tags)
    assert not any("Trust |" in name or "Mesh links |" in name or "Control plane |" in name for name, dummy in listed)


def test_the_docs_list_every_tag():
    with open(os.path.join(REPO, "docs", "architecture.md")) as f:
        doc = f.read()
    table = doc[doc.index("## Steps and tags"):]
    for tag in STEP_TAGS:
        assert re.search(r"^\| `%s` \|" % tag, table, re.M), tag
