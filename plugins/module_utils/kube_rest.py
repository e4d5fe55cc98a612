# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Kubernetes client of Meshfleet's modules: a small REST client over ``http.client``.

Why not the ``kubernetes`` package: importing it costs ~0.8 s of CPU per module run (it
loads ~800 model classes) and a no-op converge runs a module per cluster per step; this
client loads in milliseconds and keeps one keep-alive connection. It speaks JSON dicts and
turns failures into one :class:`~.base.MeshfleetError` that names the cluster, its server
and the action. Changes to plain objects in roles stay with kubernetes.core.

    kube = KubeRest(kubeconfig, label="cluster1")
    ns = kube.get("read namespace istio-system", "/api/v1/namespaces/istio-system", not_found=None)
    path = kube.object_path({"apiVersion": "apps/v1", "kind": "Deployment",
                             "metadata": {"name": "istiod", "namespace": "istio-system"}})

It reads kubeconfigs the way kubectl (client-go) does, for these fields (the list the
``k8s_auth`` doc fragment gives users; keep both in step):

- cluster: ``server``, ``certificate-authority(-data)`` (only that CA is trusted),
  ``insecure-skip-tls-verify``, ``tls-server-name``, ``proxy-url`` (an ``http://`` proxy,
  credentials in the URL allowed; CONNECT for https servers), ``disable-compression`` (this
  client never asks for compression);
- user: ``client-certificate(-data)`` + ``client-key(-data)``, ``token``, ``tokenFile``
  (wins over ``token``, as in client-go), ``username``/``password`` (basic auth), ``exec``
  credential plugins (``client.authentication.k8s.io`` v1 and v1beta1, cached until
  ``expirationTimestamp``; ``interactiveMode: Always`` is refused: modules have no
  terminal), impersonation (``as``, ``as-uid``, ``as-groups``, ``as-user-extra`` ->
  ``Impersonate-*`` headers);
