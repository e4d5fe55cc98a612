# -*- coding: utf-8 -*-
"""moto in server mode for the EKS and EC2 tests, behind a thin layer of EKS rules.

A session fixture serves moto's WSGI app on 127.0.0.1 with a free port (port 0) and
stops it at the end; the tests reach it through real boto3 clients, either with
``endpoint_url`` (ec2) or through boto3's own ``AWS_ENDPOINT_URL`` handling (eks).
Credentials are fake ones set through the environment (AWS_ACCESS_KEY_ID=testing ...),
the way boto3's normal chain reads them; the instance-metadata lookup is disabled so
nothing leaves the machine.

moto answers EKS calls at once and is lenient where EKS is not. :class:`EksRules` is a
WSGI middleware in front of moto that refuses what EKS refuses and keeps the timing that
matters to a client (sources: /work/shared/reference/cloud-facts.md, "EKS"):

- a new cluster is ``CREATING`` for a few DescribeCluster polls (no endpoint yet); a node
  group cannot be created until it is ``ACTIVE``: 400 InvalidRequestException
  "Cluster '<name>' is not in ACTIVE status" ("A node group needs an ACTIVE cluster";
  moto's own message for the case);
- a deleted node group stays ``DELETING`` (listed, described) for a few polls, and the
  cluster cannot be deleted while it exists: 409 ResourceInUseException "Cluster has
  nodegroups attached" ("a cluster cannot be deleted while node groups exist");
- the request log (:attr:`EksRules.log`, operation names) lets tests assert that a re-run
  sends no UpdateNodegroupConfig after :meth:`EksRules.autoscaler_moves` changed the
  desired size ("cluster-autoscaler moves a node group's desired size within [min, max]").

Injected failures: :meth:`EksRules.fail` (an error answer to an operation, e.g.
ThrottlingException, ResourceLimitExceededException) and :meth:`EksRules.fail_creation`
(the cluster ends ``FAILED`` with a health issue).
"""

from __future__ import absolute_import, division, print_function

import io
import json
import re
import threading
from urllib.parse import parse_qs, unquote

import pytest

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
ENDPOINT_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EKS", "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_EC2")
ACCOUNT = "123456789012"  # moto's default account

# (method, path) -> EKS operation name (the EKS REST routes our provider uses)
EKS_ROUTES = [
    ("POST", r"/clusters", "CreateCluster"),
    ("GET", r"/clusters", "ListClusters"),
    ("GET", r"/clusters/(?P<cluster>[^/]+)", "DescribeCluster"),
    ("DELETE", r"/clusters/(?P<cluster>[^/]+)", "DeleteCluster"),
    ("POST", r"/clusters/(?P<cluster>[^/]+)/updates", "UpdateClusterVersion"),
    ("POST", r"/clusters/(?P<cluster>[^/]+)/update-config", "UpdateClusterConfig"),
    ("POST", r"/clusters/(?P<cluster>[^/]+)/node-groups", "CreateNodegroup"),
    ("GET", r"/clusters/(?P<cluster>[^/]+)/node-groups", "ListNodegroups"),
    ("GET", r"/clusters/(?P<cluster>[^/]+)/node-groups/(?P<nodegroup>[^/]+)", "DescribeNodegroup"),
    ("DELETE", r"/clusters/(?P<cluster>[^/]+)/node-groups/(?P<nodegroup>[^/]+)", "DeleteNodegroup"),
    ("POST", r"/clusters/(?P<cluster>[^/]+)/node-groups/(?P<nodegroup>[^/]+)/update-config",
     "UpdateNodegroupConfig"),
    ("POST", r"/tags/(?P<arn>.+)", "TagResource"),
    ("DELETE", r"/tags/(?P<arn>.+)", "UntagResource"),
    ("GET", r"/tags/(?P<arn>.+)", "ListTagsForResource"),
]
EKS_ROUTES = [(m, re.compile("^%s$" % p), op) for m, p, op in EKS_ROUTES]
CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/\d+/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request")
STATUS = {"InvalidRequestException": 400, "InvalidParameterException": 400,
          "ResourceInUseException": 409, "ResourceNotFoundException": 404,
          "ResourceLimitExceededException": 400, "ThrottlingException": 429,
          "ServiceUnavailableException": 503}


def eks_operation(method, path):
    for m, pattern, op in EKS_ROUTES:
        match = pattern.match(path)
        if m == method and match:
            return op, dict((k, unquote(v)) for k, v in match.groupdict().items())
    return "%s %s" % (method, path), {}


