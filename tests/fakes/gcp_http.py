# -*- coding: utf-8 -*-
"""A fake GKE v1 REST API (and Google OAuth2 token endpoint), separable from its transport.

GCP has no emulator for GKE, so the GKE tests run the real google-cloud-container
``ClusterManagerClient`` with its REST transport and real google-auth service-account
credentials against :class:`FakeGke`, a stateful model answering with the shapes of
container.googleapis.com/v1. The model is transport-free::

    status, headers, body = fake.handle(method, path, query, body, request_headers)

(``body`` in: bytes/str/None; ``body`` out: a JSON-able dict). Two transports use it:
:meth:`FakeGke.install` (a requests-mock matcher for ``container.googleapis.com``,
``oauth2.googleapis.com`` and any ``api_endpoint`` host given) and :func:`serve` (a real
HTTP server on 127.0.0.1, for subprocesses such as the kubeconfig credential plugin and
for ``settings.api_endpoint: http://127.0.0.1:<port>``).

Rules the model enforces (sources: /work/shared/reference/cloud-facts.md, "GKE", and the
API reference of projects.locations.clusters / operations):

- ``GET .../clusters/<c>``: the Cluster JSON, or a 404 ``NOT_FOUND`` error body.
- every mutation returns an Operation (``RUNNING``) that turns ``DONE`` after one
  ``GET .../operations/<op>`` poll; a DONE operation may carry ``error`` (injected with
  :meth:`FakeGke.fail_operation`; a failed cluster creation leaves the cluster ``ERROR``).
- ``POST .../clusters`` on an existing name: 409 ``ALREADY_EXISTS``; a change while an
  operation runs on the cluster: 400 ``FAILED_PRECONDITION``.
- a regional location (``europe-west1``) spreads each node pool over 3 zones and
  ``initialNodeCount`` is per zone: the cluster's ``currentNodeCount`` is 3x; a zonal
  location (``europe-west1-b``) has 1 zone.
- regional CPU quota (:attr:`FakeGke.cpu_quota`): a creation needing more vCPUs than
  available is refused with 403 "Insufficient regional quota to satisfy request: resource
  "CPUS" ..." (the answer gcloud shows for a quota shortfall).
- ``POST /token``: an access token for the JWT-bearer grant.
- Injected faults (:meth:`FakeGke.fail`), e.g. 429 ``RESOURCE_EXHAUSTED`` with ``Retry-After``.
"""

from __future__ import absolute_import, division, print_function

import base64
import contextlib
import copy
import itertools
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

HOST = "container.googleapis.com"
TOKEN_HOST = "oauth2.googleapis.com"
TOKEN_URI = "https://oauth2.googleapis.com/token"
TOKEN_PATH = "/token"
CLUSTER_RE = re.compile(r"^/v1/projects/(?P<p>[^/]+)/locations/(?P<l>[^/]+)/clusters(?:/(?P<c>[^/:]+))?"
                        r"(?:/nodePools(?:/(?P<np>[^/:]+))?)?(?::(?P<verb>\w+))?$")
OP_RE = re.compile(r"^/v1/projects/(?P<p>[^/]+)/locations/(?P<l>[^/]+)/operations/(?P<op>[^/]+)$")
REGIONAL_ZONES = ("b", "c", "d")


def error(status, code, message):
    return status, {"error": {"code": status, "message": message, "status": code}}, {}


def zones_of(location):
    """A region (two dash-separated parts) has 3 zones; a zone is its own single zone."""
    if location.count("-") >= 2:
        return [location]
    return ["%s-%s" % (location, z) for z in REGIONAL_ZONES]


def vcpus(machine_type):
    m = re.search(r"-(\d+)$", machine_type or "")
    return int(m.group(1)) if m else 2  # e2-small / e2-medium: 2 shared vCPUs


