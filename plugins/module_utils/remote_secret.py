# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Istio remote secrets: what ``istioctl create-remote-secret`` makes, with a time-bound token.

One run makes the *source* cluster's API readable by the *target* cluster's istiod:

- source: namespace, the ``istio-reader-service-account`` and the reader RBAC of Istio's
  ``istio-discovery`` chart (``reader-clusterrole.yaml``), unless a role bound to that
  service account already grants it;
- a token from the TokenRequest API (``expirationSeconds``; no long-lived token secret);
- target: Secret ``istio-remote-secret-<cluster>`` labelled ``istio/multiCluster: "true"``,
  annotated ``networking.istio.io/cluster: <cluster>``, whose key ``<cluster>`` holds a
  kubeconfig with an inline CA and that token, and nothing else (istiod refuses files,
  exec and auth providers).

A token is minted only when needed: the secret is missing or malformed, the server, CA or
TLS server name changed, the service account is another (or was re-created), the token is
not time-bound, expires within ``renew_before`` seconds, or the source API server no longer
accepts it. The expiry comes from the secret's ``meshfleet.io/token-expires`` annotation
cross-checked with the token's own ``exp`` claim (the earlier wins).

The pure functions at the top are what the unit tests exercise; :class:`RemoteSecretModule`
does the API calls.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import copy
import datetime
import json
import re

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover - PyYAML ships with ansible-core
    HAS_YAML = False

from ansible_collections.meshfleet.mesh.plugins.module_utils.k8s_names import is_dns_label
from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError, MeshfleetModule, Plan, yaml_load
from ansible_collections.meshfleet.mesh.plugins.module_utils.kubeconfig import build_kubeconfig, dump

SECRET_PREFIX = "istio-remote-secret-"
LABEL_MULTICLUSTER = "istio/multiCluster"
ANNOTATION_CLUSTER = "networking.istio.io/cluster"
ANNOTATION_EXPIRES = "meshfleet.io/token-expires"
ANNOTATION_SERVER = "meshfleet.io/source-server"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "meshfleet"
READER_LABELS = {"app": "istio-reader", "app.kubernetes.io/name": "istio-reader", LABEL_MANAGED_BY: MANAGED_BY}

MIN_TOKEN_LIFETIME = 600  # the TokenRequest API refuses less than 10 minutes
DEFAULT_TOKEN_LIFETIME = 30 * 86400


