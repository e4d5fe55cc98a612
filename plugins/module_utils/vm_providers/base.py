# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The VM provider interface (openstack, ec2) and the state machine of meshfleet.mesh.vm_instance.

A VM group of the topology (``vm_groups.<group>`` with ``provider: openstack|ec2``)
becomes ``settings.count`` instances named ``<group>-1`` .. ``<group>-N``, tagged
``meshfleet:mesh=<mesh>``, ``meshfleet:group=<group>`` and ``Name=<name>``. They are found
again by those tags, so runs are idempotent; instances of the group beyond ``count``
are removed. Fields that a cloud cannot change on a running instance (image, flavor /
instance type, network / subnet, key) are refused with a message naming the field.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError
from ansible_collections.meshfleet.mesh.plugins.module_utils.cloud import source_cidr_problem
from ansible_collections.meshfleet.mesh.plugins.module_utils.provider_registry import (
    provider_class, require_settings)
from ansible_collections.meshfleet.mesh.plugins.module_utils.provider_spec import (
    DEFAULT_VM_COUNT, PROVIDERS)
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers import VM_PROVIDERS

#: ports every mesh VM accepts: istiod xDS/CA (15012), webhooks (15017), mTLS
#: east-west (15443), sidecar health (15021), ssh for the onboarding play (22)
MESH_PORTS = (22, 15012, 15017, 15021, 15443)

TAG_MESH = "meshfleet:mesh"
TAG_GROUP = "meshfleet:group"


def mesh_ports(app_ports):
    """The sorted union of :data:`MESH_PORTS` and the group's application ports."""
    ports = set(MESH_PORTS)
    for p in app_ports or []:
        ports.add(int(p))
    return sorted(ports)


#: the settings naming who may connect: SSH (22) from ``ssh_cidrs``, the other mesh ports and
#: the group's ports from ``mesh_cidrs``. Unset: the VMs' own network (the EC2 VPC's CIDR
#: blocks, the OpenStack network's subnets); 0.0.0.0/0 only when a user writes it.
CIDR_SETTINGS = ("ssh_cidrs", "mesh_cidrs")
SSH_PORT = 22


def ingress_rules(ports, ssh_cidrs, mesh_cidrs):
    """The set of (tcp port, source CIDR) a VM group's security group admits."""
    rules = set()
    for port in ports:
        for cidr in (ssh_cidrs if port == SSH_PORT else mesh_cidrs):
            rules.add((port, cidr))
    return rules


def describe_rules(verb, rules, group):
    """``open tcp ports 22, 8080 from 10.0.0.0/16 in <group>`` lines, one per source CIDR."""
    by_cidr = {}
    for port, cidr in rules:
        by_cidr.setdefault(cidr, []).append(port)
    return ["%s tcp port%s %s %s %s in %s" % (
        verb, "s" if len(ports) > 1 else "", ", ".join(str(p) for p in sorted(ports)),
        "from" if verb == "open" else "to", cidr, group) for cidr, ports in sorted(by_cidr.items())]


class VmProvider:
    """Base class of the VM providers. Subclasses implement the cloud calls."""

    #: the provider name; its spec (provider_spec.PROVIDERS) says which settings it requires
    #: and which are compared on existing instances (all of them immutable)
    name = None

    def __init__(self, group, mesh, settings, ports=None, module=None):
        self.group = group
        self.mesh = mesh
        self.settings = dict(settings or {})
        self.ports = mesh_ports(ports)
        self.module = module

    def validate(self):
        require_settings("VM group %s" % self.group, self.name, self.settings)
        count = self.settings.get("count", DEFAULT_VM_COUNT)
        if not isinstance(count, int) or count < 0:
            raise MeshfleetError("VM group %s: settings.count must be a number >= 0" % self.group)
        for key in CIDR_SETTINGS:
            value = self.settings.get(key)
            if value is None:
                continue
            if not isinstance(value, list):
                raise MeshfleetError("VM group %s: settings.%s must be a list of CIDRs, got %r"
                                     % (self.group, key, value))
            for i, cidr in enumerate(value):
                problem = source_cidr_problem(cidr)
                if problem:
                    raise MeshfleetError("VM group %s: settings.%s[%d] %s" % (self.group, key, i, problem))

    def source_cidrs(self, default):
        """(ssh_cidrs, mesh_cidrs): the settings, else ``default()`` (the VMs' own network)."""
        ssh, mesh = (self.settings.get(k) for k in CIDR_SETTINGS)
        if ssh is None or mesh is None:
            own = sorted(set(default()))
            ssh = own if ssh is None else ssh
            mesh = own if mesh is None else mesh
        return list(ssh), list(mesh)

    @property
    def count(self):
        return self.settings.get("count", DEFAULT_VM_COUNT)

    def desired_names(self):
        return ["%s-%d" % (self.group, i) for i in range(1, self.count + 1)]

    def tags(self, name):
        return {TAG_MESH: self.mesh, TAG_GROUP: self.group, "Name": name}

    # --- override ----------------------------------------------------------------
    def list(self):
        """The group's instances: [{name, id, status, private_ip, public_ip, settings}]."""
        raise NotImplementedError

    def prepare(self, apply=True):
        """Ensure what the instances need (security group and its rules).

        Return the list of actions taken, or with ``apply=False`` the actions that would be
        taken, read-only (check mode, and deciding whether anything changes).
        """
        return []

    def reconcile(self, instance, apply=True):
        """Fix what can change on an existing instance; return the actions (see :meth:`prepare`)."""
        return []

    def create(self, name):
        """Start creating instance ``name``; return its id."""
        raise NotImplementedError

    def wait_ready(self, ids, timeout):
        raise NotImplementedError

    def delete(self, instance):
        raise NotImplementedError

    def wait_deleted(self, ids, timeout):
        raise NotImplementedError

    def cleanup(self):
        """Remove what :meth:`prepare` created, once the group has no instance left."""

    # --- comparison ----------------------------------------------------------------
    def same(self, key, have, want):
        return have == want

    def immutable_changes(self, instance):
        seen = instance.get("settings") or {}
        return sorted(k for k in PROVIDERS[self.name]["immutable"]
                      if self.settings.get(k) is not None and k in seen
                      and not self.same(k, seen[k], self.settings[k]))


def get_vm_provider_class(name):
    """The provider class for ``name``, imported on first use (see provider_registry)."""
    return provider_class(name, "vm")


def public_view(instance):
    """What the module returns for one instance (no secrets: there are none)."""
    out = dict((k, instance.get(k)) for k in ("name", "id", "status", "private_ip", "public_ip"))
    out["address"] = instance.get("public_ip") or instance.get("private_ip")
    out["settings"] = instance.get("settings") or {}
    # connection vars for add_host, when the provider knows them (netns: ansible_host,
    # ansible_user, ansible_ssh_private_key_file, ansible_ssh_common_args)
    out.update(instance.get("hostvars") or {})
    return out


VM_ARGS = dict(
    group=dict(type="str", required=True),
    mesh=dict(type="str", required=True),
    provider=dict(type="str", required=True, choices=sorted(VM_PROVIDERS)),
    settings=dict(type="dict", default={}),
    ports=dict(type="list", elements="int", default=[]),
)


def make_vm_provider(module_obj, params):
    cls = get_vm_provider_class(params["provider"])
    provider = cls(params["group"], params["mesh"], params.get("settings") or {},
                   ports=params.get("ports"), module=module_obj)
    provider.validate()
    return provider
