# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Azure Kubernetes Service provider (azure-mgmt-containerservice + azure-identity).

Create/update/delete one managed cluster: resource group, location, Kubernetes
version, node pools, network profile (CNI plugin and CIDRs), tags. Long-running
operations are waited on through the SDK's poller (``Azure-AsyncOperation``
polling) bounded by the module's ``wait_timeout``. The user kubeconfig
(``listClusterUserCredential``) goes to ``kubeconfig_path`` (0600), never into the
module result.

Node pools: the first pool is the System pool unless one says ``mode: System`` (AKS needs
one at every step). On an existing cluster pools are added, changed and removed through the
agentPools operations (the managed-cluster PUT may not add or remove pools) in an order
that always keeps a System pool. With the autoscaler on (``min_count``/``max_count``),
``count`` is only the initial size: min/max are compared and sent, the autoscaler's count
never is, so a converged cluster sends no write.

Mutable in place: ``kubernetes_version`` (upgrade), ``tags``, node pool ``count`` (without the
autoscaler) / ``min_count`` / ``max_count`` / ``enable_auto_scaling`` / ``mode``, pools added or
removed. A cluster left in provisioningState Failed (an operation that died half way) is
re-PUT to reconcile it. Everything else Azure cannot change on an existing cluster is
refused, naming the field (``network_profile.pod_cidr``, ``node_pools.system.vm_size``,
``location``, ``dns_prefix``).

Endpoints: ``settings.cloud_environment`` (AzurePublicCloud, AzureChinaCloud,
AzureUSGovernment) picks the ARM endpoint, its token scope and the Entra ID authority;
``settings.arm_endpoint`` overrides the ARM URL, AZURE_AUTHORITY_HOST the authority (an
authority that is not Microsoft's gets ``disable_instance_discovery``).

Credentials: azure-identity's DefaultAzureCredential (AZURE_CLIENT_ID +
AZURE_TENANT_ID + AZURE_CLIENT_SECRET, workload identity, managed identity, ``az
login``); the subscription from ``settings.subscription_id`` or AZURE_SUBSCRIPTION_ID.
Tests inject a transport and a credential through :attr:`AksProvider.sdk_hooks`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil

from urllib.parse import urlparse

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import (
    MeshfleetError, WaitTimeout, recorded_wait)
from ansible_collections.meshfleet.mesh.plugins.module_utils import kubeconfig as kc
from ansible_collections.meshfleet.mesh.plugins.module_utils.providers.base import ClusterProvider
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology import (
    aks_pool_mode, aks_settings_problems)
from ansible_collections.meshfleet.mesh.plugins.module_utils.cloud import (
    diff_flat, flatten_settings, group_new_items, module_timeout, module_wait,
    version_matches)

DEFAULT_POOL = dict(name="system", vm_size="Standard_D2s_v5", count=1, mode="System")

POOL_FIELDS = (  # setting -> ARM wire name
    ("name", "name"), ("vm_size", "vmSize"), ("count", "count"), ("mode", "mode"),
    ("min_count", "minCount"), ("max_count", "maxCount"), ("enable_auto_scaling", "enableAutoScaling"))
NETWORK_FIELDS = (
    ("network_plugin", "networkPlugin"), ("network_plugin_mode", "networkPluginMode"),
    ("pod_cidr", "podCidr"), ("service_cidr", "serviceCidr"), ("dns_service_ip", "dnsServiceIP"))
#: agent pool fields an update may send back (the rest of a GET is read-only or left alone)
POOL_WRITABLE = ("count", "vmSize", "mode", "osType", "osSKU", "type", "enableAutoScaling", "minCount",
                 "maxCount", "orchestratorVersion", "availabilityZones", "nodeLabels", "nodeTaints",
                 "tags", "maxPods", "osDiskSizeGB", "osDiskType", "vnetSubnetID", "podSubnetID",
                 "upgradeSettings", "scaleDownMode", "enableNodePublicIP")
#: provisioning states of a cluster in the middle of an operation
BUSY_STATES = ("Creating", "Updating", "Upgrading", "Scaling", "Deleting", "Starting", "Stopping",
               "Migrating", "Canceling")