#: The ``istio-reader-clusterrole-<namespace>`` rules of Istio 1.30's istio-discovery chart
#: (manifests/charts/istio-control/istio-discovery/templates/reader-clusterrole.yaml), with the
#: default MCS API group, in the chart's order.
READER_RULES = [
    {"apiGroups": ["config.istio.io", "security.istio.io", "networking.istio.io",
                   "authentication.istio.io", "rbac.istio.io", "telemetry.istio.io",
                   "extensions.istio.io"],
     "resources": ["*"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""],
     "resources": ["endpoints", "pods", "services", "nodes", "replicationcontrollers",
                   "namespaces", "secrets", "configmaps"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["networking.istio.io"], "resources": ["workloadentries"],
     "verbs": ["get", "watch", "list"]},
    {"apiGroups": ["networking.x-k8s.io", "gateway.networking.k8s.io"], "resources": ["gateways"],
     "verbs": ["get", "watch", "list"]},
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["multicluster.x-k8s.io"], "resources": ["serviceexports"],
     "verbs": ["get", "list", "watch", "create", "delete"]},
    {"apiGroups": ["multicluster.x-k8s.io"], "resources": ["serviceimports"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
    {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
]

#: What the same template adds when ``istiodRemote.enabled`` (the ``remote`` profile): an
#: external istiod writes ``istio-ca-root-cert`` ConfigMaps and patches the injection and
#: validation webhooks of the remote cluster through this service account.
ISTIOD_REMOTE_RULES = [
    {"apiGroups": [""], "resources": ["configmaps"],
     "verbs": ["create", "get", "list", "watch", "update"]},
    {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["mutatingwebhookconfigurations"],
     "verbs": ["get", "list", "watch", "update", "patch"]},
    {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations"],
     "verbs": ["get", "list", "watch", "update"]},
]


# --- names, times, tokens ---------------------------------------------------------------
def secret_name(cluster_name):
    return SECRET_PREFIX + cluster_name


def reader_role_name(namespace):
    """The chart's ClusterRole/ClusterRoleBinding name (no revision)."""
    return "istio-reader-clusterrole-%s" % namespace


def check_cluster_name(name):
    if not is_dns_label(name):
        raise MeshfleetError(
            "cluster_name %r is not a valid DNS-1123 label (lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters): Istio uses it "
            "as a cluster ID and in the secret name %s<cluster_name>" % (name, SECRET_PREFIX))


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def rfc3339(dt):
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text):
    """``2026-01-02T03:04:05Z`` (or with an offset / fraction) -> aware datetime, else None."""
    if not isinstance(text, str) or not text:
        return None
    value = text.strip()
    if value.endswith("Z") or value.endswith("z"):
        value = value[:-1] + "+00:00"
    try:
        dt = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt


def jwt_claims(token):
    """The (unverified) claims of a JWT as a dict, or None when it is not a JWT."""
    if not isinstance(token, str) or token.count(".") != 2:
        return None
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    try:
        data = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")).decode("utf-8"))
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        return None
    return data if isinstance(data, dict) else None


def claims_expiry(claims):
    """``exp`` of the claims as an aware datetime; None when absent (a legacy, non-expiring token)."""
    exp = (claims or {}).get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return None
    return datetime.datetime.fromtimestamp(exp, tz=datetime.timezone.utc)


def claims_service_account(claims):
    """(namespace, name, uid) of a service-account token's claims, or None."""
    claims = claims or {}
    k8s = claims.get("kubernetes.io")
    if isinstance(k8s, dict) and isinstance(k8s.get("serviceaccount"), dict):
        sa = k8s["serviceaccount"]
        return (k8s.get("namespace"), sa.get("name"), sa.get("uid"))
    # legacy secret-based tokens
    if "kubernetes.io/serviceaccount/service-account.name" in claims:
        return (claims.get("kubernetes.io/serviceaccount/namespace"),
                claims.get("kubernetes.io/serviceaccount/service-account.name"),
                claims.get("kubernetes.io/serviceaccount/service-account.uid"))
    return None


# --- CA and kubeconfig --------------------------------------------------------------------
def ca_b64(pem):
    """base64 of a PEM bundle, normalised (stripped lines, one trailing newline)."""
    if pem is None:
        return None
    if isinstance(pem, bytes):
        pem = pem.decode("utf-8")
    text = "\n".join(line.strip() for line in pem.strip().splitlines() if line.strip()) + "\n"
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def ca_pem_from_b64(data):
    try:
        return base64.b64decode(data.encode("ascii") if isinstance(data, str) else data,
                                validate=False).decode("utf-8")
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        return None


def same_ca(b64_a, b64_b):
    """Whether two ``certificate-authority-data`` values hold the same PEM (whitespace aside)."""
    if not b64_a or not b64_b:
        return b64_a == b64_b
    pa, pb = ca_pem_from_b64(b64_a), ca_pem_from_b64(b64_b)
    if pa is None or pb is None:
        return b64_a == b64_b
    return ca_b64(pa) == ca_b64(pb)


def remote_kubeconfig(cluster_name, server, ca_data, token, tls_server_name=None):
    """The kubeconfig istiod reads: cluster/context/user all ``cluster_name``, inline CA, token.

    Same shape as istioctl's (client-go's encoding): no ``preferences``, no namespace.
    """
    config = build_kubeconfig(cluster_name, server, {"token": token}, ca=ca_data)
    config.pop("preferences", None)
    if tls_server_name:
        config["clusters"][0]["cluster"]["tls-server-name"] = tls_server_name
    return config


def _named(entries, name):
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    return None


def parse_remote_kubeconfig(text, cluster_name):
    """Read a remote-secret kubeconfig. Returns ``(fields, problem)``.

    ``fields`` has server, ca (base64), tls_server_name, token, config (the parsed dict);
    ``problem`` says why it is not usable by istiod as Meshfleet writes it (then the token
    is not reused).
    """
    try:
        config = yaml_load(text) if text else None
    except yaml.YAMLError:
        return None, "the kubeconfig is not valid YAML"
    if not isinstance(config, dict):
        return None, "the kubeconfig is not a YAML mapping"
    ctx_name = config.get("current-context")
    ctx = _named(config.get("contexts"), ctx_name)
    if ctx_name != cluster_name or ctx is None:
        return None, "the kubeconfig's current context is not %s" % cluster_name
    ctx = ctx.get("context") or {}
    cluster = (_named(config.get("clusters"), ctx.get("cluster")) or {}).get("cluster")
    user = (_named(config.get("users"), ctx.get("user")) or {}).get("user")
    if not isinstance(cluster, dict) or not isinstance(user, dict):
        return None, "the kubeconfig's context has no cluster or user"
    token = user.get("token")
    if not token or not isinstance(token, str):
        return None, "the kubeconfig's user has no token"
    others = sorted(k for k in user if k != "token")
    if others:
        return None, "the kubeconfig's user has more than a token (%s)" % ", ".join(others)
    if not cluster.get("server"):
        return None, "the kubeconfig's cluster has no server"
    fields = dict(server=cluster.get("server"), ca=cluster.get("certificate-authority-data"),
                  tls_server_name=cluster.get("tls-server-name"), token=token, config=config)
    return fields, None


def redact_kubeconfig(config, note):
    """A deep copy of ``config`` whose user tokens read ``<redacted, NOTE>``."""
    config = copy.deepcopy(config)
    for entry in (config or {}).get("users") or []:
        user = entry.get("user") if isinstance(entry, dict) else None
        if isinstance(user, dict) and "token" in user:
            user["token"] = "<redacted, %s>" % note
    return config


# --- the existing secret ------------------------------------------------------------------
def inspect_secret(secret, cluster_name):
    """What an existing secret (a Kubernetes JSON dict) holds, for :func:`renewal_reasons`.

    Returns a dict: labels, annotations, problem (None when usable) and, when the
    kubeconfig could be read, server, ca, tls_server_name, token, config, claims,
    expires (earliest of annotation and ``exp`` claim), time_bound.
    """
    meta = secret.get("metadata") or {}
    info = dict(labels=dict(meta.get("labels") or {}), annotations=dict(meta.get("annotations") or {}),
                resource_version=meta.get("resourceVersion"), problem=None, token=None, config=None)
    data = secret.get("data") or {}
    raw = data.get(cluster_name)
    if raw is None:
        info["problem"] = "no key %s in the secret" % cluster_name
        return info
    try:
        text = base64.b64decode(raw, validate=True).decode("utf-8")
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        info["problem"] = "key %s is not base64 UTF-8" % cluster_name
        return info
    fields, problem = parse_remote_kubeconfig(text, cluster_name)
    if problem:
        info["problem"] = problem
        return info
    info.update(fields)
    claims = jwt_claims(fields["token"])
    info["claims"] = claims
    if claims is None:
        info["problem"] = "the token is not a JWT"
        return info
    exp = claims_expiry(claims)
    info["time_bound"] = exp is not None
    annotated = parse_rfc3339(info["annotations"].get(ANNOTATION_EXPIRES))
    candidates = [t for t in (exp, annotated) if t is not None]
    info["expires"] = min(candidates) if exp is not None and candidates else None
    return info


def renewal_reasons(current, server, ca_data, tls_server_name, service_account, now, renew_before):
    """Why a new token is needed (a list; empty = keep the current token).

    ``current``: :func:`inspect_secret` of the existing secret, or None when there is none.
    ``service_account``: (namespace, name, uid or None) the token must belong to.
    """
    if current is None:
        return ["created"]
    if current.get("problem"):
        return ["malformed: %s" % current["problem"]]
    reasons = []
    if current.get("server") != server:
        reasons.append("server changed")
    if not same_ca(current.get("ca"), ca_data):
        reasons.append("ca changed")
    if (current.get("tls_server_name") or None) != (tls_server_name or None):
        reasons.append("tls server name changed")
    sa = claims_service_account(current.get("claims"))
    want_ns, want_name, want_uid = service_account
    if sa is None or (sa[0], sa[1]) != (want_ns, want_name):
        reasons.append("service account changed")
    elif want_uid and sa[2] and sa[2] != want_uid:
        reasons.append("service account re-created")
    if not current.get("time_bound"):
        reasons.append("not time-bound")
    else:
        left = (current["expires"] - now).total_seconds()
        if left <= 0:
            reasons.append("expired")
        elif left <= renew_before:
            reasons.append("expiring")
    return reasons


def secret_body(cluster_name, namespace, kubeconfig, expires, server, existing=None):
    """The Secret to write: ``existing`` metadata kept, Istio's and Meshfleet's keys set."""
    meta = (existing or {}).get("metadata") or {}
    labels = dict(meta.get("labels") or {})
    annotations = dict(meta.get("annotations") or {})
    labels[LABEL_MULTICLUSTER] = "true"
    labels[LABEL_MANAGED_BY] = MANAGED_BY
    annotations[ANNOTATION_CLUSTER] = cluster_name
    annotations[ANNOTATION_EXPIRES] = rfc3339(expires)
    annotations[ANNOTATION_SERVER] = server
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": secret_name(cluster_name), "namespace": namespace,
                     "labels": labels, "annotations": annotations},
        "data": {cluster_name: base64.b64encode(dump(kubeconfig).encode("utf-8")).decode("ascii")},
    }
    if meta.get("resourceVersion"):
        body["metadata"]["resourceVersion"] = meta["resourceVersion"]
    return body


