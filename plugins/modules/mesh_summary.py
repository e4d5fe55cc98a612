#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mesh_summary
short_description: The converge's summary - whether the mesh plays ran, and each cluster's endpoints
description:
  - 'Returns the lines C(site.yml) ends with. The first says whether the mesh plays ran and why -
    C(nothing to change: <reason>) when the gate (M(meshfleet.mesh.converge_receipt)) found
    the mesh converged, C(converged by the mesh plays) with the reason in brackets when they ran, C(no mesh play
    ran: <reason>) when the run''s tags select none of them.'
  - Then one line per cluster - its role, network, API server, east-west gateway address and
    istiod (the local istiod's debug URL, or C(in cluster)). Each value is the one this run's
    mesh plays set on the cluster's host (C(clusters_api_server), C(control_plane_gateway),
    C(control_plane_istiod)), else the gate's check result of the step that holds it (a fast
    no-op runs no mesh play), else C(-).
  - Changes nothing.
version_added: 0.1.0
author: Meshfleet engineers (@meshfleet)
options:
  gate:
    description:
      - The gate's result (M(meshfleet.mesh.converge_receipt) with C(state=checked)) -
        C(converged), C(reason), C(selected) and C(results) (host to registered variable to
        check result).
      - Default - the variable C(meshfleet_gate) (C(playbooks/mesh.yml) registers it), or none.
    type: dict
  clusters:
    description:
      - Cluster name to its variables - C(meshfleet_role), C(meshfleet_network),
        C(clusters_api_server), C(control_plane_gateway), C(control_plane_istiod); one line
        each, in this order.
      - Default - every host of the group C(clusters), with those of its host variables that are set.
    type: dict
attributes:
  action:
    description: Runs in the controller's process (an action plugin) - the defaults are other hosts' variables.
    support: full
  check_mode:
    description: Nothing to change; the same lines in check mode.
    support: full
  diff_mode:
    description: No diff; it changes nothing.
    support: none
notes:
  - Its result is always shown (like M(ansible.builtin.debug)).
'''

EXAMPLES = r'''
- name: Summary | The mesh
  meshfleet.mesh.mesh_summary:

- name: A summary of given values
  meshfleet.mesh.mesh_summary:
    gate: {converged: false, reason: no receipt yet}
    clusters:
      cluster1:
        meshfleet_role: primary
        meshfleet_network: network1
        clusters_api_server: https://127.0.0.1:32001
        control_plane_gateway: {address: 10.77.0.1}
'''

RETURN = r'''
lines:
  description: Whether the mesh plays ran and why, then one line per cluster.
  returned: always
  type: list
  elements: str
  sample:
    - "nothing to change: 15 steps on 4 hosts would change nothing"
    - "cluster1 (primary, network1): API https://127.0.0.1:32001, east-west 10.77.0.1, istiod https://10.77.0.1:15014/debug"
'''

from ansible_collections.meshfleet.mesh.plugins.module_utils.mesh_summary import MeshSummaryModule


def main():
    MeshSummaryModule()()


if __name__ == "__main__":
    main()
