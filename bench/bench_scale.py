#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: how the fake-node full mesh scales with the number of clusters.

Not a test; prints a table. Run from the repo root:

    .venv/bin/python bench/bench_scale.py [--clusters 3,10,20] [--networks 2]

For each cluster count N: a topology of N kwok primaries spread over the networks (a
multi-primary full mesh: N x (N-1) remote secrets), its clusters created outside the timed
region (the meshfleet.mesh.clusters role), then, timed: ``site.yml`` cold converge,
``site.yml`` again (no-op: its time and changed count), ``verify.yml``. Then the resident
memory of every process the mesh runs (etcd, kube-apiserver, controller-manager,
scheduler, kwok, istiod) is summed and divided by N, and the mesh is torn down
(``teardown.yml``) before the next N.

Printed per N: cold converge, no-op re-run (and its share of the cold converge), verify,
RSS per cluster; then the time per added cluster (the slope between consecutive counts)
for the cold converge, the no-op and verify. A slope that grows with N is worse than
linear: the notes name the step whose share grew most (from profile_tasks of the cold
run, untimed repeat, with --profile).

Everything lives in a temporary folder and is torn down at the end (also on Ctrl-C).
"""

from __future__ import absolute_import, division, print_function

import argparse
import os
import sys
import tempfile
import time


REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import helpers  # noqa: E402  (tests/integration/helpers.py)
from _common import Teardowns, create_clusters, log, mesh_folder, print_problems, run_and_report, tools_bin_or_exit  # noqa: E402
from bench_mesh import changed_total, children_cpu, parse_profile  # noqa: E402


def topology(count, networks):
    """N kwok primaries, cluster i on network (i mod networks) + 1, each with a loopback
    east-west address of its own (127.0.20.i)."""
    clusters = {}
    for i in range(1, count + 1):
        clusters["c%02d" % i] = dict(provider="kwok", network="network%d" % ((i - 1) % networks + 1),
                                     role="primary", eastwest_address="127.0.20.%d" % i)
    return {"plugin": "meshfleet.mesh.topology",
            "mesh": {"id": "scale", "trust_domain": "cluster.local", "istio": {"version": "1.30"}},
            "clusters": clusters}


def mesh_rss_kib(state_dir):
    """{process kind: KiB} summed over the live processes whose command line names the
    state folder (the clusters' components and the local istiods)."""
    kinds = {}
    for pid, line in helpers.processes_under(state_dir).items():
        exe = os.path.basename(line.split()[0]) if line else "?"
        kinds[exe] = kinds.get(exe, 0) + helpers.rss_kib(pid)
    return kinds


class Scale:
    def __init__(self, work, tools_bin, networks, profile):
        self.work = work
        self.tools_bin = tools_bin
        self.networks = networks
        self.profile = profile
        self.failures = []
        self.results = {}
        self.teardowns = Teardowns(self.failures)

    def play(self, playbook, inventory, args=(), env=None):
        cpu0 = children_cpu()
        run = helpers.run_playbook(playbook, inventory, tools_bin=self.tools_bin, args=args,
                                   timeout=7200, env=env)
        run.cpu = children_cpu() - cpu0
        return run

    def run(self, count):
        key = "n%d" % count
        folder, inventory, state_dir = mesh_folder(self.work, key, topology(count, self.networks),
                                                   self.tools_bin, self.teardowns, helpers)
        log("%s: creating %d kwok clusters (not timed)" % (key, count))
        create_clusters(folder, inventory, self.tools_bin, helpers)
        before = mesh_rss_kib(state_dir)
        runs = {}
        for label, playbook, args in (("cold", "site.yml", ()), ("noop", "site.yml", ()),
                                      ("verify", "verify.yml", ())):
            log("%s: %s %s(timed)" % (key, playbook, label + " "))
            run = self.play(playbook, inventory, args)
            if run.rc != 0:
                raise RuntimeError("%s: %s (%s) failed:\n%s" % (key, playbook, label, run.tail(60)))
            runs[label] = run
        if "nothing to change" not in runs["noop"].output:
            why = [line.strip() for line in runs["noop"].output.splitlines() if "converged by the mesh plays (" in line]
            self.failures.append("%s: the no-op re-run did not take the fast path: %s" % (key, " ".join(why)[:2000]))
        rss = mesh_rss_kib(state_dir)
        profile = []
        if self.profile:
            log("%s: site.yml with fast no-op off, profiled (not timed)" % key)
            run = self.play("site.yml", inventory, ("-e", "meshfleet_fast_noop=false"),
                            env={"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
                                 "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "all"})
            profile = parse_profile(run.output)
        self.results[count] = dict(
            cold=runs["cold"].seconds, cold_cpu=runs["cold"].cpu, cold_changed=changed_total(runs["cold"]),
            noop=runs["noop"].seconds, noop_changed=changed_total(runs["noop"]),
            verify=runs["verify"].seconds, rss=rss, rss_clusters_only=before, profile=profile,
            secrets=count * (count - 1))
        log("%s: tearing down (not timed)" % key)
        problems = self.teardowns.run(key)
        if problems:
            self.failures.append("%s teardown: %s" % (key, "; ".join(problems)))

    def report(self):
        r = self.results
        print()
        print("Fake-node full mesh by cluster count (kwok primaries on %d networks; %d CPUs; %s)"
              % (self.networks, os.cpu_count() or 0, time.strftime("%Y-%m-%d %H:%M")))
        print()
        fmt = "%9s %9s %9s %8s %7s %9s %9s %12s %12s"
        print(fmt % ("clusters", "secrets", "cold s", "CPU s", "changed", "no-op s", "no-op %",
                     "verify s", "RSS/cluster"))
        for n in sorted(r):
            x = r[n]
            rss = sum(x["rss"].values()) / 1024.0 / n
            print(fmt % (n, x["secrets"], "%.1f" % x["cold"], "%.1f" % x["cold_cpu"], x["cold_changed"],
                         "%.2f" % x["noop"], "%.0f %%" % (100 * x["noop"] / x["cold"]), "%.1f" % x["verify"],
                         "%.0f MiB" % rss))
        counts = sorted(r)
        if len(counts) > 1:
            print()
            print("time per added cluster (slope between consecutive counts, seconds):")
            for a, b in zip(counts, counts[1:]):
                print("  %2d -> %2d: cold %.2f, no-op %.3f, verify %.2f" % (
                    a, b, (r[b]["cold"] - r[a]["cold"]) / (b - a), (r[b]["noop"] - r[a]["noop"]) / (b - a),
                    (r[b]["verify"] - r[a]["verify"]) / (b - a)))
        for n in counts:
            print()
            print("RSS by process kind at %d clusters (MiB, summed): %s" % (n, ", ".join(
                "%s %.0f" % (k, v / 1024.0) for k, v in sorted(r[n]["rss"].items(), key=lambda kv: -kv[1]))))
            if r[n]["profile"]:
                print("slowest tasks at %d clusters, fast no-op off (profile_tasks, untimed):" % n)
                for task, s in r[n]["profile"][:8]:
                    print("  %6.1f  %s" % (s, task))
        print_problems(self.failures)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--clusters", default="3,10,20", help="comma-separated cluster counts (default 3,10,20)")
    ap.add_argument("--networks", type=int, default=2, help="networks the clusters are spread over")
    ap.add_argument("--profile", action="store_true",
                    help="after the timed runs, profile one full (fast path off) re-run per count")
    args = ap.parse_args()
    try:
        counts = sorted(set(int(x) for x in args.clusters.split(",") if x.strip()))
    except ValueError:
        ap.error("--clusters takes whole numbers, e.g. 3,10,20")
    if not counts or counts[0] < 1 or counts[-1] > 99 or args.networks < 1:
        ap.error("cluster counts from 1 to 99 and at least one network")
    tools_bin = tools_bin_or_exit("bench_scale", helpers)
    work = tempfile.mkdtemp(prefix="meshfleet-bench-scale-")
    scale = Scale(work, tools_bin, args.networks, args.profile)

    def body():
        for n in counts:
            scale.run(n)
    return run_and_report(scale, work, helpers, body)


if __name__ == "__main__":
    sys.exit(main())
