# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""meshfleet.mesh.mesh_ca, run as Ansible runs it (main() with module args, JSON on stdout)."""

from __future__ import absolute_import, division, print_function

import datetime
import json
import os
import shutil
import stat
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from ansible_collections.meshfleet.mesh.plugins.module_utils import pki
from ansible_collections.meshfleet.mesh.plugins.modules import mesh_ca

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl binary not installed")
FOUR = sorted(pki.CLUSTER_FILES)


# --- helpers -------------------------------------------------------------------------
@pytest.fixture
def state(tmp_path):
    return str(tmp_path / "state")


@pytest.fixture
def ca(run_module, state, monkeypatch):
    """``ca(**args)`` runs the module with ``state_dir`` preset.

    Warnings the module raises are also recorded in ``result["_warned"]``: where a module's
    warnings end up depends on process-wide state in ansible-core 2.19 (a test that loaded
    controller code earlier routes them to Display instead of the JSON result).
    """
    real_warn = mesh_ca.MeshCAModule.warn

    def _ca(check_mode=False, diff=False, **args):
        warned = []

        def warn(self, msg):
            warned.append(msg)
            real_warn(self, msg)
        monkeypatch.setattr(mesh_ca.MeshCAModule, "warn", warn)
        args.setdefault("state_dir", state)
        result = run_module(mesh_ca, args, check_mode=check_mode, diff=diff)
        result["_warned"] = warned
        return result

    return _ca


def ok(result):
    assert not result.get("failed"), result.get("msg")
    assert result["rc"] == 0
    return result


def failed(result):
    assert result.get("failed") is True, result
    assert result["rc"] == 1
    assert "PRIVATE KEY" not in result["_stdout"]
    return result["msg"]


def warnings(result):
    """Warning texts the module raised during the run."""
    return list(result["_warned"])


def cdir(state, cluster):
    return os.path.join(state, "pki", cluster)


def rdir(state):
    return os.path.join(state, "pki", "root")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def certs(path):
    return x509.load_pem_x509_certificates(read(path))


def cert(path):
    return certs(path)[0]


def key(path):
    return serialization.load_pem_private_key(read(path), password=None)


def snapshot(top):
    """path -> (mode, mtime_ns, content) for everything under ``top``."""
    snap = {}
    if not os.path.exists(top):
        return snap
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.stat(p)
            snap[p] = (stat.S_IMODE(st.st_mode), st.st_mtime_ns,
                       read(p) if os.path.isfile(p) else None)
    return snap


