# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of meshfleet.mesh.converge_receipt (documented in plugins/modules/).

It runs on the controller, where the mesh state lives, because what it fingerprints is the
controller's view of the run: the inventory sources, the collection's files, the Ansible
config and the command line's extra vars, tags and limit (``ansible.context.CLIARGS``),
none of which a module can see. The checks themselves are the step modules' own code
(plugins/module_utils/receipt.py).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import yaml

from ansible import constants as C
from ansible import context
from ansible.plugins.action import ActionBase

from ansible_collections.meshfleet.mesh.plugins.module_utils import receipt

COLLECTION_ROOT = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
CODE_DIRS = ("roles", "plugins", "playbooks")

ARGUMENT_SPEC = dict(
    state=dict(type="str", choices=["checked", "recorded", "absent"], default="checked"),
    state_dir=dict(type="path", required=True),
    results=dict(type="list", elements="dict", default=[]),
    inputs=dict(type="list", elements="path", default=[]),
)


#: Extra vars AWX / Automation Platform adds to every job (awx_job_id, tower_job_id,
#: awx_user_name, ...): new values each job, and no mesh step's arguments use them.
JOB_METADATA_PREFIXES = ("awx_", "tower_")


def _without_job_metadata(text):
    """Extra vars text (YAML/JSON) without AWX's per-job metadata vars, or as it is."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:  # not YAML: fingerprinted as it is
        return text
    if not isinstance(data, dict) or not any(str(k).startswith(JOB_METADATA_PREFIXES) for k in data):
        return text
    return dict((str(k), v) for k, v in data.items() if not str(k).startswith(JOB_METADATA_PREFIXES))


def _extra_vars_text():
    """The command line's extra vars, with the content of ``@file`` ones (without AWX's
    per-job metadata, so a re-run from AWX can take the fast path)."""
    out = []
    for item in context.CLIARGS.get("extra_vars") or ():
        if isinstance(item, str) and item.startswith("@"):
            path = os.path.expanduser(item[1:])
            try:
                with open(path, "rb") as f:
                    out.append([item, _without_job_metadata(f.read().decode("utf-8", "replace"))])
            except (IOError, OSError):
                out.append([item, None])
        elif isinstance(item, str):
            out.append(_without_job_metadata(item))
        else:
            out.append(item)
    return out


def _relevant_tags(tags, default):
    """The tags of the command line that can change which tasks run: Ansible's special ones,
    and those whose name appears in the collection's roles or playbooks (molecule's
    ``--skip-tags molecule-notest,notest`` selects nothing here and must not count)."""
    tags = sorted(set(tags or ()) - set(default))
    if not tags:
        return []
    text = []
    for d in ("roles", "playbooks"):
        for root, dummy, files in os.walk(os.path.join(COLLECTION_ROOT, d)):
            for name in files:
                if name.endswith((".yml", ".yaml")):
                    with open(os.path.join(root, name), "rb") as f:
                        text.append(f.read().decode("utf-8", "replace"))
    text = "\n".join(text)
    special = ("always", "never", "tagged", "untagged")
    return [t for t in tags if t in special or t in text]


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def _fingerprint(self, task_vars, state_dir, steps):
        paths = [os.path.join(COLLECTION_ROOT, d) for d in CODE_DIRS]
        paths += [os.path.realpath(os.path.expanduser(p)) for p in task_vars.get("ansible_inventory_sources") or []]
        paths += list(self._task.args.get("inputs") or [])
        paths += receipt.tool_dirs(steps)
        if C.CONFIG_FILE:
            paths.append(C.CONFIG_FILE)
        cli = context.CLIARGS
        extras = dict(receipt.environment_extras(),
                      extra_vars=_extra_vars_text(),
                      tags=_relevant_tags(cli.get("tags"), ("all",)), skip_tags=_relevant_tags(cli.get("skip_tags"), ()),
                      limit=cli.get("subset"), ansible=task_vars.get("ansible_version", {}).get("full"))
        return receipt.fingerprint(paths, extras, skip=[state_dir])

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        ok, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        del ok
        state_dir = args["state_dir"]
        check_mode = self._task.check_mode
        result.update(changed=False, path=receipt.receipt_path(state_dir))

        if args["state"] == "absent":
            result["dropped"] = os.path.exists(result["path"])
            if result["dropped"] and not check_mode:
                receipt.drop(state_dir)
            return result

        if args["state"] == "recorded":
            steps, problem = receipt.steps_from_results(args["results"])
            if problem:
                if not check_mode:
                    receipt.drop(state_dir)
                result.update(recorded=False, reason=problem)
                return result
            if not check_mode:
                fp, parts = self._fingerprint(task_vars, state_dir, steps)
                receipt.save(state_dir, fp, steps, parts)
            result.update(recorded=not check_mode, steps=len(steps),
                          reason="%d steps recorded" % len(steps) if not check_mode else "check mode")
            return result

        # checked
        body, why = receipt.load(state_dir)
        if body is None:
            result.update(converged=False, reason=why, results={})
            return result
        fp, parts = self._fingerprint(task_vars, state_dir, body["steps"])
        if fp != body.get("fingerprint"):
            changed = receipt.changed_parts(body.get("parts"), parts)
            result.update(converged=False, results={}, changed_inputs=changed,
                          reason="inputs changed since the last converge: %s" % (", ".join(changed) or "?"))
            return result
        converged, why, results = receipt.check(body["steps"])
        result.update(converged=converged, reason=why, results=results, steps=len(body["steps"]))
        return result
