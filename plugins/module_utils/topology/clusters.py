# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation of ``clusters`` (names, providers, roles, primaries, east-west addresses, waits)
and ``networks``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress

from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.common import (
    _hashable, _missing, did_you_mean, is_dns_label, is_hostname, is_int, is_ip, is_mapping,
    is_str, kind, one_of, show)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.schema import (
    CLUSTER_KEYS, CLUSTER_PROVIDERS, NETWORK_KEYS, RESERVED_HOST_NAMES, ROLES,
    WAIT_OPERATIONS)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.settings import (
    _validate_settings)


class _Clusters(dict):
    """The usable clusters; ``broken`` names the entries that are not mappings (already
    reported, so references to them are not reported again)."""

    def __init__(self):
        super(_Clusters, self).__init__()
        self.broken = set()


def _validate_clusters(p, clusters):
    """Check clusters; return {name: cluster} of the usable ones, or None when the
    section itself is unusable (then references to clusters are not checked)."""
    if clusters is None or (is_mapping(clusters) and not clusters):
        p.add("clusters", "no clusters; declare at least one under clusters:")
        return None
    if not p.mapping("clusters", clusters, "cluster name to cluster settings"):
        return None
    usable = _Clusters()
    seen_lower = {}
    for name, cluster in clusters.items():
        path = "clusters.%s" % (name,)
        if p.label(path, name, what="cluster name"):
            _reserved(p, path, name, "cluster")
        lower = ("%s" % (name,)).lower()
        if lower in seen_lower:
            p.add(path, "cluster name collides with %s (names are case-insensitive as "
                  "kubeconfig contexts and DNS names)" % seen_lower[lower])
        else:
            seen_lower[lower] = name
        if cluster is None:
            cluster = {}
        if not p.mapping(path, cluster, "cluster settings (provider, network, role, ...)"):
            usable.broken.add(name)
            continue
        usable[name] = cluster
        p.unknown_keys(path, cluster, CLUSTER_KEYS, "cluster")

        provider = cluster.get("provider")
        if _missing(provider):
            p.add(path + ".provider", "missing; choose one of %s" % one_of(CLUSTER_PROVIDERS))
        elif provider not in CLUSTER_PROVIDERS:
            p.add(path + ".provider", "unknown provider %s; choose one of %s"
                  % (show(provider), one_of(CLUSTER_PROVIDERS)))

        role = cluster.get("role")
        if role is not None and role not in ROLES:
            p.add(path + ".role", "unknown role %s; choose one of %s" % (show(role), one_of(ROLES)))

        network = cluster.get("network")
        if _missing(network):
            p.add(path + ".network", "missing; name the network this cluster is on, "
                  "e.g. network1")
        else:
            p.label(path + ".network", network, what="network name")

        settings = cluster.get("settings")
        if settings is None:
            settings = {}
        if p.mapping(path + ".settings", settings, "provider settings"):
            if provider in CLUSTER_PROVIDERS:
                _validate_settings(p, path + ".settings", provider, settings)

        address = cluster.get("eastwest_address")
        if address is not None and not (is_ip(address) or is_hostname(address)):
            p.add(path + ".eastwest_address", "%s is neither an IP address nor a host name"
                  % show(address))

        timeouts = cluster.get("wait_timeouts")
        if timeouts is not None and p.mapping(path + ".wait_timeouts", timeouts,
                                              "operation to seconds (%s)" % ", ".join(WAIT_OPERATIONS)):
            for op, seconds in timeouts.items():
                if op not in WAIT_OPERATIONS:
                    p.add("%s.wait_timeouts.%s" % (path, op), "unknown operation%s; expected one of %s"
                          % (did_you_mean(op, WAIT_OPERATIONS), one_of(WAIT_OPERATIONS)))
                elif not (is_int(seconds) and seconds > 0):
                    p.add("%s.wait_timeouts.%s" % (path, op), "must be a positive number of seconds, got %s"
                          % show(seconds))

    # roles and primaries need the whole set
    has_bad_role = False
    primaries = []
    for name, cluster in usable.items():
        role = cluster.get("role") or "primary"
        if role not in ROLES:
            has_bad_role = True
            continue
        path = "clusters.%s.primary" % (name,)
        primary = cluster.get("primary")
        if role == "primary":
            primaries.append(name)
            if primary is not None and primary != name:
                p.add(path, "cluster %s is a primary, so it cannot name another primary (%s); "
                      "drop primary: or set role: remote" % (name, show(primary)))
        elif _missing(primary):
            p.add(path, "missing; a remote cluster needs primary: <name of a primary cluster>")
        elif not _hashable(primary) or primary not in clusters:
            p.add(path, "no cluster named %s; choose one of %s" % (
                show(primary), one_of(_primary_names(usable)) or "(no primaries)"))
        elif primary not in usable:
            pass  # that cluster's own entry is already reported
        elif (usable[primary].get("role") or "primary") != "primary":
            p.add(path, "%s is itself a remote cluster; a remote must name a primary (%s)"
                  % (show(primary), one_of(_primary_names(usable)) or "none declared"))
    if usable and not primaries and not has_bad_role:
        p.add("clusters", "no primary cluster; at least one cluster needs role: primary")
    _validate_remote_pilot_addresses(p, usable)
    return usable


