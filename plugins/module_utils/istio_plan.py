# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plan one cluster's Istio control plane: render it, compare it with the cluster.

The control_plane role used to run ~15 tasks per cluster on every converge, most of them
kubernetes.core calls that each import the ``kubernetes`` package. This does the read
side in one process: renders the IstioOperator files with istioctl (charts embedded in
istioctl; the output is cached under the cluster's state folder, keyed by the IstioOperator
text and the istioctl binary, so istioctl runs only when one of them changed), reads the
cluster with :class:`~.kube_rest.KubeRest` and returns

- ``batches``: what kubernetes.core.k8s must apply, in order (the namespace and the rendered
  manifests, then the objects that need Istio's CRDs, then the ``meshfleet-install`` record
  carrying the hash of it all); empty when nothing is out of date;
- ``reasons``: why it is out of date (manifests changed since the last apply, an object
  missing, labels drifted, a reconcile asked for);
- ``cacerts``: whether the ``cacerts`` secret matches the PKI files (the secret itself is
  applied by a ``no_log`` task, never returned here).

It changes nothing in the cluster; the changes, their diff and check mode stay with
kubernetes.core.k8s.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import json
import os
import subprocess
import tempfile

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover - PyYAML ships with ansible-core
    yaml = None
    HAS_YAML = False

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import (
    MeshfleetError, MeshfleetModule, ensure_private_dir, write_file_atomic)
from ansible_collections.meshfleet.mesh.plugins.module_utils.gateway_address import lb_ingress
from ansible_collections.meshfleet.mesh.plugins.module_utils.kube_rest import KubeRest

CACERTS_FILES = ("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem")
RECORD_KEY = "manifests_sha256"


def parse_manifests(text, source):
    """The objects of istioctl's output (warnings it prints before the first document skipped)."""
    if not HAS_YAML:
        raise MeshfleetError("PyYAML is required (it ships with ansible-core)")
    start = text.find("apiVersion:")
    if start < 0:
        raise MeshfleetError("istioctl manifest generate printed no manifests for %s" % source)
    try:
        docs = [d for d in yaml.safe_load_all(text[start:]) if d]
    except yaml.YAMLError as e:
        raise MeshfleetError("istioctl's output for %s is not YAML: %s" % (source, e))
    return [d for d in docs if isinstance(d, dict) and d.get("kind")]


def describe(obj):
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return "%s %s%s" % (obj.get("kind"), ns + "/" if ns else "", meta.get("name"))


