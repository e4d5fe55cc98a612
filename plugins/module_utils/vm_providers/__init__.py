# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# Apache License 2.0
"""VM providers: one interface (``base.VmProvider``), one class per cloud (openstack, ec2).

Imported lazily, like the cluster providers, so that a missing SDK only matters to
the user of that provider.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError

# provider name -> (module under vm_providers/, class name)
VM_PROVIDERS = {
    "openstack": ("openstack", "OpenStackVmProvider"),
    "ec2": ("ec2", "Ec2VmProvider"),
}


def get_vm_provider_class(name):
    try:
        mod_name, cls_name = VM_PROVIDERS[name]
    except KeyError:
        raise MeshfleetError("unknown VM provider %r; choose one of: %s"
                             % (name, ", ".join(sorted(VM_PROVIDERS))))
    mod = importlib.import_module(
        "ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers.%s" % mod_name)
    return getattr(mod, cls_name)
