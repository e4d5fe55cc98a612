# -*- coding: utf-8 -*-
"""Run a module's real ``main()`` the way Ansible does, and return its JSON result."""

from __future__ import absolute_import, division, print_function

import contextlib
import io
import json

from ansible.module_utils.testing import patch_module_args


class ModuleResult(dict):
    @property
    def failed(self):
        return bool(self.get("failed"))


def run_module(main, args, check_mode=False, diff=False):
    """Call ``main()`` with ``args`` (as AnsibleModule parameters); return the result dict.

    ``rc`` is added: 0 for exit_json, 1 for fail_json.
    """
    args = dict(args)
    if check_mode:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    out = io.StringIO()
    rc = None
    with patch_module_args(args), contextlib.redirect_stdout(out):
        try:
            main()
        except SystemExit as e:
            rc = e.code
    text = out.getvalue()
    try:
        result = ModuleResult(json.loads(text))
    except ValueError:
        raise AssertionError("module printed no JSON (rc=%r): %r" % (rc, text))
    result["rc"] = rc
    return result
