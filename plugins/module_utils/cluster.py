# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Generic cluster state machine shared by meshfleet.mesh.cluster and cluster_info."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import time

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import (
    ImmutableChange, MeshfleetError, MeshfleetModule, Plan, WaitTimeout, wait_for)
from ansible_collections.meshfleet.mesh.plugins.module_utils import kubeconfig as kc
from ansible_collections.meshfleet.mesh.plugins.module_utils.kube_rest import KubeRest
from ansible_collections.meshfleet.mesh.plugins.module_utils.lb_drain import (
    FINALIZER, Unreachable, drain_load_balancers)
from ansible_collections.meshfleet.mesh.plugins.module_utils.providers import (
    CLUSTER_PROVIDERS, get_provider_class)

#: the operations whose waits have their own bound (module option wait_timeouts, the
#: inventory's clusters.<c>.wait_timeouts); docs/providers.md "Wait timeouts"
WAIT_OPERATIONS = ("create", "update", "delete", "load_balancers")
#: seconds an operation may take, per provider, when neither wait_timeouts nor wait_timeout
#: says otherwise: what the clouds need (EKS: cluster ~10-25 min then a managed node group
#: ~5-15 min more; AKS and GKE ~10-20 min; deletes similar; cloud-facts.md), with room
DEFAULT_WAIT_TIMEOUTS = {
    "kwok": dict(create=600, update=600, delete=600, load_balancers=120),
    "minikube": dict(create=600, update=600, delete=600, load_balancers=120),
    "aks": dict(create=1800, update=1800, delete=1800, load_balancers=900),
    "gke": dict(create=1800, update=1800, delete=1800, load_balancers=900),
    "eks": dict(create=2700, update=2400, delete=2400, load_balancers=900),
}
#: providers whose cloud load balancers can outlive the cluster: their LoadBalancer Services
#: are deleted (and waited for) before the cluster (option delete_load_balancers)
DRAIN_PROVIDERS = ("aks", "eks", "gke")
#: observed states in which a cluster is being deleted already (no API to drain)
DELETING_STATES = ("DELETING", "Deleting", "STOPPING")

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


def wait_timeout_problems(timeouts, path="wait_timeouts"):
    """Why ``timeouts`` ({operation: seconds}) is not usable: a list of messages naming the field."""
    problems = []
    for key, value in sorted((timeouts or {}).items()):
        if key not in WAIT_OPERATIONS:
            problems.append("%s.%s: unknown operation; expected one of %s"
                            % (path, key, ", ".join(WAIT_OPERATIONS)))
        elif value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            problems.append("%s.%s must be a positive number of seconds, got %r" % (path, key, value))
    return problems


