# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The netns VM provider: the VM group's settings, checked, on top of the runtime.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError, WaitTimeout
from ansible_collections.meshfleet.mesh.plugins.module_utils.k8s_names import is_host_name
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers.base import VmProvider
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers.netns.addressing import (
    addresses, capacity, netns_name, parse_subnet, vm_names)
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers.netns.runtime import (
    NetnsVm, find_base_rootfs, list_vms)


class NetnsVmProvider(VmProvider):
    """Local VMs in network namespaces (see the package docstring)."""

    name = "netns"

    def validate(self):
        super(NetnsVmProvider, self).validate()
        s = self.settings
        self.net = parse_subnet(s["subnet"])
        hosts = s.get("hosts")
        if isinstance(hosts, dict):
            hosts = list(hosts)
            s["hosts"] = hosts
        if hosts is not None and not (isinstance(hosts, list) and all(
                isinstance(h, str) for h in hosts)):
            raise MeshfleetError("VM group %s: settings.hosts must be a list of VM names" % self.group)
        if hosts and s.get("count") is not None and s["count"] != len(hosts):
            raise MeshfleetError("VM group %s: settings.count is %d but %d hosts are listed (%s); "
                                 "drop count or make it match" % (
                                     self.group, s["count"], len(hosts), ", ".join(hosts)))
        self.names = vm_names(self.group, s.get("hosts"), s.get("count"))
        for n in self.names:
            if not is_host_name(n):
                raise MeshfleetError("VM group %s: %r is not a valid VM name (lowercase letters, "
                                     "digits, '-' and '.')" % (self.group, n))
        if len(set(self.names)) != len(self.names):
            raise MeshfleetError("VM group %s: VM names repeat: %s" % (self.group, ", ".join(self.names)))
        if len(self.names) > capacity(self.net):
            raise MeshfleetError("VM group %s: %d VMs do not fit in %s (room for %d)" % (
                self.group, len(self.names), self.net, capacity(self.net)))
        self.state_dir = os.path.abspath(os.path.expanduser(s["state_dir"]))
        self.addresses = addresses(self.net, self.names)

    @property
    def count(self):
        return len(self.names)

    def desired_names(self):
        return list(self.names)

    def _params(self):
        return getattr(self.module, "params", None) or {}

    def list(self):
        # A VM whose processes are gone (host reboot, crash) counts as missing for
        # state=present, so that create() boots it again on its kept disk; for
        # state=absent and the _info module it is listed with status "stopped".
        booting = self._params().get("state") == "present"
        out = []
        for view in list_vms(self.state_dir):
            if view.get("group") != self.group or view.get("mesh") != self.mesh:
                continue
            if booting and view["status"] != "running":
                continue
            out.append(view)
        return out

    def immutable_changes(self, instance):
        seen = instance.get("settings") or {}
        changed = []
        if seen.get("subnet") and seen["subnet"] != str(self.net):
            changed.append("subnet")
        want = self.addresses.get(instance.get("name"))
        if want and seen.get("address") and seen["address"] != want:
            changed.append("address (the VM's position in hosts)")
        return changed

    def create(self, name):
        base = find_base_rootfs(self.settings.get("rootfs_cache"))
        NetnsVm(self.state_dir, name).create(self.mesh, self.group, self.net,
                                             self.addresses[name], base)
        return netns_name(name)

    def _vm(self, ident):
        name = ident[len("mf-"):] if ident.startswith("mf-") else ident
        return NetnsVm(self.state_dir, name)

    def wait_ready(self, ids, timeout):
        deadline = time.monotonic() + timeout
        for ident in ids:
            vm = self._vm(ident)
            vm.wait_ssh((vm.record() or {}).get("address"), max(1, deadline - time.monotonic()))

    def delete(self, instance):
        NetnsVm(self.state_dir, instance["name"]).delete()

    def wait_deleted(self, ids, timeout):
        deadline = time.monotonic() + timeout
        for ident in ids:
            vm = self._vm(ident)
            while not vm.gone():
                if time.monotonic() > deadline:
                    raise WaitTimeout("timed out after %ss waiting for VM %s to go" % (timeout, vm.name))
                time.sleep(0.2)

    def reboot(self, name, timeout=60):
        NetnsVm(self.state_dir, name).reboot(timeout)