def aws_error(code, message, status=None):
    """(status, headers, body) of an EKS (rest-json) error answer."""
    body = json.dumps({"__type": code, "message": message}).encode("utf-8")
    return (status or STATUS.get(code, 400),
            [("Content-Type", "application/json"), ("x-amzn-ErrorType", code)], body)


class EksRules:
    """WSGI middleware in front of moto's app: EKS rules, injected failures, a request log."""

    #: DescribeCluster polls a new cluster stays CREATING; DescribeNodegroup polls a
    #: deleted node group stays DELETING
    create_polls = 2
    delete_polls = 2

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.log = []          # EKS operation names, in order
        self.sts_log = []      # STS actions (GetCallerIdentity via a presigned URL...)
        self.faults = []
        self.creating = {}     # cluster -> polls left in CREATING
        self.failing = {}      # cluster -> health issue, for the next creation
        self.failed = {}       # cluster -> health issue (status FAILED)
        self.deleting = {}     # (cluster, nodegroup) -> [polls left, DELETING body]

    # --- what tests call -------------------------------------------------------------------
    def fail(self, operation, code, message, times=1, status=None):
        """Answer the next ``times`` calls of ``operation`` with the error ``code``."""
        self.faults.append(dict(op=operation, code=code, message=message, times=times, status=status))

    def fail_creation(self, cluster, code="InsufficientFreeAddresses",
                      message="One or more of the subnets does not have enough available IP addresses"):
        """The next creation of ``cluster`` ends FAILED with this health issue."""
        self.failing[cluster] = {"code": code, "message": message, "resourceIds": []}

    def writes(self):
        return [op for op in self.log if not op.startswith(("Describe", "List"))]

    @staticmethod
    def autoscaler_moves(cluster, nodegroup, desired, region="us-east-1"):
        """cluster-autoscaler changed the node group's desired size (moto's state, directly)."""
        from moto.eks.models import eks_backends
        ng = eks_backends[ACCOUNT][region].clusters[cluster].nodegroups[nodegroup]
        scaling = dict(ng.scaling_config)
        if not scaling["minSize"] <= desired <= scaling["maxSize"]:
            raise ValueError("the autoscaler keeps desired within [min, max]")
        scaling["desiredSize"] = desired
        ng.scaling_config = scaling

    # --- WSGI ---------------------------------------------------------------------------------
    def __call__(self, environ, start_response):
        auth = environ.get("HTTP_AUTHORIZATION", "")
        scope = CREDENTIAL_SCOPE.search(auth)
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if scope is None and query.get("X-Amz-Credential"):
            scope = CREDENTIAL_SCOPE.search("Credential=" + query["X-Amz-Credential"][0])
        service = scope.group("service") if scope else None
        if service == "sts":
            self.sts_log.append((query.get("Action") or ["?"])[0])
            if not auth:
                return self._presigned_sts(environ, start_response, query)
        if service != "eks":
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        op, params = eks_operation(method, path)
        with self.lock:
            self.log.append(op)
            answer = self._before(op, params, body)
        if answer is None:
            status, headers, out = self._call_app(environ)
            with self.lock:
                status, headers, out = self._after(op, params, body, status, headers, out)
        else:
            status, headers, out = answer
        start_response("%d %s" % (status, "OK" if status < 400 else "Error"), headers)
        return [out]

    def _presigned_sts(self, environ, start_response, query):
        """A presigned STS URL (an EKS token): STS checks that the signed headers were sent
        (aws-iam-authenticator's server sends ``x-k8s-aws-id``); moto routes by the
        Authorization header, so give it one carrying the same credential scope."""
        signed = (query.get("X-Amz-SignedHeaders") or [""])[0].split(";")
        missing = [h for h in signed if h != "host" and "HTTP_" + h.upper().replace("-", "_") not in environ]
        if missing:
            body = ("<ErrorResponse><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code><Message>"
                    "signed header %s missing</Message></Error></ErrorResponse>" % ",".join(missing)).encode()
            start_response("403 Forbidden", [("Content-Type", "text/xml")])
            return [body]
        environ["HTTP_AUTHORIZATION"] = "AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=%s, Signature=%s" % (
            query["X-Amz-Credential"][0], ";".join(signed), (query.get("X-Amz-Signature") or [""])[0])
        return self.app(environ, start_response)

    def _call_app(self, environ):
        seen = {}

        def start(status, headers, exc_info=None):
            seen["status"], seen["headers"] = int(status.split()[0]), list(headers)
        out = b"".join(self.app(environ, start))
        headers = [(k, v) for k, v in seen["headers"] if k.lower() != "content-length"]
        return seen["status"], headers, out

    def _before(self, op, params, body):
        for fault in self.faults:
            if fault["times"] and fault["op"] == op:
                fault["times"] -= 1
                return aws_error(fault["code"], fault["message"], fault["status"])
        cluster = params.get("cluster")
        if op == "CreateNodegroup" and (cluster in self.creating or cluster in self.failed):
            return aws_error("InvalidRequestException", "Cluster '%s' is not in ACTIVE status" % cluster)
        if op == "DeleteCluster" and any(c == cluster for c, _ng in self.deleting):
            return aws_error("ResourceInUseException", "Cluster has nodegroups attached")
        key = (cluster, params.get("nodegroup"))
        if op == "DescribeNodegroup" and key in self.deleting:
            entry = self.deleting[key]
            entry[0] -= 1
            if entry[0] < 0:
                del self.deleting[key]
                return None  # gone: moto answers 404
            return 200, [("Content-Type", "application/json")], json.dumps({"nodegroup": entry[1]}).encode()
        if op == "DeleteNodegroup" and key in self.deleting:
            return aws_error("ResourceInUseException", "Nodegroup %s is already being deleted" % key[1])
        return None

    def _after(self, op, params, body, status, headers, out):
        cluster = params.get("cluster")
        if status >= 400:
            return status, headers, out
        if op == "CreateCluster":
            name = json.loads(body or b"{}").get("name")
            self.creating[name] = self.create_polls
            if name in self.failing:
                self.failed[name] = self.failing.pop(name)
        elif op == "DescribeCluster" and (cluster in self.creating or cluster in self.failed):
            doc = json.loads(out)
            if cluster in self.failed:
                doc["cluster"]["status"] = "FAILED"
                doc["cluster"]["health"] = {"issues": [self.failed[cluster]]}
            else:
                self.creating[cluster] -= 1
                if self.creating[cluster] < 0:
                    del self.creating[cluster]
                else:
                    doc["cluster"]["status"] = "CREATING"
                    doc["cluster"].pop("endpoint", None)
                    doc["cluster"].pop("certificateAuthority", None)
            out = json.dumps(doc).encode("utf-8")
        elif op == "DeleteCluster":
            self.creating.pop(cluster, None)
            self.failed.pop(cluster, None)
        elif op == "DeleteNodegroup":
            doc = json.loads(out)
            doc["nodegroup"]["status"] = "DELETING"
            self.deleting[(cluster, params["nodegroup"])] = [self.delete_polls, doc["nodegroup"]]
            out = json.dumps(doc).encode("utf-8")
        elif op == "ListNodegroups":
            doc = json.loads(out)
            doc["nodegroups"] = sorted(set(doc.get("nodegroups") or []) | set(
                ng for c, ng in self.deleting if c == cluster))
            out = json.dumps(doc).encode("utf-8")
        return status, headers, out


