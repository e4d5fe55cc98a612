# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Progress lines on the console while a long-running module waits (action plugin side).

An Ansible module cannot print while it runs: its output is one JSON document at the end.
Cloud clusters take 10-40 minutes, so a silent task looks hung. The design:

- the module records what it waits for (``base.recorded_wait`` / ``base.wait_for``: what,
  timeout, start time) in a small JSON file named by the environment variable
  ``MESHFLEET_PROGRESS_FILE``;
- the action plugin (this class, e.g. plugins/action/cluster.py) creates that file on the
  controller, passes its name to the module through the task's environment, runs the module
  as usual, and meanwhile, from a second thread, prints a line every
  ``MESHFLEET_PROGRESS_INTERVAL`` seconds (default 30) with Ansible's Display, on stderr (so
  that a json stdout callback stays parseable): the host, the task's elapsed time, what the
  module waits for now, for how long, and its timeout.

Display in a worker process forwards to the main process, so the lines appear on the
console in a normal ``ansible-playbook`` run, between the task banner and its result.
Without a local connection (the file would be on the target) the lines only say the task is
still running.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import tempfile
import threading
import time

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.utils.vars import merge_hash

display = Display()

PROGRESS_ENV = "MESHFLEET_PROGRESS_FILE"  # as in module_utils/base.py
INTERVAL_ENV = "MESHFLEET_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 30.0


def interval():
    """Seconds between progress lines (MESHFLEET_PROGRESS_INTERVAL, default 30, at least 0.5)."""
    try:
        return max(0.5, float(os.environ.get(INTERVAL_ENV) or DEFAULT_INTERVAL))
    except ValueError:
        return DEFAULT_INTERVAL


def duration(seconds):
    """``95`` -> ``1m35s``; ``3600`` -> ``1h00m``."""
    seconds = int(max(0, seconds))
    if seconds < 60:
        return "%ds" % seconds
    if seconds < 3600:
        return "%dm%02ds" % divmod(seconds, 60)
    return "%dh%02dm" % (seconds // 3600, (seconds % 3600) // 60)


def read_progress(path):
    """The module's current wait ({what, timeout, started}) or {} (none yet, or unreadable)."""
    if not path:
        return {}
    try:
        with open(path) as f:
            data = json.load(f)
    except (IOError, OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def progress_line(label, task_started, state, now=None):
    now = time.time() if now is None else now
    line = "%s: still running after %s" % (label, duration(now - task_started))
    if state.get("what"):
        waited = now - float(state.get("started") or now)
        line += "; waiting for %s (%s of at most %s)" % (
            state["what"], duration(waited), duration(state.get("timeout") or 0))
    return line


class ProgressActionBase(ActionBase):
    """Run the task's module as the normal action does, printing progress lines while it runs."""

    _supports_check_mode = True
    _supports_async = True

    def _progress_label(self, task_vars):
        return "%s on %s" % (self._task.action, task_vars.get("inventory_hostname", "?"))

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ProgressActionBase, self).run(tmp, task_vars)
        path = None
        env = None
        if getattr(self._connection, "transport", None) == "local":
            fd, path = tempfile.mkstemp(prefix="meshfleet-progress-", suffix=".json")
            os.close(fd)
            env = {PROGRESS_ENV: path}
            self._task.environment.append(env)
        stop = threading.Event()
        label = self._progress_label(task_vars)
        started = time.time()
        every = interval()

        def report():
            while not stop.wait(every):
                # stderr: the console shows it, and a machine-readable stdout callback (json)
                # stays parseable
                display.display(progress_line(label, started, read_progress(path)), stderr=True)

        thread = threading.Thread(target=report, name="meshfleet-progress")
        thread.daemon = True
        thread.start()
        wrap_async = self._task.async_val and not self._connection.has_native_async
        try:
            result = merge_hash(result, self._execute_module(task_vars=task_vars, wrap_async=wrap_async))
            if not wrap_async:
                self._remove_tmp_path(self._connection._shell.tmpdir)
        finally:
            stop.set()
            thread.join(5)
            if env is not None:
                try:
                    self._task.environment.remove(env)
                except ValueError:
                    pass
            if path:
                try:
                    os.unlink(path)
                except OSError:
                    pass
        return result
