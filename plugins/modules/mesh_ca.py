#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mesh_ca
short_description: Root CA and per-cluster Istio plug-in intermediate CAs for the mesh
description:
  - Creates (or imports) the mesh root CA and issues one intermediate CA per cluster, in the
    four files Istio's plug-in CA expects (C(ca-cert.pem), C(ca-key.pem), C(root-cert.pem),
    C(cert-chain.pem)) under C(<state_dir>/pki/<cluster>/).
  - The root lives in C(<state_dir>/pki/root/) (C(root-cert.pem), C(root-key.pem)). The root key
    never leaves that folder; it is never returned and never copied into a cluster folder.
  - Idempotent. An intermediate is re-issued only when it is missing, expires within
    O(renew_before_days), its key does not match its certificate, it is not signed by the current
    root, its key type or subject no longer match the options, or it is named in O(force_reissue).
    A cluster whose intermediate is fine but whose C(root-cert.pem) or C(cert-chain.pem) is stale
    (for example during a root rotation) only gets those two files rewritten (status C(updated)).
  - Root rotation in three steps, see O(root_rotation) and docs/trust.md.
  - "Runs on the controller. Use it with C(delegate_to: localhost) and C(run_once: true), as the
    role meshfleet.mesh.trust does."
  - Uses the Python C(cryptography) library only; no openssl binary.
version_added: 0.1.0
author: Meshfleet engineers (@meshfleet)
requirements:
  - cryptography >= 41
options:
  state_dir:
    description:
      - The mesh state directory. The module writes C(<state_dir>/pki) (mode 0700 folders, keys
        0600, certificates 0644). A missing O(state_dir) is created with mode 0700; an existing one
        keeps its mode.
    type: path
    required: true
  clusters:
    description:
      - Names of the clusters that get an intermediate CA (DNS-1123 labels; C(root) is reserved).
      - Cluster folders under C(<state_dir>/pki) that are not listed are left alone and reported in
        RV(unmanaged_clusters).
    type: list
    elements: str
    default: []
  state:
    description:
      - V(present) issues and maintains the listed clusters' material.
      - V(absent) deletes the listed clusters' folders (the four files). The root is never deleted.
    type: str
    choices: [present, absent]
    default: present
  key_type:
    description:
      - Key type of newly generated keys (the root when it is created, and intermediates).
      - Changing it re-issues the intermediates (reason C(key type changed)); an existing root keeps
        its key until it is rotated.
    type: str
    choices: [ecdsa-p256, rsa-2048, rsa-4096]
    default: ecdsa-p256
  root_days:
    description: Lifetime in days of a newly created root CA.
    type: int
    default: 3650
  intermediate_days:
    description:
      - Lifetime in days of newly issued intermediate CAs; capped at the root's expiry.
      - Must be greater than O(renew_before_days).
    type: int
    default: 730
  renew_before_days:
    description: Re-issue an intermediate that expires within this many days.
    type: int
    default: 30
  backdate_minutes:
    description: Set NotBefore this many minutes in the past, against clock skew between clusters.
    type: int
    default: 5
  organization:
    description:
      - Organization (O) of the root and intermediate subjects. Intermediates are
        C(O=<organization>, CN=Intermediate CA, L=<cluster>); a created root is
        C(O=<organization>, CN=Root CA).
      - Changing it re-issues the intermediates (reason C(subject changed)).
    type: str
    default: Istio
  root_cert_file:
    description:
      - Import an existing root CA certificate (PEM) instead of generating one. Requires
        O(root_key_file). It must be a CA (basicConstraints CA:true, no pathlen:0), unexpired,
        and match the key.
      - When a root already exists and this one differs, the module fails unless
        O(root_rotation=introduce), which introduces the imported root as the new root.
      - The certificate (the first one in the file) and the key are copied into
        C(<state_dir>/pki/root/); the key byte for byte, so an encrypted key stays encrypted.
    type: path
  root_key_file:
    description: Private key (PEM, PKCS#1/SEC1/PKCS#8, optionally encrypted) of O(root_cert_file).
    type: path
  root_key_passphrase:
    description:
      - Passphrase of encrypted root keys (an imported O(root_key_file), the keys kept in
        C(pki/root/)). Unencrypted keys load without it.
      - When set, a root key the module generates is stored encrypted with it.
    type: str
  root_rotation:
    description:
      - Root rotation in three runs, so that no step has a moment where two parts of the mesh
        distrust each other (docs/trust.md).
      - V(none) keeps the roots as they are; during a rotation window both roots stay trusted.
      - V(introduce) creates a new root (or introduces O(root_cert_file)) as
        C(root/next-root-cert.pem) with its key and adds it to every C(root-cert.pem) (current
        root first). The intermediates stay as they are (still signed by the current root), so every
        workload learns to trust the new root before any certificate chains to it. Running it
        again while the window is open changes nothing.
      - V(switch), once every workload holds the two-root bundle, makes the introduced root the
        current one (the old one moves to C(root/previous-root-cert.pem)) and re-issues every
        listed intermediate from it; every C(root-cert.pem) still holds both roots (new first).
        Without an introduced root it changes nothing.
      - V(retire), once every workload holds a certificate from a new intermediate, ends the
        window; it drops the old root from every C(root-cert.pem), deletes the old root key and
        archives its certificate in C(root/retired/). Without a switched window it changes
        nothing; right after V(introduce) it is refused (switch first).
    type: str
    choices: [none, introduce, switch, retire]
    default: none
  force_reissue:
    description:
      - Re-issue these clusters' intermediates now, even if they are valid (intermediate-only
        rotation, or a suspected key compromise). Every name must be in O(clusters).
      - Not idempotent by design; pass it for one run (for example with C(-e)).
    type: list
    elements: str
    default: []
