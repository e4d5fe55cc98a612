# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verify a converged mesh against what its control planes and clusters really report.

Checks (each one a line in the report; any failure fails the module):
- every istiod reports every cluster it must read as ``synced`` (``/debug/clusterz``, what
  ``istioctl remote-clusters`` reads);
- ``istio-ca-root-cert`` in every cluster holds the same roots, equal to the mesh's bundle;
- each cluster's plug-in CA (``cacerts``) is signed by a mesh root and its chain ends there;
- cross-network discovery: a probe Service created in a cluster is in another network's
  istiod registry, its endpoints carry their network, and that network's gateway address
  (what istiod hands out instead of the endpoint) is the cluster's east-west address.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import time

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import (
    MeshfleetError, MeshfleetModule, WaitTimeout, wait_for)
from ansible_collections.meshfleet.mesh.plugins.module_utils.istiod_local import IstiodLocal
from ansible_collections.meshfleet.mesh.plugins.module_utils.kube_rest import KubeRest
from ansible_collections.meshfleet.mesh.plugins.module_utils.localproc import https_get
from ansible_collections.meshfleet.mesh.plugins.module_utils.pki import fingerprint, load_certs_pem

PROBE_NS = "meshfleet-verify"


def istiod_json(url, path):
    code, body = https_get(url.rstrip("/") + path, timeout=5)
    if code != 200:
        raise MeshfleetError("istiod at %s did not answer %s: %s" % (url, path, code or body))
    return json.loads(body)


def local_istiod_url(state_dir, name):
    """Debug URL of a local istiod started by meshfleet.mesh.istiod_local, or None."""
    return IstiodLocal(name, state_dir, None, name).debug_url()


def verify_signed_by(cert, roots):
    for root in roots:
        try:
            cert.verify_directly_issued_by(root)
            return root
        except (ValueError, TypeError, Exception):  # InvalidSignature and friends
            continue
    return None


