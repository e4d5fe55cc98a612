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

from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_identity_check import VmIdentityCheckModule


def main():
    VmIdentityCheckModule()()


if __name__ == "__main__":
    main()
