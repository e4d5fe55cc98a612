# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What ``istioctl x workload entry configure`` makes for a VM, in Python.

The files (Istio 1.30 ``istioctl/pkg/workload/workload.go``), written into one folder on
the controller (``<state_dir>/vms/<vm>/bootstrap``):

``cluster.env``
    ``KEY=value`` lines, sorted, values quoted like Istio's ``shellescape.Quote``: the
    proxy metadata of ``mesh.yaml`` plus ISTIO_INBOUND_PORTS (the WorkloadGroup's ports,
    ``*`` without ports), ISTIO_NAMESPACE, ISTIO_SERVICE (``<group>.<namespace>``),
    ISTIO_SERVICE_CIDR (``*``), ISTIO_LOCAL_EXCLUDE_PORTS (``22,15090,15021`` and the status
    port, default 15020), SERVICE_ACCOUNT; CA_ADDR for a revision; ISTIO_SVC_IP for
    ``internal_ip``/``external_ip``.
``mesh.yaml``
    ``defaultConfig:`` = the ``defaultConfig`` of the cluster's ``istio`` mesh ConfigMap, the
    ``proxy.istio.io/config`` annotations of the WorkloadGroup, the probe as
    ``readinessProbe``, and proxyMetadata CANONICAL_SERVICE/REVISION, POD_NAMESPACE,
    SERVICE_ACCOUNT, TRUST_DOMAIN, ISTIO_META_CLUSTER_ID, ISTIO_META_MESH_ID,
    ISTIO_META_NETWORK, ISTIO_META_POD_PORTS, ISTIO_META_WORKLOAD_NAME,
    ISTIO_METAJSON_LABELS, ISTIO_META_DNS_CAPTURE, ISTIO_META_AUTO_REGISTER_GROUP.
