# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""meshfleet.mesh.cluster with the kwok provider, for real (built Go tools, real processes).

Three clusters are made at the start of the module, in parallel, the way a user's
``ansible`` run makes them: kc1 goes through the life cycle (idempotence, the kubernetes
client, a Deployment, check/diff, scaling, a simulated reboot), kc2 is deleted, kc3 has
its ports taken and its folder broken. The tests run in file order and each one leaves
its cluster converged for the next. Run: ``scripts/test.sh integration``.
"""

from __future__ import absolute_import, division, print_function

import base64
import json
import os
import signal
import stat
import time

import pytest
import yaml

import helpers

NAMES = ("kc1", "kc2", "kc3")
#: a no-op run of the module (ansible start-up included) stays well below this (~3 s idle;
#: the bench checks the 10 s target, this only catches a restart on a loaded 2-core box)
NOOP_SECONDS = 20.0


@pytest.fixture(scope="module")
def created(kwok_mesh, kwok_clusters):
    """The three clusters, made in parallel; removed at the end of the module."""
    started = time.monotonic()
    results = kwok_clusters(NAMES)
    seconds = time.monotonic() - started
    print("[kwok] %d clusters created in parallel in %.1fs" % (len(NAMES), seconds))
    try:
        yield dict(results=results, seconds=seconds)
    finally:
        # keep at most 3 clusters up at a time: the next module makes its own
        left = kwok_mesh.existing()
        if left:
            kwok_mesh.run(left, state="absent")


def core(mesh, name):
    from kubernetes import client
    return client.CoreV1Api(helpers.kube_client(mesh.kubeconfig(name)))


def node_count(mesh, name):
    return len(core(mesh, name).list_node().items)


def kill_cluster(mesh, name, sig=signal.SIGKILL):
    """Kill a cluster's processes the way a reboot does; returns the old pids."""
    pids = mesh.pids(name)
    assert len(pids) == 5, pids
    for pid in pids.values():
        os.kill(pid, sig)
    helpers.wait_until(lambda: not any(helpers.alive(p) for p in pids.values()), 20,
                       "the processes of %s to die" % name)
    return pids


# --- create, idempotence ------------------------------------------------------------------

def test_create_in_parallel(kwok_mesh, created):
    all_ports = []
    for name in NAMES:
        res = created["results"][name]
        assert res["changed"] is True
        cluster = res["cluster"]
        assert cluster["exists"] and cluster["ready"], cluster
        assert cluster["settings"]["nodes"] == 1
        ports = kwok_mesh.ports(name)
        assert sorted(ports) == sorted(helpers.KWOK_PORT_NAMES)
        assert cluster["api_server"] == "https://127.0.0.1:%d" % ports["kubeApiserverPort"]
        all_ports.extend(ports.values())
        # the kubeconfig: a 0600 file under the state dir, never in the result
        assert cluster["kubeconfig"] == kwok_mesh.kubeconfig(name)
        assert stat.S_IMODE(os.stat(cluster["kubeconfig"]).st_mode) == 0o600
        dumped = json.dumps(res)
        assert "BEGIN" not in dumped and "client-key-data" not in dumped
        # five live processes, all of them the cluster's own binaries in its kwok folder
        pids = kwok_mesh.pids(name)
        assert sorted(pids) == ["etcd", "kube-apiserver", "kube-controller-manager",
                                "kube-scheduler", "kwok-controller"]
        for pid in pids.values():
            assert helpers.alive(pid)
            assert helpers.cmdline(pid).startswith(kwok_mesh.kwok_dir(name) + "/bin/")
    assert len(set(all_ports)) == len(all_ports), "clusters share ports: %s" % all_ports


def test_recreate_is_idempotent_and_quick(kwok_mesh, created):
    before = dict((n, kwok_mesh.pids(n)) for n in NAMES)
    mtimes = dict((n, os.stat(kwok_mesh.kubeconfig(n)).st_mtime) for n in NAMES)
    res = kwok_mesh.converge(list(NAMES))
    print("[kwok] no-op re-run of %d clusters: %.1fs" % (len(NAMES), res.seconds))
    for name in NAMES:
        assert res[name]["changed"] is False, res[name]
        assert res[name]["cluster"]["ready"] is True
        assert kwok_mesh.pids(name) == before[name], "%s was restarted" % name
        assert os.stat(kwok_mesh.kubeconfig(name)).st_mtime == mtimes[name]
    assert res.seconds < NOOP_SECONDS, "a no-op run took %.1fs" % res.seconds


