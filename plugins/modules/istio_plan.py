#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: istio_plan
short_description: Render a cluster's Istio control plane and tell what is out of date
description:
  - Renders each IstioOperator of O(operators) with C(istioctl manifest generate) (the charts
    are embedded in istioctl). The output is cached in O(work_dir), keyed by the IstioOperator
    text and the istioctl binary, so istioctl runs only when one of them changed.
  - Compares the result, the O(namespace_object) and the extra O(objects) with the cluster -
    the hash recorded by the last apply in the ConfigMap O(record_name), then every object's
    presence and its labels and annotations - and returns the batches that
    M(kubernetes.core.k8s) must apply, empty when everything is current.
  - Compares the C(cacerts) secret with the plug-in CA files in O(pki_dir) (result C(cacerts));
    the secret itself is never read into the result.
  - Changes nothing in the cluster. Outside check mode it writes the IstioOperator files and
    the cache into O(work_dir) (mode 0600); in check mode it writes nothing.
version_added: 0.2.0
author: Meshfleet engineers (@meshfleet)
options:
  kubeconfig:
    description:
      - Kubeconfig of the cluster. In check mode a missing file means the cluster does not
        exist yet - everything is reported as pending.
    type: path
    required: true
  context:
    description: Context of O(kubeconfig) (default its current context).
    type: str
  work_dir:
    description: Folder for the IstioOperator files and the cached manifests.
    type: path
    required: true
  operators:
    description: Name (file stem, e.g. C(istio-operator)) to IstioOperator YAML text.
    type: dict
    required: true
  namespace_object:
    description: The Istio system Namespace as it must be (labels such as C(topology.istio.io/network)).
    type: dict
    required: true
  objects:
    description: Objects applied after the rendered manifests (they may need Istio's CRDs),
      for example the C(cross-network-gateway) Gateway.
    type: list
    elements: dict
    default: []
  record_name:
    description: ConfigMap in the Istio namespace that records the hash of the last apply.
    type: str
    default: meshfleet-install
  pki_dir:
    description: Folder of C(ca-cert.pem), C(ca-key.pem), C(root-cert.pem) and C(cert-chain.pem)
      to compare with the C(cacerts) secret.
    type: path
  tools_bin:
    description: Folder holding C(istioctl).
    type: path
    required: true
  reconcile:
    description: Report everything as pending (re-apply even when the recorded hash matches).
    type: bool
    default: false
  gateway:
    description:
      - The east-west gateway to check, as M(meshfleet.mesh.gateway_address) would. Result
        C(gateway.current) is true when that module would change nothing and wait for
        nothing (the override already published, or a load balancer IP present); the role
        then skips it and uses C(gateway.address).
    type: dict
    suboptions:
      service:
        description: Gateway Service in the Istio namespace.
        type: str
        default: istio-eastwestgateway
      address:
        description: The inventory's address override.
        type: str
      publish:
        description: Whether the override is written into the Service's load balancer status.
        type: bool
        default: false
attributes:
  check_mode:
    description: Reads only; renders into a temporary folder that is removed.
    support: full
  diff_mode:
    description: Nothing to show - it changes nothing; the apply task shows the diff.
    support: none
notes:
  - Uses a small built-in REST client instead of the C(kubernetes) package (one process per
    cluster instead of one per object and step; see C(plugins/module_utils/kube_rest.py)).
'''

EXAMPLES = r'''
- name: What cluster1's control plane needs
  meshfleet.mesh.istio_plan:
    kubeconfig: /srv/mesh/.meshfleet/clusters/cluster1/kubeconfig
    work_dir: /srv/mesh/.meshfleet/clusters/cluster1/istio
    tools_bin: /opt/meshfleet/bin
    pki_dir: /srv/mesh/.meshfleet/pki/cluster1
    operators:
      istio-operator: "{{ lookup('ansible.builtin.template', 'istio-operator.yaml.j2') }}"
    namespace_object:
      apiVersion: v1
      kind: Namespace
      metadata: {name: istio-system, labels: {topology.istio.io/network: network1}}
  register: plan

- name: Apply what is out of date
  kubernetes.core.k8s:
    kubeconfig: /srv/mesh/.meshfleet/clusters/cluster1/kubeconfig
    definition: "{{ item }}"
    apply: true
  loop: "{{ plan.batches }}"
'''

RETURN = r'''
pending:
  description: Whether anything must be applied.
  returned: always
  type: bool
reasons:
  description: Why (first install, rendered objects changed, missing objects, drifted labels, reconcile).
  returned: always
  type: list
  elements: str
batches:
  description: Lists of objects to apply in order; empty when nothing is pending.
  returned: always
  type: list
  elements: list
manifests_sha256:
  description: Hash of every object of the batches (recorded in O(record_name) by the apply).
  returned: always
  type: str
objects:
  description: How many objects the control plane has (without the record).
  returned: always
  type: int
cached:
  description: Per IstioOperator, whether the cached istioctl output was used.
  returned: always
  type: dict
cluster_exists:
  description: Whether O(kubeconfig) exists (false only in check mode before the cluster is created).
  returned: always
  type: bool
cacerts:
  description: Whether the C(cacerts) secret matches O(pki_dir) (C(current)) and why (C(reason)).
  returned: always
  type: dict
gateway:
  description: The east-west gateway's C(address), its C(source) and whether it is C(current) (see O(gateway)).
  returned: when O(gateway) is given
  type: dict
'''

from ansible_collections.meshfleet.mesh.plugins.module_utils.istio_plan import IstioPlanModule


def main():
    IstioPlanModule()()


if __name__ == "__main__":
    main()
