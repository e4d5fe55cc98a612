# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Delete a cluster's ``LoadBalancer`` Services and wait until the cloud removed their load
balancers, before the cluster itself is deleted (meshfleet.mesh.cluster, state=absent).

Why: a cloud load balancer made for a Service is not always deleted with the cluster
(EKS: orphaned with its security groups; GKE: "will attempt", not guaranteed;
/work/shared/reference/cloud-facts.md), and it is billed until someone deletes it.

The portable signal that a load balancer is gone: the cloud controller manager puts the
finalizer ``service.kubernetes.io/load-balancer-cleanup`` on every Service of type
LoadBalancer it provisions, and removes it only after it deleted the load balancer; the API
server keeps a deleted Service (with a deletionTimestamp) until its finalizers are gone. So
"the Service object is gone" means "the load balancer is gone", on every cloud. No cloud
API call is needed.

One Kubernetes client (:class:`.kube_rest.KubeRest`); every Service of type LoadBalancer in
every namespace (the east-west gateway, ingress gateways, the users' own).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError, WaitTimeout, wait_for

try:
    from urllib.parse import quote
except ImportError:  # pragma: no cover - Python 2
    from urllib import quote  # type: ignore

FINALIZER = "service.kubernetes.io/load-balancer-cleanup"


class Unreachable(MeshfleetError):
    """The cluster's API cannot be reached (a cluster half-deleted by an earlier run)."""


def _key(svc):
    meta = svc.get("metadata") or {}
    return "%s/%s" % (meta.get("namespace"), meta.get("name"))


def load_balancer_services(kube):
    """{namespace/name: Service} of every Service of type LoadBalancer, all namespaces."""
    try:
        doc = kube.get("list Services in all namespaces", "/api/v1/services")
    except MeshfleetError as e:
        if e.details.get("status") in (None, 0):  # no HTTP answer at all
            raise Unreachable(e.msg)
        raise
    return dict((_key(s), s) for s in doc.get("items") or []
                if (s.get("spec") or {}).get("type") == "LoadBalancer")


def drain_load_balancers(kube, timeout, cluster, sleep=2.0, max_sleep=10.0, sleeper=None):
    """Delete every LoadBalancer Service of ``kube``'s cluster; wait until each is gone.

    Returns the sorted ``namespace/name`` list of the Services deleted (or found being deleted).
    Raises :class:`Unreachable` when the API cannot be reached at all (the caller goes on with
    the cluster's deletion) and :class:`.base.WaitTimeout` naming the Services still there.
    """
    services = load_balancer_services(kube)
    for key, svc in sorted(services.items()):
        if (svc.get("metadata") or {}).get("deletionTimestamp"):
            continue  # deleted by an earlier run; its load balancer is going
        ns, name = key.split("/", 1)
        kube.request("delete Service %s" % key, "DELETE",
                     "/api/v1/namespaces/%s/services/%s" % (quote(ns, safe=""), quote(name, safe="")),
                     not_found=None)
    names = sorted(services)
    if not names:
        return names
    left = dict(names=names)

    def gone():
        now = load_balancer_services(kube)
        # the same name re-created by someone else (other uid) counts as gone: not ours
        left["names"] = sorted(k for k in names if k in now and (now[k].get("metadata") or {}).get("uid")
                               == (services[k].get("metadata") or {}).get("uid"))
        return not left["names"]

    what = "the cloud to delete the load balancers of cluster %s's Services %s" % (cluster, ", ".join(names))
    kwargs = dict(sleep=sleep, max_sleep=max_sleep)
    if sleeper is not None:
        kwargs["sleeper"] = sleeper
    try:
        wait_for(gone, timeout, what, **kwargs)
    except WaitTimeout:
        raise WaitTimeout("timed out after %ss waiting for %s (a Service of type LoadBalancer stays until the "
                          "cloud controller removed its load balancer and then its finalizer %s; still there: %s)"
                          % (timeout, what, FINALIZER, ", ".join(left["names"])))
    return names
