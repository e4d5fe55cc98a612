# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""module_utils/pki.py: certificate profiles, checks and the MeshCA engine without Ansible."""

from __future__ import absolute_import, division, print_function

import datetime
import os
import shutil
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from ansible_collections.meshfleet.mesh.plugins.module_utils import pki
from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError

NOW = datetime.datetime(2030, 6, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)


@pytest.fixture(scope="module")
def root():
    k = pki.generate_key("ecdsa-p256")
    return pki.build_root_cert(k, now=NOW), k


@pytest.mark.parametrize("key_type, cls, size", [
    ("ecdsa-p256", ec.EllipticCurvePrivateKey, 256),
    ("rsa-2048", rsa.RSAPrivateKey, 2048),
])
def test_generate_key(key_type, cls, size):
    k = pki.generate_key(key_type)
    assert isinstance(k, cls) and k.key_size == size
    assert pki.key_type_of(k) == key_type
    assert pki.key_type_of(k.public_key()) == key_type


def test_generate_key_rejects_unknown_type():
    with pytest.raises(MeshfleetError, match="unknown key_type"):
        pki.generate_key("dsa-1024")


@pytest.mark.parametrize("key_type, count", [("ecdsa-p256", 5), ("rsa-2048", 3), ("rsa-2048", 0)])
def test_generate_keys_distinct(key_type, count):
    keys = pki.generate_keys(key_type, count)
    assert len(keys) == count
    assert len({pki.key_pem(k) for k in keys}) == count
    assert all(pki.key_type_of(k) == key_type for k in keys)


def test_key_type_of_other_keys():
    assert pki.key_type_of(rsa.generate_private_key(65537, 3072)) == "rsa-3072"
    assert pki.key_type_of(ec.generate_private_key(ec.SECP384R1())) == "ecdsa-secp384r1"


def test_root_profile(root):
    rc, rk = root
    assert rc.subject == rc.issuer == pki.root_name("Istio")
    assert rc.not_valid_before_utc == NOW - datetime.timedelta(minutes=5)
    assert rc.not_valid_after_utc == NOW + datetime.timedelta(days=3650)
    assert pki.ca_constraints(rc) == (True, None)
    assert pki.is_self_signed(rc)
    assert pki.can_sign_certs(rc)
    aki = rc.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = rc.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest


def test_intermediate_profile(root):
    rc, rk = root
    k = pki.generate_key("ecdsa-p256")
    ic = pki.build_intermediate_cert(k, "cluster7", rc, rk, organization="Org", days=100,
                                     backdate_minutes=10, now=NOW)
    assert ic.subject.rfc4514_string() == "L=cluster7,CN=Intermediate CA,O=Org"
    assert [a.oid for a in ic.subject] == [NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME,
                                           NameOID.LOCALITY_NAME]
    assert ic.not_valid_before_utc == NOW - datetime.timedelta(minutes=10)
    assert ic.not_valid_after_utc == NOW + datetime.timedelta(days=100)
    assert pki.ca_constraints(ic) == (True, 0)
    assert ic.extensions.get_extension_for_class(x509.BasicConstraints).critical
    ku = ic.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and ku.value.digital_signature
    san = ic.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [pki.ISTIOD_SAN]
    assert pki.is_issued_by(ic, rc)
    assert not pki.is_issued_by(rc, ic)
    assert pki.key_matches_cert(k, ic) and not pki.key_matches_cert(rk, ic)
    assert ic.signature_hash_algorithm.name == "sha256"


def test_intermediate_capped_at_root_expiry():
    rk = pki.generate_key("ecdsa-p256")
    rc = pki.build_root_cert(rk, days=10, now=NOW)
    ic = pki.build_intermediate_cert(pki.generate_key("ecdsa-p256"), "c", rc, rk, days=730, now=NOW)
    assert ic.not_valid_after_utc == rc.not_valid_after_utc


def test_intermediate_from_root_without_ski_gets_aki_from_key():
    rk = pki.generate_key("ecdsa-p256")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bare")])
    rc = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(rk.public_key())
          .serial_number(1).not_valid_before(NOW).not_valid_after(NOW + datetime.timedelta(days=9))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(rk, hashes.SHA256()))
    ic = pki.build_intermediate_cert(pki.generate_key("ecdsa-p256"), "c", rc, rk, days=5, now=NOW)
    aki = ic.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == x509.SubjectKeyIdentifier.from_public_key(rk.public_key()).digest