def secret_differs(existing, desired, cluster_name):
    """Whether writing ``desired`` would change ``existing`` (kubeconfigs compared parsed)."""
    if existing is None:
        return True
    em, dm = existing.get("metadata") or {}, desired["metadata"]
    if (em.get("labels") or {}) != dm["labels"] or (em.get("annotations") or {}) != dm["annotations"]:
        return True
    if (existing.get("type") or "Opaque") != desired["type"]:
        return True
    edata = existing.get("data") or {}
    if sorted(edata) != sorted(desired["data"]):
        return True
    try:
        old = yaml_load(base64.b64decode(edata[cluster_name]).decode("utf-8"))
    except (ValueError, TypeError, binascii.Error, UnicodeError, yaml.YAMLError):
        return True
    new = yaml_load(base64.b64decode(desired["data"][cluster_name]).decode("utf-8"))
    return old != new


def diff_view(secret, cluster_name, note):
    """Secret metadata + the kubeconfig (token redacted) for ``--diff``; {} for no secret."""
    if secret is None:
        return {}
    meta = secret.get("metadata") or {}
    view = {"metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"),
                         "labels": dict(meta.get("labels") or {}),
                         "annotations": dict(meta.get("annotations") or {})},
            "stringData": {}}
    for key, raw in sorted((secret.get("data") or {}).items()):
        try:
            parsed = yaml_load(base64.b64decode(raw).decode("utf-8"))
        except (ValueError, TypeError, binascii.Error, UnicodeError, yaml.YAMLError):
            parsed = None
        if isinstance(parsed, dict):
            view["stringData"][key] = redact_kubeconfig(parsed, note if key == cluster_name else "not managed")
        else:
            view["stringData"][key] = "<redacted, %d bytes, not a kubeconfig>" % len(raw or "")
    return view


