# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The converge receipt's action (plugins/action/converge_receipt.py).

- Its extra-vars input: AWX passes every job its own metadata (awx_job_id, tower_job_id, ...)
  in an extra vars file; those must not change the fingerprint, every other extra var must.
- In a run (ansible-playbook): it reads the state dir, ``meshfleet_fast_noop`` and the run's
  tags itself; a whole re-run is vouched for, a run whose tags leave out a mesh step neither
  checks nor records (and keeps the receipt).
"""

from __future__ import absolute_import, division, print_function

import json
import os
import subprocess
import sys

import pytest


@pytest.fixture
def action(monkeypatch):
    from ansible.module_utils import _internal
    before = _internal.is_controller
    from ansible import context
    from ansible_collections.meshfleet.mesh.plugins.action import converge_receipt as mod
    args = {}
    monkeypatch.setattr(context, "CLIARGS", args)
    yield mod, args
    _internal.is_controller = before


def job_vars(tmp_path, job_id, **mesh_vars):
    path = tmp_path / ("extravars-%d" % job_id)
    data = dict(awx_job_id=job_id, tower_job_id=job_id, awx_user_name="admin", awx_job_launch_type="manual")
    data.update(mesh_vars)
    path.write_text(json.dumps(data))
    return "@%s" % path


def test_awx_job_metadata_is_not_an_input(action, tmp_path):
    mod, args = action
    args["extra_vars"] = (job_vars(tmp_path, 1, trust_root_days=3650),)
    first = mod._extra_vars_text()
    args["extra_vars"] = (job_vars(tmp_path, 2, trust_root_days=3650),)
    second = mod._extra_vars_text()
    assert first[0][1] == second[0][1] == {"trust_root_days": 3650}
    # the same file name each job (AWX: /runner/env/extravars): the same input
    args["extra_vars"] = (job_vars(tmp_path, 1, trust_root_days=3650),)
    assert mod._extra_vars_text() == first
    # a mesh var that changes still counts
    args["extra_vars"] = (job_vars(tmp_path, 1, trust_root_days=1000),)
    assert mod._extra_vars_text() != first


def test_other_extra_vars_stay_as_given(action, tmp_path):
    mod, args = action
    plain = tmp_path / "vars.yml"
    plain.write_text("a: 1\n# a comment counts too\n")
    args["extra_vars"] = ("@%s" % plain, "x=1 y=2", '{"awx_job_id": 5, "b": 2}', "@%s" % (tmp_path / "missing"))
    out = mod._extra_vars_text()
    assert out[0] == ["@%s" % plain, "a: 1\n# a comment counts too\n"]
    assert out[1] == "x=1 y=2"
    assert out[2] == {"b": 2}
    assert out[3] == ["@%s" % (tmp_path / "missing"), None]


# --- the action in a run: what it reads from the run itself ---------------------------------
# A mesh of one step that needs no cluster: the validation (topology_validate is a receipt step).
# The plays carry the tags mesh.yml's do; "A mesh step" stands for the clusters step.
RUN_PLAYBOOK = """\
- name: Validate
  hosts: localhost
  gather_facts: false
  tags: [always]
  roles:
    - role: meshfleet.mesh.validate

- name: Gate
  hosts: localhost
  gather_facts: false
  tags: [always]
  tasks:
    - name: Check the receipt
      meshfleet.mesh.converge_receipt:
      register: gate
    - name: Keep the answer
      ansible.builtin.copy:
        dest: "{{ out_dir }}/gate.json"
        content: "{{ gate | to_json }}"
        mode: "0600"

- name: A mesh step
  hosts: localhost
  gather_facts: false
  tags: [clusters]
  tasks:
    - name: Stand-in
      ansible.builtin.debug:
        msg: step

- name: Record
  hosts: localhost
  gather_facts: false
  tags: [always]
  tasks:
    - name: Record the receipt
      meshfleet.mesh.converge_receipt:
        state: recorded
      register: rec
    - name: Keep the answer
      ansible.builtin.copy:
        dest: "{{ out_dir }}/rec.json"
        content: "{{ rec | to_json }}"
        mode: "0600"
"""

TOPOLOGY = """\
plugin: meshfleet.mesh.topology
mesh: {id: r1}
clusters:
  rc1: {provider: kwok, network: n1}