class ClusterModule(MeshfleetModule):
    receipt_step = True
    argument_spec = dict(
        CLUSTER_ARGS,
        state=dict(type="str", default="present", choices=["present", "absent"]),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int"),
        wait_timeouts=dict(type="dict", options=dict((op, dict(type="int")) for op in WAIT_OPERATIONS)),
        delete_load_balancers=dict(type="bool"),
    )
    with_wait = True
    #: time.monotonic() by which the running operation must end (module_timeout reads it)
    wait_deadline = None

    def observe(self):
        p = self.params
        problems = wait_timeout_problems(p.get("wait_timeouts"))
        if p.get("wait_timeout") is not None and p["wait_timeout"] <= 0:
            problems.append("wait_timeout must be a positive number of seconds, got %r" % p["wait_timeout"])
        if problems:
            raise MeshfleetError("; ".join(problems))
        self.provider = make_provider(self, p)
        return self.provider.get()

    def plan(self, observed):
        provider = self.provider
        before = describe(provider, observed)
        self.cluster, self.changes, self.load_balancers = before, None, None
        if self.params["state"] == "absent":
            if observed is None:
                return Plan()
            self.cluster = dict(before, exists=False, ready=False, api_server=None, kubeconfig=None)
            return Plan(before, self.cluster).add("delete cluster %s" % provider.cluster_name,
                                                  lambda: self._delete(observed))
        if observed is None:
            self.cluster = dict(before, exists=True, settings=provider.settings)
            return Plan(before, self.cluster).add("create cluster %s" % provider.cluster_name, self._create)
        plan = Plan(before, before)
        if observed.get("stopped"):
            # The cluster exists but its processes are gone (e.g. after a reboot).
            plan.add("start cluster %s (stopped)" % provider.cluster_name, self._start)
        changes = provider.diff(observed)
        immutable = [k for k in changes if k in provider.immutable_settings]
        if immutable:
            raise ImmutableChange(immutable, resource="cluster %s" % provider.cluster_name)
        if changes:
            self.changes = sorted(changes)
            self.cluster = plan.after = dict(before, settings=dict(before["settings"],
                                                                   **{k: v[1] for k, v in changes.items()}))
            plan.add("update %s" % ", ".join(self.changes), lambda: provider.update(changes))
        return plan

    def apply(self, plan, observed):
        provider = self.provider
        if self.params["state"] == "absent":
            plan.run()
            return
        self.begin("update")
        plan.run()
        self._wait(provider.is_ready, "cluster %s to become ready" % provider.cluster_name)
        dummy, dummy, kc_changed = provider.write_kubeconfig()
        if kc_changed:
            plan.add("kubeconfig %s written" % provider.kubeconfig_path)
        self.cluster = plan.after = describe(provider, provider.get())

    def result(self, observed, plan):
        out = dict(cluster=self.cluster)
        if self.changes:
            out["changes"] = self.changes
        if self.load_balancers is not None:
            out["load_balancers"] = self.load_balancers
        return out

    def healthy(self, observed, plan):
        if not (observed or {}).get("ready"):
            return "cluster not ready"
        written = kc.server_of(kc.load_file(self.provider.kubeconfig_path))
        if written != observed.get("api_server"):
            return "the kubeconfig names %s, the cluster serves at %s" % (written, observed.get("api_server"))
        return None

    def _create(self):
        self.begin("create")
        self.provider.create()

    def _start(self):
        self.begin("create")
        self.provider.start()

    # --- waits ---------------------------------------------------------------------------
    def timeout(self, operation):
        """Seconds ``operation`` may take: wait_timeouts.<operation>, else wait_timeout, else the
        provider's default (:data:`DEFAULT_WAIT_TIMEOUTS`)."""
        given = (self.params.get("wait_timeouts") or {}).get(operation)
        if given is not None:
            return given
        if self.params.get("wait_timeout") is not None:
            return self.params["wait_timeout"]
        return DEFAULT_WAIT_TIMEOUTS.get(self.params["provider"], DEFAULT_WAIT_TIMEOUTS["kwok"])[operation]

    def begin(self, operation):
        """Start ``operation``'s budget: every wait until the next begin() shares it."""
        self.operation = operation
        self.wait_deadline = time.monotonic() + self.timeout(operation)

    def _wait(self, predicate, what):
        if self.params["wait"]:
            left = max(1, int(round(self.wait_deadline - time.monotonic())))
            wait_for(predicate, left, what)

    # --- absent ----------------------------------------------------------------------------
    def drain(self, provider, observed):
        """Delete the cluster's LoadBalancer Services and wait until they are gone (their load
        balancers are billed otherwise). Returns the result's ``load_balancers`` entry."""
        enabled = self.params.get("delete_load_balancers")
        if enabled is None:
            enabled = provider.name in DRAIN_PROVIDERS
        if not enabled:
            return None
        name = provider.cluster_name
        state = observed.get("status") or observed.get("provisioning_state")
        if state in DELETING_STATES or observed.get("stopped"):
            why = "it is being deleted already (%s)" % state if state in DELETING_STATES else "it is stopped"
            return self._skip_drain(name, why)
        self.begin("load_balancers")
        try:
            provider.write_kubeconfig()  # fresh credentials: cloud tokens expire
            kube = KubeRest(provider.kubeconfig_path, label=name, timeout=20)
        except Exception as e:  # no endpoint, credentials or usable kubeconfig: no API to reach
            return self._skip_drain(name, "no usable kubeconfig: %s" % (getattr(e, "msg", None) or e))
        try:
            deleted = drain_load_balancers(kube, self.timeout("load_balancers"), name)
        except Unreachable as e:
            return self._skip_drain(name, e.msg)
        except WaitTimeout as e:
            raise MeshfleetError("%s; cluster %s was NOT deleted (deleting it now could leave the load balancers "
                                 "billed). Check the cloud controller's events on those Services, or delete the "
                                 "load balancers in the cloud and remove the finalizer %s, then run again; "
                                 "wait_timeouts.load_balancers raises the limit" % (e.msg, name, FINALIZER))
        except MeshfleetError as e:
            if e.details.get("status"):
                raise MeshfleetError("cannot delete the LoadBalancer Services of cluster %s before deleting it: %s; "
                                     "the cluster was NOT deleted. Fix the access, or set delete_load_balancers: "
                                     "false to delete it anyway" % (name, e.msg))
            return self._skip_drain(name, e.msg)  # e.g. the exec credential plugin failed
        finally:
            kube.close()
        return dict(deleted=deleted)

    def _skip_drain(self, name, why):
        msg = ("cluster %s: its API cannot be reached, so its LoadBalancer Services were not deleted first (%s); "
               "deleting the cluster anyway. Check the cloud for load balancers left from it." % (name, why))
        self.warn(msg)
        return dict(deleted=[], skipped=msg)

    def _delete(self, observed):
        provider = self.provider
        self.load_balancers = self.drain(provider, observed)
        self.begin("delete")
        provider.delete()
        self._wait(lambda: provider.get() is None, "cluster %s to be deleted" % provider.cluster_name)
        # the deleted cluster's local folder (kubeconfig, credential plugin, rendered files)
        if os.path.isdir(provider.cluster_dir):
            shutil.rmtree(provider.cluster_dir)


class ClusterInfoModule(MeshfleetModule):
    argument_spec = dict(CLUSTER_ARGS)

    def observe(self):
        self.provider = make_provider(self, self.params)
        return self.provider.get()

    def result(self, observed, plan):
        return dict(cluster=describe(self.provider, observed))
