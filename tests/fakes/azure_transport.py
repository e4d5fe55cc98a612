# -*- coding: utf-8 -*-
"""A fake Azure Resource Manager (AKS) and an azure-core ``HttpTransport`` in front of it.

Azure has no emulator here, so the AKS tests run the real azure-mgmt-containerservice
SDK (serialization, ARM pipeline, retry policy, bearer-token policy, LRO poller)
over this transport. Two parts, kept apart on purpose:

- :class:`FakeArm`, the service model. One entry point,
  ``handle(method, path, query, headers, body, base_url) -> (status, headers, json body or None)``,
  with no azure-core or HTTP library in it, so that it can be served over real HTTPS too
  (``base_url`` is the scheme://host[:port] the client used; the operation URLs it hands
  out point back there).
- :class:`FakeArmTransport`, the azure-core adapter: it turns an SDK request into a
  ``handle`` call and the answer into an azure-core response. No socket is opened.

What the model answers (shapes as the real service returns them):

- ``managedClusters/{name}``: GET (404 ``ResourceNotFound`` when absent), PUT (201 create /
  200 update + ``Azure-AsyncOperation``, ``Location`` and ``Retry-After``), DELETE (202; 204 when
  absent), POST ``listClusterUserCredential`` (base64 kubeconfig).
- ``managedClusters/{name}/agentPools[/{pool}]``: GET (list / one), PUT, DELETE, as LROs.
- ``locations/{loc}/operations|operationresults/{id}``: the LRO status, ``InProgress`` for
  ``polls_before_done`` polls, then ``Succeeded`` or, when a failure was injected, ``Failed``
  with an ``error`` body.

The server-side rules it enforces are in :data:`RULES` (rule -> source); each check below
cites its entry. docs/providers.md ("Rules the fakes enforce") lists them with their tests.

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
from urllib.parse import parse_qsl, urlparse

import requests
from requests.structures import CaseInsensitiveDict

from azure.core.pipeline._tools import is_rest
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import HttpTransport
from azure.core.pipeline.transport._requests_basic import RequestsTransportResponse
from azure.core.rest._requests_basic import RestRequestsTransportResponse

ARM = "https://management.azure.com"
API_VERSION = "2026-08-01"
TOKEN = "fake-arm-token"
MC_RE = re.compile(r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
                   r"Microsoft\.ContainerService/managedClusters/(?P<name>[^/]+)"
                   r"(?:/(?P<action>listClusterUserCredential)|/(?P<pools>agentPools)(?:/(?P<pool>[^/]+))?)?$",
                   re.I)
OP_RE = re.compile(r"^/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.ContainerService/locations/"
                   r"(?P<loc>[^/]+)/(?P<kind>operations|operationresults)/(?P<op>[^/]+)$", re.I)
READ_ONLY = ("provisioningState", "powerState", "fqdn", "currentKubernetesVersion", "azurePortalFQDN",
             "maxAgentPools", "currentOrchestratorVersion", "nodeImageVersion")
#: vCPUs of the VM sizes the tests use (for the regional vCPU quota)
VCPUS = {"standard_d2s_v5": 2, "standard_d4s_v5": 4, "standard_d8s_v5": 8}

#: Server-side rules this fake enforces, and where each is documented
#: (/work/shared/reference/cloud-facts.md collects them).
RULES = {
    "system-pool": "a cluster needs at least one agent pool with mode System, at create and after "
                   "every update: 400 MustDefineAtLeastOneSystemPool 'Must define at least one system "
                   "pool.' (Azure/AKS#1602, Azure/AKS#1568, ansible-collections/azure#166)",
    "pools-via-agentpools": "pools cannot be added to (or removed from) an existing cluster through the "
                            "managed-cluster PUT: 400 BadRequest 'A new agent pool was introduced. Adding "
                            "agent pools to an existing cluster is not allowed through managed cluster "
                            "operations...' (Azure/AKS#4383, microsoft/tyger#121)",
    "autoscaler-owns-count": "a pool whose autoscaler is on cannot be scaled by hand: 400 'Cannot manually "
                             "scale AgentPool ... with cluster autoscaler enabled' "
                             "(hashicorp/terraform-provider-azurerm#4543)",
    "enable-and-scale": "manual scale and enabling the autoscaler in one update are refused: 400 'Cannot "
                        "manually scale and enable cluster autoscaler in the same update operation' "
                        "(Azure/AKS#1248)",
    "pod-cidr-overlay": "podCidr with network plugin azure only with networkPluginMode overlay; kubenet "
                        "takes one (azure-cli PR #26237)",
    "lro": "PUT/DELETE answer 201/202 with Azure-AsyncOperation; the operation can end Failed with an "
           "error body (ARM async operations; cloud-facts.md)",
    "throttling": "429 carries Retry-After (ARM throttling; cloud-facts.md)",
    "conflict": "a write while another operation runs on the cluster or one of its pools: 409 "
                "OperationNotAllowed (Azure/AKS docs 'operation in progress'; cloud-facts.md LROs)",
    "quota": "a create/scale beyond the regional vCPU quota: 400 ErrCode_InsufficientVCPUQuota "
             "(AKS quota errors, aka.ms/aks/quotaerror)",
    "failed-state": "a create that fails half way leaves the cluster in provisioningState Failed; a "
                    "PUT of the same cluster reconciles it (az aks update with no changes)",
    "immutable": "location and an existing pool's vmSize cannot change: 400 PropertyChangeNotAllowed "
                 "(Azure/AKS#575 shows the code)",
    "api-version": "every ARM request needs ?api-version: 400 MissingApiVersionParameter (Azure REST API "
                   "reference, common parameters)",
}


class FakeCredential:
    """A TokenCredential that hands out a static token (no identity endpoint involved)."""

    def __init__(self):
        self.scopes = []

    def get_token(self, *scopes, **kwargs):
        self.scopes.extend(scopes)
        return AccessToken(TOKEN, int(time.time()) + 3600)


def arm_error(status, code, message, headers=None):
    hdrs = {"Content-Type": "application/json"}
    hdrs.update(headers or {})
    return status, hdrs, {"error": {"code": code, "message": message}}


def _is_system(pool):
    return str(pool.get("mode") or "").lower() == "system"


def _autoscaled(pool):
    return bool(pool.get("enableAutoScaling"))


class FakeArm:
    """The stateful service model: ``handle`` -> (status, headers, json body or None).

    Test hooks: :meth:`fail` (an error answer for matching requests), :meth:`fail_operation`
    (the next matching LRO ends ``Failed``), :meth:`autoscale` (the cluster autoscaler moved a
    pool's count), :meth:`finish_operations` (time passes: running operations complete),
    ``vcpu_quota`` (the regional quota, None = unlimited).
    """

    def __init__(self, polls_before_done=1, token=TOKEN, vcpu_quota=None):
        self.clusters = {}
        self.operations = {}
        self.polls_before_done = polls_before_done
        self.token = token
        self.vcpu_quota = vcpu_quota
        self.log = []          # (method, path) of every request that reached the service
        self.requests = []     # dict(method, path, query, base_url) of the same
        self.bodies = []       # (method, path, parsed body) of the writes (see ``writes``)
        self.faults = []
        self.op_faults = []
        self._ids = itertools.count(1)

    # --- test hooks ----------------------------------------------------------------------
    def fail(self, method, path_contains, status, code="Fault", message="injected", headers=None, times=1):
        """Answer the next ``times`` matching requests with an ARM error (before any rule)."""
        self.faults.append(dict(method=method, path=path_contains, status=status, code=code,
                                message=message, headers=headers or {}, times=times))

    def fail_operation(self, method, path_contains, code, message, times=1):
        """The LRO started by the next matching write ends ``Failed`` with this error, leaving
        the cluster (and the pools it touched) in provisioningState Failed."""
        self.op_faults.append(dict(method=method, path=path_contains, code=code, message=message,
                                   times=times))

    def autoscale(self, name, pool, count):
        """The cluster autoscaler moved ``pool`` of cluster ``name`` to ``count`` nodes."""
        for key, mc in self.clusters.items():
            if key[2] == name:
                for p in mc["properties"]["agentPoolProfiles"]:
                    if p["name"] == pool:
                        assert _autoscaled(p), "the autoscaler is off on pool %s" % pool
                        assert p["minCount"] <= count <= p["maxCount"], "outside [minCount, maxCount]"
                        p["count"] = count
                        return
        raise KeyError("%s/%s" % (name, pool))

    def finish_operations(self):
        """Time passes: every running operation completes (as injected: Succeeded or Failed)."""
        for op in self.operations.values():
            if op["status"] == "InProgress":
                self._complete(op)

    @property
    def writes(self):
        return [(m, p) for m, p in self.log if m in ("PUT", "POST", "DELETE", "PATCH")
                and not p.endswith("/listClusterUserCredential")]

    def pools(self, name):
        for key, mc in self.clusters.items():
            if key[2] == name:
                return dict((p["name"], p) for p in mc["properties"].get("agentPoolProfiles") or [])
        return {}

    # --- dispatch -------------------------------------------------------------------------
    def handle(self, method, path, query=None, headers=None, body=None, base_url=ARM):
        query = query or {}
        headers = CaseInsensitiveDict(headers or {})
        self.log.append((method, path))
        self.requests.append(dict(method=method, path=path, query=dict(query), base_url=base_url))
        if headers.get("Authorization") != "Bearer %s" % self.token:
            return arm_error(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' "
                             "header is missing or not a valid bearer token.")
        if not query.get("api-version"):  # RULES["api-version"]
            return arm_error(400, "MissingApiVersionParameter", "The api-version query parameter "
                             "(?api-version=) is required for all requests.")
        for fault in self.faults:
            if fault["times"] and fault["method"] == method and fault["path"] in path:
                fault["times"] -= 1
                return arm_error(fault["status"], fault["code"], fault["message"], fault["headers"])
        m = OP_RE.match(path)
        if m and method == "GET":
            return self._operation(m.group("op"), m.group("kind"))
        m = MC_RE.match(path)
        if not m:
            return arm_error(404, "InvalidResourceType", "no route for %s %s" % (method, path))
        key = (m.group("sub"), m.group("rg").lower(), m.group("name"))
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        data = json.loads(body) if body else None
        ctx = dict(key=key, path=path, method=method, base_url=base_url)
        if m.group("action"):
            if method == "POST":
                return self._credentials(key)
            return arm_error(405, "MethodNotAllowed", method)
        if method in ("PUT", "POST", "DELETE", "PATCH"):
            self.bodies.append((method, path, data))  # the writes' bodies (as in ``writes``)
        if m.group("pools"):
            return self._agent_pools(ctx, m.group("pool"), data)
        if method == "GET":
            mc = self.clusters.get(key)
            if mc is None:
                return self._not_found(key)
            return 200, {"Content-Type": "application/json"}, mc
        if method == "PUT":
            return self._put(ctx, data)
        if method == "DELETE":
            return self._delete(ctx)
        return arm_error(405, "MethodNotAllowed", method)

    # --- shared -----------------------------------------------------------------------------
    def _not_found(self, key):
        return arm_error(404, "ResourceNotFound",
                         "The Resource 'Microsoft.ContainerService/managedClusters/%s' under resource "
                         "group '%s' was not found." % (key[2], key[1]))

    def _busy(self, key):
        """RULES["conflict"]: 409 while an operation runs on the cluster or one of its pools."""
        for op in self.operations.values():
            if op["key"] == key and op["status"] == "InProgress":
                return arm_error(409, "OperationNotAllowed",
                                 "Operation is not allowed because there's an in progress %s operation "
                                 "on managed cluster %s. Please wait for it to finish."
                                 % (op["kind"], key[2]))
        return None

    def _start_op(self, ctx, kind, location, done, failed):
        op_id = "op-%04d" % next(self._ids)
        fault = None
        for f in self.op_faults:
            if f["times"] and f["method"] == ctx["method"] and f["path"] in ctx["path"]:
                f["times"] -= 1
                fault = f
                break
        self.operations[op_id] = dict(key=ctx["key"], kind=kind, status="InProgress",
                                      polls=self.polls_before_done, done=done, failed=failed,
                                      fault=fault, error=None)
        base = "%s/subscriptions/%s/providers/Microsoft.ContainerService/locations/%s" % (
            ctx["base_url"], ctx["key"][0], location)
        return {
            "Azure-AsyncOperation": "%s/operations/%s?api-version=%s" % (base, op_id, API_VERSION),
            "Location": "%s/operationresults/%s?api-version=%s" % (base, op_id, API_VERSION),
            "Retry-After": "1", "Content-Type": "application/json"}

    def _complete(self, op):
        if op["fault"]:  # RULES["lro"], RULES["failed-state"]
            op["failed"]()
            op["status"] = "Failed"
            op["error"] = {"code": op["fault"]["code"], "message": op["fault"]["message"]}
        else:
            op["done"]()
            op["status"] = "Succeeded"

    def _operation(self, op_id, kind):
        op = self.operations.get(op_id)
        if op is None:
            return arm_error(404, "NotFound", "operation %s not found" % op_id)
        if op["status"] == "InProgress":
            if op["polls"] > 0:
                op["polls"] -= 1
            else:
                self._complete(op)
        if kind == "operationresults":
            if op["status"] == "InProgress":
                return 202, {"Retry-After": "1", "Location": ""}, None
            if op["status"] == "Failed":
                return arm_error(400, op["error"]["code"], op["error"]["message"])
            return 204, {}, None
        headers = {"Content-Type": "application/json"}
        if op["status"] == "InProgress":
            headers["Retry-After"] = "1"
        body = {"name": op_id, "status": op["status"], "startTime": "2026-01-01T00:00:00Z"}
        if op["error"]:
            body["error"] = op["error"]
        return 200, headers, body

    def _check_pool_change(self, cluster, old, new):
        """Rules for one pool's update (old: stored profile, new: requested profile)."""
        name = new.get("name") or old["name"]
        if old.get("vmSize") and new.get("vmSize") and old["vmSize"].lower() != new["vmSize"].lower():
            return arm_error(400, "PropertyChangeNotAllowed",  # RULES["immutable"]
                             "Changing property 'vmSize' is not allowed.")
        count_changed = new.get("count") is not None and new["count"] != old.get("count")
        if count_changed and _autoscaled(old) and _autoscaled(new):  # RULES["autoscaler-owns-count"]
            return arm_error(400, "BadRequest", "Cannot manually scale AgentPool '%s' with cluster "
                             "autoscaler enabled. Please disable the autoscaler or update minCount/"
                             "maxCount instead." % name)
        if count_changed and _autoscaled(new) and not _autoscaled(old):  # RULES["enable-and-scale"]
            return arm_error(400, "BadRequest", "Cannot manually scale and enable cluster autoscaler in "
                             "the same update operation on VMSS Agentpool '%s'." % name)
        return None

    @staticmethod
    def _check_autoscaler(pool):
        if _autoscaled(pool) and (pool.get("minCount") is None or pool.get("maxCount") is None
                                  or pool["minCount"] > pool["maxCount"]):
            return arm_error(400, "InvalidParameter", "Agent pool %s: enableAutoScaling needs minCount "
                             "and maxCount with minCount <= maxCount." % pool.get("name"))
        return None

    def _check_system(self, pools):
        if not any(_is_system(p) for p in pools):  # RULES["system-pool"]
            return arm_error(400, "MustDefineAtLeastOneSystemPool", "Must define at least one system pool.")
        return None

    def _check_quota(self, location, pools):
        if self.vcpu_quota is None:
            return None
        want = sum(VCPUS.get(str(p.get("vmSize")).lower(), 4) * int(p.get("count") or 0) for p in pools)
        if want > self.vcpu_quota:  # RULES["quota"]
            return arm_error(400, "ErrCode_InsufficientVCPUQuota",
                             "Insufficient regional vcpu quota left for location %s. left regional vcpu "
                             "quota %d, requested quota %d. Please refer to https://aka.ms/aks/quotaerror "
                             "for more information." % (location, self.vcpu_quota, want))
        return None

    @staticmethod
    def _check_network(net):
        plugin = str(net.get("networkPlugin") or "").lower()
        if net.get("podCidr") and plugin == "azure" and str(net.get("networkPluginMode") or "").lower() != "overlay":
            return arm_error(400, "InvalidParameter",  # RULES["pod-cidr-overlay"]
                             "The parameter podCidr cannot be specified when using network plugin azure "
                             "without networkPluginMode overlay.")
        return None

    def _set_state(self, key, state, pools=None):
        mc = self.clusters.get(key)
        if mc is None:
            return
        mc["properties"]["provisioningState"] = state
        for pool in mc["properties"].get("agentPoolProfiles") or []:
            if pools is None or pool["name"] in pools:
                pool["provisioningState"] = state

    def _succeed(self, key):
        c = self.clusters.get(key)
        if c is None:
            return
        p = c["properties"]
        self._set_state(key, "Succeeded")
        p["powerState"] = {"code": "Running"}
        version = p["kubernetesVersion"]
        p["currentKubernetesVersion"] = version if version.count(".") == 2 else version + ".4"
        p["fqdn"] = "%s-abc123.hcp.%s.azmk8s.io" % (p.get("dnsPrefix", key[2]), c["location"])

    # --- managedClusters -------------------------------------------------------------------
    def _put(self, ctx, data):
        key = ctx["key"]
        busy = self._busy(key)
        if busy:
            return busy
        data = data or {}
        props = data.get("properties") or {}
        if not data.get("location"):
            return arm_error(400, "InvalidParameter", "location is required")
        existing = self.clusters.get(key)
        if existing is not None and existing["location"] != data["location"]:
            return arm_error(400, "PropertyChangeNotAllowed", "Changing property 'location' is not allowed.")
        pools = props.get("agentPoolProfiles")
        if existing is None and not pools:
            return arm_error(400, "InvalidParameter", "agentPoolProfiles is required")
        if pools is not None:
            err = self._check_system(pools)
            if err:
                return err
            for pool in pools:
                err = self._check_autoscaler(pool)
                if err:
                    return err
        if existing is not None and pools is not None:  # RULES["pools-via-agentpools"]
            have = dict((p["name"], p) for p in existing["properties"].get("agentPoolProfiles") or [])
            names = [p.get("name") for p in pools]
            new = [n for n in names if n not in have]
            if new:
                return arm_error(400, "BadRequest", "A new agent pool was introduced. Adding agent pools to "
                                 "an existing cluster is not allowed through managed cluster operations. For "
                                 "agent pool specific change, please use per agent pool operations: "
                                 "https://aka.ms/agent-pool-rest-api")
            gone = [n for n in have if n not in names]
            if gone:
                return arm_error(400, "BadRequest", "Agent pool(s) %s missing from agentPoolProfiles. Removing "
                                 "agent pools from an existing cluster is not allowed through managed cluster "
                                 "operations. For agent pool specific change, please use per agent pool "
                                 "operations: https://aka.ms/agent-pool-rest-api" % ", ".join(gone))
            for pool in pools:
                err = self._check_pool_change(key[2], have[pool["name"]], pool)
                if err:
                    return err
        net = dict((existing or {}).get("properties", {}).get("networkProfile") or {})
        net.update(props.get("networkProfile") or {})
        err = self._check_network(net)
        if err:
            return err
        err = self._check_quota(data["location"], pools if pools is not None
                                else existing["properties"].get("agentPoolProfiles") or [])
        if err:
            return err

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
        for pool in stored.get("agentPoolProfiles") or []:
            for k in READ_ONLY:
                pool.pop(k, None)
            pool.setdefault("mode", "User")
        stored.setdefault("kubernetesVersion", "1.33.2")
        default_net = {"networkPlugin": "kubenet", "podCidr": "10.244.0.0/16",
                       "serviceCidr": "10.0.0.0/16", "dnsServiceIP": "10.0.0.10"}
        for k, v in default_net.items():
            stored.setdefault("networkProfile", {}).setdefault(k, v)
        if stored["networkProfile"].get("networkPlugin", "").lower() == "azure" and \
                not stored["networkProfile"].get("networkPluginMode") and "podCidr" not in (
                    props.get("networkProfile") or {}):
            stored["networkProfile"].pop("podCidr", None)  # Azure CNI (flat): pods take subnet IPs
        self.clusters[key] = mc
        self._set_state(key, "Creating" if existing is None else "Updating")
        headers = self._start_op(ctx, "create" if existing is None else "update", mc["location"],
                                 done=lambda: self._succeed(key),
                                 failed=lambda: self._set_state(key, "Failed"))
        return (201 if existing is None else 200), headers, mc

    def _delete(self, ctx):
        key = ctx["key"]
        mc = self.clusters.get(key)
        if mc is None:
            return 204, {}, None
        busy = self._busy(key)
        if busy:
            return busy
        mc["properties"]["provisioningState"] = "Deleting"
        headers = self._start_op(ctx, "delete", mc["location"], done=lambda: self.clusters.pop(key, None),
                                 failed=lambda: self._set_state(key, "Failed"))
        return 202, headers, None

    # --- agentPools -------------------------------------------------------------------------
    @staticmethod
    def _pool_resource(key, pool):
        props = dict((k, copy.deepcopy(v)) for k, v in pool.items() if k != "name")
        return {"id": "/subscriptions/%s/resourcegroups/%s/providers/Microsoft.ContainerService/"
                      "managedClusters/%s/agentPools/%s" % (key + (pool["name"],)),
                "name": pool["name"], "type": "Microsoft.ContainerService/managedClusters/agentPools",
                "properties": props}

    def _agent_pools(self, ctx, name, data):
        key = ctx["key"]
        mc = self.clusters.get(key)
        if mc is None:
            return self._not_found(key)
        pools = mc["properties"].setdefault("agentPoolProfiles", [])
        by_name = dict((p["name"], p) for p in pools)
        method = ctx["method"]
        if name is None:
            if method != "GET":
                return arm_error(405, "MethodNotAllowed", method)
            return 200, {"Content-Type": "application/json"}, {
                "value": [self._pool_resource(key, p) for p in pools]}
        if method == "GET":
            if name not in by_name:
                return arm_error(404, "NotFound", "Agent pool %s not found in managed cluster %s." % (name, key[2]))
            return 200, {"Content-Type": "application/json"}, self._pool_resource(key, by_name[name])
        busy = self._busy(key)
        if busy:
            return busy
        if method == "PUT":
            props = dict((k, v) for k, v in ((data or {}).get("properties") or {}).items() if k not in READ_ONLY)
            props["name"] = name
            props.setdefault("mode", "User")
            err = self._check_autoscaler(props)
            if err:
                return err
            old = by_name.get(name)
            if old is not None:
                err = self._check_pool_change(key[2], old, props)
                if err:
                    return err
            after = [props if p["name"] == name else p for p in pools] + ([] if old else [props])
            err = self._check_system(after) or self._check_quota(mc["location"], after)
            if err:
                return err
            if old is None:
                pools.append(props)
            else:
                props = dict(old, **props)
                pools[pools.index(old)] = props
            props["provisioningState"] = "Creating" if old is None else "Updating"
            mc["properties"]["provisioningState"] = "Updating"
            headers = self._start_op(ctx, "agent pool " + ("create" if old is None else "update"),
                                     mc["location"], done=lambda: self._succeed(key),
                                     failed=lambda: self._set_state(key, "Failed", pools=(name,)))
            return (201 if old is None else 200), headers, self._pool_resource(key, props)
        if method == "DELETE":
            if name not in by_name:
                return 204, {}, None
            err = self._check_system([p for p in pools if p["name"] != name])
            if err:
                return err
            by_name[name]["provisioningState"] = "Deleting"
            mc["properties"]["provisioningState"] = "Updating"

            def done():
                mc["properties"]["agentPoolProfiles"] = [p for p in mc["properties"]["agentPoolProfiles"]
                                                         if p["name"] != name]
                self._succeed(key)
            headers = self._start_op(ctx, "agent pool delete", mc["location"], done=done,
                                     failed=lambda: self._set_state(key, "Failed", pools=(name,)))
            return 202, headers, None
        return arm_error(405, "MethodNotAllowed", method)

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
    """azure-core transport answering from :class:`FakeArm` (no socket is opened).

    Only translates: an azure-core request -> ``FakeArm.handle(method, path, query, headers,
    body, base_url)`` -> an azure-core response.
    """

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
        url = urlparse(request.url)
        status, headers, payload = self.arm.handle(
            request.method, url.path, dict(parse_qsl(url.query)), dict(request.headers), body,
            base_url="%s://%s" % (url.scheme, url.netloc))
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
