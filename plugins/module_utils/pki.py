# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mesh's trust roots: a root CA and one Istio plug-in intermediate CA per cluster.

Two layers, both free of Ansible so the benchmark and the tests can drive them directly:

* small crypto helpers on top of ``cryptography`` (key generation, the root and
  intermediate certificate profiles, loading, matching, fingerprints);
* :class:`MeshCA`, which reads ``<state_dir>/pki``, decides per cluster what has to
  happen (issue, re-issue, rewrite the root bundle, remove) and, unless in check mode,
  does it.  It returns a result without any key material.

Layout written under ``<state_dir>/pki``::

    root/root-cert.pem            current root (0644)
    root/root-key.pem             current root key (0600, never leaves the controller)
    root/next-root-cert.pem       new root, introduced (trusted) but not signing yet
    root/next-root-key.pem
    root/previous-root-cert.pem   old root after the switch, until it is retired
    root/previous-root-key.pem
    root/retired/                 certificates of retired roots (keys are deleted)
    <cluster>/ca-cert.pem         intermediate CA, signed by the current root
    <cluster>/ca-key.pem          its key (0600)
    <cluster>/root-cert.pem       trust bundle: current root, then the next or previous one
    <cluster>/cert-chain.pem      ca-cert.pem followed by the current root
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import shutil

from ansible_collections.meshfleet.mesh.plugins.module_utils.k8s_names import is_dns_label
from ansible_collections.meshfleet.mesh.plugins.module_utils.base import (
    MeshfleetError, ensure_private_dir, write_file_atomic)

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError as _e:  # pragma: no cover - reported by the module
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = _e

KEY_TYPES = ("ecdsa-p256", "rsa-2048", "rsa-4096")
ROTATIONS = ("none", "introduce", "switch", "retire")
ISTIOD_SAN = "istiod.istio-system.svc"
ROOT_CN = "Root CA"
INTERMEDIATE_CN = "Intermediate CA"
CLUSTER_FILES = ("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem")
ROOT_DIR = "root"
CERT_MODE = 0o644
KEY_MODE = 0o600
RESERVED_NAMES = frozenset([ROOT_DIR])
PEM_KEY_MARKER = b"PRIVATE KEY"


def utcnow():
    """Current time (UTC, aware). Tests patch this to travel in time."""
    return datetime.datetime.now(datetime.timezone.utc)


def isotime(dt):
    return dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- keys -------------------------------------------------------------------------
def generate_key(key_type):
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type in ("rsa-2048", "rsa-4096"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    raise MeshfleetError("unknown key_type %r; choose one of %s" % (key_type, ", ".join(KEY_TYPES)))


def generate_keys(key_type, count):
    """``count`` new keys. RSA generation releases the GIL, so spread it over the CPUs."""
    if count <= 0:
        return []
    if key_type.startswith("rsa") and count > 1:
        from concurrent.futures import ThreadPoolExecutor
        workers = max(1, min(count, os.cpu_count() or 1))
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                return list(pool.map(lambda _i: generate_key(key_type), range(count)))
    return [generate_key(key_type) for _i in range(count)]


def key_type_of(key):
    """Meshfleet's name for a private or public key's type (``rsa-3072`` etc. for others)."""
    pub = key.public_key() if hasattr(key, "public_key") else key
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return "ecdsa-p256" if isinstance(pub.curve, ec.SECP256R1) else "ecdsa-%s" % pub.curve.name
    if isinstance(pub, rsa.RSAPublicKey):
        return "rsa-%d" % pub.key_size
    return type(pub).__name__


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _spki(key_or_cert):
    pub = key_or_cert.public_key()
    return pub.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def key_matches_cert(key, cert):
    return _spki(key) == _spki(cert)


def _sign_hash(key):
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def _check_signing_key(key, what):
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise MeshfleetError("%s: unsupported key type %s (use an RSA or ECDSA key)"
                             % (what, type(key).__name__))


# --- certificates -----------------------------------------------------------------
def fingerprint(cert):
    """SHA-256 fingerprint as ``openssl x509 -fingerprint -sha256`` prints it."""
    return ":".join("%02X" % b for b in bytearray(cert.fingerprint(hashes.SHA256())))


def root_name(organization):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                      x509.NameAttribute(NameOID.COMMON_NAME, ROOT_CN)])


def intermediate_name(organization, cluster):
    # Same attribute order as Istio's Makefile.selfsigned.mk: O, CN, L.
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                      x509.NameAttribute(NameOID.COMMON_NAME, INTERMEDIATE_CN),
                      x509.NameAttribute(NameOID.LOCALITY_NAME, cluster)])


def _ca_key_usage(critical=True):
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                         crl_sign=True, encipher_only=False, decipher_only=False)