# --- the kubeconfig with the kubernetes client ------------------------------------------------

def test_kubeconfig_works_with_the_kubernetes_client(kwok_mesh, created):
    from kubernetes import client
    with open(kwok_mesh.kubeconfig("kc1")) as f:
        kc = yaml.safe_load(f)
    # self-contained: inline certificates, no reference to kwokctl's files
    assert kc["current-context"] == "kc1"
    assert "certificate-authority-data" in kc["clusters"][0]["cluster"]
    assert "client-key-data" in kc["users"][0]["user"]

    api = helpers.kube_client(kwok_mesh.kubeconfig("kc1"))
    v1 = client.CoreV1Api(api)
    names = [ns.metadata.name for ns in v1.list_namespace().items]
    assert {"default", "kube-system"} <= set(names)

    v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="mf-it")))
    v1.create_namespaced_secret("mf-it", client.V1Secret(
        metadata=client.V1ObjectMeta(name="s1"), string_data={"token": "sesame"}))
    secret = v1.read_namespaced_secret("s1", "mf-it")
    assert base64.b64decode(secret.data["token"]) == b"sesame"

    ext = client.ApiextensionsV1Api(api)
    ext.create_custom_resource_definition(client.V1CustomResourceDefinition(
        metadata=client.V1ObjectMeta(name="widgets.meshfleet.test"),
        spec=client.V1CustomResourceDefinitionSpec(
            group="meshfleet.test", scope="Namespaced",
            names=client.V1CustomResourceDefinitionNames(plural="widgets", singular="widget",
                                                         kind="Widget"),
            versions=[client.V1CustomResourceDefinitionVersion(
                name="v1", served=True, storage=True,
                schema=client.V1CustomResourceValidation(open_apiv3_schema=client.V1JSONSchemaProps(
                    type="object", x_kubernetes_preserve_unknown_fields=True)))])))

    def established():
        crd = ext.read_custom_resource_definition("widgets.meshfleet.test")
        return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])
    helpers.wait_until(established, 30, "the CRD to be established")

    custom = client.CustomObjectsApi(api)

    def create_widget():
        return custom.create_namespaced_custom_object(
            "meshfleet.test", "v1", "mf-it", "widgets",
            {"apiVersion": "meshfleet.test/v1", "kind": "Widget", "metadata": {"name": "w1"},
             "spec": {"size": 3}})
    helpers.wait_until(create_widget, 30, "the Widget API to serve")  # discovery lags a little
    got = custom.get_namespaced_custom_object("meshfleet.test", "v1", "mf-it", "widgets", "w1")
    assert got["spec"] == {"size": 3}


