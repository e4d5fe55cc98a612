# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The meshfleet.mesh.topology_validate module (its action plugin runs the same check in the
controller's process): nothing to change, only the topology's problems to report."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import (
    MeshfleetError, MeshfleetModule)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology import check_topology


class TopologyValidateModule(MeshfleetModule):
    receipt_step = True
    argument_spec = dict(
        topology=dict(type="dict", required=True),
        extra_errors=dict(type="list", elements="str", default=[]),
        unparsed=dict(type="bool", default=False),
    )

    def observe(self):
        errors, summary, msg = check_topology(self.params["topology"], self.params["extra_errors"],
                                              self.params["unparsed"])
        self.out.update(errors=errors, summary=summary)
        if msg:
            raise MeshfleetError(msg)
        return None

    def result(self, observed, plan):
        return dict(errors=self.out["errors"], summary=self.out["summary"])
