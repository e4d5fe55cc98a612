# -*- coding: utf-8 -*-
"""A fake Azure Resource Manager behind an azure-core ``HttpTransport``.

Azure has no emulator here, so the AKS tests run the real azure-mgmt-containerservice
SDK (serialization, ARM pipeline, retry policy, bearer-token policy, LRO poller)
over this transport. Instead of sending requests it answers them from a small
stateful model of ``Microsoft.ContainerService/managedClusters`` with the shapes the
real service returns (recorded-shape responses):

- PUT a cluster: 201 (create) / 200 (update) with ``Azure-AsyncOperation`` and
  ``Retry-After``; the operation answers ``InProgress`` once, then ``Succeeded``.
- DELETE: 202 with ``Azure-AsyncOperation`` and ``Location``; 204 when absent.
- GET: 404 ``ResourceNotFound`` ARM error body when absent.
- A PUT/DELETE while an operation runs: 409 ``OperationNotAllowed``.
- ``listClusterUserCredential``: base64 kubeconfig like AKS's.
- Injected faults (``fail``) such as 429 with ``Retry-After`` for throttling.

The transport's ``sleep`` records the delays instead of sleeping, so the SDK's
Retry-After handling is visible and the tests stay fast.
"""

from __future__ import absolute_import, division, print_function

import base64
import copy
import http.client
import itertools
import json
import re
import time
from urllib.parse import urlparse

import requests
from requests.structures import CaseInsensitiveDict

from azure.core.pipeline._tools import is_rest
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import HttpTransport
from azure.core.pipeline.transport._requests_basic import RequestsTransportResponse
from azure.core.rest._requests_basic import RestRequestsTransportResponse

ARM = "https://management.azure.com"
MC_RE = re.compile(r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
                   r"Microsoft\.ContainerService/managedClusters/(?P<name>[^/]+)(?P<action>/[^/]+)?$", re.I)
OP_RE = re.compile(r"^/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.ContainerService/locations/"
                   r"(?P<loc>[^/]+)/(?P<kind>operations|operationresults)/(?P<op>[^/]+)$", re.I)
READ_ONLY = ("provisioningState", "powerState", "fqdn", "currentKubernetesVersion", "azurePortalFQDN",
             "maxAgentPools")


class FakeCredential:
    """A TokenCredential that hands out a static token (no identity endpoint involved)."""

    def __init__(self):
        self.scopes = []

    def get_token(self, *scopes, **kwargs):
        self.scopes.extend(scopes)
        return AccessToken("fake-arm-token", int(time.time()) + 3600)


def arm_error(status, code, message):
    return status, {"Content-Type": "application/json"}, {"error": {"code": code, "message": message}}


