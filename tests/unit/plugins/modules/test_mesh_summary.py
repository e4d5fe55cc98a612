# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""meshfleet.mesh.mesh_summary: the lines site.yml ends with (module_utils/mesh_summary.py),
the module run as Ansible runs it, and the action plugin run by ansible-playbook, which
reads every cluster's variables and the gate's result itself."""

from __future__ import absolute_import, division, print_function

import json
import os
import subprocess
import sys

import pytest

from ansible_collections.meshfleet.mesh.plugins.module_utils import mesh_summary as ms
from ansible_collections.meshfleet.mesh.plugins.modules import mesh_summary

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
BIN = os.path.dirname(sys.executable)

C1_VARS = dict(meshfleet_role="primary", meshfleet_network="network1",
               clusters_api_server="https://127.0.0.1:32001",
               control_plane_gateway=dict(address="10.77.0.1", published=True),
               control_plane_istiod=dict(changed=False, istiod=dict(ready=True, debug_url="https://10.77.0.1:15014/debug")))
# what the gate's check returns for a cluster on a fast no-op (no mesh play set any variable)
C1_CHECKED = dict(
    clusters_result=dict(cluster=dict(api_server="https://127.0.0.1:32001", ready=True)),
    control_plane_install=dict(gateway=dict(address="10.77.0.1")),
    control_plane_istiod=dict(istiod=dict(debug_url="https://10.77.0.1:15014/debug")))
C1_LINE = "cluster1 (primary, network1): API https://127.0.0.1:32001, east-west 10.77.0.1, istiod https://10.77.0.1:15014/debug"


# --- the lines -------------------------------------------------------------------------------
@pytest.mark.parametrize("gate, line", [
    (dict(converged=True, reason="15 steps on 4 hosts would change nothing", selected=["trust"]),
     "nothing to change: 15 steps on 4 hosts would change nothing"),
    (dict(converged=False, reason="cluster1: remote_secret would change: x", selected=["trust"]),
     "converged by the mesh plays (cluster1: remote_secret would change: x)"),
    (dict(converged=False, reason="fast no-op off: meshfleet_fast_noop=false", selected=["trust"]),
     "converged by the mesh plays (fast no-op off: meshfleet_fast_noop=false)"),
    (dict(converged=False, reason="this run's tags select none of the mesh steps (trust)", selected=[]),
     "no mesh play ran: this run's tags select none of the mesh steps (trust)"),
    ({}, "converged by the mesh plays (no receipt check in this run)"),
    (None, "converged by the mesh plays (no receipt check in this run)"),
])
def test_gate_line(gate, line):
    assert ms.gate_line(gate) == line


def test_a_converged_run_reads_its_variables():
    lines = ms.summary_lines(dict(converged=False, reason="no receipt yet"), dict(cluster1=C1_VARS))
    assert lines == ["converged by the mesh plays (no receipt yet)", C1_LINE]


def test_a_fast_no_op_reads_the_gate_check_results():
    gate = dict(converged=True, reason="5 steps on 2 hosts would change nothing", results=dict(cluster1=C1_CHECKED))
    facts = dict(meshfleet_role="primary", meshfleet_network="network1")
    assert ms.summary_lines(gate, dict(cluster1=facts)) == [
        "nothing to change: 5 steps on 2 hosts would change nothing", C1_LINE]


def test_what_this_run_set_wins_over_the_check():
    gate = dict(converged=False, reason="r", results=dict(cluster1=dict(
        clusters_result=dict(cluster=dict(api_server="https://old:1")),
        control_plane_install=dict(gateway=dict(address="192.0.2.1")))))
    assert ms.summary_lines(gate, dict(cluster1=C1_VARS))[1] == C1_LINE


def test_missing_values_and_the_order():
    """Unknown values are "-"; no local istiod (skipped, or none recorded) means istiod runs in
    the cluster; the clusters come in the order given."""
    clusters = dict([
        ("zeta", dict(meshfleet_role="remote", meshfleet_network="n2",
                      control_plane_istiod=dict(skipped=True, changed=False))),
        ("alpha", dict(meshfleet_role="primary", meshfleet_network="n1", control_plane_gateway={},
                       clusters_api_server=None)),
    ])
    assert ms.summary_lines(dict(converged=False, reason="r"), clusters)[1:] == [
        "zeta (remote, n2): API -, east-west -, istiod in cluster",
        "alpha (primary, n1): API -, east-west -, istiod in cluster",
    ]


# --- the module ------------------------------------------------------------------------------
@pytest.mark.parametrize("check_mode", [False, True])
def test_module_changes_nothing(run_module, check_mode):
    r = run_module(mesh_summary, dict(gate=dict(converged=False, reason="no receipt yet"),
                                      clusters=dict(cluster1=C1_VARS)), check_mode=check_mode)
    assert r["rc"] == 0 and not r.get("failed")
    assert r["changed"] is False
    assert r["lines"] == ["converged by the mesh plays (no receipt yet)", C1_LINE]


# --- the action plugin, from the hosts' variables --------------------------------------------
PLAYBOOK = """\
- name: What the mesh plays and the gate leave behind
  hosts: clusters
  gather_facts: false
  tasks:
    - name: cluster1 converged by this run's plays
      ansible.builtin.set_fact:
        clusters_api_server: https://127.0.0.1:32001
        control_plane_gateway: {address: 10.77.0.1}
        control_plane_istiod: {istiod: {debug_url: "https://10.77.0.1:15014/debug"}}
      when: inventory_hostname == 'cluster1'

- name: The summary
  hosts: localhost
  gather_facts: false
  tasks:
    - name: The gate's result (cluster2 from its checks)
      ansible.builtin.set_fact:
        meshfleet_gate:
          converged: true
          reason: 4 steps on 2 hosts would change nothing
          results:
            cluster2: {clusters_result: {cluster: {api_server: "https://127.0.0.1:32002"}}}
    - name: Summary
      meshfleet.mesh.mesh_summary:
      register: summary
    - name: Given arguments win
      meshfleet.mesh.mesh_summary:
        gate: {converged: false, reason: given}
        clusters: {x: {meshfleet_role: primary, meshfleet_network: n}}
      register: given
    - name: Keep them
      ansible.builtin.copy:
        dest: "{{ out }}"
        content: "{{ {'summary': summary.lines, 'given': given.lines} | to_json }}"
        mode: "0600"
"""

INVENTORY = """\
[primaries]
cluster1 meshfleet_role=primary meshfleet_network=network1
cluster2 meshfleet_role=primary meshfleet_network=network1
[remotes]
cluster3 meshfleet_role=remote meshfleet_network=network2
[clusters:children]
primaries
remotes
[clusters:vars]
ansible_connection=local
"""


def test_action_reads_every_cluster_and_the_gate(tmp_path):
    (tmp_path / "hosts.ini").write_text(INVENTORY)
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    out = tmp_path / "out.json"
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCALHOST_WARNING="0",
               PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    r = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", str(tmp_path / "hosts.ini"),
                        str(tmp_path / "play.yml"), "-e", "out=%s" % out],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got["summary"] == [
        "nothing to change: 4 steps on 2 hosts would change nothing",
        C1_LINE,
        "cluster2 (primary, network1): API https://127.0.0.1:32002, east-west -, istiod in cluster",
        "cluster3 (remote, network2): API -, east-west -, istiod in cluster",
    ]
    assert got["given"] == ["converged by the mesh plays (given)", "x (primary, n): API -, east-west -, istiod in cluster"]
    # shown without -v, like debug's output
    assert "nothing to change: 4 steps on 2 hosts would change nothing" in r.stdout
