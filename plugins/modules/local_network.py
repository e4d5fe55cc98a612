#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: local_network
short_description: Join the real nodes of a local mesh by Istio network (routers, a core, routes)
description:
  - Local real-node clusters each run their node in a network namespace of its own. This module
    joins those nodes the way the mesh's Istio networks say - one router namespace per network, to
    which each node of that network is linked, and one core namespace per mesh that links the
    routers.
  - Clusters on the same network reach each other's pods, services and load-balancer addresses
    through their router. Between networks only load-balancer addresses (the east-west gateways)
    are routed, through the core; a pod address of another network has no route (a direct
    connection fails), as in a multi-network mesh in production.
  - Forwarding is turned on only inside the core and router namespaces this module creates; it
    adds no route and changes no sysctl on the host. Everything stays on this machine.
  - Each node namespace must exist (the cluster step creates it); here it only gets C(eth0) on its
    router and a default route through it.
  - Each netns VM of O(vms) (provider C(netns), namespace C(mf-<name>)) whose network has a
    real-node cluster is joined to that network's router too - C(mesh0), routes for the pod and
    load-balancer ranges through it, and the router's route to the VM's address - so it is one
    more host of its Istio network, as a VM in the cluster's VPC is in production. A VM whose
    namespace does not exist yet is left for the next run (RV(vms_waiting)).
  - The namespaces' numbers come from the machine-wide slot registry
    (C(${MESHFLEET_LOCALNET_DIR:-~/.cache/meshfleet/localnet})), so several meshes share a machine.
  - O(state=absent) removes the core, the routers (and with them every node's link) and releases
    the mesh's slots. Needs root.
version_added: 0.1.0
author: Meshfleet engineers (@meshfleet)
options:
  state_dir:
    description: The mesh state directory (the mesh's slots are held in its name).
    type: path
    required: true
  clusters:
    description:
      - The mesh's real-node clusters. An empty list with O(state=present) removes the networks too.
      - Each names its node by exactly one of O(clusters[].node_slot), O(clusters[].node_netns) or
        O(clusters[].cluster_dir).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Cluster name.
        type: str
        required: true
      network:
        description: The cluster's Istio network.
        type: str
        required: true
      node_slot:
        description: The node's slot (its namespace is C(mfn-<slot>)).
        type: int
      node_netns:
        description: The node's network namespace (C(mfn-<slot>)).
        type: str
      cluster_dir:
        description: The cluster's folder, under which the node runtime reserved the node's slot.
        type: path
  vms:
    description:
      - The mesh's netns VMs. Those on a network without a real-node cluster are not joined
        (RV(vms_not_routed)); a VM left out of the list loses its link slot.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: VM name (its namespace is C(mf-<name>) unless O(vms[].netns) says otherwise).
        type: str
        required: true
      network:
        description: The VM group's Istio network.
        type: str
        required: true
      address:
        description: The VM's address (its WorkloadEntry address), routed to it by the router.
        type: str
        required: true
      netns:
        description: The VM's network namespace.
        type: str
  state:
    description: Whether the networks should exist.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    description: Reports every namespace, link, address, route and rule that would change; changes nothing.
    support: full
  diff_mode:
    description: Shows each namespace's links, routes, forwarding and NAT rule before and after.
    support: full
notes:
  - The picture and the address plan are in docs/real-pods.md, section "Networks".
'''

EXAMPLES = r'''
- name: Join the real nodes of the mesh
  meshfleet.mesh.local_network:
    state_dir: /srv/mesh/.meshfleet
    clusters:
      - {name: cluster1, network: network1, cluster_dir: /srv/mesh/.meshfleet/clusters/cluster1}
      - {name: cluster2, network: network1, cluster_dir: /srv/mesh/.meshfleet/clusters/cluster2}
      - {name: cluster3, network: network2, node_netns: mfn-2}
    vms:
      - {name: vm1, network: network1, address: 10.77.0.2}

- name: Remove them
  meshfleet.mesh.local_network:
    state_dir: /srv/mesh/.meshfleet
    state: absent
'''

RETURN = r'''
core:
  description: The core namespace.
  returned: state=present
  type: str
  sample: mfc-0
routers:
  description: The router namespace of each network.
  returned: state=present
  type: dict
  sample: {network1: mfr-0, network2: mfr-1}
clusters:
  description: Each cluster's node plan (netns, node_ip, pod_cidr, service_cidr, lb_pool, links).
  returned: state=present
  type: dict
vms:
  description: Each joined VM's plan (netns, address, router_netns, link, vm_routes).
  returned: state=present
  type: dict
vms_waiting:
  description: VMs of O(vms) whose network namespace does not exist yet (joined at a later run).
  returned: state=present
  type: list
  elements: str
vms_not_routed:
  description: VMs of O(vms) on a network without a real-node cluster (not joined).
  returned: state=present
  type: list
  elements: str
steps:
  description: What changed (or would change), in order.
  returned: always
  type: list
  elements: str
'''

from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet.network import LocalNetworkModule


def main():
    LocalNetworkModule()()


if __name__ == "__main__":
    main()