class FakeArm:
    """The stateful service model. ``handle`` returns (status, headers, json body or None)."""

    def __init__(self, polls_before_done=1):
        self.clusters = {}
        self.operations = {}
        self.polls_before_done = polls_before_done
        self.log = []          # (method, path) of every request that reached the service
        self.bodies = []       # (method, path, parsed body) of writes
        self.faults = []
        self._ids = itertools.count(1)

    # --- test helpers ------------------------------------------------------------------
    def fail(self, method, path_contains, status, code="Fault", message="injected", headers=None, times=1):
        self.faults.append(dict(method=method, path=path_contains, status=status, code=code,
                                message=message, headers=headers or {}, times=times))

    @property
    def writes(self):
        return [(m, p) for m, p in self.log if m in ("PUT", "POST", "DELETE", "PATCH")
                and not p.endswith("/listClusterUserCredential")]

    # --- dispatch -------------------------------------------------------------------------
    def handle(self, method, url, headers, body):
        path = urlparse(url).path
        self.log.append((method, path))
        assert headers.get("Authorization") == "Bearer fake-arm-token", "no bearer token sent"
        for fault in self.faults:
            if fault["times"] and fault["method"] == method and fault["path"] in path:
                fault["times"] -= 1
                status, hdrs, payload = arm_error(fault["status"], fault["code"], fault["message"])
                hdrs.update(fault["headers"])
                return status, hdrs, payload
        m = OP_RE.match(path)
        if m and method == "GET":
            return self._operation(m.group("op"), m.group("kind"))
        m = MC_RE.match(path)
        if not m:
            return arm_error(404, "InvalidResourceType", "no route for %s %s" % (method, path))
        key = (m.group("sub"), m.group("rg").lower(), m.group("name"))
        action = (m.group("action") or "").lstrip("/")
        data = json.loads(body) if body else None
        if method in ("PUT", "POST", "DELETE", "PATCH"):
            self.bodies.append((method, path, data))
        if action == "listClusterUserCredential" and method == "POST":
            return self._credentials(key)
        if action:
            return arm_error(404, "NotFound", "unknown action %s" % action)
        if method == "GET":
            mc = self.clusters.get(key)
            if mc is None:
                return self._not_found(key)
            return 200, {"Content-Type": "application/json"}, mc
        if method == "PUT":
            return self._put(key, data)
        if method == "DELETE":
            return self._delete(key)
        return arm_error(405, "MethodNotAllowed", method)

    def _not_found(self, key):
        return arm_error(404, "ResourceNotFound",
                         "The Resource 'Microsoft.ContainerService/managedClusters/%s' under resource "
                         "group '%s' was not found." % (key[2], key[1]))

    def _busy(self, key):
        for op in self.operations.values():
            if op["key"] == key and op["status"] == "InProgress":
                return op
        return None

    def _start_op(self, key, kind, location, done):
        op_id = "op-%04d" % next(self._ids)
        self.operations[op_id] = dict(key=key, kind=kind, status="InProgress",
                                      polls=self.polls_before_done, done=done)
        base = "%s/subscriptions/%s/providers/Microsoft.ContainerService/locations/%s" % (
            ARM, key[0], location)
        return op_id, {
            "Azure-AsyncOperation": "%s/operations/%s?api-version=2026-08-01" % (base, op_id),
            "Location": "%s/operationresults/%s?api-version=2026-08-01" % (base, op_id),
            "Retry-After": "1", "Content-Type": "application/json"}

    def _operation(self, op_id, kind):
        op = self.operations.get(op_id)
        if op is None:
            return arm_error(404, "NotFound", "operation %s not found" % op_id)
        if op["status"] == "InProgress":
            if op["polls"] > 0:
                op["polls"] -= 1
            else:
                op["done"]()
                op["status"] = "Succeeded"
        if kind == "operationresults":
            if op["status"] == "InProgress":
                return 202, {"Retry-After": "1", "Location": ""}, None
            return 204, {}, None
        headers = {"Content-Type": "application/json"}
        if op["status"] == "InProgress":
            headers["Retry-After"] = "1"
        return 200, headers, {
            "name": op_id, "status": op["status"], "startTime": "2026-01-01T00:00:00Z"}

    def _put(self, key, data):
        if self._busy(key):
            return arm_error(409, "OperationNotAllowed",
                             "Operation is not allowed because there's an in progress operation on "
                             "managed cluster %s." % key[2])
        props = data.get("properties") or {}
        if not data.get("location"):
            return arm_error(400, "InvalidParameter", "location is required")
        existing = self.clusters.get(key)
        if existing is not None and existing["location"] != data["location"]:
            return arm_error(400, "LocationChangeNotAllowed", "Changing location is not allowed.")
        mc = copy.deepcopy(existing) if existing else {
            "id": "/subscriptions/%s/resourcegroups/%s/providers/Microsoft.ContainerService/managedClusters/%s"
                  % key,
            "name": key[2], "type": "Microsoft.ContainerService/ManagedClusters",
            "location": data["location"], "identity": {"type": "SystemAssigned",
                                                       "principalId": "0000", "tenantId": "1111"},
            "sku": {"name": "Base", "tier": "Free"}, "properties": {}}
        mc["tags"] = data.get("tags") or {}
        stored = mc["properties"]
        for k, v in props.items():
            if k not in READ_ONLY:
                stored[k] = copy.deepcopy(v)
        stored.setdefault("kubernetesVersion", "1.33.2")
        stored.setdefault("networkProfile", {"networkPlugin": "kubenet", "podCidr": "10.244.0.0/16",
                                             "serviceCidr": "10.0.0.0/16", "dnsServiceIP": "10.0.0.10"})
        for pool in stored.get("agentPoolProfiles") or []:
            pool["provisioningState"] = "Creating" if existing is None else "Updating"
        stored["provisioningState"] = "Creating" if existing is None else "Updating"
        self.clusters[key] = mc

        def done():
            c = self.clusters[key]
            p = c["properties"]
            p["provisioningState"] = "Succeeded"
            p["powerState"] = {"code": "Running"}
            p["currentKubernetesVersion"] = p["kubernetesVersion"] if p["kubernetesVersion"].count(".") == 2 \
                else p["kubernetesVersion"] + ".4"
            p["fqdn"] = "%s-abc123.hcp.%s.azmk8s.io" % (p.get("dnsPrefix", key[2]), c["location"])
            for pool in p.get("agentPoolProfiles") or []:
                pool["provisioningState"] = "Succeeded"
        _op, headers = self._start_op(key, "put", mc["location"], done)
        return (201 if existing is None else 200), headers, mc

    def _delete(self, key):
        mc = self.clusters.get(key)
        if mc is None:
            return 204, {}, None
        if self._busy(key):
            return arm_error(409, "OperationNotAllowed", "an operation is in progress on %s" % key[2])
        mc["properties"]["provisioningState"] = "Deleting"
        _op, headers = self._start_op(key, "delete", mc["location"], lambda: self.clusters.pop(key, None))
        return 202, headers, None

    def _credentials(self, key):
        mc = self.clusters.get(key)
        if mc is None:
            return self._not_found(key)
        fqdn = mc["properties"].get("fqdn")
        kubeconfig = (
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: RkFLRS1DQQ==\n"
            "    server: https://%s:443\n  name: %s\ncontexts:\n- context:\n    cluster: %s\n"
            "    user: clusterUser_%s_%s\n  name: %s\ncurrent-context: %s\nusers:\n"
            "- name: clusterUser_%s_%s\n  user:\n    token: fake-user-token-0123456789\n"
            % (fqdn, key[2], key[2], key[1], key[2], key[2], key[2], key[1], key[2]))
        return 200, {"Content-Type": "application/json"}, {"kubeconfigs": [
            {"name": "clusterUser", "value": base64.b64encode(kubeconfig.encode()).decode()}]}


