# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # How a module reaches one Kubernetes cluster (plugins/module_utils/k8s_client.py).
    DOCUMENTATION = r'''
options:
  kubeconfig:
    description:
      - Path of the kubeconfig file of the cluster, for example the one
        M(meshfleet.mesh.cluster) writes to C(<state_dir>/clusters/<name>/kubeconfig).
      - Never taken implicitly from C(KUBECONFIG) or C(~/.kube/config).
      - Any credential the C(kubernetes) Python client supports works (client certificate,
        token, exec plugin).
    type: path
    required: true
  context:
    description:
      - Context of O(kubeconfig) to use. Default is its C(current-context).
    type: str
requirements:
  - kubernetes (Python library) >= 31
notes:
  - Errors name the cluster and its API server URL; an unreachable server fails fast (one retry,
    10 s to connect).
'''

    # Two clusters: the one read (source) and the one written (target).
    SOURCE_TARGET = r'''
options:
  source_kubeconfig:
    description:
      - Path of the kubeconfig of the B(source) cluster, the one being read.
      - Never taken implicitly from C(KUBECONFIG) or C(~/.kube/config).
      - Any credential the C(kubernetes) Python client supports works (client certificate,
        token, exec plugin).
    type: path
  source_context:
    description:
      - Context of O(source_kubeconfig) to use. Default is its C(current-context).
    type: str
  target_kubeconfig:
    description:
      - Path of the kubeconfig of the B(target) cluster, the one written to.
      - Never taken implicitly from C(KUBECONFIG) or C(~/.kube/config).
    type: path
    required: true
  target_context:
    description:
      - Context of O(target_kubeconfig) to use. Default is its C(current-context).
    type: str
requirements:
  - kubernetes (Python library) >= 31
notes:
  - Errors name the cluster (source or target) and its API server URL; an unreachable server
    fails fast (one retry, 10 s to connect).
'''
