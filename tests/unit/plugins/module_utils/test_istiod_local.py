# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""meshfleet.mesh.istiod_local and module_utils/istiod_local.py with real processes: the
``pilot-discovery`` in the tools folder is a small stand-in (a Python HTTP server on the
``--httpAddr`` it is given, answering ``/ready`` like istiod's debug port, and recording its
arguments and environment), since the real one needs a cluster. Ports come from a private
port registry (MESHFLEET_PORTS_DIR). Every started process is stopped by the tests."""

from __future__ import absolute_import, division, print_function

import json
import os
import sys
import time

import pytest

from ansible_collections.meshfleet.mesh.plugins.module_utils import istiod_local as il
from ansible_collections.meshfleet.mesh.plugins.module_utils.localproc import pid_alive
from ansible_collections.meshfleet.mesh.plugins.modules import istiod_local as module

FAKE_ISTIOD = r'''#!%s
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
args = sys.argv[1:]
with open(os.path.join(os.getcwd(), "seen.json"), "w") as f:
    json.dump({"args": args, "env": {k: os.environ.get(k) for k in (
        "POD_NAMESPACE", "CLUSTER_ID", "REVISION", "USE_REMOTE_CERTS", "ROOT_CA_DIR", "KUBECONFIG",
        "PILOT_TRACE")}}, f)
print("info\tpilot-discovery (test stand-in) starting", flush=True)
if os.environ.get("FAKE_ISTIOD_EXIT"):
    print("error\t" + os.environ["FAKE_ISTIOD_EXIT"], flush=True)
    sys.exit(1)
host, port = args[args.index("--httpAddr") + 1].rsplit(":", 1)
class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_GET(self):
        code = 200 if self.path == "/ready" else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()
HTTPServer((host, int(port)), H).serve_forever()
'''


@pytest.fixture
def env(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pilot-discovery"
    fake.write_text(FAKE_ISTIOD % sys.executable)
    fake.chmod(0o755)
    monkeypatch.setenv("MESHFLEET_PORTS_DIR", str(tmp_path / "ports"))
    monkeypatch.setenv("KUBECONFIG", "/must/not/reach/istiod")
    monkeypatch.delenv("FAKE_ISTIOD_EXIT", raising=False)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    state = tmp_path / "state"
    yield dict(tmp=tmp_path, args=dict(name="c1", state_dir=str(state), kubeconfig=str(kubeconfig),
                                       tools_bin=str(bin_dir), wait_timeout=30),
               istiod=lambda: il.IstiodLocal("c1", str(state), None, "c1"))
    ist = il.IstiodLocal("c1", str(state), None, "c1")
    ist.stop()


def seen(env):
    with open(os.path.join(env["args"]["state_dir"], "clusters", "c1", "istiod", "seen.json")) as f:
        return json.load(f)


def test_start_then_nothing_to_do(run_module, env):
    res = run_module(module, env["args"], diff=True)
    assert not res.get("failed"), res.get("msg")
    st = res["istiod"]
    assert res["changed"] and res["reason"] == "not running"
    assert st["running"] and st["ready"] and pid_alive(st["pid"])
    assert sorted(st["ports"]) == sorted(il.PORTS) and len(set(st["ports"].values())) == len(il.PORTS)
    assert st["debug_url"] == "http://127.0.0.1:%d" % st["ports"]["http"]
    assert st["xds_address"] == "127.0.0.1:%d" % st["ports"]["secure_grpc"]
    assert res["diff"]["before"]["running"] is False and res["diff"]["after"]["running"] is True
    run = seen(env)
    args = run["args"]
    assert args[0] == "discovery"
    assert args[args.index("--kubeconfig") + 1] == env["args"]["kubeconfig"]
    assert args[args.index("--clusterID") + 1] == "c1"
    assert args[args.index("--grpcAddr") + 1] == "127.0.0.1:%d" % st["ports"]["grpc"]
    assert run["env"]["KUBECONFIG"] is None           # only the kubeconfig it is given
    assert run["env"]["USE_REMOTE_CERTS"] == "true" and run["env"]["REVISION"] == "default"
    ca_dir = run["env"]["ROOT_CA_DIR"]
    assert os.path.isdir(ca_dir) and os.stat(ca_dir).st_mode & 0o777 == 0o700
    again = run_module(module, env["args"])
    assert again["changed"] is False and again["istiod"]["pid"] == st["pid"]
    assert again["istiod"]["ports"] == st["ports"]     # the reservation is kept
    # what debug_url() of another process (mesh_verify) finds
    assert env["istiod"]().debug_url() == st["debug_url"]


def test_a_changed_configuration_restarts_it(run_module, env):
    first = run_module(module, env["args"])["istiod"]
    res = run_module(module, dict(env["args"], env={"PILOT_TRACE": "1"}))
    assert res["changed"] and res["reason"] == "configuration changed"
    assert res["istiod"]["pid"] != first["pid"] and not pid_alive(first["pid"])
    assert res["istiod"]["config_hash"] != first["config_hash"]
    assert seen(env)["env"]["PILOT_TRACE"] == "1"
    restarted = run_module(module, dict(env["args"], env={"PILOT_TRACE": "1"}, state="restarted"))
    assert restarted["changed"] and restarted["reason"] == "restart requested"


def test_check_mode_starts_nothing(run_module, env):
    res = run_module(module, env["args"], check_mode=True)
    assert res["changed"] and res["reason"] == "not running"
    assert not os.path.exists(os.path.join(env["args"]["state_dir"], "clusters", "c1", "istiod", "istiod.pid"))
    assert env["istiod"]().pid() is None


def test_stopped_then_absent(run_module, env):
    pid = run_module(module, env["args"])["istiod"]["pid"]
    res = run_module(module, dict(env["args"], state="stopped"))
    assert res["changed"] and not res["istiod"]["running"] and not pid_alive(pid)
    assert run_module(module, dict(env["args"], state="stopped"))["changed"] is False
    folder = os.path.join(env["args"]["state_dir"], "clusters", "c1", "istiod")
    assert os.path.isdir(folder)
    res = run_module(module, dict(env["args"], state="absent"))
    assert res["changed"] and not os.path.exists(folder)
    assert run_module(module, dict(env["args"], state="absent"))["changed"] is False
    with open(os.path.join(str(env["tmp"] / "ports"), "ports.json")) as f:   # its ports are released
        assert os.path.abspath(folder) not in json.load(f)


def test_a_killed_istiod_is_started_again(run_module, env):
    first = run_module(module, env["args"])["istiod"]
    os.kill(first["pid"], 9)
    deadline = time.monotonic() + 10
    while pid_alive(first["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    res = run_module(module, env["args"])
    assert res["changed"] and res["reason"] == "not running" and res["istiod"]["ready"]
    assert res["istiod"]["pid"] != first["pid"] and pid_alive(res["istiod"]["pid"])


def test_an_istiod_that_exits_fails_with_its_log(run_module, env, monkeypatch):
    monkeypatch.setenv("FAKE_ISTIOD_EXIT", "failed to create discovery service: invalid kubeconfig")
    res = run_module(module, env["args"])
    assert res["failed"] and res["msg"].startswith("istiod for c1 exited; last log lines:")
    assert "failed to create discovery service: invalid kubeconfig" in res["msg"]


def test_a_missing_kubeconfig_or_binary_is_named(run_module, env):
    res = run_module(module, dict(env["args"], kubeconfig=str(env["tmp"] / "nope")))
    assert res["failed"] and "kubeconfig %s of cluster c1 does not exist" % (env["tmp"] / "nope") in res["msg"]
    os.unlink(str(env["tmp"] / "bin" / "pilot-discovery"))
    res = run_module(module, env["args"])
    assert res["failed"] and "pilot-discovery is missing from %s" % (env["tmp"] / "bin") in res["msg"]


def test_desired_binds_workload_ports_to_the_bind_address_only():
    ist = il.IstiodLocal("c1", "/srv/state", "/srv/kc", "cluster-1", bind_address="10.77.0.1", revision="1-30",
                         env={"X": 1})
    ports = dict((name, 15000 + i) for i, name in enumerate(il.PORTS))
    d = ist.desired(ports)
    a = d["args"]
    assert a[a.index("--grpcAddr") + 1] == "10.77.0.1:15001"
    assert a[a.index("--secureGRPCAddr") + 1] == "10.77.0.1:15002"
    for flag in ("--httpAddr", "--httpsAddr", "--monitoringAddr"):
        assert a[a.index(flag) + 1].startswith("127.0.0.1:"), flag
    assert a[a.index("--revision") + 1] == "1-30" and d["env"]["REVISION"] == "1-30" and d["env"]["X"] == "1"
    assert il.IstiodLocal.hash(d) == il.IstiodLocal.hash(ist.desired(dict(ports)))
    assert il.IstiodLocal.hash(d) != il.IstiodLocal.hash(ist.desired(dict(ports, grpc=16000)))


def test_is_local_address():
    assert il.is_local_address("127.0.0.1")
    assert not il.is_local_address("127.0.0.2")     # the rest of 127/8 does not count
    assert not il.is_local_address("192.0.2.1")