def _validity(now, days, backdate_minutes, not_after_cap=None):
    not_before = now - datetime.timedelta(minutes=backdate_minutes)
    not_after = now + datetime.timedelta(days=days)
    if not_after_cap is not None and not_after > not_after_cap:
        not_after = not_after_cap
    # X.509 times have second precision; keep the numbers we report exact.
    return not_before.replace(microsecond=0), not_after.replace(microsecond=0)


def build_root_cert(key, organization="Istio", days=3650, backdate_minutes=5, now=None):
    """A self-signed root: CA:true (no path length), keyCertSign/cRLSign, SKI/AKI."""
    now = now or utcnow()
    not_before, not_after = _validity(now, days, backdate_minutes)
    name = root_name(organization)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (x509.CertificateBuilder()
               .subject_name(name).issuer_name(name)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(_ca_key_usage(), critical=True)
               .add_extension(ski, critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                              critical=False))
    return builder.sign(key, _sign_hash(key))


def build_intermediate_cert(key, cluster, issuer_cert, issuer_key, organization="Istio",
                            days=730, backdate_minutes=5, now=None):
    """An Istio plug-in CA certificate for ``cluster``, signed by ``issuer_cert``/``issuer_key``.

    CA:true pathlen:0 (critical), keyUsage digitalSignature/keyCertSign/cRLSign (critical),
    SAN DNS:istiod.istio-system.svc, subject O=<organization>, CN=Intermediate CA, L=<cluster>.
    NotAfter never exceeds the issuer's.
    """
    now = now or utcnow()
    not_before, not_after = _validity(now, days, backdate_minutes,
                                      not_after_cap=issuer_cert.not_valid_after_utc)
    try:
        issuer_ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
    builder = (x509.CertificateBuilder()
               .subject_name(intermediate_name(organization, cluster))
               .issuer_name(issuer_cert.subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(_ca_key_usage(), critical=True)
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(ISTIOD_SAN)]), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False)
               .add_extension(aki, critical=False))
    return builder.sign(issuer_key, _sign_hash(issuer_key))


def ca_constraints(cert):
    """``(is_ca, path_length)`` from basicConstraints; ``(False, None)`` when absent."""
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False, None
    return bc.ca, bc.path_length


def can_sign_certs(cert):
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return ku.key_cert_sign


def is_issued_by(cert, issuer):
    """True when ``issuer``'s name and key signed ``cert``."""
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def is_self_signed(cert):
    return is_issued_by(cert, cert)


def describe_cert(cert):
    """What the module reports about a certificate: never key material."""
    return dict(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        fingerprint_sha256=fingerprint(cert),
        not_before=isotime(cert.not_valid_before_utc),
        not_after=isotime(cert.not_valid_after_utc),
        key_type=key_type_of(cert.public_key()),
    )


def load_certs_pem(data):
    """All certificates in PEM ``data`` (ValueError when there is none or one is broken)."""
    return x509.load_pem_x509_certificates(data)