def test_same_subject_roots_are_told_apart_by_signature(root):
    rc, rk = root
    other_k = pki.generate_key("ecdsa-p256")
    other = pki.build_root_cert(other_k, now=NOW)
    assert other.subject == rc.subject
    ic = pki.build_intermediate_cert(pki.generate_key("ecdsa-p256"), "c", rc, rk, now=NOW)
    assert pki.is_issued_by(ic, rc) and not pki.is_issued_by(ic, other)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")
def test_fingerprint_matches_openssl(root, tmp_path):
    rc, _k = root
    p = tmp_path / "c.pem"
    p.write_bytes(pki.cert_pem(rc))
    out = subprocess.run(["openssl", "x509", "-in", str(p), "-noout", "-fingerprint", "-sha256"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip().split("=", 1)[1] == pki.fingerprint(rc)


def test_describe_cert_has_no_key_material(root):
    rc, rk = root
    d = pki.describe_cert(rc)
    assert set(d) == {"subject", "issuer", "serial", "fingerprint_sha256", "not_before", "not_after",
                      "key_type"}
    assert d["not_before"] == "2030-06-01T11:55:00Z"
    assert "PRIVATE" not in repr(d)


@pytest.mark.parametrize("name", ["a", "cluster-1", "0abc", "a" * 63])
def test_valid_cluster_names(name):
    pki.validate_cluster_name(name)


@pytest.mark.parametrize("name", ["A", "a_b", "a.b", "-a", "a-", "a" * 64, "", None, 5, "root"])
def test_invalid_cluster_names(name):
    with pytest.raises(MeshfleetError):
        pki.validate_cluster_name(name)


# --- check_ca_pair ------------------------------------------------------------------------
def _self_signed(key, bc=True, pathlen=None, ku=True, days=30, now=NOW):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=60))
         .not_valid_after(now + datetime.timedelta(days=days)))
    if bc is not None:
        b = b.add_extension(x509.BasicConstraints(ca=bc, path_length=pathlen if bc else None),
                            critical=True)
    if ku is not None:
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, ku, True, False, False),
                            critical=True)
    algo = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return b.sign(key, algo)


def test_check_ca_pair_accepts_a_ca(root):
    rc, rk = root
    pki.check_ca_pair(rc, rk, "x", now=NOW)


@pytest.mark.parametrize("kwargs, other_key, message", [
    (dict(), True, "do not match"),
    (dict(bc=False), False, "not a CA"),
    (dict(bc=None), False, "not a CA"),
    (dict(pathlen=0), False, "pathlen:0"),
    (dict(ku=False), False, "keyCertSign"),
    (dict(days=-1), False, "expired"),
])
def test_check_ca_pair_rejects(kwargs, other_key, message):
    k = pki.generate_key("ecdsa-p256")
    c = _self_signed(k, **kwargs)
    with pytest.raises(MeshfleetError, match=message):
        pki.check_ca_pair(c, pki.generate_key("ecdsa-p256") if other_key else k, "import", now=NOW)


def test_check_ca_pair_rejects_unsupported_key_type():
    k = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(MeshfleetError, match="unsupported key type"):
        pki.check_ca_pair(_self_signed(k), k, "import", now=NOW)


def test_load_key_file_errors_do_not_echo_the_file(tmp_path):
    p = tmp_path / "k.pem"
    p.write_text("-----BEGIN PRIVATE KEY-----\nTOTALLYSECRETBYTES\n-----END PRIVATE KEY-----\n")
    with pytest.raises(MeshfleetError) as e:
        pki.load_key_file(str(p))
    assert "TOTALLYSECRETBYTES" not in e.value.msg
    with pytest.raises(MeshfleetError, match="cannot read"):
        pki.load_key_file(str(tmp_path / "missing.pem"))


