# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Teardown that leaves nothing billable, on real kwok clusters (real kube-apiserver).

Every cluster holds Services of type LoadBalancer carrying the finalizer
``service.kubernetes.io/load-balancer-cleanup``, as a cloud controller manager puts it. A
small in-test "cloud controller" thread plays the cloud: once a Service is being deleted it
waits a few seconds ("deleting the load balancer"), then removes the finalizer, and notes
whether the cluster's API server was still alive then. The module runs through
``ansible-playbook`` with ``delete_load_balancers: true`` (the default on aks/eks/gke) and
MESHFLEET_PROGRESS_INTERVAL=1, so the console shows the progress lines.

Proved here: the Services are deleted and gone before the provider deletes the cluster;
the console names what the module waits for; a timeout names the Services still there and
deletes nothing; a re-run after a teardown that stopped half way finishes it; a cluster
whose API is unreachable is deleted anyway, with a warning.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import threading
import time

import pytest

import helpers

FINALIZER = "service.kubernetes.io/load-balancer-cleanup"
NAMES = ("td1", "td2", "td3")
#: how long the fake cloud takes to delete a load balancer
LB_SECONDS = 4.0

PLAYBOOK = """
- name: Teardown
  hosts: all
  gather_facts: false
  tasks:
    - name: Remove the cluster (LoadBalancer Services first)
      meshfleet.mesh.cluster:
        name: "{{ inventory_hostname }}"
        provider: kwok
        state_dir: %(state_dir)s
        state: absent
        delete_load_balancers: true
        wait_timeouts: {load_balancers: "{{ lb_timeout | int }}", delete: 120}
      register: teardown
      ignore_errors: true
    - name: Keep the result
      ansible.builtin.copy:
        content: "{{ teardown | to_json }}"
        dest: "%(out)s/{{ inventory_hostname }}.json"
        mode: "0600"
"""


@pytest.fixture(scope="module")
def clusters(kwok_mesh, kwok_clusters):
    results = kwok_clusters(NAMES)
    try:
        yield results
    finally:
        left = [n for n in kwok_mesh.existing() if n in NAMES]
        if left:
            kwok_mesh.run(left, state="absent")


def core(mesh, name):
    from kubernetes import client
    return client.CoreV1Api(helpers.kube_client(mesh.kubeconfig(name)))


def add_services(api, ns_names=("istio-system", "ingress")):
    """Two LoadBalancer Services with the cloud's finalizer (east-west and ingress gateways) and
    one ClusterIP Service that must be left alone."""
    from kubernetes import client
    for ns in ns_names:
        try:
            api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        except client.ApiException as e:
            if e.status != 409:
                raise
    lb = []
    for ns, name in zip(ns_names, ("istio-eastwestgateway", "istio-ingressgateway")):
        api.create_namespaced_service(ns, client.V1Service(
            metadata=client.V1ObjectMeta(name=name, finalizers=[FINALIZER]),
            spec=client.V1ServiceSpec(type="LoadBalancer", selector={"app": name},
                                      ports=[client.V1ServicePort(port=15443, name="tls")])))
        lb.append("%s/%s" % (ns, name))
    api.create_namespaced_service("default", client.V1Service(
        metadata=client.V1ObjectMeta(name="plain"),
        spec=client.V1ServiceSpec(type="ClusterIP", ports=[client.V1ServicePort(port=80)])))
    return sorted(lb)