def _read(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except (IOError, OSError) as e:
        raise MeshfleetError("cannot read %s %s: %s" % (what, path, e.strerror or e))


def load_cert_file(path, what="certificate"):
    data = _read(path, what)
    try:
        return load_certs_pem(data)[0]
    except ValueError as e:
        raise MeshfleetError("%s %s is not a PEM certificate: %s" % (what, path, e))


def load_key_file(path, passphrase=None, what="private key"):
    data = _read(path, what)
    pw = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
    try:
        try:
            return serialization.load_pem_private_key(data, password=pw)
        except TypeError:
            if pw is None:
                raise MeshfleetError("%s %s is encrypted; set root_key_passphrase" % (what, path))
            # a passphrase for an unencrypted key: the other root key may need it
            return serialization.load_pem_private_key(data, password=None)
    except ValueError:
        # Never echo the exception text: it may quote parts of the file.
        raise MeshfleetError("%s %s is not a readable PEM private key (or the passphrase is wrong)"
                             % (what, path))


def check_ca_pair(cert, key, what, now=None):
    """Refuse a certificate/key pair that cannot act as the mesh root."""
    now = now or utcnow()
    _check_signing_key(key, what)
    if not key_matches_cert(key, cert):
        raise MeshfleetError("%s: the certificate and the private key do not match "
                             "(the key is not the certificate's key)" % what)
    is_ca, pathlen = ca_constraints(cert)
    if not is_ca:
        raise MeshfleetError("%s: the certificate is not a CA (basicConstraints CA:true is missing), "
                             "it cannot sign intermediate CAs" % what)
    if pathlen == 0:
        raise MeshfleetError("%s: the CA certificate has pathlen:0, it cannot sign intermediate CAs"
                             % what)
    if not can_sign_certs(cert):
        raise MeshfleetError("%s: the certificate's keyUsage lacks keyCertSign" % what)
    if cert.not_valid_after_utc <= now:
        raise MeshfleetError("%s: the certificate expired on %s"
                             % (what, isotime(cert.not_valid_after_utc)))


def validate_cluster_name(name):
    if not is_dns_label(name):
        raise MeshfleetError(
            "invalid cluster name %r: it must be a DNS-1123 label (lower-case letters, digits and "
            "'-', starting and ending with a letter or digit, at most 63 characters)" % (name,))
    if name in RESERVED_NAMES:
        raise MeshfleetError("invalid cluster name %r: it is reserved for the root CA folder" % name)


# --- the engine -------------------------------------------------------------------
class _Root:
    """A root CA as loaded or created: certificate, key, PEM bytes."""

    def __init__(self, cert, key, key_data=None):
        self.cert = cert
        self.key = key
        self.pem = cert_pem(cert)
        # Keep the stored key bytes verbatim (an imported key may be encrypted).
        self.key_data = key_data if key_data is not None else (key_pem(key) if key is not None else None)
        self.fingerprint = fingerprint(cert)
        self.planned = False

    def plan_only(self):
        """Planned: this root exists only in memory until it is written (descriptions show no
        fingerprint; :meth:`made` when it is written)."""
        self.planned = True
        self.fingerprint = None
        return self

    def made(self):
        self.planned = False
        self.fingerprint = fingerprint(self.cert)
        return self

    def describe(self, path, status):
        d = describe_cert(self.cert)
        d.update(status=status, cert=path)
        if self.planned:
            d.update(fingerprint_sha256=None, serial=None)
        return d


class MeshCA:
    """Plan and apply the PKI for a set of clusters under ``<state_dir>/pki``.

    ``plan()`` returns ``(result, diff, todo)`` without writing anything: ``diff`` is
    ``{"before": ..., "after": ...}`` describing what changes (subjects, fingerprints, expiry,
    reasons), never keys; ``todo`` is None when nothing would change, else a function that
    writes the plan and updates ``result`` and ``diff`` in place with what it made (new
    fingerprints). ``apply()`` does both and returns ``(result, diff)``.
    """

    def __init__(self, state_dir, clusters=(), key_type="ecdsa-p256", root_days=3650,
                 intermediate_days=730, renew_before_days=30, organization="Istio",
                 root_cert_file=None, root_key_file=None, root_key_passphrase=None,
                 root_rotation="none", backdate_minutes=5, force_reissue=(), state="present",
                 now=None, warn=None):
        self.state_dir = os.path.abspath(os.path.expanduser(state_dir))
        self.pki_dir = os.path.join(self.state_dir, "pki")
        self.root_dir = os.path.join(self.pki_dir, ROOT_DIR)
        self.clusters = []
        for c in clusters or []:
            if c not in self.clusters:
                self.clusters.append(c)
        self.key_type = key_type
        self.root_days = root_days
        self.intermediate_days = intermediate_days
        self.renew_before_days = renew_before_days
        self.organization = organization
        self.root_cert_file = root_cert_file
        self.root_key_file = root_key_file
        self.root_key_passphrase = root_key_passphrase
        self.root_rotation = root_rotation or "none"
        self.backdate_minutes = backdate_minutes
        self.force_reissue = list(force_reissue or [])
        self.state = state
        self.todo = []  # what plan() found to do besides the roots and intermediates
        self.now = now or utcnow()
        self._warn = warn
        self.warnings = []

    # --- small helpers ---
    def warn(self, msg):
        self.warnings.append(msg)
        if self._warn:
            self._warn(msg)

    def root_path(self, name):
        return os.path.join(self.root_dir, name)

    def cluster_dir(self, cluster):
        return os.path.join(self.pki_dir, cluster)

    def cluster_files(self, cluster):
        d = self.cluster_dir(cluster)
        return dict(ca_cert=os.path.join(d, "ca-cert.pem"), ca_key=os.path.join(d, "ca-key.pem"),
                    root_cert=os.path.join(d, "root-cert.pem"),
                    cert_chain=os.path.join(d, "cert-chain.pem"))

    # --- validation ---
    def validate(self):
        if self.key_type not in KEY_TYPES:
            raise MeshfleetError("unknown key_type %r; choose one of %s"
                                 % (self.key_type, ", ".join(KEY_TYPES)))
        if self.root_rotation not in ROTATIONS:
            raise MeshfleetError("unknown root_rotation %r; choose one of %s"
                                 % (self.root_rotation, ", ".join(ROTATIONS)))
        if self.state not in ("present", "absent"):
            raise MeshfleetError("state must be present or absent, not %r" % (self.state,))
        for c in self.clusters:
            validate_cluster_name(c)
        unknown = [c for c in self.force_reissue if c not in self.clusters]
        if unknown:
            raise MeshfleetError("force_reissue names clusters that are not in clusters: %s"
                                 % ", ".join(sorted(set(map(str, unknown)))))
        for opt in ("root_days", "intermediate_days"):
            if getattr(self, opt) < 1:
                raise MeshfleetError("%s must be at least 1" % opt)
        if self.renew_before_days < 0 or self.backdate_minutes < 0:
            raise MeshfleetError("renew_before_days and backdate_minutes cannot be negative")
        if self.intermediate_days <= self.renew_before_days:
            raise MeshfleetError(
                "intermediate_days (%d) must be greater than renew_before_days (%d), otherwise every "
                "run would re-issue the intermediates" % (self.intermediate_days, self.renew_before_days))
        if bool(self.root_cert_file) != bool(self.root_key_file):
            raise MeshfleetError("root_cert_file and root_key_file must be given together")

    def check_state_dir(self):
        """Fail early, with the path, when state_dir cannot hold the PKI."""
        path = self.state_dir
        if os.path.exists(path) and not os.path.isdir(path):
            raise MeshfleetError("state_dir %s exists and is not a directory" % path)
        probe = path
        while not os.path.exists(probe):
            parent = os.path.dirname(probe)
            if parent == probe:
                break
            probe = parent
        if not os.path.isdir(probe):
            raise MeshfleetError("state_dir %s is not writable: %s is not a directory" % (path, probe))
        target = self.pki_dir if os.path.isdir(self.pki_dir) else probe
        if not os.access(target, os.W_OK | os.X_OK):
            raise MeshfleetError("state_dir %s is not writable (no write permission on %s)"
                                 % (path, target))

    def _mkdirs(self, cluster=None):
        try:
            if not os.path.isdir(self.state_dir):
                os.makedirs(self.state_dir, 0o700)
            ensure_private_dir(self.pki_dir)
            ensure_private_dir(self.root_dir if cluster is None else self.cluster_dir(cluster))
        except OSError as e:
            raise MeshfleetError("state_dir %s is not writable: %s" % (self.state_dir, e))

    def _write(self, path, data, mode):
        try:
            return write_file_atomic(path, data, mode)
        except OSError as e:
            raise MeshfleetError("cannot write %s (state_dir not writable?): %s" % (path, e))

    # --- root ---
    def _load_root(self, prefix, need_key=True):
        cert_path = self.root_path(prefix + "root-cert.pem")
        key_path = self.root_path(prefix + "root-key.pem")
        what = {"previous-": "previous root", "next-": "introduced root"}.get(prefix, "root")
        if not os.path.exists(cert_path):
            if os.path.exists(key_path):
                raise MeshfleetError("%s key %s exists without its certificate %s; restore the "
                                     "certificate or move the key away" % (what, key_path, cert_path))
            return None
        cert = load_cert_file(cert_path, "%s certificate" % what)
        if not os.path.exists(key_path):
            if not need_key:
                return _Root(cert, None)
            raise MeshfleetError("%s key %s is missing (certificate %s exists); restore it or import "
                                 "the root with root_cert_file/root_key_file"
                                 % (what, key_path, cert_path))
        key_data = _read(key_path, "%s key" % what)
        key = load_key_file(key_path, self.root_key_passphrase, "%s key" % what)
        if not key_matches_cert(key, cert):
            raise MeshfleetError("%s key %s does not match %s (interrupted rotation or files "
                                 "replaced by hand?)" % (what, key_path, cert_path))
        return _Root(cert, key, key_data)

    def _load_import(self):
        cert = load_cert_file(self.root_cert_file, "root_cert_file")
        key_data = _read(self.root_key_file, "root_key_file")
        key = load_key_file(self.root_key_file, self.root_key_passphrase, "root_key_file")
        check_ca_pair(cert, key, "root_cert_file %s / root_key_file %s"
                      % (self.root_cert_file, self.root_key_file), self.now)
        if not is_self_signed(cert):
            self.warn("the imported root %s is not self-signed; it becomes the trust anchor in every "
                      "root-cert.pem, so peers must trust it directly" % self.root_cert_file)
        return _Root(cert, key, key_data)

    def _new_root(self):
        key = generate_key(self.key_type)
        cert = build_root_cert(key, self.organization, self.root_days, self.backdate_minutes, self.now)
        key_data = None
        if self.root_key_passphrase:
            # stored encrypted with the passphrase the operator already supplies
            key_data = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(self.root_key_passphrase.encode("utf-8")))
        return _Root(cert, key, key_data).plan_only()

    def plan_root(self):
        """Decide the roots.

        Returns ``(current, previous, nxt, root_status, action, retired)``: ``current`` signs
        the intermediates; ``nxt`` is an introduced root that is trusted but does not sign yet
        (after ``introduce``, until ``switch``); ``previous`` is the old root that is still
        trusted after the switch (until ``retire``). At most one of them is set.
        """
        current = self._load_root("", need_key=False)
        previous = self._load_root("previous-")
        nxt = self._load_root("next-")
        if previous is not None and current is not None and previous.fingerprint == current.fingerprint:
            previous = None  # an interrupted introduction (older releases); treat as no window
        if nxt is not None and current is not None and nxt.fingerprint == current.fingerprint:
            nxt = None  # an interrupted switch: the new root signs already
            for f in ("next-root-key.pem", "next-root-cert.pem"):
                self.todo.append(lambda f=f: os.unlink(self.root_path(f)))
        if nxt is not None and previous is not None:
            raise MeshfleetError("both %s and %s exist: a rotation step was interrupted; restore "
                                 "pki/root/ from your backup" % (self.root_path("next-root-cert.pem"),
                                                                 self.root_path("previous-root-cert.pem")))
        imported = self._load_import() if self.root_cert_file else None
        rotation = self.root_rotation
        action = "none"
        retired = None
        status = "unchanged"
        if current is not None and current.key is None:
            if imported is None or imported.fingerprint != current.fingerprint:
                raise MeshfleetError(
                    "root key %s is missing (certificate %s exists); restore it, or pass the same root "
                    "as root_cert_file/root_key_file"
                    % (self.root_path("root-key.pem"), self.root_path("root-cert.pem")))
            current = imported  # the stored key is put back from the import
            status = "restored"

        if current is None:
            if previous is not None or nxt is not None:
                raise MeshfleetError("found %s but no current root; restore root/root-cert.pem and "
                                     "root/root-key.pem" % self.root_path(
                                         ("previous-" if previous is not None else "next-") + "root-cert.pem"))
            if rotation != "none":
                self.warn("root_rotation=%s but there is no root yet: creating the first root, "
                          "nothing to rotate" % rotation)
            if imported is not None:
                return imported, None, None, "imported", action, None
            return self._new_root(), None, None, "created", action, None

        if imported is not None and imported.fingerprint != current.fingerprint:
            if nxt is not None and imported.fingerprint == nxt.fingerprint:
                imported = None  # the introduced root, given again: nothing new
            elif previous is not None and imported.fingerprint == previous.fingerprint:
                raise MeshfleetError(
                    "root_cert_file %s is the previous root of the open rotation window; point "
                    "root_cert_file/root_key_file at the new root (%s) or drop them"
                    % (self.root_cert_file, self.root_path("root-cert.pem")))
            elif rotation != "introduce":
                raise MeshfleetError(
                    "root_cert_file %s (sha256 %s) differs from the current root %s (sha256 %s); "
                    "set root_rotation=introduce to rotate to it, or point root_cert_file/"
                    "root_key_file at the current root" % (self.root_cert_file, imported.fingerprint,
                                                           self.root_path("root-cert.pem"),
                                                           current.fingerprint))
            elif previous is not None or nxt is not None:
                raise MeshfleetError("a rotation window is already open (%s root sha256 %s); "
                                     "finish it (switch, retire) before introducing another root"
                                     % (("previous", previous.fingerprint) if previous is not None
                                        else ("introduced", nxt.fingerprint)))
            else:
                return current, None, imported, status, "introduced", None

        if rotation == "introduce":
            if previous is None and nxt is None:
                return current, None, self._new_root(), status, "introduced", None
            # Window already open: introducing again is a no-op (idempotent re-runs).
        elif rotation == "switch":
            if nxt is not None:
                return nxt, current, None, "switched", "switched", None
            if previous is None:
                self.warn("root_rotation=switch but no root was introduced (root_rotation=introduce "
                          "first): nothing to switch to")
        elif rotation == "retire":
            if nxt is not None:
                raise MeshfleetError(
                    "root_rotation=retire, but the introduced root (sha256 %s) does not sign yet: run "
                    "root_rotation=switch first (and let every workload get a certificate from the "
                    "new intermediates), then retire" % nxt.fingerprint)
            if previous is not None:
                retired = previous
                previous = None
                action = "retired"
        return current, previous, nxt, status, action, retired

    def _write_roots(self, current, previous, nxt, status, action, retired):
        self._mkdirs()
        changed = False
        if action == "introduced":
            # key first: a crash in between leaves a mismatch that the next run reports.
            changed |= self._write(self.root_path("next-root-key.pem"), nxt.key_data, KEY_MODE)
            changed |= self._write(self.root_path("next-root-cert.pem"), nxt.pem, CERT_MODE)
        if status == "switched":
            # the old root is kept first; a crash after the new root is in place leaves next ==
            # current, which the next run treats as switched
            changed |= self._write(self.root_path("previous-root-key.pem"), previous.key_data, KEY_MODE)
            changed |= self._write(self.root_path("previous-root-cert.pem"), previous.pem, CERT_MODE)
        if status in ("created", "imported", "switched", "restored"):
            changed |= self._write(self.root_path("root-key.pem"), current.key_data, KEY_MODE)
            changed |= self._write(self.root_path("root-cert.pem"), current.pem, CERT_MODE)
        if status == "switched":
            for f in ("next-root-key.pem", "next-root-cert.pem"):
                p = self.root_path(f)
                if os.path.exists(p):
                    os.unlink(p)
        if retired is not None:
            archive = os.path.join(self.root_dir, "retired")
            ensure_private_dir(archive)
            name = "root-cert-%s.pem" % retired.fingerprint.replace(":", "").lower()[:16]
            self._write(os.path.join(archive, name), retired.pem, CERT_MODE)
            for f in ("previous-root-key.pem", "previous-root-cert.pem"):
                p = self.root_path(f)
                if os.path.exists(p):
                    os.unlink(p)
            changed = True
        return changed

    # --- clusters ---
    def _read_optional(self, path):
        try:
            with open(path, "rb") as f:
                return f.read()
        except (IOError, OSError):
            return None

    def inspect_cluster(self, cluster, current, bundle_pem):
        """Return ``(action, reasons, before)``; action is issue/reissue/update/none."""
        files = self.cluster_files(cluster)
        cert_data = self._read_optional(files["ca_cert"])
        key_data = self._read_optional(files["ca_key"])
        cert = None
        before = None
        if cert_data is not None:
            try:
                cert = load_certs_pem(cert_data)[0]
                before = describe_cert(cert)
            except ValueError:
                cert = None
        root_data = self._read_optional(files["root_cert"])
        if before is not None and root_data is not None:
            try:
                before["trust_bundle"] = [fingerprint(c) for c in load_certs_pem(root_data)]
            except ValueError:
                before["trust_bundle"] = []

        if cert_data is None and key_data is None:
            return "issue", ["missing"], before
        reason = None
        if cluster in self.force_reissue:
            reason = "forced"
        elif cert_data is None or key_data is None:
            reason = "missing"
        elif cert is None:
            reason = "invalid certificate"
        if reason is None:
            try:
                # only the public half is compared; skip the slow RSA consistency check
                key = serialization.load_pem_private_key(key_data, password=None,
                                                         unsafe_skip_rsa_key_validation=True)
            except (ValueError, TypeError):
                key = None
            if key is None:
                reason = "invalid key"
            elif not key_matches_cert(key, cert):
                reason = "key mismatch"
        if reason is None:
            if not is_issued_by(cert, current.cert):
                reason = "not signed by current root"
            elif ca_constraints(cert) != (True, 0):
                reason = "not an intermediate CA"
            elif key_type_of(cert.public_key()) != self.key_type:
                reason = "key type changed"
            elif cert.subject != intermediate_name(self.organization, cluster):
                reason = "subject changed"
            elif cert.not_valid_before_utc > self.now + datetime.timedelta(minutes=5):
                reason = "not yet valid"
            elif cert.not_valid_after_utc - self.now <= datetime.timedelta(days=self.renew_before_days):
                if cert.not_valid_after_utc >= current.cert.not_valid_after_utc:
                    self.warn("intermediate of %s expires on %s together with the root; re-issuing "
                              "cannot help, rotate the root" % (cluster, isotime(cert.not_valid_after_utc)))
                else:
                    reason = "expiring"
        if reason is not None:
            return "reissue", [reason], before

        reasons = []
        if root_data != bundle_pem:
            reasons.append("root bundle changed")
        if self._read_optional(files["cert_chain"]) != cert_data + current.pem:
            reasons.append("cert chain changed")
        return ("update" if reasons else "none"), reasons, before

    def _planned(self, cluster, current, bundle):
        """What an issue would produce, for check mode and the diff (no fingerprint yet)."""
        nb, na = _validity(self.now, self.intermediate_days, self.backdate_minutes,
                           current.cert.not_valid_after_utc)
        return dict(subject=intermediate_name(self.organization, cluster).rfc4514_string(),
                    issuer=current.cert.subject.rfc4514_string(), serial=None,
                    fingerprint_sha256=None, not_before=isotime(nb), not_after=isotime(na),
                    key_type=self.key_type, trust_bundle=[r.fingerprint for r in bundle])

    def _issue(self, cluster, key, current, bundle_pem):
        cert = build_intermediate_cert(key, cluster, current.cert, current.key, self.organization,
                                       self.intermediate_days, self.backdate_minutes, self.now)
        files = self.cluster_files(cluster)
        data = cert_pem(cert)
        self._mkdirs(cluster)
        # key first: an interrupted run leaves a key mismatch that the next run repairs.
        self._write(files["ca_key"], key_pem(key), KEY_MODE)
        self._write(files["ca_cert"], data, CERT_MODE)
        self._write(files["root_cert"], bundle_pem, CERT_MODE)
        self._write(files["cert_chain"], data + current.pem, CERT_MODE)
        return cert

    def _remove_cluster(self, cluster):
        d = self.cluster_dir(cluster)
        if not os.path.isdir(d):
            return None
        extra = sorted(set(os.listdir(d)) - set(CLUSTER_FILES))
        if extra:
            raise MeshfleetError("refusing to remove %s: it holds files meshfleet did not write: %s"
                                 % (d, ", ".join(extra)))
        self.todo.append(lambda: shutil.rmtree(d))
        return True

    def _cluster_result(self, cluster, status, reasons, desc):
        r = dict(status=status, reason=", ".join(reasons) if reasons else None,
                 files=self.cluster_files(cluster) if status != "removed" else {})
        r.update(desc or {})
        return r

    def _unmanaged(self):
        if not os.path.isdir(self.pki_dir):
            return []
        out = []
        for name in sorted(os.listdir(self.pki_dir)):
            if name == ROOT_DIR or name in self.clusters:
                continue
            if os.path.isfile(os.path.join(self.pki_dir, name, "ca-cert.pem")):
                out.append(name)
        return out

    def apply(self):
        """Plan and write; ``(result, diff)``."""
        result, diff, todo = self.plan()
        if todo is not None:
            todo()
        return result, diff

    def plan(self):
        self.validate()
        self.check_state_dir()
        self.todo = []
        if self.state == "absent":
            result, diff = self._plan_absent()
            return result, diff, (self._run_todo if self.todo else None)
        current, previous, nxt, root_status, action, retired = self.plan_root()
        bundle = [current] + [r for r in (previous, nxt) if r is not None]
        bundle_pem = b"".join(r.pem for r in bundle)
        root_changed = root_status != "unchanged" or action != "none"

        if current.cert.not_valid_after_utc - self.now <= datetime.timedelta(days=self.renew_before_days):
            self.warn("the root CA expires on %s (within renew_before_days); plan a root rotation "
                      "(root_rotation=introduce)" % isotime(current.cert.not_valid_after_utc))

        clusters = {}
        before_c, after_c = {}, {}
        to_issue, to_update = [], []
        for c in self.clusters:
            act, reasons, before = self.inspect_cluster(c, current, bundle_pem)
            if act in ("issue", "reissue"):
                to_issue.append((c, "issued" if act == "issue" else "reissued", reasons, before))
            elif act == "update":
                after = dict(before, trust_bundle=[r.fingerprint for r in bundle])
                clusters[c] = self._cluster_result(c, "updated", reasons, after)
                before_c[c] = dict(before, reason=", ".join(reasons))
                after_c[c] = after
                to_update.append(c)
            else:
                clusters[c] = self._cluster_result(c, "unchanged", [], before)
        for c, status, reasons, before in to_issue:
            desc = self._planned(c, current, bundle)
            clusters[c] = self._cluster_result(c, status, reasons, desc)
            before_c[c] = dict(before, reason=", ".join(reasons)) if before else None
            after_c[c] = dict(desc, reason=", ".join(reasons))

        for c in self.clusters:
            self._check_extra_files(c)
        unmanaged = self._unmanaged()
        if unmanaged and action != "none":
            self.warn("root %s, but these cluster folders were not in clusters and still hold the old "
                      "trust bundle: %s" % (action, ", ".join(unmanaged)))
        result = dict(pki_dir=self.pki_dir, clusters=clusters, unmanaged_clusters=unmanaged,
                      changed=root_changed or bool(before_c or after_c))
        diff = dict(before=dict(clusters=before_c), after=dict(clusters=after_c))
        roots = (current, previous, nxt, root_status, action, retired)
        self._describe_roots(result, diff, roots)
        if not (result["changed"] or self.todo):
            return result, diff, None

        def write():
            """Write the roots, update the bundles, issue the intermediates; ``result`` and
            ``diff`` then show what was made."""
            self._run_todo()
            for r in (current, previous, nxt):
                if r is not None and r.planned:
                    r.made()
            if root_changed:
                self._write_roots(current, previous, nxt, root_status, action, retired)
            for c in to_update:
                files = self.cluster_files(c)
                self._mkdirs(c)
                cert_data = self._read_optional(files["ca_cert"])
                self._write(files["root_cert"], bundle_pem, CERT_MODE)
                self._write(files["cert_chain"], cert_data + current.pem, CERT_MODE)
                clusters[c]["trust_bundle"] = after_c[c]["trust_bundle"] = [r.fingerprint for r in bundle]
            keys = generate_keys(self.key_type, len(to_issue))
            for i, (c, status, reasons, before) in enumerate(to_issue):
                cert = self._issue(c, keys[i], current, bundle_pem)
                desc = dict(describe_cert(cert), trust_bundle=[r.fingerprint for r in bundle])
                clusters[c] = self._cluster_result(c, status, reasons, desc)
                after_c[c] = dict(desc, reason=", ".join(reasons))
            self._describe_roots(result, diff, roots)
        return result, diff, write

    def _run_todo(self):
        for action in self.todo:
            action()
        self.todo = []

    def _describe_roots(self, result, diff, roots):
        """The root part of ``result`` and ``diff`` (again after writing: new fingerprints)."""
        current, previous, nxt, root_status, action, retired = roots
        bundle = [current] + [r for r in (previous, nxt) if r is not None]
        root_desc = current.describe(self.root_path("root-cert.pem"), root_status)
        prev_desc = (previous.describe(self.root_path("previous-root-cert.pem"), "trusted")
                     if previous is not None else None)
        next_desc = (nxt.describe(self.root_path("next-root-cert.pem"),
                                  "introduced" if action == "introduced" else "trusted")
                     if nxt is not None else None)
        phase = "introduced" if nxt is not None else ("switched" if previous is not None else "none")
        result.update(
            root=root_desc,
            previous_root=prev_desc,
            next_root=next_desc,
            trust_bundle=[r.fingerprint for r in bundle],
            rotation=dict(action=action, window_open=phase != "none", phase=phase,
                          retired_fingerprint=retired.fingerprint if retired else None),
            summary=self._summary(result["clusters"]),
        )
        diff["before"]["root"] = None if root_status in ("created", "imported") else dict(
            fingerprint_sha256=(previous.fingerprint if root_status == "switched" else current.fingerprint),
            trust_bundle=self._old_bundle(current, previous, nxt, root_status, action, retired))
        diff["after"]["root"] = dict(fingerprint_sha256=current.fingerprint,
                                     subject=root_desc["subject"], not_after=root_desc["not_after"],
                                     status=root_status, rotation=action,
                                     trust_bundle=[r.fingerprint for r in bundle])

    @staticmethod
    def _summary(clusters):
        summary = dict((s, 0) for s in ("issued", "reissued", "updated", "unchanged", "removed", "absent"))
        for r in clusters.values():
            summary[r["status"]] += 1
        return summary

    def _trusted_root(self, name, what, bundle):
        """The description of the extra trusted root ``name`` (previous or introduced), its
        fingerprint appended to ``bundle``; None when there is none."""
        path = self.root_path(name)
        if not os.path.exists(path):
            return None
        desc = dict(describe_cert(load_cert_file(path, what)), status="trusted", cert=path)
        bundle.append(desc["fingerprint_sha256"])
        return desc

    def _plan_absent(self):
        """state=absent: delete the listed clusters' folders; the roots are never touched."""
        if self.root_rotation != "none" or self.force_reissue:
            self.warn("root_rotation and force_reissue are ignored with state=absent")
        root_path = self.root_path("root-cert.pem")
        root_desc = None
        bundle = []
        if os.path.exists(root_path):
            root_cert = load_cert_file(root_path, "root certificate")
            root_desc = dict(describe_cert(root_cert), status="unchanged", cert=root_path)
            bundle.append(root_desc["fingerprint_sha256"])
        prev_desc = self._trusted_root("previous-root-cert.pem", "previous root certificate", bundle)
        next_desc = self._trusted_root("next-root-cert.pem", "introduced root certificate", bundle)
        phase = "introduced" if next_desc else ("switched" if prev_desc else "none")
        clusters, before_c, after_c = {}, {}, {}
        for c in self.clusters:
            desc = None
            try:
                data = self._read_optional(self.cluster_files(c)["ca_cert"])
                if data:
                    desc = describe_cert(load_certs_pem(data)[0])
            except ValueError:
                pass
            if self._remove_cluster(c):
                clusters[c] = self._cluster_result(c, "removed", ["state=absent"], desc)
                before_c[c], after_c[c] = desc or dict(files=sorted(CLUSTER_FILES)), None
            else:
                clusters[c] = self._cluster_result(c, "absent", [], None)
                clusters[c]["files"] = {}
        result = dict(changed=bool(before_c), pki_dir=self.pki_dir, root=root_desc,
                      previous_root=prev_desc, next_root=next_desc, trust_bundle=bundle,
                      rotation=dict(action="none", window_open=phase != "none", phase=phase,
                                    retired_fingerprint=None),
                      clusters=clusters, summary=self._summary(clusters),
                      unmanaged_clusters=self._unmanaged())
        return result, dict(before=dict(clusters=before_c), after=dict(clusters=after_c))

    @staticmethod
    def _old_bundle(current, previous, nxt, root_status, action, retired):
        """The trust bundle before this run (for the diff)."""
        if action == "introduced":
            return [current.fingerprint]
        if root_status == "switched":
            return [previous.fingerprint, current.fingerprint]
        if retired is not None:
            return [current.fingerprint, retired.fingerprint]
        return [current.fingerprint] + [r.fingerprint for r in (previous, nxt) if r is not None]

    def _check_extra_files(self, cluster):
        d = self.cluster_dir(cluster)
        if not os.path.isdir(d):
            return
        extra = sorted(set(os.listdir(d)) - set(CLUSTER_FILES))
        if extra:
            self.warn("cluster folder %s holds files other than the four Istio needs: %s"
                      % (d, ", ".join(extra)))