class FakeArmTransport(HttpTransport):
    """azure-core transport answering from :class:`FakeArm` (no socket is opened)."""

    def __init__(self, arm):
        self.arm = arm
        self.sleeps = []

    def __enter__(self):
        return self

    def __exit__(self, *args):
        pass

    def open(self):
        pass

    def close(self):
        pass

    def sleep(self, duration):
        self.sleeps.append(duration)

    def send(self, request, **kwargs):
        body = request.content if is_rest(request) else (request.body or request.data)
        if hasattr(body, "read"):
            body = body.read()
        status, headers, payload = self.arm.handle(request.method, request.url,
                                                   CaseInsensitiveDict(request.headers), body)
        data = json.dumps(payload).encode() if payload is not None else b""
        resp = requests.Response()
        resp.status_code = status
        resp.reason = http.client.responses.get(status, "")
        resp.headers = CaseInsensitiveDict(headers)
        resp._content = data
        resp._content_consumed = True
        resp.encoding = "utf-8"
        resp.url = request.url
        if is_rest(request):  # azure.core.rest.HttpRequest (what generated SDKs send)
            retval = RestRequestsTransportResponse(request=request, internal_response=resp, block_size=4096)
            if not kwargs.get("stream"):
                retval.read()
            return retval
        return RequestsTransportResponse(request, resp, 4096)
