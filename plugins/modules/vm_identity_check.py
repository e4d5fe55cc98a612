#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: vm_identity_check
short_description: Prove a VM's mesh identity (workload certificate, chain, mutual TLS)
description:
  - Runs on the VM (Python 3 standard library and the C(openssl) command), so the workload key
    never leaves it.
  - O(mode=check) reads the Istio agent's workload certificate C(<cert_dir>/cert-chain.pem) and
    returns its URI SANs (the SPIFFE id), validity and issuer, and whether the chain verifies
    (C(openssl verify)) to O(root_bundle) (the mesh root from the controller) and to the agent's
    own C(root-cert.pem). Fails unless the chain verifies, the certificate is valid now and,
    when given, O(expected_spiffe_id) is among its SANs.
  - O(mode=serve) accepts one mutual-TLS connection with the workload certificate and key,
    requiring a client certificate that verifies to O(root_bundle); O(mode=connect) makes one,
    verifying the server's chain the same way. Both return the peer's SPIFFE ids and fail when
    O(expected_peer_spiffe_id) is given and not among them.
  - O(mode=relay) (on the controller) forwards one TCP connection from O(listen_address) to
    O(address), for VMs whose networks do not route to each other; it sees only ciphertext.
version_added: 0.1.0
author: Meshfleet engineers (@meshfleet)
options:
  mode:
    description: What to do.
    type: str
    choices: [check, serve, connect, relay]
    default: check
  cert_dir:
    description: Where the agent writes its certificate (C(OUTPUT_CERTS)).
    type: path
    default: /etc/certs
  root_bundle:
    description: PEM of the trusted root(s) (the mesh root bundle). Required except for O(mode=relay).
    type: str
  expected_spiffe_id:
    description: The SPIFFE id the certificate must carry (O(mode=check)).
    type: str
  expected_peer_spiffe_id:
    description: The SPIFFE id the peer must present (O(mode=serve) and O(mode=connect)).
    type: str
  address:
    description: Address to listen on (serve), connect to (connect) or forward to (relay).
    type: str
  port:
    description: Port for O(address).
    type: int
  listen_address:
    description: Address the relay listens on.
    type: str
  listen_port:
    description: Port the relay listens on (default O(port)).
    type: int
  timeout:
    description: Seconds to wait for the connection (serve, relay) or the handshake.
    type: int
    default: 30
'''

EXAMPLES = r'''
- name: The VM's workload certificate carries its SPIFFE id and chains to the mesh root
  meshfleet.mesh.vm_identity_check:
    root_bundle: "{{ lookup('ansible.builtin.file', meshfleet_state_dir ~ '/pki/cluster1/root-cert.pem') }}"
    expected_spiffe_id: spiffe://cluster.local/ns/vm-web/sa/web
'''

RETURN = r'''
spiffe_ids:
  description: URI SANs of the workload certificate (check).
  returned: mode check
  type: list
  elements: str
chain_verified:
  description: Whether the chain verifies to O(root_bundle) (check).
  returned: mode check
  type: bool
not_after:
  description: Expiry of the workload certificate (check).
  returned: mode check
  type: str
chain_pem:
  description: The certificate chain (public; never the key) (check).
  returned: mode check
  type: str
peer_spiffe_ids:
  description: SPIFFE ids the peer presented (serve, connect).
  returned: modes serve and connect
  type: list
  elements: str
tls_version:
  description: Negotiated TLS version (serve, connect).
  returned: modes serve and connect
  type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_identity import (
    IdentityError, check_certificate, connect_once, relay_once, serve_once)


def main():
    module = AnsibleModule(
        argument_spec=dict(
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
        ),
        required_if=[("mode", "check", ("root_bundle",)),
                     ("mode", "serve", ("root_bundle", "address", "port")),
                     ("mode", "connect", ("root_bundle", "address", "port")),
                     ("mode", "relay", ("address", "port", "listen_address"))],
        supports_check_mode=True,
    )
    p = module.params
    try:
        if p["mode"] == "check":
            res = check_certificate(p["cert_dir"], p["root_bundle"], p["expected_spiffe_id"])
            problems = []
            if not res.get("chain_verified"):
                problems.append("the chain does not verify to the root bundle: %s" % res.get("verify"))
            if not res.get("valid_now"):
                problems.append("the certificate is not valid now (not after %s)" % res.get("not_after"))
            if p["expected_spiffe_id"] and not res.get("spiffe_id_ok"):
                problems.append("the certificate's SPIFFE ids %s do not include %s"
                                % (res.get("spiffe_ids"), p["expected_spiffe_id"]))
            if problems:
                module.fail_json(msg="; ".join(problems), **res)
            module.exit_json(changed=False, **res)
        if module.check_mode:
            module.exit_json(changed=False, skipped=True, msg="nothing is listened on or sent in check mode")
        if p["mode"] == "relay":
            res = relay_once(p["listen_address"], p["listen_port"] or p["port"], p["address"], p["port"],
                             p["timeout"])
            module.exit_json(changed=False, **res)
        if p["mode"] == "serve":
            res = serve_once(p["address"], p["port"], p["cert_dir"], p["root_bundle"], p["timeout"])
        else:
            res = connect_once(p["address"], p["port"], p["cert_dir"], p["root_bundle"], p["timeout"])
        want = p["expected_peer_spiffe_id"]
        if want and want not in res["peer_spiffe_ids"]:
            module.fail_json(msg="the peer presented %s, not %s" % (res["peer_spiffe_ids"], want), **res)
        module.exit_json(changed=False, **res)
    except (IdentityError, IOError, OSError) as e:
        module.fail_json(msg=str(e))


if __name__ == "__main__":
    main()
