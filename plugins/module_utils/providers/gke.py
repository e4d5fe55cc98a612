# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Google Kubernetes Engine provider (google-cloud-container ClusterManagerClient, REST).

Create/update/delete one GKE cluster: project, location (zone or region), release
channel or version, node pools, network/subnetwork, workload identity. Every
mutation returns a GKE operation, which is polled (``get_operation``) until DONE,
bounded by the module's ``wait_timeout``. Throttling (HTTP 429) and 503 answers are
retried, honouring ``Retry-After``.

The kubeconfig carries the API endpoint, the cluster CA and, by default
(``settings.credential_plugin: meshfleet``), an exec credential plugin shipped with the
collection (module_utils/exec_credential.py, copied next to the kubeconfig and run with
the Python that wrote it) that gets a fresh google-auth access token whenever a client
asks, so the kubeconfig outlives the one-hour tokens. ``gke-gcloud-auth-plugin`` uses
Google's plugin instead; ``static`` writes one access token (about an hour; a re-run
refreshes it). No gcloud binary is needed.

``settings.api_endpoint`` points the client elsewhere (``client_options.api_endpoint``;
an ``http://`` URL for an emulator or a test server is used as given).

Mutable in place: ``kubernetes_version`` (master upgrade), ``release_channel``,
``workload_identity``, node pool autoscaling (``min_count`` / ``max_count``) and new
node pools. A node pool's ``count`` is its initial size (GKE does not report the
current size of a pool; scale with min/max), and like min/max it is per zone: in a
regional location (3 zones) a pool of ``count: 2`` has 6 nodes. The observed pool
reports ``count`` per zone (what was asked) and ``zones``; it is never compared.
Refused: ``location``, ``network``, ``subnetwork``,
``node_pools.<name>.machine_type`` / ``disk_size_gb``.

A cluster left in ``ERROR`` (a creation that died half way: its operation ended DONE
with an error) is deleted and created again by the next run.

Credentials: ``settings.credentials_file`` (service-account JSON key) or google-auth's
application default credentials (GOOGLE_APPLICATION_CREDENTIALS, ``gcloud auth
application-default login``, the metadata server on GCE/GKE).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import time

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError, wait_for
from ansible_collections.meshfleet.mesh.plugins.module_utils import exec_credential as xc
from ansible_collections.meshfleet.mesh.plugins.module_utils import kubeconfig as kc
from ansible_collections.meshfleet.mesh.plugins.module_utils.providers.base import ClusterProvider
from ansible_collections.meshfleet.mesh.plugins.module_utils.cloud import (
    diff_flat, flatten_settings, group_new_items, module_timeout, module_wait,
    version_matches)

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
CREDENTIAL_TYPES = ("service_account", "authorized_user", "external_account",
                    "impersonated_service_account")
CREDENTIALS_HELP = (
    "set settings.credentials_file to a service-account JSON key, or GOOGLE_APPLICATION_CREDENTIALS, "
    "or run `gcloud auth application-default login`; on GCE/GKE (metadata server) set "
    "GCE_METADATA_HOST=metadata.google.internal")
POOL_FIELDS = ("name", "machine_type", "count", "min_count", "max_count", "disk_size_gb")


def adc_well_known_file(env=None):
    env = os.environ if env is None else env
    config_dir = env.get("CLOUDSDK_CONFIG") or os.path.join(os.path.expanduser("~"), ".config", "gcloud")
    return os.path.join(config_dir, "application_default_credentials.json")


def check_credentials_file(path, what):
    if not os.path.isfile(path):
        raise MeshfleetError("%s %s does not exist" % (what, path))
    try:
        with open(path) as f:
            info = json.load(f)
    except (IOError, OSError, ValueError) as e:
        raise MeshfleetError("%s %s is not a readable JSON credentials file: %s" % (what, path, e))
    if info.get("type") not in CREDENTIAL_TYPES:
        raise MeshfleetError("%s %s has type %r; expected a service-account key or ADC file (%s)"
                             % (what, path, info.get("type"), ", ".join(CREDENTIAL_TYPES)))
    return info


