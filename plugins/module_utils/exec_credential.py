# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Meshfleet's kubeconfig credential plugin for EKS and GKE (client.authentication.k8s.io).

kubectl, client-go, the kubernetes Python client and :class:`.kube_rest.KubeRest` run the
command of a kubeconfig user's ``exec`` entry whenever they need a token, and read an
``ExecCredential`` from its stdout::

    {"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
     "status": {"token": "...", "expirationTimestamp": "2026-01-01T10:14:00Z"}}

so a kubeconfig outlives the 15-minute EKS token and the 1-hour GKE access token. This
file is that command; it needs Python with boto3 (eks) or google-auth (gke), no aws or
gcloud CLI::

    python exec_credential.py eks --cluster NAME --region R [--endpoint-url URL] [--profile P]
    python exec_credential.py gke [--credentials-file F]

- ``eks``: a presigned STS ``GetCallerIdentity`` URL signed with the header
  ``x-k8s-aws-id: <cluster>``, base64url without padding, prefixed ``k8s-aws-v1.`` (what
  aws-iam-authenticator and ``aws eks get-token`` print). The URL is valid 60 s and EKS
  accepts the token for 15 minutes: the expiration says 14. ``--endpoint-url`` sends STS
  elsewhere; without it boto3 reads ``AWS_ENDPOINT_URL_STS`` / ``AWS_ENDPOINT_URL`` itself.
- ``gke``: an OAuth2 access token of the service-account key ``--credentials-file`` (or of
  the application default credentials), with the token's own expiry.

