#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: the real-pod mesh (issue #11), 3 real-node kwok clusters on 2 networks.

Not a test; prints a table and the ratios against issue #11's targets. Run from the repo
root as root, with the tools, node tools and images set up (``make node images``):

    .venv/bin/python bench/bench_real_pods.py

The mesh is inventories/real-pods (cluster1 + cluster2 on network1, cluster3 on network2,
each with a real kubelet node; istiod and the east-west gateways in pods), in a temporary
folder, torn down at the end (also on Ctrl-C / SIGTERM). Timed: ``site.yml`` cold (the
clusters created in it), the no-op re-run (must take the fast path, 0 changed),
``verify.yml`` (sample apps deployed, Istio's multicluster check: the request table), and
``verify.yml`` again. Then the resident memory of each cluster with the sample apps running:
its control plane (kube-apiserver, etcd, controller-manager, scheduler, kwok: the processes
whose command line names kwokctl's folder of the cluster), its node (kubelet, containerd, kube-proxy, the
API relay, shims: command lines naming the node's run folder) and its pods (every process in
the node's cgroup root: istiod, the gateway's Envoy, CoreDNS, helloworld, curl, sidecars).

Targets (issue #11): no-op re-run <= 10 % of the cold converge with 0 changed; <= 1.5 GiB RSS
per real-node cluster with the sample apps running. Not measured yet: the fortio load run
(cross-network p50 <= 2x same-network p50, beside a direct pod-to-pod baseline); it is
printed as such. For the fake-node mesh's figures run bench/bench_mesh.py --only meshfleet.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import re
import sys
import tempfile
import time

import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import helpers  # noqa: E402  (tests/integration/helpers.py)
from _common import Teardowns, clean_up, log, mesh_folder, print_problems, tools_bin_or_exit  # noqa: E402
from bench_mesh import children_cpu  # noqa: E402

NOOP_TARGET = 0.10
RSS_TARGET_KIB = int(1.5 * 1024 * 1024)
CHANGED = re.compile(r"^\S+\s*:\s*ok=\d+\s+changed=(\d+)", re.M)


def changed_total(output):
    return sum(int(n) for n in CHANGED.findall(output))


def topology():
    with open(os.path.join(REPO, "inventories", "real-pods", "mesh.meshfleet.yml")) as f:
        return yaml.safe_load(f)


def _cgroup_paths(pid):
    try:
        with open("/proc/%d/cgroup" % pid) as f:
            return [line.rstrip("\n").split(":", 2)[2] for line in f if line.count(":") >= 2]
    except (IOError, OSError):
        return []


def cluster_rss_kib(state_dir, name):
    """{part: KiB} of one real-node cluster: control plane, node, pods (see the docstring)."""
    cdir = os.path.join(state_dir, "clusters", name)
    with open(os.path.join(cdir, "real-node.json")) as f:
        slot = json.load(f)["slot"]
    roots = []
    for root, _dirs, files in os.walk(cdir):
        if "cgroups.json" in files:
            with open(os.path.join(root, "cgroups.json")) as f:
                roots.append(json.load(f)["root"].rstrip("/") + "/")
    run_dir = "/run/meshfleet/node/%d/" % slot
    kwok_dir = os.path.join(state_dir, "kwok", "clusters", name) + "/"  # kwokctl's cluster folder
    parts = {"control plane": 0, "node": 0, "pods": 0}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        line = helpers.cmdline(entry)
        if not line or not helpers.alive(entry):
            continue
        if any(p.startswith(r) or p + "/" == r for p in _cgroup_paths(pid) for r in roots):
            parts["pods"] += helpers.rss_kib(pid)
        elif run_dir in line + "/" or (cdir + "/node") in line:
            parts["node"] += helpers.rss_kib(pid)
        elif kwok_dir in line + "/":
            parts["control plane"] += helpers.rss_kib(pid)
    return slot, parts


class RealPods:
    def __init__(self, work, tools_bin):
        self.work = work
        self.tools_bin = tools_bin
        self.failures = []
        self.runs = {}
        self.rss = {}
        self.table = []
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
        for name in sorted(topology()["clusters"]):
            self.rss[name] = cluster_rss_kib(state_dir, name)

    def report(self):
        r = self.runs
        print()
        print("Real-pod mesh: 3 real-node kwok clusters, 2 networks (%d CPUs, %s; load average now %s)"
              % (os.cpu_count() or 0, time.strftime("%Y-%m-%d %H:%M"), " ".join("%.2f" % x for x in os.getloadavg())))
        print()
        fmt = "%-44s %8s %8s %8s"
        print(fmt % ("run", "wall s", "CPU s", "changed"))
        print(fmt % ("-" * 44, "-" * 8, "-" * 8, "-" * 8))
        for label, what in (("cold", "site.yml, cold (clusters, nodes, Istio)"), ("noop", "site.yml, no-op re-run"),
                            ("verify", "verify.yml (sample apps, requests)"), ("verify again", "verify.yml again")):
            if label in r:
                print(fmt % (what, "%.1f" % r[label].seconds, "%.1f" % r[label].cpu, changed_total(r[label].output)))
        if self.table:
            print()
            print("request table (verify.yml):")
            for line in self.table:
                print("  " + line)
        if self.rss:
            print()
            fmt = "%-10s %6s %14s %10s %10s %10s"
            print(fmt % ("cluster", "slot", "control plane", "node", "pods", "total"))
            for name, (slot, parts) in sorted(self.rss.items()):
                total = sum(parts.values())
                print(fmt % (name, slot, "%d MiB" % (parts["control plane"] // 1024), "%d MiB" % (parts["node"] // 1024),
                             "%d MiB" % (parts["pods"] // 1024), "%d MiB" % (total // 1024)))
        print()
        print("targets:")
        if "cold" in r and "noop" in r:
            ratio = r["noop"].seconds / r["cold"].seconds
            changed = changed_total(r["noop"].output)
            ok = ratio <= NOOP_TARGET and changed == 0
            print("  no-op re-run = %.1f %% of the cold converge, %d changed  (target <= %d %%, 0 changed: %s)"
                  % (ratio * 100, changed, NOOP_TARGET * 100, "ok" if ok else "MISSED"))
        if self.rss:
            worst = max(sum(p.values()) for _s, p in self.rss.values())
            print("  largest cluster RSS = %.3f of 1.5 GiB  (target <= 1.000: %s)"
                  % (float(worst) / RSS_TARGET_KIB, "ok" if worst <= RSS_TARGET_KIB else "MISSED"))
        print("  cross-network p50 / same-network p50 (fortio): not measured yet")
        print_problems(self.failures)


def main():
    if os.geteuid() != 0:
        raise SystemExit("bench_real_pods: real nodes need root (network namespaces, containerd)")
    tools_bin = tools_bin_or_exit("bench_real_pods", helpers)
    work = tempfile.mkdtemp(prefix="meshfleet-bench-real-pods-")
    bench = RealPods(work, tools_bin)
    ok = True
    try:
        bench.run()
    except (Exception, KeyboardInterrupt) as e:
        ok = False
        bench.failures.append("stopped: %s: %s" % (type(e).__name__, str(e)[:3000]))
    finally:
        clean_up(bench, work, helpers)
    bench.report()
    return 0 if ok and not bench.failures else 1


if __name__ == "__main__":
    sys.exit(main())
