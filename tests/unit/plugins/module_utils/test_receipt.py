# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""module_utils/receipt.py: the fingerprint, recording rules and the one-process check.

The check asks each recorded step's module its one question (``MeshfleetModule.check``: is
its plan empty and is it healthy?); here the steps are a small MeshfleetModule whose plan,
health and result are what its arguments tell it (or it raises), found by
``receipt.step_class`` for the test. The real steps against real kwok clusters are covered by
tests/integration/test_site_clusters.py (no-op fast path, drift repaired, changed inputs).
"""

from __future__ import absolute_import, division, print_function

import json
import os

import pytest

from ansible_collections.meshfleet.mesh.plugins.module_utils import receipt
from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError, MeshfleetModule, Plan
from ansible_collections.meshfleet.mesh.plugins.module_utils.cluster import ClusterInfoModule, ClusterModule
from ansible_collections.meshfleet.mesh.plugins.module_utils.istiod_local import IstiodLocalModule


class FakeStep(MeshfleetModule):
    """Observes ``params["outcome"]``: its ``would`` are the plan, ``unhealthy`` the health,
    ``result`` the result; records that it ran in check mode with its own copy."""
    receipt_step = True

    def observe(self):
        out = self.params["outcome"]
        if out == "raise":
            raise MeshfleetError("API server unreachable\nsecond line")
        if out == "bug":
            raise KeyError("oops")
        self.params["mutated"] = True  # must not leak into the recorded step
        return out

    def plan(self, observed):
        plan = Plan()
        for what in observed.get("would", ()):
            plan.add(what)
        return plan

    def healthy(self, observed, plan):
        return observed.get("unhealthy")

    def result(self, observed, plan):
        return dict(observed.get("result", {}), check_mode=self.check_mode)


@pytest.fixture
def fake_steps(monkeypatch):
    monkeypatch.setattr(receipt, "step_class", lambda name: FakeStep)


def step(host, module, var, outcome, recorded=None):
    return dict(host=host, module=module, var=var, args=dict(outcome=outcome), result=recorded or {})


READY = dict(result=dict(cluster=dict(ready=True, api_server="https://127.0.0.1:1", kubeconfig="/k")))


def converged_steps():
    return [step("localhost", "mesh_ca.MeshCAModule", "trust_result", dict()),
            step("c1", "cluster.ClusterModule", "clusters_result", READY, recorded=READY["result"]),
            step("c1", "istio_install.IstioInstallModule", "control_plane_install",
                 dict(result=dict(gateway=dict(address="10.0.0.1")))),
            step("c1", "istiod_local.IstiodLocalModule", "control_plane_istiod", dict(result=dict(istiod=dict(ready=True)))),
            step("c2", "remote_secret.RemoteSecretModule", "mesh_links_result", dict(result=dict(secrets=[])))]


def fp(*args, **kwargs):
    return receipt.fingerprint(*args, **kwargs)[0]


# --- fingerprint -----------------------------------------------------------------------------
def test_fingerprint_follows_content_not_noise(tmp_path):
    top = tmp_path / "inv"
    (top / "group_vars").mkdir(parents=True)
    (top / "mesh.meshfleet.yml").write_text("clusters: {}\n")
    (top / "group_vars" / "all.yml").write_text("a: 1\n")
    state = top / ".meshfleet"
    state.mkdir()
    other_state = top / "state"
    other_state.mkdir()
    base = fp([str(top)], {"x": 1}, skip=[str(other_state)])

    (state / "kubeconfig").write_text("changes every run\n")          # hidden folder
    (other_state / "log").write_text("changes every run\n")           # the state dir
    (top / "__pycache__").mkdir()
    (top / "__pycache__" / "m.pyc").write_bytes(b"\0")
    assert fp([str(top)], {"x": 1}, skip=[str(other_state)]) == base

    assert fp([str(top)], {"x": 2}, skip=[str(other_state)]) != base
    (top / "group_vars" / "all.yml").write_text("a: 2\n")
    changed = fp([str(top)], {"x": 1}, skip=[str(other_state)])
    assert changed != base
    (top / "group_vars" / "new.yml").write_text("b: 1\n")
    assert fp([str(top)], {"x": 1}, skip=[str(other_state)]) != changed
    # a path that is not there counts too (it may appear later)
    assert fp([str(top), str(tmp_path / "nope")], {"x": 1}) != \
        fp([str(top)], {"x": 1})


def test_fingerprint_parts_say_what_changed(tmp_path):
    (tmp_path / "a").write_text("1")
    (tmp_path / "b").write_text("1")
    dummy, before = receipt.fingerprint([str(tmp_path / "a"), str(tmp_path / "b")], {"extra_vars": []})
    (tmp_path / "b").write_text("2")
    dummy, after = receipt.fingerprint([str(tmp_path / "a"), str(tmp_path / "b")], {"extra_vars": ["x=1"]})
    assert receipt.changed_parts(before, after) == sorted([str(tmp_path / "b"), "extra_vars"])
    assert receipt.changed_parts(before, before) == []


def test_big_files_are_fingerprinted_by_size_and_mtime(tmp_path):
    big = tmp_path / "istioctl"
    big.write_bytes(b"\0" * (receipt.BIG_FILE + 1))
    before = fp([str(big)], {})
    os.utime(str(big), ns=(1, 1))
    assert fp([str(big)], {}) != before


def test_fingerprint_is_free_of_host_names(tmp_path, monkeypatch):
    """An AWX/AAP job runs in a new container each time (another host name, the image's
    files at other inode numbers): the same inputs must give the same fingerprint there."""
    for name, size in (("istioctl", receipt.BIG_FILE + 1), ("site.yml", 10)):
        (tmp_path / "a" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "a" / name).write_bytes(b"\0" * size)
        os.utime(str(tmp_path / "a" / name), ns=(10 ** 18, 10 ** 18))
    monkeypatch.setattr(receipt.platform, "node", lambda: "awx-job-1-abcde")
    before = fp([str(tmp_path / "a")], receipt.environment_extras())
    # the next job: another container name, the same files copied to new inodes
    monkeypatch.setattr(receipt.platform, "node", lambda: "awx-job-2-fghij")
    (tmp_path / "a").rename(tmp_path / "old")
    (tmp_path / "a").mkdir()
    for name in ("istioctl", "site.yml"):
        (tmp_path / "a" / name).write_bytes((tmp_path / "old" / name).read_bytes())
        os.utime(str(tmp_path / "a" / name), ns=(10 ** 18, 10 ** 18))
    assert os.stat(str(tmp_path / "a" / "istioctl")).st_ino != os.stat(str(tmp_path / "old" / "istioctl")).st_ino
    assert fp([str(tmp_path / "a")], receipt.environment_extras()) == before
    assert "awx-job" not in json.dumps(receipt.environment_extras())
    # what the steps' arguments depend on still counts: another architecture, another big file
    monkeypatch.setattr(receipt.platform, "machine", lambda: "riscv64")
    assert fp([str(tmp_path / "a")], receipt.environment_extras()) != before


# --- recording -----------------------------------------------------------------------------
def result(**kw):
    out = dict(changed=True, module_args=dict(name="c1"), receipt_step="cluster.ClusterModule",
               cluster=dict(api_server="https://x"))
    out.update(kw)
    return out


def test_steps_from_results_keep_args_and_results():
    steps, problem = receipt.steps_from_results([
        dict(host="c1", var="clusters_result", result=result()),
        dict(host="c2", var="control_plane_istiod", result=dict(skipped=True)),
    ])
    assert problem is None
    assert steps == [dict(host="c1", var="clusters_result", module="cluster.ClusterModule", args=dict(name="c1"),
                          result=dict(cluster=dict(api_server="https://x")))]


def test_one_shot_arguments_are_recorded_as_a_re_run_passes_them():
    # the module says what a re-run passes: istiod restarted because cacerts changed -> started
    class Shim:
        params = dict(name="c1", state="restarted")
        check_mode = _diff = False
    assert IstiodLocalModule(module=Shim()).rerun_params() == dict(name="c1", state="started")
    Shim.params = dict(name="c1", state="started")
    assert IstiodLocalModule(module=Shim()).rerun_params() == dict(name="c1", state="started")


@pytest.mark.parametrize("res, problem", [
    (result(failed=True), "clusters_result of c1 failed"),
    (dict(censored="hidden", changed=True), "clusters_result of c1 was hidden by no_log"),
    (dict(changed=True, receipt_step="cluster.ClusterModule"), "clusters_result of c1 has no recorded module arguments"),
    (result(module_args=dict(settings=dict(token=receipt.NO_LOG_MARK))),
     "clusters_result of c1 has a no_log argument (the receipt never stores secrets)"),
])
def test_what_cannot_be_recorded(res, problem):
    assert receipt.steps_from_results([dict(host="c1", var="clusters_result",
                                            result=res)]) == (None, problem)


def test_unknown_module_is_refused():
    steps, problem = receipt.steps_from_results([dict(host="c1", var="x", result=result(receipt_step="shell"))])
    assert steps is None and problem.startswith("x of c1 is not the result of a converge-receipt step (receipt_step 'shell')")


def test_only_receipt_step_classes_are_run():
    assert receipt.step_class(ClusterModule.step_name()) is ClusterModule
    assert ClusterModule.step_name() == "cluster.ClusterModule"
    for name in (ClusterInfoModule.step_name(), "base.Plan", "os.path", "../x.Y"):
        with pytest.raises(MeshfleetError, match="is not a converge-receipt step"):
            receipt.step_class(name)


def test_every_receipt_step_class_is_found_by_its_name():
    # a step class in a package (localnet/network.py) is recorded with its package path: a
    # receipt naming only the file ("network.LocalNetworkModule") sent every re-run of a
    # real-node mesh down the slow path (ModuleNotFoundError in the check)
    import importlib
    import pkgutil
    from ansible_collections.meshfleet.mesh.plugins import module_utils
    from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetModule
    found = {}
    for info in pkgutil.walk_packages(module_utils.__path__, module_utils.__name__ + "."):
        mod = importlib.import_module(info.name)
        for obj in vars(mod).values():
            if isinstance(obj, type) and issubclass(obj, MeshfleetModule) and obj.receipt_step \
                    and obj.__module__ == mod.__name__:
                found[obj.step_name()] = obj
    assert "localnet.network.LocalNetworkModule" in found and "remote_secret.RemoteSecretModule" in found
    for name, cls in found.items():
        assert receipt.step_class(name) is cls, name


def test_save_and_load(tmp_path):
    state = str(tmp_path / "state")
    assert receipt.load(state) == (None, "no receipt yet (first converge, or the last one did not finish)")
    receipt.save(state, "abc", converged_steps())
    path = receipt.receipt_path(state)
    assert os.stat(path).st_mode & 0o777 == 0o600
    body, why = receipt.load(state)
    assert why is None and body["fingerprint"] == "abc" and body["steps"] == converged_steps()
    with open(path, "w") as f:
        json.dump(dict(body, version=0), f)
    assert "from another Meshfleet version" in receipt.load(state)[1]
    with open(path, "w") as f:
        f.write("{not json")
    assert "is not JSON" in receipt.load(state)[1]
    assert receipt.drop(state) and not os.path.exists(path) and not receipt.drop(state)


# --- checking ------------------------------------------------------------------------------
@pytest.mark.parametrize("parallel", [True, False])
def test_converged_when_no_step_would_change(fake_steps, parallel):
    steps = converged_steps()
    ok, why, results = receipt.check(steps, parallel=parallel)
    assert ok, why
    assert why == "5 steps on 3 hosts would change nothing"
    assert results["c1"]["control_plane_install"]["gateway"] == dict(address="10.0.0.1")
    assert results["c1"]["clusters_result"]["check_mode"] is True
    assert "mutated" not in steps[1]["args"]  # each check runs on its own copy of the arguments


@pytest.mark.parametrize("index, outcome, why", [
    (2, dict(would=["missing: Service istio-system/istiod"]),
     "c1: istio_install would change: missing: Service istio-system/istiod"),
    (4, dict(would=["target: replace secret istio-system/istio-remote-secret-c1 (token rejected)"]),
     "c2: remote_secret would change: target: replace secret istio-system/istio-remote-secret-c1 (token rejected)"),
    (1, dict(unhealthy="cluster not ready"), "c1: cluster cluster not ready"),
    (1, dict(unhealthy="the kubeconfig names https://127.0.0.1:1, the cluster serves at https://127.0.0.1:2"),
     "c1: cluster the kubeconfig names https://127.0.0.1:1, the cluster serves at https://127.0.0.1:2"),
    (3, dict(unhealthy="istiod not ready"), "c1: istiod_local istiod not ready"),
    (0, "raise", "localhost: mesh_ca check failed: API server unreachable"),
    (0, "bug", "localhost: mesh_ca check failed: KeyError: 'oops'"),
])
@pytest.mark.parametrize("parallel", [True, False])
def test_any_change_or_error_takes_the_normal_path(fake_steps, parallel, index, outcome, why):
    steps = converged_steps()
    steps[index]["args"] = dict(outcome=outcome)
    ok, reason, results = receipt.check(steps, parallel=parallel)
    assert not ok and results == {}
    assert reason == why


def test_a_hung_check_times_out_into_the_normal_path(fake_steps, monkeypatch):
    monkeypatch.setattr(receipt, "CHECK_TIMEOUT", 1)
    monkeypatch.setattr(receipt, "CHECK_STEP_SECONDS", 0)
    monkeypatch.setattr(FakeStep, "observe", lambda self: __import__("time").sleep(30))
    ok, reason, dummy = receipt.check(converged_steps(), parallel=True)
    assert not ok and "check timed out after 1s" in reason


def test_the_check_bound_grows_with_the_recorded_steps():
    # 3 clusters (about 20 steps) keep the two-minute backstop; a 20-cluster full mesh
    # (about 460 steps, 380 of them remote secrets) gets room for its checks on a busy machine
    assert receipt.check_bound(20) == 130
    assert receipt.check_bound(460) == 350
    assert receipt.check_bound(460) > receipt.check_bound(459)


def test_no_steps_is_not_converged():
    assert receipt.check([]) == (False, "the receipt records no steps", {})


def test_a_step_checked_without_ansible_module_is_read_only():
    step = FakeStep(params=dict(outcome=dict(would=["x"])))
    assert step.check_mode and not step.diff_mode and step.module is None
    assert step.check() == ("would change: x", None)
    step.warn("careful")
    assert step.warnings == ["careful"]
    with pytest.raises(MeshfleetError, match="boom"):
        step.fail("boom")


def test_a_run_once_result_registered_on_every_host_is_recorded_once():
    """The trust step runs once (run_once) in a play over the clusters: Ansible registers its
    result on every host of the play; the receipt records (and checks) it once."""
    trust = dict(changed=False, module_args=dict(clusters=["c1", "c2"], state_dir="/s"),
                 receipt_step="mesh_ca.MeshCAModule", summary="2 unchanged")
    steps, problem = receipt.steps_from_results([
        dict(host="c1", var="trust_result", result=trust),
        dict(host="c1", var="clusters_result", result=result()),
        dict(host="c2", var="trust_result", result=dict(trust)),
        dict(host="c2", var="clusters_result", result=result(module_args=dict(name="c2"))),
    ])
    assert problem is None
    assert [(s["host"], s["var"]) for s in steps] == [
        ("c1", "trust_result"), ("c1", "clusters_result"), ("c2", "clusters_result")]
    # other arguments are another step, also under the same variable name
    other = dict(trust, module_args=dict(clusters=["c1"], state_dir="/s"))
    steps, problem = receipt.steps_from_results([dict(host="c1", var="trust_result", result=trust),
                                                 dict(host="c2", var="trust_result", result=other)])
    assert problem is None and len(steps) == 2


# --- which runs check and record the receipt -------------------------------------------------
TAG_CASES = [
    # (--tags, --skip-tags)
    (["all"], []), ([], []), (["clusters"], []), (["trust", "clusters"], []), (["always"], []),
    (["tagged"], []), (["untagged"], []), (["never"], []), (["all"], ["clusters"]),
    (["all"], ["always"]), (["all"], ["all"]), (["all"], ["tagged"]), (["all"], ["untagged"]),
    (["clusters"], ["clusters"]), (["all"], ["molecule-notest", "notest"]), (["clusters,trust"], []),
    (["vms"], ["all"]), (["always"], ["always"]),
]
TASK_TAGS = [[], ["clusters"], ["always"], ["never"], ["never", "clusters"], ["always", "clusters"],
             ["vms"], ["trust", "clusters"]]


@pytest.mark.parametrize("only, skip", TAG_CASES)
@pytest.mark.parametrize("task_tags", TASK_TAGS)
def test_tag_rule_is_ansibles(only, skip, task_tags):
    """runs_with_tags says what Ansible's own rule (Taggable.evaluate_tags) says."""
    from ansible.playbook.play import Play
    from ansible.parsing.dataloader import DataLoader
    play = Play.load(dict(hosts="localhost", gather_facts=False,
                          tasks=[dict(name="t", debug=dict(msg="x"), tags=task_tags)]), loader=DataLoader())
    task = [t for block in play.compile() for t in block.block if t.name == "t"][0]
    only_set = set(t.strip() for tag in only for t in tag.split(","))
    assert receipt.runs_with_tags(task_tags, only, skip) is task.evaluate_tags(only_set, set(skip), {})