class MotoServer:
    """moto's WSGI app behind :class:`EksRules`, served by werkzeug on 127.0.0.1:<free port>."""

    def __init__(self):
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication, MotoRequestHandler, create_backend_app)
        from werkzeug.serving import make_server
        self.rules = EksRules(DomainDispatcherApplication(create_backend_app))
        self._server = make_server("127.0.0.1", 0, self.rules, threaded=True,
                                   request_handler=MotoRequestHandler)
        self.url = "http://127.0.0.1:%d" % self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def no_aws_credentials(monkeypatch, tmp_path):
    """Make boto3's credential chain find nothing (and never ask the metadata service)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN",
                 "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN") + ENDPOINT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


#: the running server (the fixtures below share it; test modules import those fixtures only)
_SERVER = {}


@pytest.fixture(scope="session")
def moto_endpoint():
    """URL of a moto server (behind the EKS rules) running in this process on 127.0.0.1."""
    server = MotoServer()
    _SERVER["server"] = server
    try:
        yield server.url
    finally:
        _SERVER.pop("server", None)
        server.stop()


@pytest.fixture
def aws_env(monkeypatch, tmp_path, moto_endpoint):
    """Fake credentials in the environment and a fresh moto state (and EKS rules) per test."""
    no_aws_credentials(monkeypatch, tmp_path)
    for k, v in FAKE_AWS_ENV.items():
        monkeypatch.setenv(k, v)
    import requests
    requests.post(moto_endpoint + "/moto-api/reset", timeout=10)
    _SERVER["server"].rules.reset()
    return moto_endpoint


@pytest.fixture
def eks_rules(moto_endpoint):
    """The EKS rule layer in front of the moto server (reset by ``aws_env``)."""
    return _SERVER["server"].rules