class MeshVerifyModule(MeshfleetModule):
    argument_spec = dict(
        clusters=dict(type="list", elements="dict", required=True),
        root_bundle_file=dict(type="path", required=True),
        state_dir=dict(type="path"),
        namespace=dict(type="str", default="istio-system"),
        probe=dict(type="bool", default=True),
        keep_probe=dict(type="bool", default=False),
    )
    with_wait = True

    def run(self):
        p = self.params
        self.lines = []
        self.failures = []
        clusters = {c["name"]: dict(c) for c in p["clusters"]}
        for name, c in clusters.items():
            if not c.get("istiod_url") and p["state_dir"] and c.get("role", "primary") == "primary":
                c["istiod_url"] = local_istiod_url(p["state_dir"], name)
        kubes = {n: KubeRest(c["kubeconfig"], label=n) for n, c in clusters.items()}
        with open(p["root_bundle_file"], "rb") as f:
            roots = load_certs_pem(f.read())
        root_fps = sorted(fingerprint(r) for r in roots)
        report = dict(clusters={}, roots=root_fps)

        for name, c in sorted(clusters.items()):
            entry = report["clusters"][name] = {}
            self.check_root_configmap(name, kubes[name], root_fps, entry)
            self.check_cacerts(name, kubes[name], roots, entry)
            if c.get("istiod_url"):
                self.check_clusterz(name, c, clusters, entry)
        if p["probe"] and not self.check_mode:
            report["probes"] = self.check_cross_network(clusters, kubes)
        report["checks"] = self.lines
        report["failures"] = self.failures
        if self.failures:
            raise MeshfleetError("mesh verification failed:\n- " + "\n- ".join(self.failures),
                                 report=report)
        return dict(changed=False, report=report, summary="%d checks passed" % len(self.lines))

    def ok(self, line):
        self.lines.append("ok: " + line)

    def bad(self, line):
        self.lines.append("FAILED: " + line)
        self.failures.append(line)

    # --- trust ------------------------------------------------------------------------
    def check_root_configmap(self, name, kube, root_fps, entry):
        ns = self.params["namespace"]

        def read():
            return kube.call("read configmap %s/istio-ca-root-cert" % ns,
                             kube.core.read_namespaced_config_map, "istio-ca-root-cert", ns,
                             not_found=None)
        try:
            cm = wait_for(read, min(60, self.params["wait_timeout"]),
                          "istio-ca-root-cert in %s" % name, sleep=1)
        except WaitTimeout:
            self.bad("%s: no istio-ca-root-cert ConfigMap in %s (is istiod running for it?)" % (name, ns))
            return
        pem = (cm.get("data") or {}).get("root-cert.pem", "")
        fps = sorted(fingerprint(c) for c in load_certs_pem(pem.encode()))
        entry["root_cert_fingerprints"] = fps
        if fps == root_fps:
            self.ok("%s: istio-ca-root-cert holds the mesh root%s" % (name, "s" if len(fps) > 1 else ""))
        else:
            self.bad("%s: istio-ca-root-cert holds %s, the mesh roots are %s" % (name, fps, root_fps))

    def check_cacerts(self, name, kube, roots, entry):
        ns = self.params["namespace"]
        sec = kube.call("read secret %s/cacerts" % ns, kube.core.read_namespaced_secret, "cacerts", ns,
                        not_found=None)
        if sec is None:
            self.bad("%s: no cacerts secret in %s" % (name, ns))
            return
        import base64
        data = {k: base64.b64decode(v) for k, v in (sec.get("data") or {}).items()}
        missing = [k for k in ("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem") if k not in data]
        if missing:
            self.bad("%s: cacerts lacks %s" % (name, ", ".join(missing)))
            return
        ca = load_certs_pem(data["ca-cert.pem"])[0]
        chain = load_certs_pem(data["cert-chain.pem"])
        signer = verify_signed_by(ca, roots)
        entry["intermediate_fingerprint"] = fingerprint(ca)
        entry["intermediate_subject"] = ca.subject.rfc4514_string()
        if signer is None:
            self.bad("%s: its intermediate CA (%s) is not signed by a mesh root" % (name, ca.subject.rfc4514_string()))
        elif fingerprint(chain[0]) != fingerprint(ca) or fingerprint(chain[-1]) not in [fingerprint(r) for r in roots]:
            self.bad("%s: cert-chain.pem is not the intermediate followed by a mesh root" % name)
        else:
            self.ok("%s: intermediate CA %s chains to the mesh root %s"
                    % (name, ca.subject.rfc4514_string(), fingerprint(signer)[:23]))

    # --- multicluster -------------------------------------------------------------------
    def check_clusterz(self, name, c, clusters, entry):
        expect = c.get("expect_clusters")
        if expect is None:
            expect = [n for n in clusters if n != name]

        def synced():
            got = {x["id"]: x.get("syncStatus") for x in istiod_json(c["istiod_url"], "/debug/clusterz")}
            entry["clusterz"] = got
            return all(got.get(n) == "synced" for n in expect)
        try:
            wait_for(synced, self.params["wait_timeout"], "istiod of %s to sync" % name, sleep=1)
            self.ok("%s: istiod reports %s synced" % (name, ", ".join(sorted(expect)) or "no remote cluster"))
        except WaitTimeout:
            self.bad("%s: istiod reports %s; expected %s synced" % (name, entry.get("clusterz"), sorted(expect)))

    def check_cross_network(self, clusters, kubes):
        probes = []
        with_istiod = [n for n, c in sorted(clusters.items()) if c.get("istiod_url")]
        made = set()
        for src in with_istiod:
            for dst, dc in sorted(clusters.items()):
                if dst == src or dc["network"] == clusters[src]["network"]:
                    continue
                if dst not in made:
                    self.make_probe(dst, kubes[dst])
                    made.add(dst)
                probes.append(self.check_probe(src, clusters[src], dst, dc))
                break  # one remote network per istiod is enough to prove the path
        if not self.params["keep_probe"]:
            for dst in made:
                kubes[dst].call("delete namespace " + PROBE_NS, kubes[dst].core.delete_namespace,
                                PROBE_NS, not_found=None)
        return probes

    def make_probe(self, name, kube):
        core = kube.core
        kube.call("read namespace " + PROBE_NS, core.read_namespace, PROBE_NS, not_found=None) or kube.call(
            "create namespace " + PROBE_NS, core.create_namespace,
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PROBE_NS}})
        labels = {"app": "probe-" + name}
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "probe-" + name, "namespace": PROBE_NS},
               "spec": {"selector": labels, "ports": [{"name": "http", "port": 8080, "targetPort": 8080}]}}
        if kube.call("read probe service", core.read_namespaced_service, "probe-" + name, PROBE_NS,
                     not_found=None) is None:
            kube.call("create probe service", core.create_namespaced_service, PROBE_NS, svc)
        apps = kube.apps
        pod_labels = dict(labels, **{"security.istio.io/tlsMode": "istio"})
        dep = {"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "probe-" + name, "namespace": PROBE_NS},
               "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                        "template": {"metadata": {"labels": pod_labels},
                                     "spec": {"containers": [{"name": "probe", "image": "meshfleet/probe",
                                                              "ports": [{"containerPort": 8080}]}]}}}}
        if kube.call("read probe deployment", apps.read_namespaced_deployment, "probe-" + name, PROBE_NS,
                     not_found=None) is None:
            kube.call("create probe deployment", apps.create_namespaced_deployment, PROBE_NS, dep)

    def check_probe(self, src, sc, dst, dc):
        host = "probe-%s.%s.svc.cluster.local" % (dst, PROBE_NS)
        result = dict(istiod_of=src, service=host, in_cluster=dst, network=dc["network"])
        t0 = time.monotonic()

        def seen():
            shards = istiod_json(sc["istiod_url"], "/debug/endpointShardz").get(host, {})
            eps = []
            for ns in shards.values():
                for shard, items in (ns.get("Shards") or {}).items():
                    if shard.endswith("/" + dst):
                        eps.extend(items or [])
            return eps or None
        try:
            eps = wait_for(seen, self.params["wait_timeout"], "%s in %s's istiod" % (host, src), sleep=1)
        except WaitTimeout:
            self.bad("%s's istiod does not see %s (created in %s)" % (src, host, dst))
            return result
        result["seconds_to_discover"] = round(time.monotonic() - t0, 2)
        result["endpoints"] = [dict(address=(e.get("Addresses") or [None])[0], network=e.get("Network"))
                               for e in eps]
        nets = set(e.get("Network") for e in eps)
        gws = [g for g in istiod_json(sc["istiod_url"], "/debug/networkz")
               if g.get("Network") == dc["network"] and g.get("Cluster") == dst]
        result["gateway"] = ["%s:%s" % (g["Addr"], g["Port"]) for g in gws]
        want = dc.get("eastwest_address")
        if nets != {dc["network"]}:
            self.bad("%s: endpoints of %s carry networks %s, expected %s" % (src, host, sorted(nets), dc["network"]))
        elif not gws:
            self.bad("%s's istiod knows no gateway for %s/%s" % (src, dc["network"], dst))
        elif want and want not in [g["Addr"] for g in gws]:
            self.bad("%s's istiod sends %s traffic to %s, expected %s's east-west address %s"
                     % (src, dc["network"], result["gateway"], dst, want))
        else:
            self.ok("%s: istiod sees %s from %s (%s, endpoints %s) behind %s's east-west gateway %s"
                    % (src, host, dst, dc["network"], ", ".join(e["address"] for e in result["endpoints"]),
                       dst, ", ".join(result["gateway"])))
        return result