notes:
  - Check mode computes what would be issued and writes nothing.
  - Diff mode shows subjects, fingerprints, expiry dates and reasons; never key material.
attributes:
  check_mode:
    description: Computes what would be issued, re-issued or rotated and writes nothing.
    support: full
  diff_mode:
    description: Shows subjects, fingerprints, expiry dates and reasons; never key material.
    support: full
seealso:
  - name: Istio plug-in CA certificates
    description: What Istio expects in the cacerts secret.
    link: https://istio.io/latest/docs/tasks/security/cert-management/plugin-ca-cert/
'''

EXAMPLES = r'''
- name: Root CA and one intermediate per cluster
  meshfleet.mesh.mesh_ca:
    state_dir: /srv/mesh/.meshfleet
    clusters: [cluster1, cluster2, cluster3]
  delegate_to: localhost
  run_once: true
  register: pki

- name: Import an existing root (RSA intermediates, 1 year)
  meshfleet.mesh.mesh_ca:
    state_dir: /srv/mesh/.meshfleet
    clusters: [cluster1, cluster2]
    root_cert_file: /secure/root-cert.pem
    root_key_file: /secure/root-key.pem
    key_type: rsa-4096
    intermediate_days: 365
  delegate_to: localhost
  run_once: true

- name: Root rotation, step 1 - trust a new root beside the old one (intermediates unchanged)
  meshfleet.mesh.mesh_ca:
    state_dir: /srv/mesh/.meshfleet
    clusters: [cluster1, cluster2]
    root_rotation: introduce
  delegate_to: localhost
  run_once: true

- name: Root rotation, step 2 - intermediates from the new root, both roots still trusted
  meshfleet.mesh.mesh_ca:
    state_dir: /srv/mesh/.meshfleet
    clusters: [cluster1, cluster2]
    root_rotation: switch
  delegate_to: localhost
  run_once: true

- name: Root rotation, last step, after every workload holds a new-root certificate
  meshfleet.mesh.mesh_ca:
    state_dir: /srv/mesh/.meshfleet
    clusters: [cluster1, cluster2]
    root_rotation: retire
  delegate_to: localhost
  run_once: true

- name: Intermediate-only rotation of cluster2
  meshfleet.mesh.mesh_ca:
    state_dir: /srv/mesh/.meshfleet
    clusters: [cluster1, cluster2]
    force_reissue: [cluster2]
  delegate_to: localhost
  run_once: true
