#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: issuing Istio plug-in intermediate CAs with meshfleet.mesh.mesh_ca.

Not a test. Run from the repo root:

    .venv/bin/python bench/bench_mesh_ca.py [--clusters 100] [--rsa-clusters 10] [--repeat 3] [--no-cli]

Each row times issuing N intermediates (key + certificate + the four files per cluster) into
a state dir whose root already exists, so the root's own key generation is not counted:

* library   - ``pki.MeshCA(...).apply()`` in-process;
* module    - ``mesh_ca.main()`` in-process with the module args injected, as Ansible's
              module runner would call it (argument parsing, JSON result);
* ansible   - ``ansible localhost -m meshfleet.mesh.mesh_ca`` as a subprocess (includes
              Ansible's own start-up, a few seconds on a busy machine, which is not PKI work).

Targets: ECDSA P-256 for 100 clusters <= 5 s; the Istio Makefile path (openssl, RSA 4096)
costs about 1.3 s per key.
"""

from __future__ import absolute_import, division, print_function

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "collections"))

from ansible.module_utils.testing import patch_module_args  # noqa: E402

from ansible_collections.meshfleet.mesh.plugins.module_utils import pki  # noqa: E402
from ansible_collections.meshfleet.mesh.plugins.modules import mesh_ca  # noqa: E402

TARGET_S = 5.0
TARGET_CLUSTERS = 100
ISTIO_MAKEFILE_S_PER_KEY = 1.3


def names(n):
    return ["cluster-%03d" % i for i in range(n)]


def fresh_state(base, key_type):
    """A state dir with a root and no clusters yet."""
    d = tempfile.mkdtemp(prefix="bench-", dir=base)
    pki.MeshCA(d, [], key_type=key_type).apply()
    return d


def via_library(state, clusters, key_type):
    result, _diff = pki.MeshCA(state, clusters, key_type=key_type).apply()
    return result


def via_module(state, clusters, key_type):
    out = io.StringIO()
    with patch_module_args(dict(state_dir=state, clusters=clusters, key_type=key_type)):
        with contextlib.redirect_stdout(out):
            try:
                mesh_ca.main()
            except SystemExit:
                pass
    return json.loads(out.getvalue().strip().splitlines()[-1])


def via_ansible(state, clusters, key_type):
    exe = os.path.join(os.path.dirname(sys.executable), "ansible")
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    args = json.dumps(dict(state_dir=state, clusters=clusters, key_type=key_type))
    p = subprocess.run([exe, "localhost", "-i", "localhost,", "-c", "local",
                        "-e", "ansible_python_interpreter=%s" % sys.executable,
                        "-m", "meshfleet.mesh.mesh_ca", "-a", args],
                       cwd=REPO, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(p.stdout + p.stderr)
    return json.loads(p.stdout.split("=>", 1)[1])


def measure(fn, base, key_type, n, repeat):
    """Best and median wall time of issuing ``n`` intermediates, plus an idempotent re-run."""
    times, rerun = [], []
    for _i in range(repeat):
        state = fresh_state(base, key_type)
        clusters = names(n)
        t0 = time.perf_counter()
        result = fn(state, clusters, key_type)
        times.append(time.perf_counter() - t0)
        issued = result["summary"]["issued"]
        if issued != n:
            raise RuntimeError("expected %d issued, got %r" % (n, result["summary"]))
        t0 = time.perf_counter()
        again = fn(state, clusters, key_type)
        rerun.append(time.perf_counter() - t0)
        if again["changed"]:
            raise RuntimeError("re-run changed something")
        shutil.rmtree(state)
    return min(times), statistics.median(times), min(rerun)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clusters", type=int, default=TARGET_CLUSTERS)
    ap.add_argument("--rsa-clusters", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-cli", action="store_true", help="skip the ansible subprocess rows")
    opts = ap.parse_args()

    plan = [
        ("library", via_library, "ecdsa-p256", opts.clusters, opts.repeat),
        ("module", via_module, "ecdsa-p256", opts.clusters, opts.repeat),
    ]
    if not opts.no_cli:
        plan.append(("ansible -m", via_ansible, "ecdsa-p256", opts.clusters, 1))
    plan += [
        ("library", via_library, "rsa-2048", opts.rsa_clusters, 1),
        ("library", via_library, "rsa-4096", opts.rsa_clusters, 1),
        ("module", via_module, "rsa-4096", opts.rsa_clusters, 1),
    ]

    base = tempfile.mkdtemp(prefix="meshfleet-bench-")
    rows = []
    try:
        for path, fn, key_type, n, repeat in plan:
            best, median, rerun = measure(fn, base, key_type, n, repeat)
            per = best / n
            at_target = per * TARGET_CLUSTERS
            rows.append((path, key_type, n, best, median, per * 1000.0, at_target,
                         at_target / TARGET_S, ISTIO_MAKEFILE_S_PER_KEY / per, rerun))
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print("mesh_ca issuance benchmark  (python %s, cryptography %s, %d CPUs)"
          % (sys.version.split()[0], __import__("cryptography").__version__, os.cpu_count() or 1))
    print("target: %d clusters ECDSA P-256 <= %.1f s; Istio Makefile path ~%.1f s per RSA-4096 key"
          % (TARGET_CLUSTERS, TARGET_S, ISTIO_MAKEFILE_S_PER_KEY))
    print()
    head = ("path", "key type", "N", "best s", "median s", "ms/cluster", "s @100",
            "x target", "vs Istio", "re-run s")
    fmt = "%-10s %-10s %4s %8s %9s %11s %8s %9s %9s %9s"
    print(fmt % head)
    print("-" * 96)
    for path, key_type, n, best, median, per_ms, at100, ratio, speedup, rerun in rows:
        print(fmt % (path, key_type, n, "%.3f" % best, "%.3f" % median, "%.2f" % per_ms,
                     "%.2f" % at100, "%.3f" % ratio, "%.0fx" % speedup if speedup >= 10
                     else "%.2fx" % speedup, "%.3f" % rerun))
    print()
    print("s @100   = per-cluster time x 100 (measured directly for the ECDSA rows, extrapolated "
          "for RSA)")
    print("x target = s @100 / %.1f s (below 1 meets the target)" % TARGET_S)
    print("vs Istio = %.1f s / per-cluster time (how many times faster than the Makefile's "
          "RSA-4096 key)" % ISTIO_MAKEFILE_S_PER_KEY)
    print("re-run s = the same call again, nothing to do (idempotence check of N clusters)")
    print("'ansible -m' includes Ansible's start-up, which is not PKI work (its re-run column is "
          "almost all start-up)")
    ecdsa = [r for r in rows if r[1] == "ecdsa-p256" and r[0] in ("library", "module")]
    ok = all(r[6] <= TARGET_S for r in ecdsa)
    print("ECDSA P-256 x%d target: %s" % (TARGET_CLUSTERS, "MET" if ok else "MISSED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
