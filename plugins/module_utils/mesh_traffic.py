# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prove the data path of a mesh the way Istio's multicluster check does: from the curl
("sleep") client of every cluster, N requests to ``helloworld.sample:5000/hello``, and who
answered.

Everything goes through the clusters' API servers (:class:`~.kube_rest.KubeRest`):

- the curl pods run the requests (:meth:`~.kube_rest.KubeRest.exec`, one exec per source: a
  shell loop of ``curl``, each with the user agent ``meshfleet-traffic/<source cluster>``);
- each answer (``Hello version: v2, instance: helloworld-v2-...``) names the serving pod,
  found among the clusters' helloworld pods: its cluster and network, so the answers that
  crossed networks are counted;
- the east-west gateways' Envoy counters (``pilot-agent request GET stats`` and ``clusters`` in
  the gateway pod, the admin port inside it), before and after: connections through the
  cross-network listener (15443) and to the hosts of the helloworld SNI cluster
  (``outbound_.5000_._.helloworld.sample.svc.cluster.local``, where AUTO_PASSTHROUGH sends it);
- the serving sidecars' access logs (the real-node clusters' ``accessLogFormat`` with
  ``peer=%DOWNSTREAM_PEER_URI_SAN%``): the caller's SPIFFE id as the serving sidecar verified
  it over mTLS, per calling cluster.

Fails (naming the source and the version) when a version never answers a source, when a
source gets no answer at all, and when a serving sidecar saw a caller without a SPIFFE id
(plaintext). Changes nothing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import time

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import (
    MeshfleetError, MeshfleetModule, WaitTimeout, wait_for)
from ansible_collections.meshfleet.mesh.plugins.module_utils.kube_rest import KubeRest

try:
    from urllib.parse import quote, urlencode
except ImportError:  # pragma: no cover
    from urllib import quote, urlencode  # type: ignore

ANSWER = re.compile(r"Hello version: (?P<version>[^,\s]+), instance: (?P<instance>\S+)")
#: the serving sidecar's access log line (control_plane_access_log_format)
ACCESS = re.compile(r'"(?P<method>\S+) (?P<path>\S+) [^"]*" (?P<code>\d+) peer=(?P<peer>\S*) ua="(?P<ua>[^"]*)"')
AGENT = "meshfleet-traffic/"
#: Envoy stats of an east-west gateway that show cross-network traffic
GATEWAY_LISTENER = "listener.0.0.0.0_15443."
GATEWAY_COUNTERS = ("downstream_cx_total", "upstream_cx_total", "upstream_cx_tx_bytes_total",
                    "upstream_cx_rx_bytes_total")


def parse_answers(text):
    """[(version, instance) or (None, raw line)] of the curl loop's output, one line a request."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        m = ANSWER.search(line)
        out.append((m.group("version"), m.group("instance")) if m else (None, line[:200]))
    return out


def parse_stats(text):
    """{name: int} of Envoy's ``/stats`` text (``name: value`` lines; histograms skipped)."""
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition(": ")
        if sep and value.strip().isdigit():
            out[name.strip()] = int(value)
    return out


def gateway_counters(stats, host, port):
    """The counters of the cross-network listener and of ``host:port``'s SNI cluster."""
    sni = "cluster.outbound_.%d_._.%s." % (port, host)
    out = {}
    for name, value in stats.items():
        if name.startswith(GATEWAY_LISTENER) and name[len(GATEWAY_LISTENER):] in GATEWAY_COUNTERS:
            out["listener_15443." + name[len(GATEWAY_LISTENER):]] = value
        elif name.startswith(sni) and name[len(sni):] in GATEWAY_COUNTERS:
            out["sni_cluster." + name[len(sni):]] = value
    return out


def parse_clusters(text, name):
    """{counter: total over the hosts} of cluster ``name`` in Envoy's ``/clusters`` text
    (``<cluster>::<host>::<counter>::<value>`` lines; kept whatever the proxy's stats matcher)."""
    out = {}
    for line in text.splitlines():
        parts = line.strip().split("::")
        if len(parts) == 4 and parts[0] == name and parts[3].isdigit():
            out[parts[2]] = out.get(parts[2], 0) + int(parts[3])
    return out


def parse_access(text, path):
    """[(source cluster or None, peer SPIFFE id or '', code)] of the access log lines for ``path``."""
    out = []
    for line in text.splitlines():
        m = ACCESS.search(line)
        if not m or not m.group("path").startswith(path):
            continue
        ua = m.group("ua")
        source = ua[len(AGENT):] if ua.startswith(AGENT) else None
        peer = m.group("peer")
        out.append((source, "" if peer == "-" else peer, int(m.group("code"))))
    return out