def make_leaf(issuer_cert, issuer_key, spiffe="spiffe://cluster.local/ns/default/sa/default",
              now=None):
    """A workload certificate as istiod would sign it with the plug-in CA."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    k = ec.generate_private_key(ec.SECP256R1())
    ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(issuer_cert.subject)
            .public_key(k.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=24))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe)]),
                           critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                           critical=False)
            .sign(issuer_key, hashes.SHA256()))


def leaf_for(state, cluster):
    d = cdir(state, cluster)
    return make_leaf(cert(os.path.join(d, "ca-cert.pem")), key(os.path.join(d, "ca-key.pem")))


def crypto_verify(leaf, bundle_path, intermediates):
    """Verify leaf -> intermediates -> one of the roots in ``bundle_path`` with cryptography."""
    verifier = PolicyBuilder().store(Store(certs(bundle_path))).build_client_verifier()
    return verifier.verify(leaf, intermediates)


def openssl_verify(cafile, target, untrusted=None):
    cmd = [OPENSSL, "verify", "-CAfile", cafile]
    if untrusted:
        cmd += ["-untrusted", untrusted]
    cmd.append(target)
    return subprocess.run(cmd, capture_output=True, text=True)


def write_pem(path, obj):
    data = obj.public_bytes(serialization.Encoding.PEM) if isinstance(obj, x509.Certificate) \
        else obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def external_root(tmp_path, name="ext", key_type="ecdsa-p256", ca=True, pathlen=None, org="Corp"):
    """An 'existing' root CA on disk, as a user would import it."""
    k = pki.generate_key(key_type)
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                         x509.NameAttribute(NameOID.COMMON_NAME, "%s root" % name)])
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
         .public_key(k.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1))
         .not_valid_after(now + datetime.timedelta(days=3000))
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(k.public_key()), critical=False))
    if ca is not None:
        b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=pathlen if ca else None),
                            critical=True)
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                            critical=True)
    c = b.sign(k, hashes.SHA256())
    return (write_pem(tmp_path / ("%s-cert.pem" % name), c),
            write_pem(tmp_path / ("%s-key.pem" % name), k), c, k)


# --- first run --------------------------------------------------------------------------
@pytest.mark.parametrize("clusters", [["cluster1"], ["cluster1", "cluster2", "east-1"]])
def test_first_run_issues_root_and_one_intermediate_per_cluster(ca, state, clusters):
    r = ok(ca(clusters=clusters))
    assert r["changed"] is True
    assert r["root"]["status"] == "created"
    assert r["root"]["cert"] == os.path.join(rdir(state), "root-cert.pem")
    assert sorted(os.listdir(rdir(state))) == ["root-cert.pem", "root-key.pem"]
    assert sorted(r["clusters"]) == sorted(clusters)
    assert r["summary"]["issued"] == len(clusters)
    root_fp = pki.fingerprint(cert(os.path.join(rdir(state), "root-cert.pem")))
    assert r["root"]["fingerprint_sha256"] == root_fp
    assert r["trust_bundle"] == [root_fp]
    for c in clusters:
        info = r["clusters"][c]
        assert (info["status"], info["reason"]) == ("issued", "missing")
        assert sorted(os.listdir(cdir(state, c))) == FOUR  # exactly what Istio needs
        assert info["files"]["ca_cert"] == os.path.join(cdir(state, c), "ca-cert.pem")
        ic = cert(info["files"]["ca_cert"])
        assert info["fingerprint_sha256"] == pki.fingerprint(ic)
        assert info["not_after"] == ic.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert info["subject"] == "L=%s,CN=Intermediate CA,O=Istio" % c
        # root-cert.pem is the root; cert-chain.pem is intermediate then root
        assert read(os.path.join(cdir(state, c), "root-cert.pem")) == \
            read(os.path.join(rdir(state), "root-cert.pem"))
        assert read(os.path.join(cdir(state, c), "cert-chain.pem")) == \
            read(info["files"]["ca_cert"]) + read(os.path.join(rdir(state), "root-cert.pem"))
        # each cluster has its own key
        assert pki.key_matches_cert(key(info["files"]["ca_key"]), ic)
    fps = {r["clusters"][c]["fingerprint_sha256"] for c in clusters}
    assert len(fps) == len(clusters)


def test_file_and_directory_modes(ca, state):
    ok(ca(clusters=["c1", "c2"]))
    for d in (os.path.join(state, "pki"), rdir(state), cdir(state, "c1"), cdir(state, "c2")):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700, d
    assert stat.S_IMODE(os.stat(os.path.join(rdir(state), "root-key.pem")).st_mode) == 0o600
    for c in ("c1", "c2"):
        assert stat.S_IMODE(os.stat(os.path.join(cdir(state, c), "ca-key.pem")).st_mode) == 0o600
        for f in ("ca-cert.pem", "root-cert.pem", "cert-chain.pem"):
            assert stat.S_IMODE(os.stat(os.path.join(cdir(state, c), f)).st_mode) in (0o644, 0o600)


def test_existing_state_dir_keeps_its_mode(ca, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(str(shared), 0o755)
    ok(ca(state_dir=str(shared), clusters=["c1"]))
    assert stat.S_IMODE(os.stat(str(shared)).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(str(shared / "pki")).st_mode) == 0o700


def test_chain_verifies_with_cryptography(ca, state):
    ok(ca(clusters=["c1", "c2"]))
    root = cert(os.path.join(rdir(state), "root-cert.pem"))
    for c in ("c1", "c2"):
        d = cdir(state, c)
        ic = cert(os.path.join(d, "ca-cert.pem"))
        ic.verify_directly_issued_by(root)
        root.verify_directly_issued_by(root)
        chain = certs(os.path.join(d, "cert-chain.pem"))
        assert [pki.fingerprint(x) for x in chain] == [pki.fingerprint(ic), pki.fingerprint(root)]
        verified = crypto_verify(leaf_for(state, c), os.path.join(d, "root-cert.pem"), [ic])
        assert [pki.fingerprint(x) for x in verified.chain[1:]] == \
            [pki.fingerprint(ic), pki.fingerprint(root)]
    # a workload of c1 does not verify under c2's intermediate key
    other = make_leaf(cert(os.path.join(cdir(state, "c1"), "ca-cert.pem")),
                      key(os.path.join(cdir(state, "c2"), "ca-key.pem")))
    with pytest.raises(VerificationError):
        crypto_verify(other, os.path.join(cdir(state, "c1"), "root-cert.pem"),
                      [cert(os.path.join(cdir(state, "c1"), "ca-cert.pem"))])


@needs_openssl
def test_chain_verifies_with_openssl(ca, state, tmp_path):
    ok(ca(clusters=["c1"]))
    d = cdir(state, "c1")
    res = openssl_verify(os.path.join(d, "root-cert.pem"), os.path.join(d, "ca-cert.pem"))
    assert res.returncode == 0 and ": OK" in res.stdout, res.stderr
    leaf = write_pem(tmp_path / "leaf.pem", leaf_for(state, "c1"))
    res = openssl_verify(os.path.join(d, "root-cert.pem"), leaf,
                         untrusted=os.path.join(d, "cert-chain.pem"))
    assert res.returncode == 0, res.stdout + res.stderr
    res = openssl_verify(os.path.join(d, "root-cert.pem"), leaf,
                         untrusted=os.path.join(d, "ca-cert.pem"))
    assert res.returncode == 0, res.stdout + res.stderr
    # and it really checks: without the intermediate the leaf does not verify
    res = openssl_verify(os.path.join(d, "root-cert.pem"), leaf)
    assert res.returncode != 0


@pytest.mark.parametrize("backdate", [None, 0, 60])
def test_intermediate_profile(ca, state, backdate):
    args = dict(clusters=["eu-west"], intermediate_days=400)
    if backdate is not None:
        args["backdate_minutes"] = backdate
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    ok(ca(**args))
    after = datetime.datetime.now(datetime.timezone.utc)
    ic = cert(os.path.join(cdir(state, "eu-west"), "ca-cert.pem"))
    root = cert(os.path.join(rdir(state), "root-cert.pem"))
    ext = ic.extensions
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is True and bc.value.path_length == 0
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and ku.value.digital_signature
    assert not ku.value.key_encipherment
    san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["istiod.istio-system.svc"]
    assert ic.subject.get_attributes_for_oid(NameOID.LOCALITY_NAME)[0].value == "eu-west"
    assert ic.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Istio"
    assert ic.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Intermediate CA"
    assert ic.issuer == root.subject
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski.digest == x509.SubjectKeyIdentifier.from_public_key(ic.public_key()).digest
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == \
        root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    minutes = 5 if backdate is None else backdate
    nb = ic.not_valid_before_utc
    assert before - datetime.timedelta(minutes=minutes, seconds=1) <= nb <= \
        after - datetime.timedelta(minutes=minutes)
    lifetime = ic.not_valid_after_utc - nb
    assert abs(lifetime - datetime.timedelta(days=400, minutes=minutes)) < datetime.timedelta(seconds=5)
    assert isinstance(ic.public_key(), ec.EllipticCurvePublicKey)
    assert ic.public_key().curve.name == "secp256r1"


def test_root_profile(ca, state):
    r = ok(ca(clusters=["c1"]))
    root = cert(os.path.join(rdir(state), "root-cert.pem"))
    bc = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length in (None, 1)
    ku = root.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert root.subject.rfc4514_string() == "CN=Root CA,O=Istio"
    assert root.issuer == root.subject
    root.verify_directly_issued_by(root)
    days = (root.not_valid_after_utc - root.not_valid_before_utc).days
    assert days == 3650  # 3650 days + 5 minutes of backdating
    assert r["root"]["key_type"] == "ecdsa-p256"


def test_organization_option(ca, state):
    ok(ca(clusters=["c1"], organization="Acme Mesh"))
    assert cert(os.path.join(rdir(state), "root-cert.pem")).subject.rfc4514_string() == \
        "CN=Root CA,O=Acme Mesh"
    assert cert(os.path.join(cdir(state, "c1"), "ca-cert.pem")).subject.rfc4514_string() == \
        "L=c1,CN=Intermediate CA,O=Acme Mesh"
    r = ok(ca(clusters=["c1"], organization="Other"))
    assert (r["clusters"]["c1"]["status"], r["clusters"]["c1"]["reason"]) == \
        ("reissued", "subject changed")


# --- idempotence, check mode, diff ------------------------------------------------------
def test_rerun_changes_nothing(ca, state):
    ok(ca(clusters=["c1", "c2", "c3"]))
    snap = snapshot(state)
    r = ok(ca(clusters=["c1", "c2", "c3"]))
    assert r["changed"] is False
    assert r["root"]["status"] == "unchanged"
    assert {c["status"] for c in r["clusters"].values()} == {"unchanged"}
    assert all(c["reason"] is None for c in r["clusters"].values())
    assert snapshot(state) == snap  # same bytes, same modes, same mtimes
    r = ok(ca(clusters=["c1", "c2", "c3"], check_mode=True, diff=True))
    assert r["changed"] is False and "diff" not in r


def test_check_mode_on_empty_state_writes_nothing(ca, state):
    r = ok(ca(clusters=["c1", "c2"], check_mode=True, diff=True))
    assert r["changed"] is True
    assert r["root"]["status"] == "created"
    assert {c["status"] for c in r["clusters"].values()} == {"issued"}
    assert r["clusters"]["c1"]["fingerprint_sha256"] is None  # nothing was generated
    assert r["root"]["fingerprint_sha256"] is None  # an in-memory root is not the real one
    assert r["trust_bundle"] == [None]
    assert r["clusters"]["c1"]["subject"] == "L=c1,CN=Intermediate CA,O=Istio"
    assert not os.path.exists(state)
    assert r["diff"]["after"]["clusters"]["c1"]["reason"] == "missing"


def test_check_mode_on_existing_state_writes_nothing(ca, state):
    ok(ca(clusters=["c1", "c2"]))
    os.unlink(os.path.join(cdir(state, "c1"), "ca-cert.pem"))
    snap = snapshot(state)
    for args in (dict(clusters=["c1", "c2", "c3"]),
                 dict(clusters=["c1", "c2"], root_rotation="introduce"),
                 dict(clusters=["c1", "c2"], force_reissue=["c2"]),
                 dict(clusters=["c2"], state="absent")):
        r = ok(ca(check_mode=True, diff=True, **args))
        assert r["changed"] is True, args
        assert snapshot(state) == snap, args
        assert "PRIVATE KEY" not in r["_stdout"]
        if args.get("root_rotation") == "introduce":
            assert r["root"]["status"] == "unchanged" and r["next_root"]["status"] == "introduced"
            assert r["trust_bundle"][0] is not None and r["trust_bundle"][1] is None
    r = ok(ca(clusters=["c1", "c2", "c3"], check_mode=True))
    assert r["clusters"]["c1"]["status"] == "reissued"
    assert r["clusters"]["c2"]["status"] == "unchanged"
    assert r["clusters"]["c3"]["status"] == "issued"


def test_diff_shows_what_is_issued_and_no_key_material(ca, state):
    r = ok(ca(clusters=["c1", "c2"], diff=True))
    dump = r["_stdout"]
    assert "PRIVATE KEY" not in dump and "BEGIN" not in dump
    after = r["diff"]["after"]
    assert r["diff"]["before"]["root"] is None
    assert after["root"]["fingerprint_sha256"] == r["root"]["fingerprint_sha256"]
    for c in ("c1", "c2"):
        a = after["clusters"][c]
        assert a["subject"] == "L=%s,CN=Intermediate CA,O=Istio" % c
        assert a["fingerprint_sha256"] == r["clusters"][c]["fingerprint_sha256"]
        assert a["not_after"] and a["reason"] == "missing"
        assert r["diff"]["before"]["clusters"][c] is None
    os.unlink(os.path.join(cdir(state, "c2"), "ca-key.pem"))
    r = ok(ca(clusters=["c1", "c2"], diff=True))
    assert set(r["diff"]["after"]["clusters"]) == {"c2"}  # only what changes
    assert r["diff"]["before"]["clusters"]["c2"]["fingerprint_sha256"] != \
        r["diff"]["after"]["clusters"]["c2"]["fingerprint_sha256"]
    assert "PRIVATE KEY" not in r["_stdout"]
    # no key bytes of any kind in the output
    for p in (os.path.join(rdir(state), "root-key.pem"), os.path.join(cdir(state, "c2"), "ca-key.pem")):
        body = b"".join(read(p).splitlines()[1:-1]).decode()
        assert body[:40] not in r["_stdout"]


# --- re-issue triggers ------------------------------------------------------------------
def _delete_cert(state, tmp_path):
    os.unlink(os.path.join(cdir(state, "c1"), "ca-cert.pem"))


def _delete_key(state, tmp_path):
    os.unlink(os.path.join(cdir(state, "c1"), "ca-key.pem"))


def _swap_key_new(state, tmp_path):
    write_pem(os.path.join(cdir(state, "c1"), "ca-key.pem"), ec.generate_private_key(ec.SECP256R1()))


def _swap_key_other_cluster(state, tmp_path):
    shutil.copy(os.path.join(cdir(state, "c2"), "ca-key.pem"), os.path.join(cdir(state, "c1"), "ca-key.pem"))


def _foreign_root(state, tmp_path):
    """c1 holds an intermediate (and key) from another mesh's root."""
    rk = pki.generate_key("ecdsa-p256")
    rc = pki.build_root_cert(rk)  # same subject as ours: only the signature differs
    ik = pki.generate_key("ecdsa-p256")
    ic = pki.build_intermediate_cert(ik, "c1", rc, rk)
    write_pem(os.path.join(cdir(state, "c1"), "ca-cert.pem"), ic)
    write_pem(os.path.join(cdir(state, "c1"), "ca-key.pem"), ik)