def test_deployment_gets_two_ready_pods(kwok_mesh, created):
    from kubernetes import client
    api = helpers.kube_client(kwok_mesh.kubeconfig("kc1"))
    v1, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="mf-deploy")))
    labels = {"app": "web"}
    apps.create_namespaced_deployment("mf-deploy", client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            replicas=2, selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="nginx")])))))

    def two_ready_pods():
        pods = v1.list_namespaced_pod("mf-deploy", label_selector="app=web").items
        ready = [p for p in pods if p.status.phase == "Running" and any(
            c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
        dep = apps.read_namespaced_deployment("web", "mf-deploy")
        return len(ready) == 2 and dep.status.ready_replicas == 2 and ready
    ready = helpers.wait_until(two_ready_pods, 90, "2 ready pods of the Deployment")
    assert all(p.spec.node_name for p in ready)  # scheduled on kwok's fake node


# --- check mode, diff -------------------------------------------------------------------------

def test_check_mode_on_an_absent_cluster_creates_nothing(kwok_mesh, created):
    res = kwok_mesh.run("kc-ghost", check=True)
    r = res["kc-ghost"]
    assert not r.get("failed"), r
    assert r["changed"] is True
    assert r["cluster"]["exists"] is True  # what would be
    assert not os.path.exists(kwok_mesh.cluster_dir("kc-ghost"))
    assert not os.path.exists(kwok_mesh.kwok_dir("kc-ghost"))
    assert helpers.processes_under(kwok_mesh.kwok_dir("kc-ghost")) == {}
    assert kwok_mesh.ports("kc-ghost") == {}


def test_diff_shows_the_change(kwok_mesh, created):
    res = kwok_mesh.run("kc-ghost", check=True, diff=True)["kc-ghost"]
    assert res["changed"] is True
    assert res["diff"]["before"]["exists"] is False
    assert res["diff"]["after"]["exists"] is True
    assert not os.path.exists(kwok_mesh.cluster_dir("kc-ghost"))

    res = kwok_mesh.run({"kc1": {"nodes": 3}}, check=True, diff=True)["kc1"]
    assert res["changed"] is True and res["changes"] == ["nodes"]
    assert res["diff"]["before"]["settings"]["nodes"] == 1
    assert res["diff"]["after"]["settings"]["nodes"] == 3
    assert node_count(kwok_mesh, "kc1") == 1  # check mode changed nothing


# --- scaling ----------------------------------------------------------------------------------

def test_scaling_nodes_changes_the_node_count(kwok_mesh, created):
    res = kwok_mesh.converge({"kc1": {"nodes": 3}}, diff=True)["kc1"]
    assert res["changed"] is True
    assert res["cluster"]["settings"]["nodes"] == 3
    assert res["diff"]["after"]["settings"]["nodes"] == 3
    assert node_count(kwok_mesh, "kc1") == 3
    assert kwok_mesh.converge({"kc1": {"nodes": 3}})["kc1"]["changed"] is False

    res = kwok_mesh.converge({"kc1": {"nodes": 1}})["kc1"]
    assert res["changed"] is True and res["cluster"]["settings"]["nodes"] == 1
    helpers.wait_until(lambda: node_count(kwok_mesh, "kc1") == 1, 30, "kc1 to have 1 node")


# --- a reboot ---------------------------------------------------------------------------------

def test_killed_cluster_is_restarted(kwok_mesh, created):
    from kubernetes import client
    v1 = core(kwok_mesh, "kc1")
    v1.create_namespaced_config_map("default", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="before-reboot"), data={"k": "v"}))
    old = kill_cluster(kwok_mesh, "kc1")

    # check mode sees it, and starts nothing
    res = kwok_mesh.run("kc1", check=True)["kc1"]
    assert res["changed"] is True and not res.get("failed"), res
    assert not any(helpers.alive(p) for p in kwok_mesh.pids("kc1").values())

    res = kwok_mesh.converge("kc1")["kc1"]
    assert res["changed"] is True and res["cluster"]["ready"] is True
    new = kwok_mesh.pids("kc1")
    assert sorted(new) == sorted(old)
    assert all(helpers.alive(p) for p in new.values())
    assert not set(new.values()) & set(old.values())
    # it works, with its data (etcd kept it)
    cm = core(kwok_mesh, "kc1").read_namespaced_config_map("before-reboot", "default")
    assert cm.data == {"k": "v"}
    assert kwok_mesh.converge("kc1")["kc1"]["changed"] is False


def test_dead_component_is_started_alone(kwok_mesh, created):
    """kube-controller-manager gives up when the API server is slow (a busy machine): the
    next run starts it again, and only it."""
    old = kwok_mesh.pids("kc1")
    os.kill(old["kube-controller-manager"], signal.SIGKILL)
    helpers.wait_until(lambda: not helpers.alive(old["kube-controller-manager"]), 20, "kcm to die")
    res = kwok_mesh.converge("kc1")["kc1"]
    assert res["changed"] is True and res["cluster"]["ready"] is True
    new = kwok_mesh.pids("kc1")
    assert new["kube-controller-manager"] != old["kube-controller-manager"]
    assert helpers.alive(new["kube-controller-manager"])
    for comp in ("etcd", "kube-apiserver", "kube-scheduler", "kwok-controller"):
        assert new[comp] == old[comp], comp
    assert kwok_mesh.converge("kc1")["kc1"]["changed"] is False


# --- errors -----------------------------------------------------------------------------------

