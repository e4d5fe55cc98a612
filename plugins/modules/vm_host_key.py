#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: vm_host_key
short_description: Check a VM's SSH host key against the mesh's pinned known_hosts
description:
  - Runs on the controller (delegated to localhost) before a VM play's first SSH connection.
  - Asks the VM's SSH server for its host keys (C(ssh-keyscan)) and compares them with the keys
    pinned for its address in the mesh's known_hosts file (C(<state_dir>/vms/known_hosts), the
    C(UserKnownHostsFile) of its O(ssh_common_args)).
  - Fails, naming the VM, its address and the file, when none of the offered keys is the pinned
    one (the VM was rebuilt, or another machine answers on its address), and when a VM whose
    arguments say C(StrictHostKeyChecking=yes) (netns VMs; the provider pins their keys) has no
    pinned key.
  - With C(StrictHostKeyChecking=accept-new) (C(existing), openstack and ec2 VMs) a VM without a
    pinned key is pinned now, on first contact (changed); from then on its key is enforced.
  - A VM that does not answer is reported as C(unreachable), not failed (the play's connection
    reports it). Hashed known_hosts names and C([host]:port) entries are understood.
  - A VM reached through C(ProxyJump) or C(ProxyCommand) is not scanned (a scan from the
    controller could reach another machine); it is C(unchecked), ssh itself enforces the pin.
version_added: 0.1.0
author: Meshfleet engineers (@meshfleet)
attributes:
  check_mode:
    support: full
    description: Compares, and reports a first-contact pin as changed without writing it.
  diff_mode:
    support: none
    description: Nothing to show; a first-contact pin is reported in the result.
options:
  name:
    description: The VM's inventory name (for messages).
    type: str
    required: true
  host:
    description: The address Ansible connects to (C(ansible_host)).
    type: str
    required: true
  port:
    description: The SSH port (C(ansible_port)).
    type: int
    default: 22
  ssh_common_args:
    description:
      - The VM's C(ansible_ssh_common_args); O(known_hosts) and O(strict) default to its
        C(UserKnownHostsFile) and C(StrictHostKeyChecking). Without a known_hosts file there
        is nothing to check (status C(unchecked)).
    type: str
    default: ''
  known_hosts:
    description: The known_hosts file holding the pinned keys.
    type: path
  strict:
    description: Refuse a VM without a pinned key (C(StrictHostKeyChecking=yes)).
    type: bool
  timeout:
    description: Seconds to wait for the VM's SSH server.
    type: int
    default: 10
'''

EXAMPLES = r'''
- name: This VM's SSH host key is the pinned one
  meshfleet.mesh.vm_host_key:
    name: "{{ inventory_hostname }}"
    host: "{{ ansible_host | default(inventory_hostname) }}"
    port: "{{ ansible_port | default(22) }}"
    ssh_common_args: "{{ ansible_ssh_common_args | default('') }}"
  delegate_to: localhost
'''

RETURN = r'''
status:
  description: C(match), C(pinned) (first contact, keys recorded), C(unreachable) or C(unchecked)
    (no known_hosts file in the ssh arguments, or a jump host).
  returned: always
  type: str
known_hosts:
  description: The known_hosts file compared with.
  returned: always
  type: str
pinned:
  description: Type and SHA-256 fingerprint of each key pinned for the VM before this run.
  returned: always
  type: list
  elements: str
offered:
  description: Type and SHA-256 fingerprint of each key the VM offers.
  returned: always
  type: list
  elements: str
'''

from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_host_key import VmHostKeyModule


def main():
    VmHostKeyModule()()


if __name__ == "__main__":
    main()