def _garbage_cert(state, tmp_path):
    with open(os.path.join(cdir(state, "c1"), "ca-cert.pem"), "w") as f:
        f.write("not a certificate\n")


@pytest.mark.parametrize("damage, reason", [
    (_delete_cert, "missing"),
    (_delete_key, "missing"),
    (_swap_key_new, "key mismatch"),
    (_swap_key_other_cluster, "key mismatch"),
    (_foreign_root, "not signed by current root"),
    (_garbage_cert, "invalid certificate"),
], ids=["cert-deleted", "key-deleted", "key-swapped", "key-of-other-cluster", "other-root",
        "garbage-cert"])
def test_reissue_when_damaged(ca, state, tmp_path, damage, reason):
    first = ok(ca(clusters=["c1", "c2"]))
    c2_before = snapshot(cdir(state, "c2"))
    damage(state, tmp_path)
    r = ok(ca(clusters=["c1", "c2"]))
    assert r["changed"] is True
    assert (r["clusters"]["c1"]["status"], r["clusters"]["c1"]["reason"]) == ("reissued", reason)
    assert r["clusters"]["c1"]["fingerprint_sha256"] != first["clusters"]["c1"]["fingerprint_sha256"]
    assert r["clusters"]["c2"]["status"] == "unchanged"
    assert snapshot(cdir(state, "c2")) == c2_before
    assert r["root"]["fingerprint_sha256"] == first["root"]["fingerprint_sha256"]
    d = cdir(state, "c1")
    ic = cert(os.path.join(d, "ca-cert.pem"))
    assert pki.key_matches_cert(key(os.path.join(d, "ca-key.pem")), ic)
    crypto_verify(leaf_for(state, "c1"), os.path.join(d, "root-cert.pem"), [ic])
    assert ok(ca(clusters=["c1", "c2"]))["changed"] is False