def test_port_taken_while_stopped_is_reported(kwok_mesh, created):
    port = kwok_mesh.ports("kc3")["kubeApiserverPort"]
    kill_cluster(kwok_mesh, "kc3")
    with helpers.Listener(port):
        res = kwok_mesh.run("kc3", wait_timeout=60)
    r = res["kc3"]
    assert r.get("failed"), r
    assert str(port) in r["msg"] and "in use" in r["msg"], r["msg"]
    assert res.seconds < 60, "the failure took %.0fs" % res.seconds
    # the port is free again: the next run starts the cluster
    r = kwok_mesh.converge("kc3")["kc3"]
    assert r["changed"] is True and r["cluster"]["ready"] is True


def test_corrupt_cluster_dir(kwok_mesh, created):
    pids = kwok_mesh.pids("kc3")
    os.unlink(os.path.join(kwok_mesh.kwok_dir("kc3"), "kwok.yaml"))
    r = kwok_mesh.run("kc3")["kc3"]
    assert r.get("failed"), r
    assert "corrupt" in r["msg"] and "kwok.yaml" in r["msg"] and "state=absent" in r["msg"], r["msg"]
    # state=absent cleans it up anyway
    r = kwok_mesh.converge("kc3", state="absent")["kc3"]
    assert r["changed"] is True
    assert not any(helpers.alive(p) for p in pids.values())
    assert not os.path.exists(kwok_mesh.kwok_dir("kc3"))
    assert not os.path.exists(kwok_mesh.cluster_dir("kc3"))
    assert kwok_mesh.ports("kc3") == {}


@pytest.mark.parametrize("how", ["env", "setting"])
def test_empty_tools_folder(kwok_mesh, created, tmp_path, how):
    empty = str(tmp_path / "empty-bin")
    os.mkdir(empty)
    if how == "env":
        res = kwok_mesh.run("kc-notools", env={"MESHFLEET_TOOLS_BIN": empty})
    else:
        res = kwok_mesh.run({"kc-notools": {"tools_bin": empty}})
    r = res["kc-notools"]
    assert r.get("failed"), r
    msg = r["msg"]
    for word in ("kwok", "missing", empty, "make tools"):
        assert word in msg, "%r not in %r" % (word, msg)
    assert not os.path.exists(kwok_mesh.cluster_dir("kc-notools"))


# --- delete -------------------------------------------------------------------------------------

def test_delete_leaves_no_process_and_no_port(kwok_mesh, created):
    ports = kwok_mesh.ports("kc2")
    with open(os.path.join(kwok_mesh.kwok_dir("kc2"), "kwok.yaml")) as f:
        conf = [d for d in yaml.safe_load_all(f) if d and d.get("kind") == "KwokctlConfiguration"][0]
    assert dict((k, conf["options"][k]) for k in helpers.KWOK_PORT_NAMES) == ports
    pids = kwok_mesh.pids("kc2")
    listening = helpers.port_listeners(ports.values())
    for name, port in ports.items():  # all six ports are the cluster's, before
        assert listening.get(port) and set(listening[port]) <= set(pids.values()), (name, port, listening)

    res = kwok_mesh.converge("kc2", state="absent")["kc2"]
    assert res["changed"] is True and res["cluster"]["exists"] is False
    for name, pid in pids.items():
        assert helpers.proc_state(pid) in (None, "Z"), "%s (%d) still runs" % (name, pid)
    assert helpers.processes_under(kwok_mesh.kwok_dir("kc2")) == {}
    # nothing of ours listens on its ports (another mesh may have reserved them since)
    for port, owners in helpers.port_listeners(ports.values()).items():
        for pid in owners:
            assert pid is not None and pid not in pids.values(), (port, pid)
            assert kwok_mesh.state_dir not in helpers.cmdline(pid), (port, helpers.cmdline(pid))
    assert not os.path.exists(kwok_mesh.kwok_dir("kc2"))
    assert not os.path.exists(kwok_mesh.cluster_dir("kc2"))
    assert kwok_mesh.ports("kc2") == {}


def test_delete_again_is_a_noop(kwok_mesh, created):
    res = kwok_mesh.converge("kc2", state="absent")
    assert res["kc2"]["changed"] is False
    assert res.seconds < NOOP_SECONDS