"""


@pytest.fixture
def run_site(tmp_path):
    repo = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
    bin_dir = os.path.dirname(sys.executable)
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "mesh.meshfleet.yml").write_text(TOPOLOGY)
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "play.yml").write_text(RUN_PLAYBOOK)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(repo, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCALHOST_WARNING="0",
               PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))
    env.pop("MESHFLEET_STATE_DIR", None)

    def run(*args, inventory=str(inv / "mesh.meshfleet.yml"), playbook="play.yml", ok=True):
        for name in ("gate.json", "rec.json"):
            if (out / name).exists():
                (out / name).unlink()
        r = subprocess.run([os.path.join(bin_dir, "ansible-playbook"), "-i", inventory, str(tmp_path / playbook),
                            "-e", "out_dir=%s" % out] + list(args),
                           cwd=repo, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert (r.returncode == 0) is ok, r.stdout[-3000:] + r.stderr[-3000:]
        answers = dict((name[:-5], json.loads((out / name).read_text()))
                       for name in ("gate.json", "rec.json") if (out / name).exists())
        return answers, r.stdout + r.stderr

    run.receipt = inv / ".meshfleet" / "converge-receipt.json"
    run.tmp = tmp_path
    return run


def test_the_receipt_is_in_the_inventorys_state_dir_and_vouches_for_a_whole_rerun(run_site):
    from ansible_collections.meshfleet.mesh.plugins.module_utils import receipt
    steps = list(receipt.MESH_STEPS)
    first, dummy = run_site()
    assert first["gate"]["converged"] is False and first["gate"]["reason"].startswith("no receipt yet")
    assert first["gate"]["selected"] == steps
    assert first["rec"]["recorded"] is True and first["rec"]["reason"] == "1 steps recorded"
    assert first["rec"]["path"] == str(run_site.receipt) and run_site.receipt.is_file()

    again, dummy = run_site()
    assert again["gate"]["converged"] is True, again["gate"]["reason"]
    assert again["gate"]["reason"] == "1 steps on 1 hosts would change nothing"

    # tags that leave every mesh step in do not matter (molecule's, the VMs')
    skip_vms, dummy = run_site("--skip-tags", "vms,molecule-notest,notest")
    assert skip_vms["gate"]["converged"] is True, skip_vms["gate"]["reason"]
    assert skip_vms["gate"]["selected"] == steps


PARTIAL_RUNS = [
    (("--tags", "clusters"),
     "this run's tags select only clusters of the mesh steps (the receipt is for whole converges)"),
    (("--skip-tags", "trust"),
     "this run's tags select only clusters, control_plane, mesh_links of the mesh steps (the receipt is for whole converges)"),
    (("--tags", "always"), "this run's tags select none of the mesh steps (trust, clusters, control_plane, mesh_links)"),
    (("-e", "meshfleet_fast_noop=false"), "fast no-op off: meshfleet_fast_noop=false"),
]


def test_a_partial_run_neither_checks_nor_records(run_site):
    run_site()
    before = run_site.receipt.read_bytes()
    for args, reason in PARTIAL_RUNS:
        answers, dummy = run_site(*args)
        assert answers["gate"]["converged"] is False and answers["gate"]["reason"] == reason, args
        assert answers["rec"]["recorded"] is False and answers["rec"]["reason"] == "nothing recorded: " + reason
        assert run_site.receipt.read_bytes() == before, args  # the receipt of the whole run stays
    # ... and still vouches for the next whole run
    again, dummy = run_site()
    assert again["gate"]["converged"] is True, again["gate"]["reason"]


def test_without_a_state_dir_it_says_which_field(run_site):
    (run_site.tmp / "hosts.ini").write_text("[clusters]\n")
    gate_play = RUN_PLAYBOOK[RUN_PLAYBOOK.index("- name: Gate"):RUN_PLAYBOOK.index("- name: A mesh step")]
    (run_site.tmp / "gate.yml").write_text(gate_play)
    dummy, output = run_site(inventory=str(run_site.tmp / "hosts.ini"), playbook="gate.yml", ok=False)
    assert "state_dir: not given, and the inventory sets no meshfleet_state_dir" in output
