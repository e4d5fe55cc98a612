# -*- coding: utf-8 -*-
"""The sim's own CA and HTTPS server certificate, and the GCP service-account key (cryptography)."""

from __future__ import absolute_import, division, print_function

import base64
import datetime
import ipaddress
import json
import os

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _write(path, data, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def make_server_pki(work_dir):
    """Write ca.pem, server.pem, server-key.pem under ``work_dir``; return their paths."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meshfleet cloudsim CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    paths = dict(
        ca=_write(os.path.join(work_dir, "ca.pem"), ca.public_bytes(pem), 0o644),
        cert=_write(os.path.join(work_dir, "server.pem"), cert.public_bytes(pem), 0o644),
        key=_write(os.path.join(work_dir, "server-key.pem"), key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())))
    return paths


class ServiceAccountKey:
    """A GCP service-account key (RSA 2048) written as the JSON key file google-auth reads."""

    def __init__(self, project, token_uri, name="meshfleet-e2e"):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.project = project
        self.client_email = "%s@%s.iam.gserviceaccount.com" % (name, project)
        self.key_id = os.urandom(20).hex()
        self.token_uri = token_uri

    def info(self):
        return {
            "type": "service_account", "project_id": self.project, "private_key_id": self.key_id,
            "private_key": self.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()).decode(),
            "client_email": self.client_email, "client_id": "1000000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": self.token_uri,
        }

    def write(self, path):
        return _write(path, json.dumps(self.info(), indent=1).encode())

    def verify_jwt(self, token):
        """The claims of an RS256 JWT signed by this key, or raise ValueError."""
        parts = token.split(".")
        if len(parts) != 3:
            raise ValueError("not a JWT")

        def b64(s):
            return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
        header = json.loads(b64(parts[0]))
        if header.get("alg") != "RS256":
            raise ValueError("JWT alg %s, expected RS256" % header.get("alg"))
        try:
            self.key.public_key().verify(b64(parts[2]), ("%s.%s" % (parts[0], parts[1])).encode(),
                                         padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise ValueError("JWT signature does not verify with the service account's key")
        return json.loads(b64(parts[1]))