#: cloud_environment -> ARM endpoint, ARM token scope, Entra ID authority host
#: (the scopes are azure-mgmt-core's get_arm_endpoints(); the hosts azure-identity's AzureAuthorityHosts)
CLOUDS = {
    "AzurePublicCloud": dict(arm="https://management.azure.com",
                             scope="https://management.azure.com/.default",
                             authority="login.microsoftonline.com"),
    "AzureChinaCloud": dict(arm="https://management.chinacloudapi.cn",
                            scope="https://management.chinacloudapi.cn/.default",
                            authority="login.chinacloudapi.cn"),
    "AzureUSGovernment": dict(arm="https://management.usgovcloudapi.net",
                              scope="https://management.core.usgovcloudapi.net/.default",
                              authority="login.microsoftonline.us"),
}
#: Entra ID hosts MSAL knows; any other authority (Azure Stack's AD FS, a test server) needs
#: disable_instance_discovery, or MSAL asks login.microsoftonline.com about it first
MICROSOFT_AUTHORITIES = ("login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn")

CREDENTIALS_HELP = (
    "set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET (service principal), or "
    "AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE (workload identity), or log "
    "in with `az login`, or on an Azure VM set AZURE_TOKEN_CREDENTIALS=ManagedIdentityCredential "
    "(AZURE_CLIENT_ID for a user-assigned identity)")


