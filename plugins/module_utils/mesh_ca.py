# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The meshfleet.mesh.mesh_ca module: the mesh's PKI (module_utils/pki.py) planned, then written."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError, MeshfleetModule, Plan
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology import MAX_CA_DAYS
from ansible_collections.meshfleet.mesh.plugins.module_utils import pki


class MeshCAModule(MeshfleetModule):
    receipt_step = True
    argument_spec = dict(
        state_dir=dict(type="path", required=True),
        clusters=dict(type="list", elements="str", default=[]),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        key_type=dict(type="str", default="ecdsa-p256", choices=list(pki.KEY_TYPES)),
        root_days=dict(type="int", default=3650),
        intermediate_days=dict(type="int", default=730),
        renew_before_days=dict(type="int", default=30),
        backdate_minutes=dict(type="int", default=5),
        organization=dict(type="str", default="Istio"),
        root_cert_file=dict(type="path"),
        root_key_file=dict(type="path", no_log=False),
        root_key_passphrase=dict(type="str", no_log=True),
        root_rotation=dict(type="str", default="none", choices=list(pki.ROTATIONS)),
        force_reissue=dict(type="list", elements="str", default=[]),
    )
    module_kwargs = dict(required_together=[["root_cert_file", "root_key_file"]])

    def plan(self, observed):
        if not pki.HAS_CRYPTOGRAPHY:
            from ansible.module_utils.basic import missing_required_lib
            self.fail(missing_required_lib("cryptography"), exception=str(pki.CRYPTOGRAPHY_IMPORT_ERROR))
        p = self.params
        for key, low in (("root_days", 1), ("intermediate_days", 1), ("renew_before_days", 1),
                         ("backdate_minutes", 0)):
            high = 24 * 60 if key == "backdate_minutes" else MAX_CA_DAYS
            if not low <= p[key] <= high:
                raise MeshfleetError("%s: %d is out of range: from %d to %d%s" % (
                    key, p[key], low, high, "" if key == "backdate_minutes"
                    else " days (100 years; X.509 dates end in the year 9999)"))
        ca = pki.MeshCA(
            p["state_dir"], p["clusters"], key_type=p["key_type"], root_days=p["root_days"],
            intermediate_days=p["intermediate_days"], renew_before_days=p["renew_before_days"],
            organization=p["organization"], root_cert_file=p["root_cert_file"],
            root_key_file=p["root_key_file"], root_key_passphrase=p["root_key_passphrase"],
            root_rotation=p["root_rotation"], backdate_minutes=p["backdate_minutes"],
            force_reissue=p["force_reissue"], state=p["state"], warn=self.warn)
        self.ca_result, diff, todo = ca.plan()
        plan = Plan(diff["before"], diff["after"])
        if todo is not None:
            plan.add("write the PKI under %s" % ca.pki_dir, todo)
        return plan

    def result(self, observed, plan):
        out = dict(self.ca_result)
        out.pop("changed", None)
        return out
