#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: cluster
short_description: Create, update or delete a Kubernetes cluster of the mesh
description:
  - Converges one cluster through its provider (kwok, minikube, aks, gke, eks) and
    writes its kubeconfig under the mesh state directory.
  - An existing healthy cluster with the same settings is left alone (no change).
  - Settings that a provider cannot change in place are refused with a message naming the field.
version_added: 0.1.0
author: Meshfleet engineers (@meshfleet)
extends_documentation_fragment:
  - meshfleet.mesh.cluster
  - meshfleet.mesh.cluster.WAIT
options:
  state:
    description: Whether the cluster should exist.
    type: str
    default: present
    choices: [present, absent]
attributes:
  check_mode:
    description: Reports what would be created, changed or deleted without calling the provider's write APIs.
    support: full
  diff_mode:
    description: Shows the cluster before and after (no credentials).
    support: full
'''

EXAMPLES = r'''
- name: A local kwok cluster
  meshfleet.mesh.cluster:
    name: cluster1
    provider: kwok
    state_dir: /srv/mesh/.meshfleet

- name: Remove it
  meshfleet.mesh.cluster:
    name: cluster1
    provider: kwok
    state_dir: /srv/mesh/.meshfleet
    state: absent
'''

RETURN = r'''
cluster:
  description: The cluster as observed after the change (no credentials).
  returned: always
  type: dict
  contains:
    name: {description: Cluster name., type: str}
    provider: {description: Provider name., type: str}
    exists: {description: Whether the cluster exists., type: bool}
    ready: {description: Whether its API server answers., type: bool}
    api_server: {description: API server URL., type: str}
    kubeconfig: {description: Path of the kubeconfig file (mode 0600)., type: str}
    context: {description: Context name in the kubeconfig., type: str}
    settings: {description: Observed provider settings., type: dict}
changes:
  description: Settings that differ (check mode on an existing cluster).
  returned: when changed in check mode
  type: list
  elements: str
'''

from ansible_collections.meshfleet.mesh.plugins.module_utils.cluster import ClusterModule


def main():
    ClusterModule()()


if __name__ == "__main__":
    main()
