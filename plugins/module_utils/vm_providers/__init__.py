# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""VM providers: one interface (``base.VmProvider``), one class per cloud (openstack, ec2),
and ``netns`` (local test VMs in network namespaces on the controller).

The registry (:func:`base.get_vm_provider_class`) imports a provider only when it is
used, with plain import statements so that AnsiballZ bundles it; the providers import
their SDKs lazily, so a missing SDK only matters to the user of that provider.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

#: VM provider names (the topology's ``vm_groups.<g>.provider``, besides ``existing``)
VM_PROVIDERS = ("ec2", "netns", "openstack")
