# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the benchmark scripts share: progress lines, the tools and signal set-up, and the
teardowns of what they made."""

from __future__ import absolute_import, division, print_function

import shutil
import signal
import sys
import time


def log(msg):
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def tools_bin_or_exit(name, helpers):
    """The pinned tools' folder, or exit naming why; from here on SIGTERM is handled as Ctrl-C,
    so that the teardowns run (``helpers`` is tests/integration/helpers.py)."""
    tools_bin, why = helpers.find_tools_bin()
    if tools_bin is None:
        raise SystemExit("%s: %s" % (name, why))

    def on_term(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_term)
    return tools_bin


def clean_up(bench, work, helpers):
    """After a bench's runs (also after an error or Ctrl-C): every pending teardown of
    ``bench.teardowns``, then any process still running under ``work`` added to
    ``bench.failures`` and forced away, else the work folder removed."""
    bench.teardowns.run_all()
    left = helpers.processes_under(work)
    if left:
        bench.failures.append("processes left under %s: %s" % (work, left))
        helpers.force_cleanup(work)
    else:
        shutil.rmtree(work, ignore_errors=True)


def run_and_report(bench, work, helpers, body):
    """Run ``body()``; what stops it (an error, Ctrl-C) goes into ``bench.failures``; then
    :func:`clean_up` and ``bench.report()``. The exit code: 0 when no failure was recorded."""
    try:
        body()
    except (Exception, KeyboardInterrupt) as e:
        bench.failures.append("stopped: %s: %s" % (type(e).__name__, str(e)[:3000]))
    finally:
        clean_up(bench, work, helpers)
    bench.report()
    return 0 if not bench.failures else 1


class Teardowns:
    """Teardown callables by key (each returns a list of problems), run newest first at the
    end; problems are appended to ``failures`` as "<key> teardown: ..."."""

    def __init__(self, failures):
        self.failures = failures
        self._pending = []

    def add(self, key, fn):
        self._pending.append((key, fn))

    def run(self, key):
        """Run and forget the teardown of ``key`` now; its problems ([] when unknown)."""
        for i, (k, fn) in enumerate(self._pending):
            if k == key:
                del self._pending[i]
                return fn()
        return []

    def run_all(self):
        while self._pending:
            key, fn = self._pending.pop()
            log("tearing down %s" % key)
            try:
                problems = fn()
            except Exception as e:  # keep going: everything must go
                problems = ["%s: %s" % (type(e).__name__, e)]
            if problems:
                self.failures.append("%s teardown: %s" % (key, "; ".join(problems)))


def mesh_folder(work, key, topology, tools_bin, teardowns, helpers):
    """A folder ``<work>/<key>`` with the topology as its inventory, a safety net over its
    state folder, and its teardown (teardown.yml, then anything left forced away) registered
    under ``key``. Returns (folder, inventory, state_dir)."""
    import os
    import yaml
    folder = os.path.join(work, key)
    os.makedirs(folder)
    inventory = os.path.join(folder, "mesh.meshfleet.yml")
    with open(inventory, "w") as f:
        yaml.safe_dump(topology, f, default_flow_style=False, sort_keys=False)
    state_dir = os.path.join(folder, ".meshfleet")
    helpers.safety_net(state_dir)

    def down():
        run = helpers.run_playbook("teardown.yml", inventory, tools_bin=tools_bin, timeout=3600)
        problems = [] if run.rc == 0 else ["teardown.yml rc=%d: %s" % (run.rc, run.tail(20))]
        left = helpers.leftovers(state_dir)
        if left:
            helpers.force_cleanup(state_dir)
        return problems + left
    teardowns.add(key, down)
    return folder, inventory, state_dir


def create_clusters(folder, inventory, tools_bin, helpers, timeout=3600):
    """Create the inventory's clusters only (the meshfleet.mesh.clusters role; not timed)."""
    import os
    import yaml
    plays = os.path.join(folder, "clusters.yml")
    with open(plays, "w") as f:
        yaml.safe_dump([dict(name="Create the clusters only (not timed)", hosts="clusters",
                             gather_facts=False, roles=[dict(role="meshfleet.mesh.clusters")])],
                       f, default_flow_style=False, sort_keys=False)
    run = helpers.run_playbook(plays, inventory, tools_bin=tools_bin, timeout=timeout)
    if run.rc != 0:
        raise RuntimeError("creating the clusters failed:\n%s" % run.tail(40))


def print_problems(failures):
    if failures:
        print()
        print("problems:")
        for f in failures:
            print("  - %s" % f)
