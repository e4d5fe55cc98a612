#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: local_lb
short_description: Give the LoadBalancer Services of a local real-node cluster addresses from its pool
description:
  - The local load balancer of real-node clusters, as MetalLB or cloud-provider-kind are
    elsewhere - each Service of C(type=LoadBalancer) gets one address from the cluster's pool,
    written into its C(status.loadBalancer.ingress). kube-proxy in the cluster's node forwards
    that address to the Service's pods; the local networks (M(meshfleet.mesh.local_network)) route
    the pool to the node, from every Istio network of the mesh.
  - A Service keeps the pool address it has; else it gets the address it asks for in
    C(spec.loadBalancerIP) when that is in the pool and free; else the lowest free one, oldest
    Services first. No address is given to two Services. Services with a C(spec.loadBalancerClass)
    are left to their controller.
  - A Service that cannot get an address (its request outside the pool or held by another, the
    pool full) keeps its status; it is returned in RV(unassigned) and warned about.
  - Runs once per call (it is a converge step, not a controller): a Service created later gets
    its address at the next run.
version_added: 0.1.0
author: Meshfleet engineers (@meshfleet)
extends_documentation_fragment:
  - meshfleet.mesh.k8s_auth
options:
  kubeconfig:
    description: Kubeconfig of the cluster.
    type: path
    required: true
  context:
    description: Context in the kubeconfig (default its current context).
    type: str
  node_slot:
    description: The slot of the cluster's node; the pool is that node's (C(10.130.<slot>.0/24), from C(.10)).
    type: int
  pool:
    description: The pool as a CIDR inside C(10.130.0.0/16), a C(/27) or larger; addresses from C(.10).
    type: str
attributes:
  check_mode:
    description: Reports which Service would get which address; writes nothing.
    support: full
  diff_mode:
    description: Shows each changed Service's load-balancer ingress before and after.
    support: full
'''

EXAMPLES = r'''
- name: Load-balancer addresses for cluster1's Services
  meshfleet.mesh.local_lb:
    kubeconfig: /srv/mesh/.meshfleet/clusters/cluster1/kubeconfig
    pool: 10.130.0.0/24
'''

RETURN = r'''
addresses:
  description: The address of each LoadBalancer Service (namespace/name) that has one from the pool.
  returned: success
  type: dict
  sample: {istio-system/istio-eastwestgateway: 10.130.0.10}
unassigned:
  description: The Services left without an address, and why.
  returned: success
  type: dict
'''

from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet.lb import LocalLbModule


def main():
    LocalLbModule()()


if __name__ == "__main__":
    main()