def digest(objects):
    return hashlib.sha256(json.dumps(objects, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")).hexdigest()


def metadata_drift(desired, live):
    """Labels or annotations of ``desired`` that ``live`` lacks or holds with another value."""
    out = []
    for field in ("labels", "annotations"):
        want = (desired.get("metadata") or {}).get(field) or {}
        have = (live.get("metadata") or {}).get(field) or {}
        for k, v in sorted(want.items()):
            if have.get(k) != v:
                out.append("%s %s %s=%s" % (describe(desired), field[:-1], k, v))
    return out


class IstioPlanModule(MeshfleetModule):
    argument_spec = dict(
        kubeconfig=dict(type="path", required=True),
        context=dict(type="str"),
        work_dir=dict(type="path", required=True),
        operators=dict(type="dict", required=True),
        namespace_object=dict(type="dict", required=True),
        objects=dict(type="list", elements="dict", default=[]),
        record_name=dict(type="str", default="meshfleet-install"),
        pki_dir=dict(type="path"),
        tools_bin=dict(type="path", required=True),
        reconcile=dict(type="bool", default=False),
        gateway=dict(type="dict", options=dict(
            service=dict(type="str", default="istio-eastwestgateway"),
            address=dict(type="str"),
            publish=dict(type="bool", default=False),
        )),
    )

    # --- rendering ----------------------------------------------------------------------
    def istioctl(self):
        path = os.path.join(self.params["tools_bin"], "istioctl")
        if not os.access(path, os.X_OK):
            raise MeshfleetError("istioctl not found at %s: build the tools (tools/build-tools.sh) or set "
                                 "tools_bin / MESHFLEET_TOOLS_BIN" % path)
        return path

    def render(self, name, text):
        """(objects, cached) for one IstioOperator file; istioctl runs only on a cache miss."""
        istioctl = self.istioctl()
        st = os.stat(istioctl)
        key = hashlib.sha256(("%s\0%s\0%s\0%s" % (istioctl, st.st_size, int(st.st_mtime), text)).encode("utf-8")).hexdigest()
        work = self.params["work_dir"]
        iop_file = os.path.join(work, "%s.yaml" % name)
        cache_file = os.path.join(work, ".%s.manifests.json" % name)
        try:
            with open(cache_file) as f:
                cached = json.load(f)
            if cached.get("key") == key and isinstance(cached.get("objects"), list):
                return cached["objects"], True
        except (IOError, OSError, ValueError, AttributeError):
            pass
        tmp = None
        if self.check_mode:
            tmp = tempfile.mkdtemp(prefix="meshfleet-iop-")
            iop_file = os.path.join(tmp, "%s.yaml" % name)
            write_file_atomic(iop_file, text)
        else:
            ensure_private_dir(work)
            write_file_atomic(iop_file, text)
        try:
            proc = subprocess.run([istioctl, "manifest", "generate", "--filename", iop_file],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                                  check=False, timeout=300)
        finally:
            if tmp:
                os.unlink(iop_file)
                os.rmdir(tmp)
        if proc.returncode != 0:
            raise MeshfleetError("istioctl manifest generate failed for %s (rc=%s): %s"
                                 % (name, proc.returncode, (proc.stderr or proc.stdout).strip()[-1500:]))
        objects = parse_manifests(proc.stdout, iop_file)
        if not self.check_mode:
            write_file_atomic(cache_file, json.dumps({"key": key, "objects": objects}, default=str))
        return objects, False

    # --- cluster ------------------------------------------------------------------------
    def cacerts_state(self, kube, namespace):
        pki = self.params["pki_dir"]
        if not pki:
            return dict(current=True, reason="no pki_dir given")
        want = {}
        for name in CACERTS_FILES:
            path = os.path.join(pki, name)
            try:
                with open(path, "rb") as f:
                    want[name] = f.read()
            except (IOError, OSError):
                if self.check_mode:
                    return dict(current=False, reason="%s not issued yet" % path)
                raise MeshfleetError("the plug-in CA file %s is missing: run the trust role "
                                     "(meshfleet.mesh.mesh_ca) first" % path)
        if kube is None:
            return dict(current=False, reason="cluster not created yet")
        sec = kube.get("read secret %s/cacerts" % namespace,
                       "/api/v1/namespaces/%s/secrets/cacerts" % namespace, not_found=None)
        if sec is None:
            return dict(current=False, reason="secret %s/cacerts missing" % namespace)
        have = {}
        for k, v in (sec.get("data") or {}).items():
            try:
                have[k] = base64.b64decode(v)
            except (TypeError, ValueError):
                have[k] = None
        stale = sorted(k for k in CACERTS_FILES if have.get(k) != want[k])
        if stale:
            return dict(current=False, reason="secret %s/cacerts differs in %s" % (namespace, ", ".join(stale)))
        return dict(current=True, reason="matches %s" % pki)

    def gateway_state(self, kube, namespace):
        """What meshfleet.mesh.gateway_address would return, when it would change nothing and
        wait for nothing (``current``); else ``current: false`` and the role runs it."""
        g = self.params["gateway"]
        if not g:
            return None
        if kube is None:
            return dict(current=False, address=g["address"], source="cluster not created yet")
        svc = kube.get("read service %s/%s" % (namespace, g["service"]),
                       "/api/v1/namespaces/%s/services/%s" % (namespace, g["service"]), not_found=None)
        if svc is None:
            return dict(current=False, address=g["address"], source="no gateway service yet")
        ingress = lb_ingress(svc)
        if g["address"]:
            published = not g["publish"] or ingress == [(g["address"], None)]
            return dict(current=published, address=g["address"], source="inventory override")
        if ingress and ingress[0][0]:
            return dict(current=True, address=ingress[0][0], source="load balancer ip")
        return dict(current=False, address=None, source="load balancer hostname or none yet")

    def run(self):
        p = self.params
        ns_obj = p["namespace_object"]
        namespace = (ns_obj.get("metadata") or {}).get("name")
        if ns_obj.get("kind") != "Namespace" or not namespace:
            raise MeshfleetError("namespace_object must be a Namespace with metadata.name")
        if not isinstance(p["operators"], dict) or not p["operators"]:
            raise MeshfleetError("operators must map a name to IstioOperator YAML text")

        rendered, cached = [], {}
        for name in sorted(p["operators"]):
            objects, hit = self.render(name, p["operators"][name])
            rendered.extend(objects)
            cached[name] = hit
        first = [ns_obj] + rendered
        then = list(p["objects"])
        sha = digest(first + then)
        record = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": p["record_name"], "namespace": namespace,
                               "labels": {"app.kubernetes.io/managed-by": "meshfleet"}},
                  "data": {RECORD_KEY: sha}}

        kube = None
        if os.path.isfile(p["kubeconfig"]):
            kube = KubeRest(p["kubeconfig"], p["context"], label="cluster")
        elif not self.check_mode:
            raise MeshfleetError("no kubeconfig at %s: create the cluster first (role meshfleet.mesh.clusters)"
                                 % p["kubeconfig"])

        reasons = []
        if kube is None:
            reasons.append("cluster not created yet")
        else:
            if p["reconcile"]:
                reasons.append("reconcile asked for (control_plane_reconcile)")
            live_record = kube.read_object(record)
            last = ((live_record or {}).get("data") or {}).get(RECORD_KEY)
            if last != sha:
                reasons.append("first install" if last is None else "rendered objects changed since the last apply")
            if not reasons:
                # the last apply matches: check that nothing was deleted or relabelled since
                for obj in first + then:
                    live = kube.read_object(obj)
                    if live is None:
                        reasons.append("missing: %s" % describe(obj))
                    else:
                        reasons.extend(metadata_drift(obj, live))
                    if len(reasons) >= 10:
                        reasons.append("...")
                        break
        cacerts = self.cacerts_state(kube, namespace)
        gateway = self.gateway_state(kube, namespace)
        if kube is not None:
            kube.close()
        batches = [first, then + [record]] if reasons else []
        return dict(changed=False, pending=bool(reasons), reasons=reasons, batches=batches,
                    cluster_exists=kube is not None,
                    manifests_sha256=sha, objects=len(first) + len(then), cached=cached,
                    cacerts=cacerts, gateway=gateway)
