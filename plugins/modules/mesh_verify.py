#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mesh_verify
short_description: Verify a multi-cluster Istio mesh end to end
description:
  - Every istiod reports every cluster it must read as C(synced) (C(/debug/clusterz), what
    C(istioctl remote-clusters) reads).
  - C(istio-ca-root-cert) in every cluster holds the mesh's roots, and each cluster's
    plug-in CA (C(cacerts)) is signed by a mesh root, with a chain ending at it.
  - Cross-network discovery - a probe Service created in a cluster of another network
    shows up in each istiod's registry with endpoints on its own network, and istiod knows
    that network's gateway at the cluster's east-west address (where it sends the traffic).
  - Changes nothing that stays - the probe namespace is removed afterwards; C(changed) is always false.
version_added: 0.1.0
author: Meshfleet engineers (@meshfleet)
extends_documentation_fragment:
  - meshfleet.mesh.k8s_auth
  - meshfleet.mesh.cluster.WAIT
options:
  clusters:
    description:
      - The clusters, each with C(name), C(kubeconfig), C(network), C(role), optional
        C(eastwest_address), C(istiod_url) and C(expect_clusters) (default every other cluster).
    type: list
    elements: dict
    required: true
  root_bundle_file:
    description: PEM file with the mesh's root certificate(s).
    type: path
    required: true
  state_dir:
    description: Mesh state dir; local istiod URLs are read from it when C(istiod_url) is not given.
    type: path
  namespace:
    description: Istio system namespace.
    type: str
    default: istio-system
  probe:
    description: Run the cross-network discovery probe.
    type: bool
    default: true
  keep_probe:
    description: Leave the probe namespace in place (for debugging).
    type: bool
    default: false
attributes:
  check_mode:
    description: Runs the same checks; the probe is skipped in check mode.
    support: full
  diff_mode:
    description: Nothing to diff.
    support: none
'''

EXAMPLES = r'''
- name: Verify the mesh
  meshfleet.mesh.mesh_verify:
    state_dir: /srv/mesh/.meshfleet
    root_bundle_file: /srv/mesh/.meshfleet/pki/cluster1/root-cert.pem
    clusters:
      - {name: cluster1, kubeconfig: /srv/mesh/.meshfleet/clusters/cluster1/kubeconfig, network: network1, role: primary}
      - {name: cluster2, kubeconfig: /srv/mesh/.meshfleet/clusters/cluster2/kubeconfig, network: network2, role: primary}
'''

RETURN = r'''
report:
  description: Per-cluster findings (root fingerprints, intermediate, clusterz), probes and the check lines.
  returned: always
  type: dict
summary:
  description: How many checks passed.
  returned: success
  type: str
'''

from ansible_collections.meshfleet.mesh.plugins.module_utils.mesh_verify import MeshVerifyModule


def main():
    MeshVerifyModule()()


if __name__ == "__main__":
    main()
