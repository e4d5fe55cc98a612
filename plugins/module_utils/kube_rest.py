# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small Kubernetes REST client for the converge path's read-mostly checks.

Why not the ``kubernetes`` package: importing it costs ~0.8 s of CPU per module run (it
loads ~800 model classes) and a no-op converge runs a module per cluster per step; this
client loads in milliseconds and keeps one keep-alive connection. It speaks JSON dicts,
reads kubeconfigs the way kubectl does for the fields Meshfleet's providers write
(inline or file CA and client certificates, bearer tokens, ``exec`` credential plugins,
``insecure-skip-tls-verify``, ``tls-server-name``) and turns failures into one
:class:`~.base.MeshfleetError` that names the cluster, its server and the action, like
:class:`~.k8s_client.KubeCluster`. Changes to plain objects stay with kubernetes.core.

    kube = KubeRest(kubeconfig, label="cluster1")
    ns = kube.get("read namespace istio-system", "/api/v1/namespaces/istio-system", not_found=None)
    path = kube.object_path({"apiVersion": "apps/v1", "kind": "Deployment",
                             "metadata": {"name": "istiod", "namespace": "istio-system"}})
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import datetime
import hashlib
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

try:
    from urllib.parse import urlencode, urlsplit, quote
except ImportError:  # pragma: no cover - Python 2
    from urllib import urlencode, quote  # type: ignore
    from urlparse import urlsplit  # type: ignore

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover - PyYAML ships with ansible-core
    yaml = None
    HAS_YAML = False

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError, yaml_load

_NOT_GIVEN = object()


def _read(path, what, label, kubeconfig):
    try:
        with open(os.path.expanduser(path), "rb") as f:
            return f.read()
    except (IOError, OSError) as e:
        raise MeshfleetError("%s kubeconfig %s: cannot read its %s %s: %s" % (label, kubeconfig, what, path, e))


def _data_or_file(entry, key, what, label, kubeconfig):
    """Bytes of ``<key>-data`` (base64) or of the file ``<key>``; None when neither is set."""
    data = entry.get(key + "-data")
    if data:
        try:
            return base64.b64decode(data)
        except (TypeError, ValueError) as e:
            raise MeshfleetError("%s kubeconfig %s: %s-data is not base64: %s" % (label, kubeconfig, key, e))
    if entry.get(key):
        return _read(entry[key], what, label, kubeconfig)
    return None


def status_message(body, status, reason):
    """The ``message`` of a Kubernetes Status body, else the HTTP status and reason."""
    try:
        data = json.loads(body) if body else None
        if isinstance(data, dict) and data.get("message"):
            return data["message"]
    except (ValueError, TypeError):
        pass
    return "%s %s" % (status, reason or "")


def api_error(name, kubeconfig, what, status, message, **details):
    """The MeshfleetError for an API answer ``status`` (shared with k8s_client.KubeCluster)."""
    if status == 0 or status is None:
        text = "%s is unreachable while trying to %s: %s" % (name, what, message)
    elif status == 401:
        text = ("%s rejected the credentials of kubeconfig %s while trying to %s "
                "(401 Unauthorized: expired or revoked?)" % (name, kubeconfig, what))
    elif status == 403:
        text = "%s: forbidden to %s: %s" % (name, what, message)
    else:
        text = "%s: cannot %s: %s (HTTP %s)" % (name, what, message, status)
    return MeshfleetError(text, status=status, **details)


# TLS contexts by (CA, client certificate, key, insecure): one per cluster per process (a
# context with a CA costs ~20 ms to build; the converge receipt check opens many clients)
_SSL_CONTEXTS = {}
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
AGGREGATED_DISCOVERY = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"


