#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: gateway_address
short_description: The address of a cluster's east-west gateway
description:
  - Returns the address other networks use to reach a cluster's east-west gateway, in this
    order - the O(address) override from the inventory; the Service's load balancer IP; its
    load balancer hostname (resolved to an IP, since Istio's VM bootstrap needs one; AWS ELBs
    give hostnames).
  - Waits up to O(wait_timeout) seconds for a load balancer address and fails with a message
    that says how to set the address explicitly when none appears.
  - With O(publish=true) and an O(address), writes the address into the Service's
    C(status.loadBalancer) as a load balancer controller would, for clusters that have none
    (local kwok clusters); istiod then sees the gateway address like on any cloud.
version_added: 0.1.0
author: Meshfleet engineers (@meshfleet)
extends_documentation_fragment:
  - meshfleet.mesh.k8s_auth
  - meshfleet.mesh.cluster.WAIT
options:
  kubeconfig:
    description: Kubeconfig of the cluster.
    type: path
    required: true
  context:
    description: Context in the kubeconfig (default its current context).
    type: str
  namespace:
    description: Namespace of the gateway Service.
    type: str
    default: istio-system
  service:
    description: Name of the gateway Service.
    type: str
    default: istio-eastwestgateway
  address:
    description: Explicit address (the inventory's C(eastwest_address)).
    type: str
  publish:
    description: Write O(address) into the Service status (clusters without a load balancer controller).
    type: bool
    default: false
  lb_pool:
    description:
      - The load-balancer pool of a local real-node cluster (a CIDR inside C(10.130.0.0/16)). The
        gateway then gets its address from the pool as every LoadBalancer Service of the cluster
        does (M(meshfleet.mesh.local_lb)); O(address), when given, must be in the pool and is the
        address asked for; O(publish) is not used.
    type: str
attributes:
  check_mode:
    description: Reports whether the Service status would be written.
    support: full
  diff_mode:
    description: Shows the load balancer ingress before and after publishing (or assigning from O(lb_pool)).
    support: full
'''

EXAMPLES = r'''
- name: Address of cluster1's east-west gateway
  meshfleet.mesh.gateway_address:
    kubeconfig: /srv/mesh/.meshfleet/clusters/cluster1/kubeconfig
    wait_timeout: 600
  register: ew
'''

RETURN = r'''
address:
  description: The gateway address (an IP).
  returned: success
  type: str
source:
  description: Where the address came from.
  returned: success
  type: str
hostname:
  description: The load balancer hostname the address was resolved from.
  returned: when the load balancer gave a hostname
  type: str
'''

from ansible_collections.meshfleet.mesh.plugins.module_utils.gateway_address import GatewayAddressModule


def main():
    GatewayAddressModule()()


if __name__ == "__main__":
    main()
