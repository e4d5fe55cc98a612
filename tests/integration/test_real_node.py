# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A kwok cluster with ``real_node: true``, for real (root, the built Go tools and the node
tools of ``tools/build-tools.sh --node``, Debian's containerd/runc/CNI plugins, the image
builder's umoci/skopeo/gcc): the node comes up Ready, pods run on it with addresses of its pod
CIDR, a Service's ClusterIP reaches a pod from another pod (kube-proxy) by its DNS name
(CoreDNS), the host's global sysctls stay as they were, a re-run changes nothing, and after
state=absent nothing of the node is left on the machine."""

from __future__ import absolute_import, division, print_function

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import helpers  # noqa: E402

from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet import addressing  # noqa: E402
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet.slots import SlotRegistry  # noqa: E402
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnode import config, runtime  # noqa: E402

pytestmark = pytest.mark.integration

NAME = "rn1"
SYSCTLS = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops") + config.GUARDED_SYSCTLS
ROOTFS_SCRIPT = os.path.join(helpers.REPO, "roles", "vms_local", "files", "vm-rootfs.sh")


def _skip_reason():
    if os.geteuid() != 0:
        return "needs root (network and mount namespaces, containerd)"
    for t in ("containerd", "ctr", "umoci", "skopeo", "gcc"):
        if not shutil.which(t):
            return "%s is not installed (scripts/setup.sh --node --images)" % t
    try:
        runtime.node_tools_bin()
    except Exception as e:
        return str(e)
    return None


def sysctls():
    out = {}
    for name in SYSCTLS:
        with open("/proc/sys/%s" % name) as f:
            out[name] = f.read().strip()
    return out


def run_containerd_entries():
    out = set()
    for sub in ("runc", "s", "fifo"):
        d = os.path.join("/run/containerd", sub)
        if os.path.isdir(d):
            out.update(os.path.join(d, e) for e in os.listdir(d))
    return out


@pytest.fixture(scope="module")
def real(tmp_path_factory, tools_bin):
    why = _skip_reason()
    if why:
        pytest.skip(why)
    before = dict(sysctls=sysctls(), run_containerd=run_containerd_entries())
    mesh = helpers.KwokMesh(str(tmp_path_factory.mktemp("realnode") / "state"), tools_bin, wait_timeout=400)
    started = time.monotonic()
    try:
        res = mesh.converge({NAME: dict(real_node=True)})
        seconds = time.monotonic() - started
        print("[real-node] cluster with a Ready real node in %.1fs" % seconds)
        yield dict(mesh=mesh, res=res[NAME], before=before, seconds=seconds)
    finally:
        problems = mesh.teardown()
        assert not problems, "the real-node cluster was not torn down cleanly: %s" % problems


def kubectl(mesh, *args, **kw):
    return kubectl_in(mesh, NAME, *args, **kw)


def kubectl_in(mesh, name, *args, **kw):
    """kubectl against cluster ``name`` of ``mesh``; its output (stdout and stderr); asserts rc 0
    unless ``check=False``."""
    p = subprocess.run([os.path.join(mesh.tools_bin, "kubectl"), "--kubeconfig", mesh.kubeconfig(name)] + list(args),
                       input=kw.get("input"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=kw.get("timeout", 120), check=False)
    if kw.get("check", True):
        assert p.returncode == 0, "kubectl %s: %s" % (" ".join(args), p.stdout)
    return p.stdout


def slot_of(mesh):
    return SlotRegistry().get("node", mesh.port_owner(NAME))


def node_of(mesh):
    return runtime.Node(NAME, mesh.cluster_dir(NAME), slot_of(mesh), mesh.kwok_dir(NAME), None, "")


def test_node_is_ready_with_its_addresses(real):
    mesh = real["mesh"]
    slot = slot_of(mesh)
    assert slot is not None
    nodes = json.loads(kubectl(mesh, "get", "nodes", "-o", "json"))["items"]
    node = [n for n in nodes if n["metadata"]["name"] == config.node_name(NAME)][0]
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"][0]
    assert ready["status"] == "True"
    assert {"type": "InternalIP", "address": addressing.node_ip(slot)} in node["status"]["addresses"]
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    # the fake node stays, tainted so that real workloads land on the real node
    fake = [n for n in nodes if n["metadata"]["name"] != config.node_name(NAME)]
    assert fake and all(any(t["key"] == config.FAKE_NODE_TAINT["key"] for t in n["spec"].get("taints") or [])
                        for n in fake)
    # the kubernetes Service is the first address of the node's service CIDR
    svc = json.loads(kubectl(mesh, "get", "service", "kubernetes", "-o", "json"))
    assert svc["spec"]["clusterIP"] == str(addressing.service_cidr(slot).network_address + 1)
    # the node's processes: RSS for the report
    n = node_of(mesh)
    rss = {}
    for name in runtime.PROCESSES:
        pid = n.pid(name)
        assert pid, "%s is not running" % name
        with open("/proc/%d/status" % pid) as f:
            rss[name] = [int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS")][0]
    print("[real-node] RSS MiB: %s" % rss)


def environ(pid):
    with open("/proc/%d/environ" % pid, "rb") as f:
        return dict(e.decode("utf-8", "replace").split("=", 1) for e in f.read().split(b"\0") if b"=" in e)


def test_go_processes_run_with_the_real_node_gc_target(real):
    """Memory (issue #11): the control plane's components (kwokctl's componentsPatches) and the
    node's Go daemons run with GOGC=config.GO_GC; the Python forwarder does not get it."""
    mesh = real["mesh"]
    want = str(config.GO_GC)
    pids = mesh.pids(NAME)
    for component in config.CONTROL_PLANE_COMPONENTS:
        assert component in pids, (component, pids)
        assert environ(pids[component]).get("GOGC") == want, component
    n = node_of(mesh)
    for name in config.GO_DAEMONS:
        assert environ(n.pid(name)).get("GOGC") == want, name
    assert "GOGC" not in environ(n.pid("forwarder"))


def test_host_sysctls_unchanged_while_kubelet_wrote_its_own(real):
    assert sysctls() == real["before"]["sysctls"]
    n = node_of(real["mesh"])
    # kubelet did write its wishes: into the node's files, bind-mounted in its mount namespace
    with open(config.sysctl_file(n.paths["sysctl_dir"], "vm/overcommit_memory")) as f:
        assert f.read().strip() == "1"
    with open(config.sysctl_file(n.paths["sysctl_dir"], "kernel/panic")) as f:
        assert f.read().strip() == "10"
    # nothing of the node is mounted in the host's mount namespace
    assert runtime.mounts_under(n.paths["run_dir"], n.paths["node_dir"]) == []
    assert run_containerd_entries() == real["before"]["run_containerd"]


def _images(mesh):
    from ansible_collections.meshfleet.mesh.plugins.module_utils.images import builder, catalog, containerd
    proc = subprocess.run(["bash", ROOTFS_SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    assert proc.returncode == 0, proc.stdout.decode("utf-8", "replace")[-3000:]
    rootfs = proc.stdout.decode().strip().splitlines()[-1]
    specs = catalog.standard(rootfs=rootfs, names=("helloworld", "curl"))
    built = builder.build_all([specs["helloworld"], specs["curl"]])
    containerd.import_images(node_of(mesh).paths["containerd_sock"], [b["archive"] for b in built])
    return dict((b["name"], b["ref"]) for b in built)


def test_pods_get_pod_cidr_addresses_and_reach_a_service(real):
    mesh = real["mesh"]
    slot = slot_of(mesh)
    refs = _images(mesh)
    manifests = [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hello", "labels": {"app": "hello"}},
         "spec": {"containers": [{"name": "hello", "image": refs["helloworld"], "imagePullPolicy": "Never",
                                  "ports": [{"containerPort": 5000}]}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hello"},
         "spec": {"selector": {"app": "hello"}, "ports": [{"port": 5000, "targetPort": 5000}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
         "spec": {"containers": [{"name": "curl", "image": refs["curl"], "imagePullPolicy": "Never"}]}},
    ]
    kubectl(mesh, "apply", "-f", "-", input="\n---\n".join(json.dumps(m) for m in manifests))

    def running():
        pods = json.loads(kubectl(mesh, "get", "pods", "-o", "json"))["items"]
        ok = [p for p in pods if p["status"].get("phase") == "Running" and p["status"].get("podIP")]
        return pods if len(ok) == 2 else None
    pods = helpers.wait_until(running, 180, "the two pods to run")
    for p in pods:
        assert p["spec"]["nodeName"] == config.node_name(NAME)
        assert ipaddress.ip_address(p["status"]["podIP"]) in addressing.pod_cidr(slot)
    svc_ip = json.loads(kubectl(mesh, "get", "service", "hello", "-o", "json"))["spec"]["clusterIP"]
    assert ipaddress.ip_address(svc_ip) in addressing.service_cidr(slot)

    def answer(url):
        out = kubectl(mesh, "exec", "client", "--", "curl", "-sS", "-m", "5", url, check=False)
        return out if "Hello version" in out else None
    # by ClusterIP (kube-proxy's rules in the node namespace), then by name (CoreDNS)
    assert "instance: hello" in helpers.wait_until(lambda: answer("http://%s:5000/hello" % svc_ip), 60, "the ClusterIP")
    assert "instance: hello" in helpers.wait_until(
        lambda: answer("http://hello.default.svc.cluster.local:5000/hello"), 60, "the Service's DNS name")


def test_rerun_changes_nothing(real):
    mesh = real["mesh"]
    pids = dict((n, node_of(mesh).pid(n)) for n in runtime.PROCESSES)
    res = mesh.converge({NAME: dict(real_node=True)})
    assert res[NAME]["changed"] is False, res[NAME]
    assert dict((n, node_of(mesh).pid(n)) for n in runtime.PROCESSES) == pids


def test_a_rerun_restarts_what_died(real):
    """What an interrupted create or a crash leaves (kubelet and kube-proxy gone) is finished by
    the next run."""
    mesh = real["mesh"]
    n = node_of(mesh)
    for name in ("kubelet", "kube-proxy"):
        os.kill(n.pid(name), 9)
    helpers.wait_until(lambda: not n.pid("kubelet") and not n.pid("kube-proxy"), 20, "the kill")
    res = mesh.converge({NAME: dict(real_node=True)})
    assert res[NAME]["changed"] is True
    assert n.running()
    assert "Ready" in kubectl(mesh, "get", "node", config.node_name(NAME), "--no-headers")


def test_absent_leaves_nothing(real):
    mesh = real["mesh"]
    n = node_of(mesh)
    slot = n.slot
    # as a teardown interrupted halfway leaves it: the holder gone, the rest still running
    os.kill(n.pid("holder"), 9)
    mesh.converge({NAME: dict(real_node=True)}, state="absent")
    assert n.leftovers() == []
    assert not runtime.netns_exists(addressing.node_netns(slot))
    assert not runtime.link_exists(addressing.node_host_veth(slot))
    for path in ("/proc/mounts", "/proc/self/mountinfo"):
        with open(path) as f:
            text = f.read()
        assert n.paths["run_dir"] not in text and n.paths["node_dir"] not in text
    assert run_containerd_entries() == real["before"]["run_containerd"]
    assert SlotRegistry().get("node", mesh.port_owner(NAME)) is None
    for hier in runtime.cgroup_hierarchies():
        assert not os.path.exists(os.path.join(hier, n.cgroup_root.strip("/")))
    assert sysctls() == real["before"]["sysctls"]
