# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Counts and a one-line summary of a topology.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.clusters import (
    _networks_of, _primary_names)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.common import (
    _plural, is_mapping)


def summarise(topology):
    """Counts and a one-line summary of a (valid) topology."""
    topology = topology if is_mapping(topology) else {}
    clusters = topology.get("clusters") if is_mapping(topology.get("clusters")) else {}
    groups = topology.get("vm_groups") if is_mapping(topology.get("vm_groups")) else {}
    usable = dict((n, c) for n, c in clusters.items() if is_mapping(c))
    networks = _networks_of(usable)
    primaries = _primary_names(usable)
    remotes = [n for n, c in usable.items() if c.get("role") == "remote"]
    vm_groups = {}
    for name, group in groups.items():
        hosts = group.get("hosts") if is_mapping(group) else None
        vm_groups["%s" % (name,)] = len(hosts) if is_mapping(hosts) else 0
    line = "%s on %s, %s, %s; %s" % (
        _plural(len(usable), "cluster"), _plural(len(networks), "network"),
        _plural(len(primaries), "primary", "primaries"), _plural(len(remotes), "remote"),
        ("VM groups: " + ", ".join("%s (%s)" % (g, _plural(n, "host"))
                                   for g, n in vm_groups.items())) if vm_groups
        else "no VM groups")
    return dict(clusters=len(usable), networks=networks, primaries=primaries,
                remotes=remotes, vm_groups=vm_groups, line=line)