def check_azure_credentials(env=None):
    """Raise MeshfleetError when DefaultAzureCredential has nothing to work with (no API call)."""
    env = os.environ if env is None else env
    if env.get("AZURE_TOKEN_CREDENTIALS"):
        return "AZURE_TOKEN_CREDENTIALS"
    secret = env.get("AZURE_CLIENT_SECRET") or env.get("AZURE_CLIENT_CERTIFICATE_PATH")
    federated = env.get("AZURE_FEDERATED_TOKEN_FILE")
    if secret or federated:
        missing = [n for n in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID") if not env.get(n)]
        if missing:
            raise MeshfleetError("Azure credentials incomplete: set %s (with %s)" % (
                " and ".join(missing),
                "AZURE_FEDERATED_TOKEN_FILE" if federated else
                "AZURE_CLIENT_SECRET" if env.get("AZURE_CLIENT_SECRET") else "AZURE_CLIENT_CERTIFICATE_PATH"))
        if federated and not os.path.isfile(federated):
            raise MeshfleetError("AZURE_FEDERATED_TOKEN_FILE %s does not exist" % federated)
        return "environment"
    if env.get("AZURE_CLIENT_ID") or env.get("IDENTITY_ENDPOINT") or env.get("MSI_ENDPOINT"):
        return "managed identity"
    if shutil.which("az", path=env.get("PATH")):
        return "azure cli"
    raise MeshfleetError("no Azure credentials found: " + CREDENTIALS_HELP)


def authority_host(authority):
    """``login.example.test`` of ``https://login.example.test/`` or ``login.example.test``."""
    authority = str(authority or "").strip()
    if "://" not in authority:
        authority = "https://" + authority
    return (urlparse(authority).hostname or "").lower()


def arm_endpoints(settings, env=None):
    """Where ARM and Entra ID are for these settings: a dict with ``base_url`` and
    ``credential_scopes`` (ContainerServiceClient keywords), ``authority`` and
    ``disable_instance_discovery`` (credential keywords).

    ``settings.cloud_environment`` picks the cloud (default AzurePublicCloud);
    ``settings.arm_endpoint`` overrides its ARM URL (token scope ``<arm_endpoint>/.default``
    unless it is the cloud's own ARM URL); AZURE_AUTHORITY_HOST overrides its authority.
    """
    env = os.environ if env is None else env
    cloud = CLOUDS[settings.get("cloud_environment") or "AzurePublicCloud"]
    arm = (settings.get("arm_endpoint") or cloud["arm"]).rstrip("/")
    scope = cloud["scope"] if arm == cloud["arm"] else arm + "/.default"
    authority = env.get("AZURE_AUTHORITY_HOST") or cloud["authority"]
    return dict(base_url=arm, credential_scopes=[scope], authority=authority,
                disable_instance_discovery=authority_host(authority) not in MICROSOFT_AUTHORITIES)


def credential_kwargs(endpoints):
    """Keywords for azure-identity's DefaultAzureCredential (it hands them on to the
    environment/ClientSecretCredential, workload identity and managed identity credentials;
    DefaultAzureCredential and ClientSecretCredential both accept disable_instance_discovery)."""
    kwargs = dict(authority=endpoints["authority"])
    if endpoints["disable_instance_discovery"]:
        kwargs["disable_instance_discovery"] = True
    return kwargs


def wire(model):
    """An SDK model (or dict) as a plain dict with ARM wire names."""
    if model is None:
        return None
    if hasattr(model, "as_dict") and not hasattr(model, "serialize"):
        return model.as_dict()
    if hasattr(model, "serialize"):  # msrest models (older SDKs)
        return model.serialize(keep_readonly=True)
    return dict(model)


def normalize_location(loc):
    return str(loc or "").replace(" ", "").lower() or None


def desired_pools(pools):
    """The ``node_pools`` setting with each pool's mode resolved (see topology.aks_pool_mode)."""
    return [dict(p, mode=aks_pool_mode(pools, i)) for i, p in enumerate(pools)]


def autoscaled(pool):
    """Whether a desired pool has the autoscaler on (min_count/max_count, unless turned off)."""
    return pool.get("enable_auto_scaling") is not False and (
        pool.get("enable_auto_scaling") is True or pool.get("min_count") is not None
        or pool.get("max_count") is not None)


def compared_pool(pool):
    """What is compared for one desired pool. With the autoscaler on, ``count`` is only the
    initial size (the autoscaler owns it afterwards): min/max and enable_auto_scaling are
    compared instead."""
    out = dict(name=pool["name"], vm_size=pool.get("vm_size"), mode=pool.get("mode"))
    if autoscaled(pool):
        out.update(enable_auto_scaling=True, min_count=pool.get("min_count"),
                   max_count=pool.get("max_count"))
    else:
        out["count"] = pool.get("count")
        if pool.get("enable_auto_scaling") is False:
            out["enable_auto_scaling"] = False
    return out


class AksProvider(ClusterProvider):
    name = "aks"
    compared_settings = ("location", "dns_prefix", "kubernetes_version", "tags", "node_pools",
                         "network_profile")
    NESTED = {"node_pools": "by_name", "network_profile": "dict"}

    #: private hook for tests: {"transport": HttpTransport, "credential": TokenCredential,
    #: plus any ContainerServiceClient keyword}; empty in production
    sdk_hooks = {}

    def __init__(self, *args, **kwargs):
        super(AksProvider, self).__init__(*args, **kwargs)
        self._client = None
        self.subscription_id = None
        self.endpoints = None

    # --- setup ---------------------------------------------------------------------
    def validate(self):
        super(AksProvider, self).validate()
        try:
            import azure.mgmt.containerservice  # noqa: F401
            import azure.identity  # noqa: F401
        except ImportError:
            raise MeshfleetError("provider aks needs the azure-mgmt-containerservice and "
                                 "azure-identity Python packages")
        self.subscription_id = self.settings.get("subscription_id") or os.environ.get(
            "AZURE_SUBSCRIPTION_ID")
        if not self.subscription_id:
            raise MeshfleetError("cluster %s (provider aks): no subscription: set "
                                 "settings.subscription_id or AZURE_SUBSCRIPTION_ID" % self.cluster_name)
        pools = self.settings.get("node_pools")
        if pools is not None and not isinstance(pools, list):
            raise MeshfleetError("cluster %s (provider aks): settings.node_pools must be a list"
                                 % self.cluster_name)
        for pool in pools or []:
            if not isinstance(pool, dict) or not pool.get("name"):
                raise MeshfleetError("cluster %s (provider aks): every settings.node_pools item "
                                     "needs a name" % self.cluster_name)
        if self.settings.get("network_profile") is not None and \
                not isinstance(self.settings["network_profile"], dict):
            raise MeshfleetError("cluster %s (provider aks): settings.network_profile must be a mapping"
                                 % self.cluster_name)
        problems = aks_settings_problems(self.settings)
        if problems:
            raise MeshfleetError("cluster %s (provider aks): %s" % (self.cluster_name, "; ".join(problems)))
        self.endpoints = arm_endpoints(self.settings)
        if "credential" not in self.sdk_hooks:
            try:
                check_azure_credentials()
            except MeshfleetError as e:
                raise MeshfleetError("cluster %s (provider aks): %s" % (self.cluster_name, e.msg))

    @property
    def client(self):
        if self._client is None:
            from azure.mgmt.containerservice import ContainerServiceClient
            endpoints = self.endpoints or arm_endpoints(self.settings)
            hooks = dict(self.sdk_hooks)
            credential = hooks.pop("credential", None)
            if credential is None:
                from azure.identity import DefaultAzureCredential
                credential = DefaultAzureCredential(**credential_kwargs(endpoints))
            self._client = ContainerServiceClient(
                credential, self.subscription_id, base_url=endpoints["base_url"],
                credential_scopes=endpoints["credential_scopes"], user_agent="meshfleet", **hooks)
        return self._client

    @property
    def rg(self):
        return self.settings["resource_group"]

    def _err(self, e, action, initial_status=None):
        """A MeshfleetError naming the cluster, the operation, the HTTP status and ARM's error code.

        ``initial_status``: the status of the request that started a long-running operation
        whose poller raised ``e`` (the operation ended Failed/Canceled)."""
        from azure.core.exceptions import HttpResponseError
        if isinstance(e, HttpResponseError):
            error = getattr(e, "error", None)
            code = getattr(error, "code", None)
            message = getattr(error, "message", None) or e.message
            if initial_status is not None:
                status = "HTTP %s, then the operation ended Failed" % initial_status
            else:
                status = "HTTP %s" % e.status_code
            return MeshfleetError("AKS %s of cluster %s failed (%s%s): %s" % (
                action, self.cluster_name, status, ", %s" % code if code else "", message),
                status_code=e.status_code)
        return MeshfleetError("AKS %s of cluster %s failed: %s" % (action, self.cluster_name, e))

    def _wait_poller(self, poller, what, wait=None):
        if not (module_wait(self.module) if wait is None else wait):
            return None
        timeout = module_timeout(self.module)
        try:
            with recorded_wait("AKS %s of cluster %s" % (what, self.cluster_name), timeout):
                result = poller.result(timeout=timeout)
        except Exception as e:
            initial = None
            from azure.core.polling.base_polling import OperationFailed
            if isinstance(e.__cause__, OperationFailed):  # the operation ended Failed/Canceled
                try:
                    initial = poller.polling_method()._initial_response.http_response.status_code
                except AttributeError:  # pragma: no cover - another polling method
                    initial = "?"
            raise self._err(e, what, initial_status=initial)
        if not poller.done():
            raise WaitTimeout("timed out after %ss waiting for AKS %s of cluster %s"
                              % (timeout, what, self.cluster_name))
        return result

    # --- observe -------------------------------------------------------------------
    def _get_raw(self):
        from azure.core.exceptions import ResourceNotFoundError
        try:
            return wire(self.client.managed_clusters.get(self.rg, self.cluster_name))
        except ResourceNotFoundError:
            return None
        except Exception as e:
            raise self._err(e, "read")

    def get(self):
        mc = self._get_raw()
        if mc is None:
            return None
        props = mc.get("properties") or {}
        net = props.get("networkProfile") or {}
        pools = []
        pool_states = {}
        for p in props.get("agentPoolProfiles") or []:
            pool = dict((k, p.get(w)) for k, w in POOL_FIELDS)
            pool["enable_auto_scaling"] = bool(pool["enable_auto_scaling"])
            pools.append(pool)
            pool_states[p.get("name")] = p.get("provisioningState")
        observed = dict(
            resource_group=self.rg,
            location=mc.get("location"),
            dns_prefix=props.get("dnsPrefix"),
            kubernetes_version=props.get("currentKubernetesVersion") or props.get("kubernetesVersion"),
            tags=dict(mc.get("tags") or {}),
            node_pools=pools,
            network_profile=dict((k, net.get(w)) for k, w in NETWORK_FIELDS),
        )
        state = props.get("provisioningState")
        fqdn = props.get("fqdn") or props.get("privateFQDN")
        api_server = "https://%s:443" % fqdn if fqdn else None
        # the server the user credential names is the one to report (and to put in remote
        # secrets): AKS's kubeconfig names the FQDN, a private cluster's or an emulator's another
        written = kc.load_file(self.kubeconfig_path) if os.path.exists(self.kubeconfig_path) else None
        api_server = (kc.server_of(written) if written else None) or api_server
        return dict(settings=observed, provisioning_state=state, pool_states=pool_states,
                    ready=state == "Succeeded" and (props.get("powerState") or {}).get("code", "Running") == "Running",
                    api_server=api_server, context=self.cluster_name)

    # --- compare ------------------------------------------------------------------------
    def _desired(self):
        want = dict((k, self.settings.get(k)) for k in self.compared_settings)
        if want.get("node_pools") is not None:
            want["node_pools"] = [compared_pool(p) for p in desired_pools(want["node_pools"])]
        return want

    def diff(self, observed):
        """{field: (observed, desired)}. Beyond the settings: ``node_pools.<name>`` (None desired)
        for a pool to remove, ``provisioning_state`` for a cluster left Failed (re-PUT to
        reconcile), ``node_pools.<name>.provisioning_state`` for a pool left Failed."""
        observed = observed or {}
        seen_settings = observed.get("settings", {})
        want = self._desired()
        desired = flatten_settings(want, self.NESTED)
        seen = flatten_settings(seen_settings, self.NESTED)
        changes = group_new_items(diff_flat(desired, seen, self.same), seen, ("node_pools",))
        if want.get("node_pools") is not None:
            names = set(p["name"] for p in want["node_pools"])
            for pool in seen_settings.get("node_pools") or []:
                if pool["name"] not in names:
                    changes["node_pools.%s" % pool["name"]] = (pool, None)
        if observed.get("provisioning_state") == "Failed":  # one PUT reconciles it and its pools
            changes["provisioning_state"] = ("Failed", "Succeeded")
        else:
            for name, state in (observed.get("pool_states") or {}).items():
                if state == "Failed" and "node_pools.%s" % name not in changes:
                    changes["node_pools.%s.provisioning_state" % name] = (state, "Succeeded")
        return changes

    def same(self, key, have, want):
        if key == "location":
            return normalize_location(have) == normalize_location(want)
        if key == "kubernetes_version":
            return version_matches(have, want)
        if key.startswith("network_profile.") or key.endswith((".vm_size", ".mode")):
            return str(have or "").lower() == str(want or "").lower()
        return have == want

    # --- change -----------------------------------------------------------------------------
    @staticmethod
    def _pool_body(pool):
        """The ARM profile of a new pool (``pool``: a desired pool with its mode resolved)."""
        body = dict(name=pool["name"], vmSize=pool.get("vm_size") or DEFAULT_POOL["vm_size"],
                    mode=pool.get("mode") or "User", osType="Linux", type="VirtualMachineScaleSets")
        if autoscaled(pool):
            body.update(count=pool.get("count") if pool.get("count") is not None else pool["min_count"],
                        enableAutoScaling=True, minCount=pool["min_count"], maxCount=pool["max_count"])
        else:
            body["count"] = pool.get("count") if pool.get("count") is not None else 1
        return body

    def _body(self):
        s = self.settings
        pools = desired_pools(s.get("node_pools") or [DEFAULT_POOL])
        props = dict(dnsPrefix=s.get("dns_prefix") or self.cluster_name,
                     agentPoolProfiles=[self._pool_body(p) for p in pools])
        if s.get("kubernetes_version"):
            props["kubernetesVersion"] = str(s["kubernetes_version"])
        net = s.get("network_profile") or {}
        if net:
            props["networkProfile"] = dict((w, net[k]) for k, w in NETWORK_FIELDS if net.get(k))
        body = dict(location=s["location"], identity=dict(type="SystemAssigned"), properties=props)
        if s.get("tags"):
            body["tags"] = dict(s["tags"])
        return body

    @staticmethod
    def _model(body, kind="ManagedCluster"):
        """A wire-format dict as the SDK's model (ManagedCluster, AgentPool), so that its
        serializer drops read-only fields (provisioning states, FQDNs, ...) from the PUT body;
        older (msrest) SDKs do that from the dict themselves."""
        from azure.mgmt.containerservice import models
        cls = getattr(models, kind)
        if hasattr(cls, "as_dict") and not hasattr(cls, "serialize"):
            return cls(body)
        return body

    def _put(self, body, what, wait=None):
        body = self._model(body)
        wait = module_wait(self.module) if wait is None else wait
        try:
            # without wait, no poller thread: the operation goes on in Azure
            poller = self.client.managed_clusters.begin_create_or_update(
                self.rg, self.cluster_name, body, polling=wait)
        except Exception as e:
            raise self._err(e, what)
        self._wait_poller(poller, what, wait)

    def create(self):
        self._put(self._body(), "creation")

    def pool_plan(self, observed_pools, changes):
        """The agent pool operations for ``changes``, in a safe order, as a list of
        ``(action, name, desired pool or None)`` with action create/update/delete.

        Order: new pools, pools becoming System, other updates, pools becoming User,
        removals; so a cluster keeps a System pool at every step. A plan that would still
        leave none (AKS refuses: "Must define at least one system pool") raises
        MeshfleetError before any request.
        """
        desired = dict((p["name"], p) for p in desired_pools(self.settings.get("node_pools") or []))
        seen = dict((p["name"], p) for p in observed_pools)
        touched = set()
        for key in changes:
            parts = key.split(".")
            if parts[0] == "node_pools" and len(parts) >= 2:
                touched.add(parts[1])
        rank = {"create": 0, "to-system": 1, "update": 2, "to-user": 3, "delete": 4}
        steps = []
        for name in touched:
            if name not in seen:
                steps.append(("create", name, desired[name]))
            elif "node_pools.%s" % name in changes and changes["node_pools.%s" % name][1] is None:
                steps.append(("delete", name, None))
            elif name not in desired:  # a pool left Failed that the settings do not list: re-PUT it
                steps.append(("update", name, dict(seen[name])))
            else:
                old = str(seen[name].get("mode") or "").lower()
                new = desired[name]["mode"].lower()
                kind = "update" if old == new else "to-system" if new == "system" else "to-user"
                steps.append((kind, name, desired[name]))
        steps.sort(key=lambda s: (rank[s[0]], s[1]))
        modes = dict((n, str(p.get("mode") or "").lower()) for n, p in seen.items())
        for kind, name, pool in steps:
            if kind == "delete":
                modes.pop(name)
            else:
                modes[name] = pool["mode"].lower()
            if "system" not in modes.values():
                raise MeshfleetError(
                    "cluster %s (provider aks): settings.node_pools: %s pool %s would leave the cluster "
                    "without a System pool (AKS: \"Must define at least one system pool\"); keep or "
                    "add a pool with mode: System" % (
                        self.cluster_name, "removing" if kind == "delete" else "making User the", name))
        return [("update" if k in ("to-system", "to-user") else k, n, p) for k, n, p in steps]

    def _pool_update_body(self, name, pool):
        """GET the agent pool and change what ``pool`` (desired) says, never fighting the
        autoscaler: ``count`` is sent only for a pool without it (enabling it keeps the count,
        as AKS refuses a manual scale in the same update)."""
        try:
            current = wire(self.client.agent_pools.get(self.rg, self.cluster_name, name))
        except Exception as e:
            raise self._err(e, "read of agent pool %s" % name)
        props = dict((k, v) for k, v in (current.get("properties") or {}).items() if k in POOL_WRITABLE)
        props["mode"] = pool["mode"]
        if autoscaled(pool):
            props.update(enableAutoScaling=True, minCount=pool["min_count"], maxCount=pool["max_count"])
        else:
            if pool.get("enable_auto_scaling") is False:
                props.update(enableAutoScaling=False, minCount=None, maxCount=None)
            if not props.get("enableAutoScaling") and pool.get("count") is not None:
                props["count"] = pool["count"]
        return {"properties": props}

    def _pool_op(self, kind, name, pool, wait):
        action = {"create": "creation", "update": "update", "delete": "deletion"}[kind]
        what = "agent pool %s %s" % (name, action)
        ops = self.client.agent_pools
        try:
            if kind == "delete":
                poller = ops.begin_delete(self.rg, self.cluster_name, name, polling=wait)
            else:
                if kind == "create":
                    body = self._pool_body(pool)
                    body = {"properties": dict((k, v) for k, v in body.items() if k != "name")}
                else:
                    body = self._pool_update_body(name, pool)
                poller = ops.begin_create_or_update(self.rg, self.cluster_name, name,
                                                    self._model(body, "AgentPool"), polling=wait)
        except Exception as e:
            raise self._err(e, what)
        self._wait_poller(poller, what, wait)

    def update(self, changes):
        """Cluster fields (version, tags, a Failed state) with one managed-cluster PUT of the
        same pools; pools added, changed and removed with agentPools operations (AKS refuses
        those through the managed-cluster PUT). Every step but the last is waited on even
        with ``wait: false`` (AKS answers 409 to a write while an operation runs)."""
        mc = self._get_raw()
        if mc is None:
            raise MeshfleetError("cluster %s disappeared during the update" % self.cluster_name)
        props = mc.setdefault("properties", {})
        observed_pools = []
        for p in props.get("agentPoolProfiles") or []:
            pool = dict((k, p.get(w)) for k, w in POOL_FIELDS)
            pool["enable_auto_scaling"] = bool(pool["enable_auto_scaling"])
            observed_pools.append(pool)
        plan = self.pool_plan(observed_pools, changes)  # refuses before any request
        s = self.settings
        cluster_level = [k for k in changes if k in ("kubernetes_version", "tags", "provisioning_state")]
        steps = len(plan) + (1 if cluster_level else 0)
        wait = module_wait(self.module)
        if cluster_level:
            if "kubernetes_version" in changes:
                props["kubernetesVersion"] = str(s["kubernetes_version"])
            if "tags" in changes:
                mc["tags"] = dict(s["tags"] or {})
            steps -= 1
            # the pools as they are (the autoscaler's counts included): no pool change here
            self._put(mc, "reconcile" if cluster_level == ["provisioning_state"] else "update",
                      wait=wait or steps > 0)
        for kind, name, pool in plan:
            steps -= 1
            self._pool_op(kind, name, pool, wait or steps > 0)

    def delete(self):
        from azure.core.exceptions import ResourceNotFoundError
        try:
            poller = self.client.managed_clusters.begin_delete(
                self.rg, self.cluster_name, polling=module_wait(self.module))
        except ResourceNotFoundError:
            return
        except Exception as e:
            raise self._err(e, "deletion")
        self._wait_poller(poller, "deletion")

    # --- kubeconfig ------------------------------------------------------------------------
    def fetch_kubeconfig(self):
        try:
            result = wire(self.client.managed_clusters.list_cluster_user_credentials(
                self.rg, self.cluster_name))
        except Exception as e:
            raise self._err(e, "user credentials")
        configs = result.get("kubeconfigs") or []
        if not configs or not configs[0].get("value"):
            raise MeshfleetError("AKS returned no user kubeconfig for cluster %s" % self.cluster_name)
        value = configs[0]["value"]
        if isinstance(value, str):  # wire format: base64 text
            import base64
            value = base64.b64decode(value)
        config = kc.load(value.decode("utf-8") if isinstance(value, bytes) else value)
        if config is None:
            raise MeshfleetError("AKS returned a kubeconfig that is not YAML for cluster %s"
                                 % self.cluster_name)
        return rename_kubeconfig(config, self.cluster_name)

    def write_kubeconfig(self):
        observed = self.get()
        if not observed or observed.get("provisioning_state") in ("Creating", "Deleting"):
            return self.kubeconfig_path, self.cluster_name, False  # not there yet (wait: false)
        self.ensure_cluster_dir()
        changed = kc.write_kubeconfig(self.kubeconfig_path, self.fetch_kubeconfig())
        return self.kubeconfig_path, self.cluster_name, changed


def rename_kubeconfig(config, name):
    """Keep the first context's cluster and user, all named ``name`` (credentials untouched)."""
    def pick(key, wanted):
        items = config.get(key) or []
        for item in items:
            if item.get("name") == wanted:
                return item
        return items[0] if items else {}
    ctx = pick("contexts", config.get("current-context"))
    body = ctx.get("context") or {}
    cluster = pick("clusters", body.get("cluster"))
    user = pick("users", body.get("user"))
    new_ctx = dict(body, cluster=name, user=name)
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": name, "cluster": cluster.get("cluster") or {}}],
        "users": [{"name": name, "user": user.get("user") or {}}],
        "contexts": [{"name": name, "context": new_ctx}],
        "current-context": name,
    }
