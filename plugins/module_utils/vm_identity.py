# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Proof that a VM holds a mesh identity: runs ON the VM (Python 3 standard library and
the ``openssl`` command line), so that the workload key never leaves it.

- :func:`check_certificate`: the agent's workload certificate (``/etc/certs/cert-chain.pem``):
  its URI SANs (the SPIFFE id), validity, issuer, and ``openssl verify`` of the chain against
  the root bundle it is given (the mesh root from the controller) and the agent's own root.
- :func:`serve_once` / :func:`connect_once`: one mutual-TLS handshake with the workload
  certificates, each side presenting its own chain and verifying the peer's against the
  root bundle; both report the peer's SPIFFE id.
- :func:`relay_once`: a one-connection TCP relay (runs on the controller when the two VMs'
  networks do not route to each other): it forwards bytes, the TLS session is end to end.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import select
import shutil
import socket
import ssl
import subprocess
import tempfile
import time


class IdentityError(Exception):
    pass


def _run(argv):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def split_pem(text):
    out, cur = [], []
    for line in (text or "").splitlines():
        if "-----BEGIN CERTIFICATE-----" in line:
            cur = [line.strip()]
        elif "-----END CERTIFICATE-----" in line and cur:
            cur.append(line.strip())
            out.append("\n".join(cur) + "\n")
            cur = []
        elif cur:
            cur.append(line.strip())
    return out


def decode_cert(path):
    """Subject, issuer, SANs and dates of the first certificate of ``path``."""
    openssl = shutil.which("openssl")
    if openssl:
        rc, out, err = _run([openssl, "x509", "-in", path, "-noout", "-subject", "-issuer",
                             "-startdate", "-enddate", "-ext", "subjectAltName",
                             "-nameopt", "RFC2253"])
        if rc != 0:
            raise IdentityError("openssl cannot read %s: %s" % (path, err.strip()))
        info = dict(uris=[], dns=[])
        lines = out.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("subject="):
                info["subject"] = line[len("subject="):].strip()
            elif line.startswith("issuer="):
                info["issuer"] = line[len("issuer="):].strip()
            elif line.startswith("notBefore="):
                info["not_before"] = _openssl_time(line.split("=", 1)[1])
            elif line.startswith("notAfter="):
                info["not_after"] = _openssl_time(line.split("=", 1)[1])
            elif "Subject Alternative Name" in line and i + 1 < len(lines):
                for part in lines[i + 1].split(","):
                    part = part.strip()
                    if part.startswith("URI:"):
                        info["uris"].append(part[4:])
                    elif part.startswith("DNS:"):
                        info["dns"].append(part[4:])
        return info
    # no openssl binary: CPython's own decoder
    raw = ssl._ssl._test_decode_cert(path)  # pylint: disable=protected-access
    return dict(
        subject=",".join("%s=%s" % kv for rdn in raw.get("subject", ()) for kv in rdn),
        issuer=",".join("%s=%s" % kv for rdn in raw.get("issuer", ()) for kv in rdn),
        not_before=_openssl_time(raw.get("notBefore")), not_after=_openssl_time(raw.get("notAfter")),
        uris=[v for k, v in raw.get("subjectAltName", ()) if k == "URI"],
        dns=[v for k, v in raw.get("subjectAltName", ()) if k == "DNS"])


def _openssl_time(text):
    """``Nov 26 18:12:07 2026 GMT`` -> ``2026-11-26T18:12:07Z``."""
    if not text:
        return None
    ts = ssl.cert_time_to_seconds(text.strip())
    return datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def verify_chain(chain_path, root_path):
    """``openssl verify`` of the leaf of ``chain_path`` with the rest of it as untrusted
    intermediates, against ``root_path``. (ok, message)."""
    openssl = shutil.which("openssl")
    certs = split_pem(open(chain_path).read())
    if not certs:
        return False, "%s holds no certificate" % chain_path
    if not openssl:
        return False, "no openssl command on this host to verify the chain with"
    tmp = tempfile.mkdtemp(prefix="meshfleet-verify-")
    try:
        leaf = os.path.join(tmp, "leaf.pem")
        rest = os.path.join(tmp, "untrusted.pem")
        with open(leaf, "w") as f:
            f.write(certs[0])
        with open(rest, "w") as f:
            f.write("".join(certs[1:]) or certs[0])
        rc, out, err = _run([openssl, "verify", "-CAfile", root_path, "-untrusted", rest, leaf])
        return rc == 0, (out + err).strip().replace(leaf, "leaf")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_certificate(cert_dir, root_bundle=None, expected_spiffe_id=None, now=None):
    chain = os.path.join(cert_dir, "cert-chain.pem")
    if not os.path.isfile(chain):
        raise IdentityError("no workload certificate at %s: has the agent got its certificate? "
                            "(see /var/log/istio/istio.log)" % chain)
    info = decode_cert(chain)
    agent_root = os.path.join(cert_dir, "root-cert.pem")
    result = dict(cert_file=chain, spiffe_ids=info["uris"], subject=info.get("subject"),
                  issuer=info.get("issuer"), not_before=info.get("not_before"),
                  not_after=info.get("not_after"))
    now = now or time.time()
    na = info.get("not_after")
    result["seconds_left"] = int(datetime.datetime.strptime(na, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc).timestamp() - now) if na else None
    result["valid_now"] = bool(result["seconds_left"] and result["seconds_left"] > 0)
    if os.path.isfile(agent_root):
        ok, msg = verify_chain(chain, agent_root)
        result["chain_verified_agent_root"], result["verify_agent_root"] = ok, msg
    if root_bundle:
        tmp = tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False)
        try:
            tmp.write(root_bundle)
            tmp.close()
            ok, msg = verify_chain(chain, tmp.name)
        finally:
            os.unlink(tmp.name)
        result["chain_verified"], result["verify"] = ok, msg
    result["chain_pem"] = "".join(split_pem(open(chain).read()))
    if expected_spiffe_id is not None:
        result["spiffe_id_ok"] = expected_spiffe_id in info["uris"]
    return result


