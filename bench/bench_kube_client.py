# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What one Kubernetes client costs a module run: meshfleet.mesh.mesh_verify (two clusters,
trust checks, sync, cross-network probes) as its own Python process, the way Ansible runs a
module, against local API servers and istiod debug endpoints (the fakes of
tests/unit/plugins/module_utils/test_mesh_verify.py); nothing else runs.

    .venv/bin/python bench/bench_kube_client.py [--runs 15] [--baseline REV]

Prints the median wall time and CPU time (user+sys) of a run of this checkout's module and,
with ``--baseline``, of the module at git revision REV (exported to a temporary folder) and the
ratio this/baseline. Numbers, not a pass/fail: a ratio above 1 means this checkout is slower.
"""

from __future__ import absolute_import, division, print_function

import argparse
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "collections"))

RUNNER = ("import os, sys; sys.path.insert(0, os.environ['BENCH_COLLECTIONS']); "
          "from ansible_collections.meshfleet.mesh.plugins.modules import mesh_verify; mesh_verify.main()")


def load_mesh_fake():
    path = os.path.join(REPO, "tests", "unit", "plugins", "module_utils", "test_mesh_verify.py")
    spec = importlib.util.spec_from_file_location("mesh_verify_fakes", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def export(rev, folder):
    """The collection at ``rev`` under ``folder``/collections/ansible_collections/meshfleet/mesh."""
    dest = os.path.join(folder, "collections", "ansible_collections", "meshfleet", "mesh")
    os.makedirs(dest)
    archive = subprocess.run(["git", "-C", REPO, "archive", rev, "plugins"], stdout=subprocess.PIPE, check=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    return os.path.join(folder, "collections")


def one_run(collections, args_file):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", RUNNER, args_file], env=dict(os.environ, BENCH_COLLECTIONS=collections),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not proc.stdout.strip():
        raise SystemExit("mesh_verify printed nothing: %s" % proc.stderr[-2000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result.get("failed"):
        raise SystemExit("mesh_verify failed: %s" % result.get("msg"))
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(collections, args_file, runs):
    one_run(collections, args_file)  # warm the page cache
    samples = [one_run(collections, args_file) for _i in range(runs)]
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--baseline", help="a git revision to compare with (e.g. main)")
    opts = parser.parse_args()
    fakes = load_mesh_fake()
    work = tempfile.mkdtemp(prefix="meshfleet-bench-kube-")
    servers = []
    try:
        import pathlib
        mesh = fakes.Mesh(pathlib.Path(work))
        for name in ("c1", "c2"):
            mesh.kube[name] = fakes.RecordedApi(mesh.cluster_routes(name)).start()
            mesh.istiod[name] = fakes.RecordedApi(mesh.istiod_routes(name)).start()
            servers += [mesh.kube[name], mesh.istiod[name]]
        args_file = os.path.join(work, "args.json")
        with open(args_file, "w") as f:
            json.dump({"ANSIBLE_MODULE_ARGS": mesh.args()}, f)
        rows = []
        if opts.baseline:
            base = measure(export(opts.baseline, os.path.join(work, "baseline")), args_file, opts.runs)
            rows.append(("baseline %s" % opts.baseline, base))
        this = measure(os.path.join(REPO, "collections"), args_file, opts.runs)
        rows.append(("this checkout", this))
        print("mesh_verify run (2 clusters, probes), median of %d:" % opts.runs)
        for label, (wall, cpu) in rows:
            print("  %-22s wall %.3f s  cpu %.3f s" % (label, wall, cpu))
        if opts.baseline:
            print("  ratio this/baseline: wall %.2f  cpu %.2f" % (this[0] / base[0], this[1] / base[1]))
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