def check_google_credentials(settings, env=None):
    """Raise MeshfleetError when google-auth would find no credentials (no API call)."""
    env = os.environ if env is None else env
    if settings.get("credentials_file"):
        check_credentials_file(os.path.expanduser(settings["credentials_file"]), "settings.credentials_file")
        return "credentials_file"
    if env.get("GOOGLE_APPLICATION_CREDENTIALS"):
        check_credentials_file(env["GOOGLE_APPLICATION_CREDENTIALS"], "GOOGLE_APPLICATION_CREDENTIALS")
        return "GOOGLE_APPLICATION_CREDENTIALS"
    if os.path.isfile(adc_well_known_file(env)):
        return "gcloud application default"
    if env.get("GCE_METADATA_HOST") or env.get("GCE_METADATA_IP"):
        return "metadata server"
    raise MeshfleetError("no Google credentials found: " + CREDENTIALS_HELP)


def short_name(value):
    """``projects/p/global/networks/default`` -> ``default``."""
    return value.rsplit("/", 1)[-1] if value else value


class GkeProvider(ClusterProvider):
    name = "gke"
    compared_settings = ("location", "release_channel", "kubernetes_version", "network", "subnetwork",
                         "workload_identity", "node_pools")
    NESTED = {"node_pools": "by_name"}

    #: seconds between operation polls, and the sleep function (tests replace both)
    poll_interval = 5
    sleep = staticmethod(time.sleep)
    #: retries of a throttled (429) / unavailable (503) call
    max_retries = 5
    #: private hook for tests: extra ClusterManagerClient keywords (client_options...)
    sdk_hooks = {}

    def __init__(self, *args, **kwargs):
        super(GkeProvider, self).__init__(*args, **kwargs)
        self._client = None
        self._credentials = None

    # --- setup -------------------------------------------------------------------
    def validate(self):
        super(GkeProvider, self).validate()
        try:
            import google.cloud.container_v1  # noqa: F401
            import google.auth  # noqa: F401
        except ImportError:
            raise MeshfleetError("provider gke needs the google-cloud-container and google-auth "
                                 "Python packages")
        for pool in self.settings.get("node_pools") or []:
            if not isinstance(pool, dict) or not pool.get("name"):
                raise MeshfleetError("cluster %s (provider gke): every settings.node_pools item "
                                     "needs a name" % self.cluster_name)
        plugin = self.settings.get("credential_plugin") or "meshfleet"
        if plugin not in xc.PLUGINS["gke"]:
            raise MeshfleetError("cluster %s (provider gke): settings.credential_plugin %r is not one of: %s"
                                 % (self.cluster_name, plugin, ", ".join(xc.PLUGINS["gke"])))
        endpoint = self.settings.get("api_endpoint")
        if endpoint is not None and (not isinstance(endpoint, str) or not endpoint.strip()
                                     or " " in endpoint.strip()):
            raise MeshfleetError("cluster %s (provider gke): settings.api_endpoint must be a host[:port] or "
                                 "an http(s):// URL, got %r" % (self.cluster_name, endpoint))
        try:
            check_google_credentials(self.settings)
        except MeshfleetError as e:
            raise MeshfleetError("cluster %s (provider gke): %s" % (self.cluster_name, e.msg))

    @property
    def credentials(self):
        if self._credentials is None:
            if self.settings.get("credentials_file"):
                from google.oauth2 import service_account
                path = os.path.expanduser(self.settings["credentials_file"])
                info = check_credentials_file(path, "settings.credentials_file")
                if info.get("type") == "service_account":
                    self._credentials = service_account.Credentials.from_service_account_info(
                        info, scopes=SCOPES)
                else:
                    import google.auth
                    self._credentials, _project = google.auth.load_credentials_from_file(path, scopes=SCOPES)
            else:
                import google.auth
                self._credentials, _project = google.auth.default(scopes=SCOPES)
        return self._credentials

    @property
    def client(self):
        if self._client is None:
            from google.cloud.container_v1 import ClusterManagerClient
            kwargs = dict(self.sdk_hooks)
            if self.settings.get("api_endpoint"):
                # the REST transport keeps an http:// or https:// scheme given here
                kwargs["client_options"] = {"api_endpoint": self.settings["api_endpoint"].rstrip("/")}
            self._client = ClusterManagerClient(credentials=self.credentials, transport="rest", **kwargs)
        return self._client

    @property
    def parent(self):
        return "projects/%s/locations/%s" % (self.settings["project"], self.settings["location"])

    @property
    def path(self):
        return "%s/clusters/%s" % (self.parent, self.cluster_name)

    def _err(self, e, action, hint=""):
        code = getattr(e, "code", None)
        message = getattr(e, "message", None) or str(e)
        if not hint and "quota" in message.lower() and code != 429:
            hint = " (raise the quota, or ask for fewer or smaller nodes: node_pools count/machine_type; " \
                   "in a regional location count is per zone, 3 zones)"
        elif not hint and "incompatible operation" in message:
            hint = " (another operation is still running on the cluster; re-run when it is done)"
        return MeshfleetError("GKE %s of cluster %s failed%s: %s%s" % (
            action, self.cluster_name, " (HTTP %s)" % int(code) if code else "", message, hint),
            status_code=int(code) if code else None)

    def _call(self, action, method, **kwargs):
        """Call a client method; retry 429/503 honouring Retry-After; map errors."""
        import google.auth.exceptions
        from google.api_core import exceptions as gexc
        delay = 1.0
        for attempt in range(self.max_retries + 1):
            try:
                return method(retry=None, **kwargs)
            except (gexc.TooManyRequests, gexc.ServiceUnavailable) as e:
                if attempt >= self.max_retries:
                    raise self._err(e, action, " (still refused after %d retries; re-run later)"
                                    % self.max_retries)
                retry_after = None
                response = getattr(e, "response", None)
                if response is not None and getattr(response, "headers", None):
                    try:
                        retry_after = float(response.headers.get("Retry-After"))
                    except (TypeError, ValueError):
                        retry_after = None
                self.sleep(min(retry_after if retry_after is not None else delay, 60))
                delay = min(delay * 2, 30)
            except gexc.GoogleAPICallError as e:
                raise self._err(e, action)
            except google.auth.exceptions.GoogleAuthError as e:
                raise MeshfleetError("cluster %s (provider gke): cannot authenticate: %s; %s"
                                     % (self.cluster_name, e, CREDENTIALS_HELP))

    def _wait_op(self, op, action, force=False):
        if not force and not module_wait(self.module):
            return
        name = "%s/operations/%s" % (self.parent, short_name(op.name))

        def done():
            current = self._call(action, self.client.get_operation, name=name)
            if current.status.name == "DONE":
                return current
            return None
        final = wait_for(done, module_timeout(self.module), "GKE %s of cluster %s" % (action, self.cluster_name),
                         sleep=self.poll_interval, max_sleep=max(self.poll_interval, 15),
                         sleeper=self.sleep)
        problem = (final.error.message if final.error else None) or final.status_message
        if problem:
            raise MeshfleetError("GKE %s of cluster %s failed: %s%s" % (
                action, self.cluster_name, problem,
                "; if the cluster is left in ERROR state, the next run deletes it and creates it again"
                if action == "creation" else ""))

    # --- observe -----------------------------------------------------------------
    def _get_raw(self):
        from google.api_core import exceptions as gexc
        try:
            return self._call("read", self.client.get_cluster, name=self.path)
        except MeshfleetError as e:
            if e.details.get("status_code") == 404:
                return None
            raise
        except gexc.NotFound:
            return None

    def get(self):
        c = self._get_raw()
        if c is None:
            return None
        pools = []
        for p in c.node_pools:
            pools.append(dict(
                name=p.name, machine_type=p.config.machine_type or None, count=p.initial_node_count,
                min_count=p.autoscaling.min_node_count if p.autoscaling.enabled else None,
                max_count=p.autoscaling.max_node_count if p.autoscaling.enabled else None,
                disk_size_gb=p.config.disk_size_gb or None, zones=len(p.locations) or None))
        channel = c.release_channel.channel.name if c.release_channel else "UNSPECIFIED"
        observed = dict(
            project=self.settings["project"], location=c.location or self.settings["location"],
            release_channel=None if channel == "UNSPECIFIED" else channel,
            kubernetes_version=c.current_master_version or c.initial_cluster_version or None,
            network=short_name(c.network) or None, subnetwork=short_name(c.subnetwork) or None,
            workload_identity=bool(c.workload_identity_config.workload_pool),
            node_pools=pools)
        status = c.status.name
        return dict(settings=observed, status=status, ready=status == "RUNNING",
                    status_message=c.status_message or None, node_count=c.current_node_count,
                    api_server="https://%s" % c.endpoint if c.endpoint else None,
                    ca=c.master_auth.cluster_ca_certificate or None, context=self.cluster_name)

    # --- compare --------------------------------------------------------------------
    def _desired(self):
        want = dict((k, self.settings.get(k)) for k in self.compared_settings)
        pools = []
        for p in want.get("node_pools") or []:
            pools.append(dict((k, v) for k, v in p.items() if k != "count"))  # initial size only
        if want.get("node_pools") is not None:
            want["node_pools"] = pools
        return want

    def diff(self, observed):
        if (observed or {}).get("status") == "ERROR":
            # a creation that died half way: update() deletes the cluster and creates it again
            return {"status": ("ERROR", "RUNNING")}
        seen = flatten_settings((observed or {}).get("settings", {}), self.NESTED)
        changes = diff_flat(flatten_settings(self._desired(), self.NESTED), seen, self.same)
        return group_new_items(changes, seen, ("node_pools",))

    def same(self, key, have, want):
        if key == "kubernetes_version":
            return version_matches(have, want)
        if key == "release_channel":
            return str(have or "").upper() == str(want or "").upper()
        if key in ("network", "subnetwork"):
            return short_name(have) == short_name(want)
        return have == want

    # --- change ------------------------------------------------------------------------
    @staticmethod
    def _pool_body(pool):
        body = dict(name=pool["name"], initial_node_count=pool.get("count", 1),
                    config=dict(machine_type=pool.get("machine_type", "e2-standard-4")))
        if pool.get("disk_size_gb"):
            body["config"]["disk_size_gb"] = pool["disk_size_gb"]
        if pool.get("min_count") is not None or pool.get("max_count") is not None:
            body["autoscaling"] = dict(enabled=True, min_node_count=pool.get("min_count") or 0,
                                       max_node_count=pool.get("max_count") or pool.get("count", 1))
        return body

    def _workload_pool(self, enabled):
        return "%s.svc.id.goog" % self.settings["project"] if enabled else ""

    def create(self):
        s = self.settings
        pools = s.get("node_pools") or [dict(name="default-pool", count=1)]
        cluster = dict(name=self.cluster_name, node_pools=[self._pool_body(p) for p in pools])
        if s.get("kubernetes_version"):
            cluster["initial_cluster_version"] = str(s["kubernetes_version"])
        if s.get("release_channel"):
            cluster["release_channel"] = dict(channel=str(s["release_channel"]).upper())
        if s.get("network"):
            cluster["network"] = s["network"]
        if s.get("subnetwork"):
            cluster["subnetwork"] = s["subnetwork"]
        if s.get("workload_identity"):
            cluster["workload_identity_config"] = dict(workload_pool=self._workload_pool(True))
        op = self._call("creation", self.client.create_cluster, parent=self.parent, cluster=cluster)
        self._wait_op(op, "creation")

    def _update_cluster(self, update, what):
        op = self._call(what, self.client.update_cluster, name=self.path, update=update)
        self._wait_op(op, what)

    def recreate(self):
        if self.module is not None and hasattr(self.module, "warn"):
            self.module.warn("GKE cluster %s is in ERROR state; deleting it and creating it again" % self.cluster_name)
        op = self._call("deletion", self.client.delete_cluster, name=self.path)
        self._wait_op(op, "deletion", force=True)
        self.create()

    def update(self, changes):
        if "status" in changes:
            return self.recreate()
        s = self.settings
        if "kubernetes_version" in changes:
            self._update_cluster(dict(desired_master_version=str(s["kubernetes_version"])), "upgrade")
        if "release_channel" in changes:
            self._update_cluster(dict(desired_release_channel=dict(
                channel=str(s["release_channel"]).upper())), "release channel update")
        if "workload_identity" in changes:
            self._update_cluster(dict(desired_workload_identity_config=dict(
                workload_pool=self._workload_pool(s["workload_identity"]))), "workload identity update")
        for pool in s.get("node_pools") or []:
            key = "node_pools.%s" % pool["name"]
            if key in changes:
                op = self._call("node pool creation", self.client.create_node_pool,
                                parent=self.path, node_pool=self._pool_body(pool))
                self._wait_op(op, "node pool %s creation" % pool["name"])
            elif key + ".min_count" in changes or key + ".max_count" in changes:
                body = self._pool_body(pool)
                op = self._call("node pool autoscaling", self.client.set_node_pool_autoscaling,
                                request=dict(name="%s/nodePools/%s" % (self.path, pool["name"]),
                                             autoscaling=body.get("autoscaling") or dict(enabled=False)))
                self._wait_op(op, "node pool %s autoscaling" % pool["name"])

    def delete(self):
        try:
            op = self._call("deletion", self.client.delete_cluster, name=self.path)
        except MeshfleetError as e:
            if e.details.get("status_code") == 404:
                return
            raise
        self._wait_op(op, "deletion")

    # --- kubeconfig ---------------------------------------------------------------------
    def access_token(self):
        import google.auth.transport.requests
        creds = self.credentials
        if not creds.valid:
            try:
                creds.refresh(google.auth.transport.requests.Request())
            except Exception as e:
                raise MeshfleetError("cluster %s (provider gke): cannot get an access token: %s"
                                     % (self.cluster_name, e))
        return creds.token

    def kubeconfig_user(self):
        """(kubeconfig user, whether the meshfleet plugin file changed) for settings.credential_plugin."""
        plugin = self.settings.get("credential_plugin") or "meshfleet"
        if plugin == "static":
            return kc.token_user(self.access_token()), False
        creds_file = self.settings.get("credentials_file") or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        if creds_file:
            creds_file = os.path.abspath(os.path.expanduser(creds_file))
        env = xc.carried_env(xc.GKE_CARRIED_ENV)
        if plugin == "meshfleet":
            script, changed = self._install_plugin()
            try:
                spec = xc.exec_spec(script, xc.gke_exec_args(creds_file), env)
            except xc.CredentialError as e:
                raise MeshfleetError("cluster %s (provider gke): %s" % (self.cluster_name, e))
            return {"exec": spec}, changed
        args = []
        if creds_file:
            env["GOOGLE_APPLICATION_CREDENTIALS"] = creds_file
            args = ["--use_application_default_credentials"]
        return kc.exec_user("gke-gcloud-auth-plugin", args, env=env, provide_cluster_info=True,
                            install_hint="Install gke-gcloud-auth-plugin (gcloud components install "
                            "gke-gcloud-auth-plugin)"), False

    def write_kubeconfig(self):
        observed = self.get()
        if not observed or not observed.get("api_server"):
            return self.kubeconfig_path, self.cluster_name, False
        self.ensure_cluster_dir()
        user, script_changed = self.kubeconfig_user()
        config = kc.build_kubeconfig(self.cluster_name, observed["api_server"], user, ca=observed.get("ca"))
        changed = kc.write_kubeconfig(self.kubeconfig_path, config)
        return self.kubeconfig_path, self.cluster_name, changed or script_changed
