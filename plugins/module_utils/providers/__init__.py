# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cluster providers: one interface (``base.ClusterProvider``), one class per cloud.

Providers are imported lazily so that a missing SDK only matters to the user of
that provider, and says which package to install.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError

# provider name -> (module under providers/, class name)
CLUSTER_PROVIDERS = {
    "kwok": ("kwok", "KwokProvider"),
    "minikube": ("minikube", "MinikubeProvider"),
    "aks": ("aks", "AksProvider"),
    "gke": ("gke", "GkeProvider"),
    "eks": ("eks", "EksProvider"),
}


def get_provider_class(name):
    try:
        mod_name, cls_name = CLUSTER_PROVIDERS[name]
    except KeyError:
        raise MeshfleetError("unknown cluster provider %r; choose one of: %s"
                             % (name, ", ".join(sorted(CLUSTER_PROVIDERS))))
    mod = importlib.import_module(
        "ansible_collections.meshfleet.mesh.plugins.module_utils.providers.%s" % mod_name)
    return getattr(mod, cls_name)
