#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mesh_traffic
short_description: Send requests across the mesh and report who answered (Istio's multicluster check)
description:
  - From the curl client pod of each cluster (O(client_selector) in O(namespace)), O(requests) requests to
    C(http://<service>.<namespace>:<port><path>) (Istio's sample - C(helloworld.sample:5000/hello)), run in the
    pod through the API server (exec), as Istio's "Verify the installation" does with its C(curl) (sleep) sample.
  - Reports, per source cluster, how many answers came from each version, and how many crossed networks (the
    serving pod, named in the answer, is found among the clusters' helloworld pods with its network).
  - Reads each cluster's east-west gateway's Envoy stats (C(pilot-agent request GET stats) in its proxy) before
    and after - the cross-network listener (15443) and the service's SNI cluster.
  - Reads the serving sidecars' access logs - the caller's SPIFFE id each one verified (mTLS), per calling
    cluster (the real-node clusters' C(meshConfig.accessLogFormat) has C(peer=) and C(ua=)).
  - Fails, naming the source and the version, when a version never answers a source, when a source gets no
    answer, and when a serving sidecar saw a caller without a SPIFFE id. Changes nothing.
version_added: 0.1.0
author: Meshfleet engineers (@meshfleet)
extends_documentation_fragment:
  - meshfleet.mesh.k8s_auth
  - meshfleet.mesh.cluster.WAIT
options:
  clusters:
    description: The clusters; each sends requests from its curl pod unless C(client=false).
    type: list
    elements: dict
    required: true
    suboptions:
      name: {description: The cluster's name., type: str, required: true}
      kubeconfig: {description: Its kubeconfig., type: path, required: true}
      network: {description: Its Istio network., type: str, required: true}
      client: {description: Send requests from this cluster's curl pod., type: bool, default: true}
  namespace: {description: The sample apps' namespace., type: str, default: sample}
  service: {description: The service called., type: str, default: helloworld}
  port: {description: Its port., type: int, default: 5000}
  path: {description: The path requested., type: str, default: /hello}
  requests: {description: Requests from each source cluster (at least 1)., type: int, default: 20}
  versions:
    description: The versions that must each answer every source (the C(version) label of the serving pods).
    type: list
    elements: str
    default: [v1, v2]
  client_selector: {description: Label selector of the curl client pods., type: str, default: app=curl}
  client_namespace: {description: "The curl client pods' namespace (default: O(namespace)).", type: str}
  client_container: {description: The container of the client pod that runs curl., type: str, default: curl}
  server_selector: {description: Label selector of the serving pods., type: str, default: app=helloworld}
  gateway_namespace: {description: Namespace of the east-west gateways., type: str, default: istio-system}
  gateway_selector: {description: Label selector of the east-west gateway pods., type: str, default: istio=eastwestgateway}
  proxy_container: {description: The Envoy container of the gateways and sidecars., type: str, default: istio-proxy}
  request_timeout: {description: Seconds each request may take (curl -m)., type: int, default: 5}
  mtls:
    description: Read the serving sidecars' access logs and fail on callers without a SPIFFE id.
    type: bool
    default: true
  vm_servers:
    description:
      - VMs that serve O(service) too (a VM group's Service), each answering with its C(name) as the instance. Their
        answers count under C(version), as crossing networks when C(network) differs from the caller's; the east-west
        gateway of C(cluster) (the VM group's cluster) is the one such answers cross. Their sidecars' access logs are on
        the VMs, so O(mtls) reads only the pods'.
    type: list
    elements: dict
    default: []
    suboptions:
      name: {description: The VM's name (the instance in its answers)., type: str, required: true}
      cluster: {description: The VM group's cluster., type: str, required: true}
      network: {description: The VM group's network., type: str, required: true}
      version: {description: The version in its answers., type: str, required: true}
attributes:
  check_mode:
    description: The same requests and reads (nothing is changed either way).
    support: full
  diff_mode:
    description: Nothing to diff.
    support: none
'''

EXAMPLES = r'''
- name: Requests from every cluster's curl to helloworld, answered by v1 (network1) and v2 (network2)
  meshfleet.mesh.mesh_traffic:
    requests: 20
    clusters:
      - {name: cluster1, kubeconfig: /srv/mesh/.meshfleet/clusters/cluster1/kubeconfig, network: network1}
      - {name: cluster3, kubeconfig: /srv/mesh/.meshfleet/clusters/cluster3/kubeconfig, network: network2}
  register: traffic

- name: The request table
  ansible.builtin.debug:
    msg: "{{ traffic.report.lines }}"
'''

RETURN = r'''
report:
  description: What the requests showed (also on failure).
  returned: always
  type: dict
  contains:
    table: {description: "Source cluster -> version -> count of answers.", type: dict}
    crossed: {description: Source cluster -> answers from a pod in another network., type: dict}
    cross_network_share: {description: Share of all answers that crossed networks (0..1)., type: float}
    gateways:
      description: Per cluster's east-west gateway - its pod, network, counters (after) and their delta.
      type: dict
    mtls:
      description: Per serving pod - its cluster, version, the callers' SPIFFE ids (C(peers)), C(by_source)
        (C(<source>|<SPIFFE id>|<count>)) and how many callers had none (C(plaintext)).
      type: dict
    errors: {description: Source cluster -> the first failed requests' output., type: dict}
    lines: {description: The table as text lines., type: list, elements: str}
summary:
  description: One line - how many answers, from which versions, the cross-network share.
  returned: success
  type: str
'''

from ansible_collections.meshfleet.mesh.plugins.module_utils.mesh_traffic import MeshTrafficModule


def main():
    MeshTrafficModule()()


if __name__ == "__main__":
    main()
