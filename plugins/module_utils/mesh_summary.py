# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The summary at the end of ``site.yml``: one line that says whether the mesh plays ran and
why (the gate's answer, module ``converge_receipt``), then one line per cluster - its role,
network, API server, east-west gateway address and istiod.

Each cluster's values come from what this run's mesh plays set on its host
(``clusters_api_server``, ``control_plane_gateway``, ``control_plane_istiod``), else from the
gate's check results of the step that holds them (a fast no-op runs no mesh play), else
``-``. Nothing is changed; the action plugin (plugins/action/mesh_summary.py) gathers the
inputs from the hosts' variables.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetModule

#: the host variables of a cluster the summary reads (set by the inventory and the mesh roles)
CLUSTER_VARS = ("meshfleet_role", "meshfleet_network", "clusters_api_server",
                "control_plane_gateway", "control_plane_istiod")

ARGUMENT_SPEC = dict(
    gate=dict(type="dict"),
    clusters=dict(type="dict"),
)


def _dig(value, *keys):
    """``value[k1][k2]...``, or None where a level is missing or not a mapping."""
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _first(*values):
    """The first value that is not None (a variable that is set wins over a check result)."""
    for value in values:
        if value is not None:
            return value
    return None


def gate_line(gate):
    """Whether the mesh plays ran, and why (the gate's ``converged``, ``reason``, ``selected``)."""
    gate = gate if isinstance(gate, dict) else {}
    reason = gate.get("reason")
    if gate.get("converged"):
        return "nothing to change: %s" % reason
    if not reason:
        return "converged by the mesh plays (no receipt check in this run)"
    if gate.get("selected") == []:
        return "no mesh play ran: %s" % reason
    return "converged by the mesh plays (%s)" % reason


def cluster_entry(name, facts, checked):
    """One cluster: ``{name, role, network, api_server, eastwest, istiod}`` from its variables
    (``facts``) and the gate's check results on its host (``checked``: var -> result)."""
    facts = facts if isinstance(facts, dict) else {}
    checked = checked if isinstance(checked, dict) else {}
    gateway = _first(facts.get("control_plane_gateway"), _dig(checked, "control_plane_install", "gateway"))
    istiod = _first(facts.get("control_plane_istiod"), checked.get("control_plane_istiod"))
    return dict(
        name=name,
        role=facts.get("meshfleet_role"),
        network=facts.get("meshfleet_network"),
        api_server=_first(facts.get("clusters_api_server"), _dig(checked, "clusters_result", "cluster", "api_server")),
        eastwest=_dig(gateway, "address"),
        # no local istiod (skipped, or not a local cluster): istiod runs in the cluster
        istiod=_dig(istiod, "istiod", "debug_url"),
    )


def cluster_line(entry):
    return "%s (%s, %s): API %s, east-west %s, istiod %s" % (
        entry["name"], entry["role"], entry["network"], entry["api_server"] or "-",
        entry["eastwest"] or "-", entry["istiod"] or "in cluster")


def summary_lines(gate, clusters):
    """The gate line, then one line per cluster (``clusters``: name -> its variables, in the
    order given)."""
    gate = gate if isinstance(gate, dict) else {}
    results = gate.get("results") if isinstance(gate.get("results"), dict) else {}
    return [gate_line(gate)] + [cluster_line(cluster_entry(name, facts, results.get(name)))
                                for name, facts in (clusters or {}).items()]


class MeshSummaryModule(MeshfleetModule):
    """Reads its arguments and returns the summary; its plan is always empty."""

    argument_spec = ARGUMENT_SPEC

    def result(self, observed, plan):
        return dict(lines=summary_lines(self.params.get("gate"), self.params.get("clusters")))
