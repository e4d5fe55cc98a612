# -*- coding: utf-8 -*-
"""A fake GKE v1 REST API (and Google OAuth2 token endpoint) behind requests-mock.

GCP has no emulator for GKE, so the GKE tests run the real google-cloud-container
``ClusterManagerClient`` with its REST transport and real google-auth service-account
credentials; requests-mock intercepts the HTTP requests (``requests`` adapters) and
this stateful model answers them with the shapes of container.googleapis.com/v1:

- ``GET .../clusters/<c>``: the Cluster JSON, or a 404 ``NOT_FOUND`` error body.
- ``POST .../clusters`` / ``PUT .../clusters/<c>`` / ``DELETE .../clusters/<c>`` /
  ``POST .../nodePools`` / ``POST .../nodePools/<p>:setAutoscaling``: an Operation
  (``RUNNING``) that turns ``DONE`` after one ``GET .../operations/<op>`` poll.
- ``POST .../clusters`` on an existing name: 409 ``ALREADY_EXISTS``; a change while an
  operation runs: 400 ``FAILED_PRECONDITION`` (what GKE answers).
- ``POST https://oauth2.googleapis.com/token``: an access token for the JWT grant.
- Injected faults (``fail``), e.g. 429 ``RESOURCE_EXHAUSTED`` with ``Retry-After``.
"""

from __future__ import absolute_import, division, print_function

import copy
import itertools
import json
import re
from urllib.parse import parse_qs, urlparse

import requests_mock

HOST = "container.googleapis.com"
TOKEN_URI = "https://oauth2.googleapis.com/token"
CLUSTER_RE = re.compile(r"^/v1/projects/(?P<p>[^/]+)/locations/(?P<l>[^/]+)/clusters(?:/(?P<c>[^/:]+))?"
                        r"(?:/nodePools(?:/(?P<np>[^/:]+))?)?(?::(?P<verb>\w+))?$")
OP_RE = re.compile(r"^/v1/projects/(?P<p>[^/]+)/locations/(?P<l>[^/]+)/operations/(?P<op>[^/]+)$")


def error(status, code, message):
    return status, {"error": {"code": status, "message": message, "status": code}}, {}


