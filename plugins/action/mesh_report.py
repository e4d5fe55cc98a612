# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of meshfleet.mesh.mesh_report (documented in plugins/modules/).

The report is about the controller's state dir and the clusters the controller reaches, and
gathering it takes well under 0.1 s for the demo mesh: a module process would cost more
than the work (the end of every verify.yml). So it runs here, in the controller's process,
with the module's arguments, checks and results (``module_utils.mesh_report.MeshReportModule``, planned and applied in the task's check mode).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.plugins.action import ActionBase

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError
from ansible_collections.meshfleet.mesh.plugins.module_utils.mesh_report import ARGUMENT_SPEC, MeshReportModule


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # not used
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        try:
            result.update(MeshReportModule.for_task(self._task, args).run())
        except MeshfleetError as e:
            result.update(e.details)
            result.update(failed=True, changed=False, msg=e.msg)
        return result
