# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Gather what the mesh report shows, from the state dir and the clusters themselves.

- trust: the certificates under ``<state_dir>/pki`` (the root, the next or previous root of
  an open rotation window, each cluster's intermediate); only ``*cert*.pem`` files are opened,
  never a key;
- per cluster (:class:`~.kube_rest.KubeRest`, short timeouts; an unreachable cluster is a row
  that says so, not a failure): the API server, the ``topology.istio.io/network`` label of
  the Istio namespace, the east-west gateway Service's load balancer address, the remote
  secrets (``istio/multiCluster=true``: which cluster each one reads, the token's expiry from
  its ``exp`` claim and the ``meshfleet.io/token-expires`` annotation, the earlier wins — the
  token itself is dropped as soon as it is decoded), the WorkloadEntries of its VM groups;
- per istiod: ``/debug/clusterz`` (what ``meshfleet.mesh.mesh_verify`` checks), each cluster's
  ``syncStatus``;
- the latest results ``playbooks/verify.yml`` saved (``verify-results.json``).

:func:`gather` returns one JSON-able dict; :mod:`.mesh_report_html` renders it. The module
writes the page only when its content (the generation time aside) changed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import (
    MeshfleetError, MeshfleetModule, Plan, ensure_private_dir, write_file_atomic)
from ansible_collections.meshfleet.mesh.plugins.module_utils.gateway_address import lb_ingress
from ansible_collections.meshfleet.mesh.plugins.module_utils.istiod_local import IstiodLocal
from ansible_collections.meshfleet.mesh.plugins.module_utils.kube_rest import KubeRest
from ansible_collections.meshfleet.mesh.plugins.module_utils.localproc import https_get
from ansible_collections.meshfleet.mesh.plugins.module_utils import mesh_report_html
from ansible_collections.meshfleet.mesh.plugins.module_utils.remote_secret import (
    ANNOTATION_CLUSTER, LABEL_MULTICLUSTER, inspect_secret, rfc3339)

try:
    from ansible_collections.meshfleet.mesh.plugins.module_utils import pki
    HAS_PKI = pki.HAS_CRYPTOGRAPHY
except ImportError:  # pragma: no cover - cryptography is a dependency of the toolkit
    pki = None
    HAS_PKI = False

NETWORK_LABEL = "topology.istio.io/network"
GATEWAY_SERVICE = "istio-eastwestgateway"
#: the root certificates of ``<state_dir>/pki/root`` the report reads, by their role
ROOT_FILES = (("current", "root-cert.pem"), ("next", "next-root-cert.pem"),
              ("previous", "previous-root-cert.pem"))
VERIFY_RESULTS = "verify-results.json"


def utcnow():
    """Current time (UTC, aware). Tests patch this."""
    return datetime.datetime.now(datetime.timezone.utc)


def expiry_status(not_after, now, warn_seconds):
    """``expired``, ``expiring`` (within ``warn_seconds``) or ``valid``; ``unknown`` without a date."""
    if not_after is None:
        return "unknown"
    left = (not_after - now).total_seconds()
    if left <= 0:
        return "expired"
    return "expiring" if left <= warn_seconds else "valid"


# --- trust ------------------------------------------------------------------------------
def _cert_entry(cert, now, warn_seconds):
    return dict(subject=cert.subject.rfc4514_string(), fingerprint=pki.fingerprint(cert),
                not_before=rfc3339(cert.not_valid_before_utc), not_after=rfc3339(cert.not_valid_after_utc),
                status=expiry_status(cert.not_valid_after_utc, now, warn_seconds))


def _load_cert(path):
    """The first certificate of a PEM file, None when the file is missing; a problem text when
    it cannot be read."""
    if not os.path.isfile(path):
        return None, None
    try:
        with open(path, "rb") as f:
            return pki.load_certs_pem(f.read())[0], None
    except (IOError, OSError, ValueError) as e:
        return None, "%s: not a readable PEM certificate (%s)" % (path, getattr(e, "strerror", None) or e)


def gather_trust(state_dir, clusters, now, warn_seconds):
    """Roots and intermediates from ``<state_dir>/pki`` (certificates only)."""
    out = dict(roots=[], intermediates=[], problems=[])
    if not HAS_PKI:
        out["problems"].append("the Python library cryptography is not installed: trust not shown")
        return out
    pki_dir = os.path.join(state_dir, "pki")
    roots = []
    for role, name in ROOT_FILES:
        cert, problem = _load_cert(os.path.join(pki_dir, "root", name))
        if problem:
            out["problems"].append(problem)
        if cert is not None:
            roots.append((role, cert))
            out["roots"].append(dict(_cert_entry(cert, now, warn_seconds), role=role))
    if not roots:
        out["problems"].append("no root certificate in %s (the trust role has not run yet)"
                               % os.path.join(pki_dir, "root"))
    for name in clusters:
        path = os.path.join(pki_dir, name, "ca-cert.pem")
        cert, problem = _load_cert(path)
        if problem:
            out["problems"].append(problem)
        if cert is None:
            out["intermediates"].append(dict(cluster=name, missing=True, status="missing"))
            continue
        entry = dict(_cert_entry(cert, now, warn_seconds), cluster=name, missing=False)
        entry["signed_by"] = next((role for role, root in roots if pki.is_issued_by(cert, root)), None)
        out["intermediates"].append(entry)
    return out


# --- clusters ---------------------------------------------------------------------------
def remote_secrets(kube, namespace, now, warn_seconds):
    """The remote secrets in a cluster: [{secret, source, expires, time_bound, status, problem}].
    Tokens are decoded for their expiry and dropped here."""
    doc = kube.get("list the remote secrets in " + namespace,
                   "/api/v1/namespaces/%s/secrets" % namespace,
                   query={"labelSelector": "%s=true" % LABEL_MULTICLUSTER}, not_found=None) or {}
    out = []
    for secret in doc.get("items") or []:
        meta = secret.get("metadata") or {}
        keys = sorted((secret.get("data") or {}).keys()) or [(meta.get("annotations") or {}).get(ANNOTATION_CLUSTER)]
        for key in keys:
            info = inspect_secret(secret, key) if key else dict(problem="no data in the secret")
            expires = info.get("expires")
            if info.get("problem"):
                status = "malformed"
            elif not info.get("time_bound"):
                status = "no expiry"
            else:
                status = expiry_status(expires, now, warn_seconds)
            out.append(dict(secret=meta.get("name"), source=key, expires=rfc3339(expires),
                            time_bound=bool(info.get("time_bound")), status=status,
                            problem=info.get("problem"), server=info.get("server")))
            info.clear()  # the token and the kubeconfig go no further
    return sorted(out, key=lambda s: (s["source"] or "", s["secret"] or ""))


def workload_entries(kube, namespace):
    """[{name, address, network}] of the WorkloadEntries in ``namespace``; None when Istio's CRDs
    are not served."""
    doc = kube.get("list the WorkloadEntries in " + namespace,
                   "/apis/networking.istio.io/v1/namespaces/%s/workloadentries" % namespace, not_found=None)
    if doc is None:
        return None
    return sorted((dict(name=(i.get("metadata") or {}).get("name"), address=(i.get("spec") or {}).get("address"),
                        network=(i.get("spec") or {}).get("network"))
                   for i in doc.get("items") or []), key=lambda e: (e["address"] or "", e["name"] or ""))


def gather_cluster(spec, namespace, vm_groups, now, warn_seconds, timeout):
    """What one cluster reports; ``error`` says why it could not be read (then the rest is empty)."""
    out = dict(name=spec["name"], network=spec.get("network"), role=spec.get("role") or "primary",
               primary=spec.get("primary"), provider=spec.get("provider"), api_server=None, error=None,
               network_label=None, gateway=None, remote_secrets=[], inventory_eastwest=spec.get("eastwest_address"))
    kubeconfig = spec.get("kubeconfig")
    if not kubeconfig or not os.path.isfile(kubeconfig):
        out["error"] = "no kubeconfig at %s (not created yet?)" % kubeconfig
        return out, {}
    kube = None
    entries = {}
    try:
        kube = KubeRest(kubeconfig, label=spec["name"], timeout=timeout)
        out["api_server"] = kube.server
        ns = kube.get("read namespace " + namespace, "/api/v1/namespaces/" + namespace, not_found=None)
        if ns is None:
            out["error"] = "no %s namespace (Istio not installed yet?)" % namespace
            return out, {}
        out["network_label"] = ((ns.get("metadata") or {}).get("labels") or {}).get(NETWORK_LABEL)
        svc = kube.get("read service %s/%s" % (namespace, GATEWAY_SERVICE),
                       "/api/v1/namespaces/%s/services/%s" % (namespace, GATEWAY_SERVICE), not_found=None)
        if svc is not None:
            ports = sorted(p.get("port") for p in (svc.get("spec") or {}).get("ports") or []
                           if p.get("name") == "tls" or p.get("port") == 15443)
            out["gateway"] = dict(addresses=[ip or host for ip, host in lb_ingress(svc)], ports=ports)
        out["remote_secrets"] = remote_secrets(kube, namespace, now, warn_seconds)
        for group in vm_groups:
            if group.get("cluster") == spec["name"] and group.get("namespace"):
                entries[group["name"]] = workload_entries(kube, group["namespace"])
    except MeshfleetError as e:
        out["error"] = e.msg
    finally:
        if kube is not None:
            kube.close()
    return out, entries


# --- istiod -----------------------------------------------------------------------------
def clusterz(url, timeout):
    """{cluster id: syncStatus} from an istiod's ``/debug/clusterz`` (what mesh_verify reads)."""
    code, body = https_get(url.rstrip("/") + "/debug/clusterz", timeout=timeout)
    if code != 200:
        raise MeshfleetError("istiod at %s did not answer /debug/clusterz: %s" % (url, code or body))
    try:
        return dict((x.get("id"), x.get("syncStatus")) for x in json.loads(body))
    except (ValueError, TypeError, AttributeError):
        raise MeshfleetError("istiod at %s: /debug/clusterz is not the expected JSON list" % url)


def gather_sync(specs, state_dir, timeout):
    """One row per primary: the clusters its istiod must see (every other one unless
    ``expect_clusters``) and what its ``/debug/clusterz`` says about each."""
    names = [c["name"] for c in specs]
    rows = []
    for spec in specs:
        if (spec.get("role") or "primary") != "primary":
            continue
        expect = spec.get("expect_clusters")
        expect = sorted(expect if expect is not None else [n for n in names if n != spec["name"]])
        url = spec.get("istiod_url") or IstiodLocal(spec["name"], state_dir, None, spec["name"]).debug_url()
        row = dict(istiod=spec["name"], url=url, expect=expect, status={}, error=None)
        if not url:
            row["error"] = "no local istiod recorded (istiod runs in the cluster: its sync is not observed here)"
        else:
            try:
                row["status"] = clusterz(url, timeout)
            except MeshfleetError as e:
                row["error"] = e.msg
        rows.append(row)
    return rows


def expected_links(specs):
    """(source, target) of every remote secret the topology needs: each primary's istiod reads
    every other cluster (the role meshfleet.mesh.mesh_links)."""
    names = [c["name"] for c in specs]
    return sorted((src, c["name"]) for c in specs if (c.get("role") or "primary") == "primary"
                  for src in (c.get("expect_clusters") if c.get("expect_clusters") is not None else names)
                  if src != c["name"])


def read_verify_results(path):
    """The latest verify results (what verify.yml saved), None when there are none; a dict with
    ``problem`` when the file cannot be read."""
    if not path or not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            data = json.load(f)
    except (IOError, OSError, ValueError) as e:
        return dict(problem="%s cannot be read: %s" % (path, e))
    if not isinstance(data, dict):
        return dict(problem="%s is not a JSON object" % path)
    return data


def gather(params, now=None):
    """Everything the page shows, as one JSON-able dict (no token, no key)."""
    now = now or utcnow()
    state_dir = params["state_dir"]
    specs = []
    for c in params["clusters"]:
        c = dict(c)
        c.setdefault("kubeconfig", os.path.join(state_dir, "clusters", c["name"], "kubeconfig"))
        specs.append(c)
    vm_groups = [dict(g) for g in params.get("vm_groups") or []]
    cert_warn = params["cert_warn_days"] * 86400
    clusters, entries = [], {}
    for spec in specs:
        entry, found = gather_cluster(spec, params["namespace"], vm_groups, now,
                                      params["token_warn_seconds"], params["timeout"])
        clusters.append(entry)
        entries.update(found)
    for group in vm_groups:
        group["hosts"] = [dict(name=h.get("name"), address=h.get("address")) for h in group.get("hosts") or []]
        group["workload_entries"] = entries.get(group.get("name"))
    mesh = params.get("mesh") or {}
    istio = mesh.get("istio") if isinstance(mesh.get("istio"), dict) else {}
    return dict(
        title=params.get("title") or "Mesh %s" % (mesh.get("id") or ""),
        mesh=dict(id=mesh.get("id"), trust_domain=mesh.get("trust_domain"), istio_version=istio.get("version"),
                  revision=istio.get("revision")),
        state_dir=state_dir,
        clusters=clusters,
        vm_groups=vm_groups,
        trust=gather_trust(state_dir, [c["name"] for c in specs], now, cert_warn),
        sync=gather_sync(specs, state_dir, params["timeout"]),
        expected_links=[list(x) for x in expected_links(specs)],
        verify=read_verify_results(params["verify_results_file"]),
        thresholds=dict(cert_warn_days=params["cert_warn_days"], token_warn_seconds=params["token_warn_seconds"]),
    )


def summary(report):
    """A few counts for the module result and the play's output."""
    rows = report["sync"]
    cells = [(r["istiod"], c) for r in rows for c in r["expect"]]
    synced = sum(1 for r in rows for c in r["expect"] if r["status"].get(c) == "synced")
    links = [s for c in report["clusters"] for s in c["remote_secrets"]]
    verify = report.get("verify")
    return dict(clusters=len(report["clusters"]),
                unreachable=sorted(c["name"] for c in report["clusters"] if c["error"]),
                synced="%d/%d" % (synced, len(cells)),
                remote_secrets=len(links),
                tokens_not_valid=sorted("%s in %s" % (s["secret"], c["name"]) for c in report["clusters"]
                                        for s in c["remote_secrets"] if s["status"] != "valid"),
                verify=("not verified yet" if not verify else "unreadable" if verify.get("problem")
                        else "passed" if verify.get("passed") else "failed"))


ARGUMENT_SPEC = dict(
    state_dir=dict(type="path", required=True),
    dest=dict(type="path"),
    clusters=dict(type="list", elements="dict", required=True),
    vm_groups=dict(type="list", elements="dict", default=[]),
    mesh=dict(type="dict", default={}),
    title=dict(type="str"),
    verify_results_file=dict(type="path"),
    namespace=dict(type="str", default="istio-system"),
    cert_warn_days=dict(type="int", default=30),
    token_warn_seconds=dict(type="int", default=201600, no_log=False),
    timeout=dict(type="int", default=5),
)


def check_params(p):
    """Refuse what cannot make a report, naming the field (nothing is written then)."""
    for i, c in enumerate(p["clusters"]):
        if not isinstance(c.get("name"), str) or not c["name"]:
            raise MeshfleetError("clusters[%d].name: missing (each cluster needs a name)" % i)
    for i, g in enumerate(p["vm_groups"] or []):
        if not isinstance(g.get("name"), str) or not g["name"]:
            raise MeshfleetError("vm_groups[%d].name: missing (each VM group needs a name)" % i)
    if p["timeout"] < 1:
        raise MeshfleetError("timeout: must be at least 1 second, got %d" % p["timeout"])


class MeshReportModule(MeshfleetModule):
    """Gather, render and (only when its content changed) write the page; the result has
    dest, size, summary, report (and diff). The action plugin plugins/action/mesh_report.py
    runs it in the controller's process; the module stays for ansible-doc and direct use."""
    argument_spec = ARGUMENT_SPEC

    def plan(self, observed):
        p = dict(self.params)
        check_params(p)
        dest = p["dest"] or os.path.join(p["state_dir"], "report", "mesh-report.html")
        p["verify_results_file"] = p["verify_results_file"] or os.path.join(p["state_dir"], VERIFY_RESULTS)
        now = utcnow()
        report = gather(p, now)
        head, tail = mesh_report_html.render(report)
        try:
            with open(dest, "rb") as f:
                before = f.read().decode("utf-8", "replace")
        except (IOError, OSError):
            before = None
        changed = not mesh_report_html.same_page(before, head, tail)
        content = before if not changed else head + rfc3339(now) + tail
        self.fields = dict(dest=dest, size=len(content.encode("utf-8")), summary=summary(report), report=report)
        plan = Plan(before or "", content)
        plan.header = dest
        if changed:
            plan.add("write %s" % dest, lambda: self._write(dest, content))
        return plan

    @staticmethod
    def _write(dest, content):
        folder = os.path.dirname(dest)
        if not os.path.isdir(folder):
            ensure_private_dir(folder)
        write_file_atomic(dest, content, mode=0o644)

    def result(self, observed, plan):
        return dict(self.fields)
