#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: vm_instance
short_description: Create or remove the cloud VMs of a mesh VM group (OpenStack, EC2)
description:
  - Converges the instances of one VM group of the mesh on OpenStack (openstacksdk) or
    EC2 (boto3) to O(settings.count) instances named C(<group>-1) .. C(<group>-N).
  - Instances are found again by their tags or metadata C(meshfleet:mesh), C(meshfleet:group)
    and their name, so a second run changes nothing. Instances of the group beyond the count are removed.
  - Settings that a cloud cannot change on an existing instance (image, flavor or instance type,
    network or subnet, key) are refused with a message naming the field. New O(ports) are opened in the
    security group the module manages, and O(settings.floating_ip) is applied to existing servers.
  - Returns the addresses of the instances, for M(ansible.builtin.add_host).
version_added: 0.1.0
author: Meshfleet engineers (@meshfleet)
extends_documentation_fragment:
  - meshfleet.mesh.vm_providers
  - meshfleet.mesh.cluster.WAIT
options:
  state:
    description:
      - Whether the group's instances should exist. V(absent) removes all of them
        (and the security group the module created for them).
    type: str
    default: present
    choices: [present, absent]
attributes:
  check_mode:
    description: Reports the instances that would be created or removed without any write call to the cloud.
    support: full
  diff_mode:
    description: Shows the group's instances before and after.
    support: full
seealso:
  - module: meshfleet.mesh.vm_instance_info
'''

EXAMPLES = r'''
- name: Two OpenStack VMs for the web group
  meshfleet.mesh.vm_instance:
    group: web
    mesh: mesh1
    provider: openstack
    ports: [8080]
    settings:
      cloud: mycloud            # an entry of clouds.yaml (or OS_CLOUD)
      image: ubuntu-24.04
      flavor: m1.small
      network: private
      key_name: deploy
      security_group: mesh-web  # created with the mesh ports + 8080
      floating_ip: true
      count: 2
  register: web_vms

- name: One EC2 instance for the db group
  meshfleet.mesh.vm_instance:
    group: db
    mesh: mesh1
    provider: ec2
    ports: [5432]
    settings:
      region: eu-west-1
      ami: ami-0123456789abcdef0
      instance_type: t3.small
      subnet_id: subnet-0123456789abcdef0
      key_name: deploy
      tags: {team: data}

- name: Make them reachable by the onboarding play
  ansible.builtin.add_host:
    name: "{{ item.name }}"
    ansible_host: "{{ item.address }}"
    groups: [vms, vmgroup_web]
  loop: "{{ web_vms.instances }}"

- name: Remove the db VMs
  meshfleet.mesh.vm_instance:
    group: db
    mesh: mesh1
    provider: ec2
    settings: {region: eu-west-1, ami: ami-0123456789abcdef0, instance_type: t3.small,
               subnet_id: subnet-0123456789abcdef0}
    state: absent
'''

RETURN = r'''
instances:
  description: The group's instances after the change (planned ones in check mode have C(id=null)).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Instance name, C(<group>-<n>).
      type: str
    id:
      description: Server or instance id.
      type: str
    status:
      description: The cloud's status of the instance, for example C(ACTIVE) or C(running).
      type: str
    private_ip:
      description: Fixed or private IPv4 address.
      type: str
    public_ip:
      description: Floating or public IPv4 address, if there is one.
      type: str
    address:
      description: The address to reach the VM at, the public one if there is one, else the private one.
      type: str
    settings:
      description: Observed image, flavor or instance type, network or subnet, and key pair.
      type: dict
created:
  description: Names of the instances created (or to be created in check mode).
  returned: when state is present
  type: list
  elements: str
actions:
  description:
    - Other changes made (or to be made in check mode), for example creating the security group,
      opening a new port of O(ports) in it, or attaching a floating IP to an existing server.
  returned: when state is present
  type: list
  elements: str
removed:
  description: Names of the instances removed (or to be removed in check mode).
  returned: when changed
  type: list
  elements: str
'''

from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_instance import VmInstanceModule


def main():
    VmInstanceModule()()


if __name__ == "__main__":
    main()
