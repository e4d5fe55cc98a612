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
    return getattr(_import_provider(mod_name), cls_name)


def _import_provider(mod_name):
    """Import one provider module with a plain ``import`` statement.

    AnsiballZ bundles the module_utils a module needs by reading its import
    statements; an ``importlib.import_module`` call is invisible to it, and the
    provider would be missing when the module runs on a host. Imports inside a
    function are optional for AnsiballZ, so a provider file that does not exist yet
    does not break the others. The provider modules import their SDKs lazily.
    """
    if mod_name == "kwok":
        from ansible_collections.meshfleet.mesh.plugins.module_utils.providers import kwok as mod
    elif mod_name == "minikube":
        from ansible_collections.meshfleet.mesh.plugins.module_utils.providers import minikube as mod
    elif mod_name == "aks":
        from ansible_collections.meshfleet.mesh.plugins.module_utils.providers import aks as mod
    elif mod_name == "gke":
        from ansible_collections.meshfleet.mesh.plugins.module_utils.providers import gke as mod
    elif mod_name == "eks":
        from ansible_collections.meshfleet.mesh.plugins.module_utils.providers import eks as mod
    else:  # pragma: no cover - a registry entry without an import above
        mod = importlib.import_module(
            "ansible_collections.meshfleet.mesh.plugins.module_utils.providers.%s" % mod_name)
    return mod
