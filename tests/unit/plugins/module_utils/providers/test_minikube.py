# -*- coding: utf-8 -*-
"""minikube provider tests with a fake ``minikube`` executable.

No minikube (and no VM or container runtime) is needed: tests/fakes/minikube, a
small Python script, is put first on PATH. It records each call's arguments and
KUBECONFIG to a file and answers like minikube v1.3x (``status -o json`` and
``profile list -o json`` shapes, exit code 85 for a missing profile, profiles under
$MINIKUBE_HOME/profiles, kubeconfig entries written to $KUBECONFIG). The tests drive
the real module path: ``plugins/modules/cluster.py`` ``main()`` with ``patch_module_args``.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import stat
import sys

import pytest
import yaml

from ansible_collections.meshfleet.mesh.plugins.modules import cluster as cluster_module
from ansible_collections.meshfleet.mesh.tests.fakes.modrun import run_module

FAKES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "fakes"))
WRITES = ("start", "delete", "update-context")


@pytest.fixture
def fake_minikube(monkeypatch, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    log = tmp_path / "minikube.log"
    # tests/fakes/minikube run by this interpreter (a pyenv shim's start-up is slow)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "minikube"
    wrapper.write_text('#!/bin/sh\nexec "%s" "%s" "$@"\n' % (sys.executable, os.path.join(FAKES, "minikube")))
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir) + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MINIKUBE_HOME", str(tmp_path / "minikube-home"))
    monkeypatch.setenv("FAKE_MINIKUBE_LOG", str(log))
    monkeypatch.delenv("KUBECONFIG", raising=False)

    class Calls:
        def all(self):
            if not log.exists():
                return []
            return [json.loads(line) for line in log.read_text().splitlines()]

        def writes(self):
            return [c["argv"] for c in self.all() if c["argv"][0] in WRITES]

        def clear(self):
            if log.exists():
                log.unlink()
    return Calls()


def run(state_dir, settings=None, **kw):
    args = dict(name="mk1", provider="minikube", settings=settings or {}, state_dir=state_dir,
                wait_timeout=120)
    args.update(kw.pop("args", {}))
    return run_module(cluster_module.main, args, **kw)


def test_lifecycle(fake_minikube, state_dir, tmp_path):
    s = dict(driver="docker", kubernetes_version="1.33.1", cpus=2, memory="4g")
    r = run(state_dir, s)
    assert r["rc"] == 0, r
    assert r["changed"] is True
    c = r["cluster"]
    assert c["exists"] and c["ready"] and c["context"] == "mk1"
    assert c["settings"] == dict(profile="mk1", driver="docker", kubernetes_version="v1.33.1",
                                 cpus=2, memory=4096)
    kubeconfig = os.path.join(state_dir, "clusters", "mk1", "kubeconfig")
    assert c["kubeconfig"] == kubeconfig
    assert stat.S_IMODE(os.stat(kubeconfig).st_mode) == 0o600
    cfg = yaml.safe_load(open(kubeconfig))
    assert cfg["current-context"] == "mk1" and c["api_server"] == cfg["clusters"][0]["cluster"]["server"]

    start = [a for a in fake_minikube.writes() if a[0] == "start"][0]
    assert start == ["start", "-p", "mk1", "--driver=docker", "--kubernetes-version=v1.33.1",
                     "--cpus=2", "--memory=4096", "--embed-certs", "--wait=apiserver,system_pods",
                     "--wait-timeout=120s"]
    # minikube only ever saw our kubeconfig; ~/.kube/config was never written
    assert {call["KUBECONFIG"] for call in fake_minikube.all()} == {kubeconfig}
    assert not (tmp_path / "home" / ".kube").exists()

    # idempotent: read-only calls only
    fake_minikube.clear()
    r = run(state_dir, s)
    assert r["rc"] == 0 and r["changed"] is False, r
    assert fake_minikube.writes() == []
    assert {tuple(c["argv"][:2]) for c in fake_minikube.all()} == {("profile", "list"), ("status", "-p")}

    # check mode on a mutable change: reported, nothing run but reads
    s2 = dict(s, kubernetes_version="1.34.0")
    r = run(state_dir, s2, check_mode=True)
    assert r["changed"] is True and r["changes"] == ["kubernetes_version"]
    assert fake_minikube.writes() == []

    # upgrade in place
    r = run(state_dir, s2)
    assert r["rc"] == 0 and r["changed"] is True, r
    assert r["cluster"]["settings"]["kubernetes_version"] == "v1.34.0"
    assert ["start", "-p", "mk1", "--kubernetes-version=v1.34.0", "--embed-certs",
            "--wait=apiserver,system_pods", "--wait-timeout=120s"] in fake_minikube.writes()

    # a downgrade is refused by minikube itself: its message comes through
    r = run(state_dir, dict(s, kubernetes_version="1.30.0"))
    assert r["rc"] == 1 and "K8S_DOWNGRADE_UNSUPPORTED" in r["msg"], r

    # immutable: memory / cpus / driver
    fake_minikube.clear()
    r = run(state_dir, dict(s2, memory=8192, cpus=4))
    assert r["rc"] == 1 and r["immutable_fields"] == ["cpus", "memory"], r
    assert "cpus, memory" in r["msg"] and "mk1" in r["msg"]
    assert fake_minikube.writes() == []

    # delete: check mode, real, absent
    r = run(state_dir, s2, args=dict(state="absent"), check_mode=True)
    assert r["changed"] is True and fake_minikube.writes() == []
    r = run(state_dir, s2, args=dict(state="absent"))
    assert r["rc"] == 0 and r["changed"] is True, r
    assert ["delete", "-p", "mk1"] in fake_minikube.writes()
    assert not os.path.exists(kubeconfig)
    r = run(state_dir, s2, args=dict(state="absent"))
    assert r["rc"] == 0 and r["changed"] is False


def test_check_mode_create(fake_minikube, state_dir):
    r = run(state_dir, dict(driver="docker"), check_mode=True)
    assert r["rc"] == 0 and r["changed"] is True
    assert fake_minikube.writes() == []


def test_profile_setting_and_kubeconfig_refresh(fake_minikube, state_dir):
    r = run(state_dir, dict(profile="laptop"))
    assert r["rc"] == 0 and r["cluster"]["context"] == "laptop"
    # the kubeconfig was lost: the next run writes it again (update-context) and says so
    os.unlink(r["cluster"]["kubeconfig"])
    fake_minikube.clear()
    r = run(state_dir, dict(profile="laptop"))
    assert r["changed"] is True and fake_minikube.writes() == [["update-context", "-p", "laptop"]]
    assert os.path.exists(r["cluster"]["kubeconfig"])


def test_minikube_missing(monkeypatch, tmp_path, state_dir):
    monkeypatch.setenv("PATH", str(tmp_path))
    r = run(state_dir, {})
    assert r["rc"] == 1
    assert "minikube not found on PATH" in r["msg"] and "settings.minikube_path" in r["msg"]
    r = run(state_dir, dict(minikube_path=str(tmp_path / "nope")))
    assert r["rc"] == 1 and "is not an executable file" in r["msg"]


def test_minikube_path_setting(fake_minikube, monkeypatch, state_dir):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    r = run(state_dir, dict(minikube_path=os.path.join(FAKES, "minikube")))
    assert r["rc"] == 0 and r["changed"] is True, r


def test_bad_memory(fake_minikube, state_dir):
    r = run(state_dir, dict(memory="lots"))
    assert r["rc"] == 1 and "settings.memory" in r["msg"]
