#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: vm_instance_info
short_description: List the cloud VMs of a mesh VM group (OpenStack, EC2)
description:
  - Lists the instances tagged for one VM group of the mesh, with their addresses. Changes nothing.
version_added: 0.1.0
author: Meshfleet engineers (@meshfleet)
extends_documentation_fragment:
  - meshfleet.mesh.vm_providers
attributes:
  check_mode:
    description: Read-only; runs the same in check mode.
    support: full
  diff_mode:
    description: Returns no diff.
    support: none
seealso:
  - module: meshfleet.mesh.vm_instance
'''

EXAMPLES = r'''
- name: Where are the web VMs?
  meshfleet.mesh.vm_instance_info:
    group: web
    mesh: mesh1
    provider: openstack
    settings: {cloud: mycloud, image: ubuntu-24.04, flavor: m1.small, network: private}
  register: web_vms
'''

RETURN = r'''
instances:
  description: The group's instances. Same shape as meshfleet.mesh.vm_instance's C(instances).
  returned: always
  type: list
  elements: dict
'''

from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_instance import VmInstanceInfoModule


def main():
    VmInstanceInfoModule()()


if __name__ == "__main__":
    main()