def test_load_key_file_wrong_passphrase(tmp_path):
    k = pki.generate_key("ecdsa-p256")
    p = tmp_path / "k.pem"
    p.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"right")))
    with pytest.raises(MeshfleetError, match="passphrase is wrong"):
        pki.load_key_file(str(p), "wrong")
    assert pki.key_pem(pki.load_key_file(str(p), "right")) == pki.key_pem(k)
    unenc = tmp_path / "u.pem"
    unenc.write_bytes(pki.key_pem(k))
    # a passphrase meant for the other root key does not stop an unencrypted one from loading
    assert pki.key_pem(pki.load_key_file(str(unenc), "right")) == pki.key_pem(k)


# --- the engine -----------------------------------------------------------------------------
def test_engine_check_mode_plans_without_generating(tmp_path):
    eng = pki.MeshCA(str(tmp_path / "s"), ["a", "b"], now=NOW)
    result, diff, dummy = eng.plan()
    assert result["changed"] and not os.path.exists(str(tmp_path / "s"))
    assert result["clusters"]["a"]["not_after"] == "2032-05-31T12:00:00Z"
    assert result["clusters"]["a"]["not_before"] == "2030-06-01T11:55:00Z"
    assert diff["after"]["clusters"]["b"]["subject"] == "L=b,CN=Intermediate CA,O=Istio"


def test_engine_warns_when_root_expires_soon(tmp_path):
    warned = []
    state = str(tmp_path / "s")
    opts = dict(root_days=40, intermediate_days=35, renew_before_days=30)
    pki.MeshCA(state, ["a"], now=NOW, **opts).apply()
    later = NOW + datetime.timedelta(days=20)
    result, _ = pki.MeshCA(state, ["a"], now=later, warn=warned.append, **opts).apply()
    # 15 days left: re-issued, but the new one cannot outlive the root
    assert result["clusters"]["a"]["status"] == "reissued"
    assert result["clusters"]["a"]["not_after"] == result["root"]["not_after"]
    assert any("root CA expires" in w for w in warned)
    # the next run does not re-issue again and again: it says the root is the problem
    warned[:] = []
    result, _ = pki.MeshCA(state, ["a"], now=later + datetime.timedelta(days=1),
                           warn=warned.append, **opts).apply()
    assert result["changed"] is False
    assert any("together with the root" in w for w in warned)


def test_engine_validation_messages(tmp_path):
    cases = [
        (dict(key_type="dsa"), "unknown key_type"),
        (dict(root_rotation="later"), "unknown root_rotation"),
        (dict(root_days=0), "root_days must be at least 1"),
        (dict(backdate_minutes=-1), "cannot be negative"),
        (dict(root_cert_file="/x"), "must be given together"),
        (dict(force_reissue=["zz"]), "not in clusters"),
    ]
    for kwargs, msg in cases:
        with pytest.raises(MeshfleetError, match=msg):
            pki.MeshCA(str(tmp_path / "s"), ["a"], **kwargs).apply()
    assert not os.path.exists(str(tmp_path / "s"))


def test_engine_extra_file_in_cluster_folder_is_reported(tmp_path):
    warned = []
    state = str(tmp_path / "s")
    pki.MeshCA(state, ["a"]).apply()
    with open(os.path.join(state, "pki", "a", "root-key.pem"), "w") as f:
        f.write("oops")
    pki.MeshCA(state, ["a"], warn=warned.append).apply()
    assert any("root-key.pem" in w and "other than the four" in w for w in warned)


def test_engine_interrupted_root_write_is_reported(tmp_path):
    state = str(tmp_path / "s")
    pki.MeshCA(state, ["a"]).apply()
    with open(os.path.join(state, "pki", "root", "root-key.pem"), "wb") as f:
        f.write(pki.key_pem(pki.generate_key("ecdsa-p256")))
    with pytest.raises(MeshfleetError, match="does not match"):
        pki.MeshCA(state, ["a"]).apply()


def test_engine_100_ecdsa_clusters_under_5_seconds(tmp_path):
    clusters = ["cluster-%03d" % i for i in range(100)]
    t0 = time.perf_counter()
    result, _ = pki.MeshCA(str(tmp_path / "s"), clusters).apply()
    elapsed = time.perf_counter() - t0
    assert result["summary"]["issued"] == 100
    assert elapsed <= 5.0, "issuing 100 ECDSA intermediates took %.2fs" % elapsed
    t0 = time.perf_counter()
    again, _ = pki.MeshCA(str(tmp_path / "s"), clusters).apply()
    assert again["changed"] is False
    assert time.perf_counter() - t0 <= 5.0
