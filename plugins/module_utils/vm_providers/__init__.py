# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""VM providers: one interface (``base.VmProvider``), one class per cloud (openstack, ec2),
and ``netns`` (local test VMs in network namespaces on the controller).

What each takes is in ``provider_spec.PROVIDERS``; ``provider_registry`` finds the class.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.meshfleet.mesh.plugins.module_utils.provider_spec import (
    MANAGED_VM_PROVIDERS)

#: VM provider names the modules take (the topology's ``vm_groups.<g>.provider``, besides ``existing``)
VM_PROVIDERS = MANAGED_VM_PROVIDERS
