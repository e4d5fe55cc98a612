# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Options shared by meshfleet.mesh.cluster and meshfleet.mesh.cluster_info.
    DOCUMENTATION = r'''
options:
  name:
    description:
      - Name of the cluster (DNS-1123 label). Used as the kwok cluster name, the
        minikube profile, or the cloud resource name.
    type: str
    required: true
  provider:
    description:
      - Which kind of cluster this is. See the provider settings below.
    type: str
    default: kwok
    choices: [aks, eks, gke, kwok, minikube]
  settings:
    description:
      - Provider-specific settings, as in the inventory's C(clusters.<name>.settings).
      - See docs/providers.md and the examples for the keys each provider takes.
    type: dict
    default: {}
  state_dir:
    description:
      - The mesh state directory (per-cluster folders, kubeconfigs, PKI). Created with mode 0700.
      - Kubeconfigs are written to C(<state_dir>/clusters/<name>/kubeconfig) with mode 0600,
        never into the module result and never into C(~/.kube/config).
    type: path
    required: true
'''

    WAIT = r'''
options:
  wait:
    description:
      - Wait until what the module manages is ready (or gone, when it is being removed).
    type: bool
    default: true
  wait_timeout:
    description:
      - How many seconds to wait.
    type: int
    default: 300
'''