class FakeGke:
    def __init__(self):
        self.clusters = {}
        self.operations = {}
        self.log = []
        self.bodies = []
        self.faults = []
        self.op_faults = []
        self.tokens_issued = 0
        self.jwt_issuers = set()
        #: vCPUs available per region (None: no limit)
        self.cpu_quota = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def fail(self, method, path_contains, status, code, message="injected", headers=None, times=1):
        self.faults.append(dict(method=method, path=path_contains, status=status, code=code,
                                message=message, headers=headers or {}, times=times))

    def fail_operation(self, kind, message, code=13):
        """The next operation of ``kind`` (CREATE_CLUSTER ...) ends DONE with this error."""
        self.op_faults.append(dict(kind=kind, message=message, code=code))

    def finish_operations(self):
        """Time passes: every RUNNING operation ends (DONE, or DONE with its injected error)."""
        with self._lock:
            for op in list(self.operations.values()):
                while op["status"] == "RUNNING":
                    self._operation(None, None, op["name"])

    @property
    def writes(self):
        return [(m, p) for m, p in self.log if m in ("POST", "PUT", "DELETE", "PATCH")]

    # --- transports ------------------------------------------------------------------------
    def install(self, mocker, hosts=()):
        """Answer requests-mock'ed ``requests`` calls to GKE, the token endpoint and ``hosts``."""
        import requests_mock
        served = set((HOST, TOKEN_HOST) + tuple(hosts))

        def match(request):
            url = urlparse(request.url)
            if url.netloc not in served:
                return None
            status, body, headers = self.handle(request.method, url.path, url.query, request.body,
                                                request.headers)
            h = {"Content-Type": "application/json"}
            h.update(headers or {})
            return requests_mock.create_response(request, status_code=status, json=body, headers=h)
        mocker.add_matcher(match)

    # --- the service -----------------------------------------------------------------------
    def handle(self, method, path, query=None, body=None, headers=None):
        """One HTTP request -> (status, JSON-able body, response headers)."""
        with self._lock:
            return self._handle(method, path, query, body, headers or {})

    def _handle(self, method, path, query, raw, headers):
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8")
        if path == TOKEN_PATH and method == "POST":
            return self._token(raw)
        self.log.append((method, path))
        if not self._authorized(headers.get("Authorization", "") or headers.get("authorization", "")):
            return error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        for fault in self.faults:
            if fault["times"] and fault["method"] == method and fault["path"] in path:
                fault["times"] -= 1
                status, body, _h = error(fault["status"], fault["code"], fault["message"])
                return status, body, fault["headers"]
        body = json.loads(raw) if raw else None
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
        if cluster["status"] == "ERROR":
            return error(400, "FAILED_PRECONDITION", "Cluster %s is in ERROR state; it can only be deleted." % c)
        if method == "PUT" and "/nodePools" not in path:
            return self._update(key, cluster, body.get("update") or {})
        if method == "POST" and "/nodePools" in path and np is None:
            pool = self._pool(body["nodePool"], loc)
            cluster["nodePools"].append(pool)

            def added():
                pool.update(status="RUNNING")
                self._count_nodes(cluster)
            return 200, self._op(key, "CREATE_NODE_POOL", added), {}
        if method == "POST" and np and verb == "setAutoscaling":
            pool = next((x for x in cluster["nodePools"] if x["name"] == np), None)
            if pool is None:
                return error(404, "NOT_FOUND", "Not found: node pool %s." % np)
            pool["autoscaling"] = body.get("autoscaling") or {}
            return 200, self._op(key, "SET_NODE_POOL_MANAGEMENT", lambda: None), {}
        return error(400, "INVALID_ARGUMENT", "unsupported %s %s" % (method, path))

    def _token(self, raw):
        form = parse_qs(raw or "")
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
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        self.jwt_issuers.add(payload.get("iss"))
        return payload.get("iss", "").endswith(".iam.gserviceaccount.com")

    def _busy(self, key):
        return next((o for o in self.operations.values() if o["key"] == key and o["status"] == "RUNNING"), None)

    def _op(self, key, kind, done, failed=None):
        name = "operation-17000000%05d-fake" % next(self._ids)
        fault = next((f for f in self.op_faults if f["kind"] == kind), None)
        if fault:
            self.op_faults.remove(fault)
        op = dict(key=key, name=name, status="RUNNING", polls=1, done=done, kind=kind, fault=fault,
                  failed=failed)
        self.operations[name] = op
        return self._op_json(op)

    def _op_json(self, op):
        p, loc, c = op["key"]
        doc = {"name": op["name"], "zone": loc, "operationType": op["kind"], "status": op["status"],
               "selfLink": "https://container.googleapis.com/v1/projects/%s/locations/%s/operations/%s"
                           % (p, loc, op["name"]),
               "targetLink": "https://container.googleapis.com/v1/projects/%s/locations/%s/clusters/%s"
                             % (p, loc, c),
               "startTime": "2026-01-01T00:00:00Z"}
        if op["status"] == "DONE" and op["fault"]:
            doc["error"] = {"code": op["fault"]["code"], "message": op["fault"]["message"]}
        return doc

    def _operation(self, p, loc, name):
        op = self.operations.get(name)
        if op is None:
            return error(404, "NOT_FOUND", "Not found: operation %s." % name)
        if op["status"] == "RUNNING":
            if op["polls"]:
                op["polls"] -= 1
            else:
                if op["fault"]:
                    if op["failed"]:
                        op["failed"](op["fault"]["message"])
                else:
                    op["done"]()
                op["status"] = "DONE"
        return 200, self._op_json(op), {}

    @staticmethod
    def _pool(body, location):
        pool = copy.deepcopy(body)
        pool.setdefault("config", {}).setdefault("machineType", "e2-medium")
        pool["config"].setdefault("diskSizeGb", 100)
        pool.setdefault("initialNodeCount", 3)
        pool.setdefault("locations", zones_of(location))
        pool["status"] = "PROVISIONING"
        pool["version"] = "1.33.5-gke.1000000"
        return pool

    @staticmethod
    def _count_nodes(cluster):
        cluster["currentNodeCount"] = sum(p["initialNodeCount"] * len(p["locations"])
                                          for p in cluster["nodePools"] if p["status"] == "RUNNING")

    def _cpus_in_use(self, project, location):
        region = location if location.count("-") < 2 else location.rsplit("-", 1)[0]
        used = 0
        for (p, loc, _c), cluster in self.clusters.items():
            if p == project and loc.startswith(region):
                used += sum(vcpus(x["config"]["machineType"]) * x["initialNodeCount"] * len(x["locations"])
                            for x in cluster["nodePools"])
        return used

    def _create(self, p, loc, body):
        key = (p, loc, body["name"])
        if key in self.clusters:
            return error(409, "ALREADY_EXISTS", "Already exists: projects/%s/locations/%s/clusters/%s." % key)
        pools = [self._pool(x, loc) for x in body.get("nodePools") or []]
        if self.cpu_quota is not None:
            need = sum(vcpus(x["config"]["machineType"]) * x["initialNodeCount"] * len(x["locations"])
                       for x in pools)
            available = self.cpu_quota - self._cpus_in_use(p, loc)
            if need > available:
                return error(403, "PERMISSION_DENIED",
                             "Insufficient regional quota to satisfy request: resource \"CPUS\": request requires "
                             "'%.1f' and is short '%.1f'. project has a quota of '%.1f' with '%.1f' available."
                             % (need, need - available, self.cpu_quota, available))
        version = body.get("initialClusterVersion") or "1.33"
        cluster = {
            "name": body["name"], "location": loc, "locations": zones_of(loc), "status": "PROVISIONING",
            "network": body.get("network", "default"), "subnetwork": body.get("subnetwork", "default"),
            "initialClusterVersion": version,
            "currentMasterVersion": version if version.count(".") >= 2 else version + ".5-gke.1000000",
            "releaseChannel": body.get("releaseChannel") or {"channel": "REGULAR"},
            "nodePools": pools,
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
            self._count_nodes(cluster)

        def failed(message):
            # creation died half way: the cluster stays, ERROR, its control plane reachable or not
            cluster.update(status="ERROR", statusMessage=message)
            for pool in cluster["nodePools"]:
                pool["status"] = "ERROR"
        return 200, self._op(key, "CREATE_CLUSTER", done, failed), {}

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


@contextlib.contextmanager
def serve(fake):
    """Serve ``fake`` over real HTTP on 127.0.0.1 (free port); yields the base URL."""
    class Handler(BaseHTTPRequestHandler):
        def _any(self):
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            status, body, headers = fake.handle(self.command, url.path, url.query, raw, dict(self.headers))
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
