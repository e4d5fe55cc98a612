# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""meshfleet.mesh.mesh_traffic against recorded API servers (tests/fakes/kubeapi.py): three
clusters (c1, c2 on network1, c3 on network2) with helloworld v1 in c1 and v2 in c3, a curl pod
in each, an east-west gateway in each. Exec in a curl pod really runs the module's shell loop
(``sh -c``) with a stand-in ``curl`` first on PATH, which answers like the mesh would (round
robin over the two versions, or only one, or nothing) and records each call, so that the
serving sidecars' access logs and the gateways' Envoy stats follow from the requests made."""

from __future__ import absolute_import, division, print_function

import json
import os
import subprocess
import sys

import pytest
import yaml

from ansible_collections.meshfleet.mesh.plugins.module_utils import mesh_traffic as mt
from ansible_collections.meshfleet.mesh.plugins.modules import mesh_traffic as module
from ansible_collections.meshfleet.mesh.tests.fakes.kubeapi import RecordedApi

NETWORK = {"c1": "network1", "c2": "network1", "c3": "network2"}
SERVERS = {"helloworld-v1-7d9f-a1": ("c1", "v1"), "helloworld-v2-5c4b-b2": ("c3", "v2")}
CURL_SA = "spiffe://cluster.local/ns/sample/sa/curl"

FAKE_CURL = r'''#!%(python)s
import json, os, sys
args = sys.argv[1:]
agent = args[args.index("-A") + 1]
url = args[-1]
state = os.environ["FAKE_STATE"]
mode = open(os.path.join(state, "mode")).read().strip()
if mode == "vm":
    print("Hello version: web, instance: vm1")
    sys.exit(0)
if mode == "down":
    sys.stderr.write("curl: (7) Failed to connect to helloworld.sample port 5000\n")
    sys.exit(7)
count_file = os.path.join(state, "count-" + agent.replace("/", "_"))
n = int(open(count_file).read()) if os.path.exists(count_file) else 0
open(count_file, "w").write(str(n + 1))
servers = json.loads(os.environ["FAKE_SERVERS"])
pod = servers[n %% len(servers)] if mode != "only-v1" else servers[0]
with open(os.path.join(state, "served"), "a") as f:
    f.write(json.dumps([pod, agent, url]) + "\n")
print("Hello version: %%s, instance: %%s" %% (pod.split("-")[1], pod))
'''


class Mesh:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.state = tmp_path / "state"
        self.state.mkdir()
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        curl = self.bin / "curl"
        curl.write_text(FAKE_CURL % dict(python=sys.executable))
        curl.chmod(0o755)
        self.set_mode("both")
        self.api = {}
        self.stats_reads = []
        self.gateway_down = None
        self.flush_lag = False

    def set_mode(self, mode):
        (self.state / "mode").write_text(mode)

    def served(self):
        path = self.state / "served"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def curl_pod(self, cluster):
        def run(container, argv):
            assert container == "curl"
            env = dict(os.environ, PATH="%s:%s" % (self.bin, os.environ["PATH"]), FAKE_STATE=str(self.state),
                       FAKE_SERVERS=json.dumps(sorted(SERVERS)))
            r = subprocess.run(argv, env=env, capture_output=True, timeout=60, check=False)
            return r.returncode, r.stdout, r.stderr
        return run

    def gateway(self, cluster):
        def run(container, argv):
            assert argv[:3] == ["pilot-agent", "request", "GET"] and argv[3] in ("stats", "clusters"), argv
            self.stats_reads.append((cluster, argv[3]))
            # requests that reached a pod of this gateway's cluster from another network
            crossed = [s for s in self.served() if SERVERS[s[0]][0] == cluster
                       and NETWORK[s[1].split("/")[1]] != NETWORK[cluster]]
            # a sidecar keeps its connection to a remote gateway: one per calling cluster
            conns = len(set(s[1] for s in crossed)) + 3
            if argv[3] == "clusters" and self.gateway_down == cluster:
                return 0, b"xds-grpc::10.131.0.2:15012::cx_total::1\n", b""
            if argv[3] == "clusters" and (self.state / "mode").read_text() == "vm":
                # the VM's group is c1's: c1's gateway connected to the VM for network2's caller
                vm = "outbound_.8080_._.web.vm-web.svc.cluster.local::10.77.0.2:8080::"
                return 0, (vm + "cx_total::%d\n" % (1 if cluster == "c1" else 0)).encode(), b""
            if argv[3] == "clusters":
                # Envoy's /clusters: per host of each cluster (the SNI cluster has the pod's address)
                sni = "outbound_.5000_._.helloworld.sample.svc.cluster.local::10.112.0.7:5000::"
                return 0, "\n".join([
                    sni + "cx_active::1", sni + "cx_total::%d" % conns, sni + "rq_total::%d" % conns,
                    sni + "hostname::", "outbound|5000||helloworld.sample.svc.cluster.local::10.130.0.10:15443::"
                    "cx_total::7", "xds-grpc::10.131.0.2:15012::cx_total::1"]).encode(), b""
            text = "\n".join([
                "listener.0.0.0.0_15443.downstream_cx_total: %d" % conns,
                "listener.0.0.0.0_15443.downstream_cx_active: 1",
                "cluster.outbound_.5000_._.helloworld.sample.svc.cluster.local.upstream_cx_total: %d" % conns,
                "cluster.outbound_.5000_._.helloworld.sample.svc.cluster.local.upstream_cx_tx_bytes_total: %d"
                % (120 * len(crossed)),
                "cluster.outbound_.9080_._.other.sample.svc.cluster.local.upstream_cx_total: 99",
                "cluster_manager.cds.update_success: 4",
                "listener.0.0.0.0_15443.downstream_cx_length_ms: P0(nan,1.0) P25(nan,1.025)",
            ])
            return 0, text.encode(), b""
        return run

    def sidecar_log(self, pod, plaintext=False):
        reads = []

        def log(container):
            assert container == "istio-proxy"
            reads.append(1)
            lines = ['[2026-12-01T21:00:00.000Z] "GET /health HTTP/1.1" 200 peer=- ua="kube-probe/1.36" '
                     'upstream=inbound|5000||']
            for served, agent, _url in self.served():
                if served == pod:
                    peer = "-" if plaintext else CURL_SA
                    lines.append('[2026-12-01T21:00:01.000Z] "GET /hello HTTP/1.1" 200 peer=%s ua="%s" '
                                 'upstream=inbound|5000||' % (peer, agent))
            if self.flush_lag and len(reads) == 1:
                lines = lines[:-2]  # Envoy flushes its access log once a second: the last lines come later
            return "\n".join(lines) + "\n"
        return log

    def start(self, plaintext=False, without_curl=()):
        for name in sorted(NETWORK):
            api = self.api[name] = RecordedApi().start()
            if name not in without_curl:
                api.add_pod("sample", "curl-%s-6c7f" % name, ["curl", "istio-proxy"], self.curl_pod(name),
                            labels={"app": "curl"})
            api.add_pod("sample", "curl-%s-old" % name, ["curl", "istio-proxy"], None,
                        labels={"app": "curl"}, ready=False)
            api.add_pod("istio-system", "istio-eastwestgateway-%s" % name, ["istio-proxy"], self.gateway(name),
                        labels={"istio": "eastwestgateway", "app": "istio-eastwestgateway"})
            for pod, (cluster, version) in SERVERS.items():
                if cluster == name:
                    api.add_pod("sample", pod, ["helloworld", "istio-proxy"], None,
                                labels={"app": "helloworld", "version": version},
                                log=self.sidecar_log(pod, plaintext))
        return self

    def stop(self):
        for api in self.api.values():
            api.stop()

    def kubeconfig(self, name):
        cfg = {"apiVersion": "v1", "kind": "Config", "current-context": name,
               "clusters": [{"name": name, "cluster": {"server": self.api[name].url}}],
               "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
               "users": [{"name": name, "user": {"token": "t-" + name}}]}
        path = self.tmp / ("%s.kubeconfig" % name)
        path.write_text(yaml.safe_dump(cfg))
        return str(path)

    def args(self, **kw):
        clusters = [dict(name=n, kubeconfig=self.kubeconfig(n), network=NETWORK[n]) for n in sorted(NETWORK)]
        return dict(dict(clusters=clusters, requests=10, wait_timeout=2), **kw)


@pytest.fixture
def mesh(tmp_path):
    m = Mesh(tmp_path)
    yield m
    m.stop()


def test_both_versions_answer_every_cluster_and_half_crosses_networks(run_module, mesh):
    mesh.start()
    res = run_module(module, mesh.args())
    assert not res.get("failed"), res.get("msg")
    report = res["report"]
    assert res["changed"] is False
    assert report["url"] == "http://helloworld.sample:5000/hello"
    assert report["table"] == {"c1": {"v1": 5, "v2": 5}, "c2": {"v1": 5, "v2": 5}, "c3": {"v1": 5, "v2": 5}}
    # network1 callers cross for v2 (in c3), the network2 caller for v1 (in c1)
    assert report["crossed"] == {"c1": 5, "c2": 5, "c3": 5}
    assert report["cross_network_share"] == 0.5
    # every request ran in the curl pods with the source's user agent
    agents = sorted(set(s[1] for s in mesh.served()))
    assert agents == ["meshfleet-traffic/c1", "meshfleet-traffic/c2", "meshfleet-traffic/c3"]
    assert len(mesh.served()) == 30
    # c3's gateway took network1's calls to v2: two calling clusters, two new connections
    g3 = report["gateways"]["c3"]
    assert g3["pod"] == "istio-eastwestgateway-c3" and g3["network"] == "network2"
    assert g3["delta"]["listener_15443.downstream_cx_total"] == 2
    assert g3["delta"]["sni_cluster.upstream_cx_total"] == 2
    assert g3["delta"]["sni_cluster.upstream_cx_tx_bytes_total"] == 1200
    assert g3["counters"]["listener_15443.downstream_cx_total"] == 5
    assert "sni_cluster.upstream_cx_length_ms" not in g3["counters"]
    assert report["gateways"]["c1"]["delta"]["listener_15443.downstream_cx_total"] == 1
    assert report["gateways"]["c2"]["delta"]["listener_15443.downstream_cx_total"] == 0
    assert g3["delta"]["sni_hosts.cx_total"] == 2 and g3["counters"]["sni_hosts.rq_total"] == 5
    assert "sni_hosts.cx_active" not in g3["counters"]
    assert sorted(mesh.stats_reads) == sorted([(c, w) for c in ("c1", "c2", "c3") for w in ("stats", "clusters")] * 2)
    # the serving sidecars saw each caller's SPIFFE id (probe requests are not counted)
    v2 = report["mtls"]["helloworld-v2-5c4b-b2"]
    assert v2["cluster"] == "c3" and v2["version"] == "v2" and v2["plaintext"] == 0
    assert v2["peers"] == [CURL_SA]
    assert v2["by_source"] == ["c1|%s|5" % CURL_SA, "c2|%s|5" % CURL_SA, "c3|%s|5" % CURL_SA]
    assert "c1 (network1) -> v1 x5, v2 x5, 5 crossed networks" in report["lines"]
    assert res["summary"] == "30 requests from 3 clusters answered by v1, v2; 50% crossed networks"


def test_access_log_lines_flushed_late_are_waited_for(run_module, mesh):
    mesh.flush_lag = True
    mesh.start()
    res = run_module(module, mesh.args(requests=4))
    assert not res.get("failed"), res.get("msg")
    assert res["report"]["mtls"]["helloworld-v1-7d9f-a1"]["by_source"] == [
        "c1|%s|2" % CURL_SA, "c2|%s|2" % CURL_SA, "c3|%s|2" % CURL_SA]


def test_a_version_that_never_answers_fails_naming_it(run_module, mesh):
    mesh.start()
    mesh.set_mode("only-v1")
    res = run_module(module, mesh.args())
    assert res["failed"]
    assert "c1: helloworld v2 (in c3) never answered 10 requests to http://helloworld.sample:5000/hello; got v1 x10" \
        in res["msg"]
    assert "c3: helloworld v2 (in c3) never answered" in res["msg"]
    assert res["report"]["table"]["c3"] == {"v1": 10}
    assert res["report"]["crossed"]["c3"] == 10


def test_no_answer_at_all_shows_what_curl_said(run_module, mesh):
    mesh.start()
    mesh.set_mode("down")
    res = run_module(module, mesh.args(requests=3))
    assert res["failed"]
    assert "c2: none of 3 requests to http://helloworld.sample:5000/hello was answered (ERR 7 curl: (7) " \
           "Failed to connect to helloworld.sample port 5000)" in res["msg"]
    assert res["report"]["errors"]["c1"][0].startswith("ERR 7")


def test_answers_that_crossed_without_the_gateway_fail(run_module, mesh):
    """A gateway that never connected to the serving pod: the answers did not come through it."""
    mesh.start()
    mesh.gateway_down = "c3"
    res = run_module(module, mesh.args(requests=2))
    assert res["failed"]
    assert "answers crossed into c3 (network2), but its east-west gateway istio-eastwestgateway-c3 counts no " \
           "connection to helloworld:5000 (its Envoy /clusters)" in res["msg"]
    assert "crossed into c1" not in res["msg"]


def test_a_caller_without_spiffe_id_fails(run_module, mesh):
    mesh.start(plaintext=True)
    res = run_module(module, mesh.args(requests=2))
    assert res["failed"]
    assert "helloworld-v1-7d9f-a1's sidecar (c1) served 3 requests from callers without a SPIFFE id (not mTLS)" \
        in res["msg"]


def test_a_cluster_without_a_ready_curl_pod_is_named(run_module, mesh):
    mesh.start(without_curl=("c2",))
    res = run_module(module, mesh.args())
    assert res["failed"]
    assert res["msg"].startswith("c2: no ready curl client pod (app=curl in namespace sample) within 2s")
    assert mesh.served() == []


def test_check_mode_runs_the_same_read_only_check(run_module, mesh):
    mesh.start()
    res = run_module(module, mesh.args(requests=4), check_mode=True)
    assert not res.get("failed"), res.get("msg")
    assert res["changed"] is False and res["report"]["table"]["c1"] == {"v1": 2, "v2": 2}
    for api in mesh.api.values():
        assert [r for r in api.seen if r[0] not in ("GET",)] == []


def test_bad_input_is_refused_before_any_request(run_module, mesh):
    mesh.start()
    res = run_module(module, mesh.args(requests=0))
    assert res["failed"] and res["msg"] == "requests must be at least 1 (got 0)"
    assert all(api.seen == [] for api in mesh.api.values())


def test_parsers():
    assert mt.parse_answers("Hello version: v2, instance: hw-v2-x\n\nERR 28 timeout\n") == [
        ("v2", "hw-v2-x"), (None, "ERR 28 timeout")]
    assert mt.parse_stats("a.b: 3\nc: P0(nan,1)\nd: x\n") == {"a.b": 3}
    assert mt.parse_clusters("c::h1:1::cx_total::2\nc::h2:1::cx_total::3\nc::h1:1::hostname::\nd::h::cx_total::9\n",
                             "c") == {"cx_total": 5}
    assert mt.parse_access('[t] "GET /hello HTTP/1.1" 503 peer=- ua="meshfleet-traffic/c9" upstream=x\n'
                           '[t] "GET /other HTTP/1.1" 200 peer=- ua="meshfleet-traffic/c9" upstream=x\n',
                           "/hello") == [("c9", "", 503)]


def test_a_vm_service_answered_by_a_vm_counts_as_crossing_for_other_networks(run_module, mesh):
    mesh.start()
    mesh.set_mode("vm")
    vm = dict(name="vm1", cluster="c1", network="network1", version="web")
    res = run_module(module, mesh.args(service="web", namespace="vm-web", client_namespace="sample", port=8080, versions=["web"],
                                       vm_servers=[vm], mtls=False, requests=4))
    assert not res.get("failed"), res.get("msg")
    report = res["report"]
    assert report["url"] == "http://web.vm-web:8080/hello"
    assert report["table"] == {"c1": {"web": 4}, "c2": {"web": 4}, "c3": {"web": 4}}
    assert report["crossed"] == {"c1": 0, "c2": 0, "c3": 4}          # only network2's caller crossed, into c1
    assert report["unknown_instances"] == {}
    assert "c3 (network2) -> web x4, 4 crossed networks" in report["lines"]
    # the VM is not a pod: no sidecar log is read for it
    assert "vm1" not in report["mtls"]
    # a VM version that never answers fails naming the service
    res = run_module(module, mesh.args(service="web", namespace="vm-web", client_namespace="sample", port=8080, versions=["web", "db"],
                                       vm_servers=[vm], mtls=False, requests=2))
    assert res["failed"] and "c1: web db (in no cluster) never answered 2 requests to http://web.vm-web:8080/hello" in res["msg"]