def test_whole_cluster_folder_deleted_is_issued_again(ca, state):
    ok(ca(clusters=["c1"]))
    shutil.rmtree(cdir(state, "c1"))
    r = ok(ca(clusters=["c1"]))
    assert (r["clusters"]["c1"]["status"], r["clusters"]["c1"]["reason"]) == ("issued", "missing")


def _travel(monkeypatch, days):
    real = pki.utcnow

    def later():
        return real() + datetime.timedelta(days=days)
    monkeypatch.setattr(pki, "utcnow", later)


@pytest.mark.parametrize("days_later, renew_before, expected", [
    (0, 30, "unchanged"),
    (698, 30, "unchanged"),   # 32 days left
    (701, 30, "reissued"),    # 29 days left
    (660, 30, "unchanged"),
    (660, 80, "reissued"),    # threshold raised: 70 days left < 80
])
def test_reissue_when_expiring(ca, state, monkeypatch, days_later, renew_before, expected):
    first = ok(ca(clusters=["c1", "c2"]))
    _travel(monkeypatch, days_later)
    r = ok(ca(clusters=["c1", "c2"], renew_before_days=renew_before))
    for c in ("c1", "c2"):
        assert r["clusters"][c]["status"] == expected
        if expected == "reissued":
            assert r["clusters"][c]["reason"] == "expiring"
            new_after = datetime.datetime.strptime(r["clusters"][c]["not_after"], "%Y-%m-%dT%H:%M:%SZ")
            old_after = datetime.datetime.strptime(first["clusters"][c]["not_after"], "%Y-%m-%dT%H:%M:%SZ")
            assert (new_after - old_after).days == days_later
    assert r["changed"] is (expected == "reissued")
    # and the next run at the same moment is quiet again
    assert ok(ca(clusters=["c1", "c2"], renew_before_days=renew_before))["changed"] is False


def test_tiny_lifetime_is_reissued(ca, state):
    ok(ca(clusters=["c1"], intermediate_days=2, renew_before_days=1))
    assert ok(ca(clusters=["c1"], intermediate_days=2, renew_before_days=1))["changed"] is False
    r = ok(ca(clusters=["c1"], intermediate_days=5, renew_before_days=3))
    assert (r["clusters"]["c1"]["status"], r["clusters"]["c1"]["reason"]) == ("reissued", "expiring")


def test_intermediate_lifetime_must_exceed_threshold(ca, state):
    msg = failed(ca(clusters=["c1"], intermediate_days=30, renew_before_days=30))
    assert "intermediate_days" in msg and "renew_before_days" in msg
    assert not os.path.exists(state)


@pytest.mark.parametrize("key,value", [("root_days", 99999999), ("intermediate_days", 4000000),
                                       ("renew_before_days", 0), ("backdate_minutes", -1)])
def test_lifetimes_out_of_range_fail_naming_the_key(ca, state, key, value):
    """Far-future lifetimes crashed with OverflowError naming no key."""
    msg = failed(ca(clusters=["c1"], **{key: value}))
    assert msg.startswith("%s: %d is out of range" % (key, value)), msg
    assert not os.path.exists(state)


def test_intermediate_never_outlives_root(ca, state):
    r = ok(ca(clusters=["c1"], root_days=100, intermediate_days=365))
    assert r["clusters"]["c1"]["not_after"] == r["root"]["not_after"]
    assert ok(ca(clusters=["c1"], root_days=100, intermediate_days=365))["changed"] is False


def test_force_reissue_only_named_clusters(ca, state):
    first = ok(ca(clusters=["c1", "c2"]))
    r = ok(ca(clusters=["c1", "c2"], force_reissue=["c2"]))
    assert (r["clusters"]["c2"]["status"], r["clusters"]["c2"]["reason"]) == ("reissued", "forced")
    assert r["clusters"]["c1"]["status"] == "unchanged"
    assert r["clusters"]["c2"]["fingerprint_sha256"] != first["clusters"]["c2"]["fingerprint_sha256"]
    assert r["root"]["fingerprint_sha256"] == first["root"]["fingerprint_sha256"]
    assert "not in clusters" in failed(ca(clusters=["c1"], force_reissue=["c9"]))


def test_stale_chain_file_is_rewritten_without_reissue(ca, state):
    first = ok(ca(clusters=["c1"]))
    os.unlink(os.path.join(cdir(state, "c1"), "cert-chain.pem"))
    with open(os.path.join(cdir(state, "c1"), "root-cert.pem"), "w") as f:
        f.write("")
    r = ok(ca(clusters=["c1"]))
    c1 = r["clusters"]["c1"]
    assert c1["status"] == "updated"
    assert c1["reason"] == "root bundle changed, cert chain changed"
    assert c1["fingerprint_sha256"] == first["clusters"]["c1"]["fingerprint_sha256"]
    assert sorted(os.listdir(cdir(state, "c1"))) == FOUR
    assert ok(ca(clusters=["c1"]))["changed"] is False


# --- key types --------------------------------------------------------------------------
@pytest.mark.parametrize("key_type, size", [("rsa-2048", 2048), ("rsa-4096", 4096)])
def test_rsa_key_types(ca, state, tmp_path, key_type, size):
    r = ok(ca(clusters=["c1", "c2"], key_type=key_type))
    assert r["root"]["key_type"] == key_type
    for c in ("c1", "c2"):
        assert r["clusters"][c]["key_type"] == key_type
        k = key(os.path.join(cdir(state, c), "ca-key.pem"))
        assert isinstance(k, rsa.RSAPrivateKey) and k.key_size == size
        ic = cert(os.path.join(cdir(state, c), "ca-cert.pem"))
        assert ic.signature_hash_algorithm.name == "sha256"
        crypto_verify(leaf_for(state, c), os.path.join(cdir(state, c), "root-cert.pem"), [ic])
        if OPENSSL:
            leaf = write_pem(tmp_path / ("leaf-%s.pem" % c), leaf_for(state, c))
            res = openssl_verify(os.path.join(cdir(state, c), "root-cert.pem"), leaf,
                                 untrusted=os.path.join(cdir(state, c), "cert-chain.pem"))
            assert res.returncode == 0, res.stderr
    assert ok(ca(clusters=["c1", "c2"], key_type=key_type))["changed"] is False


