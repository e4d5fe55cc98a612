# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cluster providers: one interface (``base.ClusterProvider``), one class per cloud.

What each takes is in ``provider_spec.PROVIDERS``; ``provider_registry`` imports a provider
only when it is used, so that a missing SDK only matters to the user of that provider.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.meshfleet.mesh.plugins.module_utils.provider_registry import provider_class
from ansible_collections.meshfleet.mesh.plugins.module_utils.provider_spec import (
    CLUSTER_PROVIDERS)  # noqa: F401 - the names the cluster modules take


def get_provider_class(name):
    """The cluster provider class for ``name`` (see provider_registry)."""
    return provider_class(name, "cluster")
