#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: converging the 3-cluster multi-primary mesh, Meshfleet vs Istio's documented steps.

Not a test; prints a table. Run from the repo root:

    .venv/bin/python bench/bench_mesh.py [--only docs-rsa,docs-ecdsa,meshfleet] [--profile]

The mesh is inventories/local without its VM groups: cluster1 + cluster2 on network1,
cluster3 on network2, all primaries, kwok clusters. Every path gets 3 freshly created
clusters (made, and torn down afterwards, outside the timed region, with the
meshfleet.mesh.clusters role), so only 3 clusters run at a time:

* ``docs-rsa``: Istio's documented command sequence ("Install Multi-Primary on different
  networks" + "Plug in CA Certificates"), cluster by cluster, with the pinned Istio
  module's own files: ``make -f tools/certs/Makefile.selfsigned.mk root-ca`` and
  ``<cluster>-cacerts`` (openssl, RSA 4096 as the Makefile does); ``kubectl create
  namespace istio-system``; ``kubectl create secret generic cacerts ... --from-file=``;
  ``kubectl label namespace istio-system topology.istio.io/network=<net>``; ``istioctl
  install -y -f <cluster>.yaml`` (meshID, clusterName, network); ``gen-eastwest-gateway.sh
  --network <net> | istioctl install -y -f -``; ``kubectl apply -n istio-system -f
  expose-services.yaml``; then ``istioctl create-remote-secret --name=<a> | kubectl apply
  -f -`` into every other cluster (6 secrets).
* ``docs-ecdsa``: the same with ECDSA P-256 keys (the Makefile's two ``openssl genrsa``
  rules replaced by ``openssl ecparam -genkey``), Meshfleet's default key type.
* ``meshfleet``: ``ansible-playbook playbooks/site.yml`` (validate, trust, clusters (already
  there: a no-op check), Istio rendered by istioctl and compared with the cluster by
  meshfleet.mesh.istio_install, what is out of date server-side applied, the local
  istiod of every primary started and ready, remote secrets); then the same again (no-op
  re-run: its time and its changed count) and ``site.yml -C --diff``.

