# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""module_utils/localproc.py with real folders, real processes (sleep, a shell that ignores
SIGTERM, a zombie) and real local HTTP/HTTPS servers (one requiring a client certificate)."""

from __future__ import absolute_import, division, print_function

import datetime
import os
import signal
import ssl
import subprocess
import sys
import threading
import time

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ansible_collections.meshfleet.mesh.plugins.module_utils import localproc
from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError
from ansible_collections.meshfleet.mesh.tests.fakes.cloudsim.pki import make_server_pki


# --- tools ------------------------------------------------------------------------------------

@pytest.fixture
def tool_env(monkeypatch, tmp_path):
    monkeypatch.delenv("MESHFLEET_TOOLS_BIN", raising=False)
    monkeypatch.setenv("MESHFLEET_TOOLS_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_tools_bin_order_explicit_env_cache(tool_env, monkeypatch):
    explicit, env_dir, cached = (tool_env / "explicit", tool_env / "env", tool_env / "cache" / "current" / "bin")
    for d in (explicit, env_dir, cached):
        d.mkdir(parents=True)
    monkeypatch.setenv("MESHFLEET_TOOLS_BIN", str(env_dir))
    assert localproc.tools_bin(str(explicit)) == os.path.realpath(str(explicit))
    assert localproc.tools_bin() == os.path.realpath(str(env_dir))
    assert localproc.tools_bin(str(tool_env / "missing")) == os.path.realpath(str(env_dir))
    monkeypatch.delenv("MESHFLEET_TOOLS_BIN")
    assert localproc.tools_bin() == os.path.realpath(str(cached))


def test_tools_bin_resolves_the_current_symlink(tool_env):
    key = tool_env / "cache" / "abc123" / "bin"
    key.mkdir(parents=True)
    os.symlink(str(tool_env / "cache" / "abc123"), str(tool_env / "cache" / "current"))
    assert localproc.tools_bin() == str(key)


def test_tools_bin_missing_names_every_place_looked(tool_env, monkeypatch):
    monkeypatch.setenv("MESHFLEET_TOOLS_BIN", str(tool_env / "nope"))
    with pytest.raises(MeshfleetError) as e:
        localproc.tools_bin(str(tool_env / "given"))
    looked = (tool_env / "given", tool_env / "nope", tool_env / "cache" / "current" / "bin")
    assert "looked in: %s, %s, %s" % looked in e.value.msg
    assert localproc.TOOLS_HINT in e.value.msg


def test_tool_must_be_an_executable_file(tmp_path):
    good = tmp_path / "kwok"
    good.write_text("#!/bin/sh\n")
    good.chmod(0o755)
    plain = tmp_path / "istioctl"
    plain.write_text("not executable")
    plain.chmod(0o644)
    (tmp_path / "dir").mkdir()
    assert localproc.tool(str(tmp_path), "kwok") == str(good)
    for name in ("istioctl", "dir", "absent"):
        with pytest.raises(MeshfleetError) as e:
            localproc.tool(str(tmp_path), name)
        assert e.value.msg.startswith("%s is missing from %s" % (name, tmp_path))


# --- pids ---------------------------------------------------------------------------------------

def test_read_pid(tmp_path):
    path = tmp_path / "x.pid"
    assert localproc.read_pid(str(path)) is None
    for text, expected in (("1234\n", 1234), ("", None), ("0\n", None), ("abc", None), (" 77 ", 77)):
        path.write_text(text)
        assert localproc.read_pid(str(path)) == expected, text


def test_pid_alive_for_running_zombie_and_reaped_processes():
    assert localproc.pid_alive(os.getpid())
    assert localproc.pid_alive(str(os.getpid()))
    assert not localproc.pid_alive("not a pid")
    proc = subprocess.Popen(["sleep", "30"])
    try:
        assert localproc.pid_alive(proc.pid)
    finally:
        proc.kill()
    # killed but not waited for: a zombie, which is not alive
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open("/proc/%d/stat" % proc.pid) as f:
            if f.read().split(")")[-1].split()[0] == "Z":
                break
        time.sleep(0.05)
    assert not localproc.pid_alive(proc.pid)
    proc.wait()
    assert not localproc.pid_alive(proc.pid)


def _reaper(proc):
    """Reap ``proc`` as soon as it exits (as init would for the module's daemons)."""
    t = threading.Thread(target=proc.wait, daemon=True)
    t.start()
    return t


def test_stop_pid_terminates():
    proc = subprocess.Popen(["sleep", "30"])
    _reaper(proc)
    t0 = time.monotonic()
    assert localproc.stop_pid(proc.pid, timeout=10) is True
    assert time.monotonic() - t0 < 5
    proc.wait(5)
    assert proc.returncode == -signal.SIGTERM
    assert localproc.stop_pid(proc.pid) is False        # nothing left to stop
    assert localproc.stop_pid(None) is False


def test_stop_pid_kills_what_ignores_sigterm(tmp_path):
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c",
                             "import signal, time, pathlib; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                             "pathlib.Path(%r).write_text('1'); time.sleep(60)" % str(ready)])
    _reaper(proc)
    deadline = time.monotonic() + 20
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    t0 = time.monotonic()
    assert localproc.stop_pid(proc.pid, timeout=1) is True
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL and time.monotonic() - t0 >= 1


# --- https_get ------------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        peer = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
        body = ("%s %s" % (self.path, "client-cert" if peer else "anonymous")).encode()
        self.send_response(200 if self.path != "/missing" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def pki_files(tmp_path_factory):
    """The server's CA and certificate, and a client certificate from a CA of its own."""
    folder = tmp_path_factory.mktemp("pki")
    files = make_server_pki(str(folder))
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "probe")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    for name, data in (("client-ca.pem", ca.public_bytes(pem)), ("client.pem", cert.public_bytes(pem)),
                       ("client-key.pem", key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))):
        (folder / name).write_bytes(data)
        files[name.replace(".pem", "").replace("-", "_")] = str(folder / name)
    return files


