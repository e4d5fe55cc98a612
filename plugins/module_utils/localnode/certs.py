# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Client certificates of a real node (kubelet: ``system:node:<node>`` in ``system:nodes``, so
the API server's Node authorizer applies; kube-proxy: ``system:kube-proxy``, bound to
``system:node-proxier`` by the default RBAC), signed by the cluster's CA that kwokctl generated
(``<kwok folder>/pki/ca.crt`` and ``ca.key``)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import warnings

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    HAS_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover - reported when a real node is created
    HAS_CRYPTOGRAPHY = False

VALIDITY_DAYS = 365


def _require():
    if not HAS_CRYPTOGRAPHY:
        raise MeshfleetError("a real node's certificates need the Python cryptography package on the controller")


def subject_of(user, groups=()):
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
    return x509.Name(attrs)


def node_identity(node):
    return "system:node:%s" % node, ("system:nodes",)


PROXY_IDENTITY = ("system:kube-proxy", ())


def _load(pem):
    with warnings.catch_warnings():
        # kwokctl's CA has a negative serial number, which cryptography warns about
        warnings.simplefilter("ignore")
        return x509.load_pem_x509_certificate(pem)


def sign_client(ca_cert_pem, ca_key_pem, user, groups=(), now=None):
    """(cert PEM, key PEM) of a new client certificate for ``user`` in ``groups``."""
    _require()
    ca_cert = _load(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = now or datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(subject_of(user, groups))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(min(now + datetime.timedelta(days=VALIDITY_DAYS), ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def identity_of(cert_pem):
    """(user, [groups]) a client certificate authenticates as."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (cn[0].value if cn else None), [o.value for o in orgs]


def is_signed_by(cert_pem, ca_cert_pem):
    cert = x509.load_pem_x509_certificate(cert_pem)
    ca = _load(ca_cert_pem)
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:  # InvalidSignature, a key type mismatch
        return False
    return True
