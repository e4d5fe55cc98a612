# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""meshfleet.mesh.mesh_report run as Ansible runs it, on a real PKI (made by mesh_ca) and
clusters that are not there (no kubeconfig) or whose istiod is a local HTTP server; the
remote-secret reading against JSON as the API server returns it."""

from __future__ import absolute_import, division, print_function

import base64
import datetime
import json
import os
import threading

try:
    from http.server import BaseHTTPRequestHandler, HTTPServer
except ImportError:  # pragma: no cover - Python 2
    from BaseHTTPServer import BaseHTTPRequestHandler, HTTPServer  # type: ignore

import pytest
import yaml

from ansible_collections.meshfleet.mesh.plugins.module_utils import mesh_report as MR
from ansible_collections.meshfleet.mesh.plugins.module_utils import pki
from ansible_collections.meshfleet.mesh.plugins.modules import mesh_ca, mesh_report

NOW = datetime.datetime(2026, 12, 1, 18, 0, 0, tzinfo=datetime.timezone.utc)
CLUSTERS = [dict(name="cluster1", network="network1", role="primary", provider="kwok"),
            dict(name="cluster2", network="network2", role="primary", provider="kwok")]


@pytest.fixture
def state(tmp_path, run_module):
    folder = str(tmp_path / "state")
    r = run_module(mesh_ca, dict(state_dir=folder, clusters=["cluster1", "cluster2"]))
    assert not r.get("failed"), r
    return folder


@pytest.fixture
def report(run_module, state, monkeypatch):
    monkeypatch.setattr(MR, "utcnow", lambda: NOW)

    def _run(check_mode=False, diff=False, **args):
        args.setdefault("state_dir", state)
        args.setdefault("clusters", CLUSTERS)
        return run_module(mesh_report, args, check_mode=check_mode, diff=diff)
    return _run


def page(state):
    with open(os.path.join(state, "report", "mesh-report.html"), encoding="utf-8") as f:
        return f.read()


def root_fingerprint(state):
    with open(os.path.join(state, "pki", "root", "root-cert.pem"), "rb") as f:
        return pki.fingerprint(pki.load_certs_pem(f.read())[0])


def test_writes_once_then_nothing_to_change(report, state):
    r = report()
    assert not r.get("failed"), r
    assert r["changed"] and r["dest"] == os.path.join(state, "report", "mesh-report.html")
    text = page(state)
    assert r["size"] == len(text.encode("utf-8"))
    assert root_fingerprint(state) in text
    assert os.stat(os.path.dirname(r["dest"])).st_mode & 0o777 == 0o700
    # clusters without a kubeconfig: shown as such, the module does not fail
    assert r["summary"]["unreachable"] == ["cluster1", "cluster2"]
    assert r["summary"]["verify"] == "not verified yet"
    assert [i["signed_by"] for i in r["report"]["trust"]["intermediates"]] == ["current", "current"]
    mtime = os.stat(r["dest"]).st_mtime_ns
    again = report()
    assert not again["changed"] and os.stat(r["dest"]).st_mtime_ns == mtime
    assert page(state) == text  # the generation time of the first run stays


def test_check_mode_and_diff_write_nothing(report, state):
    r = report(check_mode=True, diff=True)
    assert r["changed"] and not os.path.exists(os.path.join(state, "report"))
    assert r["diff"]["before"] == "" and root_fingerprint(state) in r["diff"]["after"]
    report()
    before = page(state)
    with open(os.path.join(state, "verify-results.json"), "w") as f:
        json.dump(dict(verified_at="2026-12-01T17:00:00Z", passed=True, summary="9 checks passed",
                       checks=["ok: cluster1: fine"]), f)
    r = report(check_mode=True, diff=True)
    assert r["changed"] and page(state) == before
    assert "Not verified yet" in r["diff"]["before"] and "9 checks passed" in r["diff"]["after"]
    r = report()
    assert r["changed"] and r["summary"]["verify"] == "passed" and "9 checks passed" in page(state)
    assert not report(check_mode=True, diff=True)["changed"]


def test_never_opens_a_key(report, state, monkeypatch):
    opened = []
    real_open = open

    def spy(path, *a, **kw):
        opened.append(str(path))
        return real_open(path, *a, **kw)
    monkeypatch.setattr(MR, "open", spy, raising=False)
    monkeypatch.setattr(pki, "open", spy, raising=False)
    r = report()
    assert r["changed"]
    assert any(p.endswith("root-cert.pem") for p in opened), opened
    assert not [p for p in opened if "key" in os.path.basename(p)], opened
    with open(os.path.join(state, "pki", "root", "root-key.pem"), "rb") as f:
        key = f.read()
    assert key.decode() not in r["_stdout"]


def test_expiring_and_missing_intermediates(report, state):
    os.remove(os.path.join(state, "pki", "cluster2", "ca-cert.pem"))
    r = report(cert_warn_days=4000)  # the root (10 years) and the intermediate (2 years) are within it
    trust = r["report"]["trust"]
    assert [x["status"] for x in trust["roots"]] == ["expiring"]
    assert [(i["cluster"], i["status"]) for i in trust["intermediates"]] == [("cluster1", "expiring"),
                                                                             ("cluster2", "missing")]


def test_bad_input_fails_and_writes_nothing(report, state):
    r = report(clusters=[dict(network="n1")])
    assert r.get("failed") and "clusters[0].name" in r["msg"]
    r = report(vm_groups=[dict(cluster="cluster1")])
    assert r.get("failed") and "vm_groups[0].name" in r["msg"]
    r = report(timeout=0)
    assert r.get("failed") and "timeout" in r["msg"]
    assert not os.path.exists(os.path.join(state, "report"))


def test_unreadable_verify_results(report, state):
    with open(os.path.join(state, "verify-results.json"), "w") as f:
        f.write("{not json")
    r = report()
    assert r["summary"]["verify"] == "unreadable"
    assert 'id="verify-problem"' in page(state)


# --- istiod sync, from a local HTTP server answering /debug/clusterz -----------------------
class Clusterz(BaseHTTPRequestHandler):
    answer = []

    def do_GET(self):  # noqa: N802 - http.server's name
        body = json.dumps(self.answer).encode()
        self.send_response(200 if self.path == "/debug/clusterz" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def istiod():
    server = HTTPServer(("127.0.0.1", 0), Clusterz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_sync_table_from_clusterz(report, state, istiod):
    Clusterz.answer = [{"id": "cluster1", "syncStatus": "synced"}, {"id": "cluster2", "syncStatus": "synced"},
                       {"id": "cluster3", "syncStatus": "timeout"}]
    url = "http://127.0.0.1:%d" % istiod.server_address[1]
    clusters = [dict(CLUSTERS[0], istiod_url=url), dict(CLUSTERS[1]),
                dict(name="cluster3", network="network2", role="remote", primary="cluster1"),
                dict(name="cluster4", network="network2", role="primary", istiod_url="http://127.0.0.1:1")]
    r = report(clusters=clusters)
    rows = dict((row["istiod"], row) for row in r["report"]["sync"])
    assert sorted(rows) == ["cluster1", "cluster2", "cluster4"]  # a remote has no istiod of its own
    assert rows["cluster1"]["expect"] == ["cluster2", "cluster3", "cluster4"]
    assert rows["cluster1"]["status"] == {"cluster1": "synced", "cluster2": "synced", "cluster3": "timeout"}
    assert "no local istiod recorded" in rows["cluster2"]["error"]
    assert "127.0.0.1:1" in rows["cluster4"]["error"]
    assert r["summary"]["synced"] == "1/9"
    text = page(state)
    assert '<td class="st st-bad" data-cluster="cluster3">timeout</td>' in text
    assert '<td class="st st-bad" data-cluster="cluster4">not seen</td>' in text
    # expected remote secrets: every primary reads every other cluster
    assert ["cluster3", "cluster1"] in r["report"]["expected_links"]
    assert ["cluster1", "cluster3"] not in r["report"]["expected_links"]


# --- remote secrets, as the API server lists them -----------------------------------------
def jwt(claims):
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
    return "%s.%s.%s" % (part({"alg": "RS256"}), part(claims), "c2lnbmF0dXJl")


def remote_secret(source, token, annotation=None):
    config = {"apiVersion": "v1", "kind": "Config", "current-context": source,
              "clusters": [{"name": source, "cluster": {"server": "https://127.0.0.1:6443",
                                                        "certificate-authority-data": "Q0E="}}],
              "contexts": [{"name": source, "context": {"cluster": source, "user": source}}],
              "users": [{"name": source, "user": {"token": token}}]}
    meta = {"name": "istio-remote-secret-" + source, "namespace": "istio-system",
            "labels": {"istio/multiCluster": "true"},
            "annotations": {"networking.istio.io/cluster": source}}
    if annotation:
        meta["annotations"]["meshfleet.io/token-expires"] = annotation
    return {"metadata": meta, "data": {source: base64.b64encode(yaml.safe_dump(config).encode()).decode()}}


class FakeKube:
    """What KubeRest.get returns for the secret list (the request is checked too)."""

    def __init__(self, items):
        self.items = items
        self.asked = []

    def get(self, what, path, query=None, not_found=None):
        self.asked.append((path, query))
        return {"items": self.items}


def test_remote_secret_expiry_from_the_token_and_the_annotation():
    exp = NOW + datetime.timedelta(days=6)
    soon = NOW + datetime.timedelta(hours=20)
    tokens = [jwt({"exp": int(exp.timestamp())}), jwt({"exp": int(exp.timestamp())}), jwt({"sub": "legacy"}),
              jwt({"exp": int((NOW - datetime.timedelta(seconds=1)).timestamp())})]
    kube = FakeKube([
        remote_secret("cluster2", tokens[0]),
        remote_secret("cluster3", tokens[1], annotation=MR.rfc3339(soon)),  # the earlier one wins
        remote_secret("cluster4", tokens[2]),
        remote_secret("cluster5", tokens[3]),
        {"metadata": {"name": "istio-remote-secret-broken", "annotations": {"networking.istio.io/cluster": "x"}},
         "data": {"x": "bm90IGEga3ViZWNvbmZpZw=="}},
    ])
    found = MR.remote_secrets(kube, "istio-system", NOW, 201600)
    assert kube.asked == [("/api/v1/namespaces/istio-system/secrets", {"labelSelector": "istio/multiCluster=true"})]
    by = dict((s["source"], s) for s in found)
    assert by["cluster2"]["expires"] == MR.rfc3339(exp) and by["cluster2"]["status"] == "valid"
    assert by["cluster3"]["expires"] == MR.rfc3339(soon) and by["cluster3"]["status"] == "expiring"
    assert by["cluster4"]["status"] == "no expiry" and by["cluster4"]["expires"] is None
    assert by["cluster5"]["status"] == "expired"
    assert by["x"]["status"] == "malformed" and by["x"]["problem"]
    text = json.dumps(found)
    for token in tokens:
        assert token not in text and token.split(".")[1] not in text
