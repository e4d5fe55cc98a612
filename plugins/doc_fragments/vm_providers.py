# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Options shared by meshfleet.mesh.vm_instance and vm_instance_info, with the keys of
    # O(settings) per provider. Names, types and required ones as in module_utils/provider_spec.py
    # (a unit test checks it).
    DOCUMENTATION = r'''
options:
  group:
    description:
      - The VM group (the topology's C(vm_groups.<group>)). Instances are named C(<group>-1) .. C(<group>-N)
        and tagged C(meshfleet:group=<group>).
    type: str
    required: true
  mesh:
    description:
      - The mesh id; instances are tagged C(meshfleet:mesh=<mesh>), so two meshes in one project never
        see each other's VMs.
    type: str
    required: true
  provider:
    description:
      - The cloud. V(existing) groups need no module (their hosts are in the inventory already).
    type: str
    required: true
    choices: [ec2, netns, openstack]
  ports:
    description:
      - The group's application ports. With the mesh ports (22, 15012, 15017, 15021, 15443) they are opened
        in the security group the module creates (OpenStack O(settings.security_group); EC2 without
        O(settings.security_group_ids)).
    type: list
    elements: int
    default: []
  settings:
    description:
      - Provider settings, as in the topology's C(vm_groups.<group>.settings). See docs/providers.md.
    type: dict
    default: {}
    suboptions:
      count:
        description:
          - Every provider. How many instances. Instances of the group beyond the count are removed.
          - "V(netns): defaults to the number of O(settings.hosts) (and must equal it when both are given)."
        type: int
        default: 1
      subnet:
        description:
          - "V(netns), required: the group's IPv4 network, e.g. V(10.77.0.0/24). The host side (a bridge
            C(mfbr-<subnet in hex>)) gets .1, the VMs .2, .3, ... in the order of their names.
            Cannot change on an existing VM."
        type: str
      hosts:
        description:
          - "V(netns): the VM names, in order (the topology group's C(hosts)); default C(<group>-1) ..
            C(<group>-<count>)."
        type: list
        elements: str
      state_dir:
        description:
          - "V(netns), required: the mesh state dir; VMs live in C(<state_dir>/vms/<name>) (rootfs,
            console log, init pid), the SSH key in C(<state_dir>/vms/ssh/id_ed25519)."
        type: path
      rootfs_cache:
        description:
          - "V(netns): the base root filesystem built by C(roles/vms_local/files/vm-rootfs.sh): that tree, or the cache
            directory holding it (the newest tree there). Default E(MESHFLEET_VM_CACHE) or
            C(~/.cache/meshfleet/vm-rootfs)."
        type: path
      cloud:
        description:
          - "V(openstack), required: the C(clouds.yaml) entry with the credentials (V(envvars) for the
            E(OS_AUTH_URL) variables)."
        type: str
      image:
        description:
          - "V(openstack), required: image name or id. Cannot change on an existing server."
        type: str
      flavor:
        description:
          - "V(openstack), required: flavor name or id. Cannot change on an existing server."
        type: str
      network:
        description:
          - "V(openstack), required: the network name or id the servers attach to. Cannot change on an
            existing server."
        type: str
      key_name:
        description:
          - Both providers. The key pair for SSH. Cannot change on an existing instance.
        type: str
      security_group:
        description:
          - "V(openstack): a security group name; created when missing with ingress on the mesh ports and
            O(ports) from O(settings.ssh_cidrs) and O(settings.mesh_cidrs) only (and removed with the last
            server when the module created it). In a group the module created, other TCP ingress rules are
            removed; a group of your own keeps them."
        type: str
      floating_ip:
        description:
          - "V(openstack): attach a floating IP (from the first external network) to each server."
        type: bool
        default: false
      region:
        description:
          - "V(ec2), required: the AWS region."
        type: str
      ami:
        description:
          - "V(ec2), required: the AMI id. Cannot change on an existing instance."
        type: str
      instance_type:
        description:
          - "V(ec2), required: e.g. V(t3.large). Cannot change on an existing instance."
        type: str
      subnet_id:
        description:
          - "V(ec2), required: the subnet the instances start in. Cannot change on an existing instance."
        type: str
      security_group_ids:
        description:
          - "V(ec2): security groups. Without them a group C(meshfleet-<mesh>-<group>) is created in the
            subnet's VPC, admitting the mesh ports and O(ports) from O(settings.ssh_cidrs) and
            O(settings.mesh_cidrs) only (other rules in it are revoked), and removed with the last instance."
        type: list
        elements: str
      tags:
        description:
          - "V(ec2): extra tags of the instances."
        type: dict
      endpoint_url:
        description:
          - "V(ec2): a different EC2 endpoint, e.g. a moto server."
        type: str
      ssh_cidrs:
        description:
          - "V(openstack), V(ec2): the networks (CIDRs, IPv4 or IPv6) allowed to reach TCP 22 in the security
            group the module manages, e.g. the controller's address V(203.0.113.7/32)."
          - "Default: the VMs' own network (the EC2 VPC's CIDR blocks, the OpenStack network's subnets).
            V(0.0.0.0/0) only when you write it; V([]) opens no SSH rule."
        type: list
        elements: str
      mesh_cidrs:
        description:
          - "V(openstack), V(ec2): the networks (CIDRs) allowed to reach the other mesh ports (15012, 15017,
            15021, 15443) and O(ports). Default as for O(settings.ssh_cidrs)."
        type: list
        elements: str
notes:
  - "Credentials (never in the inventory; a missing one fails before any API call, naming what to set):
    V(openstack) reads C(clouds.yaml) (E(OS_CLIENT_CONFIG_FILE), C(./clouds.yaml),
    C(~/.config/openstack/clouds.yaml), C(/etc/openstack/clouds.yaml); secrets may go in C(secure.yaml)) or
    the E(OS_AUTH_URL) variables; V(ec2) uses boto3's chain (E(AWS_PROFILE),
    E(AWS_ACCESS_KEY_ID)/E(AWS_SECRET_ACCESS_KEY)/E(AWS_SESSION_TOKEN), an instance role)."
  - "The security group rules admit O(settings.ssh_cidrs) and O(settings.mesh_cidrs) only (default the VMs'
    own network); V(0.0.0.0/0) only when you write it."
requirements:
  - "openstack: openstacksdk"
  - "ec2: boto3"
  - "netns: root on the controller, iproute2, util-linux (unshare, setsid), and the rootfs from
    C(roles/vms_local/files/vm-rootfs.sh) (debootstrap)"
'''
