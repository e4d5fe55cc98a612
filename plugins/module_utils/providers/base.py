# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster provider interface every provider (kwok, minikube, aks, gke, eks) implements.

A provider knows one kind of cluster. The generic state machine in
``module_utils/cluster.py`` drives it: ``get`` -> ``create``/``update``/``delete``
-> ``is_ready`` (waited on) -> ``write_kubeconfig``. Providers never return
credentials in results; kubeconfigs go to files (0600) under the mesh state dir.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.meshfleet.mesh.plugins.module_utils import exec_credential as xc
from ansible_collections.meshfleet.mesh.plugins.module_utils.base import (
    MeshfleetError, ensure_private_dir)
from ansible_collections.meshfleet.mesh.plugins.module_utils.cloud import FieldPatterns
from ansible_collections.meshfleet.mesh.plugins.module_utils.provider_registry import require_settings
from ansible_collections.meshfleet.mesh.plugins.module_utils.provider_spec import PROVIDERS


class ClusterProvider:
    """Base class. Subclasses set the class attributes and implement the methods."""

    #: provider name as used in the inventory (``provider: aks``); its spec
    #: (provider_spec.PROVIDERS) says which settings it requires and which are immutable
    name = None
    #: settings keys compared between desired and observed state (default: all given)
    compared_settings = None

    def __init__(self, cluster_name, settings, state_dir, module=None):
        self.cluster_name = cluster_name
        self.settings = dict(settings or {})
        self.state_dir = state_dir
        self.module = module  # the MeshfleetModule (for warn and its parameters), may be None

    # --- paths ----------------------------------------------------------------
    @property
    def cluster_dir(self):
        return os.path.join(self.state_dir, "clusters", self.cluster_name)

    @property
    def kubeconfig_path(self):
        return os.path.join(self.cluster_dir, "kubeconfig")

    def ensure_cluster_dir(self):
        ensure_private_dir(os.path.join(self.state_dir, "clusters"))
        return ensure_private_dir(self.cluster_dir)

    @property
    def immutable_settings(self):
        """Settings (dotted paths, wildcards) that cannot change on an existing cluster."""
        return FieldPatterns(PROVIDERS[self.name]["immutable"])

    # --- validation -----------------------------------------------------------
    def validate(self):
        """Raise MeshfleetError for missing settings, SDKs, binaries or credentials."""
        require_settings("cluster %s" % self.cluster_name, self.name, self.settings)

    # --- lifecycle (override) -------------------------------------------------
    def get(self):
        """Return the observed cluster as a dict, or None when it does not exist.

        The dict has at least ``settings`` (observed values of the comparable
        settings), ``ready`` (bool) and ``api_server`` (URL or None).
        """
        raise NotImplementedError

    def create(self):
        raise NotImplementedError

    def update(self, changes):
        """Apply mutable ``changes`` ({field: (before, after)})."""
        raise MeshfleetError("provider %s cannot update clusters in place (fields: %s)"
                             % (self.name, ", ".join(sorted(changes))))

    def delete(self):
        raise NotImplementedError

    def start(self):
        """Start an existing cluster that ``get`` reported as ``stopped`` (local providers)."""
        raise MeshfleetError("provider %s cannot start a stopped cluster" % self.name)

    def is_ready(self):
        observed = self.get()
        return bool(observed and observed.get("ready"))

    def write_kubeconfig(self):
        """Write the kubeconfig to ``kubeconfig_path`` (0600). Return (path, context, changed)."""
        raise NotImplementedError

    def _install_plugin(self):
        """Copy Meshfleet's exec credential plugin next to the kubeconfig (cloud providers whose
        kubeconfigs mint tokens with it); return what ``install_script`` returns."""
        try:
            return xc.install_script(self.cluster_dir)
        except (xc.CredentialError, IOError, OSError) as e:
            raise MeshfleetError("cluster %s (provider %s): cannot write the kubeconfig credential plugin: %s"
                                 % (self.cluster_name, self.name, e))

    # --- comparison -------------------------------------------------------------
    def diff(self, observed):
        """Return {field: (observed, desired)} for the settings that differ."""
        keys = self.compared_settings
        if keys is None:
            keys = list(self.settings)
        seen = observed.get("settings", {}) if observed else {}
        changes = {}
        for key in keys:
            if key not in self.settings or self.settings[key] is None:
                continue
            want = self.settings[key]
            have = seen.get(key)
            if not self.same(key, have, want):
                changes[key] = (have, want)
        return changes

    def same(self, key, have, want):
        """Compare one setting; providers override for normalisation (e.g. versions)."""
        return have == want
