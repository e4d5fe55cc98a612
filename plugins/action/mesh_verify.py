# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of meshfleet.mesh.mesh_verify (documented in plugins/modules/): runs the module
and, while it waits for every istiod to sync every cluster and discover the test service,
prints a progress line every MESHFLEET_PROGRESS_INTERVAL seconds (default 30) naming the wait,
how long it has waited and its timeout (plugins/plugin_utils/progress.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.meshfleet.mesh.plugins.plugin_utils.progress import ProgressActionBase


class ActionModule(ProgressActionBase):
    pass
