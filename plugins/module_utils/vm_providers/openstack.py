# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""OpenStack VM provider (openstacksdk): servers of a mesh VM group.

Servers are named ``<group>-<n>`` and carry the metadata ``meshfleet:mesh`` and
``meshfleet:group``, which is how they are found again. The provider resolves the
image (glance), flavor (nova) and network (neutron) by name or id, attaches a key
pair, a security group (``settings.security_group``, created when missing; it admits SSH
from ``settings.ssh_cidrs`` and the mesh ports and the group's app ports from
``settings.mesh_cidrs``, default for both the CIDRs of the network's subnets; in a group
Meshfleet created, other TCP ingress rules are removed) and, with
``settings.floating_ip``, a floating IP from the first external network.

Credentials: openstacksdk's clouds.yaml (``OS_CLIENT_CONFIG_FILE``, ./clouds.yaml,
~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml) or the OS_* variables;
``settings.cloud`` names the entry (``envvars`` for OS_AUTH_URL & co).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError, WaitTimeout, recorded_wait
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers.base import (
    TAG_GROUP, TAG_MESH, VmProvider, describe_rules, ingress_rules)

CLOUDS_HELP = ("define it in clouds.yaml (OS_CLIENT_CONFIG_FILE, ./clouds.yaml, "
               "~/.config/openstack/clouds.yaml or /etc/openstack/clouds.yaml), or set OS_AUTH_URL, "
               "OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME and use cloud: envvars")


