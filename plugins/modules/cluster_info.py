#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: cluster_info
short_description: Read the state of one mesh cluster
description:
  - Reports whether a cluster exists and is ready, its API server and kubeconfig path. Changes nothing.
version_added: 0.1.0
author: Meshfleet engineers (@meshfleet)
extends_documentation_fragment:
  - meshfleet.mesh.cluster
  - meshfleet.mesh.cluster_providers
attributes:
  check_mode:
    description: Read-only; runs the same in check mode.
    support: full
  diff_mode:
    description: Nothing to diff.
    support: none
'''

EXAMPLES = r'''
- name: Is cluster1 up?
  meshfleet.mesh.cluster_info:
    name: cluster1
    provider: kwok
    state_dir: /srv/mesh/.meshfleet
  register: c1
'''

RETURN = r'''
cluster:
  description: The observed cluster (no credentials). Same shape as meshfleet.mesh.cluster's C(cluster).
  returned: always
  type: dict
'''

from ansible_collections.meshfleet.mesh.plugins.module_utils.cluster import ClusterInfoModule


def main():
    ClusterInfoModule()()


if __name__ == "__main__":
    main()
