# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fill the topology's defaults in (:func:`normalise`), keeping what it does not understand.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.common import (
    _copy, _hashable, _resolve_path, is_dns_label, is_mapping, is_str)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.schema import (
    CLUSTER_PROVIDERS, DEFAULT_CA, DEFAULT_FEATURES, DEFAULT_ISTIO_HUB,
    DEFAULT_ISTIO_VERSION, DEFAULT_STATE_DIR, DEFAULT_TRUST_DOMAIN, ISTIO_DEFAULT_RELEASE,
    LOCAL_CLUSTER_PROVIDERS, STATE_DIR_ENV)


def state_dir(configured, base_dir, environ=None):
    """The mesh state dir, the one place it is worked out: $MESHFLEET_STATE_DIR when set, else
    ``configured`` (``mesh.state_dir``), else .meshfleet; relative to ``base_dir``. A configured
    value that is not a path string is returned as it is (validate reports it)."""
    if configured is not None and not (is_str(configured) and configured.strip()):
        return configured
    env = (os.environ if environ is None else environ).get(STATE_DIR_ENV)
    if env:
        configured = env
    elif configured is None:
        configured = DEFAULT_STATE_DIR
    return _resolve_path(configured, base_dir)


def normalise(topology, base_dir=None):
    """Return a copy of ``topology`` with every default filled in.

    Values of the wrong type and unknown keys are kept as they are, so that
    :func:`validate` reports the same problems on the result as on the input.
    ``base_dir`` (the topology file's folder) makes ``mesh.state_dir`` and the CA
    file paths absolute.

    Defaults: ``mesh.trust_domain`` cluster.local, ``mesh.istio.version`` 1.30 when every
    cluster is local (kwok), else the release 1.30.4 (see :func:`default_istio_version`),
    ``mesh.istio.revision`` "" (the default, unrevisioned control plane),
    ``mesh.istio.hub`` docker.io/istio, ``mesh.istio.image_pull_secrets`` [],
    ``mesh.state_dir`` $MESHFLEET_STATE_DIR or .meshfleet (:func:`state_dir`), ``mesh.ca`` / ``mesh.features`` as in
    DEFAULT_CA / DEFAULT_FEATURES; a cluster's ``role`` primary, ``settings`` {},
    ``eastwest_address`` null and, for a primary, ``primary`` = itself; a VM
    group's ``namespace`` and ``service_account`` = the group name, ``network``
    = its cluster's network, ``provider`` existing, ``settings`` / ``ports`` /
    ``labels`` {}, ``hosts`` {} (a host without vars gets {}).
    """
    if not is_mapping(topology):
        return _copy(topology)
    topo = _copy(topology)

    # a missing mesh block stays missing (validate reports it); see mesh_defaults()
    mesh = topo.get("mesh")
    if is_mapping(mesh):
        mesh.setdefault("id", None)
        if mesh.get("trust_domain") is None:
            mesh["trust_domain"] = DEFAULT_TRUST_DOMAIN
        istio = mesh.get("istio")
        if istio is None:
            istio = mesh["istio"] = {}
        if is_mapping(istio):
            if istio.get("version") is None:
                istio["version"] = default_istio_version(topo.get("clusters"))
            if istio.get("revision") is None:
                istio["revision"] = ""
            if istio.get("hub") is None:
                istio["hub"] = DEFAULT_ISTIO_HUB
            if istio.get("image_pull_secrets") is None:
                istio["image_pull_secrets"] = []
        mesh["state_dir"] = state_dir(mesh.get("state_dir"), base_dir)
        ca = mesh.get("ca")
        if ca is None:
            ca = mesh["ca"] = {}
        if is_mapping(ca):
            for key, default in DEFAULT_CA.items():
                if ca.get(key) is None:
                    ca[key] = default
            for key in ("root_cert_file", "root_key_file"):
                ca[key] = _resolve_path(ca[key], base_dir)
        features = mesh.get("features")
        if features is None:
            features = mesh["features"] = {}
        if is_mapping(features):
            for key, default in DEFAULT_FEATURES.items():
                if features.get(key) is None:
                    features[key] = default

    clusters = topo.get("clusters")
    if clusters is None:
        clusters = topo["clusters"] = {}
    if is_mapping(clusters):
        for name, cluster in list(clusters.items()):
            if cluster is None:
                cluster = clusters[name] = {}
            if not is_mapping(cluster):
                continue
            cluster.setdefault("provider", None)
            cluster.setdefault("network", None)
            if cluster.get("role") is None:
                cluster["role"] = "primary"
            if cluster.get("primary") is None:
                cluster["primary"] = name if cluster["role"] == "primary" else None
            if cluster.get("settings") is None:
                cluster["settings"] = {}
            cluster.setdefault("eastwest_address", None)

    networks = topo.get("networks")
    if isinstance(networks, list) and all(is_str(n) for n in networks) \
            and len(set(networks)) == len(networks):
        topo["networks"] = dict((n, {}) for n in networks)
    elif is_mapping(networks):
        for name, value in list(networks.items()):
            if value is None:
                networks[name] = {}

    groups = topo.get("vm_groups")
    if groups is None:
        groups = topo["vm_groups"] = {}
    if is_mapping(groups):
        for name, group in list(groups.items()):
            if group is None:
                group = groups[name] = {}
            if not is_mapping(group):
                continue
            # defaults that would be invalid are left out, so that they add no problems
            for key in ("namespace", "service_account"):
                if group.get(key) is None:
                    group[key] = name if is_dns_label(name) else None
            group.setdefault("cluster", None)
            if group.get("network") is None:
                cluster = clusters.get(group["cluster"]) if is_mapping(clusters) and \
                    _hashable(group["cluster"]) else None
                network = cluster.get("network") if is_mapping(cluster) else None
                group["network"] = network if is_dns_label(network) else None
            if group.get("provider") is None:
                group["provider"] = "existing"
            for key in ("settings", "ports", "labels", "hosts"):
                if group.get(key) is None:
                    group[key] = {}
            hosts = group["hosts"]
            if is_mapping(hosts):
                for host, hostvars in list(hosts.items()):
                    if hostvars is None:
                        hosts[host] = {}
    return topo


def image_pulling_clusters(clusters):
    """["name (provider)", ...] of the clusters whose nodes pull Istio's images: every known
    cluster provider except the local ones (LOCAL_CLUSTER_PROVIDERS)."""
    if not is_mapping(clusters):
        return []
    return ["%s (%s)" % (name, c.get("provider")) for name, c in clusters.items()
            if is_mapping(c) and c.get("provider") in CLUSTER_PROVIDERS
            and c.get("provider") not in LOCAL_CLUSTER_PROVIDERS]


def default_istio_version(clusters):
    """``mesh.istio.version`` when the file gives none: the release ISTIO_DEFAULT_RELEASE when
    some cluster pulls images, else DEFAULT_ISTIO_VERSION (istioctl's own build identity)."""
    return ISTIO_DEFAULT_RELEASE if image_pulling_clusters(clusters) else DEFAULT_ISTIO_VERSION


def mesh_defaults(mesh=None, base_dir=None):
    """The normalised mesh block (defaults filled); {} stands in for a missing or bad one."""
    if not is_mapping(mesh):
        mesh = {}
    return normalise(dict(mesh=mesh), base_dir)["mesh"]
