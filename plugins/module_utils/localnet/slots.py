# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The machine-wide registry of local-network slots (node, network, mesh numbers).

Several meshes share one machine (the demo, test runs), and the namespaces and host
interfaces a slot names (``localnet.addressing``) are machine-wide, so numbers are handed
out under a file lock from ``${MESHFLEET_LOCALNET_DIR:-~/.cache/meshfleet/localnet}/slots.json``:
``{kind: {owner: slot}}``. An owner is the absolute path of the folder of what holds the
slot (a cluster's folder, a mesh's state dir + network name); owners whose path is gone
are pruned, as in the port registry. A slot whose namespace still exists (a crashed run's
remnant) is not handed out again until it is gone (``in_use``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet import addressing
from ansible_collections.meshfleet.mesh.plugins.module_utils.ports import JsonRegistry, locked

#: kind -> (number of slots, the namespace a slot names)
KINDS = {
    "node": (addressing.MAX_NODE_SLOTS, addressing.node_netns),
    "network": (addressing.MAX_NETWORK_SLOTS, addressing.router_netns),
    "mesh": (addressing.MAX_MESH_SLOTS, addressing.core_netns),
    # a VM link names no namespace of its own (the router's interface goes with the VM)
    "vm_link": (addressing.MAX_VM_LINK_SLOTS, None),
}


def netns_exists(name):
    return os.path.exists(os.path.join("/run/netns", name))


def _owner_path(owner):
    """The folder that keeps ``owner`` alive: ``/a/b`` or ``/a/b#network1`` -> ``/a/b``."""
    return owner.split("#", 1)[0]


class SlotRegistry(JsonRegistry):

    def __init__(self, directory=None, in_use=None):
        JsonRegistry.__init__(self, directory, "MESHFLEET_LOCALNET_DIR", "localnet", "slots")
        self.in_use = in_use or (lambda kind, slot: KINDS[kind][1] is not None and netns_exists(KINDS[kind][1](slot)))

    def get(self, kind, owner):
        """The slot ``owner`` holds, or None."""
        return self._load().get(kind, {}).get(owner)

    def reserve(self, kind, owner):
        """The slot of ``owner`` (an absolute path, optionally ``path#name``): kept if it
        holds one, else the lowest free one."""
        if kind not in KINDS:
            raise MeshfleetError("unknown slot kind %r (one of %s)" % (kind, ", ".join(sorted(KINDS))))
        if not os.path.isabs(_owner_path(owner)):
            raise MeshfleetError("slot owner %r is not an absolute path" % (owner,))
        limit = KINDS[kind][0]
        with locked(self.lock_path):
            data = self._load()
            mine = data.setdefault(kind, {})
            for other in [o for o in mine if o != owner and not os.path.exists(_owner_path(o))]:
                del mine[other]
            if owner in mine:
                return mine[owner]
            taken = set(mine.values())
            for slot in range(limit):
                if slot not in taken and not self.in_use(kind, slot):
                    mine[owner] = slot
                    self._save(data)
                    return slot
            raise MeshfleetError("no free %s slot left (%d in use on this machine)" % (kind, limit))

    def entries(self, kind):
        """{owner: slot} of every holder of a ``kind`` slot (as recorded; nothing pruned)."""
        return dict(self._load().get(kind, {}))

    def peek(self, kind, owner, also_taken=()):
        """The slot :meth:`reserve` would give ``owner`` now, without recording it (check
        mode); ``also_taken``: slots to skip as well (others peeked in the same plan)."""
        data = self._load().get(kind, {})
        if owner in data:
            return data[owner]
        taken = set(v for o, v in data.items() if os.path.exists(_owner_path(o))) | set(also_taken)
        for slot in range(KINDS[kind][0]):
            if slot not in taken and not self.in_use(kind, slot):
                return slot
        raise MeshfleetError("no free %s slot left (%d in use on this machine)" % (kind, KINDS[kind][0]))

    def release(self, kind, owner):
        with locked(self.lock_path):
            data = self._load()
            if data.get(kind, {}).pop(owner, None) is not None:
                self._save(data)
