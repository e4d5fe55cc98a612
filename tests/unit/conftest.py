# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared fixtures for unit tests of the meshfleet.mesh collection.

* Puts ``collections/`` on ``sys.path`` so ``ansible_collections.meshfleet.mesh`` imports
  resolve from a plain checkout (``collections/ansible_collections/meshfleet/mesh`` is a
  symlink to the repo root).
* ``run_module``: runs a module's ``main()`` the way Ansible does (module args injected with
  ``ansible.module_utils.testing.patch_module_args``, JSON printed on stdout, ``SystemExit``)
  and returns the parsed result. ``result["failed"]`` is true when the module called
  ``fail_json``; ``result["rc"]`` is the exit code. The printed JSON is also kept in
  ``result["_stdout"]`` so tests can assert that something never reaches the output.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import sys

import pytest

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
COLLECTIONS_PATH = os.path.join(REPO_ROOT, "collections")
if COLLECTIONS_PATH not in sys.path:
    sys.path.insert(0, COLLECTIONS_PATH)

from ansible.module_utils.testing import patch_module_args  # noqa: E402


@pytest.fixture
def repo_root():
    return REPO_ROOT


@pytest.fixture
def run_module(capsys):
    """``run_module(module, args, check_mode=False, diff=False) -> result dict``."""

    def _run(module, args, check_mode=False, diff=False):
        full = dict(args)
        if check_mode:
            full["_ansible_check_mode"] = True
        if diff:
            full["_ansible_diff"] = True
        capsys.readouterr()  # drop anything printed before
        with patch_module_args(full):
            with pytest.raises(SystemExit) as exc:
                module.main()
        out = capsys.readouterr().out
        result = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        result["rc"] = exc.value.code
        result["_stdout"] = out
        return result

    return _run
