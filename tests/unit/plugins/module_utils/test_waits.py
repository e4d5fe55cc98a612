# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waits: what base.wait_for records for the progress lines, and the cluster module's
per-provider, per-operation timeouts (wait_timeouts > wait_timeout > provider default)."""

from __future__ import absolute_import, division, print_function

import json
import time

import pytest

from ansible_collections.meshfleet.mesh.plugins.module_utils import base
from ansible_collections.meshfleet.mesh.plugins.module_utils.cluster import (
    DEFAULT_WAIT_TIMEOUTS, ClusterModule, wait_timeout_problems)
from ansible_collections.meshfleet.mesh.plugins.module_utils.cloud import module_timeout
from ansible_collections.meshfleet.mesh.plugins.modules import cluster as cluster_module


class FakeModule:
    def __init__(self, params):
        self.params = params
        self.check_mode = False
        self._diff = False


def cluster(provider="eks", **params):
    p = dict(name="c1", provider=provider, settings={}, state_dir="/nonexistent", state="present",
             wait=True, wait_timeout=None, wait_timeouts=None, delete_load_balancers=None)
    p.update(params)
    return ClusterModule(FakeModule(p))


def test_wait_for_records_what_it_waits_for(tmp_path, monkeypatch):
    path = tmp_path / "progress.json"
    monkeypatch.setenv(base.PROGRESS_ENV, str(path))
    seen = []

    def predicate():
        seen.append(json.loads(path.read_text()))
        return len(seen) >= 2

    base.wait_for(predicate, 30, "node group ng1 to become active", sleep=0, sleeper=lambda s: None)
    assert seen[0]["what"] == "node group ng1 to become active"
    assert seen[0]["timeout"] == 30
    assert abs(seen[0]["started"] - time.time()) < 5
    # done: nothing recorded any more
    assert json.loads(path.read_text()).get("what") is None
    assert base.WAITS == []


def test_nested_waits_show_the_innermost_then_the_outer(tmp_path, monkeypatch):
    path = tmp_path / "progress.json"
    monkeypatch.setenv(base.PROGRESS_ENV, str(path))
    with base.recorded_wait("cluster eks1 to be deleted", 2400):
        with base.recorded_wait("node group ng1 to be deleted", 900):
            assert json.loads(path.read_text())["what"] == "node group ng1 to be deleted"
        assert json.loads(path.read_text())["what"] == "cluster eks1 to be deleted"
    assert base.WAITS == []


def test_timeout_message_can_name_what_is_left():
    left = ["istio-system/eastwest"]
    with pytest.raises(base.WaitTimeout) as e:
        base.wait_for(lambda: False, 0, lambda: "Services %s" % ", ".join(left), sleeper=lambda s: None)
    assert "timed out after 0s waiting for Services istio-system/eastwest" == e.value.msg


def test_without_progress_file_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv(base.PROGRESS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert base.wait_for(lambda: 7, 5, "x") == 7
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("provider,op,want", [
    ("eks", "create", 2700), ("eks", "delete", 2400), ("aks", "create", 1800), ("gke", "delete", 1800),
    ("kwok", "create", 600), ("eks", "load_balancers", 900)])
def test_provider_defaults(provider, op, want):
    assert cluster(provider).timeout(op) == want == DEFAULT_WAIT_TIMEOUTS[provider][op]


def test_wait_timeouts_beat_wait_timeout_beats_defaults():
    m = cluster("eks", wait_timeout=100, wait_timeouts=dict(create=5000, update=None, delete=None,
                                                            load_balancers=None))
    assert m.timeout("create") == 5000
    assert m.timeout("delete") == 100
    assert cluster("aks", wait_timeout=100).timeout("load_balancers") == 100


def test_one_budget_per_operation_for_every_provider_wait():
    m = cluster("eks", wait_timeouts=dict(create=1000))
    m.begin("create")
    assert 998 <= module_timeout(m) <= 1000
    m.wait_deadline = time.monotonic() + 300  # 700 s spent on the cluster: the node group gets the rest
    assert 299 <= module_timeout(m) <= 300
    m.wait_deadline = time.monotonic() - 5
    assert module_timeout(m) == 1


def test_bad_timeouts_are_named():
    assert wait_timeout_problems(dict(create=0, delete=-5, update=10)) == [
        "wait_timeouts.create must be a positive number of seconds, got 0",
        "wait_timeouts.delete must be a positive number of seconds, got -5"]
    assert wait_timeout_problems(dict(craete=10)) == [
        "wait_timeouts.craete: unknown operation; expected one of create, update, delete, load_balancers"]
    assert wait_timeout_problems(dict(create=True)) != []


def test_module_refuses_bad_timeouts_before_any_call(run_module, tmp_path):
    res = run_module(cluster_module, dict(name="c1", provider="eks", state_dir=str(tmp_path),
                                          settings=dict(region="eu-west-1"), wait_timeouts=dict(create=0)))
    assert res["failed"] and res["msg"] == "wait_timeouts.create must be a positive number of seconds, got 0"
    assert list(tmp_path.iterdir()) == []
