# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""module_utils/vm_identity.py with real certificates (a mesh root, an Istio plug-in CA and
SPIFFE workload certificates made with module_utils/pki.py and cryptography), the real
``openssl`` command (and without it), and real mutual-TLS connections on 127.0.0.1."""

from __future__ import absolute_import, division, print_function

import datetime
import os
import shutil
import socket
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from ansible_collections.meshfleet.mesh.plugins.module_utils import pki
from ansible_collections.meshfleet.mesh.plugins.module_utils import vm_identity as vi

WEB = "spiffe://cluster.local/ns/vm-web/sa/web"
DB = "spiffe://cluster.local/ns/vm-db/sa/db"


class Authority:
    """A mesh root and an intermediate (Istio plug-in CA) that issues workload certificates."""

    def __init__(self, organization="Istio"):
        self.root_key = pki.generate_key("ecdsa-p256")
        self.root = pki.build_root_cert(self.root_key, organization=organization)
        self.ca_key = pki.generate_key("ecdsa-p256")
        self.ca = pki.build_intermediate_cert(self.ca_key, "cluster1", self.root, self.root_key,
                                              organization=organization)

    def root_pem(self):
        return pki.cert_pem(self.root).decode()

    def workload(self, folder, spiffe_id, hours=24, expired=False):
        """Write cert-chain.pem (leaf + intermediate + root), key.pem and root-cert.pem, as
        the Istio agent does in OUTPUT_CERTS."""
        key = pki.generate_key("ecdsa-p256")
        now = datetime.datetime.now(datetime.timezone.utc)
        start = now - datetime.timedelta(hours=2 if expired else 0, minutes=5)
        end = now - datetime.timedelta(hours=1) if expired else now + datetime.timedelta(hours=hours)
        leaf = (x509.CertificateBuilder().subject_name(x509.Name([]))
                .issuer_name(self.ca.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
                .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
                               critical=True)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(self.ca_key, hashes.SHA256()))
        os.makedirs(str(folder), exist_ok=True)
        chain = b"".join(pki.cert_pem(c) for c in (leaf, self.ca, self.root))
        (folder / "cert-chain.pem").write_bytes(chain)
        (folder / "key.pem").write_bytes(pki.key_pem(key))
        (folder / "root-cert.pem").write_bytes(pki.cert_pem(self.root))
        return leaf


@pytest.fixture(scope="module")
def mesh():
    return Authority()


@pytest.fixture(scope="module")
def stranger():
    return Authority(organization="Elsewhere")


def test_split_pem():
    a = "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n"
    b = "  -----BEGIN CERTIFICATE-----\n  BBB  \n-----END CERTIFICATE-----"
    assert vi.split_pem("junk\n" + a + "between\n" + b + "\ntrailer") == [
        a, "-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n"]
    assert vi.split_pem("") == [] and vi.split_pem(None) == []


def test_check_certificate_of_a_healthy_workload(tmp_path, mesh):
    leaf = mesh.workload(tmp_path, WEB)
    res = vi.check_certificate(str(tmp_path), root_bundle=mesh.root_pem(), expected_spiffe_id=WEB)
    assert res["spiffe_ids"] == [WEB] and res["spiffe_id_ok"] is True
    assert res["chain_verified"] is True and res["verify"].endswith("leaf: OK")
    assert res["chain_verified_agent_root"] is True
    assert res["valid_now"] and 23 * 3600 < res["seconds_left"] <= 24 * 3600
    assert res["not_after"] == leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "O=Istio" in res["issuer"] and "CN=Intermediate CA" in res["issuer"]
    assert len(vi.split_pem(res["chain_pem"])) == 3


def test_check_certificate_against_another_root_and_id(tmp_path, mesh, stranger):
    mesh.workload(tmp_path, WEB)
    res = vi.check_certificate(str(tmp_path), root_bundle=stranger.root_pem(), expected_spiffe_id=DB)
    assert res["chain_verified"] is False and "leaf: OK" not in res["verify"]
    assert res["chain_verified_agent_root"] is True     # the agent's own root still matches
    assert res["spiffe_id_ok"] is False
    # a bundle with both roots (a rotation) verifies
    both = vi.check_certificate(str(tmp_path), root_bundle=stranger.root_pem() + mesh.root_pem())
    assert both["chain_verified"] is True


def test_an_expired_certificate_is_not_valid_now(tmp_path, mesh):
    mesh.workload(tmp_path, WEB, expired=True)
    res = vi.check_certificate(str(tmp_path), root_bundle=mesh.root_pem())
    assert res["valid_now"] is False and res["seconds_left"] < 0
    assert res["chain_verified"] is False and "expired" in res["verify"]


def test_no_certificate_yet(tmp_path):
    with pytest.raises(vi.IdentityError) as e:
        vi.check_certificate(str(tmp_path))
    assert "no workload certificate at %s" % (tmp_path / "cert-chain.pem") in str(e.value)


def test_decode_cert_without_openssl_matches_openssl(tmp_path, mesh, monkeypatch):
    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command to compare with")
    mesh.workload(tmp_path, WEB)
    path = str(tmp_path / "cert-chain.pem")
    with_openssl = vi.decode_cert(path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    without = vi.decode_cert(path)
    for field in ("uris", "not_before", "not_after"):
        assert without[field] == with_openssl[field], field
    assert without["uris"] == [WEB]
    ok, msg = vi.verify_chain(path, str(tmp_path / "root-cert.pem"))
    assert ok is False and "no openssl command" in msg


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _in_thread(fn, *args):
    box = {}

    def run():
        try:
            box["result"] = fn(*args)
        except Exception as e:  # noqa: BLE001 - reported to the test
            box["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def test_mutual_tls_both_sides_see_the_peer_identity(tmp_path, mesh):
    web, db = tmp_path / "web", tmp_path / "db"
    mesh.workload(web, WEB)
    mesh.workload(db, DB)
    port = _free_port()
    t, box = _in_thread(vi.serve_once, "127.0.0.1", port, str(db), mesh.root_pem(), 10)
    client = vi.connect_once("127.0.0.1", port, str(web), mesh.root_pem(), 10)
    t.join(10)
    assert "error" not in box, box
    assert client["peer_spiffe_ids"] == [DB] and client["received"] == "meshfleet-mtls-ok"
    assert box["result"]["peer_spiffe_ids"] == [WEB] and box["result"]["received"] == "meshfleet-mtls-hello"
    assert box["result"]["tls_version"] in ("TLSv1.2", "TLSv1.3")


def test_a_client_from_another_mesh_is_refused(tmp_path, mesh, stranger):
    web, db = tmp_path / "web", tmp_path / "db"
    stranger.workload(web, WEB)
    mesh.workload(db, DB)
    port = _free_port()
    t, box = _in_thread(vi.serve_once, "127.0.0.1", port, str(db), mesh.root_pem(), 10)
    # the client trusts both roots, so it is the server that refuses it
    with pytest.raises(vi.IdentityError) as e:
        vi.connect_once("127.0.0.1", port, str(web), mesh.root_pem() + stranger.root_pem(), 10)
    t.join(10)
    assert isinstance(box.get("error"), vi.IdentityError) and "TLS handshake with 127.0.0.1 failed" in str(box["error"])
    assert "127.0.0.1:%d" % port in str(e.value)


def test_serve_once_times_out_naming_the_address(tmp_path, mesh):
    mesh.workload(tmp_path, DB)
    port = _free_port()
    with pytest.raises(vi.IdentityError) as e:
        vi.serve_once("127.0.0.1", port, str(tmp_path), mesh.root_pem(), 1)
    assert "no connection on 127.0.0.1:%d within 1s" % port in str(e.value)


def test_connect_once_names_an_unreachable_peer(tmp_path, mesh):
    mesh.workload(tmp_path, WEB)
    with pytest.raises(vi.IdentityError) as e:
        vi.connect_once("127.0.0.1", 1, str(tmp_path), mesh.root_pem(), 2, retry_for=0.5)
    assert str(e.value).startswith("cannot connect to 127.0.0.1:1:")


def test_relay_carries_the_end_to_end_session(tmp_path, mesh):
    web, db = tmp_path / "web", tmp_path / "db"
    mesh.workload(web, WEB)
    mesh.workload(db, DB)
    server_port, relay_port = _free_port(), _free_port()
    ts, served = _in_thread(vi.serve_once, "127.0.0.1", server_port, str(db), mesh.root_pem(), 15)
    tr, relayed = _in_thread(vi.relay_once, "127.0.0.1", relay_port, "127.0.0.1", server_port, 15)
    client = vi.connect_once("127.0.0.1", relay_port, str(web), mesh.root_pem(), 10)
    ts.join(15)
    tr.join(15)
    assert client["peer_spiffe_ids"] == [DB]
    assert served["result"]["peer_spiffe_ids"] == [WEB]
    assert relayed["result"]["client_address"] == "127.0.0.1" and relayed["result"]["bytes"] > 1000


def test_relay_names_an_unreachable_target():
    relay_port = _free_port()
    t, box = _in_thread(vi.relay_once, "127.0.0.1", relay_port, "127.0.0.1", 1, 2)
    deadline = 50
    while deadline:
        try:
            with socket.create_connection(("127.0.0.1", relay_port), timeout=2):
                break
        except OSError:
            deadline -= 1
            threading.Event().wait(0.1)
    t.join(10)
    assert "relay: cannot reach 127.0.0.1:1" in str(box.get("error"))


def test_subject_without_names_is_still_read(tmp_path, mesh):
    """Istio workload certificates have an empty subject: decoding must not depend on it."""
    mesh.workload(tmp_path, WEB)
    info = vi.decode_cert(str(tmp_path / "cert-chain.pem"))
    assert info["uris"] == [WEB] and info["dns"] == [] and info["subject"] == ""