def test_key_type_change_reissues_intermediates_not_root(ca, state):
    first = ok(ca(clusters=["c1"]))
    r = ok(ca(clusters=["c1"], key_type="rsa-2048"))
    assert (r["clusters"]["c1"]["status"], r["clusters"]["c1"]["reason"]) == \
        ("reissued", "key type changed")
    assert r["clusters"]["c1"]["key_type"] == "rsa-2048"
    assert r["root"]["fingerprint_sha256"] == first["root"]["fingerprint_sha256"]
    assert r["root"]["key_type"] == "ecdsa-p256"


# --- import -----------------------------------------------------------------------------
@pytest.mark.parametrize("key_type", ["ecdsa-p256", "rsa-2048"])
def test_import_existing_root(ca, state, tmp_path, key_type):
    cert_file, key_file, rc, rk = external_root(tmp_path, key_type=key_type)
    r = ok(ca(clusters=["c1"], root_cert_file=cert_file, root_key_file=key_file))
    assert r["root"]["status"] == "imported"
    assert r["root"]["fingerprint_sha256"] == pki.fingerprint(rc)
    assert read(os.path.join(rdir(state), "root-cert.pem")) == read(cert_file)
    assert read(os.path.join(rdir(state), "root-key.pem")) == read(key_file)
    assert stat.S_IMODE(os.stat(os.path.join(rdir(state), "root-key.pem")).st_mode) == 0o600
    ic = cert(os.path.join(cdir(state, "c1"), "ca-cert.pem"))
    ic.verify_directly_issued_by(rc)
    assert ic.issuer == rc.subject
    crypto_verify(leaf_for(state, "c1"), os.path.join(cdir(state, "c1"), "root-cert.pem"), [ic])
    # re-run with the same import options, and without them: nothing changes
    assert ok(ca(clusters=["c1"], root_cert_file=cert_file, root_key_file=key_file))["changed"] is False
    assert ok(ca(clusters=["c1"]))["changed"] is False


def test_import_encrypted_key(ca, state, tmp_path):
    cert_file, _key_file, rc, rk = external_root(tmp_path)
    enc = tmp_path / "enc-key.pem"
    enc.write_bytes(rk.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.BestAvailableEncryption(b"s3cret-Passphrase")))
    msg = failed(ca(clusters=["c1"], root_cert_file=cert_file, root_key_file=str(enc)))
    assert "encrypted" in msg and "root_key_passphrase" in msg
    r = ok(ca(clusters=["c1"], root_cert_file=cert_file, root_key_file=str(enc),
              root_key_passphrase="s3cret-Passphrase"))
    assert r["root"]["status"] == "imported"
    assert "s3cret-Passphrase" not in r["_stdout"]  # no_log
    # the stored key stays encrypted; later runs need the passphrase
    assert b"ENCRYPTED" in read(os.path.join(rdir(state), "root-key.pem"))
    assert ok(ca(clusters=["c1"], root_key_passphrase="s3cret-Passphrase"))["changed"] is False
    assert "encrypted" in failed(ca(clusters=["c1"]))
    # a new root made during a rotation is stored encrypted with the same passphrase
    r = ok(ca(clusters=["c1"], root_key_passphrase="s3cret-Passphrase", root_rotation="introduce"))
    assert r["rotation"]["window_open"] and "s3cret-Passphrase" not in r["_stdout"]
    new_key = read(os.path.join(rdir(state), "next-root-key.pem"))
    assert b"ENCRYPTED" in new_key
    serialization.load_pem_private_key(new_key, password=b"s3cret-Passphrase")
    assert ok(ca(clusters=["c1"], root_key_passphrase="s3cret-Passphrase",
                 root_rotation="switch"))["rotation"]["action"] == "switched"
    assert read(os.path.join(rdir(state), "root-key.pem")) == new_key
    assert read(os.path.join(rdir(state), "previous-root-key.pem")) == enc.read_bytes()
    assert ok(ca(clusters=["c1"], root_key_passphrase="s3cret-Passphrase"))["changed"] is False


def test_passphrase_with_unencrypted_root_encrypts_new_roots_only(ca, state):
    ok(ca(clusters=["c1"]))
    assert ok(ca(clusters=["c1"], root_key_passphrase="pw-1234"))["changed"] is False
    ok(ca(clusters=["c1"], root_key_passphrase="pw-1234", root_rotation="introduce"))
    assert b"ENCRYPTED" in read(os.path.join(rdir(state), "next-root-key.pem"))
    assert b"ENCRYPTED" not in read(os.path.join(rdir(state), "root-key.pem"))
    ok(ca(clusters=["c1"], root_key_passphrase="pw-1234", root_rotation="switch"))
    assert b"ENCRYPTED" in read(os.path.join(rdir(state), "root-key.pem"))
    assert b"ENCRYPTED" not in read(os.path.join(rdir(state), "previous-root-key.pem"))


def test_import_errors(ca, state, tmp_path):
    cert_a, key_a, _c, _k = external_root(tmp_path, "a")
    cert_b, key_b, _c, _k = external_root(tmp_path, "b")
    assert "do not match" in failed(ca(clusters=["c1"], root_cert_file=cert_a, root_key_file=key_b))
    cert_n, key_n, _c, _k = external_root(tmp_path, "leafish", ca=False)
    assert "not a CA" in failed(ca(clusters=["c1"], root_cert_file=cert_n, root_key_file=key_n))
    cert_x, key_x, _c, _k = external_root(tmp_path, "nobc", ca=None)
    assert "not a CA" in failed(ca(clusters=["c1"], root_cert_file=cert_x, root_key_file=key_x))
    cert_p, key_p, _c, _k = external_root(tmp_path, "pl0", pathlen=0)
    assert "pathlen:0" in failed(ca(clusters=["c1"], root_cert_file=cert_p, root_key_file=key_p))
    missing = str(tmp_path / "nope.pem")
    msg = failed(ca(clusters=["c1"], root_cert_file=missing, root_key_file=key_a))
    assert "cannot read" in msg and missing in msg
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    assert "not a PEM certificate" in failed(ca(clusters=["c1"], root_cert_file=str(junk),
                                                root_key_file=key_a))
    assert "not a readable PEM private key" in failed(ca(clusters=["c1"], root_cert_file=cert_a,
                                                         root_key_file=str(junk)))
    msg = failed(ca(clusters=["c1"], root_cert_file=cert_a))
    assert "root_key_file" in msg  # required together
    assert not os.path.exists(state)  # nothing written by any failed import


def test_lost_root_key_is_restored_from_the_same_import(ca, state, tmp_path):
    cert_file, key_file, rc, _k = external_root(tmp_path)
    ok(ca(clusters=["c1"], root_cert_file=cert_file, root_key_file=key_file))
    os.unlink(os.path.join(rdir(state), "root-key.pem"))
    assert "missing" in failed(ca(clusters=["c1"]))
    r = ok(ca(clusters=["c1"], root_cert_file=cert_file, root_key_file=key_file))
    assert r["root"]["status"] == "restored" and r["changed"] is True
    assert r["clusters"]["c1"]["status"] == "unchanged"
    assert read(os.path.join(rdir(state), "root-key.pem")) == read(key_file)
    assert ok(ca(clusters=["c1"]))["changed"] is False


