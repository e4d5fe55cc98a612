# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""kube_rest.KubeRest with an exec credential plugin: the credential is cached until its
``expirationTimestamp``, minted again once expired, and a 401 runs the plugin once more and
retries the call (what client-go does). A real local HTTP server accepts only the tokens
the test allows; the plugin is a real script counting its runs."""

from __future__ import absolute_import, division, print_function

import datetime
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError
from ansible_collections.meshfleet.mesh.plugins.module_utils.kube_rest import KubeRest

PLUGIN = r'''
import json, os, sys
count_file = sys.argv[1]
n = int(open(count_file).read() or 0) + 1 if os.path.exists(count_file) else 1
open(count_file, "w").write(str(n))
status = {"token": "t%d" % n}
if sys.argv[2] != "none":
    status["expirationTimestamp"] = sys.argv[2]
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
                  "status": status}))
'''


class Handler(BaseHTTPRequestHandler):
    valid = set()
    seen = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        token = (self.headers.get("Authorization") or "")[len("Bearer "):]
        Handler.seen.append(token)
        ok = token in Handler.valid
        data = json.dumps({"kind": "Namespace", "metadata": {"name": "a"}} if ok else
                          {"kind": "Status", "message": "Unauthorized", "code": 401}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server():
    Handler.valid, Handler.seen = set(), []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def stamp(seconds):
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def client(tmp_path, server, expiry):
    script = tmp_path / "plugin.py"
    script.write_text(PLUGIN)
    count = tmp_path / "count"
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "c1",
           "clusters": [{"name": "c1", "cluster": {"server": server}}],
           "contexts": [{"name": "c1", "context": {"cluster": "c1", "user": "u1"}}],
           "users": [{"name": "u1", "user": {"exec": {
               "apiVersion": "client.authentication.k8s.io/v1beta1", "command": sys.executable,
               "args": [str(script), str(count), expiry], "interactiveMode": "Never"}}}]}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return KubeRest(str(path), label="c1"), (lambda: int(count.read_text()))


def read(kube):
    return kube.get("read namespace a", "/api/v1/namespaces/a")


def test_credential_is_cached_until_it_expires(tmp_path, server):
    Handler.valid = {"t1"}
    kube, runs = client(tmp_path, server, stamp(3600))
    for _attempt in range(3):
        assert read(kube)["metadata"]["name"] == "a"
    assert runs() == 1 and Handler.seen == ["t1", "t1", "t1"]


def test_credential_without_expiry_is_kept(tmp_path, server):
    Handler.valid = {"t1"}
    kube, runs = client(tmp_path, server, "none")
    read(kube)
    read(kube)
    assert runs() == 1


def test_expired_credential_is_minted_again(tmp_path, server):
    # expires within the skew: every request asks the plugin again (EKS: 14 min tokens)
    Handler.valid = {"t1", "t2", "t3"}
    kube, runs = client(tmp_path, server, stamp(KubeRest.EXEC_EXPIRY_SKEW - 5))
    read(kube)
    read(kube)
    read(kube)
    assert runs() == 3 and Handler.seen == ["t1", "t2", "t3"]


def test_unauthorized_runs_the_plugin_once_more(tmp_path, server):
    Handler.valid = {"t2"}  # t1 was revoked
    kube, runs = client(tmp_path, server, stamp(3600))
    assert read(kube)["metadata"]["name"] == "a"
    assert runs() == 2 and Handler.seen == ["t1", "t2"]
    read(kube)
    assert runs() == 2
    # nothing the plugin mints is accepted: one more run, then the 401 is reported
    Handler.valid = set()
    with pytest.raises(MeshfleetError) as e:
        read(kube)
    assert runs() == 3 and Handler.seen[-2:] == ["t2", "t3"]
    assert "rejected the credentials" in e.value.msg and "401" in e.value.msg