'''

RETURN = r'''
module_args:
  description: The arguments a re-run passes (those it ran with, defaults filled in, C(no_log)
    values masked; one-shot requests it fulfilled left out); C(site.yml) records them in the
    converge receipt (M(meshfleet.mesh.converge_receipt)).
  returned: success
  type: dict
receipt_step:
  description: The module's class (C(<module_utils file>.<class>)), which makes this result a
    converge-receipt step; the receipt runs the class's check on the next run.
  returned: always
  type: str
pki_dir:
  description: The PKI folder, C(<state_dir>/pki).
  returned: always
  type: str
root:
  description: The current root CA (no key material). Null with O(state=absent) when there is no root.
  returned: always
  type: dict
  contains:
    status:
      description: "C(created), C(imported), C(switched) (the introduced root became the current
        one), C(restored) (a lost C(root-key.pem) put back from O(root_key_file)) or C(unchanged)."
      type: str
    cert: {description: Path of the root certificate., type: str}
    subject: {description: Subject (RFC 4514)., type: str}
    issuer: {description: Issuer (RFC 4514)., type: str}
    serial: {description: Serial number (hex)., type: str}
    fingerprint_sha256: {description: SHA-256 fingerprint (colon-separated hex)., type: str}
    not_before: {description: "NotBefore (UTC, ISO 8601).", type: str}
    not_after: {description: "NotAfter (UTC, ISO 8601).", type: str}
    key_type: {description: Key type., type: str}
previous_root:
  description: The old root between C(switch) and C(retire) (same fields as RV(root)), else null.
  returned: always
  type: dict
next_root:
  description: The introduced root between C(introduce) and C(switch), trusted but not signing
    (same fields as RV(root); C(status) is C(introduced) in the run that made it), else null.
  returned: always
  type: dict
trust_bundle:
  description: SHA-256 fingerprints of the roots in every cluster's C(root-cert.pem), in order.
  returned: always
  type: list
  elements: str
rotation:
  description: What happened to the roots in this run.
  returned: always
  type: dict
  contains:
    action: {description: "C(none), C(introduced), C(switched) or C(retired).", type: str}
    window_open: {description: Whether two roots are trusted after this run., type: bool}
    phase: {description: "C(none), C(introduced) (new root trusted, old one signs) or C(switched)
        (new root signs, old one still trusted), after this run.", type: str}
    retired_fingerprint: {description: Fingerprint of the root retired in this run., type: str}
clusters:
  description: Per cluster, what happened and where its files are.
  returned: always
  type: dict
  sample:
    cluster1:
      status: issued
      reason: missing
      files:
        ca_cert: /srv/mesh/.meshfleet/pki/cluster1/ca-cert.pem
        ca_key: /srv/mesh/.meshfleet/pki/cluster1/ca-key.pem
        root_cert: /srv/mesh/.meshfleet/pki/cluster1/root-cert.pem
        cert_chain: /srv/mesh/.meshfleet/pki/cluster1/cert-chain.pem
      subject: L=cluster1,CN=Intermediate CA,O=Istio
      issuer: CN=Root CA,O=Istio
      fingerprint_sha256: "3F:2A:..."
      not_before: "2025-01-01T11:55:00Z"
      not_after: "2027-01-01T12:00:00Z"
      key_type: ecdsa-p256
      trust_bundle: ["AB:CD:..."]
  contains:
    status:
      description: "C(issued), C(reissued), C(updated) (only root-cert.pem/cert-chain.pem rewritten),
        C(unchanged), C(removed) or C(absent)."
      type: str
    reason:
      description: "Why, for example C(missing), C(expiring), C(key mismatch),
        C(not signed by current root), C(root bundle changed), C(forced)."
      type: str
summary:
  description: Number of clusters per status.
  returned: always
  type: dict
unmanaged_clusters:
  description: Cluster folders under C(pki/) that were not in O(clusters) and were left alone.
  returned: always
  type: list
  elements: str
'''

from ansible_collections.meshfleet.mesh.plugins.module_utils.mesh_ca import MeshCAModule


def main():
    MeshCAModule()()


if __name__ == "__main__":
    main()