class FakeCloudController(threading.Thread):
    """Removes the finalizer of a deleted LoadBalancer Service ``delay`` seconds after it saw the
    deletion (the time a cloud takes to delete the load balancer)."""

    def __init__(self, api, apiserver_pid, delay=LB_SECONDS, gate=None):
        super(FakeCloudController, self).__init__(daemon=True)
        self.api, self.pid, self.delay = api, apiserver_pid, delay
        self.gate = gate  # callable: start only once it is true
        self.seen = {}       # ns/name -> when its deletionTimestamp was first seen
        self.removed = {}    # ns/name -> when the finalizer was removed
        self.alive_at_removal = {}
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            if self.gate is not None and not self.gate():
                self.stop.wait(0.1)
                continue
            try:
                items = self.api.list_service_for_all_namespaces().items
            except Exception:  # the cluster is gone
                return
            now = time.monotonic()
            for svc in items:
                key = "%s/%s" % (svc.metadata.namespace, svc.metadata.name)
                if svc.spec.type != "LoadBalancer" or not svc.metadata.deletion_timestamp:
                    continue
                self.seen.setdefault(key, now)
                if key not in self.removed and now - self.seen[key] >= self.delay:
                    self.api.patch_namespaced_service(svc.metadata.name, svc.metadata.namespace,
                                                      {"metadata": {"finalizers": None}})
                    self.removed[key] = time.monotonic()
                    self.alive_at_removal[key] = helpers.alive(self.pid)
            self.stop.wait(0.2)


class DeathWatch(threading.Thread):
    """Notes when a process (the cluster's kube-apiserver) dies: the provider's delete."""

    def __init__(self, pid):
        super(DeathWatch, self).__init__(daemon=True)
        self.pid, self.died = pid, None

    def run(self):
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if not helpers.alive(self.pid):
                self.died = time.monotonic()
                return
            time.sleep(0.1)


def module_waits_for_load_balancers(tmpdir):
    """A gate: the module (through its action plugin's progress file in ``tmpdir``) says it waits
    for the load balancers."""
    def gate():
        for name in os.listdir(str(tmpdir)):
            if name.startswith("meshfleet-progress-"):
                try:
                    if "load balancers" in (tmpdir / name).read_text():
                        return True
                except (IOError, OSError):
                    pass
        return False
    return gate


def teardown(kwok_mesh, tools_bin, tmp_path, names, lb_timeout, tmpdir=None):
    out = tmp_path / ("out-%d" % time.monotonic_ns())
    out.mkdir()
    play = tmp_path / "teardown.yml"
    play.write_text(PLAYBOOK % dict(state_dir=kwok_mesh.state_dir, out=str(out)))
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": dict(
        (n, dict(ansible_connection="local", ansible_python_interpreter=helpers.VENV_PYTHON)) for n in names)}}))
    run = helpers.run_playbook(str(play), str(inventory), tools_bin=tools_bin,
                               args=("-e", "lb_timeout=%d" % lb_timeout, "-f", str(len(names))),
                               env=dict(MESHFLEET_PROGRESS_INTERVAL="1", **(dict(TMPDIR=str(tmpdir)) if tmpdir else {})),
                               timeout=400)
    results = dict((n, json.loads((out / ("%s.json" % n)).read_text())) for n in names)
    return run, results


def test_load_balancers_go_before_the_cluster(kwok_mesh, clusters, tools_bin, tmp_path):
    api = core(kwok_mesh, "td1")
    lbs = add_services(api)
    pid = kwok_mesh.pids("td1")["kube-apiserver"]
    cloud = FakeCloudController(api, pid)
    death = DeathWatch(pid)
    cloud.start()
    death.start()
    started = time.monotonic()
    run, results = teardown(kwok_mesh, tools_bin, tmp_path, ["td1"], lb_timeout=90)
    cloud.stop.set()
    death.join(30)
    res = results["td1"]
    assert not res.get("failed"), run.output[-4000:]
    assert res["changed"] is True and res["cluster"]["exists"] is False
    assert res["load_balancers"] == dict(deleted=lbs)
    # the fake cloud saw both deletions and removed the finalizers while the API server still
    # ran; the provider deleted the cluster (the API server died) only after that
    assert sorted(cloud.removed) == lbs, (cloud.seen, cloud.removed)
    assert all(cloud.alive_at_removal.values()), cloud.alive_at_removal
    assert death.died is not None, "the cluster's kube-apiserver still runs"
    assert death.died > max(cloud.removed.values())
    assert death.died - started >= LB_SECONDS
    # the console showed what the module waited for, while it waited
    lines = [line for line in run.output.splitlines() if "meshfleet.mesh.cluster on td1: still running" in line]
    waiting = [line for line in lines if "waiting for the cloud to delete the load balancers of cluster td1" in line]
    print("\n".join(["[teardown] console:"] + lines))
    assert waiting, run.output[-4000:]
    assert "Services ingress/istio-ingressgateway, istio-system/istio-eastwestgateway (" in waiting[0], waiting[0]
    assert "of at most 1m30s" in waiting[0], waiting[0]
    assert not kwok_mesh.pids("td1") or not any(helpers.alive(p) for p in kwok_mesh.pids("td1").values())