# --- RBAC ---------------------------------------------------------------------------------
def _triples(rules):
    for rule in rules or []:
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                for verb in rule.get("verbs") or []:
                    yield group, resource, verb


def rules_cover(have, need):
    """Whether the ``have`` rules grant every (group, resource, verb) of ``need``.

    Wildcards in ``have`` count; rules restricted by ``resourceNames`` do not.
    """
    usable = [r for r in have or [] if not r.get("resourceNames")]

    def granted(group, resource, verb):
        for r in usable:
            groups, resources, verbs = r.get("apiGroups") or [], r.get("resources") or [], r.get("verbs") or []
            if ((group in groups or "*" in groups) and (resource in resources or "*" in resources)
                    and (verb in verbs or "*" in verbs)):
                return True
        return False

    return all(granted(*t) for t in _triples(need))


def missing_rules(have, need):
    """The (group, resource, verb) triples of ``need`` that ``have`` does not grant."""
    return [t for t in _triples(need) if not rules_cover(have, [
        {"apiGroups": [t[0]], "resources": [t[1]], "verbs": [t[2]]}])]


def normalise_rules(rules):
    out = []
    for r in rules or []:
        out.append(tuple((k, tuple(sorted(r.get(k) or []))) for k in
                         ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs")))
    return sorted(out)


def is_ours(obj):
    return ((obj or {}).get("metadata") or {}).get("labels", {}).get(LABEL_MANAGED_BY) == MANAGED_BY


def binds_service_account(binding, namespace, name):
    for s in binding.get("subjects") or []:
        if s.get("kind") == "ServiceAccount" and s.get("name") == name and s.get("namespace") == namespace:
            return True
    return False


# --- the module ---------------------------------------------------------------------------
class RemoteSecretModule(MeshfleetModule):
    receipt_step = True
    argument_spec = dict(
        cluster_name=dict(type="str"),
        sources=dict(type="list", elements="dict", options=dict(
            cluster_name=dict(type="str", required=True),
            source_kubeconfig=dict(type="path", required=True),
            source_context=dict(type="str"),
            server=dict(type="str"),
            tls_server_name=dict(type="str"),
            istiod_remote=dict(type="bool", default=False),
        )),
        source_kubeconfig=dict(type="path"),
        source_context=dict(type="str"),
        target_kubeconfig=dict(type="path", required=True),
        target_context=dict(type="str"),
        namespace=dict(type="str", default="istio-system"),
        server=dict(type="str"),
        tls_server_name=dict(type="str"),
        token_lifetime=dict(type="int", default=DEFAULT_TOKEN_LIFETIME, no_log=False),
        renew_before=dict(type="int"),
        service_account=dict(type="str", default="istio-reader-service-account"),
        manage_rbac=dict(type="bool", default=True),
        istiod_remote=dict(type="bool", default=False),
        remove_reader=dict(type="bool", default=False),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )
    module_kwargs = dict(
        required_one_of=[("cluster_name", "sources")],
        mutually_exclusive=[("cluster_name", "sources"), ("sources", "source_kubeconfig"),
                            ("sources", "source_context"), ("sources", "server"),
                            ("sources", "tls_server_name"), ("sources", "istiod_remote")],
    )
    #: the per-source options of O(sources)
    SOURCE_KEYS = ("cluster_name", "source_kubeconfig", "source_context", "server", "tls_server_name",
                   "istiod_remote")

    #: injectable for tests
    clock = staticmethod(utcnow)

    def __init__(self, module=None, params=None):
        super(RemoteSecretModule, self).__init__(module, params)
        self._src = None
        self._tgt = None
        self.todo = Plan()

    # --- clients --------------------------------------------------------------------
    def _cluster(self, which):
        # the built-in REST client: the kubernetes package costs ~0.8 s of CPU to import per run
        from ansible_collections.meshfleet.mesh.plugins.module_utils.kube_rest import KubeRest
        return KubeRest(self.params["%s_kubeconfig" % which], self.params["%s_context" % which],
                        label=which, option="%s_kubeconfig" % which)

    @property
    def src(self):
        if self._src is None:
            self._src = self._cluster("source")
        return self._src

    @property
    def tgt(self):
        if self._tgt is None:
            self._tgt = self._cluster("target")
        return self._tgt

    # --- plan / result ----------------------------------------------------------------
    # Planning reads the clusters and queues every write in ``self.todo`` (the plan); the
    # base runs it (apply) outside check mode. With ``sources``, one child module per source
    # plans its secret and the plan is theirs, in order.
    def plan(self, observed):
        self.children = None
        if self.params.get("sources") is None:
            self.out.update(self.plan_one())
            self.todo.before, self.todo.after = self.diff_before, self.diff_after
            self.todo.always_diff = True
            return self.todo
        p = self.params
        names = [s["cluster_name"] for s in p["sources"]]
        dupes = sorted(set(n for n in names if names.count(n) > 1))
        if dupes:
            raise MeshfleetError("sources: cluster_name %s given more than once" % ", ".join(dupes))
        self.children = []
        seen = set()  # a source cluster's reader is made once, for the first source that needs it
        for source in p["sources"]:
            one = type(self)(module=self.module, params=dict(p, sources=None, **dict((k, source[k]) for k in self.SOURCE_KEYS)))
            one._tgt = self._tgt = self._tgt or one.tgt
            one.clock = self.clock
            try:
                one.out.update(one.plan_one())
            except MeshfleetError as e:
                raise MeshfleetError("source %s: %s" % (source["cluster_name"], e.msg),
                                     secrets=[c.child_result() for c in self.children], **e.details)
            self.children.append(one)
            for what, action in one.todo.steps:
                key = (one.params["source_kubeconfig"], one.params["source_context"], what)
                if not what.startswith("source:") or key not in seen:
                    seen.add(key)
                    self.todo.add(what, action)
        changed = [c for c in self.children if c.todo]
        self.todo.before = dict((c.out["secret_name"], c.diff_before) for c in changed)
        self.todo.after = dict((c.out["secret_name"], c.diff_after) for c in changed)
        return self.todo

    def apply(self, plan, observed):
        plan.run()
        for child in self.children or ():
            if child.todo:
                plan.after[child.out["secret_name"]] = child.diff_after
        if self.children is None:
            plan.after = self.diff_after

    def child_result(self):
        out = dict(self.out)
        out.pop("diff", None)
        out["changed"] = bool(self.todo)
        return out

    def result(self, observed, plan):
        if self.children is None:
            return dict(self.out)
        secrets = [c.child_result() for c in self.children]
        return dict(secrets=secrets, namespace=self.params["namespace"],
                    renewed=any(r.get("renewed") for r in secrets))

    def plan_one(self):
        p = self.params
        if p["state"] == "present" and not p["source_kubeconfig"]:
            raise MeshfleetError("source_kubeconfig is required with state=present")
        if p["remove_reader"] and not p["source_kubeconfig"]:
            raise MeshfleetError("source_kubeconfig is required with remove_reader=true")
        if not HAS_YAML:
            raise MeshfleetError("PyYAML is required (it ships with ansible-core)")
        check_cluster_name(p["cluster_name"])
        if not is_dns_label(p["namespace"]):
            raise MeshfleetError("namespace %r is not a valid DNS-1123 label" % p["namespace"])
        if p["token_lifetime"] < MIN_TOKEN_LIFETIME:
            raise MeshfleetError("token_lifetime must be at least %d seconds (the TokenRequest API "
                                 "minimum); got %d" % (MIN_TOKEN_LIFETIME, p["token_lifetime"]))
        if p["renew_before"] is None:
            p["renew_before"] = p["token_lifetime"] // 3
        if p["renew_before"] < 0:
            raise MeshfleetError("renew_before must not be negative")
        self.out.update(secret_name=secret_name(p["cluster_name"]), namespace=p["namespace"],
                        cluster_name=p["cluster_name"])
        if p["state"] == "absent":
            return self.absent()
        return self.present()

    # --- source side -----------------------------------------------------------------
    def ensure_reader(self):
        """Namespace, service account and reader RBAC in the source. Returns the SA dict or None."""
        p, src = self.params, self.src
        ns, sa_name = p["namespace"], p["service_account"]
        actions = []
        if src.call("read namespace %s" % ns, src.core.read_namespace, ns, not_found=None) is None:
            actions.append("created namespace %s" % ns)
            self.todo.add("source: create namespace %s" % ns, lambda: src.call(
                "create namespace %s" % ns, src.core.create_namespace, {"metadata": {"name": ns}}))
        sa = src.call("read service account %s/%s" % (ns, sa_name),
                      src.core.read_namespaced_service_account, sa_name, ns, not_found=None)
        if sa is None:
            actions.append("created service account %s/%s" % (ns, sa_name))
            self.todo.add("source: create service account %s/%s" % (ns, sa_name), lambda: src.call(
                "create service account %s/%s" % (ns, sa_name), src.core.create_namespaced_service_account, ns,
                {"metadata": {"name": sa_name, "namespace": ns, "labels": dict(READER_LABELS)}}))
        reader = dict(service_account=sa_name, namespace=ns)
        reader.update(self.ensure_reader_rbac(actions))
        reader["actions"] = actions
        return sa, reader

    def _rules(self):
        rules = copy.deepcopy(READER_RULES)
        if self.params["istiod_remote"]:
            rules += copy.deepcopy(ISTIOD_REMOTE_RULES)
        return rules

    def _bound_rules(self, ns, sa_name):
        """(rules, role names) granted to the SA through ClusterRoleBindings."""
        src = self.src
        bindings = src.call("list cluster role bindings", src.rbac.list_cluster_role_binding)
        rules, names = [], []
        for b in (bindings or {}).get("items") or []:
            ref = b.get("roleRef") or {}
            if ref.get("kind") != "ClusterRole" or not binds_service_account(b, ns, sa_name):
                continue
            role = src.call("read cluster role %s" % ref.get("name"), src.rbac.read_cluster_role,
                            ref.get("name"), not_found=None)
            if role is not None:
                rules += role.get("rules") or []
                names.append(ref.get("name"))
        return rules, sorted(set(names))

    def ensure_reader_rbac(self, actions):
        p, src = self.params, self.src
        ns, sa_name = p["namespace"], p["service_account"]
        need = self._rules()
        name = reader_role_name(ns)
        role = src.call("read cluster role %s" % name, src.rbac.read_cluster_role,
                        name, not_found=None)
        if role is None or not is_ours(role):
            have, names = self._bound_rules(ns, sa_name)
            if rules_cover(have, need):
                return dict(cluster_roles=names, managed=False)
            if role is not None:
                # The chart's (or someone's) role of that name lacks rules: leave it alone
                # and bind our own next to it.
                name = "meshfleet-" + name
                role = src.call("read cluster role %s" % name, src.rbac.read_cluster_role,
                                name, not_found=None)
        self._converge_role(name, role, need, actions)
        self._converge_binding(name, ns, sa_name, actions)
        return dict(cluster_roles=[name], managed=True)

    def _converge_role(self, name, role, rules, actions):
        src = self.src
        body = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": name, "labels": dict(READER_LABELS)}, "rules": rules}
        if role is None:
            actions.append("created cluster role %s" % name)
            self.todo.add("source: create cluster role %s" % name, lambda: src.call(
                "create cluster role %s" % name, src.rbac.create_cluster_role, body))
        elif normalise_rules(role.get("rules")) != normalise_rules(rules) or not is_ours(role):
            actions.append("updated cluster role %s" % name)
            body["metadata"]["resourceVersion"] = role["metadata"].get("resourceVersion")
            self.todo.add("source: update cluster role %s" % name, lambda: src.call(
                "replace cluster role %s" % name, src.rbac.replace_cluster_role, name, body))

    def _converge_binding(self, name, ns, sa_name, actions):
        src = self.src
        body = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": name, "labels": dict(READER_LABELS)},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": sa_name, "namespace": ns}]}
        binding = src.call("read cluster role binding %s" % name,
                           src.rbac.read_cluster_role_binding, name, not_found=None)
        if binding is None:
            actions.append("created cluster role binding %s" % name)
            self.todo.add("source: create cluster role binding %s" % name, lambda: src.call(
                "create cluster role binding %s" % name, src.rbac.create_cluster_role_binding, body))
            return
        if not is_ours(binding):
            if binding.get("roleRef", {}).get("name") == name and binds_service_account(binding, ns, sa_name):
                return
            raise MeshfleetError(
                "source cluster (%s): cluster role binding %s exists, is not managed by Meshfleet and "
                "does not bind cluster role %s to service account %s/%s; remove it or set manage_rbac=false"
                % (src.server, name, name, ns, sa_name))
        if binding.get("roleRef") != body["roleRef"]:
            actions.append("re-created cluster role binding %s (roleRef changed)" % name)

            def recreate():
                src.call("delete cluster role binding %s" % name, src.rbac.delete_cluster_role_binding, name)
                src.call("create cluster role binding %s" % name, src.rbac.create_cluster_role_binding, body)
            self.todo.add("source: re-create cluster role binding %s" % name, recreate)
        elif binding.get("subjects") != body["subjects"]:
            actions.append("updated cluster role binding %s" % name)
            body["metadata"]["resourceVersion"] = binding["metadata"].get("resourceVersion")
            self.todo.add("source: update cluster role binding %s" % name, lambda: src.call(
                "replace cluster role binding %s" % name, src.rbac.replace_cluster_role_binding, name, body))

    def source_ca(self):
        """The source CA (base64 PEM): the kubeconfig's, else the cluster's kube-root-ca.crt."""
        pem = self.src.ca_pem()
        if not pem:
            src = self.src
            cm = src.call("read config map kube-system/kube-root-ca.crt", src.core.read_namespaced_config_map,
                          "kube-root-ca.crt", "kube-system", not_found=None)
            pem = ((cm or {}).get("data") or {}).get("ca.crt")
            if not pem:
                raise MeshfleetError(
                    "source kubeconfig %s has no certificate authority and the source cluster (%s) "
                    "publishes no kube-system/kube-root-ca.crt: istiod needs a CA to trust"
                    % (self.params["source_kubeconfig"], src.server))
            self.warn("source kubeconfig %s has no certificate authority: using the cluster's "
                      "kube-root-ca.crt" % self.params["source_kubeconfig"])
        return ca_b64(pem)

    def token_accepted(self, token):
        """Ask the source API server whether it still accepts ``token`` (TokenReview).

        None when the review is not allowed (then the claims decide alone).
        """
        src = self.src
        try:
            review = src.call("review the current token (TokenReview)", src.authn.create_token_review,
                              {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                               "spec": {"token": token}})
        except MeshfleetError as e:
            if e.details.get("status") == 403:
                self.warn("cannot verify the current token with a TokenReview in the source cluster "
                          "(forbidden); deciding from its expiry only")
                return None
            raise
        status = (review or {}).get("status") or {}
        return bool(status.get("authenticated"))

    def request_token(self, ns, sa_name):
        src = self.src
        lifetime = self.params["token_lifetime"]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [], "expirationSeconds": lifetime}}
        resp = src.call("request a token for service account %s/%s (TokenRequest)" % (ns, sa_name),
                        src.core.create_namespaced_service_account_token, sa_name, ns, body)
        status = (resp or {}).get("status") or {}
        token = status.get("token")
        if not token:
            raise MeshfleetError("source cluster (%s) returned no token for service account %s/%s"
                                 % (src.server, ns, sa_name))
        self.no_log(token)
        expires = parse_rfc3339(status["expirationTimestamp"]) if status.get("expirationTimestamp") else None
        if expires is not None and expires.tzinfo is None:
            expires = expires.replace(tzinfo=datetime.timezone.utc)
        exp_claim = claims_expiry(jwt_claims(token))
        expires = min([t for t in (expires, exp_claim) if t is not None]) if (expires or exp_claim) else None
        if expires is None:
            raise MeshfleetError("source cluster (%s) issued a token without an expiry" % src.server)
        got = (expires - self.clock()).total_seconds()
        if got < lifetime - 120:
            self.warn("the source API server capped the token lifetime to %ds (asked %ds; see its "
                      "--service-account-max-token-expiration)" % (got, lifetime))
        if got <= self.params["renew_before"] < lifetime:
            self.warn("the token lives %ds, not more than renew_before (%ds): every run will renew it"
                      % (got, self.params["renew_before"]))
        return token, expires

    # --- present / absent -------------------------------------------------------------
    def _read_secret(self):
        tgt, p = self.tgt, self.params
        name = secret_name(p["cluster_name"])
        return tgt.call("read secret %s/%s" % (p["namespace"], name),
                        tgt.core.read_namespaced_secret, name, p["namespace"], not_found=None)

    def present(self):
        p = self.params
        ns, sa_name, cluster = p["namespace"], p["service_account"], p["cluster_name"]
        src = self.src
        tgt = self.tgt
        server = p["server"] or src.server
        if not server or not re.match(r"^https?://", server):
            raise MeshfleetError("server %r is not an http(s) URL" % server)
        self.out["server"] = server
        existing = self._read_secret()

        if p["manage_rbac"]:
            sa, reader = self.ensure_reader()
        else:
            sa = src.call("read service account %s/%s" % (ns, sa_name),
                          src.core.read_namespaced_service_account, sa_name, ns,
                          not_found=None)
            if sa is None:
                raise MeshfleetError(
                    "source cluster (%s): service account %s/%s does not exist and manage_rbac is false; "
                    "install Istio's base chart there or set manage_rbac=true" % (src.server, ns, sa_name))
            reader = dict(service_account=sa_name, namespace=ns, managed=False, actions=[])
        self.out["reader"] = reader
        source_changed = bool(reader["actions"])
        ca_data = self.source_ca()
        now = self.clock()

        current = inspect_secret(existing, cluster) if existing is not None else None
        if current is not None:
            self.no_log(current.get("token"))
        # a service account created by this run gets a new uid: a token of the old one is stale
        sa_uid = ((sa or {}).get("metadata") or {}).get("uid") if sa is not None else "(created by this run)"
        reasons = renewal_reasons(current, server, ca_data, p["tls_server_name"], (ns, sa_name, sa_uid),
                                  now, p["renew_before"])
        if not reasons and self.token_accepted(current["token"]) is False:
            reasons = ["token rejected"]
        renew = bool(reasons)

        if renew:
            token, expires = None, now + datetime.timedelta(seconds=p["token_lifetime"])
        else:
            token, expires = current["token"], current["expires"]
        kubeconfig = remote_kubeconfig(cluster, server, ca_data, token or "<new token>", p["tls_server_name"])
        desired = secret_body(cluster, ns, kubeconfig, expires, server, existing)
        target_changed = secret_differs(existing, desired, cluster)

        before_note = "expires %s" % rfc3339(current.get("expires")) if current and current.get("expires") \
            else "not time-bound" if current and current.get("time_bound") is False else "unreadable"
        after_note = ("new token, expires %s" if renew else "expires %s") % rfc3339(expires)
        self.diff_before = diff_view(existing, cluster, before_note)
        self.diff_after = diff_view(desired, cluster, after_note)

        if reasons:
            reason = ", ".join(reasons)
        elif target_changed:
            reason = "metadata changed"
        else:
            reason = "unchanged"
        if renew or target_changed:
            self.todo.add("target: %s secret %s/%s (%s)" % ("create" if existing is None else "replace", ns,
                                                            desired["metadata"]["name"], reason),
                          lambda: self._write_secret(existing, desired, renew, ca_data, server))
        return dict(renewed=renew, reason=reason, token_expires=rfc3339(expires), server=server)

    def _write_secret(self, existing, desired, renew, ca_data, server):
        """Request the new token (when renewing), then create or replace the secret."""
        p, tgt = self.params, self.tgt
        ns, cluster = p["namespace"], p["cluster_name"]
        if renew:
            token, expires = self.request_token(ns, p["service_account"])
            kubeconfig = remote_kubeconfig(cluster, server, ca_data, token, p["tls_server_name"])
            desired = secret_body(cluster, ns, kubeconfig, expires, server, existing)
            self.diff_after = diff_view(desired, cluster, "new token, expires %s" % rfc3339(expires))
            self.out["token_expires"] = rfc3339(expires)
        self._ensure_target_namespace()
        name = desired["metadata"]["name"]
        if existing is None:
            tgt.call("create secret %s/%s" % (ns, name), tgt.core.create_namespaced_secret, ns, desired)
        else:
            tgt.call("replace secret %s/%s" % (ns, name), tgt.core.replace_namespaced_secret,
                     name, ns, desired)

    def _ensure_target_namespace(self):
        tgt, ns = self.tgt, self.params["namespace"]
        if tgt.call("read namespace %s" % ns, tgt.core.read_namespace, ns, not_found=None) is None:
            tgt.call("create namespace %s" % ns, tgt.core.create_namespace, {"metadata": {"name": ns}})

    def absent(self):
        p, tgt = self.params, self.tgt
        ns, cluster = p["namespace"], p["cluster_name"]
        name = secret_name(cluster)
        existing = self._read_secret()
        self.diff_before, self.diff_after = {}, {}
        if existing is not None:
            current = inspect_secret(existing, cluster)
            self.no_log(current.get("token"))
            self.diff_before = diff_view(existing, cluster, "deleted")
            self.todo.add("target: delete secret %s/%s" % (ns, name), lambda: tgt.call(
                "delete secret %s/%s" % (ns, name), tgt.core.delete_namespaced_secret, name, ns, not_found=None))
        result = dict(renewed=False, reason="deleted" if existing is not None else "absent",
                      token_expires=None, server=None)
        if p["remove_reader"]:
            removed = self.remove_reader()
            result["reader"] = dict(service_account=p["service_account"], namespace=ns, actions=removed)
        return result

    def remove_reader(self):
        """Delete the Meshfleet-made reader RBAC and service account (deleting the service
        account invalidates every token it was issued). The chart's objects are left alone."""
        p, src = self.params, self.src
        ns, sa_name = p["namespace"], p["service_account"]
        removed = []
        for name in (reader_role_name(ns), "meshfleet-" + reader_role_name(ns)):
            for kind, read, delete in (
                    ("cluster role binding", src.rbac.read_cluster_role_binding, src.rbac.delete_cluster_role_binding),
                    ("cluster role", src.rbac.read_cluster_role, src.rbac.delete_cluster_role)):
                obj = src.call("read %s %s" % (kind, name), read, name, not_found=None)
                if obj is not None and is_ours(obj):
                    removed.append("deleted %s %s" % (kind, name))
                    self.todo.add("source: delete %s %s" % (kind, name),
                                  lambda kind=kind, name=name, delete=delete: src.call(
                                      "delete %s %s" % (kind, name), delete, name, not_found=None))
        sa = src.call("read service account %s/%s" % (ns, sa_name),
                      src.core.read_namespaced_service_account, sa_name, ns, not_found=None)
        if sa is not None and is_ours(sa):
            removed.append("deleted service account %s/%s" % (ns, sa_name))
            self.todo.add("source: delete service account %s/%s" % (ns, sa_name), lambda: src.call(
                "delete service account %s/%s" % (ns, sa_name), src.core.delete_namespaced_service_account,
                sa_name, ns, not_found=None))
        return removed