``root-cert.pem``
    ``istio-ca-root-cert`` ConfigMap of the group's namespace (istioctl), else of the Istio
    namespace (Meshfleet: before istiod has written the namespace's copy).
``istio-token``
    TokenRequest for the group's service account, audience ``istio-ca``.
``hosts``
    ``<east-west gateway address> istiod.<istio namespace>.svc``.

Differences from istioctl, all opt-in or additive:

- ``discovery_port``: the port of ``discoveryAddress`` (istioctl always writes the mesh
  config's, 15012). When it is not 15012, ``cluster.env`` also gets
  ``CA_ADDR=istiod.<ns>.svc:<port>``: Istio's ``istio-start.sh`` otherwise sends the CSR to
  port 15012 (it does the same for a revision, like istioctl).
- ``proxy_metadata``: extra proxyMetadata entries (they land in both files, as
  ``proxy.istio.io/config`` annotations would).
- The token is renewed only when needed (see :func:`token_decision`), the files are
  rewritten only when their content changes, and ``mesh.yaml`` is YAML with the same data
  (Go's key order and quoting, so the bytes match istioctl's for the usual content).

The pure functions are what the unit tests exercise; :class:`VmBootstrapModule` does the
API calls.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import functools
import hashlib
import json
import os
import re
import shutil

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover - the toolkit's venv has it
    HAS_YAML = False

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import (
    MeshfleetError, MeshfleetModule, ensure_private_dir, write_file_atomic)
from ansible_collections.meshfleet.mesh.plugins.module_utils.remote_secret import (
    claims_expiry, claims_service_account, jwt_claims, parse_rfc3339, rfc3339, utcnow)

FILES = ("cluster.env", "mesh.yaml", "root-cert.pem", "istio-token", "hosts")
TOKEN_FILE = "istio-token"
TOKEN_AUDIENCE = "istio-ca"
DEFAULT_DISCOVERY_PORT = 15012
DEFAULT_STATUS_PORT = 15020
MIN_TOKEN_LIFETIME = 600  # the TokenRequest API refuses less than 10 minutes
ROOT_CERT_CONFIGMAP = "istio-ca-root-cert"
ROOT_CERT_KEY = "root-cert.pem"
ANNOTATION_PROXY_CONFIG = "proxy.istio.io/config"
LABEL_CANONICAL_NAME = "service.istio.io/canonical-name"
LABEL_CANONICAL_REVISION = "service.istio.io/canonical-revision"
NAME_LABELS = (LABEL_CANONICAL_NAME, "app.kubernetes.io/name", "app")
REVISION_LABELS = (LABEL_CANONICAL_REVISION, "app.kubernetes.io/version", "version")
WG_GROUP, WG_VERSION, WG_PLURAL = "networking.istio.io", "v1", "workloadgroups"

# istio.io/istio/pkg/util/shellescape: the pattern is the Go raw string `[^\\w@%+=:,./-]`,
# i.e. a class of backslash, "w" and @%+=:,./- (not \w): almost every value is quoted.
_UNSAFE = re.compile(r"[^\\w@%+=:,./-]")


# --- formatting like Istio ------------------------------------------------------------------
def shell_quote(value):
    """Istio's ``shellescape.Quote`` (bug for bug, see ``_UNSAFE``)."""
    value = u"%s" % (value,)
    if not value:
        return "''"
    if _UNSAFE.search(value):
        return "'" + value.replace("'", "'\"'\"'") + "'"
    return value


def go_json(obj):
    """``encoding/json`` output: compact, map keys sorted, ``<>&`` escaped as Go does."""
    text = json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace(u"\u2028", "\\u2028").replace(u"\u2029", "\\u2029"))


def canonical_service(labels, workload_name):
    """``labels.CanonicalService``: (name, revision) from the usual labels."""
    labels = labels or {}
    name = next((labels[k] for k in NAME_LABELS if k in labels), workload_name)
    revision = next((labels[k] for k in REVISION_LABELS if k in labels), "latest")
    return name, revision


def pod_ports(ports):
    """ISTIO_META_POD_PORTS: ``[{"name":..,"containerPort":..,"protocol":""}]`` by name; "" if none."""
    if not ports:
        return ""
    out = [{"name": n, "containerPort": int(p), "protocol": ""} for n, p in sorted(ports.items())]
    # model.PodPort field order (name, containerPort, protocol), not sorted keys
    return "[" + ",".join('{"name":%s,"containerPort":%d,"protocol":""}' % (
        go_json(o["name"]), o["containerPort"]) for o in out) + "]"


def env_file(values):
    """``cluster.env``: ``KEY=quoted`` lines sorted as strings, trailing newline."""
    lines = sorted("%s=%s" % (k, shell_quote(v)) for k, v in values.items())
    return "\n".join(lines) + "\n"


def _go_key_less(a, b):
    """gopkg.in/yaml.v2 ``keyList.Less`` for string keys (what sigs.k8s.io/yaml sorts by):
    non-letters before letters, runs of digits compared as numbers."""
    ar, br = list(a), list(b)
    for i in range(min(len(ar), len(br))):
        if ar[i] == br[i]:
            continue
        al, bl = ar[i].isalpha(), br[i].isalpha()
        if al and bl:
            return ar[i] < br[i]
        if al or bl:
            return bl
        an = bn = 0
        if ar[i] == "0" or br[i] == "0":
            j = i - 1
            while j >= 0 and ar[j].isdigit():
                if ar[j] != "0":
                    an = bn = 1
                    break
                j -= 1
        ai = i
        while ai < len(ar) and ar[ai].isdigit():
            an = an * 10 + int(ar[ai])
            ai += 1
        bi = i
        while bi < len(br) and br[bi].isdigit():
            bn = bn * 10 + int(br[bi])
            bi += 1
        if an != bn:
            return an < bn
        if ai != bi:
            return ai < bi
        return ar[i] < br[i]
    return len(ar) < len(br)


def _go_ordered(obj):
    """Dicts rebuilt with their keys in Go YAML order (recursively)."""
    if isinstance(obj, dict):
        keys = sorted(obj, key=functools.cmp_to_key(
            lambda x, y: -1 if _go_key_less(u"%s" % x, u"%s" % y) else (1 if _go_key_less(u"%s" % y, u"%s" % x) else 0)))
        return dict((k, _go_ordered(obj[k])) for k in keys)
    if isinstance(obj, list):
        return [_go_ordered(v) for v in obj]
    return obj


def _represent_str(dumper, data):
    """Strings a YAML reader would take for another type are double-quoted, as Go's
    encoder does (``"true"``); PyYAML would single-quote them."""
    style = None
    if dumper.resolve(yaml.ScalarNode, data, (True, False)) != u"tag:yaml.org,2002:str":
        style = '"'
    return dumper.represent_scalar(u"tag:yaml.org,2002:str", data, style=style)


_DUMPER = []


def _go_yaml_dumper():
    if not _DUMPER:
        dumper = type("GoYamlDumper", (yaml.SafeDumper,), {})
        dumper.add_representer(str, _represent_str)
        _DUMPER.append(dumper)
    return _DUMPER[0]


def mesh_yaml(proxy_config):
    """``mesh.yaml`` as istioctl writes it (sigs.k8s.io/yaml: Go key order and quoting)."""
    return yaml.dump(_go_ordered({"defaultConfig": proxy_config}), Dumper=_go_yaml_dumper(),
                     default_flow_style=False, sort_keys=False, allow_unicode=True, width=1 << 16)


def istiod_host(istio_namespace, revision=""):
    name = "istiod" if revision in ("", "default", None) else "istiod-%s" % revision
    return "%s.%s.svc" % (name, istio_namespace)


def hosts_file(address, istio_namespace, revision=""):
    return "%s %s\n" % (address, istiod_host(istio_namespace, revision)) if address else ""


def _parse_yaml_map(text, what):
    try:
        data = yaml.safe_load(text) if text else None
    except yaml.YAMLError as e:
        raise MeshfleetError("%s is not valid YAML: %s" % (what, e))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MeshfleetError("%s is not a YAML mapping" % what)
    return data


def _merge_proxy_config(base, overlay):
    """protomarshal.ApplyYAML onto a ProxyConfig: top-level fields replace, maps merge
    (proxyMetadata gains keys), like istioctl's handling of the annotation."""
    out = dict(base)
    for k, v in overlay.items():
        if k == "proxyMetadata" and isinstance(v, dict):
            md = dict(out.get("proxyMetadata") or {})
            md.update(dict((mk, u"%s" % (mv,)) for mk, mv in v.items()))
            out["proxyMetadata"] = md
        else:
            out[k] = v
    return out


def normalize_workload_group(wg):
    """The WorkloadGroup as istioctl's readWorkloadGroup sees it (defaults filled)."""
    wg = copy.deepcopy(wg or {})
    meta = wg.setdefault("metadata", {}) or {}
    wg["metadata"] = meta
    if not meta.get("name") or not meta.get("namespace"):
        raise MeshfleetError("the WorkloadGroup needs metadata.name and metadata.namespace")
    spec = wg.setdefault("spec", {}) or {}
    wg["spec"] = spec
    spec["metadata"] = spec.get("metadata") or {}
    spec["template"] = spec.get("template") or {}
    if not spec["template"].get("serviceAccount"):
        spec["template"]["serviceAccount"] = "default"
    return wg


def build_proxy_config(wg, mesh_text, cluster_id, auto_register=True, dns_capture=True,
                       discovery_address=None, proxy_metadata=None, revision=""):
    """(ProxyConfig dict, trust domain): what ``mesh.yaml`` holds under defaultConfig."""
    wg = normalize_workload_group(wg)
    name, namespace = wg["metadata"]["name"], wg["metadata"]["namespace"]
    spec = wg["spec"]
    template = spec["template"]
    mesh = _parse_yaml_map(mesh_text, "the istio mesh ConfigMap")
    pc = dict(mesh.get("defaultConfig") or {})
    pc["proxyMetadata"] = dict((k, u"%s" % (v,)) for k, v in (pc.get("proxyMetadata") or {}).items())
    if revision not in ("", "default", None) and not pc.get("discoveryAddress"):
        pc["discoveryAddress"] = "%s:%d" % (istiod_host("istio-system", revision), DEFAULT_DISCOVERY_PORT)
    for annotations in ((wg["metadata"].get("annotations") or {}), (spec["metadata"].get("annotations") or {})):
        if ANNOTATION_PROXY_CONFIG in annotations:
            pc = _merge_proxy_config(pc, _parse_yaml_map(
                annotations[ANNOTATION_PROXY_CONFIG], "annotation %s" % ANNOTATION_PROXY_CONFIG))
    if proxy_metadata:
        pc = _merge_proxy_config(pc, {"proxyMetadata": proxy_metadata})
    if discovery_address:
        pc["discoveryAddress"] = discovery_address
    labels = dict(spec["metadata"].get("labels") or {})
    labels.update(template.get("labels") or {})
    if "probe" in spec and spec["probe"]:
        pc["readinessProbe"] = spec["probe"]
    else:
        pc.pop("readinessProbe", None)
    md = pc["proxyMetadata"]
    md["CANONICAL_SERVICE"], md["CANONICAL_REVISION"] = canonical_service(labels, name)
    md["POD_NAMESPACE"] = namespace
    md["SERVICE_ACCOUNT"] = template["serviceAccount"]
    md["TRUST_DOMAIN"] = mesh.get("trustDomain") or ""
    md["ISTIO_META_CLUSTER_ID"] = cluster_id or ""
    md["ISTIO_META_MESH_ID"] = u"%s" % (pc.get("meshId") or "")
    md["ISTIO_META_NETWORK"] = template.get("network") or ""
    ports = pod_ports(template.get("ports"))
    if ports:
        md["ISTIO_META_POD_PORTS"] = ports
    md["ISTIO_META_WORKLOAD_NAME"] = name
    labels[LABEL_CANONICAL_NAME] = md["CANONICAL_SERVICE"]
    labels[LABEL_CANONICAL_REVISION] = md["CANONICAL_REVISION"]
    md["ISTIO_METAJSON_LABELS"] = go_json(labels)
    if dns_capture:
        md["ISTIO_META_DNS_CAPTURE"] = "true"
    if auto_register:
        md["ISTIO_META_AUTO_REGISTER_GROUP"] = name
    return pc, md["TRUST_DOMAIN"]


def build_cluster_env(wg, proxy_config, istio_namespace="istio-system", revision="",
                      internal_ip=None, external_ip=None, discovery_port=None):
    """The values of ``cluster.env`` (a dict; :func:`env_file` formats it)."""
    wg = normalize_workload_group(wg)
    template = wg["spec"]["template"]
    ports = [str(p) for _n, p in sorted((template.get("ports") or {}).items(), key=lambda kv: kv[0])]
    status_port = int(proxy_config.get("statusPort") or 0)
    exclude = "22,15090,15021"
    if status_port not in (15090, 15021):
        exclude += ",%d" % (status_port or DEFAULT_STATUS_PORT)
    overrides = {
        "ISTIO_INBOUND_PORTS": ",".join(ports) if ports else "*",
        "ISTIO_NAMESPACE": wg["metadata"]["namespace"],
        "ISTIO_SERVICE": "%s.%s" % (wg["metadata"]["name"], wg["metadata"]["namespace"]),
        "ISTIO_SERVICE_CIDR": "*",
        "ISTIO_LOCAL_EXCLUDE_PORTS": exclude,
        "SERVICE_ACCOUNT": template["serviceAccount"],
    }
    port = int(discovery_port or DEFAULT_DISCOVERY_PORT)
    if revision not in ("", "default", None) or port != DEFAULT_DISCOVERY_PORT:
        overrides["CA_ADDR"] = "%s:%d" % (istiod_host(istio_namespace, revision), port)
    if internal_ip:
        overrides["ISTIO_SVC_IP"] = internal_ip
    elif external_ip:
        overrides["ISTIO_SVC_IP"] = external_ip
        overrides["REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION"] = "true"
    values = dict(proxy_config.get("proxyMetadata") or {})
    values.update(overrides)
    return values


def discovery_address_for(mesh_text, istio_namespace, revision, port):
    """``discoveryAddress`` with ``port`` (None: the mesh config's, as istioctl writes it)."""
    if port is None:
        return None
    return "%s:%d" % (istiod_host(istio_namespace, revision), int(port))


# --- the token ------------------------------------------------------------------------------
def token_decision(token, now, renew_before, namespace, service_account, sa_uid=None,
                   audience=TOKEN_AUDIENCE):
    """(renew: bool, reason: str or None, expires: datetime or None) for a stored token."""
    if not token:
        return True, "no token yet", None
    claims = jwt_claims(token.strip())
    if claims is None:
        return True, "the stored token is not a JWT", None
    expires = claims_expiry(claims)
    if expires is None:
        return True, "the stored token does not expire (not from the TokenRequest API)", None
    sa = claims_service_account(claims)
    if not sa or sa[0] != namespace or sa[1] != service_account:
        return True, "the stored token is for another service account", expires
    if sa_uid and sa[2] and sa[2] != sa_uid:
        return True, "the service account was re-created", expires
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    if audience not in auds:
        return True, "the stored token is not for audience %s" % audience, expires
    left = (expires - now).total_seconds()
    if left <= 0:
        return True, "the stored token expired at %s" % rfc3339(expires), expires
    if left < renew_before:
        return True, "the stored token expires within %ds (at %s)" % (renew_before, rfc3339(expires)), expires
    return False, None, expires


def redact_token(token):
    if not token:
        return ""
    claims = jwt_claims(token.strip()) or {}
    exp = claims_expiry(claims)
    return "<istio-token for %s, expires %s, sha256 %s>" % (
        "/".join((claims_service_account(claims) or ("?", "?", None))[:2]), rfc3339(exp) or "never",
        hashlib.sha256(token.encode("utf-8")).hexdigest()[:12])


def render(wg, mesh_text, cluster_id, root_cert, hosts_address, token, istio_namespace="istio-system",
           revision="", auto_register=True, dns_capture=True, discovery_port=None,
           proxy_metadata=None, internal_ip=None, external_ip=None):
    """Every file's content: {filename: text}. Pure."""
    pc, _td = build_proxy_config(
        wg, mesh_text, cluster_id, auto_register=auto_register, dns_capture=dns_capture,
        discovery_address=discovery_address_for(mesh_text, istio_namespace, revision, discovery_port),
        proxy_metadata=proxy_metadata, revision=revision)
    env = build_cluster_env(wg, pc, istio_namespace, revision, internal_ip, external_ip, discovery_port)
    return {
        "cluster.env": env_file(env),
        "mesh.yaml": mesh_yaml(pc),
        "root-cert.pem": root_cert,
        "istio-token": token,
        "hosts": hosts_file(hosts_address, istio_namespace, revision),
    }


def _read(path):
    try:
        with open(path, "r") as f:
            return f.read()
    except (IOError, OSError):
        return None


class VmBootstrapModule(MeshfleetModule):
    argument_spec = dict(
        dest=dict(type="path", required=True),
        kubeconfig=dict(type="path"),
        context=dict(type="str"),
        name=dict(type="str"),
        namespace=dict(type="str"),
        workload_group=dict(type="dict"),
        cluster_id=dict(type="str"),
        istio_namespace=dict(type="str", default="istio-system"),
        revision=dict(type="str", default=""),
        discovery_port=dict(type="int"),
        ingress_ip=dict(type="str"),
        ingress_service=dict(type="str", default="istio-eastwestgateway"),
        internal_ip=dict(type="str"),
        external_ip=dict(type="str"),
        auto_register=dict(type="bool", default=True),
        dns_capture=dict(type="bool", default=True),
        proxy_metadata=dict(type="dict", default={}),
        token_lifetime=dict(type="int", default=3600, no_log=False),
        renew_before=dict(type="int", default=1200),
        force_token=dict(type="bool", default=False),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )
    module_kwargs = dict(
        required_if=[("state", "present", ("kubeconfig",))],
        mutually_exclusive=[("internal_ip", "external_ip")],
    )

    def run(self):
        p = self.params
        dest = p["dest"]
        if not HAS_YAML:
            raise MeshfleetError("the PyYAML Python library is required on the controller (pip install pyyaml)")
        if p["state"] == "absent":
            existed = os.path.isdir(dest)
            if existed:
                self.set_diff({"files": sorted(os.listdir(dest))}, {"files": []})
                if not self.check_mode:
                    shutil.rmtree(dest)
            return dict(changed=existed, bootstrap_dir=dest)
        if p["token_lifetime"] < MIN_TOKEN_LIFETIME:
            raise MeshfleetError("token_lifetime must be at least %d seconds (the TokenRequest API "
                                 "refuses less)" % MIN_TOKEN_LIFETIME)
        if p["renew_before"] >= p["token_lifetime"]:
            raise MeshfleetError("renew_before (%d) must be less than token_lifetime (%d), or every run "
                                 "would mint a token" % (p["renew_before"], p["token_lifetime"]))
        from ansible_collections.meshfleet.mesh.plugins.module_utils.kube_rest import KubeRest
        kc = KubeRest(p["kubeconfig"], p["context"], label="workload group")
        wg = self._workload_group(kc)
        name, namespace = wg["metadata"]["name"], wg["metadata"]["namespace"]
        sa_name = wg["spec"]["template"]["serviceAccount"]
        ns_istio = p["istio_namespace"]
        mesh_cm_name = "istio" if p["revision"] in ("", "default") else "istio-%s" % p["revision"]
        mesh_cm = kc.call("read ConfigMap %s/%s" % (ns_istio, mesh_cm_name),
                          kc.core.read_namespaced_config_map, mesh_cm_name, ns_istio, not_found=None)
        if mesh_cm is None:
            raise MeshfleetError("ConfigMap %s was not found in namespace %s: install Istio first"
                                 % (mesh_cm_name, ns_istio))
        mesh_text = (mesh_cm.get("data") or {}).get("mesh", "")
        cluster_id = p["cluster_id"] or self._cluster_id(kc, ns_istio)
        root_cert = self._root_cert(kc, namespace, ns_istio)
        hosts_address = p["ingress_ip"] or self._ingress_ip(kc, ns_istio)
        if not hosts_address:
            self.warn("could not find the address of %s: the hosts file is empty; set ingress_ip "
                      "(istioctl cannot use a LoadBalancer host name either, istio#31624)" % p["ingress_service"])
        sa = kc.call("read ServiceAccount %s/%s" % (namespace, sa_name),
                     kc.core.read_namespaced_service_account, sa_name, namespace, not_found=None)
        if sa is None:
            raise MeshfleetError("ServiceAccount %s/%s does not exist: create it (role "
                                 "meshfleet.mesh.vm_workload_group) before the VM's bootstrap"
                                 % (namespace, sa_name))
        token_path = os.path.join(dest, TOKEN_FILE)
        old_token = _read(token_path)
        renew, reason, expires = token_decision(old_token, utcnow(), p["renew_before"], namespace,
                                                sa_name, (sa.get("metadata") or {}).get("uid"))
        if p["force_token"]:
            renew, reason = True, "force_token"
        token = old_token
        if renew:
            if self.check_mode:
                token = None
                expires = None
            else:
                token, expires = self._request_token(kc, namespace, sa_name, p["token_lifetime"])
        files = render(wg, mesh_text, cluster_id, root_cert, hosts_address, token or "",
                       istio_namespace=ns_istio, revision=p["revision"], auto_register=p["auto_register"],
                       dns_capture=p["dns_capture"], discovery_port=p["discovery_port"],
                       proxy_metadata=p["proxy_metadata"], internal_ip=p["internal_ip"],
                       external_ip=p["external_ip"])
        changed_files = []
        before, after = {}, {}
        for fname in FILES:
            path = os.path.join(dest, fname)
            old = _read(path)
            new = files[fname]
            if fname == TOKEN_FILE:
                if not renew:
                    continue
                changed_files.append(fname)
                before[fname] = redact_token(old)
                after[fname] = redact_token(new) if new else "<a new istio-token (check mode)>"
                continue
            if old != new:
                changed_files.append(fname)
                before[fname] = old or ""
                after[fname] = new
        if changed_files:
            self.set_diff(before, after)
        if not self.check_mode:
            ensure_private_dir(os.path.dirname(dest))
            ensure_private_dir(dest)
            for fname in FILES:
                if fname == TOKEN_FILE and not renew:
                    continue
                write_file_atomic(os.path.join(dest, fname), files[fname], mode=0o600)
        return dict(
            changed=bool(changed_files),
            changed_files=changed_files,
            bootstrap_dir=dest,
            files=dict((f, os.path.join(dest, f)) for f in FILES),
            workload_group=dict(name=name, namespace=namespace, service_account=sa_name),
            cluster_id=cluster_id,
            discovery_address=(yaml.safe_load(files["mesh.yaml"])["defaultConfig"].get("discoveryAddress")),
            hosts_address=hosts_address,
            token_renewed=bool(renew) and not self.check_mode,
            token_reason=reason,
            token_expires=rfc3339(expires),
        )

    # --- reads -----------------------------------------------------------------------------
    def _workload_group(self, kc):
        p = self.params
        if p["workload_group"]:
            wg = copy.deepcopy(p["workload_group"])
            meta = wg.setdefault("metadata", {})
            if p["name"]:
                meta.setdefault("name", p["name"])
            if p["namespace"]:
                meta.setdefault("namespace", p["namespace"])
            return normalize_workload_group(wg)
        if not (p["name"] and p["namespace"]):
            raise MeshfleetError("give workload_group (a WorkloadGroup definition) or the name and "
                                 "namespace of an existing WorkloadGroup")
        wg = kc.call("read WorkloadGroup %s/%s" % (p["namespace"], p["name"]),
                     kc.custom.get_namespaced_custom_object, WG_GROUP, WG_VERSION, p["namespace"],
                     WG_PLURAL, p["name"], not_found=None)
        if wg is None:
            raise MeshfleetError("workloadgroup %s not found in namespace %s (role "
                                 "meshfleet.mesh.vm_workload_group creates it)" % (p["name"], p["namespace"]))
        return normalize_workload_group(wg)

    def _cluster_id(self, kc, ns_istio):
        """istioctl: values.global.multiCluster.clusterName of istio-sidecar-injector."""
        rev = self.params["revision"]
        name = "istio-sidecar-injector" if rev in ("", "default") else "istio-sidecar-injector-%s" % rev
        cm = kc.call("read ConfigMap %s/%s" % (ns_istio, name), kc.core.read_namespaced_config_map,
                     name, ns_istio, not_found=None)
        try:
            values = json.loads((cm.get("data") or {}).get("values", "")) if cm else {}
            cid = values["global"]["multiCluster"]["clusterName"]
        except (ValueError, KeyError, TypeError):
            cid = None
        if not cid:
            raise MeshfleetError("cluster_id not given and not found in ConfigMap %s/%s "
                                 "(values.global.multiCluster.clusterName)" % (ns_istio, name))
        return cid

    def _root_cert(self, kc, namespace, ns_istio):
        for ns in (namespace, ns_istio):
            cm = kc.call("read ConfigMap %s/%s" % (ns, ROOT_CERT_CONFIGMAP), kc.core.read_namespaced_config_map,
                         ROOT_CERT_CONFIGMAP, ns, not_found=None)
            pem = ((cm.get("data") or {}).get(ROOT_CERT_KEY) if cm else None)
            if pem:
                return pem
        raise MeshfleetError("ConfigMap %s (key %s) was not found in namespace %s nor %s: is istiod "
                             "running for this cluster?" % (ROOT_CERT_CONFIGMAP, ROOT_CERT_KEY, namespace, ns_istio))

    def _ingress_ip(self, kc, ns_istio):
        svc_name, _dot, svc_ns = self.params["ingress_service"].partition(".")
        svc_ns = svc_ns or ns_istio
        svc = kc.call("read Service %s/%s" % (svc_ns, svc_name), kc.core.read_namespaced_service,
                      svc_name, svc_ns, not_found=None)
        if svc is None:
            return None
        for ing in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
            if ing.get("ip"):
                return ing["ip"]
        external = (svc.get("spec") or {}).get("externalIPs")
        return external[0] if external else None

    def _request_token(self, kc, namespace, sa_name, lifetime):
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [TOKEN_AUDIENCE], "expirationSeconds": lifetime}}
        resp = kc.call("create a token for ServiceAccount %s/%s" % (namespace, sa_name),
                       kc.core.create_namespaced_service_account_token, sa_name, namespace, body)
        status = resp.get("status") or {}
        token = status.get("token")
        if not token:
            raise MeshfleetError("the TokenRequest for ServiceAccount %s/%s returned no token" % (namespace, sa_name))
        self.module.no_log_values.add(token)
        exp = parse_rfc3339(status.get("expirationTimestamp"))
        claims_exp = claims_expiry(jwt_claims(token))
        return token, min(e for e in (exp, claims_exp) if e is not None) if (exp or claims_exp) else None