class KubeRest:
    """One cluster's API over HTTPS; ``label`` names it in error messages."""

    def __init__(self, kubeconfig, context=None, label="cluster", option="kubeconfig", timeout=30.0):
        self.label = label
        self.kubeconfig = kubeconfig
        self.context = context
        self.timeout = timeout
        self._conn = None
        self._resources = {}
        self._aggregated = False
        if not HAS_YAML:
            raise MeshfleetError("PyYAML is required to read kubeconfigs (it ships with ansible-core)")
        if not kubeconfig:
            raise MeshfleetError("%s cluster: no kubeconfig given (set %s)" % (label, option))
        path = os.path.expanduser(kubeconfig)
        if not os.path.isfile(path):
            raise MeshfleetError("%s kubeconfig %s does not exist or is not a file (%s)" % (label, kubeconfig, option))
        try:
            with open(path) as f:
                config = yaml_load(f)
        except (IOError, OSError, yaml.YAMLError) as e:
            raise MeshfleetError("%s kubeconfig %s is malformed: %s" % (label, kubeconfig, e))
        self._load(config if isinstance(config, dict) else {})

    # --- kubeconfig -------------------------------------------------------------------
    def _named(self, config, section, name):
        for entry in config.get(section) or []:
            if isinstance(entry, dict) and entry.get("name") == name:
                return entry.get(section[:-1]) or {}
        raise MeshfleetError("%s kubeconfig %s is not usable: no %s named %r"
                             % (self.label, self.kubeconfig, section[:-1], name))

    def _load(self, config):
        ctx_name = self.context or config.get("current-context")
        if not ctx_name:
            raise MeshfleetError("%s kubeconfig %s is not usable: no context given and no current-context"
                                 % (self.label, self.kubeconfig))
        ctx = self._named(config, "contexts", ctx_name)
        cluster = self._named(config, "clusters", ctx.get("cluster"))
        user = self._named(config, "users", ctx.get("user")) if ctx.get("user") else {}
        server = cluster.get("server")
        if not server:
            raise MeshfleetError("%s kubeconfig %s is not usable: cluster %r has no server"
                                 % (self.label, self.kubeconfig, ctx.get("cluster")))
        self.server = server.rstrip("/")
        url = urlsplit(self.server)
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if self._https else 80)
        self._prefix = url.path.rstrip("/")
        self._headers = {"Accept": "application/json", "User-Agent": "meshfleet"}
        self._ca_pem = None
        self._insecure = bool(cluster.get("insecure-skip-tls-verify"))
        if self._https:
            ca = _data_or_file(cluster, "certificate-authority", "certificate authority", self.label, self.kubeconfig)
            self._ca_pem = ca.decode("utf-8") if ca else None
            self._server_hostname = cluster.get("tls-server-name") or self._host
        cert = _data_or_file(user, "client-certificate", "client certificate", self.label, self.kubeconfig)
        key = _data_or_file(user, "client-key", "client key", self.label, self.kubeconfig)
        token = user.get("token")
        if not token and user.get("tokenFile"):
            token = _read(user["tokenFile"], "token file", self.label, self.kubeconfig).decode("utf-8").strip()
        self._exec_spec = user.get("exec") if not token and not cert else None
        self._exec_expiry = None  # epoch seconds of the plugin's expirationTimestamp
        self._exec_ran = False
        self._cluster_entry = cluster
        if token:
            self._headers["Authorization"] = "Bearer %s" % token
        self._client_cert = (cert, key) if cert and key else None
        self._ssl = None

    def _ssl_context(self):
        """The TLS context, built on the first request (so a bad CA or plugin fails there, named).
        With a CA in the kubeconfig only that CA is trusted (as kubectl does); without one, the
        system's."""
        if self._ssl is None:
            key = hashlib.sha256(repr((self._insecure, self._ca_pem, self._client_cert)).encode("utf-8")).hexdigest()
            ctx_ssl = _SSL_CONTEXTS.get(key)
            if ctx_ssl is None:
                if self._insecure:
                    ctx_ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    ctx_ssl.check_hostname = False
                    ctx_ssl.verify_mode = ssl.CERT_NONE
                elif self._ca_pem:
                    ctx_ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    try:
                        ctx_ssl.load_verify_locations(cadata=self._ca_pem)
                    except (ssl.SSLError, ValueError) as e:
                        raise MeshfleetError("%s kubeconfig %s: its certificate authority is not usable: %s"
                                             % (self.label, self.kubeconfig, e), cluster=self.label,
                                             server=self.server)
                else:
                    ctx_ssl = ssl.create_default_context()
                if self._client_cert:
                    self._load_client_cert(ctx_ssl, *self._client_cert)
                _SSL_CONTEXTS[key] = ctx_ssl
            self._ssl = ctx_ssl
        return self._ssl

    def _load_client_cert(self, ctx_ssl, cert, key):
        # ssl loads client certificates from files only: a private temp dir, gone right after
        folder = tempfile.mkdtemp(prefix="meshfleet-kube-")
        try:
            for name, data in (("cert.pem", cert), ("key.pem", key)):
                fd = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            ctx_ssl.load_cert_chain(os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem"))
        except ssl.SSLError as e:
            raise MeshfleetError("%s kubeconfig %s: its client certificate or key is not usable: %s"
                                 % (self.label, self.kubeconfig, e))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _exec(self, spec, cluster):
        """Run an ``exec`` credential plugin (client.authentication.k8s.io): (token, cert, key,
        expiry as epoch seconds or None)."""
        cmd = [spec.get("command")] + list(spec.get("args") or [])
        env = dict(os.environ)
        for item in spec.get("env") or []:
            env[item.get("name")] = item.get("value", "")
        info = {"apiVersion": spec.get("apiVersion", "client.authentication.k8s.io/v1beta1"),
                "kind": "ExecCredential", "spec": {"interactive": False}}
        if spec.get("provideClusterInfo"):
            info["spec"]["cluster"] = {"server": cluster.get("server"),
                                       "certificate-authority-data": cluster.get("certificate-authority-data")}
        env["KUBERNETES_EXEC_INFO"] = json.dumps(info)
        try:
            proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  universal_newlines=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            hint = spec.get("installHint") or ""
            raise MeshfleetError("%s kubeconfig %s: its credential plugin %s failed to run: %s %s"
                                 % (self.label, self.kubeconfig, cmd[0], e, hint))
        if proc.returncode != 0:
            raise MeshfleetError("%s kubeconfig %s: its credential plugin %s failed (rc=%s): %s"
                                 % (self.label, self.kubeconfig, cmd[0], proc.returncode, proc.stderr.strip()[-400:]))
        try:
            status = json.loads(proc.stdout).get("status") or {}
        except ValueError:
            raise MeshfleetError("%s kubeconfig %s: its credential plugin %s printed no ExecCredential"
                                 % (self.label, self.kubeconfig, cmd[0]))
        cert = status.get("clientCertificateData")
        key = status.get("clientKeyData")
        return (status.get("token"), cert.encode("utf-8") if cert else None,
                key.encode("utf-8") if key else None, _expiry(status.get("expirationTimestamp")))

    #: a credential this close to its expirationTimestamp is refreshed before a request
    EXEC_EXPIRY_SKEW = 30

    def _exec_credentials(self, force=False):
        """Run the exec plugin on the first request, again once its credential expires
        (``expirationTimestamp``, as client-go does), and when ``force`` (after a 401)."""
        if not self._exec_spec:
            return False
        if self._exec_ran and not force and (
                self._exec_expiry is None or time.time() < self._exec_expiry - self.EXEC_EXPIRY_SKEW):
            return False
        token, cert, key, self._exec_expiry = self._exec(self._exec_spec, self._cluster_entry)
        self._exec_ran = True
        if token:
            self._headers["Authorization"] = "Bearer %s" % token
        if cert and key and (cert, key) != self._client_cert:
            self._client_cert = (cert, key)
            self._ssl = None
            self.close()
        return True

    # --- HTTP -------------------------------------------------------------------------
    def _name(self):
        return "%s cluster (%s)" % (self.label, self.server)

    def _connect(self):
        if not self._https:
            return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        ctx_ssl = self._ssl_context()
        conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout, context=ctx_ssl)
        if self._server_hostname != self._host:
            # tls-server-name: connect to the host, verify the certificate against that name
            sock = socket.create_connection((self._host, self._port), self.timeout)
            conn.sock = ctx_ssl.wrap_socket(sock, server_hostname=self._server_hostname)
        return conn

    def _send(self, method, url, body, headers):
        if self._conn is None:
            self._conn = self._connect()
        try:
            self._conn.request(method, url, body=body, headers=headers)
            resp = self._conn.getresponse()
            return resp.status, resp.reason, resp.read()
        except Exception:
            self.close()
            raise

    def close(self):
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def request(self, what, method, path, body=None, query=None, content_type="application/json",
                not_found=_NOT_GIVEN, accept=None):
        """One API call; returns the decoded JSON body (a dict), or ``not_found`` on 404 when given.

        ``what`` says what the call does ("read secret istio-system/cacerts"). Error messages
        never include the request body (it may carry a token or a key)."""
        self._exec_credentials()
        url = self._prefix + path
        if query:
            url += "?" + urlencode(query)
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        status, reason, raw = self._request_once(what, method, url, data, content_type, accept)
        if status == 401 and self._exec_credentials(force=True):
            # a credential revoked or expired early: the plugin runs once more, the call is retried
            status, reason, raw = self._request_once(what, method, url, data, content_type, accept)
        if status == 404 and not_found is not _NOT_GIVEN:
            return not_found
        if status >= 400:
            raise api_error(self._name(), self.kubeconfig, what, status, status_message(raw, status, reason),
                            cluster=self.label, server=self.server)
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise MeshfleetError("%s: the answer to %s is not JSON" % (self._name(), what),
                                 cluster=self.label, server=self.server)

    def _request_once(self, what, method, url, data, content_type, accept):
        headers = dict(self._headers)
        if accept:
            headers["Accept"] = accept
        if data is not None:
            headers["Content-Type"] = content_type
        try:
            try:
                status, reason, raw = self._send(method, url, data, headers)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                status, reason, raw = self._send(method, url, data, headers)  # a stale keep-alive
        except ssl.SSLError as e:
            raise MeshfleetError("%s: TLS failed while trying to %s: %s (check the CA and client certificate "
                                 "of kubeconfig %s)" % (self._name(), what, e, self.kubeconfig),
                                 cluster=self.label, server=self.server)
        except (OSError, http.client.HTTPException) as e:
            raise MeshfleetError("%s is unreachable while trying to %s: %s (check the kubeconfig %s%s)" % (
                self._name(), what, e, self.kubeconfig, " and context %s" % self.context if self.context else ""),
                cluster=self.label, server=self.server)
        return status, reason, raw

    def get(self, what, path, **kw):
        return self.request(what, "GET", path, **kw)

    # --- resources ----------------------------------------------------------------------
    def _aggregated_discovery(self):
        """Every group/version's resources in two requests (aggregated discovery, Kubernetes
        1.30+), instead of one request per group/version; nothing when the server has none."""
        self._aggregated = True
        for base in ("/api", "/apis"):
            try:
                doc = self.request("discover %s" % base, "GET", base, accept=AGGREGATED_DISCOVERY)
            except MeshfleetError:
                return
            if doc.get("kind") != "APIGroupDiscoveryList":
                return  # an older server answered with the plain APIGroupList
            for group in doc.get("items") or []:
                name = (group.get("metadata") or {}).get("name") or ""
                for version in group.get("versions") or []:
                    gv = "%s/%s" % (name, version.get("version")) if name else version.get("version")
                    found = {}
                    for res in version.get("resources") or []:
                        kind = (res.get("responseKind") or {}).get("kind")
                        if kind and res.get("resource"):
                            found[kind] = (res["resource"], res.get("scope") == "Namespaced")
                    self._resources[gv] = found

    def resources(self, api_version):
        """{kind: (plural, namespaced)} of one group/version (discovery, cached per client);
        empty when the group/version is not served (yet: a CRD not installed)."""
        if not self._aggregated:
            self._aggregated_discovery()
        if api_version not in self._resources:
            base = "/api/v1" if api_version == "v1" else "/apis/%s" % api_version
            doc = self.get("discover %s" % api_version, base, not_found=None) or {}
            found = {}
            for res in doc.get("resources") or []:
                if "/" not in res.get("name", "") and res.get("kind"):
                    found[res["kind"]] = (res["name"], bool(res.get("namespaced")))
            self._resources[api_version] = found
        return self._resources[api_version]

    def forget(self, api_version):
        """Drop the discovery cached for ``api_version`` (a CRD was just installed)."""
        self._resources.pop(api_version, None)

    def collection_path(self, api_version, kind, namespace=None):
        """The API path of a kind's objects (in ``namespace`` when namespaced), or None when the
        cluster does not serve the kind."""
        found = self.resources(api_version).get(kind)
        if not found:
            return None
        plural, namespaced = found
        base = "/api/v1" if api_version == "v1" else "/apis/%s" % api_version
        if namespaced:
            base += "/namespaces/%s" % quote(namespace or "default", safe="")
        return "%s/%s" % (base, plural)

    def object_path(self, obj, default_namespace="default"):
        """The API path of ``obj`` (apiVersion, kind, metadata.name[, namespace]), or None when
        its kind is not served by the cluster."""
        meta = obj.get("metadata") or {}
        base = self.collection_path(obj.get("apiVersion") or "", obj.get("kind") or "",
                                    meta.get("namespace") or default_namespace)
        return None if base is None else "%s/%s" % (base, quote(meta.get("name") or "", safe=""))

    def read_object(self, obj):
        """The cluster's copy of ``obj`` (by apiVersion/kind/namespace/name), or None when absent
        (including when its kind is not served yet)."""
        path = self.object_path(obj)
        if path is None:
            return None
        meta = obj.get("metadata") or {}
        what = "read %s %s%s" % (obj.get("kind"), meta.get("namespace") + "/" if meta.get("namespace") else "",
                                 meta.get("name"))
        return self.get(what, path, not_found=None)

    def list_metadata(self, api_version, kind, namespace=None):
        """{name: metadata} of every object of a kind (in ``namespace`` when namespaced), in one
        metadata-only LIST (PartialObjectMetadataList: a CRD is a few hundred bytes instead of a
        few hundred KB); None when the kind is not served."""
        path = self.collection_path(api_version, kind, namespace)
        if path is None:
            return None
        doc = self.request("list %s%s" % (kind, " in " + namespace if namespace else ""), "GET", path,
                           accept=METADATA_LIST)
        return dict(((i.get("metadata") or {}).get("name"), i.get("metadata") or {}) for i in doc.get("items") or [])

    # --- typed calls (the subset of the kubernetes client's API the modules use) ---------------
    def call(self, what, fn, *args, **kwargs):
        """``fn(*args)`` of :attr:`core`, :attr:`rbac` or :attr:`authn`, the way
        :meth:`.k8s_client.KubeCluster.call` runs the kubernetes client's methods, with JSON
        dicts in and out; ``not_found=<value>`` returns that value on HTTP 404."""
        method, path, body = fn(*args)
        return self.request(what, method, path, body=body, not_found=kwargs.pop("not_found", _NOT_GIVEN))

    core = property(lambda self: _CoreV1)
    rbac = property(lambda self: _RbacV1)
    authn = property(lambda self: _AuthnV1)

    def ca_pem(self):
        """The CA bundle this kubeconfig trusts for its server (PEM text), or None."""
        return self._ca_pem


