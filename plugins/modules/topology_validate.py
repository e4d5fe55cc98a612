#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: topology_validate
short_description: Check a mesh topology before anything changes
description:
  - Checks a mesh topology (the C(meshfleet_topology) var set by the
    C(meshfleet.mesh.topology) inventory plugin) against the contract in docs/topology.md
    and fails with one line per problem.
  - Runs on the controller and never changes anything.
version_added: 0.1.0
author: Meshfleet engineers (@meshfleet)
options:
  topology:
    description:
      - The topology, as a mapping with C(mesh), C(clusters) and optionally C(networks)
        and C(vm_groups). Normally C(meshfleet_topology).
    type: dict
    required: true
  extra_errors:
    description:
      - Problems found while the file was read that the mapping itself cannot show,
        such as duplicate YAML keys. Normally C(meshfleet_topology_errors); messages
        already found again in O(topology) are not repeated.
    type: list
    elements: str
    default: []
  unparsed:
    description:
      - The topology file could not be read as a topology at all (not UTF-8, not YAML, over the
        size, nesting or alias limits, no C(plugin) line); O(extra_errors) say why, with the
        line and column, and O(topology) is not checked. Normally C(meshfleet_topology_unparsed).
    type: bool
    default: false
attributes:
  check_mode:
    description: Read-only; runs the same in check mode.
    support: full
  diff_mode:
    description: Nothing to diff.
    support: none
notes:
  - The topology file contract is docs/topology.md in the collection.
'''

EXAMPLES = r'''
- name: Check the mesh topology
  meshfleet.mesh.topology_validate:
    topology: "{{ meshfleet_topology }}"
    extra_errors: "{{ meshfleet_topology_errors }}"
  delegate_to: localhost
  run_once: true
  register: topology_check

- name: Say what the mesh looks like
  ansible.builtin.debug:
    msg: "{{ topology_check.summary.line }}"
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
errors:
  description: One message per problem, each starting with the path of the offending field.
  returned: always
  type: list
  elements: str
  sample:
    - 'clusters.cluster-2.provider: unknown provider "kwak"; choose one of aks, eks, gke, kwok, minikube'
summary:
  description: What the topology holds (only meaningful when it is valid).
  returned: always
  type: dict
  contains:
    clusters:
      description: Number of clusters.
      type: int
      sample: 3
    networks:
      description: The networks, in the order clusters name them.
      type: list
      elements: str
      sample: [network1, network2]
    primaries:
      description: The primary clusters.
      type: list
      elements: str
      sample: [cluster1, cluster2, cluster3]
    remotes:
      description: The remote clusters.
      type: list
      elements: str
      sample: []
    vm_groups:
      description: VM group name to number of hosts.
      type: dict
      sample: {web: 1, db: 1}
    line:
      description: All of the above in one line.
      type: str
      sample: "3 clusters on 2 networks, 3 primaries, 0 remotes; VM groups: web (1 host), db (1 host)"
'''

from ansible_collections.meshfleet.mesh.plugins.module_utils.topology_validate import TopologyValidateModule


def main():
    TopologyValidateModule()()


if __name__ == "__main__":
    main()
