#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: istio_install
short_description: Install or update a cluster's Istio control plane (rendered by istioctl, server-side applied)
description:
  - Renders each IstioOperator of O(operators) with C(istioctl manifest generate) (the charts
    are embedded in istioctl). The output is cached in O(work_dir), keyed by the IstioOperator
    text and the istioctl binary, so istioctl runs only when one of them changed.
  - Compares the result, the O(namespace_object) and the extra O(objects) with the cluster -
    the hash recorded by the last apply in the ConfigMap O(record_name), then every object's
    presence and its labels and annotations - and applies them when anything is out of date
    (result C(reasons)), in order - the namespace, the rendered manifests (CRDs first, as
    istioctl prints them), the extra O(objects) (waiting until the API server serves the kinds
    of CRDs just installed), the record.
  - Keeps the plug-in CA secret C(cacerts) equal to the files in O(pki_dir); the key material
    is read from those files by the module and never enters the result, the diff or the log.
  - With O(gateway), returns the east-west gateway's address like
    M(meshfleet.mesh.gateway_address) (and publishes an override into the Service status on
    clusters without a load balancer controller).
  - Applies with Kubernetes server-side apply (field manager C(meshfleet), conflicts forced,
    as C(istioctl install) does), one request per object; an unchanged object is not written.
version_added: 0.1.0
author: Meshfleet engineers (@meshfleet)
extends_documentation_fragment:
  - meshfleet.mesh.k8s_auth
options:
  kubeconfig:
    description:
      - Kubeconfig of the cluster. In check mode a missing file means the cluster does not
        exist yet - everything is reported as to be created.
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
      for the C(cacerts) secret. Without it the secret is not managed.
    type: path
  tools_bin:
    description: Folder holding C(istioctl).
    type: path
    required: true
  reconcile:
    description: Apply everything even when the recorded hash matches and nothing is missing
      (objects that match are still not written).
    type: bool
    default: false
  gateway:
    description: The east-west gateway whose address is returned (result C(gateway)).
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
      wait_timeout:
        description: Seconds to wait for a load balancer address when there is no override.
        type: int
        default: 300
      lb_pool:
        description:
          - The load-balancer pool of a local real-node cluster (a CIDR inside C(10.130.0.0/16)):
            the gateway gets its address from it as M(meshfleet.mesh.local_lb) gives one, the
            override (if any) must be in it, and C(publish) is not used.
        type: str
attributes:
  check_mode:
    description: Changes nothing and writes nothing (renders into a temporary folder);
      objects that exist are applied with C(dryRun=All) to tell whether they would change.
    support: full
  diff_mode:
    description: Shows each object that changes (or would) as the API server has it before and
      after; C(cacerts) data only by key and size; created CRDs without their schema.
    support: full
notes:
  - Objects dropped from the rendered manifests (for example by a revision change) are not
    deleted; remove the old revision's objects with C(istioctl uninstall --revision).
'''

EXAMPLES = r'''
- name: Istio on cluster1 (plug-in CA, network label, east-west gateway)
  meshfleet.mesh.istio_install:
    kubeconfig: /srv/mesh/.meshfleet/clusters/cluster1/kubeconfig
    work_dir: /srv/mesh/.meshfleet/clusters/cluster1/istio
    tools_bin: /opt/meshfleet/bin
    pki_dir: /srv/mesh/.meshfleet/pki/cluster1
    operators:
      istio-operator: "{{ lookup('ansible.builtin.template', 'istio-operator.yaml.j2') }}"
      eastwest-operator: "{{ lookup('ansible.builtin.template', 'eastwest-operator.yaml.j2') }}"
    namespace_object:
      apiVersion: v1
      kind: Namespace
      metadata: {name: istio-system, labels: {topology.istio.io/network: network1}}
    gateway:
      address: 10.77.0.1
      publish: true
  register: install
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
changed:
  description: Whether an object, the C(cacerts) secret or the published gateway address changed (or would).
  returned: always
  type: bool
applied:
  description: The objects that changed (or would), as C(Kind namespace/name).
  returned: always
  type: list
  elements: str
pending:
  description: Whether the control plane was out of date (see C(reasons)).
  returned: always
  type: bool
reasons:
  description: Why (first install, rendered objects changed, missing objects, drifted labels, reconcile).
  returned: always
  type: list
  elements: str
manifests_sha256:
  description: Hash of every object applied (recorded in O(record_name)).
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
  description: Whether the C(cacerts) secret matched O(pki_dir) before the run (C(current)),
    why (C(reason)) and whether it was written (C(changed)); istiod must re-read it then.
  returned: always
  type: dict
gateway:
  description: The east-west gateway's C(address) and its C(source) (inventory override, load
    balancer ip or hostname).
  returned: when O(gateway) is given
  type: dict
'''

from ansible_collections.meshfleet.mesh.plugins.module_utils.istio_install import IstioInstallModule


def main():
    IstioInstallModule()()


if __name__ == "__main__":
    main()
