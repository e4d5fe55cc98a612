# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The meshfleet.mesh.vm_identity_check module (runs on the VM): its workload certificate
checked (mode check, read-only), or one mTLS exchange served, made or relayed (apply: nothing
is listened on or sent in check mode)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError, MeshfleetModule
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_identity import (
    IdentityError, check_certificate, connect_once, relay_once, serve_once)


class VmIdentityCheckModule(MeshfleetModule):
    argument_spec = dict(
        mode=dict(type="str", default="check", choices=["check", "serve", "connect", "relay"]),
        cert_dir=dict(type="path", default="/etc/certs"),
        root_bundle=dict(type="str"),
        expected_spiffe_id=dict(type="str"),
        expected_peer_spiffe_id=dict(type="str"),
        address=dict(type="str"),
        port=dict(type="int"),
        listen_address=dict(type="str"),
        listen_port=dict(type="int"),
        timeout=dict(type="int", default=30),
    )
    module_kwargs = dict(
        required_if=[("mode", "check", ("root_bundle",)),
                     ("mode", "serve", ("root_bundle", "address", "port")),
                     ("mode", "connect", ("root_bundle", "address", "port")),
                     ("mode", "relay", ("address", "port", "listen_address"))],
    )

    def observe(self):
        p = self.params
        if p["mode"] != "check":
            self.res = dict(skipped=True, msg="nothing is listened on or sent in check mode")
            return None
        try:
            res = check_certificate(p["cert_dir"], p["root_bundle"], p["expected_spiffe_id"])
        except (IdentityError, IOError, OSError) as e:
            raise MeshfleetError(str(e))
        problems = []
        if not res.get("chain_verified"):
            problems.append("the chain does not verify to the root bundle: %s" % res.get("verify"))
        if not res.get("valid_now"):
            problems.append("the certificate is not valid now (not after %s)" % res.get("not_after"))
        if p["expected_spiffe_id"] and not res.get("spiffe_id_ok"):
            problems.append("the certificate's SPIFFE ids %s do not include %s"
                            % (res.get("spiffe_ids"), p["expected_spiffe_id"]))
        if problems:
            raise MeshfleetError("; ".join(problems), **res)
        self.res = res
        return None

    def apply(self, plan, observed):
        p = self.params
        if p["mode"] == "check":
            return
        try:
            if p["mode"] == "relay":
                self.res = relay_once(p["listen_address"], p["listen_port"] or p["port"], p["address"], p["port"],
                                      p["timeout"])
                return
            if p["mode"] == "serve":
                res = serve_once(p["address"], p["port"], p["cert_dir"], p["root_bundle"], p["timeout"])
            else:
                res = connect_once(p["address"], p["port"], p["cert_dir"], p["root_bundle"], p["timeout"])
        except (IdentityError, IOError, OSError) as e:
            raise MeshfleetError(str(e))
        want = p["expected_peer_spiffe_id"]
        if want and want not in res["peer_spiffe_ids"]:
            raise MeshfleetError("the peer presented %s, not %s" % (res["peer_spiffe_ids"], want), **res)
        self.res = res

    def result(self, observed, plan):
        return dict(self.res)