Modules run from an AnsiballZ zip, so no file of the collection is on disk where the
kubeconfig is read later: :func:`install_script` writes this file's source next to the
kubeconfig and :func:`exec_spec` runs it with the Python that wrote it (``sys.executable``,
which has boto3/google-auth since the module itself needed them). The file therefore
imports only the standard library at the top and runs on its own (``__main__``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import base64
import datetime
import json
import os
import sys

API_VERSION = "client.authentication.k8s.io/v1beta1"
K8S_AWS_ID_HEADER = "x-k8s-aws-id"
TOKEN_PREFIX = "k8s-aws-v1."
#: a presigned URL lives 60 s; EKS honours the token for 15 minutes (aws eks get-token says 14)
TOKEN_URL_EXPIRES = 60
EKS_TOKEN_LIFETIME = 14 * 60
GKE_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
SCRIPT_NAME = "meshfleet-credential.py"

#: environment variables copied from the writer's environment into the exec entry, when set
EKS_CARRIED_ENV = ("AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL")
GKE_CARRIED_ENV = ("CLOUDSDK_CONFIG", "GCE_METADATA_HOST", "GCE_METADATA_IP")

#: ``settings.credential_plugin`` values per provider (the first is the default)
PLUGINS = {
    "eks": ("meshfleet", "aws-cli", "aws-iam-authenticator", "static"),
    "gke": ("meshfleet", "gke-gcloud-auth-plugin", "static"),
}


class CredentialError(Exception):
    pass


# --- tokens ---------------------------------------------------------------------------------

def eks_token(session, cluster_name, region, endpoint_url=None):
    """Return a bearer token for ``cluster_name`` (no API call: a presigned STS URL).

    ``endpoint_url`` None lets botocore pick the endpoint (``AWS_ENDPOINT_URL_STS``,
    ``AWS_ENDPOINT_URL``, config files, else the regional STS endpoint)."""
    from botocore.config import Config
    sts = session.client("sts", region_name=region, endpoint_url=endpoint_url or None,
                         config=Config(user_agent_extra="meshfleet"))
    if endpoint_url is None and sts.meta.endpoint_url.rstrip("/") == "https://sts.amazonaws.com":
        # EKS wants the regional STS endpoint for regional clusters
        sts = session.client("sts", region_name=region,
                             endpoint_url="https://sts.%s.amazonaws.com" % region)

    def retrieve_id(params, context, **kwargs):
        if K8S_AWS_ID_HEADER in params:
            context[K8S_AWS_ID_HEADER] = params.pop(K8S_AWS_ID_HEADER)

    def inject_header(request, **kwargs):
        if K8S_AWS_ID_HEADER in request.context:
            request.headers[K8S_AWS_ID_HEADER] = request.context[K8S_AWS_ID_HEADER]

    sts.meta.events.register("provide-client-params.sts.GetCallerIdentity", retrieve_id)
    sts.meta.events.register("before-sign.sts.GetCallerIdentity", inject_header)
    url = sts.generate_presigned_url("get_caller_identity",
                                     Params={K8S_AWS_ID_HEADER: cluster_name},
                                     ExpiresIn=TOKEN_URL_EXPIRES, HttpMethod="GET")
    encoded = base64.urlsafe_b64encode(url.encode("utf-8")).decode("ascii").rstrip("=")
    return TOKEN_PREFIX + encoded


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def rfc3339(when):
    if when.tzinfo is None:  # google-auth keeps naive UTC datetimes
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def eks_credential(cluster, region, endpoint_url=None, profile=None):
    """(token, expiry datetime) for an EKS cluster."""
    try:
        import boto3
        import botocore.exceptions
    except ImportError:
        raise CredentialError("the eks credential plugin needs the boto3 Python package in %s"
                              % sys.executable)
    try:
        session = boto3.session.Session(region_name=region, profile_name=profile or None)
        if session.get_credentials() is None:
            raise CredentialError("no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
                                  "AWS_SECRET_ACCESS_KEY, or use an instance role)")
        token = eks_token(session, cluster, region, endpoint_url=endpoint_url)
    except botocore.exceptions.BotoCoreError as e:
        raise CredentialError("cannot sign an EKS token: %s" % e)
    return token, _utcnow() + datetime.timedelta(seconds=EKS_TOKEN_LIFETIME)


def gke_credential(credentials_file=None):
    """(access token, expiry datetime) from a credentials file or application default credentials."""
    try:
        import google.auth
        import google.auth.exceptions
        import google.auth.transport.requests
    except ImportError:
        raise CredentialError("the gke credential plugin needs the google-auth Python package in %s"
                              % sys.executable)
    try:
        if credentials_file:
            path = os.path.expanduser(credentials_file)
            with open(path) as f:
                info = json.load(f)
            if info.get("type") == "service_account":
                from google.oauth2 import service_account
                creds = service_account.Credentials.from_service_account_info(info, scopes=GKE_SCOPES)
            else:
                creds, _project = google.auth.load_credentials_from_file(path, scopes=GKE_SCOPES)
        else:
            creds, _project = google.auth.default(scopes=GKE_SCOPES)
        creds.refresh(google.auth.transport.requests.Request())
    except (IOError, OSError, ValueError) as e:
        raise CredentialError("cannot read the Google credentials file %s: %s" % (credentials_file, e))
    except google.auth.exceptions.GoogleAuthError as e:
        raise CredentialError("cannot get a Google access token: %s" % e)
    expiry = creds.expiry or (_utcnow() + datetime.timedelta(minutes=55))
    return creds.token, expiry


def exec_credential(token, expiry, api_version=None):
    """The ExecCredential document kubectl reads."""
    return {"apiVersion": api_version or API_VERSION, "kind": "ExecCredential", "spec": {},
            "status": {"token": token, "expirationTimestamp": rfc3339(expiry)}}


# --- kubeconfig side --------------------------------------------------------------------------

def script_source():
    """This file's source, also when it is imported from an AnsiballZ zip."""
    path = globals().get("__file__")
    if path and os.path.isfile(path):
        with open(path) as f:
            return f.read()
    loader = globals().get("__loader__")
    source = loader.get_source(__name__) if loader is not None else None
    if not source:
        raise CredentialError("cannot read the source of the meshfleet credential plugin")
    return source


def install_script(directory):
    """Write the plugin to ``directory``/meshfleet-credential.py (0600, only when it differs).

    Returns (path, changed)."""
    path = os.path.join(directory, SCRIPT_NAME)
    source = script_source()
    try:
        with open(path) as f:
            if f.read() == source:
                return path, False
    except (IOError, OSError):
        pass
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(source)
    os.chmod(tmp, 0o600)
    os.rename(tmp, path)
    return path, True


def carried_env(names, env=None):
    env = os.environ if env is None else env
    return dict((n, env[n]) for n in names if env.get(n))


def eks_exec_args(cluster, region, endpoint_url=None, profile=None):
    args = ["eks", "--cluster", cluster, "--region", region]
    if endpoint_url:
        args += ["--endpoint-url", endpoint_url]
    if profile:
        args += ["--profile", profile]
    return args


def gke_exec_args(credentials_file=None):
    args = ["gke"]
    if credentials_file:
        args += ["--credentials-file", os.path.abspath(os.path.expanduser(credentials_file))]
    return args


def exec_spec(script, args, env=None, python=None):
    """The kubeconfig ``user.exec`` of the meshfleet plugin (run by ``python``, default
    this interpreter)."""
    python = python or sys.executable
    if not python:
        raise CredentialError("cannot tell which Python runs this module (sys.executable is empty); "
                              "set settings.credential_plugin to another plugin or static")
    spec = {"apiVersion": API_VERSION, "command": python,
            "args": [script] + list(args), "interactiveMode": "Never"}
    if env:
        spec["env"] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    return spec


# --- command line ---------------------------------------------------------------------------

def _parser():
    p = argparse.ArgumentParser(prog=SCRIPT_NAME, description="Meshfleet kubeconfig credential plugin")
    sub = p.add_subparsers(dest="provider")
    e = sub.add_parser("eks", help="a token for an EKS cluster (presigned STS GetCallerIdentity)")
    e.add_argument("--cluster", required=True)
    e.add_argument("--region", required=True)
    e.add_argument("--endpoint-url", default=None,
                   help="the STS endpoint (default: AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, else the regional one)")
    e.add_argument("--profile", default=None)
    g = sub.add_parser("gke", help="a Google OAuth2 access token")
    g.add_argument("--credentials-file", default=None)
    return p


def _requested_api_version(env):
    try:
        info = json.loads(env.get("KUBERNETES_EXEC_INFO") or "{}")
    except ValueError:
        return None
    version = info.get("apiVersion") if isinstance(info, dict) else None
    return version if version in ("client.authentication.k8s.io/v1beta1",
                                  "client.authentication.k8s.io/v1") else None


def main(argv=None, out=None, err=None, env=None):
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    env = os.environ if env is None else env
    args = _parser().parse_args(argv)
    try:
        if args.provider == "eks":
            token, expiry = eks_credential(args.cluster, args.region, args.endpoint_url, args.profile)
        elif args.provider == "gke":
            token, expiry = gke_credential(args.credentials_file)
        else:
            err.write("meshfleet credential plugin: give eks or gke\n")
            return 2
    except CredentialError as e:
        err.write("meshfleet credential plugin (%s): %s\n" % (args.provider, e))
        return 1
    out.write(json.dumps(exec_credential(token, expiry, _requested_api_version(env))) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