def _expiry(stamp):
    """Epoch seconds of an RFC 3339 ``expirationTimestamp``; None when absent or unreadable."""
    if not stamp or not isinstance(stamp, str):
        return None
    try:
        when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


def _ns(ns, plural, name=None):
    path = "/api/v1/namespaces/%s/%s" % (quote(ns, safe=""), plural)
    return path + "/" + quote(name, safe="") if name is not None else path


class _CoreV1:
    read_namespace = staticmethod(lambda name: ("GET", "/api/v1/namespaces/" + quote(name, safe=""), None))
    create_namespace = staticmethod(lambda body: ("POST", "/api/v1/namespaces", body))
    read_namespaced_service_account = staticmethod(
        lambda name, ns: ("GET", _ns(ns, "serviceaccounts", name), None))
    create_namespaced_service_account = staticmethod(lambda ns, body: ("POST", _ns(ns, "serviceaccounts"), body))
    delete_namespaced_service_account = staticmethod(
        lambda name, ns: ("DELETE", _ns(ns, "serviceaccounts", name), None))
    create_namespaced_service_account_token = staticmethod(
        lambda name, ns, body: ("POST", _ns(ns, "serviceaccounts", name) + "/token", body))
    read_namespaced_config_map = staticmethod(lambda name, ns: ("GET", _ns(ns, "configmaps", name), None))
    read_namespaced_secret = staticmethod(lambda name, ns: ("GET", _ns(ns, "secrets", name), None))
    create_namespaced_secret = staticmethod(lambda ns, body: ("POST", _ns(ns, "secrets"), body))
    replace_namespaced_secret = staticmethod(lambda name, ns, body: ("PUT", _ns(ns, "secrets", name), body))
    delete_namespaced_secret = staticmethod(lambda name, ns: ("DELETE", _ns(ns, "secrets", name), None))