def _context(server, cert_dir, root_bundle_path):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.path.join(cert_dir, "cert-chain.pem"), os.path.join(cert_dir, "key.pem"))
    ctx.load_verify_locations(cafile=root_bundle_path)
    ctx.verify_mode = ssl.CERT_REQUIRED
    if not server:
        ctx.check_hostname = False  # SPIFFE identities are URI SANs, checked below
    return ctx


def _peer_uris(sock):
    cert = sock.getpeercert() or {}
    return [v for k, v in cert.get("subjectAltName", ()) if k == "URI"]


def _with_root_file(root_bundle, fn):
    tmp = tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False)
    try:
        tmp.write(root_bundle)
        tmp.close()
        return fn(tmp.name)
    finally:
        os.unlink(tmp.name)


def _accept_one(address, port, timeout, prefix):
    """Listen on ``address:port`` and accept one TCP connection: (socket, peer address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as ls:
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((address, port))
        ls.listen(1)
        ls.settimeout(timeout)
        try:
            return ls.accept()
        except socket.timeout:
            raise IdentityError("%sno connection on %s:%d within %ss" % (prefix, address, port, timeout))


def serve_once(address, port, cert_dir, root_bundle, timeout):
    """Accept one mTLS connection; returns the client's SPIFFE ids and the TLS version."""
    def run(root_path):
        ctx = _context(True, cert_dir, root_path)
        conn, peer = _accept_one(address, port, timeout, "")
        conn.settimeout(timeout)
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                uris = _peer_uris(tls)
                line = tls.recv(256).decode("utf-8", "replace").strip()
                tls.sendall(b"meshfleet-mtls-ok\n")
                return dict(peer_spiffe_ids=uris, peer_address=peer[0], tls_version=tls.version(),
                            cipher=(tls.cipher() or [None])[0], received=line)
        except ssl.SSLError as e:
            raise IdentityError("TLS handshake with %s failed: %s" % (peer[0], e))
    return _with_root_file(root_bundle, run)


def connect_once(host, port, cert_dir, root_bundle, timeout, retry_for=10):
    """One mTLS connection to ``host:port``; returns the server's SPIFFE ids."""
    def run(root_path):
        ctx = _context(False, cert_dir, root_path)
        deadline = time.monotonic() + retry_for
        while True:
            try:
                raw = socket.create_connection((host, port), timeout=timeout)
                break
            except (socket.error, OSError) as e:
                if time.monotonic() > deadline:
                    raise IdentityError("cannot connect to %s:%d: %s" % (host, port, e))
                time.sleep(0.3)
        try:
            with ctx.wrap_socket(raw, server_hostname=None) as tls:
                uris = _peer_uris(tls)
                tls.sendall(b"meshfleet-mtls-hello\n")
                answer = tls.recv(256).decode("utf-8", "replace").strip()
                return dict(peer_spiffe_ids=uris, tls_version=tls.version(),
                            cipher=(tls.cipher() or [None])[0], received=answer)
        except ssl.SSLError as e:
            raise IdentityError("TLS handshake with %s:%d failed: %s" % (host, port, e))
    return _with_root_file(root_bundle, run)


def relay_once(listen_address, listen_port, target_address, target_port, timeout):
    """Forward one TCP connection from ``listen`` to ``target``; bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    down, peer = _accept_one(listen_address, listen_port, timeout, "relay: ")
    moved = 0
    with down:
        up = None
        while up is None:
            try:
                up = socket.create_connection((target_address, target_port), timeout=5)
            except (socket.error, OSError) as e:
                if time.monotonic() > deadline:
                    raise IdentityError("relay: cannot reach %s:%d: %s" % (target_address, target_port, e))
                time.sleep(0.3)
        with up:
            socks = [down, up]
            while time.monotonic() < deadline:
                readable, _w, _x = select.select(socks, [], [], 0.5)
                done = False
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        done = True
                        break
                    (up if s is down else down).sendall(data)
                    moved += len(data)
                if done:
                    break
    return dict(client_address=peer[0], bytes=moved)
