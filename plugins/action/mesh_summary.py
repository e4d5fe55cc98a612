# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of meshfleet.mesh.mesh_summary (documented in plugins/modules/).

Its defaults are other hosts' variables (every cluster's, and the gate's result), which only
the controller sees; the lines are made by ``module_utils.mesh_summary``, in this process.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.plugins.action import ActionBase

from ansible_collections.meshfleet.mesh.plugins.module_utils.mesh_summary import (
    ARGUMENT_SPEC, CLUSTER_VARS, MeshSummaryModule)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def _cluster_vars(self, task_vars):
        """name -> the summary's variables of that cluster that are set (group ``clusters``)."""
        hostvars = task_vars.get("hostvars") or {}
        out = {}
        for name in (task_vars.get("groups") or {}).get("clusters") or []:
            host = hostvars[name]
            out[name] = dict((var, self._templar.template(host[var])) for var in CLUSTER_VARS if var in host)
        return out

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # not used
        task_vars = task_vars or {}
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        if args["gate"] is None:
            args["gate"] = self._templar.template(task_vars.get("meshfleet_gate")) or {}
        if args["clusters"] is None:
            args["clusters"] = self._cluster_vars(task_vars)
        result.update(MeshSummaryModule.for_task(self._task, args).run())
        # shown like debug's output, without -v
        result["_ansible_verbose_always"] = True
        return result
