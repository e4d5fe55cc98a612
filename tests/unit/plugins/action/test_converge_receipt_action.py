# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The converge receipt's extra-vars input (plugins/action/converge_receipt.py): AWX passes
every job its own metadata (awx_job_id, tower_job_id, ...) in an extra vars file; those must
not change the fingerprint, every other extra var must."""

from __future__ import absolute_import, division, print_function

import json

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