kwok adjustments, the same for both sides: ``values.global.configValidation=false`` (no
pod network: the API server cannot call the validation webhook; Meshfleet renders the
same for kwok). The east-west gateway's pods are never created on kwok (the sidecar
injector webhook they need is not reachable), so its ``istioctl install`` cannot pass
its readiness wait: it runs with ``--readiness-timeout 1s`` and that one expected
"resources not ready" error is accepted. Other Deployments (istiod, the default
profile's ingress gateway) are fake pods that kwok marks ready, so istioctl's waits for
them are real and short. istiod never really runs on the documented path (fake pod);
Meshfleet starts a real pilot-discovery per primary and waits for it: that is in its time.

Targets: Meshfleet's cold converge <= 0.5x the documented sequence; its no-op re-run
<= 10 % of its cold converge, with 0 changed. The no-op re-run must take site.yml's fast
path (the converge receipt checked in one process); for comparison the same re-run is also
timed with ``-e meshfleet_fast_noop=false`` (every step's module run on every cluster).
Timed runs never carry a profiler; with ``--profile`` the no-op and check-mode runs are
repeated afterwards, untimed, with ansible.posix.profile_tasks, and their slowest tasks
printed.
Everything created lives in a temporary folder and is torn down at the end (also on
Ctrl-C / SIGTERM; an atexit hook kills what is left).
"""

from __future__ import absolute_import, division, print_function

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import helpers  # noqa: E402  (tests/integration/helpers.py)
from _common import (  # noqa: E402
    Teardowns, create_clusters, log, mesh_folder, print_problems, run_and_report, tools_bin_or_exit)

RATIO_TARGET = 0.5
NOOP_TARGET = 0.10
PATHS = ("docs-rsa", "docs-ecdsa", "meshfleet")

ECDSA_MAKEFILE = """\
# Istio's tools/certs/Makefile.selfsigned.mk with ECDSA P-256 keys instead of RSA 4096
include %(mk)s

root-key.pem:
\t@echo "generating $@ (ECDSA P-256)"
\t@openssl ecparam -name prime256v1 -genkey -noout -out $@

%%/ca-key.pem:
\t@echo "generating $@ (ECDSA P-256)"
\t@mkdir -p $(dir $@)
\t@openssl ecparam -name prime256v1 -genkey -noout -out $@
"""

CLUSTER_IOP = """\
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
spec:
  values:
    global:
      meshID: %(mesh)s
      multiCluster:
        clusterName: %(cluster)s
      network: %(network)s
"""


# --- the mesh ----------------------------------------------------------------------------

def topology():
    """inventories/local without its VM groups (3 kwok primaries on 2 networks)."""
    with open(os.path.join(REPO, "inventories", "local", "mesh.meshfleet.yml")) as f:
        local = yaml.safe_load(f)
    local.pop("vm_groups", None)
    return local


def istio_dir(explicit=None):
    """The pinned istio.io/istio module in the Go module cache (its samples and Makefiles)."""
    if explicit:
        return explicit
    pins = {}
    with open(os.path.join(REPO, "tools", "versions.env")) as f:
        for line in f:
            m = re.match(r"^([A-Z_]+)=(.*)$", line.strip())
            if m:
                pins[m.group(1)] = m.group(2).strip('"')
    cache = os.environ.get("GOMODCACHE")
    if not cache:
        try:
            cache = subprocess.run(["go", "env", "GOMODCACHE"], stdout=subprocess.PIPE,
                                   universal_newlines=True, check=False).stdout.strip()
        except OSError:
            cache = ""
    cache = cache or os.path.expanduser("~/go/pkg/mod")
    path = os.path.join(cache, "istio.io", "istio@%s" % pins["ISTIO_MODULE_VERSION"])
    if not os.path.isfile(os.path.join(path, "tools", "certs", "Makefile.selfsigned.mk")):
        raise SystemExit("bench_mesh: the pinned Istio module is not in the Go module cache (%s); "
                         "build the tools (make tools) or pass --istio-dir" % path)
    return path


def parse_profile(text):
    """[(task, seconds)], slowest first, from ansible.posix.profile_tasks' TASKS RECAP
    (a task that ran in several plays is summed)."""
    part = text.rsplit("TASKS RECAP", 1)
    if len(part) < 2:
        return []
    acc = {}
    for line in part[1].splitlines():
        m = re.match(r"^(.*?)\s-+\s+([0-9.]+)s\s*$", line.strip())
        if m:
            acc[m.group(1).strip()] = acc.get(m.group(1).strip(), 0.0) + float(m.group(2))
    return sorted(acc.items(), key=lambda x: -x[1])


def changed_total(run):
    return sum(c.get("changed", 0) for c in run.recap.values())


def children_cpu():
    """CPU seconds (user + system) of the waited-for child processes so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class Bench:
    def __init__(self, work, tools_bin, istio, profile=True):
        self.work = work
        self.tools_bin = tools_bin
        self.istio = istio
        self.profile = profile
        self.results = {}      # path -> dict(seconds=..., steps=[(label, s)], ...)
        self.failures = []
        self.notes = []
        self.teardowns = Teardowns(self.failures)

    # --- clusters (outside the timed region) -------------------------------------------------
    def fresh_clusters(self, key):
        folder, inventory, state_dir = mesh_folder(self.work, key, topology(), self.tools_bin,
                                                   self.teardowns, helpers)
        log("%s: creating 3 fresh kwok clusters (not timed)" % key)
        create_clusters(folder, inventory, self.tools_bin, helpers, timeout=1800)
        topo = topology()
        clusters = [dict(name=n, network=c["network"],
                         kubeconfig=os.path.join(state_dir, "clusters", n, "kubeconfig"))
                    for n, c in sorted(topo["clusters"].items())]
        return folder, inventory, clusters, topo["mesh"]["id"]

    def down(self, key):
        log("%s: tearing down (not timed)" % key)
        problems = self.teardowns.run(key)
        if problems:
            self.failures.append("%s teardown: %s" % (key, "; ".join(problems)))

    def teardown_all(self):
        self.teardowns.run_all()

    # --- Istio's documented sequence ------------------------------------------------------------
    def sh(self, cmd, cwd, accept=None):
        """Run a shell pipeline (bash, pipefail) with the tools first on PATH; its seconds."""
        env = dict(os.environ, PATH=self.tools_bin + os.pathsep + os.environ.get("PATH", ""))
        env.pop("KUBECONFIG", None)
        started = time.monotonic()
        p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=cwd, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=900, check=False)
        seconds = time.monotonic() - started
        if p.returncode != 0 and not (accept and re.search(accept, p.stdout)):
            raise RuntimeError("command failed (rc=%d): %s\n%s" % (p.returncode, cmd, p.stdout[-3000:]))
        return seconds, p.stdout

    def documented(self, key, key_type):
        folder, _inventory, clusters, mesh_id = self.fresh_clusters(key)
        certs = os.path.join(folder, "certs")
        os.makedirs(certs)
        mk = os.path.join(self.istio, "tools", "certs", "Makefile.selfsigned.mk")
        if key_type == "ecdsa":
            with open(os.path.join(certs, "Makefile.ecdsa.mk"), "w") as f:
                f.write(ECDSA_MAKEFILE % dict(mk=mk))
            mk = os.path.join(certs, "Makefile.ecdsa.mk")
        samples = os.path.join(self.istio, "samples", "multicluster")
        steps = []

        def step(label, cmd, cwd=folder, accept=None):
            s, out = self.sh(cmd, cwd, accept)
            steps.append((label, s))
            return out

        log("%s: Istio's documented sequence (timed)" % key)
        started, cpu0 = time.monotonic(), children_cpu()
        # Plug in CA certificates: the root once, then one intermediate per cluster.
        step("certs: make root-ca", "make -f %s root-ca" % mk, cwd=certs)
        for c in clusters:
            step("certs: make %s-cacerts" % c["name"], "make -f %s %s-cacerts" % (mk, c["name"]), cwd=certs)
        for c in clusters:
            kc, name, net = c["kubeconfig"], c["name"], c["network"]
            d = os.path.join(certs, name)
            step("%s: kubectl create namespace + secret cacerts" % name,
                 "kubectl --kubeconfig %s create namespace istio-system && "
                 "kubectl --kubeconfig %s create secret generic cacerts -n istio-system "
                 "--from-file=%s/ca-cert.pem --from-file=%s/ca-key.pem "
                 "--from-file=%s/root-cert.pem --from-file=%s/cert-chain.pem"
                 % (kc, kc, d, d, d, d))
            step("%s: kubectl label namespace (network)" % name,
                 "kubectl --kubeconfig %s label namespace istio-system topology.istio.io/network=%s"
                 % (kc, net))
            iop = os.path.join(folder, "%s.yaml" % name)
            with open(iop, "w") as f:
                f.write(CLUSTER_IOP % dict(mesh=mesh_id, cluster=name, network=net))
            step("%s: istioctl install -f %s.yaml" % (name, name),
                 "istioctl install --kubeconfig %s -y -f %s --set values.global.configValidation=false"
                 % (kc, iop))
            step("%s: gen-eastwest-gateway.sh | istioctl install" % name,
                 "bash %s/gen-eastwest-gateway.sh --network %s | "
                 "istioctl install --kubeconfig %s -y -f - --readiness-timeout 1s"
                 % (samples, net, kc), accept=r"resources not ready")
            step("%s: kubectl apply expose-services.yaml" % name,
                 "kubectl --kubeconfig %s apply -n istio-system -f %s/expose-services.yaml"
                 % (kc, samples))
        for a in clusters:
            for b in clusters:
                if a is b:
                    continue
                step("remote secret %s -> %s" % (a["name"], b["name"]),
                     "istioctl create-remote-secret --kubeconfig %s --name=%s | "
                     "kubectl --kubeconfig %s apply -f -" % (a["kubeconfig"], a["name"], b["kubeconfig"]))
        total, cpu = time.monotonic() - started, children_cpu() - cpu0
        # not timed: the result is what the docs promise
        for c in clusters:
            _s, out = self.sh("kubectl --kubeconfig %s get secrets -n istio-system -l istio/multiCluster=true "
                              "-o name; kubectl --kubeconfig %s get svc -n istio-system istio-eastwestgateway "
                              "-o name; kubectl --kubeconfig %s get gateways.networking.istio.io -n istio-system "
                              "-o name" % ((c["kubeconfig"],) * 3), folder)
            if out.count("istio-remote-secret-") != len(clusters) - 1 or "istio-eastwestgateway" not in out \
                    or "cross-network-gateway" not in out:
                self.failures.append("%s: %s lacks remote secrets / east-west gateway: %s" % (key, c["name"], out))
        self.results[key] = dict(seconds=total, cpu=cpu, steps=steps,
                                 certs=sum(s for label, s in steps if label.startswith("certs")))
        self.down(key)

    # --- Meshfleet ------------------------------------------------------------------------------
    def meshfleet(self, key="meshfleet"):
        _folder, inventory, _clusters, _mesh = self.fresh_clusters(key)
        runs = {}
        for label, args in (("cold", ()), ("noop", ()), ("check", ("-C", "--diff")),
                            ("slow", ("-e", "meshfleet_fast_noop=false"))):
            log("%s: site.yml %s(timed)" % (key, " ".join(args) + " " if args else ""))
            cpu0 = children_cpu()
            run = helpers.run_playbook("site.yml", inventory, tools_bin=self.tools_bin, args=args, timeout=3600)
            run.cpu = children_cpu() - cpu0
            if run.rc != 0:
                raise RuntimeError("%s: site.yml %s failed:\n%s" % (key, " ".join(args), run.tail(60)))
            runs[label] = run
        for label in ("noop", "check"):
            if "nothing to change" not in runs[label].output:
                self.failures.append("%s: the %s re-run did not take the fast path:\n%s"
                                     % (key, label, runs[label].tail(30)))
        profile = {}
        if self.profile:
            extra = {"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
                     "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "all"}
            for label, args in (("noop", ()), ("check", ("-C", "--diff"))):
                log("%s: site.yml %s(profiled, not timed)" % (key, " ".join(args) + " " if args else ""))
                run = helpers.run_playbook("site.yml", inventory, tools_bin=self.tools_bin, args=args,
                                           timeout=3600, env=extra)
                profile[label] = parse_profile(run.output)
        self.results[key] = dict(
            seconds=runs["cold"].seconds, cpu=runs["cold"].cpu, changed=changed_total(runs["cold"]),
            noop=runs["noop"].seconds, noop_cpu=runs["noop"].cpu, noop_changed=changed_total(runs["noop"]),
            check=runs["check"].seconds, check_cpu=runs["check"].cpu,
            check_changed=changed_total(runs["check"]),
            slow=runs["slow"].seconds, slow_cpu=runs["slow"].cpu, slow_changed=changed_total(runs["slow"]),
            profile=profile)
        self.down(key)

    # --- report -------------------------------------------------------------------------------------
    def report(self):
        r = self.results
        print()
        print("Mesh converge: 3 kwok clusters, multi-primary, 2 networks (%d CPUs, %s; load average "
              "before %s, after %s)" % (os.cpu_count() or 0, time.strftime("%Y-%m-%d %H:%M"),
                                        self.load_before, " ".join("%.2f" % x for x in os.getloadavg())))
        print()
        fmt = "%-58s %8s %8s %8s"
        print(fmt % ("path", "wall s", "CPU s", "changed"))
        print(fmt % ("-" * 58, "-" * 8, "-" * 8, "-" * 8))
        for key, label in (("docs-rsa", "Istio docs: istioctl/kubectl, certs RSA-4096 (Makefile)"),
                           ("docs-ecdsa", "Istio docs: istioctl/kubectl, certs ECDSA P-256")):
            if key in r:
                print(fmt % (label, "%.1f" % r[key]["seconds"], "%.1f" % r[key]["cpu"], "-"))
                print(fmt % ("  of which the certs (make, openssl)", "%.1f" % r[key]["certs"], "", ""))
        m = r.get("meshfleet")
        if m:
            print(fmt % ("Meshfleet site.yml, cold converge (certs ECDSA P-256)", "%.1f" % m["seconds"],
                         "%.1f" % m["cpu"], m["changed"]))
            print(fmt % ("Meshfleet site.yml, no-op re-run", "%.2f" % m["noop"], "%.2f" % m["noop_cpu"],
                         m["noop_changed"]))
            print(fmt % ("Meshfleet site.yml -C --diff, no-op", "%.2f" % m["check"], "%.2f" % m["check_cpu"],
                         m["check_changed"]))
            print(fmt % ("Meshfleet no-op re-run, fast path off (every step's module)", "%.1f" % m["slow"],
                         "%.1f" % m["slow_cpu"], m["slow_changed"]))
        print()
        if m:
            print("targets:")
            for key, what in (("docs-rsa", "RSA-4096 docs"), ("docs-ecdsa", "ECDSA P-256 docs")):
                if key in r:
                    ratio = m["seconds"] / r[key]["seconds"]
                    ok = ratio <= RATIO_TARGET
                    print("  Meshfleet cold / documented (%s) = %5.2f wall, %5.2f CPU  (target <= %.1f: %s)"
                          % (what, ratio, m["cpu"] / max(r[key]["cpu"], 0.01), RATIO_TARGET,
                             "ok" if ok else "MISSED"))
            share = m["noop"] / m["seconds"]
            ok = share <= NOOP_TARGET and m["noop_changed"] == 0
            print("  no-op re-run = %.0f %% of the cold converge, %d changed  (target <= %.0f %%, 0 changed: %s)"
                  % (100 * share, m["noop_changed"], 100 * NOOP_TARGET, "ok" if ok else "MISSED"))
            print("  -C --diff no-op = %.0f %% of the cold converge, %d changed"
                  % (100 * m["check"] / m["seconds"], m["check_changed"]))
        for key in ("docs-rsa", "docs-ecdsa"):
            if key in r:
                print()
                print("%s steps (seconds):" % key)
                for label, s in r[key]["steps"]:
                    print("  %6.1f  %s" % (s, label))
        if m and m["profile"]:
            for label in ("noop", "check"):
                prof = m["profile"].get(label) or []
                print()
                print("Meshfleet %s run, slowest tasks (profile_tasks, untimed repeat, wall seconds over all hosts):"
                      % dict(noop="no-op re-run", check="-C --diff")[label])
                for task, s in prof[:12]:
                    print("  %6.1f  %s" % (s, task))
        print()
        print("CPU s: user + system time of the processes each path ran (ansible-playbook, its forks and "
              "modules, istioctl, kubectl, make, openssl), not of the clusters or of istiod; less sensitive "
              "to other load on the machine than wall time.")
        print("notes: kwok clusters (fake pods); values.global.configValidation=false on both sides; the "
              "documented east-west install runs with --readiness-timeout 1s (its pods need the unreachable "
              "injection webhook). Meshfleet's converge includes starting a real istiod per primary and "
              "waiting for it; the documented path runs none. Clusters are created and deleted outside the "
              "timed regions.")
        print_problems(self.failures)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--only", default=",".join(PATHS),
                    help="comma-separated paths to run (default: %s)" % ",".join(PATHS))
    ap.add_argument("--profile", action="store_true",
                    help="repeat the no-op runs untimed with ansible.posix.profile_tasks and print their slowest tasks")
    ap.add_argument("--istio-dir", help="the istio.io/istio source tree (default: the pinned module)")
    args = ap.parse_args()
    paths = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        ap.error("unknown path(s) %s; choose from %s" % (", ".join(unknown), ", ".join(PATHS)))

    tools_bin = tools_bin_or_exit("bench_mesh", helpers)
    for tool in ("istioctl", "pilot-discovery"):
        if not os.access(os.path.join(tools_bin, tool), os.X_OK):
            raise SystemExit("bench_mesh: %s is missing from %s (make tools)" % (tool, tools_bin))
    for tool in ("make", "openssl"):
        if shutil.which(tool) is None:
            raise SystemExit("bench_mesh: %s is needed for Istio's certificate Makefile" % tool)
    istio = istio_dir(args.istio_dir)

    work = tempfile.mkdtemp(prefix="meshfleet-bench-mesh-")
    bench = Bench(work, tools_bin, istio, profile=args.profile)
    bench.load_before = " ".join("%.2f" % x for x in os.getloadavg())

    def body():
        for path in paths:
            if path == "meshfleet":
                bench.meshfleet()
            else:
                bench.documented(path, path.split("-", 1)[1])
    return run_and_report(bench, work, helpers, body)


if __name__ == "__main__":
    sys.exit(main())