_RBAC = "/apis/rbac.authorization.k8s.io/v1/"


class _RbacV1:
    read_cluster_role = staticmethod(lambda name: ("GET", _RBAC + "clusterroles/" + quote(name, safe=""), None))
    create_cluster_role = staticmethod(lambda body: ("POST", _RBAC + "clusterroles", body))
    replace_cluster_role = staticmethod(
        lambda name, body: ("PUT", _RBAC + "clusterroles/" + quote(name, safe=""), body))
    delete_cluster_role = staticmethod(lambda name: ("DELETE", _RBAC + "clusterroles/" + quote(name, safe=""), None))
    list_cluster_role_binding = staticmethod(lambda: ("GET", _RBAC + "clusterrolebindings", None))
    read_cluster_role_binding = staticmethod(
        lambda name: ("GET", _RBAC + "clusterrolebindings/" + quote(name, safe=""), None))
    create_cluster_role_binding = staticmethod(lambda body: ("POST", _RBAC + "clusterrolebindings", body))
    replace_cluster_role_binding = staticmethod(
        lambda name, body: ("PUT", _RBAC + "clusterrolebindings/" + quote(name, safe=""), body))
    delete_cluster_role_binding = staticmethod(
        lambda name: ("DELETE", _RBAC + "clusterrolebindings/" + quote(name, safe=""), None))


class _AuthnV1:
    create_token_review = staticmethod(
        lambda body: ("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body))
