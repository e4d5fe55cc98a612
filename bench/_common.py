# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the benchmark scripts share: progress lines and the teardowns of what they made."""

from __future__ import absolute_import, division, print_function

import sys
import time


def log(msg):
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


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
