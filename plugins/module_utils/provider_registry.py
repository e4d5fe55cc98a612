# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one provider registry: provider name -> class, for cluster and VM providers alike.

Names, kinds and class names come from ``provider_spec.PROVIDERS``. A provider module is
imported only when it is used, with a plain ``import`` statement: AnsiballZ bundles the
module_utils a module needs by reading its import statements (an ``importlib`` call is
invisible to it), and imports inside a function are optional for it. The provider modules
import their SDKs lazily, so a missing SDK only matters to the user of that provider.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError
from ansible_collections.meshfleet.mesh.plugins.module_utils.provider_spec import (
    PROVIDERS, missing_settings)

KIND_WORDS = dict(cluster="cluster provider", vm="VM provider")


def provider_class(name, kind):
    """The class of the ``kind`` ("cluster" or "vm") provider ``name``."""
    spec = PROVIDERS.get(name) if isinstance(name, str) else None
    if spec is None or spec["kind"] != kind or not spec["impl"]:
        known = sorted(n for n, s in PROVIDERS.items() if s["kind"] == kind and s["impl"])
        raise MeshfleetError("unknown %s %r; choose one of: %s" % (KIND_WORDS[kind], name, ", ".join(known)))
    mod = _import(name)
    return getattr(mod, spec["impl"][1])


def _import(name):
    if name == "kwok":
        from ansible_collections.meshfleet.mesh.plugins.module_utils.providers import kwok as mod
    elif name == "minikube":
        from ansible_collections.meshfleet.mesh.plugins.module_utils.providers import minikube as mod
    elif name == "aks":
        from ansible_collections.meshfleet.mesh.plugins.module_utils.providers import aks as mod
    elif name == "gke":
        from ansible_collections.meshfleet.mesh.plugins.module_utils.providers import gke as mod
    elif name == "eks":
        from ansible_collections.meshfleet.mesh.plugins.module_utils.providers import eks as mod
    elif name == "netns":
        from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers.netns import provider as mod
    elif name == "openstack":
        from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers import openstack as mod
    elif name == "ec2":
        from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers import ec2 as mod
    else:  # a spec entry with an impl but no import above: a bug, said plainly
        raise MeshfleetError("provider %s has no import in provider_registry._import" % name)
    return mod


def require_settings(subject, name, settings, module=True):
    """Raise MeshfleetError naming the required settings of provider ``name`` that ``settings``
    lacks; ``subject`` says whose settings ("cluster c1", "VM group web")."""
    missing = missing_settings(name, settings, module=module)
    if missing:
        raise MeshfleetError("%s (provider %s): missing provider setting%s: %s" % (
            subject, name, "s" if len(missing) > 1 else "", ", ".join(missing)))
