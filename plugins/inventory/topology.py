# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: topology
short_description: The mesh inventory, from one topology file (C(*.meshfleet.yml))
description:
  - Reads one mesh topology file (see docs/topology.md) and turns it into an inventory.
  - One host per cluster (host name = cluster name, C(ansible_connection=local), the
    controller's Python), in the groups C(clusters), C(primaries) or C(remotes),
    C(network_<network>) and C(provider_<provider>).
  - One host per VM listed under C(vm_groups.<group>.hosts), with the host vars given
    there, in the groups C(vms), C(vmgroup_<group>) and C(vm_provider_<provider>).
  - VMs of C(provider=netns) groups also get C(ansible_host) (their address in
    C(settings.subnet), .2 for the first listed host, .3 for the next...), C(ansible_user=root),
    C(ansible_ssh_private_key_file) and C(ansible_ssh_common_args) (the mesh's key and
    known_hosts under C(<state_dir>/vms), C(StrictHostKeyChecking=yes) as the provider pins
    their host keys) and C(ansible_python_interpreter); host vars given in the file win.
  - Other VMs get C(ansible_ssh_common_args) with C(StrictHostKeyChecking=accept-new) and
    the same known_hosts file, so their host key is pinned on first contact and enforced from
    then on (unless their host vars give other ssh arguments).
  - Characters of network, provider and group names that are not valid in an
    identifier become C(_) in group names (C(network-1) gives C(network_network_1)).
  - Vars on C(all) - C(meshfleet_mesh) (the mesh block, defaults filled in),
    C(meshfleet_state_dir) (absolute; E(MESHFLEET_STATE_DIR) when set, else C(mesh.state_dir),
    else C(.meshfleet) beside the file), C(meshfleet_topology) (the whole normalised
    topology), C(meshfleet_topology_file) and C(meshfleet_topology_errors) (one message
    per problem, empty when the topology is valid).
  - A topology with semantic errors still loads, so that the C(meshfleet.mesh.validate)
    role can report every problem at once; a file that is not YAML or not a mapping
    fails to parse.
  - Only files whose names end in C(.meshfleet.yml) or C(.meshfleet.yaml) are read.
version_added: 0.1.0
author: Meshfleet engineers (@meshfleet)
extends_documentation_fragment:
  - constructed
options:
  plugin:
    description: Marks the file as a Meshfleet topology file.
    required: true
    type: str
    choices: [meshfleet.mesh.topology]
  mesh:
    description:
      - The mesh block - C(id), C(trust_domain), C(istio.version), C(istio.revision),
        C(istio.hub), C(istio.image_pull_secrets), C(state_dir), C(ca) and C(features).
        See docs/topology.md.
      - Validated by the plugin (problems land in C(meshfleet_topology_errors)), so
        any type is accepted here.
    type: raw
  clusters:
    description:
      - Mapping of cluster name to C(provider), C(network), C(role), C(primary),
        C(settings), C(eastwest_address) and C(wait_timeouts).
    type: raw
  networks:
    description:
      - Optional list (or mapping) of the networks the mesh spans; each must have a cluster.
    type: raw
  vm_groups:
    description:
      - Mapping of VM group name to C(namespace), C(service_account), C(cluster),
        C(network), C(provider), C(settings), C(ports), C(labels) and C(hosts).
    type: raw
'''

EXAMPLES = r'''
# inventories/local/mesh.meshfleet.yml
plugin: meshfleet.mesh.topology
mesh:
  id: mesh1
  trust_domain: cluster.local
  istio:
    version: "1.30"
clusters:
  cluster1: {provider: kwok, network: network1}
  cluster2: {provider: kwok, network: network2, role: remote, primary: cluster1}
vm_groups:
  web:
    cluster: cluster1
    hosts:
      vm1: {ansible_host: 10.77.0.2, ansible_user: root}
# constructed options work on the host vars
keyed_groups:
  - key: meshfleet_role
    prefix: role
compose:
  kubeconfig: meshfleet_state_dir ~ '/clusters/' ~ inventory_hostname ~ '/kubeconfig'
groups:
  laptop: meshfleet_provider in ['kwok', 'minikube']
'''

import os
import re

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable
from ansible.utils.vars import combine_vars

try:
    from ansible.template import trust_as_template
except ImportError:  # pragma: no cover - ansible-core < 2.19
    def trust_as_template(value):
        return value

from ansible_collections.meshfleet.mesh.plugins.module_utils import topology as topo_utils
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers.netns.addressing import (
    connection_vars, group_addresses, ssh_common_args)

EXTENSIONS = (".meshfleet.yml", ".meshfleet.yaml")


def group_suffix(name):
    """``network-1`` -> ``network_1``: any character not valid in an identifier -> ``_``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", to_text(name))


TEMPLATE_MARKERS = ("{{", "{%", "{#")


def literal(value):
    """Copy ``value`` into plain Python types whose strings are never templated.

    The topology is data: a string that looks like a template stays as written
    (untrusted); every other string is marked trusted, which changes nothing for
    it but keeps ``ansible-inventory --list`` output plain. Only the host vars of
    VMs are passed on as loaded (templates there work as in any inventory).
    """
    if isinstance(value, dict):
        return dict((literal(k), literal(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [literal(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        value = str(value)
        return value if any(m in value for m in TEMPLATE_MARKERS) else trust_as_template(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


class InventoryModule(BaseInventoryPlugin, Constructable):

    NAME = "meshfleet.mesh.topology"

    def verify_file(self, path):
        """Accept only ``*.meshfleet.yml`` / ``*.meshfleet.yaml`` files."""
        return bool(super(InventoryModule, self).verify_file(path)) and \
            to_text(path).endswith(EXTENSIONS)

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache)
        path = os.path.abspath(to_text(path))
        base_dir = os.path.dirname(path)
        try:
            duplicates = self._check_file(path)
            config = self._read_config_data(path)
        except (topo_utils.TopologyFileError, AnsibleError) as e:
            # Not a usable topology file. Load an empty mesh that carries the reason, so that
            # the first play (meshfleet.mesh.validate) stops with it, instead of a later play
            # failing on a variable the file would have defined.
            error = "%s: %s" % (path, topo_utils.clip(to_native(e), topo_utils.MAX_MESSAGE))
            self._vm_host_vars = {}
            self._populate({}, [error], literal(path), base_dir)
            self.inventory.set_variable("all", "meshfleet_topology_unparsed", True)
            self.display.warning("%s (the meshfleet.mesh.validate role stops plays on it)" % error)
            return
        normalised = topo_utils.normalise(config, base_dir)
        errors = duplicates + [e for e in topo_utils.validate(config) if e not in duplicates]
        self._vm_host_vars = self._given_vm_host_vars(normalised)
        self._populate(literal(normalised), literal(errors), literal(path), base_dir)
        self.inventory.set_variable("all", "meshfleet_topology_unparsed", False)
        if errors:
            self.display.warning("%s: topology has %d problem%s (the meshfleet.mesh.validate "
                                 "role stops plays on them):\n%s" % (
                                     path, len(errors), "" if len(errors) == 1 else "s",
                                     "\n".join("- " + e for e in errors)))

    # --- reading -------------------------------------------------------------------
    def _check_file(self, path):
        """Refuse what is not a topology file (within the size, nesting and alias limits,
        before anything is expanded); return the duplicate-key messages."""
        try:
            if os.path.getsize(path) > topo_utils.MAX_FILE_BYTES * 4:
                # not even read: a vault-encrypted topology is ~4x its text
                raise topo_utils.TopologyFileError("the file has %d bytes; a topology file may have "
                                                   "at most %d" % (os.path.getsize(path),
                                                                   topo_utils.MAX_FILE_BYTES))
            with open(path, "rb") as f:
                data = f.read()
        except (IOError, OSError) as e:
            raise topo_utils.TopologyFileError("cannot read the topology file: %s" % to_native(e))
        if data.lstrip().startswith(b"$ANSIBLE_VAULT"):
            # a vault-encrypted file: check its decrypted text the same way
            data = to_bytes(self.loader.get_text_file_contents(path))
        return topo_utils.find_duplicate_keys(topo_utils.decode_topology(data), require_plugin=True)

    @staticmethod
    def _given_vm_host_vars(topology):
        """{(group, host): host vars as loaded}: the only values passed on with their tags."""
        out = {}
        groups = topology.get("vm_groups")
        for gname, group in (groups.items() if topo_utils.is_mapping(groups) else ()):
            hosts = group.get("hosts") if topo_utils.is_mapping(group) else None
            for host, given in (hosts.items() if topo_utils.is_mapping(hosts) else ()):
                if topo_utils.is_mapping(given):
                    out[(str(gname), str(host))] = given
        return out

    # --- building --------------------------------------------------------------------
    def _populate(self, topology, errors, path, base_dir):
        inv = self.inventory
        for group in ("clusters", "primaries", "remotes", "vms"):
            inv.add_group(group)
        inv.add_child("clusters", "primaries")
        inv.add_child("clusters", "remotes")

        mesh = topology.get("mesh")
        if not topo_utils.is_mapping(mesh):
            mesh = literal(topo_utils.mesh_defaults(None, base_dir))
        state_dir = mesh.get("state_dir")
        if not (topo_utils.is_str(state_dir) and state_dir):
            state_dir = topo_utils.state_dir(None, base_dir)
        self._state_dir = state_dir

        data_keys = [k for k in topology if k not in topo_utils.PLUGIN_KEYS[1:]]
        inv.set_variable("all", "meshfleet_mesh", mesh)
        inv.set_variable("all", "meshfleet_state_dir", literal(state_dir))
        inv.set_variable("all", "meshfleet_topology", dict((k, topology[k]) for k in data_keys))
        inv.set_variable("all", "meshfleet_topology_file", path)
        inv.set_variable("all", "meshfleet_topology_errors", errors)

        self._add_groups_in_order(topology)
        hosts = []
        clusters = topology.get("clusters")
        if topo_utils.is_mapping(clusters):
            for name, cluster in clusters.items():
                # a reserved name (all, localhost, clusters, ...) is reported by validate();
                # as a host it would clash with Ansible's or this plugin's own groups
                if topo_utils.is_mapping(cluster) and topo_utils.is_str(name) and name.strip() \
                        and to_text(name).lower() not in topo_utils.RESERVED_HOST_NAMES:
                    hosts.append(self._add_cluster(to_text(name), cluster))
        cluster_hosts = set(h.lower() for h in hosts)
        self._vm_hosts = set()

        groups = topology.get("vm_groups")
        if topo_utils.is_mapping(groups):
            for name, group in groups.items():
                if topo_utils.is_mapping(group):
                    hosts.extend(self._add_vm_group(to_text(name), group, cluster_hosts))

        self._construct(hosts)

    def _add_groups_in_order(self, topology):
        """Create the groups sorted by kind and name, so listings read well."""
        def values(section, key):
            section = topology.get(section)
            items = section.values() if topo_utils.is_mapping(section) else ()
            return sorted(set(to_text(i.get(key)) for i in items
                              if topo_utils.is_mapping(i) and topo_utils.is_str(i.get(key))
                              and i.get(key)))
        for prefix, section, key in (("network_", "clusters", "network"),
                                     ("provider_", "clusters", "provider"),
                                     ("vm_provider_", "vm_groups", "provider")):
            for value in values(section, key):
                self.inventory.add_group(prefix + group_suffix(value))

    def _add_cluster(self, name, cluster):
        inv = self.inventory
        role = cluster.get("role")
        group = {"primary": "primaries", "remote": "remotes"}.get(role, "clusters") \
            if topo_utils.is_str(role) else "clusters"
        inv.add_host(name, group=group)
        network = cluster.get("network")
        if topo_utils.is_str(network) and network:
            inv.add_child(inv.add_group("network_%s" % group_suffix(network)), name)
        provider = cluster.get("provider")
        if topo_utils.is_str(provider) and provider:
            inv.add_child(inv.add_group("provider_%s" % group_suffix(provider)), name)

        hostvars = dict(
            ansible_connection=trust_as_template("local"),
            ansible_python_interpreter=trust_as_template("{{ ansible_playbook_python }}"),
            meshfleet_cluster_name=name,
            meshfleet_provider=provider,
            meshfleet_provider_settings=cluster.get("settings"),
            meshfleet_network=network,
            meshfleet_role=role,
            meshfleet_primary=cluster.get("primary"),
            meshfleet_eastwest_address=cluster.get("eastwest_address"),
            meshfleet_wait_timeouts=cluster.get("wait_timeouts") or {},
        )
        for key, value in hostvars.items():
            inv.set_variable(name, key, value)
        return name

    def _add_vm_group(self, name, group, cluster_hosts):
        inv = self.inventory
        group_name = inv.add_group("vmgroup_%s" % group_suffix(name))
        inv.add_child("vms", group_name)
        provider = group.get("provider")
        provider_group = None
        if topo_utils.is_str(provider) and provider:
            provider_group = inv.add_group("vm_provider_%s" % group_suffix(provider))

        added = []
        hosts = group.get("hosts")
        if not topo_utils.is_mapping(hosts):
            return added
        # netns VMs: the address and SSH settings follow from the subnet and the state dir
        netns_addresses = group_addresses(name, group) if provider == "netns" else {}
        for host in hosts:
            if not (topo_utils.is_str(host) and host.strip()):
                continue  # reported by validate(); not a name Ansible takes
            host = to_text(host)
            # a clash with a cluster or another group's VM is reported by validate();
            # never let a VM's vars overwrite another host's
            if host.lower() in cluster_hosts or host.lower() in self._vm_hosts \
                    or host.lower() in topo_utils.RESERVED_HOST_NAMES:
                continue
            self._vm_hosts.add(host.lower())
            inv.add_host(host, group=group_name)
            if provider_group:
                inv.add_child(provider_group, host)
            if host in netns_addresses:
                for key, value in connection_vars(self._state_dir, netns_addresses[host]).items():
                    inv.set_variable(host, key, literal(value))
            else:
                # other VMs: host key pinned on first contact into the mesh's known_hosts
                inv.set_variable(host, "ansible_ssh_common_args",
                                 literal(ssh_common_args(self._state_dir, strict=False)))
            for key, value in self._vm_host_vars.get((name, host), {}).items():
                inv.set_variable(host, to_text(key), value)
            hostvars = dict(
                meshfleet_vm_group=name,
                meshfleet_vm_namespace=group.get("namespace"),
                meshfleet_vm_service_account=group.get("service_account"),
                meshfleet_vm_cluster=group.get("cluster"),
                meshfleet_network=group.get("network"),
                meshfleet_vm_provider=provider,
                meshfleet_vm_settings=group.get("settings"),
                meshfleet_vm_ports=group.get("ports"),
                meshfleet_vm_labels=group.get("labels"),
            )
            for key, value in hostvars.items():
                inv.set_variable(host, key, value)
            added.append(host)
        return added

    def _construct(self, hosts):
        strict = self.get_option("strict")
        all_vars = self.inventory.groups["all"].get_vars()
        for host in hosts:
            variables = combine_vars(all_vars, self.inventory.get_host(host).get_vars())
            self._set_composite_vars(self.get_option("compose"), variables, host, strict=strict)
            # composed vars feed the groups
            variables = combine_vars(all_vars, self.inventory.get_host(host).get_vars())
            self._add_host_to_composed_groups(self.get_option("groups"), variables, host,
                                              strict=strict, fetch_hostvars=False)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), variables, host,
                                           strict=strict, fetch_hostvars=False)
