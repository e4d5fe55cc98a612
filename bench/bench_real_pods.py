#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: the real-pod mesh (issue #11), 3 real-node kwok clusters on 2 networks.

Not a test; prints a table and the ratios against issue #11's targets. Run from the repo
root as root, with the tools, node tools, images and the bench tool set (fortio) set up
(``make tools node images bench-tools``; ``make bench`` does that and runs every bench):

    .venv/bin/python bench/bench_real_pods.py [--with-fake] [--no-load] [--qps 50 --connections 2 --seconds 10]

The mesh is inventories/real-pods without its VM groups (cluster1 + cluster2 on network1,
cluster3 on network2, each with a real kubelet node; istiod and the east-west gateways in
pods; VM names are host-wide, so the demo's VMs would clash with a running demo), in a temporary
folder, torn down at the end (also on Ctrl-C / SIGTERM). Timed: ``site.yml`` cold (the
clusters created in it), the no-op re-run (must take the fast path, 0 changed),
``verify.yml`` (sample apps deployed, Istio's multicluster check: the request table), and
``verify.yml`` again. Then the resident memory of each cluster with the sample apps running:
its control plane (kube-apiserver, etcd, controller-manager, scheduler, kwok: the processes
whose command line names kwokctl's folder of the cluster), its node (kubelet, containerd, kube-proxy, the
API relay, shims: command lines naming the node's run folder) and its pods (every process in
the node's cgroup root: istiod, the gateway's Envoy, CoreDNS, helloworld, curl, sidecars), and
the largest processes by name.

Then the load run (bench/_load.py): fortio (``tools/build-tools.sh --bench``) as an image on the
nodes, a fortio server in each cluster's ``sample`` namespace (sidecars injected) and a client in
cluster1; ``fortio load`` (default 50 qps over 2 connections for 10 s per target, JSON output)
from the client, exec'd through the API server, to: the server's pod address from a client
beside it in a namespace without sidecars (the baseline), ``fortio-local`` (cluster1's server),
``fortio-peer`` (cluster2's: same network, sidecar to sidecar across the network's router),
``fortio-remote`` (cluster3's only: every request crosses cluster3's east-west gateway). p50,
p90 and p99 per target and the p50 ratios; the cross-network proof: the client sidecar's
endpoints of ``fortio-remote`` (the gateway's address, port 15443), the gateway's counters
during the runs, and cluster3's serving sidecar's access log (every request with the caller's
SPIFFE id).

With ``--with-fake``, after the real-pod mesh is gone: the fake-node mesh of the same shape
(inventories/local without VMs; kwok's fake pods, istiod as a local process) converged, re-run
and verified, and its memory per cluster, printed beside.

Targets (issue #11): no-op re-run <= 10 % of the cold converge with 0 changed; <= 1.5 GiB RSS
per real-node cluster with the sample apps running (measured before the load run's pods
exist); cross-network p50 <= 2x same-network p50 (``fortio-remote`` vs ``fortio-peer``).
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import helpers  # noqa: E402  (tests/integration/helpers.py)
from _common import Teardowns, log, mesh_folder, print_problems, run_and_report, tools_bin_or_exit  # noqa: E402
from _load import LoadRun  # noqa: E402
from bench_mesh import children_cpu  # noqa: E402

NOOP_TARGET = 0.10
RSS_TARGET_KIB = int(1.5 * 1024 * 1024)
P50_TARGET = 2.0
CHANGED = re.compile(r"^\S+\s*:\s*ok=\d+\s+changed=(\d+)", re.M)


def changed_total(output):
    return sum(int(n) for n in CHANGED.findall(output))


def topology():
    """inventories/real-pods without its VM groups: the 3 real-node clusters. VM names are
    host-wide (a running demo's web-vm1 would refuse the bench's), and a VM is no part of a
    cluster's memory."""
    with open(os.path.join(REPO, "inventories", "real-pods", "mesh.meshfleet.yml")) as f:
        real = yaml.safe_load(f)
    real.pop("vm_groups", None)
    return real


def _cgroup_paths(pid):
    try:
        with open("/proc/%d/cgroup" % pid) as f:
            return [line.rstrip("\n").split(":", 2)[2] for line in f if line.count(":") >= 2]
    except (IOError, OSError):
        return []


def _comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except (IOError, OSError):
        return "?"


def cluster_rss_kib(state_dir, name):
    """(slot or None, {part: KiB}, {(part, process name): KiB}) of one cluster: its control plane
    (command lines naming kwokctl's folder of the cluster), and for a real-node cluster its node
    (command lines naming the node's run folder or the node folder) and its pods (every process
    in the node's cgroup root), for a fake-node one its local istiod (the cluster folder's
    ``istiod/``). ``parts["PSS"]`` is the proportional set size of them all (pages shared with
    other processes, e.g. one binary's text in three Envoys, split among them)."""
    cdir = os.path.join(state_dir, "clusters", name)
    slot, roots = None, []
    if os.path.exists(os.path.join(cdir, "real-node.json")):
        with open(os.path.join(cdir, "real-node.json")) as f:
            slot = json.load(f)["slot"]
        for root, _dirs, files in os.walk(cdir):
            if "cgroups.json" in files:
                with open(os.path.join(root, "cgroups.json")) as f:
                    roots.append(json.load(f)["root"].rstrip("/") + "/")
    run_dir = "/run/meshfleet/node/%s/" % slot
    kwok_dir = os.path.join(state_dir, "kwok", "clusters", name) + "/"  # kwokctl's cluster folder
    parts = {"control plane": 0, "node": 0, "pods": 0} if slot is not None else {"control plane": 0, "istiod": 0}
    detail = {}
    pss = [0]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        line = helpers.cmdline(entry)
        if not line or not helpers.alive(entry):
            continue
        part = None
        if roots and any(p.startswith(r) or p + "/" == r for p in _cgroup_paths(pid) for r in roots):
            part = "pods"
        elif slot is not None and (run_dir in line + "/" or (cdir + "/node") in line):
            part = "node"
        elif slot is None and (cdir + "/istiod/") in line:
            part = "istiod"
        elif kwok_dir in line + "/":
            part = "control plane"
        if part:
            kib = helpers.rss_kib(pid)
            parts[part] += kib
            pss[0] += helpers.pss_kib(pid)
            detail[(part, _comm(pid))] = detail.get((part, _comm(pid)), 0) + kib
    return slot, parts, detail, pss[0]


def bench_tools_fortio():
    """(path of the fortio binary, None) or (None, why): MESHFLEET_BENCH_TOOLS_BIN, else
    ``tools/build-tools.sh --bench --print-bin``."""
    bin_dir = os.environ.get("MESHFLEET_BENCH_TOOLS_BIN")
    if not bin_dir:
        p = subprocess.run(["bash", os.path.join(REPO, "tools", "build-tools.sh"), "--bench", "--print-bin"],
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                           timeout=60, check=False)
        bin_dir = p.stdout.strip().splitlines()[-1] if p.returncode == 0 and p.stdout.strip() else ""
    fortio = os.path.join(bin_dir, "fortio") if bin_dir else ""
    if not fortio or not os.access(fortio, os.X_OK):
        return None, "fortio is not built (%s): make bench-tools (tools/build-tools.sh --bench)" % (fortio or "?")
    return fortio, None


def fake_topology():
    """inventories/local without its VM groups: the fake-node mesh of the same shape."""
    with open(os.path.join(REPO, "inventories", "local", "mesh.meshfleet.yml")) as f:
        local = yaml.safe_load(f)
    local.pop("vm_groups", None)
    return local


class RealPods:
    def __init__(self, work, tools_bin, fortio=None, with_fake=False, load_opts=None):
        self.work = work
        self.tools_bin = tools_bin
        self.fortio = fortio
        self.with_fake = with_fake
        self.load_opts = dict(load_opts or {})
        self.failures = []
        self.runs = {}
        self.rss = {}
        self.table = []
        self.load = None
        self.fake_runs = {}
        self.fake_rss = {}
        self.teardowns = Teardowns(self.failures)

    def play(self, playbook, inventory):
        cpu0 = children_cpu()
        run = helpers.run_playbook(playbook, inventory, tools_bin=self.tools_bin, timeout=3600)
        run.cpu = children_cpu() - cpu0
        if run.rc != 0:
            raise RuntimeError("%s failed:\n%s" % (playbook, run.tail(60)))
        return run

    def run(self):
        _folder, inventory, state_dir = mesh_folder(self.work, "real-pods", topology(), self.tools_bin,
                                                    self.teardowns, helpers)
        for label, playbook in (("cold", "site.yml"), ("noop", "site.yml"), ("verify", "verify.yml"),
                                ("verify again", "verify.yml")):
            log("real-pods: %s (%s, timed)" % (playbook, label))
            self.runs[label] = self.play(playbook, inventory)
        if "nothing to change" not in self.runs["noop"].output:
            why = [line.strip() for line in self.runs["noop"].output.splitlines()
                   if "converged by the mesh plays (" in line]
            self.failures.append("the no-op re-run did not take the fast path: %s" % " ".join(why)[:2000])
        self.table = [line.strip().lstrip("- ").strip("'") for line in self.runs["verify"].output.splitlines()
                      if " -> v" in line or "crossed networks" in line and "requests from" in line]
        # the sample apps' memory, before the load run's pods exist
        for name in sorted(topology()["clusters"]):
            self.rss[name] = cluster_rss_kib(state_dir, name)
        if self.fortio:
            self.load = LoadRun(state_dir, self.tools_bin, self.fortio, self.failures, log, **self.load_opts)
            try:
                self.load.run(sorted(topology()["clusters"]))
            except Exception as e:  # keep the other figures; the teardown follows
                self.failures.append("load run stopped: %s: %s" % (type(e).__name__, str(e)[:2000]))
        problems = self.teardowns.run("real-pods")
        if problems:
            self.failures.append("real-pods teardown: %s" % "; ".join(problems))
        if self.with_fake:
            self.run_fake()

    def run_fake(self):
        """The fake-node mesh (inventories/local without VMs) after the real one is gone:
        the same timed runs but verify (no sample apps there), and its memory per cluster."""
        _folder, inventory, state_dir = mesh_folder(self.work, "fake-nodes", fake_topology(), self.tools_bin,
                                                    self.teardowns, helpers)
        for label, playbook in (("cold", "site.yml"), ("noop", "site.yml"), ("verify", "verify.yml")):
            log("fake nodes: %s (%s, timed)" % (playbook, label))
            self.fake_runs[label] = self.play(playbook, inventory)
        for name in sorted(fake_topology()["clusters"]):
            self.fake_rss[name] = cluster_rss_kib(state_dir, name)

    def report(self):
        r = self.runs
        f = self.fake_runs
        print()
        print("Real-pod mesh: 3 real-node kwok clusters, 2 networks (%d CPUs, %s; load average now %s)"
              % (os.cpu_count() or 0, time.strftime("%Y-%m-%d %H:%M"), " ".join("%.2f" % x for x in os.getloadavg())))
        print()
        fmt = "%-44s %8s %8s %8s %10s"
        print(fmt % ("run", "wall s", "CPU s", "changed", "fake nodes"))
        print(fmt % ("-" * 44, "-" * 8, "-" * 8, "-" * 8, "-" * 10))
        for label, what in (("cold", "site.yml, cold (clusters, nodes, Istio)"), ("noop", "site.yml, no-op re-run"),
                            ("verify", "verify.yml (sample apps, requests)"), ("verify again", "verify.yml again")):
            if label in r:
                print(fmt % (what, "%.1f" % r[label].seconds, "%.1f" % r[label].cpu, changed_total(r[label].output),
                             "%.1f s" % f[label].seconds if label in f else "-"))
        if self.table:
            print()
            print("request table (verify.yml):")
            for line in self.table:
                print("  " + line)
        for title, rss in (("real nodes", self.rss), ("fake nodes (inventories/local, local istiod)", self.fake_rss)):
            if not rss:
                continue
            print()
            print("resident memory, %s:" % title)
            names = list(next(iter(rss.values()))[1])
            fmt = "%-10s %6s " + " ".join(["%14s"] * (len(names) + 2))
            print(fmt % tuple(["cluster", "slot"] + names + ["RSS total", "PSS total"]))
            for name, (slot, parts, _detail, pss) in sorted(rss.items()):
                print(fmt % tuple([name, "-" if slot is None else slot] + ["%d MiB" % (parts[n] // 1024) for n in names]
                                  + ["%d MiB" % (sum(parts.values()) // 1024), "%d MiB" % (pss // 1024)]))
            biggest = {}
            for _slot, _parts, detail, _pss in rss.values():
                for key, kib in detail.items():
                    biggest[key] = max(biggest.get(key, 0), kib)
            print("  largest per process name (max over the clusters): " + ", ".join(
                "%s %s %d" % (part, comm, kib // 1024)
                for (part, comm), kib in sorted(biggest.items(), key=lambda kv: -kv[1]) if kib >= 10 * 1024))
        if self.load is not None:
            print()
            for line in self.load.report(target=P50_TARGET):
                print(line)
        print()
        print("targets:")
        if "cold" in r and "noop" in r:
            ratio = r["noop"].seconds / r["cold"].seconds
            changed = changed_total(r["noop"].output)
            ok = ratio <= NOOP_TARGET and changed == 0
            print("  no-op re-run = %.1f %% of the cold converge, %d changed  (target <= %d %%, 0 changed: %s)"
                  % (ratio * 100, changed, NOOP_TARGET * 100, "ok" if ok else "MISSED"))
        if "cold" in f and "noop" in f:
            print("  fake nodes: no-op re-run = %.1f %% of the cold converge, %d changed"
                  % (100 * f["noop"].seconds / f["cold"].seconds, changed_total(f["noop"].output)))
        if self.rss:
            worst = max(sum(p.values()) for _s, p, _d, _p in self.rss.values())
            print("  largest cluster RSS = %.3f of 1.5 GiB, %d MiB to spare  (target <= 1.000: %s; PSS %.3f)"
                  % (float(worst) / RSS_TARGET_KIB, (RSS_TARGET_KIB - worst) // 1024,
                     "ok" if worst <= RSS_TARGET_KIB else "MISSED",
                     float(max(p for _s, _r, _d, p in self.rss.values())) / RSS_TARGET_KIB))
        if self.fake_rss:
            worst = max(sum(p.values()) for _s, p, _d, _p in self.fake_rss.values())
            print("  fake nodes: largest cluster RSS = %.3f of 1.5 GiB" % (float(worst) / RSS_TARGET_KIB))
        res = self.load.results if self.load is not None else {}
        if "cross-network" in res and "same-network" in res:
            ratio = res["cross-network"]["p50"] / res["same-network"]["p50"]
            print("  cross-network p50 / same-network p50 = %.2f  (target <= %.1f: %s)"
                  % (ratio, P50_TARGET, "ok" if ratio <= P50_TARGET else "MISSED"))
        else:
            print("  cross-network p50 / same-network p50 (fortio): not measured%s"
                  % ("" if self.fortio else " (fortio is not built: make bench-tools)"))
        print_problems(self.failures)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--with-fake", action="store_true",
                    help="then converge the fake-node mesh (inventories/local without VMs) and print its figures beside")
    ap.add_argument("--no-load", action="store_true", help="skip the fortio load run")
    ap.add_argument("--qps", type=int, default=50, help="fortio load: requests per second (default 50)")
    ap.add_argument("--connections", type=int, default=2, help="fortio load: connections (default 2)")
    ap.add_argument("--seconds", type=int, default=10, help="fortio load: seconds per target (default 10)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_real_pods: real nodes need root (network namespaces, containerd)")
    fortio = None
    if not args.no_load:
        fortio, why = bench_tools_fortio()
        if fortio is None:
            raise SystemExit("bench_real_pods: %s (or --no-load)" % why)
    tools_bin = tools_bin_or_exit("bench_real_pods", helpers)
    work = tempfile.mkdtemp(prefix="meshfleet-bench-real-pods-")
    bench = RealPods(work, tools_bin, fortio=fortio, with_fake=args.with_fake,
                     load_opts=dict(qps=args.qps, connections=args.connections, seconds=args.seconds))
    return run_and_report(bench, work, helpers, bench.run)


if __name__ == "__main__":
    sys.exit(main())
