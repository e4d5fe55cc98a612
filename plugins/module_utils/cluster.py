# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Generic cluster state machine shared by meshfleet.mesh.cluster and cluster_info."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import (
    ImmutableChange, MeshfleetModule, wait_for)
from ansible_collections.meshfleet.mesh.plugins.module_utils.providers import (
    CLUSTER_PROVIDERS, get_provider_class)

CLUSTER_ARGS = dict(
    name=dict(type="str", required=True),
    provider=dict(type="str", default="kwok", choices=sorted(CLUSTER_PROVIDERS)),
    settings=dict(type="dict", default={}),
    state_dir=dict(type="path", required=True),
)


def make_provider(module_obj, params):
    cls = get_provider_class(params["provider"])
    provider = cls(params["name"], params.get("settings") or {}, params["state_dir"], module=module_obj)
    provider.validate()
    return provider


def describe(provider, observed):
    """The public view of a cluster: never credentials, only where to find them."""
    return dict(
        name=provider.cluster_name,
        provider=provider.name,
        exists=observed is not None,
        ready=bool(observed and observed.get("ready")),
        api_server=(observed or {}).get("api_server"),
        kubeconfig=provider.kubeconfig_path if observed is not None else None,
        context=(observed or {}).get("context"),
        settings=(observed or {}).get("settings", {}),
    )


class ClusterModule(MeshfleetModule):
    return_args = True  # recorded in the converge receipt
    argument_spec = dict(CLUSTER_ARGS, state=dict(type="str", default="present",
                                                  choices=["present", "absent"]))
    with_wait = True

    def run(self):
        p = self.params
        provider = make_provider(self, p)
        observed = provider.get()
        before = describe(provider, observed)
        if p["state"] == "absent":
            return self.absent(provider, observed, before)
        return self.present(provider, observed, before)

    def _wait(self, predicate, what):
        if self.params["wait"]:
            wait_for(predicate, self.params["wait_timeout"], what)

    def absent(self, provider, observed, before):
        if observed is None:
            return dict(changed=False, cluster=before)
        after = dict(before, exists=False, ready=False, api_server=None, kubeconfig=None)
        self.set_diff(before, after)
        if not self.check_mode:
            provider.delete()
            self._wait(lambda: provider.get() is None,
                       "cluster %s to be deleted" % provider.cluster_name)
        return dict(changed=True, cluster=after)

    def present(self, provider, observed, before):
        changed = False
        if observed is None:
            changed = True
            if self.check_mode:
                after = dict(before, exists=True, settings=provider.settings)
                self.set_diff(before, after)
                return dict(changed=True, cluster=after)
            provider.create()
        else:
            if observed.get("stopped"):
                # The cluster exists but its processes are gone (e.g. after a reboot).
                changed = True
                if not self.check_mode:
                    provider.start()
            changes = provider.diff(observed)
            immutable = [k for k in changes if k in provider.immutable_settings]
            if immutable:
                raise ImmutableChange(immutable, resource="cluster %s" % provider.cluster_name)
            if changes:
                changed = True
                if self.check_mode:
                    after = dict(before, settings=dict(before["settings"],
                                                       **{k: v[1] for k, v in changes.items()}))
                    self.set_diff(before, after)
                    return dict(changed=True, cluster=after, changes=sorted(changes))
                provider.update(changes)
        if self.check_mode:
            return dict(changed=False, cluster=before)
        self._wait(provider.is_ready, "cluster %s to become ready" % provider.cluster_name)
        _path, _context, kc_changed = provider.write_kubeconfig()
        observed = provider.get()
        after = describe(provider, observed)
        if changed:
            self.set_diff(before, after)
        return dict(changed=changed or kc_changed, cluster=after)


class ClusterInfoModule(MeshfleetModule):
    argument_spec = dict(CLUSTER_ARGS)

    def run(self):
        provider = make_provider(self, self.params)
        return dict(changed=False, cluster=describe(provider, provider.get()))