- without ``proxy-url``, the environment: ``HTTPS_PROXY``/``https_proxy`` (``HTTP_PROXY``/
  ``http_proxy`` for an ``http://`` server) unless ``NO_PROXY``/``no_proxy`` matches
  (:func:`no_proxy_matches`); like Go, ``localhost`` and loopback addresses never go through
  an environment proxy.

Refused with an error naming the field (never silently ignored): ``auth-provider`` (the
removed in-tree gcp/azure/oidc plugins: use an exec plugin), a ``proxy-url`` or proxy
variable with another scheme than ``http`` (https, socks5), a client certificate without
its key (or the reverse), a token together with basic auth, impersonation details without
``as``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import datetime
import hashlib
import http.client
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

try:
    from urllib.parse import urlencode, urlsplit, quote, unquote
except ImportError:  # pragma: no cover - Python 2
    from urllib import urlencode, quote, unquote  # type: ignore
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
    """The MeshfleetError for an API answer ``status`` (0 or None: no answer)."""
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


def _split_host_port(text):
    """(host, port or None) of ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    if text.startswith("["):
        host, _sep, rest = text[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else None
    if text.count(":") == 1:
        host, _sep, port = text.partition(":")
        return host, port
    return text, None


def no_proxy_matches(host, port, no_proxy):
    """Whether ``NO_PROXY`` text excludes ``host``:``port`` from proxying, with Go's rules
    (golang.org/x/net/http/httpproxy, what kubectl uses): comma-separated entries; ``*``
    matches everything; an IP address (``10.1.2.3``, ``[::1]``) matches that address and a
    CIDR (``10.0.0.0/8``) the addresses in it; a domain name (``example.com``) matches itself
    and its subdomains, one with a leading ``.`` or ``*.`` only subdomains; any entry but a
    CIDR may end in ``:port`` and then matches that port only."""
    host = (host or "").lower().rstrip(".")
    port = str(port) if port else None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for entry in (no_proxy or "").split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            try:
                if ip is not None and ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name, want_port = _split_host_port(entry)
        if want_port and want_port != port:
            continue
        try:
            entry_ip = ipaddress.ip_address(name)
        except ValueError:
            entry_ip = None
        if entry_ip is not None:
            if ip == entry_ip:
                return True
            continue
        if name.startswith("*."):
            name = name[1:]
        name = name.rstrip(".")
        if name.startswith("."):
            if host.endswith(name):
                return True
        elif host == name or host.endswith("." + name):
            return True
    return False


def _is_loopback(host):
    if (host or "").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def proxy_from_environment(scheme, host, port, env=None):
    """(proxy URL, where it comes from) for a server, from the proxy environment variables the
    way Go reads them (upper case first): ``HTTPS_PROXY``/``https_proxy`` for https servers,
    ``HTTP_PROXY``/``http_proxy`` for http ones, none for localhost and loopback addresses or
    when ``NO_PROXY``/``no_proxy`` matches; (None, None) when not proxied."""
    env = os.environ if env is None else env
    names = ("HTTPS_PROXY", "https_proxy") if scheme == "https" else ("HTTP_PROXY", "http_proxy")
    name = next((n for n in names if env.get(n)), None)
    if name is None or _is_loopback(host):
        return None, None
    if no_proxy_matches(host, port, env.get("NO_PROXY") or env.get("no_proxy")):
        return None, None
    return env[name], "environment variable %s" % name


class _Proxy:
    """An HTTP proxy: where to connect and the Proxy-Authorization to send (or None)."""

    def __init__(self, url, source, label, kubeconfig):
        text = url if "://" in url else "http://" + url  # Go: "host:port" means http
        parts = urlsplit(text)
        if parts.scheme != "http":
            raise MeshfleetError(
                "%s kubeconfig %s: the proxy %s (%s) is a %s proxy; Meshfleet's Kubernetes client "
                "supports http:// proxies only (CONNECT for https servers)"
                % (label, kubeconfig, _redact_url(url), source, parts.scheme or "schemeless"))
        try:
            self.port = parts.port or 80
        except ValueError:
            raise MeshfleetError("%s kubeconfig %s: the proxy %s (%s) has no valid port"
                                 % (label, kubeconfig, _redact_url(url), source))
        if not parts.hostname:
            raise MeshfleetError("%s kubeconfig %s: the proxy %s (%s) names no host"
                                 % (label, kubeconfig, _redact_url(url), source))
        self.host = parts.hostname
        self.source = source
        self.url = _redact_url(url)
        self.authorization = None
        if parts.username is not None:
            pair = "%s:%s" % (unquote(parts.username), unquote(parts.password or ""))
            self.authorization = "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")


def _redact_url(url):
    """``url`` without the password of its user info (for messages)."""
    scheme, sep, rest = url.rpartition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        return url
    return "%s%s%s@%s" % (scheme, sep, userinfo.partition(":")[0] + (":xxx" if ":" in userinfo else ""), hostpart)


#: bytes of a header field name (RFC 7230 tchar); others are %-escaped in Impersonate-Extra-*
_TOKEN_CHARS = frozenset(b"!#$&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def impersonate_extra_header(key):
    """``Impersonate-Extra-<key>`` with the key escaped as client-go does (``%XX`` for every
    byte that may not appear in a header name, and for ``%``)."""
    return "Impersonate-Extra-" + "".join(
        chr(b) if b in _TOKEN_CHARS else "%%%02X" % b for b in key.encode("utf-8"))


class _Connection(http.client.HTTPConnection):
    """A connection to ``host``:``port`` (the server, or the proxy when ``tunnel`` is given);
    with ``tunnel`` (host, port, Proxy-Authorization or None) an HTTP CONNECT to the server
    first; with ``tls`` (an SSLContext) TLS verified against ``server_name``."""

    def __init__(self, host, port, timeout, tls=None, server_name=None, tunnel=None):
        http.client.HTTPConnection.__init__(self, host, port, timeout=timeout)
        self._tls = tls
        self._server_name = server_name
        self._tunnel_to = tunnel

    def connect(self):
        sock = socket.create_connection((self.host, self.port), self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tunnel_to:
                self._connect_through(sock)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self._server_name)
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def _connect_through(self, sock):
        host, port, authorization = self._tunnel_to
        target = "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
        lines = ["CONNECT %s HTTP/1.1" % target, "Host: %s" % target]
        if authorization:
            lines.append("Proxy-Authorization: %s" % authorization)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        resp = http.client.HTTPResponse(sock, method="CONNECT")
        try:
            resp.begin()
            if resp.status != 200:
                raise OSError("the proxy refused to connect to %s: %s %s" % (target, resp.status, resp.reason))
        finally:
            resp.close()


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
        if url.scheme not in ("https", "http") or not url.hostname:
            raise MeshfleetError("%s kubeconfig %s is not usable: the server of cluster %r is %r, not an "
                                 "https:// (or http://) URL"
                                 % (self.label, self.kubeconfig, ctx.get("cluster"), server))
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if self._https else 80)
        self._host_header = url.netloc.rpartition("@")[2]
        self._prefix = url.path.rstrip("/")
        self._headers = {"Accept": "application/json", "User-Agent": "meshfleet"}
        self._ca_pem = None
        self._insecure = bool(cluster.get("insecure-skip-tls-verify"))
        if self._https:
            ca = _data_or_file(cluster, "certificate-authority", "certificate authority", self.label, self.kubeconfig)
            self._ca_pem = ca.decode("utf-8") if ca else None
            self._server_hostname = cluster.get("tls-server-name") or self._host
        if cluster.get("proxy-url"):
            self.proxy = _Proxy(cluster["proxy-url"], "proxy-url of cluster %r" % ctx.get("cluster"),
                                self.label, self.kubeconfig)
        else:
            env_url, source = proxy_from_environment(url.scheme, self._host, self._port)
            self.proxy = _Proxy(env_url, source, self.label, self.kubeconfig) if env_url else None
        user_name = ctx.get("user")
        if user.get("auth-provider"):
            provider = (user.get("auth-provider") or {}).get("name") or "unnamed"
            raise MeshfleetError(
                "%s kubeconfig %s: user %r authenticates with auth-provider %r, which Meshfleet's Kubernetes "
                "client does not support (client-go removed the in-tree providers too): use an exec credential "
                "plugin (gke-gcloud-auth-plugin, kubelogin, ...), a token or a client certificate"
                % (self.label, self.kubeconfig, user_name, provider))
        cert = _data_or_file(user, "client-certificate", "client certificate", self.label, self.kubeconfig)
        key = _data_or_file(user, "client-key", "client key", self.label, self.kubeconfig)
        if bool(cert) != bool(key):
            has, lacks = ("certificate", "key") if cert else ("key", "certificate")
            raise MeshfleetError("%s kubeconfig %s: user %r has a client %s but no client %s"
                                 % (self.label, self.kubeconfig, user_name, has, lacks))
        token = user.get("token")
        if user.get("tokenFile"):  # client-go: the file wins over token
            token = _read(user["tokenFile"], "token file", self.label, self.kubeconfig).decode("utf-8").strip()
        if user.get("username") or user.get("password"):
            if token:
                raise MeshfleetError("%s kubeconfig %s: user %r has both a token and a username/password; "
                                     "give one of them" % (self.label, self.kubeconfig, user_name))
            pair = "%s:%s" % (user.get("username") or "", user.get("password") or "")
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")
        exec_spec = user.get("exec") if not token and not cert else None
        if exec_spec and exec_spec.get("interactiveMode") == "Always":
            raise MeshfleetError("%s kubeconfig %s: the exec credential plugin of user %r wants interactiveMode "
                                 "Always; modules run without a terminal (use IfAvailable or Never, or log in "
                                 "first)" % (self.label, self.kubeconfig, user_name))
        if exec_spec and not exec_spec.get("command"):
            raise MeshfleetError("%s kubeconfig %s: the exec credential plugin of user %r has no command"
                                 % (self.label, self.kubeconfig, user_name))
        self._exec_spec = exec_spec
        self._exec_expiry = None  # epoch seconds of the plugin's expirationTimestamp
        self._exec_ran = False
        self._cluster_entry = cluster
        if token:
            self._headers["Authorization"] = "Bearer %s" % token
        self._client_cert = (cert, key) if cert and key else None
        self._ssl = None
        self._impersonate = self._impersonation(user, user_name)

    def _impersonation(self, user, user_name):
        """The Impersonate-* headers of a user entry's ``as``, ``as-uid``, ``as-groups`` and
        ``as-user-extra`` (repeated headers for several groups or values)."""
        as_user = user.get("as")
        uid, groups, extra = user.get("as-uid"), user.get("as-groups") or [], user.get("as-user-extra") or {}
        if not as_user:
            if uid or groups or extra:
                raise MeshfleetError("%s kubeconfig %s: user %r sets %s but not as (the user to impersonate); "
                                     "the API server refuses that" % (
                                         self.label, self.kubeconfig, user_name,
                                         ", ".join(k for k in ("as-uid", "as-groups", "as-user-extra") if user.get(k))))
            return []
        if not isinstance(groups, list) or not isinstance(extra, dict):
            raise MeshfleetError("%s kubeconfig %s: user %r: as-groups must be a list and as-user-extra a map of "
                                 "lists" % (self.label, self.kubeconfig, user_name))
        headers = [("Impersonate-User", as_user)]
        if uid:
            headers.append(("Impersonate-Uid", uid))
        headers.extend(("Impersonate-Group", g) for g in groups)
        for key in sorted(extra):
            values = extra[key] if isinstance(extra[key], list) else [extra[key]]
            headers.extend((impersonate_extra_header(key), v) for v in values)
        return headers

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
            # client.authentication.k8s.io Cluster: what client-go hands the plugin
            info["spec"]["cluster"] = dict((k, v) for k, v in (
                ("server", cluster.get("server")),
                ("tls-server-name", cluster.get("tls-server-name")),
                ("insecure-skip-tls-verify", cluster.get("insecure-skip-tls-verify")),
                ("certificate-authority-data", base64.b64encode(self._ca_pem.encode("utf-8")).decode("ascii")
                 if self._ca_pem else None),
                ("proxy-url", cluster.get("proxy-url")),
                ("disable-compression", cluster.get("disable-compression")),
                ("config", next((e.get("extension") for e in cluster.get("extensions") or []
                                 if isinstance(e, dict) and e.get("name") == "client.authentication.k8s.io/exec"),
                                None))) if v)
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
        if self.proxy is not None:
            return "%s cluster (%s through proxy %s)" % (self.label, self.server, self.proxy.url)
        return "%s cluster (%s)" % (self.label, self.server)

    def _connect(self):
        proxy = self.proxy
        if not self._https:
            # an http:// server through a proxy: absolute URLs to the proxy (see _send), as Go does
            where = (proxy.host, proxy.port) if proxy else (self._host, self._port)
            return _Connection(where[0], where[1], self.timeout)
        tls = self._ssl_context()
        if proxy is None:
            return _Connection(self._host, self._port, self.timeout, tls=tls, server_name=self._server_hostname)
        return _Connection(proxy.host, proxy.port, self.timeout, tls=tls, server_name=self._server_hostname,
                           tunnel=(self._host, self._port, proxy.authorization))

    def _send(self, method, url, body, headers):
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        forward = self.proxy is not None and not self._https
        try:
            conn.putrequest(method, ("http://%s%s" % (self._host_header, url)) if forward else url,
                            skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", self._host_header)
            for name, value in list(headers.items()) + self._impersonate:
                conn.putheader(name, value)
            if forward and self.proxy.authorization:
                conn.putheader("Proxy-Authorization", self.proxy.authorization)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
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
                not_found=_NOT_GIVEN, accept=None, raw_text=False):
        """One API call; returns the decoded JSON body (a dict), or ``not_found`` on 404 when given;
        with ``raw_text`` the body as text (a pod's log).

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
        if raw_text:
            return raw.decode("utf-8", "replace")
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

    # --- exec -------------------------------------------------------------------------
    def exec(self, what, namespace, pod, command, container=None, timeout=60.0):
        """Run ``command`` (argv list) in a container of a pod, like ``kubectl exec`` (a WebSocket
        with Kubernetes' channel protocol, see :mod:`.kube_exec`); returns ``dict(rc, stdout,
        stderr, protocol)``. A command that ran is a result whatever its exit code; an exec the
        server refuses (no such pod or container, forbidden) or that times out is an error."""
        from ansible_collections.meshfleet.mesh.plugins.module_utils import kube_exec
        if not command or not all(isinstance(c, str) for c in command):
            raise MeshfleetError("%s: cannot %s: the command must be a non-empty list of strings" % (self._name(), what))
        if self.proxy is not None and not self._https:
            raise MeshfleetError("%s: cannot %s: exec through a proxy to an http:// server is not supported "
                                 "(use https, or no proxy)" % (self._name(), what),
                                 cluster=self.label, server=self.server)
        query = [("command", c) for c in command]
        if container:
            query.append(("container", container))
        query += [("stdout", "true"), ("stderr", "true")]
        path = "%s%s/exec?%s" % (self._prefix, _ns(namespace, "pods", pod), urlencode(query))
        for attempt in (1, 2):
            self._exec_credentials()
            headers = [(k, v) for k, v in self._headers.items() if k != "Accept"] + list(self._impersonate)
            conn = self._connect()
            deadline = time.monotonic() + timeout
            try:
                conn.timeout = timeout
                conn.connect()
                sock = conn.sock

                def recv(n):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise socket.timeout("timed out")
                    sock.settimeout(left)
                    return sock.recv(n)
                rc, out, err, protocol = kube_exec.run(sock, path, self._host_header, headers, recv)
                return dict(rc=rc, stdout=out.decode("utf-8", "replace"), stderr=err.decode("utf-8", "replace"),
                            protocol=protocol)
            except kube_exec.ExecError as e:
                if e.status == 401 and attempt == 1 and self._exec_credentials(force=True):
                    continue
                if e.status:
                    raise api_error(self._name(), self.kubeconfig, what, e.status, e.message,
                                    cluster=self.label, server=self.server)
                raise MeshfleetError("%s: cannot %s: %s" % (self._name(), what, e.message),
                                     cluster=self.label, server=self.server)
            except socket.timeout:
                raise MeshfleetError("%s: %s did not end within %ss" % (self._name(), what, timeout),
                                     cluster=self.label, server=self.server)
            except ssl.SSLError as e:
                raise MeshfleetError("%s: TLS failed while trying to %s: %s (check the CA and client certificate "
                                     "of kubeconfig %s)" % (self._name(), what, e, self.kubeconfig),
                                     cluster=self.label, server=self.server)
            except OSError as e:
                raise MeshfleetError("%s is unreachable while trying to %s: %s" % (self._name(), what, e),
                                     cluster=self.label, server=self.server)
            finally:
                conn.close()

    # --- typed calls (the subset of the kubernetes client's API the modules use) ---------------
    def call(self, what, fn, *args, **kwargs):
        """``fn(*args)`` of :attr:`core`, :attr:`apps`, :attr:`custom`, :attr:`rbac` or
        :attr:`authn` (named and ordered like the kubernetes package's methods), with JSON
        dicts in and out; ``not_found=<value>`` returns that value on HTTP 404."""
        method, path, body = fn(*args)
        return self.request(what, method, path, body=body, not_found=kwargs.pop("not_found", _NOT_GIVEN))

    core = property(lambda self: _CoreV1)
    apps = property(lambda self: _AppsV1)
    custom = property(lambda self: _CustomObjects)
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
    delete_namespace = staticmethod(lambda name: ("DELETE", "/api/v1/namespaces/" + quote(name, safe=""), None))
    read_namespaced_service = staticmethod(lambda name, ns: ("GET", _ns(ns, "services", name), None))
    create_namespaced_service = staticmethod(lambda ns, body: ("POST", _ns(ns, "services"), body))
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


def _apps(ns, plural, name=None):
    path = "/apis/apps/v1/namespaces/%s/%s" % (quote(ns, safe=""), plural)
    return path + "/" + quote(name, safe="") if name is not None else path


class _AppsV1:
    read_namespaced_deployment = staticmethod(lambda name, ns: ("GET", _apps(ns, "deployments", name), None))
    create_namespaced_deployment = staticmethod(lambda ns, body: ("POST", _apps(ns, "deployments"), body))


class _CustomObjects:
    get_namespaced_custom_object = staticmethod(
        lambda group, version, ns, plural, name: (
            "GET", "/apis/%s/%s/namespaces/%s/%s/%s" % (group, version, quote(ns, safe=""), plural,
                                                        quote(name, safe="")), None))


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