def test_import_of_a_different_root_needs_rotation(ca, state, tmp_path):
    ok(ca(clusters=["c1"]))
    cert_a, key_a, _c, _k = external_root(tmp_path, "a")
    snap = snapshot(state)
    msg = failed(ca(clusters=["c1"], root_cert_file=cert_a, root_key_file=key_a))
    assert "differs from the current root" in msg and "root_rotation=introduce" in msg
    assert snapshot(state) == snap


# --- root rotation ----------------------------------------------------------------------
def test_root_rotation_introduce_switch_retire(ca, state, tmp_path):
    clusters = ["c1", "c2"]
    first = ok(ca(clusters=clusters))
    old_fp = first["root"]["fingerprint_sha256"]
    old_root = cert(os.path.join(rdir(state), "root-cert.pem"))
    old_inter = {c: cert(os.path.join(cdir(state, c), "ca-cert.pem")) for c in clusters}
    old_leaf = {c: leaf_for(state, c) for c in clusters}  # workloads still on old certs
    old_root_key = read(os.path.join(rdir(state), "root-key.pem"))
    old_bundle_files = {}
    for c in clusters:  # what a workload that has not received the new bundle yet trusts
        old_bundle_files[c] = str(tmp_path / ("old-bundle-%s.pem" % c))
        with open(old_bundle_files[c], "wb") as f:
            f.write(read(os.path.join(cdir(state, c), "root-cert.pem")))

    # step 1: introduce - the new root is trusted everywhere, nothing chains to it yet
    r = ok(ca(clusters=clusters, root_rotation="introduce", diff=True))
    assert r["changed"] is True
    assert r["rotation"] == dict(action="introduced", window_open=True, phase="introduced",
                                 retired_fingerprint=None)
    assert r["root"]["status"] == "unchanged" and r["root"]["fingerprint_sha256"] == old_fp
    assert r["next_root"]["status"] == "introduced" and r["previous_root"] is None
    new_fp = r["next_root"]["fingerprint_sha256"]
    assert new_fp != old_fp
    assert r["trust_bundle"] == [old_fp, new_fp]
    assert r["diff"]["before"]["root"]["trust_bundle"] == [old_fp]
    assert r["diff"]["after"]["root"]["trust_bundle"] == [old_fp, new_fp]
    assert read(os.path.join(rdir(state), "root-cert.pem")) == old_root.public_bytes(serialization.Encoding.PEM)
    assert read(os.path.join(rdir(state), "root-key.pem")) == old_root_key
    assert stat.S_IMODE(os.stat(os.path.join(rdir(state), "next-root-key.pem")).st_mode) == 0o600
    new_root = cert(os.path.join(rdir(state), "next-root-cert.pem"))
    for c in clusters:
        info = r["clusters"][c]
        assert (info["status"], info["reason"]) == ("updated", "root bundle changed")
        d = cdir(state, c)
        assert [pki.fingerprint(x) for x in certs(os.path.join(d, "root-cert.pem"))] == [old_fp, new_fp]
        # the intermediate and its chain are untouched: every workload certificate still
        # verifies for a workload that has not received the new bundle yet
        assert cert(os.path.join(d, "ca-cert.pem")) == old_inter[c]
        crypto_verify(leaf_for(state, c), old_bundle_files[c], [old_inter[c]])
        crypto_verify(old_leaf[c], os.path.join(d, "root-cert.pem"), [old_inter[c]])
    # re-runs and repeated "introduce" change nothing; "retire" is refused (switch first)
    snap = snapshot(state)
    for rotation in ("none", "introduce"):
        again = ok(ca(clusters=clusters, root_rotation=rotation))
        assert again["changed"] is False, rotation
        assert again["trust_bundle"] == [old_fp, new_fp]
        assert again["rotation"]["phase"] == "introduced"
    msg = failed(ca(clusters=clusters, root_rotation="retire"))
    assert "root_rotation=switch first" in msg
    assert snapshot(state) == snap

    # step 2: switch - intermediates from the new root, both roots still trusted
    r = ok(ca(clusters=clusters, root_rotation="switch", diff=True))
    assert r["changed"] is True
    assert r["rotation"] == dict(action="switched", window_open=True, phase="switched",
                                 retired_fingerprint=None)
    assert r["root"]["status"] == "switched" and r["root"]["fingerprint_sha256"] == new_fp
    assert r["previous_root"]["fingerprint_sha256"] == old_fp and r["next_root"] is None
    assert r["trust_bundle"] == [new_fp, old_fp]
    assert r["diff"]["before"]["root"] == dict(fingerprint_sha256=old_fp, trust_bundle=[old_fp, new_fp])
    assert r["diff"]["after"]["root"]["trust_bundle"] == [new_fp, old_fp]
    assert read(os.path.join(rdir(state), "previous-root-cert.pem")) == \
        old_root.public_bytes(serialization.Encoding.PEM)
    assert read(os.path.join(rdir(state), "previous-root-key.pem")) == old_root_key
    assert stat.S_IMODE(os.stat(os.path.join(rdir(state), "previous-root-key.pem")).st_mode) == 0o600
    assert cert(os.path.join(rdir(state), "root-cert.pem")) == new_root
    assert not os.path.exists(os.path.join(rdir(state), "next-root-cert.pem"))
    assert not os.path.exists(os.path.join(rdir(state), "next-root-key.pem"))
    for c in clusters:
        info = r["clusters"][c]
        assert (info["status"], info["reason"]) == ("reissued", "not signed by current root")
        d = cdir(state, c)
        bundle = certs(os.path.join(d, "root-cert.pem"))
        assert [pki.fingerprint(x) for x in bundle] == [new_fp, old_fp]  # new first
        assert info["trust_bundle"] == [new_fp, old_fp]
        ic = cert(os.path.join(d, "ca-cert.pem"))
        ic.verify_directly_issued_by(new_root)
        assert [pki.fingerprint(x) for x in certs(os.path.join(d, "cert-chain.pem"))] == \
            [pki.fingerprint(ic), new_fp]
        # both generations of workload certificates verify against the bundle
        crypto_verify(old_leaf[c], os.path.join(d, "root-cert.pem"), [old_inter[c]])
        crypto_verify(leaf_for(state, c), os.path.join(d, "root-cert.pem"), [ic])
        if OPENSSL:
            old_leaf_f = write_pem(tmp_path / ("old-leaf-%s.pem" % c), old_leaf[c])
            old_inter_f = write_pem(tmp_path / ("old-inter-%s.pem" % c), old_inter[c])
            new_leaf_f = write_pem(tmp_path / ("new-leaf-%s.pem" % c), leaf_for(state, c))
            res = openssl_verify(os.path.join(d, "root-cert.pem"), old_leaf_f, untrusted=old_inter_f)
            assert res.returncode == 0, res.stdout + res.stderr
            res = openssl_verify(os.path.join(d, "root-cert.pem"), new_leaf_f,
                                 untrusted=os.path.join(d, "cert-chain.pem"))
            assert res.returncode == 0, res.stdout + res.stderr
        assert sorted(os.listdir(d)) == FOUR

    # during the window: plain re-runs and repeated "introduce"/"switch" change nothing
    snap = snapshot(state)
    for rotation in ("none", "introduce", "switch"):
        again = ok(ca(clusters=clusters, root_rotation=rotation))
        assert again["changed"] is False, rotation
        assert again["trust_bundle"] == [new_fp, old_fp]
        assert again["rotation"]["window_open"] is True
    assert snapshot(state) == snap
    # a cluster added during the window gets the new root and both in its bundle
    r = ok(ca(clusters=clusters + ["c3"]))
    assert [pki.fingerprint(x) for x in certs(os.path.join(cdir(state, "c3"), "root-cert.pem"))] == \
        [new_fp, old_fp]
    clusters.append("c3")

    # step 3: retire
    r = ok(ca(clusters=clusters, root_rotation="retire"))
    assert r["changed"] is True
    assert r["rotation"] == dict(action="retired", window_open=False, phase="none",
                                 retired_fingerprint=old_fp)
    assert r["previous_root"] is None
    assert r["trust_bundle"] == [new_fp]
    assert not os.path.exists(os.path.join(rdir(state), "previous-root-key.pem"))
    assert not os.path.exists(os.path.join(rdir(state), "previous-root-cert.pem"))
    archived = os.listdir(os.path.join(rdir(state), "retired"))
    assert len(archived) == 1
    assert pki.fingerprint(cert(os.path.join(rdir(state), "retired", archived[0]))) == old_fp
    for dirpath, _d, files in os.walk(state):  # the old root key is gone everywhere
        for f in files:
            assert read(os.path.join(dirpath, f)) != old_root_key
    for c in clusters:
        info = r["clusters"][c]
        assert (info["status"], info["reason"]) == ("updated", "root bundle changed")
        d = cdir(state, c)
        assert [pki.fingerprint(x) for x in certs(os.path.join(d, "root-cert.pem"))] == [new_fp]
        ic = cert(os.path.join(d, "ca-cert.pem"))
        crypto_verify(leaf_for(state, c), os.path.join(d, "root-cert.pem"), [ic])
        if c in old_leaf:
            with pytest.raises(VerificationError):
                crypto_verify(old_leaf[c], os.path.join(d, "root-cert.pem"), [old_inter[c]])
            if OPENSSL:
                res = openssl_verify(os.path.join(d, "root-cert.pem"),
                                     write_pem(tmp_path / "o.pem", old_leaf[c]),
                                     untrusted=write_pem(tmp_path / "oi.pem", old_inter[c]))
                assert res.returncode != 0
    again = ok(ca(clusters=clusters, root_rotation="retire"))
    assert again["changed"] is False
    assert ok(ca(clusters=clusters))["changed"] is False


