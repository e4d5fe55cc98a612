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

Mutable in place: ``kubernetes_version`` (upgrade), ``tags``, node pool ``count`` /
``min_count`` / ``max_count`` / ``mode`` and new node pools. Everything else Azure cannot change
on an existing cluster is refused, naming the field (``network_profile.pod_cidr``,
``node_pools.system.vm_size``, ``location``, ``dns_prefix``).

Credentials: azure-identity's DefaultAzureCredential (AZURE_CLIENT_ID +
AZURE_TENANT_ID + AZURE_CLIENT_SECRET, workload identity, managed identity, ``az
login``); the subscription from ``settings.subscription_id`` or AZURE_SUBSCRIPTION_ID.
Tests inject a transport and a credential through :attr:`AksProvider.sdk_hooks`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError, WaitTimeout, recorded_wait
from ansible_collections.meshfleet.mesh.plugins.module_utils import kubeconfig as kc
from ansible_collections.meshfleet.mesh.plugins.module_utils.providers.base import ClusterProvider
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers.cloud import (
    FieldPatterns, diff_flat, flatten_settings, group_new_items, module_timeout, module_wait,
    version_matches)

DEFAULT_POOL = dict(name="system", vm_size="Standard_D2s_v5", count=1, mode="System")

POOL_FIELDS = (  # setting -> ARM wire name
    ("name", "name"), ("vm_size", "vmSize"), ("count", "count"), ("mode", "mode"),
    ("min_count", "minCount"), ("max_count", "maxCount"))
NETWORK_FIELDS = (
    ("network_plugin", "networkPlugin"), ("pod_cidr", "podCidr"),
    ("service_cidr", "serviceCidr"), ("dns_service_ip", "dnsServiceIP"))

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


class AksProvider(ClusterProvider):
    name = "aks"
    required_settings = ("resource_group", "location")
    immutable_settings = FieldPatterns((
        "location", "dns_prefix", "network_profile.*", "node_pools.*.vm_size"))
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
        for pool in self.settings.get("node_pools") or []:
            if not isinstance(pool, dict) or not pool.get("name"):
                raise MeshfleetError("cluster %s (provider aks): every settings.node_pools item "
                                     "needs a name" % self.cluster_name)
        if "credential" not in self.sdk_hooks:
            try:
                check_azure_credentials()
            except MeshfleetError as e:
                raise MeshfleetError("cluster %s (provider aks): %s" % (self.cluster_name, e.msg))

    @property
    def client(self):
        if self._client is None:
            from azure.mgmt.containerservice import ContainerServiceClient
            hooks = dict(self.sdk_hooks)
            credential = hooks.pop("credential", None)
            if credential is None:
                from azure.identity import DefaultAzureCredential
                credential = DefaultAzureCredential()
            self._client = ContainerServiceClient(credential, self.subscription_id,
                                                  user_agent="meshfleet", **hooks)
        return self._client

    @property
    def rg(self):
        return self.settings["resource_group"]

    def _err(self, e, action):
        from azure.core.exceptions import HttpResponseError
        if isinstance(e, HttpResponseError):
            code = getattr(getattr(e, "error", None), "code", None)
            message = getattr(getattr(e, "error", None), "message", None) or e.message
            return MeshfleetError("AKS %s of cluster %s failed (HTTP %s%s): %s" % (
                action, self.cluster_name, e.status_code, ", %s" % code if code else "", message),
                status_code=e.status_code)
        return MeshfleetError("AKS %s of cluster %s failed: %s" % (action, self.cluster_name, e))

    def _wait_poller(self, poller, what):
        if not module_wait(self.module):
            return None
        timeout = module_timeout(self.module)
        try:
            with recorded_wait("AKS %s of cluster %s" % (what, self.cluster_name), timeout):
                result = poller.result(timeout=timeout)
        except Exception as e:
            raise self._err(e, what)
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
        for p in props.get("agentPoolProfiles") or []:
            pools.append(dict((k, p.get(w)) for k, w in POOL_FIELDS))
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
        return dict(settings=observed, provisioning_state=state,
                    ready=state == "Succeeded" and (props.get("powerState") or {}).get("code", "Running") == "Running",
                    api_server="https://%s:443" % fqdn if fqdn else None, context=self.cluster_name)

    # --- compare ------------------------------------------------------------------------
    def diff(self, observed):
        want = dict((k, self.settings.get(k)) for k in self.compared_settings)
        seen_settings = (observed or {}).get("settings", {})
        desired = flatten_settings(want, self.NESTED)
        seen = flatten_settings(seen_settings, self.NESTED)
        changes = diff_flat(desired, seen, self.same)
        return group_new_items(changes, seen, ("node_pools",))

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
        body = dict(name=pool["name"], vmSize=pool.get("vm_size", DEFAULT_POOL["vm_size"]),
                    count=pool.get("count", 1), mode=pool.get("mode", "User"),
                    osType="Linux", type="VirtualMachineScaleSets")
        if pool.get("min_count") is not None or pool.get("max_count") is not None:
            body.update(enableAutoScaling=True, minCount=pool.get("min_count"),
                        maxCount=pool.get("max_count"))
        return body

    def _body(self):
        s = self.settings
        pools = s.get("node_pools") or [DEFAULT_POOL]
        props = dict(dnsPrefix=s.get("dns_prefix") or self.cluster_name,
                     agentPoolProfiles=[self._pool_body(p) for p in pools])
        if pools is not s.get("node_pools"):
            props["agentPoolProfiles"][0]["mode"] = "System"
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
    def _model(body):
        """A wire-format dict as the SDK's ManagedCluster, so that its serializer drops read-only
        fields (provisioning states, FQDNs, ...) from the PUT body; older (msrest) SDKs do that
        from the dict themselves."""
        from azure.mgmt.containerservice import models
        cls = models.ManagedCluster
        if hasattr(cls, "as_dict") and not hasattr(cls, "serialize"):
            return cls(body)
        return body

    def _put(self, body, what):
        body = self._model(body)
        try:
            # without wait, no poller thread: the operation goes on in Azure
            poller = self.client.managed_clusters.begin_create_or_update(
                self.rg, self.cluster_name, body, polling=module_wait(self.module))
        except Exception as e:
            raise self._err(e, what)
        self._wait_poller(poller, what)

    def create(self):
        self._put(self._body(), "creation")

    def update(self, changes):
        mc = self._get_raw()
        if mc is None:
            raise MeshfleetError("cluster %s disappeared during the update" % self.cluster_name)
        props = mc.setdefault("properties", {})
        s = self.settings
        if "kubernetes_version" in changes:
            props["kubernetesVersion"] = str(s["kubernetes_version"])
        if "tags" in changes:
            mc["tags"] = dict(s["tags"] or {})
        pools = {p["name"]: p for p in props.get("agentPoolProfiles") or []}
        for pool in s.get("node_pools") or []:
            if pool["name"] not in pools:
                props.setdefault("agentPoolProfiles", []).append(self._pool_body(pool))
                continue
            target = pools[pool["name"]]
            for k, w in POOL_FIELDS:
                if "node_pools.%s.%s" % (pool["name"], k) in changes:
                    target[w] = pool[k]
                    if k in ("min_count", "max_count"):
                        target["enableAutoScaling"] = True
        self._put(mc, "update")  # read-only fields are dropped by the SDK's serializer

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