def curl_loop(url, count, agent, timeout):
    """The shell loop the curl pod runs: one answer line a request ("ERR <code>" on failure)."""
    return ["sh", "-c",
            'i=0; while [ "$i" -lt %d ]; do i=$((i+1)); '
            'out=$(curl -sS -m %d -A "%s" "%s" 2>&1) || out="ERR $? $out"; echo "$out" | head -n 1; done'
            % (count, timeout, agent, url)]


class MeshTrafficModule(MeshfleetModule):
    argument_spec = dict(
        clusters=dict(type="list", elements="dict", required=True, options=dict(
            name=dict(type="str", required=True),
            kubeconfig=dict(type="path", required=True),
            network=dict(type="str", required=True),
            client=dict(type="bool", default=True),
        )),
        namespace=dict(type="str", default="sample"),
        service=dict(type="str", default="helloworld"),
        port=dict(type="int", default=5000),
        path=dict(type="str", default="/hello"),
        requests=dict(type="int", default=20),
        versions=dict(type="list", elements="str", default=["v1", "v2"]),
        client_selector=dict(type="str", default="app=curl"),
        client_namespace=dict(type="str"),
        client_container=dict(type="str", default="curl"),
        server_selector=dict(type="str", default="app=helloworld"),
        gateway_namespace=dict(type="str", default="istio-system"),
        gateway_selector=dict(type="str", default="istio=eastwestgateway"),
        proxy_container=dict(type="str", default="istio-proxy"),
        request_timeout=dict(type="int", default=5),
        mtls=dict(type="bool", default=True),
        vm_servers=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True),
            cluster=dict(type="str", required=True),
            network=dict(type="str", required=True),
            version=dict(type="str", required=True),
        )),
    )
    with_wait = True

    def observe(self):
        p = self.params
        if p["requests"] < 1:
            raise MeshfleetError("requests must be at least 1 (got %d)" % p["requests"])
        if not p["clusters"]:
            raise MeshfleetError("clusters: give at least one cluster")
        self.kubes = dict((c["name"], KubeRest(c["kubeconfig"], label=c["name"])) for c in p["clusters"])
        self.network = dict((c["name"], c["network"]) for c in p["clusters"])
        self.client_namespace = p.get("client_namespace") or p["namespace"]
        self.started = time.time()
        clients = dict((c["name"], self.ready_pod(c["name"], self.client_namespace, p["client_selector"], "curl client"))
                       for c in p["clusters"] if c["client"])
        if not clients:
            raise MeshfleetError("clusters: no cluster is marked client, so nothing would send a request")
        servers = self.servers()
        for vm in p.get("vm_servers") or []:
            # a VM answers with its name as the instance; its cluster is its VM group's (whose
            # east-west gateway routes to it from other networks); its sidecar's log is on the VM
            servers[vm["name"]] = dict(cluster=vm["cluster"], network=vm["network"], version=vm["version"],
                                       ready=True, vm=True)
        gateways = dict((n, self.first_pod(n, p["gateway_namespace"], p["gateway_selector"])) for n in self.kubes)
        before = dict((n, self.gateway_stats(n, pod)) for n, pod in gateways.items() if pod)
        return dict(clients=clients, servers=servers, gateways=gateways, before=before)

    def apply(self, plan, observed):
        pass  # nothing to change: the requests are read-only and run in observe/result

    # --- pods ---------------------------------------------------------------------------
    def pods(self, cluster, namespace, selector):
        kube = self.kubes[cluster]
        doc = kube.get("list pods %s in %s" % (selector, namespace),
                       "/api/v1/namespaces/%s/pods?%s" % (quote(namespace, safe=""),
                                                          urlencode({"labelSelector": selector})))
        return doc.get("items") or []

    @staticmethod
    def is_ready(pod):
        status = pod.get("status") or {}
        if status.get("phase") != "Running" or (pod.get("metadata") or {}).get("deletionTimestamp"):
            return False
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])

    def ready_pod(self, cluster, namespace, selector, what):
        def found():
            ready = [x for x in self.pods(cluster, namespace, selector) if self.is_ready(x)]
            return sorted(ready, key=lambda x: x["metadata"]["name"])[0] if ready else None
        try:
            pod = wait_for(found, self.params["wait_timeout"], "a ready %s in %s" % (what, cluster), sleep=2)
        except WaitTimeout:
            raise MeshfleetError("%s: no ready %s pod (%s in namespace %s) within %ss; deploy the sample apps "
                                 "(role meshfleet.mesh.samples)" % (cluster, what, self.params["client_selector"],
                                                                    namespace, self.params["wait_timeout"]))
        return pod["metadata"]["name"]

    def first_pod(self, cluster, namespace, selector):
        ready = sorted((x["metadata"]["name"] for x in self.pods(cluster, namespace, selector) if self.is_ready(x)))
        return ready[0] if ready else None

    def servers(self):
        """{pod name: dict(cluster, network, version)} of every cluster's serving pods."""
        p = self.params
        out = {}
        for name in self.kubes:
            for pod in self.pods(name, p["namespace"], p["server_selector"]):
                meta = pod.get("metadata") or {}
                out[meta.get("name")] = dict(cluster=name, network=self.network[name],
                                             version=(meta.get("labels") or {}).get("version"),
                                             ready=self.is_ready(pod))
        return out

    def admin(self, cluster, pod, what):
        """The gateway's Envoy admin ``what`` (``stats``, ``clusters``) through pilot-agent in its pod."""
        p = self.params
        res = self.kubes[cluster].exec("read the Envoy %s of the east-west gateway %s" % (what, pod),
                                       p["gateway_namespace"], pod, ["pilot-agent", "request", "GET", what],
                                       container=p["proxy_container"], timeout=30)
        if res["rc"] != 0:
            raise MeshfleetError("%s: pilot-agent request GET %s in the east-west gateway %s exited %d: %s"
                                 % (cluster, what, pod, res["rc"], (res["stderr"] or res["stdout"]).strip()[-300:]))
        return res["stdout"]

    def gateway_stats(self, cluster, pod):
        """The gateway's counters for this traffic: its cross-network listener (``stats``, when the
        proxy's stats matcher keeps them) and the hosts of the service's SNI cluster (``clusters``:
        connections and requests per host, always there)."""
        p = self.params
        host = "%s.%s.svc.cluster.local" % (p["service"], p["namespace"])
        out = gateway_counters(parse_stats(self.admin(cluster, pod, "stats")), host, p["port"])
        sni = "outbound_.%d_._.%s" % (p["port"], host)
        for counter, value in parse_clusters(self.admin(cluster, pod, "clusters"), sni).items():
            if counter in ("cx_total", "rq_total", "rq_success", "rq_error", "cx_connect_fail"):
                out["sni_hosts." + counter] = value
        return out

    # --- the proof ----------------------------------------------------------------------
    def result(self, observed, plan):
        p = self.params
        url = "http://%s.%s:%d%s" % (p["service"], p["namespace"], p["port"], p["path"])
        table, crossed, errors, unknown, crossed_into, served = {}, {}, {}, {}, set(), {}
        for src, pod in sorted(observed["clients"].items()):
            res = self.kubes[src].exec("send %d requests to %s from %s" % (p["requests"], url, pod), self.client_namespace,
                                       pod, curl_loop(url, p["requests"], AGENT + src, p["request_timeout"]),
                                       container=p["client_container"],
                                       timeout=p["requests"] * (p["request_timeout"] + 2) + 30)
            counts, crossed[src], errors[src] = {}, 0, []
            for version, instance in parse_answers(res["stdout"]):
                if version is None:
                    errors[src].append(instance)
                    continue
                counts[version] = counts.get(version, 0) + 1
                served[instance] = served.get(instance, 0) + 1
                server = observed["servers"].get(instance)
                if server is None:
                    unknown.setdefault(src, set()).add(instance)
                elif server["network"] != self.network[src]:
                    crossed[src] += 1
                    crossed_into.add(server["cluster"])
            table[src] = counts

        servers = observed["servers"]
        gateways = {}
        for name, pod in sorted(observed["gateways"].items()):
            if not pod:
                continue
            after = self.gateway_stats(name, pod)
            before = observed["before"].get(name, {})
            gateways[name] = dict(pod=pod, network=self.network[name], counters=after,
                                  delta=dict((k, v - before.get(k, 0)) for k, v in sorted(after.items())))
        mtls = self.sidecar_view(servers, served) if p["mtls"] else {}

        failures = []
        for src, counts in sorted(table.items()):
            total = sum(counts.values())
            if total == 0:
                failures.append("%s: none of %d requests to %s was answered (%s)"
                                % (src, p["requests"], url, "; ".join(sorted(set(errors[src])))[:300] or "no output"))
                continue
            for version in p["versions"]:
                if not counts.get(version):
                    where = sorted(set(s["cluster"] for s in servers.values() if s["version"] == version))
                    failures.append("%s: %s %s (in %s) never answered %d requests to %s; got %s"
                                    % (src, p["service"], version, ", ".join(where) or "no cluster", p["requests"], url,
                                       ", ".join("%s x%d" % kv for kv in sorted(counts.items()))))
        # the answers that crossed into a cluster came through its east-west gateway: its SNI
        # cluster must have connected to the serving pods (cumulative: sidecars keep connections)
        for name in sorted(n for n in crossed_into if n in gateways):
            if not gateways[name]["counters"].get("sni_hosts.cx_total"):
                failures.append("answers crossed into %s (%s), but its east-west gateway %s counts no connection to "
                                "%s:%d (its Envoy /clusters)" % (name, self.network[name], gateways[name]["pod"],
                                                                 p["service"], p["port"]))
        for pod, view in sorted(mtls.items()):
            if view["plaintext"]:
                failures.append("%s's sidecar (%s) served %d requests from callers without a SPIFFE id (not mTLS)"
                                % (pod, view["cluster"], view["plaintext"]))
        total = sum(sum(c.values()) for c in table.values())
        share = round(float(sum(crossed.values())) / total, 3) if total else 0.0
        lines = ["%s (%s) -> %s%s" % (src, self.network[src],
                                      ", ".join("%s x%d" % kv for kv in sorted(counts.items())) or "no answer",
                                      ", %d crossed networks" % crossed[src] if crossed[src] else "")
                 for src, counts in sorted(table.items())]
        for name, g in gateways.items():
            lines.append("east-west gateway of %s: %s" % (
                name, ", ".join("%s +%d (%d)" % (k, g["delta"][k], v) for k, v in sorted(g["counters"].items()))
                or "no helloworld traffic counters"))
        for pod, view in sorted(mtls.items()):
            lines.append("%s (%s) saw %s" % (pod, view["cluster"], ", ".join(
                "%s from %s x%d" % (peer or "no SPIFFE id", src, n)
                for (src, peer), n in sorted(view["by_source"].items())) or "no request"))
        views = {}
        for pod, view in mtls.items():
            views[pod] = dict(view, by_source=["%s|%s|%d" % (src, peer, n)
                                               for (src, peer), n in sorted(view["by_source"].items())])
        report = dict(url=url, requests=p["requests"], table=table, crossed=crossed, cross_network_share=share,
                      errors=dict((k, v[:10]) for k, v in errors.items() if v),
                      unknown_instances=dict((k, sorted(v)) for k, v in unknown.items()),
                      gateways=gateways, mtls=views, lines=lines)
        for kube in self.kubes.values():
            kube.close()
        if failures:
            raise MeshfleetError("mesh traffic check failed:\n- " + "\n- ".join(failures), report=report)
        return dict(report=report, summary="%d requests from %d clusters answered by %s; %.0f%% crossed networks"
                    % (total, len(table), ", ".join(sorted(set(v for c in table.values() for v in c))), share * 100))

    def sidecar_view(self, servers, served):
        """{serving pod: dict(cluster, peers, by_source, plaintext)} from the sidecars' access logs
        since the check started; ``served`` (pod -> answers) says how many lines to expect (Envoy
        flushes its access log every second: read again for a few seconds until they are there)."""
        p = self.params
        out = {}
        for pod, info in sorted(servers.items()):
            if not info["ready"] or info.get("vm"):
                continue
            kube = self.kubes[info["cluster"]]
            deadline = time.monotonic() + 10
            while True:
                since = max(1, int(time.time() - self.started) + 5)
                path = "/api/v1/namespaces/%s/pods/%s/log?%s" % (
                    quote(p["namespace"], safe=""), quote(pod, safe=""),
                    urlencode({"container": p["proxy_container"], "sinceSeconds": since}))
                # the log is text, but the API server accepts only its own media types (406 for text/plain)
                text = kube.request("read the access log of %s's sidecar" % pod, "GET", path, raw_text=True)
                by_source, plaintext = {}, 0
                for src, peer, _code in parse_access(text, p["path"]):
                    if src is None:
                        continue  # not one of this check's requests
                    by_source[(src, peer)] = by_source.get((src, peer), 0) + 1
                    if not peer:
                        plaintext += 1
                if sum(by_source.values()) >= served.get(pod, 0) or time.monotonic() > deadline:
                    break
                time.sleep(1)
            out[pod] = dict(cluster=info["cluster"], version=info["version"], by_source=by_source,
                            peers=sorted(set(peer for (_s, peer) in by_source if peer)), plaintext=plaintext)
        return out