def _validate_remote_pilot_addresses(p, clusters):
    """A primary's east-west address is its remotes' remotePilotAddress: istiod's Service for
    them gets an Endpoint there, and Kubernetes refuses loopback endpoint addresses."""
    for name, cluster in clusters.items():
        primary = cluster.get("primary")
        if (cluster.get("role") or "primary") != "remote" or not _hashable(primary) or primary not in clusters:
            continue
        address = clusters[primary].get("eastwest_address")
        try:
            loopback = is_str(address) and ipaddress.ip_address(address).is_loopback
        except ValueError:
            continue
        if loopback:
            p.add("clusters.%s.eastwest_address" % primary,
                  "%s is a loopback address, but remote cluster %s reaches this primary's istiod "
                  "there (remotePilotAddress; Kubernetes refuses loopback endpoints): give an "
                  "address of a real interface" % (show(address), name))


def _primary_names(clusters):
    return ["%s" % n for n, c in clusters.items() if (c.get("role") or "primary") == "primary"]


def _networks_of(clusters):
    out = []
    for cluster in (clusters or {}).values():
        net = cluster.get("network")
        if is_str(net) and net and net not in out:
            out.append(net)
    return out


def _validate_networks(p, networks, clusters):
    if networks is None:
        return
    if isinstance(networks, list):
        names, seen = [], set()
        for i, name in enumerate(networks):
            if not is_str(name):
                p.add("networks[%d]" % i, "must be a network name, got %s" % kind(name))
                continue
            if name in seen:
                p.add("networks[%d]" % i, "network %s is listed twice" % show(name))
                continue
            seen.add(name)
            names.append(name)
    elif is_mapping(networks):
        names = []
        for name, value in networks.items():
            if value is not None and p.mapping("networks.%s" % (name,), value,
                                               "network settings (description)"):
                p.unknown_keys("networks.%s" % (name,), value, NETWORK_KEYS, "network")
            names.append(name)
    else:
        p.add("networks", "must be a list of network names or a mapping of network name to "
              "settings, got %s" % kind(networks))
        return
    used = _networks_of(clusters)
    for name in names:
        path = "networks.%s" % (name,)
        if not p.label(path, name, what="network name"):
            continue
        if clusters and name not in used:
            p.add(path, "declared but no cluster is on network %s" % show(name))
    if clusters:
        for cname, cluster in clusters.items():
            net = cluster.get("network")
            if is_dns_label(net) and net not in names:
                p.add("clusters.%s.network" % (cname,), "%s is not one of the declared "
                      "networks (%s)%s" % (show(net), one_of(names) or "none",
                                           did_you_mean(net, names)))


def _reserved(p, path, name, what):
    if ("%s" % (name,)).lower() in RESERVED_HOST_NAMES:
        p.add(path, "%s name %s is reserved: Ansible or this inventory's own groups use it (%s); "
              "choose another name" % (what, show(name), one_of(RESERVED_HOST_NAMES)))
