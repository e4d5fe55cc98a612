# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build and write kubeconfig files (dicts -> YAML, 0600), shared by the cluster providers.

A kubeconfig has one cluster, one user and one context here, all named after the
mesh cluster. Users authenticate with a static token, a client certificate, or an
exec credential plugin: Meshfleet's own for EKS and GKE (module_utils/exec_credential.py,
``exec_credential.exec_spec``, the default), or ``gke-gcloud-auth-plugin``,
``aws eks get-token``, ``aws-iam-authenticator``, ``kubelogin`` (:func:`exec_user`).

Static tokens minted by the providers (``credential_plugin: static``: GKE access tokens,
EKS presigned-STS tokens) are short-lived and change on every run; :func:`write_kubeconfig` always writes the
fresh token but only reports a change when something other than the token changed,
so a re-run of a converged cluster stays ``changed=false``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import copy
import os

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover - PyYAML ships with ansible-core
    HAS_YAML = False

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import write_file_atomic

#: user fields whose value changes on every refresh (not a change of the kubeconfig)
VOLATILE_USER_FIELDS = ("token",)


def b64(data):
    """Base64 of ``data`` (str or bytes) as str; kubeconfig ``*-data`` fields want this."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def ca_data(ca):
    """Normalise a CA given as PEM text/bytes or already base64-encoded PEM to base64."""
    if ca is None:
        return None
    if isinstance(ca, bytes):
        ca = ca.decode("utf-8")
    ca = ca.strip()
    if ca.startswith("-----BEGIN"):
        return b64(ca + "\n")
    return ca


def token_user(token):
    return {"token": token}


def cert_user(cert_pem, key_pem):
    return {"client-certificate-data": ca_data(cert_pem), "client-key-data": ca_data(key_pem)}


def exec_user(command, args=None, env=None, install_hint=None, provide_cluster_info=False,
              api_version="client.authentication.k8s.io/v1beta1"):
    """An exec credential plugin user (the tool is run by kubectl / client libraries)."""
    spec = {"apiVersion": api_version, "command": command, "args": list(args or []),
            "interactiveMode": "IfAvailable"}
    if env:
        spec["env"] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    if install_hint:
        spec["installHint"] = install_hint
    if provide_cluster_info:
        spec["provideClusterInfo"] = True
    return {"exec": spec}


def build_kubeconfig(name, server, user, ca=None, insecure=False, namespace=None, context=None):
    """Return a kubeconfig dict with one cluster/user/context named ``name``.

    ``user`` is one of :func:`token_user`, :func:`cert_user`, :func:`exec_user`.
    ``ca`` is PEM (text or bytes) or base64-encoded PEM.
    """
    context = context or name
    cluster = {"server": server}
    if ca:
        cluster["certificate-authority-data"] = ca_data(ca)
    if insecure:
        cluster["insecure-skip-tls-verify"] = True
    ctx = {"cluster": name, "user": name}
    if namespace:
        ctx["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": dict(user)}],
        "contexts": [{"name": context, "context": ctx}],
        "current-context": context,
    }


def dump(config):
    """YAML text of a kubeconfig dict (stable key order for idempotent writes)."""
    return yaml.safe_dump(config, default_flow_style=False, sort_keys=True)


def load(text):
    if not text:
        return None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def load_file(path):
    try:
        with open(path, "r") as f:
            return load(f.read())
    except (IOError, OSError):
        return None


def strip_volatile(config):
    """A copy of ``config`` without the fields that change on every token refresh."""
    if not isinstance(config, dict):
        return config
    config = copy.deepcopy(config)
    for entry in config.get("users") or []:
        user = entry.get("user") or {}
        for field in VOLATILE_USER_FIELDS:
            if field in user:
                user[field] = "<volatile>"
    return config


def current_context(config):
    return (config or {}).get("current-context")


def server_of(config):
    clusters = (config or {}).get("clusters") or []
    return clusters[0].get("cluster", {}).get("server") if clusters else None


def write_kubeconfig(path, config):
    """Write ``config`` (dict or YAML text) to ``path`` with mode 0600.

    Returns True when the file changed in something other than a refreshed token.
    """
    if not isinstance(config, dict):
        parsed = load(config)
        if parsed is None:
            raise ValueError("not a kubeconfig document")
        config = parsed
    old = load_file(path)
    parent = os.path.dirname(path)
    if parent and not os.path.isdir(parent):
        os.makedirs(parent, 0o700)
    wrote = write_file_atomic(path, dump(config), mode=0o600)
    if not wrote:
        return False
    return strip_volatile(old) != strip_volatile(config)