def test_rotation_introduce_an_imported_root(ca, state, tmp_path):
    first = ok(ca(clusters=["c1"]))
    cert_a, key_a, rc, _k = external_root(tmp_path, "new")
    r = ok(ca(clusters=["c1"], root_cert_file=cert_a, root_key_file=key_a, root_rotation="introduce"))
    assert r["next_root"]["status"] == "introduced"
    assert r["trust_bundle"] == [first["root"]["fingerprint_sha256"], pki.fingerprint(rc)]
    assert read(os.path.join(rdir(state), "next-root-key.pem")) == read(key_a)
    # same import again during the window: nothing to do
    assert ok(ca(clusters=["c1"], root_cert_file=cert_a, root_key_file=key_a,
                 root_rotation="introduce"))["changed"] is False
    # a third root while the window is open is refused
    cert_b, key_b, _c, _k = external_root(tmp_path, "third")
    assert "switch, retire" in failed(ca(clusters=["c1"], root_cert_file=cert_b, root_key_file=key_b,
                                         root_rotation="introduce"))
    # the switch (the import may be given again, or not) makes it the signer
    r = ok(ca(clusters=["c1"], root_cert_file=cert_a, root_key_file=key_a, root_rotation="switch"))
    assert r["root"]["status"] == "switched"
    cert(os.path.join(cdir(state, "c1"), "ca-cert.pem")).verify_directly_issued_by(rc)
    assert ok(ca(clusters=["c1"], root_cert_file=cert_a, root_key_file=key_a))["changed"] is False


@pytest.mark.parametrize("rotation", ["introduce", "switch", "retire"])
def test_rotation_without_root_just_creates_it(ca, state, rotation):
    r = ok(ca(clusters=["c1"], root_rotation=rotation))
    assert r["root"]["status"] == "created"
    assert r["previous_root"] is None
    if rotation == "introduce":
        assert any("nothing to rotate" in w for w in warnings(r))


def test_retire_without_window_is_a_noop(ca, state):
    ok(ca(clusters=["c1"]))
    r = ok(ca(clusters=["c1"], root_rotation="retire"))
    assert r["changed"] is False and r["rotation"]["action"] == "none"


def test_switch_without_introduced_root_is_a_noop(ca, state):
    ok(ca(clusters=["c1"]))
    r = ok(ca(clusters=["c1"], root_rotation="switch"))
    assert r["changed"] is False and r["rotation"]["action"] == "none"
    assert any("nothing to switch to" in w for w in warnings(r))


def test_interrupted_switch_is_finished_by_the_next_run(ca, state):
    """A crash after the new root became root-cert.pem but before next-root-* went away:
    the next run treats the switch as done and removes the leftovers."""
    ok(ca(clusters=["c1"]))
    ok(ca(clusters=["c1"], root_rotation="introduce"))
    nxt_cert = read(os.path.join(rdir(state), "next-root-cert.pem"))
    nxt_key = read(os.path.join(rdir(state), "next-root-key.pem"))
    ok(ca(clusters=["c1"], root_rotation="switch"))
    for name, data in (("next-root-cert.pem", nxt_cert), ("next-root-key.pem", nxt_key)):
        with open(os.path.join(rdir(state), name), "wb") as f:
            f.write(data)
    r = ok(ca(clusters=["c1"]))
    assert r["rotation"]["phase"] == "switched" and r["next_root"] is None
    assert not os.path.exists(os.path.join(rdir(state), "next-root-cert.pem"))
    assert r["clusters"]["c1"]["status"] == "unchanged"


