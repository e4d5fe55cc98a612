# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""KubeRest.exec (kube_exec.py): a command in a pod's container over the API server's exec
WebSocket, against the recorded API server (tests/fakes/kubeapi.py), which answers exec as the
API server does and refuses what it refuses. Over HTTPS, through a CONNECT proxy, and the
errors a user sees."""

from __future__ import absolute_import, division, print_function

import pytest
import yaml

from ansible_collections.meshfleet.mesh.plugins.module_utils import kube_exec
from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError
from ansible_collections.meshfleet.mesh.plugins.module_utils.kube_rest import KubeRest
from ansible_collections.meshfleet.mesh.tests.fakes.cloudsim.pki import make_server_pki
from ansible_collections.meshfleet.mesh.tests.fakes.kubeapi import ConnectProxy, RecordedApi


def shell(container, argv):
    """A tiny container: echo prints, fail exits with its argument, big prints a lot."""
    if argv[0] == "echo":
        return 0, (" ".join(argv[1:]) + "\n").encode(), b""
    if argv[0] == "fail":
        return int(argv[1]), b"partial\n", ("error from %s\n" % container).encode()
    if argv[0] == "big":
        return 0, b"x" * 200000, b""
    return 127, b"", ("%s: not found\n" % argv[0]).encode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_server_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def api(pki):
    with RecordedApi(tls=(pki["cert"], pki["key"])) as server:
        server.add_pod("sample", "curl-1", ["curl", "istio-proxy"], shell)
        server.add_pod("sample", "solo", ["app"], shell)
        yield server


def kubeconfig(tmp_path, cluster):
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "c1",
           "clusters": [{"name": "c1", "cluster": cluster}],
           "contexts": [{"name": "c1", "context": {"cluster": "c1", "user": "u1"}}],
           "users": [{"name": "u1", "user": {"token": "t0k3n"}}]}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def kube_for(tmp_path, api, pki, **extra):
    cluster = dict({"server": api.url, "certificate-authority": pki["ca"], "tls-server-name": "localhost"}, **extra)
    return KubeRest(kubeconfig(tmp_path, cluster), label="c1")


def test_exec_returns_output_and_exit_code(tmp_path, api, pki):
    kube = kube_for(tmp_path, api, pki)
    out = kube.exec("say hello", "sample", "curl-1", ["echo", "hello", "mesh"], container="curl")
    assert out == dict(rc=0, stdout="hello mesh\n", stderr="", protocol="v5.channel.k8s.io")
    bad = kube.exec("fail", "sample", "curl-1", ["fail", "7"], container="istio-proxy")
    assert (bad["rc"], bad["stdout"], bad["stderr"]) == (7, "partial\n", "error from istio-proxy\n")
    assert api.execs == [("sample", "curl-1", "curl", ["echo", "hello", "mesh"]),
                         ("sample", "curl-1", "istio-proxy", ["fail", "7"])]
    # the token went with the upgrade; every client frame was masked
    upgrades = [r for r in api.seen if "/exec?" in r[1]]
    assert all(dict((k.lower(), v) for k, v in r[2])["authorization"] == "Bearer t0k3n" for r in upgrades)
    assert api.client_frames and all(masked for _op, masked in api.client_frames)
    assert all(op == kube_exec.OP_CLOSE for op, _m in api.client_frames)


def test_a_single_container_pod_needs_no_container_and_large_output_arrives_whole(tmp_path, api, pki):
    kube = kube_for(tmp_path, api, pki)
    out = kube.exec("print a lot", "sample", "solo", ["big"])
    assert out["rc"] == 0 and out["stdout"] == "x" * 200000


def test_what_the_api_server_refuses_is_a_clear_error(tmp_path, api, pki):
    kube = kube_for(tmp_path, api, pki)
    with pytest.raises(MeshfleetError, match=r"cannot curl the service: a container name must be specified "
                                             r"for pod curl-1, choose one of: \[curl istio-proxy\]"):
        kube.exec("curl the service", "sample", "curl-1", ["echo"])
    with pytest.raises(MeshfleetError, match="container sleep is not valid for pod curl-1"):
        kube.exec("curl the service", "sample", "curl-1", ["echo"], container="sleep")
    with pytest.raises(MeshfleetError, match='pods "gone" not found'):
        kube.exec("curl the service", "sample", "gone", ["echo"])
    with pytest.raises(MeshfleetError, match="the command must be a non-empty list"):
        kube.exec("curl the service", "sample", "solo", [])
    assert len(api.execs) == 0


def test_through_a_connect_proxy(tmp_path, api, pki):
    with ConnectProxy(hosts={"api.meshfleet.test": "127.0.0.1"}) as proxy:
        kube = kube_for(tmp_path, api, pki, server="https://api.meshfleet.test:%d" % api.port,
                        **{"proxy-url": proxy.url})
        assert kube.exec("say hi", "sample", "solo", ["echo", "hi"])["stdout"] == "hi\n"
        assert proxy.tunnels == ["api.meshfleet.test:%d" % api.port]


def test_a_server_that_is_no_websocket_or_speaks_another_protocol_is_refused():
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    # RFC 6455's own example
    assert kube_exec.accept_key(key) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

    class Sock:
        def __init__(self, answer):
            self.answer, self.sent = answer, b""

        def sendall(self, data):
            self.sent += data

        def recv(self, n):
            out, self.answer = self.answer[:n], self.answer[n:]
            return out

    sock = Sock(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: nope\r\n\r\n")
    with pytest.raises(kube_exec.ExecError, match="not as a WebSocket"):
        kube_exec.run(sock, "/x", "h", [], sock.recv)
    sock = Sock(b'HTTP/1.1 403 Forbidden\r\nContent-Length: 47\r\n\r\n{"kind":"Status","message":"pods is forbidden"}')
    with pytest.raises(kube_exec.ExecError, match="pods is forbidden") as e:
        kube_exec.run(sock, "/x", "h", [], sock.recv)
    assert e.value.status == 403


def test_exit_status_of_the_error_channel():
    assert kube_exec.exit_code(b'{"metadata":{},"status":"Success"}') == 0
    assert kube_exec.exit_code(b'{"status":"Failure","reason":"NonZeroExitCode",'
                               b'"details":{"causes":[{"reason":"ExitCode","message":"28"}]}}') == 28
    with pytest.raises(kube_exec.ExecError, match="container not running"):
        kube_exec.exit_code(b'{"status":"Failure","reason":"InternalError","message":"container not running"}')


def test_frames_round_trip_masked_and_long():
    for size in (0, 125, 126, 65535, 65536):
        data = bytes(range(256)) * (size // 256) + bytes(size % 256)
        frame = kube_exec.encode_frame(kube_exec.OP_BINARY, data)
        reader = kube_exec.FrameReader(lambda n: b"", frame)
        assert reader.next() == (True, kube_exec.OP_BINARY, data)