def test_timeout_names_the_services_and_a_rerun_finishes(kwok_mesh, clusters, tools_bin, tmp_path):
    api = core(kwok_mesh, "td2")
    lbs = add_services(api)
    pids = kwok_mesh.pids("td2")
    # no cloud controller: the finalizers stay, the wait times out, nothing else is deleted
    run, results = teardown(kwok_mesh, tools_bin, tmp_path, ["td2"], lb_timeout=3)
    res = results["td2"]
    assert res.get("failed"), run.output[-4000:]
    assert "timed out after 3s waiting for the cloud to delete the load balancers" in res["msg"], res["msg"]
    assert "still there: %s" % ", ".join(lbs) in res["msg"], res["msg"]
    assert "cluster td2 was NOT deleted" in res["msg"] and FINALIZER in res["msg"]
    assert all(helpers.alive(p) for p in pids.values()), "the cluster must survive a drain timeout"
    left = dict(("%s/%s" % (s.metadata.namespace, s.metadata.name), s)
                for s in api.list_service_for_all_namespaces().items)
    assert all(left[k].metadata.deletion_timestamp for k in lbs)  # deleted, waiting for the cloud
    assert "default/plain" in left

    # the cloud catches up once the re-run waits: the re-run waits for the Services the first run
    # deleted (without deleting them again), then deletes the cluster
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    cloud = FakeCloudController(api, pids["kube-apiserver"], delay=1.0, gate=module_waits_for_load_balancers(tmpdir))
    cloud.start()
    run, results = teardown(kwok_mesh, tools_bin, tmp_path, ["td2"], lb_timeout=60, tmpdir=tmpdir)
    cloud.stop.set()
    res = results["td2"]
    assert not res.get("failed"), run.output[-4000:]
    assert res["load_balancers"] == dict(deleted=lbs) and res["cluster"]["exists"] is False
    assert sorted(cloud.removed) == lbs and all(cloud.alive_at_removal.values())
    assert "td2" not in kwok_mesh.existing()


def test_unreachable_api_is_said_and_the_cluster_deleted(kwok_mesh, clusters, tools_bin, tmp_path):
    add_services(core(kwok_mesh, "td3"))
    pids = kwok_mesh.pids("td3")
    # half deleted: the API server is gone, the rest of the cluster is still there
    helpers.kill_pids([pids["kube-apiserver"]])
    run, results = teardown(kwok_mesh, tools_bin, tmp_path, ["td3"], lb_timeout=30)
    res = results["td3"]
    assert not res.get("failed"), run.output[-4000:]
    assert res["changed"] is True and res["cluster"]["exists"] is False
    assert res["load_balancers"]["deleted"] == []
    assert "its API cannot be reached" in res["load_balancers"]["skipped"]
    assert "cluster td3: its API cannot be reached" in run.output, run.output[-4000:]
    assert "[WARNING]" in run.output and "Check the cloud for load balancers left from it" in run.output
    assert "td3" not in kwok_mesh.existing()
    assert not any(helpers.alive(p) for p in pids.values())
