# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of meshfleet.mesh.converge_receipt (documented in plugins/modules/).

It runs on the controller, where the mesh state lives, because what it fingerprints is the
controller's view of the run: the inventory sources, the collection's files, the Ansible
config and the command line's extra vars and limit (``ansible.context.CLIARGS``), none of
which a module can see. What else it needs it reads from the task's variables: the state
dir (``meshfleet_state_dir``), ``meshfleet_fast_noop``, the run's tags (``ansible_run_tags``,
``ansible_skip_tags``) and, to record, every host's registered results. The checks
themselves are the step modules' own code (plugins/module_utils/receipt.py).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import yaml

from ansible import constants as C
from ansible import context
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

from ansible_collections.meshfleet.mesh.plugins.module_utils import receipt

from ansible.module_utils.six.moves.collections_abc import Mapping

COLLECTION_ROOT = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
CODE_DIRS = ("roles", "plugins", "playbooks")

ARGUMENT_SPEC = dict(
    state=dict(type="str", choices=["checked", "recorded", "absent"], default="checked"),
    state_dir=dict(type="path"),
    results=dict(type="list", elements="dict"),
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


def run_tags(task_vars):
    """``(tags, skip_tags)`` of this run: Ansible's ``ansible_run_tags``/``ansible_skip_tags``
    (the command line's, as ``ansible.context.CLIARGS`` has them when they are not set)."""
    cli = context.CLIARGS
    tags = task_vars.get("ansible_run_tags", cli.get("tags") or ("all",))
    skip = task_vars.get("ansible_skip_tags", cli.get("skip_tags") or ())
    return list(tags or ()), list(skip or ())


def registered_steps(task_vars):
    """``[{host, var, result}]``: every registered result of a converge-receipt step (it carries
    ``receipt_step``) on every host of the run, and every result hidden by ``no_log`` (it
    may be one: recording then refuses)."""
    hostvars = task_vars.get("hostvars")
    if hostvars is None:
        return []
    hosts = ["localhost"] + [h for h in (task_vars.get("groups") or {}).get("all") or [] if h != "localhost"]
    out = []
    for host in hosts:
        try:
            variables = hostvars.raw_get(host)
        except Exception:  # pylint: disable=broad-except
            # a host the inventory does not know
            continue
        if not isinstance(variables, Mapping):
            continue
        for var in sorted(variables):
            value = variables[var]
            if isinstance(value, Mapping) and ("receipt_step" in value or "censored" in value):
                out.append(dict(host=host, var=var, result=dict(value)))
    return out


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
        # no tags: a run that checks or records selects every mesh step (receipt.out_of_scope)
        extras = dict(receipt.environment_extras(),
                      extra_vars=_extra_vars_text(),
                      limit=context.CLIARGS.get("subset"), ansible=task_vars.get("ansible_version", {}).get("full"))
        return receipt.fingerprint(paths, extras, skip=[state_dir])

    def _var(self, task_vars, name, default=None):
        """A variable of the task's host, templated."""
        if name not in task_vars:
            return default
        return self._templar.template(task_vars[name])

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        ok, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        del ok
        state_dir = args["state_dir"] or self._var(task_vars, "meshfleet_state_dir")
        if not state_dir:
            result.update(failed=True, changed=False,
                          msg="state_dir: not given, and the inventory sets no meshfleet_state_dir "
                              "(use an inventory with a *.meshfleet.yml file, or pass state_dir)")
            return result
        state_dir = os.path.expanduser(str(state_dir))
        args["state_dir"] = state_dir
        result.update(changed=False, path=receipt.receipt_path(state_dir))

        tags, skip_tags = run_tags(task_vars)
        selected = receipt.selected_steps(tags, skip_tags)
        why_not = receipt.out_of_scope(boolean(self._var(task_vars, "meshfleet_fast_noop", True), strict=False),
                                       selected)
        if args["state"] == "checked":
            result.update(selected=selected)
        if why_not and args["state"] != "absent":
            # neither checked nor recorded; a receipt there stays (it is for whole runs)
            if args["state"] == "checked":
                result.update(converged=False, reason=why_not, results={})
            else:
                result.update(recorded=False, reason="nothing recorded: %s" % why_not)
            return result

        if args["state"] in ("absent", "recorded"):
            if args["state"] == "recorded" and args["results"] is None:
                args["results"] = registered_steps(task_vars)
            module = receipt.ReceiptModule.for_task(
                self._task, args, fingerprint=lambda steps: self._fingerprint(task_vars, state_dir, steps))
            out = module.run()
            # the receipt is bookkeeping, like a cache: writing it is no change to the mesh
            out.update(changed=False)
            out.pop("diff", None)
            result.update(out)
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