def serve(tls=None):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture
def servers(pki_files):
    plain = serve()
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(pki_files["cert"], pki_files["key"])
    secure = serve(tls)
    mtls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    mtls.load_cert_chain(pki_files["cert"], pki_files["key"])
    mtls.load_verify_locations(pki_files["client_ca"])
    mtls.verify_mode = ssl.CERT_REQUIRED
    mutual = serve(mtls)
    yield dict(http="http://127.0.0.1:%d" % plain.server_address[1],
               https="https://127.0.0.1:%d" % secure.server_address[1],
               mtls="https://localhost:%d" % mutual.server_address[1])
    for s in (plain, secure, mutual):
        s.shutdown()
        s.server_close()


def test_https_get_plain_and_verified(servers, pki_files):
    assert localproc.https_get(servers["http"] + "/ready?x=1") == (200, b"/ready?x=1 anonymous")
    assert localproc.https_get(servers["http"] + "/missing") == (404, b"/missing anonymous")
    assert localproc.https_get(servers["https"] + "/debug", ca_file=pki_files["ca"]) == (200, b"/debug anonymous")


def test_https_get_refuses_an_unknown_ca_unless_insecure(servers):
    code, text = localproc.https_get(servers["https"] + "/debug")   # system CAs: not ours
    assert code is None and "CERTIFICATE_VERIFY_FAILED" in text
    assert localproc.https_get(servers["https"] + "/debug", insecure=True) == (200, b"/debug anonymous")


def test_https_get_with_a_client_certificate(servers, pki_files):
    code, body = localproc.https_get(servers["mtls"] + "/", ca_file=pki_files["ca"],
                                     cert_file=pki_files["client"], key_file=pki_files["client_key"])
    assert (code, body) == (200, b"/ client-cert")
    code, text = localproc.https_get(servers["mtls"] + "/", ca_file=pki_files["ca"])
    assert code is None and text


def test_https_get_unreachable_returns_the_reason():
    code, text = localproc.https_get("http://127.0.0.1:1/ready", timeout=2)
    assert code is None and "refused" in text.lower()


def test_kill_until_gone_kills_every_listed_process_and_names_what_stays():
    import subprocess
    from ansible_collections.meshfleet.mesh.plugins.module_utils.localproc import kill_until_gone
    procs = [subprocess.Popen(["sleep", "60"]), subprocess.Popen(["sleep", "60"])]
    try:
        def listed():  # reaps as it lists
            return [p.pid for p in procs if p.poll() is None]
        assert kill_until_gone(listed, 5) == []
        assert all(p.returncode == -9 for p in procs)
        # a pid that never goes away (the list keeps naming it) is returned after the timeout
        assert kill_until_gone(lambda: [2 ** 22 + 7], 0.2) == [2 ** 22 + 7]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