@pytest.mark.parametrize("only, skip, selected", [
    (["all"], [], list(receipt.MESH_STEPS)),
    (["all"], ["vms", "summary"], list(receipt.MESH_STEPS)),
    (["all"], ["molecule-notest", "notest"], list(receipt.MESH_STEPS)),
    (["tagged"], [], list(receipt.MESH_STEPS)),
    (["trust", "clusters", "control_plane", "mesh_links"], [], list(receipt.MESH_STEPS)),
    (["clusters"], [], ["clusters"]),
    (["mesh_links,trust"], [], ["trust", "mesh_links"]),
    (["all"], ["clusters"], ["trust", "control_plane", "mesh_links"]),
    (["always"], [], []),
    (["vms"], [], []),
    (["untagged"], [], []),
    (["all"], ["all"], []),
])
def test_selected_steps(only, skip, selected):
    assert receipt.selected_steps(only, skip) == selected


def test_only_whole_runs_check_and_record():
    assert receipt.out_of_scope(True, list(receipt.MESH_STEPS)) is None
    assert receipt.out_of_scope(False, list(receipt.MESH_STEPS)) == "fast no-op off: meshfleet_fast_noop=false"
    assert receipt.out_of_scope(True, ["clusters"]) == (
        "this run's tags select only clusters of the mesh steps (the receipt is for whole converges)")
    assert receipt.out_of_scope(True, []) == (
        "this run's tags select none of the mesh steps (trust, clusters, control_plane, mesh_links)")