class FakeGke:
    def __init__(self):
        self.clusters = {}
        self.operations = {}
        self.log = []
        self.bodies = []
        self.faults = []
        self.tokens_issued = 0
        self.jwt_issuers = set()
        self._ids = itertools.count(1)

    def fail(self, method, path_contains, status, code, message="injected", headers=None, times=1):
        self.faults.append(dict(method=method, path=path_contains, status=status, code=code,
                                message=message, headers=headers or {}, times=times))

    @property
    def writes(self):
        return [(m, p) for m, p in self.log if m in ("POST", "PUT", "DELETE", "PATCH")]

    # --- requests-mock plumbing ------------------------------------------------------------
    def install(self, mocker):
        mocker.add_matcher(self._match)

    def _match(self, request):
        url = urlparse(request.url)
        if request.url.startswith(TOKEN_URI):
            return self._respond(request, *self._token(request))
        if url.netloc != HOST:
            return None
        status, body, headers = self.handle(request.method, url.path, request)
        return self._respond(request, status, body, headers)

    @staticmethod
    def _respond(request, status, body, headers=None):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        return requests_mock.create_response(request, status_code=status, json=body, headers=h)

    def _token(self, request):
        form = parse_qs(request.text or "")
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"] or not form.get("assertion"):
            return 400, {"error": "invalid_grant"}, {}
        self.tokens_issued += 1
        return 200, {"access_token": "ya29.fake-access-token-%d" % self.tokens_issued,
                     "expires_in": 3599, "token_type": "Bearer"}, {}

    def _authorized(self, header):
        """An access token from the fake token endpoint, or a self-signed service-account JWT
        (what google-auth sends when the client asks for always_use_jwt_access)."""
        if not header.startswith("Bearer "):
            return False
        token = header[len("Bearer "):]
        if token.startswith("ya29.fake-access-token"):
            return True
        parts = token.split(".")
        if len(parts) != 3:
            return False
        import base64
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        self.jwt_issuers.add(payload.get("iss"))
        return payload.get("iss", "").endswith(".iam.gserviceaccount.com")

    # --- the service -----------------------------------------------------------------------
    def handle(self, method, path, request):
        self.log.append((method, path))
        if not self._authorized(request.headers.get("Authorization", "")):
            return error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        for fault in self.faults:
            if fault["times"] and fault["method"] == method and fault["path"] in path:
                fault["times"] -= 1
                status, body, _h = error(fault["status"], fault["code"], fault["message"])
                return status, body, fault["headers"]
        body = json.loads(request.text) if request.text else None
        if method in ("POST", "PUT", "DELETE"):
            self.bodies.append((method, path, body))
        m = OP_RE.match(path)
        if m and method == "GET":
            return self._operation(m.group("p"), m.group("l"), m.group("op"))
        m = CLUSTER_RE.match(path)
        if not m:
            return error(404, "NOT_FOUND", "no route %s %s" % (method, path))
        p, loc, c, np, verb = m.group("p"), m.group("l"), m.group("c"), m.group("np"), m.group("verb")
        if c is None and method == "POST":
            return self._create(p, loc, body["cluster"])
        key = (p, loc, c)
        cluster = self.clusters.get(key)
        if cluster is None:
            return error(404, "NOT_FOUND", "Not found: projects/%s/locations/%s/clusters/%s." % key)
        if method == "GET" and "/nodePools" not in path:
            return 200, cluster, {}
        if self._busy(key):
            return error(400, "FAILED_PRECONDITION",
                         "Cluster is running incompatible operation %s." % self._busy(key)["name"])
        if method == "DELETE" and "/nodePools" not in path:
            cluster["status"] = "STOPPING"
            return 200, self._op(key, "DELETE_CLUSTER", lambda: self.clusters.pop(key, None)), {}
        if method == "PUT" and "/nodePools" not in path:
            return self._update(key, cluster, body.get("update") or {})
        if method == "POST" and "/nodePools" in path and np is None:
            pool = self._pool(body["nodePool"])
            cluster["nodePools"].append(pool)
            return 200, self._op(key, "CREATE_NODE_POOL", lambda: pool.update(status="RUNNING")), {}
        if method == "POST" and np and verb == "setAutoscaling":
            pool = next((x for x in cluster["nodePools"] if x["name"] == np), None)
            if pool is None:
                return error(404, "NOT_FOUND", "Not found: node pool %s." % np)
            pool["autoscaling"] = body.get("autoscaling") or {}
            return 200, self._op(key, "SET_NODE_POOL_MANAGEMENT", lambda: None), {}
        return error(400, "INVALID_ARGUMENT", "unsupported %s %s" % (method, path))

    def _busy(self, key):
        return next((o for o in self.operations.values() if o["key"] == key and o["status"] == "RUNNING"), None)

    def _op(self, key, kind, done):
        name = "operation-17000000%05d-fake" % next(self._ids)
        op = dict(key=key, name=name, status="RUNNING", polls=1, done=done, kind=kind)
        self.operations[name] = op
        return self._op_json(op)

    def _op_json(self, op):
        p, loc, c = op["key"]
        return {"name": op["name"], "zone": loc, "operationType": op["kind"], "status": op["status"],
                "selfLink": "https://container.googleapis.com/v1/projects/%s/locations/%s/operations/%s"
                            % (p, loc, op["name"]),
                "targetLink": "https://container.googleapis.com/v1/projects/%s/locations/%s/clusters/%s"
                              % (p, loc, c),
                "startTime": "2026-01-01T00:00:00Z"}

    def _operation(self, p, loc, name):
        op = self.operations.get(name)
        if op is None:
            return error(404, "NOT_FOUND", "Not found: operation %s." % name)
        if op["status"] == "RUNNING":
            if op["polls"]:
                op["polls"] -= 1
            else:
                op["done"]()
                op["status"] = "DONE"
        return 200, self._op_json(op), {}

    @staticmethod
    def _pool(body):
        pool = copy.deepcopy(body)
        pool.setdefault("config", {}).setdefault("machineType", "e2-medium")
        pool["config"].setdefault("diskSizeGb", 100)
        pool.setdefault("initialNodeCount", 3)
        pool["status"] = "PROVISIONING"
        pool["version"] = "1.33.5-gke.1000000"
        return pool

    def _create(self, p, loc, body):
        key = (p, loc, body["name"])
        if key in self.clusters:
            return error(409, "ALREADY_EXISTS", "Already exists: projects/%s/locations/%s/clusters/%s." % key)
        version = body.get("initialClusterVersion") or "1.33"
        cluster = {
            "name": body["name"], "location": loc, "status": "PROVISIONING",
            "network": body.get("network", "default"), "subnetwork": body.get("subnetwork", "default"),
            "initialClusterVersion": version,
            "currentMasterVersion": version if version.count(".") >= 2 else version + ".5-gke.1000000",
            "releaseChannel": body.get("releaseChannel") or {"channel": "REGULAR"},
            "nodePools": [self._pool(x) for x in body.get("nodePools") or []],
            "selfLink": "https://container.googleapis.com/v1/projects/%s/locations/%s/clusters/%s" % key,
        }
        if body.get("workloadIdentityConfig"):
            cluster["workloadIdentityConfig"] = body["workloadIdentityConfig"]
        self.clusters[key] = cluster

        def done():
            cluster.update(status="RUNNING", endpoint="34.0.0.%d" % len(self.clusters),
                           masterAuth={"clusterCaCertificate": "RkFLRS1HS0UtQ0E="})
            for pool in cluster["nodePools"]:
                pool["status"] = "RUNNING"
        return 200, self._op(key, "CREATE_CLUSTER", done), {}

    def _update(self, key, cluster, update):
        def done():
            if "desiredMasterVersion" in update:
                v = update["desiredMasterVersion"]
                cluster["currentMasterVersion"] = v if v.count(".") >= 2 else v + ".3-gke.2000000"
            if "desiredReleaseChannel" in update:
                cluster["releaseChannel"] = update["desiredReleaseChannel"]
            if "desiredWorkloadIdentityConfig" in update:
                cluster["workloadIdentityConfig"] = update["desiredWorkloadIdentityConfig"]
            cluster["status"] = "RUNNING"
        cluster["status"] = "RECONCILING"
        return 200, self._op(key, "UPDATE_CLUSTER", done), {}
