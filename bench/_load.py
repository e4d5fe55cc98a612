# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fortio load run of bench/bench_real_pods.py (issue #11: cross-network p50 latency
<= 2x same-network p50, both beside a direct pod-to-pod baseline without sidecars).

On the real-pod mesh (cluster1 + cluster2 on network1, cluster3 on network2), after
verify.yml: a ``fortio`` image made from the bench tool set's static binary
(``tools/build-tools.sh --bench``) by the project's image builder, imported into the nodes'
containerd; then

- namespace ``sample`` (sidecars injected): a fortio server in cluster1, cluster2 and cluster3
  (``app: fortio-server``, ``site: <cluster>``) and the client in cluster1; Services
  ``fortio-local`` (cluster1 only: its one endpoint is cluster1's server, same cluster),
  ``fortio-peer`` (cluster1 and cluster2, selecting cluster2's server: same network, another
  cluster, sidecar to sidecar across network1's router) and ``fortio-remote`` (cluster1 and
  cluster3, selecting cluster3's server: every request crosses cluster3's east-west gateway);
- namespace ``bench-direct`` in cluster1 (no injection): a server and a client, the client
  calling the server's pod address (the baseline: no sidecar, no Service).

From each client: ``fortio load -qps Q -c C -t T -json -`` (exec through the API server,
``KubeRest.exec``), after a warm-up that waits until the target answers. Cross-network proof:
cluster3's gateway counters for ``fortio-remote``'s SNI cluster before/after (Envoy stats and
``/clusters``) and the client sidecar's endpoints of ``fortio-remote`` (the gateway's
address, port 15443).
"""

from __future__ import absolute_import, division, print_function

import json
import os
import re
import subprocess
import time

FORTIO_PORT = 8080
MESH_NS = "sample"
DIRECT_NS = "bench-direct"
CLIENT_CLUSTER = "cluster1"
#: (key, label, Service or None for the pod address, the server's cluster, client namespace)
TARGETS = (
    ("baseline", "direct pod to pod, no sidecars (cluster1)", None, "cluster1", DIRECT_NS),
    ("same-cluster", "same cluster, sidecars (cluster1 -> cluster1)", "fortio-local", "cluster1", MESH_NS),
    ("same-network", "same network (cluster1 -> cluster2)", "fortio-peer", "cluster2", MESH_NS),
    ("cross-network", "cross network via east-west gw (cluster1 -> cluster3)", "fortio-remote", "cluster3", MESH_NS),
)
#: the Services and where they exist
SERVICES = {"fortio-local": ("cluster1",), "fortio-peer": ("cluster1", "cluster2"),
            "fortio-remote": ("cluster1", "cluster3")}
SERVER_ARGS = ["server", "-http-port", str(FORTIO_PORT), "-grpc-port", "disabled", "-redirect-port", "disabled",
               "-tcp-port", "disabled", "-udp-port", "disabled", "-data-dir", "/tmp"]
APP_UID = 1000


def image_spec(fortio, version):
    """The fortio image: the static binary alone (no base), run as an unprivileged user."""
    from ansible_collections.meshfleet.mesh.plugins.module_utils.images import spec
    return spec.ImageSpec("fortio", entries=[spec.directory("/tmp", mode=0o1777),
                                             spec.file("/usr/bin/fortio", fortio, mode=0o755)],
                          entrypoint=["/usr/bin/fortio"], cmd=list(SERVER_ARGS), ports=["%d/tcp" % FORTIO_PORT],
                          user="%d:%d" % (APP_UID, APP_UID), workdir="/tmp", version=version)


def deployment(name, namespace, labels, image):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "spec": {"replicas": 1, "selector": {"matchLabels": dict(labels)},
                     "template": {"metadata": {"labels": dict(labels)},
                                  "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
                                      "name": "fortio", "image": image, "imagePullPolicy": "Never",
                                      "args": list(SERVER_ARGS),
                                      "ports": [{"containerPort": FORTIO_PORT, "name": "http"}],
                                      "readinessProbe": {"httpGet": {"path": "/", "port": FORTIO_PORT},
                                                         "periodSeconds": 2}}]}}}}


def service(name, namespace, site):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"app": "fortio-server", "site": site},
                     "ports": [{"name": "http", "port": FORTIO_PORT, "targetPort": FORTIO_PORT}]}}


def manifests(cluster, image):
    """{namespace: [objects]} of one cluster (see the module docstring)."""
    out = {}
    mesh = []
    if cluster in ("cluster1", "cluster2", "cluster3"):
        mesh.append(deployment("fortio-server", MESH_NS, {"app": "fortio-server", "site": cluster}, image))
    if cluster == CLIENT_CLUSTER:
        mesh.append(deployment("fortio-client", MESH_NS, {"app": "fortio-client"}, image))
    for name, where in sorted(SERVICES.items()):
        if cluster in where:
            site = [t[3] for t in TARGETS if t[2] == name][0]
            mesh.append(service(name, MESH_NS, site))
    out[MESH_NS] = mesh
    if cluster == CLIENT_CLUSTER:
        out[DIRECT_NS] = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": DIRECT_NS}},
            deployment("fortio-server", DIRECT_NS, {"app": "fortio-server", "site": cluster}, image),
            deployment("fortio-client", DIRECT_NS, {"app": "fortio-client"}, image)]
    return out


def load_argv(url, qps, connections, seconds):
    return ["fortio", "load", "-qps", str(qps), "-c", str(connections), "-t", "%ds" % seconds,
            "-r", "0.0001", "-p", "50,90,99", "-json", "-", "-quiet", url]


def parse_result(text):
    """dict(p50, p90, p99 (ms), count, qps, codes) of ``fortio load -json -`` output."""
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON in fortio's output: %r" % text[:300])
    doc = json.loads(text[start:])
    hist = doc.get("DurationHistogram") or {}
    pct = dict((int(p["Percentile"]), p["Value"] * 1000.0) for p in hist.get("Percentiles") or [])
    return dict(p50=pct.get(50), p90=pct.get(90), p99=pct.get(99), count=hist.get("Count", 0),
                avg=(hist.get("Avg") or 0) * 1000.0, qps=doc.get("ActualQPS", 0.0),
                codes=dict((str(k), v) for k, v in (doc.get("RetCodes") or {}).items()))


class LoadRun:
    """Deploy, measure, report (figures in ``self.results``, problems in ``failures``)."""

    def __init__(self, state_dir, tools_bin, fortio, failures, log, qps=50, connections=2, seconds=10):
        self.state_dir = state_dir
        self.tools_bin = tools_bin
        self.fortio = fortio
        self.failures = failures
        self.log = log
        self.qps, self.connections, self.seconds = qps, connections, seconds
        self.results = {}
        self.gateway = {}
        self.endpoints = []
        self.kubes = {}

    # --- plumbing ---------------------------------------------------------------------------
    def kubeconfig(self, cluster):
        return os.path.join(self.state_dir, "clusters", cluster, "kubeconfig")

    def kube(self, cluster):
        from ansible_collections.meshfleet.mesh.plugins.module_utils.kube_rest import KubeRest
        if cluster not in self.kubes:
            self.kubes[cluster] = KubeRest(self.kubeconfig(cluster), label=cluster)
        return self.kubes[cluster]

    def kubectl(self, cluster, *args, **kw):
        p = subprocess.run([os.path.join(self.tools_bin, "kubectl"), "--kubeconfig", self.kubeconfig(cluster)]
                           + list(args), input=kw.get("input"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=kw.get("timeout", 300), check=False)
        if p.returncode != 0:
            raise RuntimeError("%s: kubectl %s: %s" % (cluster, " ".join(args[:3]), (p.stderr or p.stdout)[-800:]))
        return p.stdout

    def pod(self, cluster, namespace, selector):
        doc = self.kube(cluster).get("list %s" % selector, "/api/v1/namespaces/%s/pods" % namespace,
                                     query={"labelSelector": selector})
        pods = [p for p in doc.get("items") or []
                if (p.get("status") or {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
        if not pods:
            raise RuntimeError("%s: no running pod %s in %s" % (cluster, selector, namespace))
        return sorted(pods, key=lambda p: p["metadata"]["name"])[0]

    def exec(self, cluster, namespace, pod, argv, container, timeout=60):
        return self.kube(cluster).exec("run %s in %s" % (argv[0:2], pod), namespace, pod, argv,
                                       container=container, timeout=timeout)

    # --- steps ------------------------------------------------------------------------------
    def deploy(self, clusters):
        from ansible_collections.meshfleet.mesh.plugins.module_utils.images import builder, containerd
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "bench-versions.env")) as f:
            version = [ln.split("=", 1)[1].strip().lstrip("v") for ln in f if ln.startswith("FORTIO_VERSION=")][0]
        built = builder.build(image_spec(self.fortio, version))
        state = "cached" if built["cached"] else "built"
        self.log("fortio image %s (%.1f MB, %s)" % (built["ref"], built["size"] / 1e6, state))
        for cluster in clusters:
            with open(os.path.join(self.state_dir, "clusters", cluster, "real-node.json")) as f:
                slot = json.load(f)["slot"]
            containerd.import_images("/run/meshfleet/node/%d/containerd.sock" % slot, [built["archive"]])
            for namespace, objects in sorted(manifests(cluster, built["ref"]).items(), reverse=True):
                if objects:
                    self.kubectl(cluster, "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                                "items": objects}))
        for cluster in clusters:
            for namespace, objects in sorted(manifests(cluster, built["ref"]).items()):
                for obj in objects:
                    if obj["kind"] == "Deployment":
                        self.kubectl(cluster, "-n", namespace, "rollout", "status", "deployment/" + obj["metadata"]["name"],
                                     "--timeout=180s", timeout=200)

    def gateway_counters(self):
        """cluster3's east-west gateway: its counters for fortio-remote's SNI cluster."""
        from ansible_collections.meshfleet.mesh.plugins.module_utils import mesh_traffic as mt
        pod = self.pod("cluster3", "istio-system", "istio=eastwestgateway")["metadata"]["name"]
        host = "fortio-remote.%s.svc.cluster.local" % MESH_NS
        out = {}
        for what in ("stats", "clusters"):
            res = self.exec("cluster3", "istio-system", pod, ["pilot-agent", "request", "GET", what], "istio-proxy")
            if res["rc"] != 0:
                raise RuntimeError("cluster3: pilot-agent request GET %s: %s" % (what, res["stderr"][-300:]))
            if what == "stats":
                out.update(mt.gateway_counters(mt.parse_stats(res["stdout"]), host, FORTIO_PORT))
            else:
                for k, v in mt.parse_clusters(res["stdout"], "outbound_.%d_._.%s" % (FORTIO_PORT, host)).items():
                    out["sni_hosts." + k] = v
        return pod, out

    def client_endpoints(self, client):
        """The client sidecar's endpoints of fortio-remote (host:port)."""
        res = self.exec(CLIENT_CLUSTER, MESH_NS, client, ["pilot-agent", "request", "GET", "clusters"], "istio-proxy")
        name = "outbound|%d||fortio-remote.%s.svc.cluster.local" % (FORTIO_PORT, MESH_NS)
        hosts = set()
        for line in res["stdout"].splitlines():
            parts = line.split("::")
            if len(parts) >= 4 and parts[0] == name and re.match(r"^[0-9.]+:[0-9]+$", parts[1]):
                hosts.add(parts[1])
        return sorted(hosts)

    def served(self, cluster, since):
        """(requests with the caller's SPIFFE id, without) in the access log of ``cluster``'s
        fortio server sidecar since ``since`` (time.time()): fortio's requests only."""
        from urllib.parse import urlencode
        pod = self.pod(cluster, MESH_NS, "app=fortio-server,site=%s" % cluster)["metadata"]["name"]
        path = "/api/v1/namespaces/%s/pods/%s/log?%s" % (MESH_NS, pod, urlencode(
            {"container": "istio-proxy", "sinceSeconds": max(1, int(time.time() - since) + 1)}))
        text = self.kube(cluster).request("read the access log of %s" % pod, "GET", path, raw_text=True)
        mtls = plain = 0
        for line in text.splitlines():
            if 'ua="fortio.org/fortio' not in line or '" 200 ' not in line:
                continue
            if "peer=spiffe://" in line:
                mtls += 1
            else:
                plain += 1
        return mtls, plain

    def url(self, key):
        target = [t for t in TARGETS if t[0] == key][0]
        if target[2] is None:
            server = self.pod(target[3], DIRECT_NS, "app=fortio-server,site=%s" % target[3])
            return "http://%s:%d/" % (server["status"]["podIP"], FORTIO_PORT)
        return "http://%s.%s:%d/" % (target[2], MESH_NS, FORTIO_PORT)

    def warm_up(self, namespace, client, url, deadline=90):
        """Until the target answers 200 (istiod may still be pushing its endpoints)."""
        end = time.monotonic() + deadline
        while True:
            res = self.exec(CLIENT_CLUSTER, namespace, client, ["fortio", "curl", "-quiet", url], "fortio")
            if res["rc"] == 0:
                return
            if time.monotonic() > end:
                raise RuntimeError("%s from %s never answered within %ds: %s"
                                   % (url, client, deadline, (res["stderr"] or res["stdout"])[-300:]))
            time.sleep(2)

    def run(self, clusters):
        self.log("load run: deploying fortio (image, servers, clients, Services)")
        self.deploy(clusters)
        clients = dict((ns, self.pod(CLIENT_CLUSTER, ns, "app=fortio-client")["metadata"]["name"])
                       for ns in (MESH_NS, DIRECT_NS))
        urls = dict((t[0], self.url(t[0])) for t in TARGETS)
        for key, _label, _svc, _site, ns in TARGETS:
            self.warm_up(ns, clients[ns], urls[key])
        gw_pod, before = self.gateway_counters()
        started = {}
        for key, label, _svc, _site, ns in TARGETS:
            started[key] = time.time()
            self.log("load run: %s (%s), %d qps x %d connections for %ds"
                     % (key, urls[key], self.qps, self.connections, self.seconds))
            res = self.exec(CLIENT_CLUSTER, ns, clients[ns], load_argv(urls[key], self.qps, self.connections,
                                                                       self.seconds), "fortio",
                            timeout=self.seconds + 60)
            if res["rc"] != 0:
                self.failures.append("fortio load %s exited %d: %s" % (urls[key], res["rc"], res["stderr"][-500:]))
                continue
            result = parse_result(res["stdout"])
            result["url"] = urls[key]
            self.results[key] = result
            bad = dict((c, n) for c, n in result["codes"].items() if c != "200")
            if bad or not result["count"]:
                self.failures.append("fortio load %s: %d requests, answers other than 200: %s"
                                     % (urls[key], result["count"], bad))
        time.sleep(2)  # Envoy flushes its access log every second
        if "cross-network" in self.results:
            mtls, plain = self.served("cluster3", started["cross-network"])
            self.gateway["served"] = dict(mtls=mtls, plaintext=plain)
            calls = self.results["cross-network"]["count"]
            if mtls < calls or plain:
                self.failures.append("cluster3's fortio server sidecar logged %d requests with the caller's SPIFFE id "
                                     "and %d without during the cross-network run of %d calls" % (mtls, plain, calls))
        _pod, after = self.gateway_counters()
        self.gateway.update(pod=gw_pod, delta=dict((k, v - before.get(k, 0)) for k, v in sorted(after.items())
                                                   if v != before.get(k, 0)))
        self.endpoints = self.client_endpoints(clients[MESH_NS])
        gw = self.pod("cluster3", "istio-system", "istio=eastwestgateway")
        lb = ((self.kube("cluster3").get("read the gateway Service", "/api/v1/namespaces/istio-system/services/"
                                         "istio-eastwestgateway").get("status") or {}).get("loadBalancer") or {})
        addresses = [i.get("ip") for i in lb.get("ingress") or []]
        self.gateway["address"] = addresses
        self.gateway["pod_ip"] = gw["status"].get("podIP")
        if not any(e.split(":")[0] in addresses and e.endswith(":15443") for e in self.endpoints):
            self.failures.append("the client sidecar's endpoints of fortio-remote are %s, not cluster3's east-west "
                                 "gateway (%s:15443)" % (self.endpoints, ",".join(addresses)))
        # the client sidecar keeps its mTLS connection to the gateway: one connection (at least)
        # through the gateway's cross-network listener carries the whole run
        moved = self.gateway["delta"].get("sni_hosts.rq_total", 0) or self.gateway["delta"].get("sni_hosts.cx_total", 0)
        if "cross-network" in self.results and not moved:
            self.failures.append("cluster3's east-west gateway counted nothing for fortio-remote during the load "
                                 "run: %s" % self.gateway["delta"])
        for kube in self.kubes.values():
            kube.close()

    # --- report -----------------------------------------------------------------------------
    def report(self, target=2.0):
        r = self.results
        if not r:
            return ["fortio load run: no result"]
        lines = ["fortio load (%d qps x %d connections, %ds each, from cluster1; ms):" % (
            self.qps, self.connections, self.seconds)]
        fmt = "  %-56s %7s %7s %7s %7s %6s"
        lines.append(fmt % ("target", "p50", "p90", "p99", "avg", "calls"))
        for key, label, _svc, _site, _ns in TARGETS:
            if key in r:
                x = r[key]
                lines.append(fmt % (label, "%.2f" % x["p50"], "%.2f" % x["p90"], "%.2f" % x["p99"], "%.2f" % x["avg"],
                                    x["count"]))
        g = self.gateway
        if g:
            lines.append("  cross-network proof: cluster1's client sidecar has fortio-remote at %s (cluster3's east-west "
                         "gateway: %s:15443);" % (", ".join(self.endpoints) or "nothing", ",".join(g.get("address") or [])
                                                  or "?"))
            lines.append("    the gateway counted during the runs: %s;" % (
                ", ".join("%s +%d" % kv for kv in sorted(g.get("delta", {}).items())) or "nothing"))
            if "served" in g:
                lines.append("    cluster3's server sidecar logged %d fortio requests with the caller's SPIFFE id "
                             "(mTLS), %d without" % (g["served"]["mtls"], g["served"]["plaintext"]))
        base = r.get("baseline", {}).get("p50")
        lines.append("  ratios (p50):")
        for key, _label, _svc, _site, _ns in TARGETS[1:]:
            if key in r and base:
                lines.append("    %-14s / baseline     = %5.2f" % (key, r[key]["p50"] / base))
        for ref in ("same-cluster", "same-network"):
            if "cross-network" in r and ref in r:
                ratio = r["cross-network"]["p50"] / r[ref]["p50"]
                lines.append("    cross-network / %-12s = %5.2f  (target <= %.1f: %s)"
                             % (ref, ratio, target, "ok" if ratio <= target else "MISSED"))
        return lines
