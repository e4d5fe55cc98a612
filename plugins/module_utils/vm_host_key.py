# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The meshfleet.mesh.vm_host_key module: a VM's SSH host key checked against its pin
(module_utils/ssh_host_key.py), pinned on first contact."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetModule, Plan
from ansible_collections.meshfleet.mesh.plugins.module_utils.ssh_host_key import plan_host_key


class VmHostKeyModule(MeshfleetModule):
    argument_spec = dict(
        name=dict(type="str", required=True),
        host=dict(type="str", required=True),
        port=dict(type="int", default=22),
        ssh_common_args=dict(type="str", default=""),
        known_hosts=dict(type="path"),
        strict=dict(type="bool"),
        timeout=dict(type="int", default=10),
    )

    def plan(self, observed):
        p = self.params
        self.host_key, self.pin = plan_host_key(p["name"], p["host"], p["port"], p["known_hosts"], p["strict"],
                                                p["ssh_common_args"], p["timeout"])
        plan = Plan()
        if self.host_key["changed"]:
            plan.add("pin the host keys of %s in %s" % (p["name"], self.host_key["known_hosts"]))
        return plan

    def apply(self, plan, observed):
        self.host_key = self.pin()

    def result(self, observed, plan):
        out = dict(self.host_key)
        out.pop("changed", None)
        return out