class OpenStackVmProvider(VmProvider):
    name = "openstack"
    #: seconds between status polls (tests lower it)
    poll_interval = 5

    def __init__(self, *args, **kwargs):
        super(OpenStackVmProvider, self).__init__(*args, **kwargs)
        self._conn = None
        self._region = None
        self._resolved = {}

    # --- setup -----------------------------------------------------------------
    def validate(self):
        super(OpenStackVmProvider, self).validate()
        try:
            import openstack.config
            import openstack.exceptions
        except ImportError:
            raise MeshfleetError("provider openstack needs the openstacksdk Python package")
        cloud = self.settings["cloud"]
        try:
            region = openstack.config.OpenStackConfig().get_one(cloud=cloud)
        except openstack.exceptions.ConfigException as e:
            raise MeshfleetError("VM group %s (provider openstack): cloud %r not found (%s); %s"
                                 % (self.group, cloud, e, CLOUDS_HELP))
        auth = region.config.get("auth") or {}
        if region.config.get("auth_type") not in ("none", "admin_token") and not auth.get("auth_url"):
            raise MeshfleetError("VM group %s (provider openstack): cloud %r has no auth.auth_url; %s"
                                 % (self.group, cloud, CLOUDS_HELP))
        # throttling: keystoneauth retries 429/503 (honouring Retry-After) when asked to;
        # a clouds.yaml `status_code_retries` wins
        if region.config.get("status_code_retries") is None:
            region.config["status_code_retries"] = 4
        self._region = region

    @property
    def conn(self):
        if self._conn is None:
            if self._region is None:
                self.validate()
            import openstack.connection
            self._conn = openstack.connection.Connection(config=self._region)
        return self._conn

    def _err(self, e, action):
        return MeshfleetError("OpenStack %s for VM group %s failed: %s" % (action, self.group, e))

    # --- resolution -------------------------------------------------------------------
    def _resolve(self, kind):
        if kind in self._resolved:
            return self._resolved[kind]
        import openstack.exceptions
        value = self.settings[kind]
        finders = dict(image=self.conn.image.find_image, flavor=self.conn.compute.find_flavor,
                       network=self.conn.network.find_network)
        try:
            found = finders[kind](value, ignore_missing=False)
        except openstack.exceptions.ResourceNotFound:
            raise MeshfleetError("VM group %s (provider openstack): %s %r not found"
                                 % (self.group, kind, value))
        except openstack.exceptions.SDKException as e:
            raise self._err(e, "lookup of %s %r" % (kind, value))
        self._resolved[kind] = found
        return found

    # --- observe ------------------------------------------------------------------------
    def list(self):
        import openstack.exceptions
        pattern = "^%s-[0-9]+$" % re.escape(self.group)
        try:
            servers = list(self.conn.compute.servers(details=True, name=pattern))
        except openstack.exceptions.SDKException as e:
            raise self._err(e, "server listing")
        out = []
        for s in servers:
            meta = s.metadata or {}
            if meta.get(TAG_MESH) != self.mesh or meta.get(TAG_GROUP) != self.group:
                continue
            if not re.match(pattern, s.name or ""):
                continue
            out.append(self._view(s))
        return out

    @staticmethod
    def _view(server):
        private_ip = public_ip = None
        for _net, addrs in sorted((server.addresses or {}).items()):
            for a in addrs:
                if a.get("version", 4) != 4:
                    continue
                if a.get("OS-EXT-IPS:type") == "floating":
                    public_ip = public_ip or a.get("addr")
                else:
                    private_ip = private_ip or a.get("addr")
        flavor = server.flavor or {}
        image = server.image or {}
        return dict(
            name=server.name, id=server.id, status=server.status,
            private_ip=private_ip, public_ip=public_ip or server.access_ipv4 or None,
            settings=dict(image=image.get("id"),
                          flavor=flavor.get("original_name") or flavor.get("name") or flavor.get("id"),
                          network=sorted((server.addresses or {}).keys()),
                          key_name=server.key_name))

    def same(self, key, have, want):
        if key == "image":
            return have == self._resolve("image").id
        if key == "flavor":
            flavor = self._resolve("flavor")
            return have in (flavor.name, flavor.id)
        if key == "network":
            return self._resolve("network").name in (have or [])
        return have == want

    # --- security group ------------------------------------------------------------------
    def prepare(self, apply=True):
        """Resolve image/flavor/network; ensure the security group admits the configured sources.

        Returns what was (or, with ``apply=False``, would be) done; read-only without apply.
        """
        self._resolve("image")
        self._resolve("flavor")
        self._resolve("network")
        name = self.settings.get("security_group")
        if not name:
            return []
        net = self.conn.network
        actions = []
        try:
            want = ingress_rules(self.ports, *self.source_cidrs(self._network_cidrs))
            sg = net.find_security_group(name)
            have = {}
            if sg is None:
                actions.append("create security group %s" % name)
                if apply:
                    sg = net.create_security_group(name=name, description=self._sg_description)
            else:
                for rule in net.security_group_rules(security_group_id=sg.id):
                    if (rule.direction == "ingress" and rule.protocol == "tcp" and rule.remote_ip_prefix
                            and rule.port_range_min == rule.port_range_max and rule.port_range_min):
                        have[(rule.port_range_min, rule.remote_ip_prefix)] = rule
            missing = want - set(have)
            if missing:
                actions.extend(describe_rules("open", missing, name))
                for port, cidr in sorted(missing) if apply else ():
                    net.create_security_group_rule(
                        security_group_id=sg.id, direction="ingress",
                        ethertype="IPv6" if ":" in cidr else "IPv4", protocol="tcp",
                        port_range_min=port, port_range_max=port, remote_ip_prefix=cidr)
            extra = set(have) - want
            if extra and sg is not None and self._ours(sg):
                # only in a group Meshfleet made: a user's own group keeps its other rules
                actions.extend(describe_rules("close", extra, name))
                for key in sorted(extra) if apply else ():
                    net.delete_security_group_rule(have[key], ignore_missing=True)
        except Exception as e:
            raise self._err(e, "security group %s setup" % name)
        return actions

    @property
    def _sg_description(self):
        return "Meshfleet mesh %s VM group %s" % (self.mesh, self.group)

    def _ours(self, sg):
        return (sg.description or "").startswith(self._sg_description)

    def _network_cidrs(self):
        """The CIDRs of the VM network's subnets (the default sources of the rules)."""
        return [sub.cidr for sub in self.conn.network.subnets(network_id=self._resolve("network").id)
                if sub.cidr]

    def reconcile(self, instance, apply=True):
        """A floating IP for an existing server that has none (when settings.floating_ip)."""
        if not self.settings.get("floating_ip") or instance.get("public_ip"):
            return []
        if apply:
            self._attach_floating_ip(self.conn.compute.get_server(instance["id"]))
        return ["attach a floating IP to %s" % instance["name"]]

    # --- change ---------------------------------------------------------------------------
    def create(self, name):
        s = self.settings
        params = dict(name=name, image_id=self._resolve("image").id, flavor_id=self._resolve("flavor").id,
                      networks=[{"uuid": self._resolve("network").id}],
                      metadata={TAG_MESH: self.mesh, TAG_GROUP: self.group})
        if s.get("key_name"):
            params["key_name"] = s["key_name"]
        if s.get("security_group"):
            params["security_groups"] = [{"name": s["security_group"]}]
        try:
            return self.conn.compute.create_server(**params).id
        except Exception as e:
            raise self._err(e, "creation of server %s" % name)

    def wait_ready(self, ids, timeout):
        import openstack.exceptions
        for server_id in ids:
            try:
                server = self.conn.compute.get_server(server_id)
                with recorded_wait("server %s to be ACTIVE" % server_id, timeout):
                    server = self.conn.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"],
                                                               interval=self.poll_interval, wait=timeout)
            except openstack.exceptions.ResourceTimeout:
                raise WaitTimeout("timed out after %ss waiting for server %s to be ACTIVE"
                                  % (timeout, server_id))
            except Exception as e:
                raise self._err(e, "waiting for server %s" % server_id)
            if self.settings.get("floating_ip"):
                self._attach_floating_ip(server)

    def _attach_floating_ip(self, server):
        net = self.conn.network
        try:
            ports = list(net.ports(device_id=server.id))
            if not ports:
                raise MeshfleetError("server %s has no port for a floating IP" % server.name)
            if list(net.ips(port_id=ports[0].id)):
                return
            fip = net.find_available_ip()
            if fip is None:
                externals = list(net.networks(is_router_external=True))
                if not externals:
                    raise MeshfleetError("no external network to allocate a floating IP from")
                fip = net.create_ip(floating_network_id=externals[0].id)
            net.update_ip(fip, port_id=ports[0].id)
        except MeshfleetError:
            raise
        except Exception as e:
            raise self._err(e, "floating IP for %s" % server.name)

    def delete(self, instance):
        import openstack.exceptions
        try:
            if self.settings.get("floating_ip"):
                for port in self.conn.network.ports(device_id=instance["id"]):
                    for fip in self.conn.network.ips(port_id=port.id):
                        self.conn.network.delete_ip(fip)
            self.conn.compute.delete_server(instance["id"], ignore_missing=True)
        except openstack.exceptions.SDKException as e:
            raise self._err(e, "deletion of server %s" % instance["name"])

    def wait_deleted(self, ids, timeout):
        import openstack.exceptions
        for server_id in ids:
            try:
                server = self.conn.compute.get_server(server_id)
            except openstack.exceptions.NotFoundException:
                continue
            try:
                with recorded_wait("server %s to be deleted" % server_id, timeout):
                    self.conn.compute.wait_for_delete(server, interval=self.poll_interval, wait=timeout)
            except openstack.exceptions.ResourceTimeout:
                raise WaitTimeout("timed out after %ss waiting for server %s to be deleted"
                                  % (timeout, server_id))

    def cleanup(self):
        name = self.settings.get("security_group")
        if not name:
            return
        try:
            sg = self.conn.network.find_security_group(name)
            if sg is not None and self._ours(sg):
                self.conn.network.delete_security_group(sg)
        except Exception as e:
            raise self._err(e, "security group %s removal" % name)