def test_rotation_warns_about_unlisted_cluster_folders(ca, state):
    ok(ca(clusters=["c1", "c2"]))
    r = ok(ca(clusters=["c1"], root_rotation="introduce"))
    assert r["unmanaged_clusters"] == ["c2"]
    assert any("still hold the old trust bundle: c2" in w for w in warnings(r))
    assert r["clusters"].keys() == {"c1"}


# --- root key confinement ---------------------------------------------------------------
def test_root_key_never_leaves_root_folder(ca, state):
    results = [ok(ca(clusters=["c1", "c2"], diff=True))]
    root_keys = [read(os.path.join(rdir(state), "root-key.pem"))]
    results.append(ok(ca(clusters=["c1", "c2"], root_rotation="introduce", diff=True)))
    root_keys.append(read(os.path.join(rdir(state), "next-root-key.pem")))
    results.append(ok(ca(clusters=["c1", "c2"], root_rotation="switch", diff=True)))
    results.append(ok(ca(clusters=["c1", "c2"], force_reissue=["c1"], diff=True)))
    for c in ("c1", "c2"):
        d = cdir(state, c)
        assert sorted(os.listdir(d)) == FOUR
        for f in os.listdir(d):
            data = read(os.path.join(d, f))
            for rk in root_keys:
                assert rk not in data
                body = b"".join(rk.splitlines()[1:-1])
                assert body not in b"".join(data.splitlines())
        assert b"PRIVATE KEY" not in read(os.path.join(d, "root-cert.pem"))
        assert b"PRIVATE KEY" not in read(os.path.join(d, "cert-chain.pem"))
        assert b"PRIVATE KEY" not in read(os.path.join(d, "ca-cert.pem"))
    for r in results:
        assert "PRIVATE KEY" not in r["_stdout"]
        assert "root-key.pem" not in r["_stdout"]
        for rk in root_keys:
            assert b"".join(rk.splitlines()[1:-1]).decode()[:32] not in r["_stdout"]


# --- input errors -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["Cluster1", "-east", "east-", "east_1", "east.1", "a" * 64, "",
                                  "élan", "root"])
def test_bad_cluster_names(ca, state, name):
    msg = failed(ca(clusters=["good", name]))
    assert repr(name) in msg
    assert ("DNS-1123" in msg) or ("reserved" in msg)
    assert not os.path.exists(state)


def test_longest_valid_cluster_name(ca, state):
    name = "a" + "-" * 61 + "z"
    assert ok(ca(clusters=[name]))["clusters"][name]["status"] == "issued"


def test_state_dir_not_writable(ca, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for check in (False, True):
        msg = failed(ca(state_dir=str(blocker / "state"), clusters=["c1"], check_mode=check))
        assert "not writable" in msg and str(blocker) in msg
    msg = failed(ca(state_dir=str(blocker), clusters=["c1"]))
    assert "not a directory" in msg


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_state_dir_read_only(ca, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(str(ro), 0o500)
    try:
        assert "not writable" in failed(ca(state_dir=str(ro), clusters=["c1"]))
    finally:
        os.chmod(str(ro), 0o700)


def test_duplicate_cluster_names_are_issued_once(ca, state):
    r = ok(ca(clusters=["c1", "c1"]))
    assert list(r["clusters"]) == ["c1"] and r["summary"]["issued"] == 1


def test_root_key_missing_is_reported(ca, state):
    ok(ca(clusters=["c1"]))
    os.unlink(os.path.join(rdir(state), "root-key.pem"))
    snap = snapshot(state)
    msg = failed(ca(clusters=["c1"]))
    assert "root key" in msg and "missing" in msg
    assert snapshot(state) == snap  # no new root sneaks in


# --- state absent -----------------------------------------------------------------------
def test_state_absent_removes_cluster_material_only(ca, state):
    ok(ca(clusters=["c1", "c2"]))
    r = ok(ca(clusters=["c2"], state="absent", diff=True))
    assert r["changed"] is True
    assert r["clusters"]["c2"]["status"] == "removed"
    assert r["diff"]["after"]["clusters"]["c2"] is None
    assert not os.path.exists(cdir(state, "c2"))
    assert os.path.exists(os.path.join(cdir(state, "c1"), "ca-cert.pem"))
    assert os.path.exists(os.path.join(rdir(state), "root-key.pem"))
    r = ok(ca(clusters=["c2"], state="absent"))
    assert r["changed"] is False and r["clusters"]["c2"]["status"] == "absent"


def test_state_absent_never_creates_a_root(ca, state):
    r = ok(ca(clusters=["c1"], state="absent"))
    assert r["changed"] is False and r["root"] is None
    assert r["clusters"]["c1"]["status"] == "absent"
    assert not os.path.exists(os.path.join(state, "pki", "root"))


def test_state_absent_refuses_foreign_files(ca, state):
    ok(ca(clusters=["c1"]))
    with open(os.path.join(cdir(state, "c1"), "notes.txt"), "w") as f:
        f.write("mine")
    assert "notes.txt" in failed(ca(clusters=["c1"], state="absent"))
    assert os.path.exists(os.path.join(cdir(state, "c1"), "ca-key.pem"))


# --- through the ansible CLI ------------------------------------------------------------
def test_ansible_cli_runs_module(repo_root, tmp_path):
    exe = os.path.join(repo_root, ".venv", "bin", "ansible")
    if not os.path.exists(exe):
        pytest.skip("no .venv/bin/ansible")
    state_dir = str(tmp_path / "cli")
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(repo_root, "ansible.cfg"),
               ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal")
    base = [exe, "localhost", "-i", "localhost,", "-c", "local", "-m", "meshfleet.mesh.mesh_ca",
            "-e", "ansible_python_interpreter=%s" % sys.executable,
            "-a", "state_dir=%s clusters=a,b" % state_dir]
    p = subprocess.run(base + ["--check", "--diff"], cwd=repo_root, env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "PRIVATE KEY" not in p.stdout + p.stderr
    assert "L=a,CN=Intermediate CA,O=Istio" in p.stdout
    assert not os.path.exists(state_dir)
    p = subprocess.run(base + ["--diff"], cwd=repo_root, env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "CHANGED" in p.stdout and "PRIVATE KEY" not in p.stdout + p.stderr
    assert sorted(os.listdir(os.path.join(state_dir, "pki", "a"))) == FOUR
    p = subprocess.run(base, cwd=repo_root, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "SUCCESS" in p.stdout, p.stdout + p.stderr
    result = json.loads(p.stdout.split("=>", 1)[1])
    assert result["changed"] is False
