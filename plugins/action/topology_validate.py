# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of meshfleet.mesh.topology_validate (documented in plugins/modules/).

Validation is pure Python on data the controller already holds (the inventory's
``meshfleet_topology``), and every playbook runs it first, the fast no-op included: so it
runs here, in the controller's process, instead of shipping the whole topology to a module
process (0.8 s of a 1 s no-op). Same arguments, checks and results as the module
(``module_utils.topology.check_topology``); the module stays for ``ansible-doc`` and for the
converge receipt's in-process checks.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.plugins.action import ActionBase

from ansible_collections.meshfleet.mesh.plugins.module_utils.topology import check_topology
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology_validate import TopologyValidateModule


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # not used
        _validation, args = self.validate_argument_spec(argument_spec=TopologyValidateModule.argument_spec)
        errors, summary, msg = check_topology(args["topology"], args["extra_errors"], args["unparsed"])
        # validate_done: later imports of playbooks/validate.yml in the same run skip the role
        result.update(changed=False, errors=errors, summary=summary,
                      ansible_facts=dict(validate_done=True))
        if msg:
            result.update(failed=True, msg=msg)
        else:
            # what the module returns for the converge receipt (MeshfleetModule.receipt_step)
            result.update(module_args=args, receipt_step=TopologyValidateModule.step_name())
        return result
