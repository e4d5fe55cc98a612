# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validate a whole topology: :func:`validate` (one message per problem, each starting with
the dotted path of the offending field) and :func:`check_topology` (what
meshfleet.mesh.topology_validate reports).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.clusters import (
    _validate_clusters, _validate_networks)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.common import (
    _Problems, did_you_mean, is_mapping, key_path, kind, one_of)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.mesh import (
    _validate_istio_release, _validate_mesh)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.schema import (
    PLUGIN_KEYS, TOP_KEYS)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.summary import (
    summarise)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.vm_groups import (
    _validate_vm_groups)


def validate(topology):
    """Return the list of problems in ``topology`` (raw or normalised); [] when valid."""
    p = _Problems()
    if not is_mapping(topology):
        p.add("topology", "must be a mapping with the keys mesh, clusters and optionally "
                          "networks and vm_groups, got %s" % kind(topology))
        return p
    allowed = TOP_KEYS + PLUGIN_KEYS
    for key in topology:
        if key not in allowed:
            p.add(key_path("", key), "unknown top-level key%s; expected one of %s (or the "
                  "inventory plugin options %s)" % (did_you_mean(key, allowed),
                                                    one_of(TOP_KEYS + ("plugin",)),
                                                    one_of(PLUGIN_KEYS[1:])))
    _validate_mesh(p, topology.get("mesh"), "mesh" in topology)
    clusters = _validate_clusters(p, topology.get("clusters"))
    _validate_istio_release(p, topology.get("mesh"), topology.get("clusters"))
    _validate_networks(p, topology.get("networks"), clusters)
    _validate_vm_groups(p, topology.get("vm_groups"), clusters)
    return list(p)


def check_topology(topology, extra_errors=(), unparsed=False):
    """What meshfleet.mesh.topology_validate reports: ``(errors, summary, failure message or
    None)``; ``extra_errors`` (the plugin's, e.g. duplicate keys) come first, once each. With
    ``unparsed`` (the file is not a topology at all) they are the only errors."""
    found = [] if unparsed else validate(topology)
    errors = [e for e in extra_errors if e not in found] + found
    msg = None
    if unparsed and errors:
        msg = "\n".join(errors)
    elif errors:
        msg = "topology has %d problem%s:\n%s" % (
            len(errors), "" if len(errors) == 1 else "s", "\n".join("- " + e for e in errors))
    return errors, summarise(topology), msg
