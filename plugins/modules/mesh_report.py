#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mesh_report
short_description: Write the mesh report, one self-contained HTML page
description:
  - Gathers what the mesh looks like now and writes it as one HTML file with inline CSS and
    an inline SVG picture (no script, nothing fetched from anywhere).
  - The picture - clusters grouped by network, primaries and remotes, each cluster's
    east-west gateway with its address, the remote secrets between clusters (an arrow at
    the cluster an istiod reads; dashed when a secret the topology needs is missing), the VM
    groups under their cluster.
  - The trust chain - the root's SHA-256 fingerprint and expiry (and the next or previous root
    during a rotation), each cluster intermediate's expiry and which root signed it, read
    from the certificates under C(<state_dir>/pki); the root key is never read.
  - The sync table - each primary's istiod (its C(/debug/clusterz), what
    M(meshfleet.mesh.mesh_verify) checks) against every cluster it must see.
  - The remote secrets of every cluster with their token's expiry (the earlier of the JWT's
    C(exp) claim and the C(meshfleet.io/token-expires) annotation); tokens are decoded for
    that and never returned or shown.
  - The latest verification results (O(verify_results_file), written by the
    C(meshfleet.mesh.verify) role), or "not verified yet".
  - An unreachable cluster or istiod is shown as such; it does not fail the module.
  - The file is rewritten only when its content changes; the generation time in the page
    does not count as a change.
version_added: 0.1.0
author: Meshfleet engineers (@meshfleet)
options:
  state_dir:
    description: The mesh state directory (C(meshfleet_state_dir)).
    type: path
    required: true
  dest:
    description: Where to write the page. Default C(<state_dir>/report/mesh-report.html).
    type: path
  clusters:
    description:
      - The clusters, each with C(name) and optionally C(network), C(role) (C(primary) or
        C(remote)), C(primary), C(provider), C(eastwest_address) (the inventory's, shown next
        to the observed one), C(kubeconfig) (default C(<state_dir>/clusters/<name>/kubeconfig)),
        C(istiod_url) (default the local istiod recorded in the state dir) and
        C(expect_clusters) (the clusters its istiod must see; default every other cluster).
    type: list
    elements: dict
    required: true
  vm_groups:
    description:
      - The VM groups, each with C(name), C(cluster), C(network), C(namespace), C(provider)
        and C(hosts) (a list of C(name) and C(address)). Their WorkloadEntries are looked up
        in C(namespace) of their cluster.
    type: list
    elements: dict
    default: []
  mesh:
    description: The mesh block of the topology (C(id), C(trust_domain), C(istio.version)) for the heading.
    type: dict
    default: {}
  title:
    description: Page title. Default C(Mesh <mesh id>).
    type: str
  verify_results_file:
    description: The latest verification results (JSON). Default C(<state_dir>/verify-results.json).
    type: path
  namespace:
    description: Istio's namespace in the clusters.
    type: str
    default: istio-system
  cert_warn_days:
    description: A certificate expiring within this many days is shown as C(expiring).
    type: int
    default: 30
  token_warn_seconds:
    description:
      - A remote-secret token expiring within this many seconds is shown as C(expiring)
        (default the C(meshfleet.mesh.mesh_links) role's renewal threshold).
    type: int
    default: 201600
  timeout:
    description: Seconds to wait for each answer of an API server or istiod.
    type: int
    default: 5
attributes:
  check_mode:
    description: Gathers everything and reports whether the page would change; writes nothing.
    support: full
  diff_mode:
    description: The page before and after.
    support: full
notes:
  - Runs in the controller's process (an action plugin with the module's arguments and
    results); the report is about the controller's state dir.
  - Reads the clusters with the collection's own Kubernetes client; needs the Python
    library C(cryptography) for the trust chain.
'''

EXAMPLES = r'''
- name: Mesh report
  meshfleet.mesh.mesh_report:
    state_dir: /srv/mesh/.meshfleet
    mesh: {id: mesh1, trust_domain: cluster.local, istio: {version: "1.30"}}
    clusters:
      - {name: cluster1, network: network1, role: primary, provider: kwok}
      - {name: cluster2, network: network2, role: remote, primary: cluster1, provider: kwok}
    vm_groups:
      - {name: web, cluster: cluster1, network: network1, namespace: vm-web, hosts: [{name: vm1, address: 10.77.0.2}]}
  register: report
'''

RETURN = r'''
dest:
  description: The page's path.
  returned: always
  type: str
size:
  description: The page's size in bytes.
  returned: always
  type: int
summary:
  description: Counts - clusters, unreachable clusters, synced cells, remote secrets, tokens not valid, verification.
  returned: always
  type: dict
report:
  description: Everything the page shows (no token, no key).
  returned: always
  type: dict
'''

from ansible_collections.meshfleet.mesh.plugins.module_utils.mesh_report import MeshReportModule


def main():
    MeshReportModule()()


if __name__ == "__main__":
    main()
