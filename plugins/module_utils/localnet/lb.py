# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Load-balancer addresses for the Services of a local real-node cluster (module
meshfleet.mesh.local_lb), as MetalLB or cloud-provider-kind give them: each Service of
``type: LoadBalancer`` gets one address from its cluster's pool (``addressing.lb_pool``),
written into ``status.loadBalancer.ingress``; kube-proxy in the node then forwards that
address to the Service's pods, and the local networks route the pool to the node.

Which address (:func:`assign`, pure):

1. a Service keeps the pool address it has (the older Service keeps it when two claim one);
2. else the address it asks for in ``spec.loadBalancerIP``, when that is in the pool and free;
3. else the lowest free address of the pool, Services taken oldest first.

Services with a ``spec.loadBalancerClass`` are another controller's and left alone. A Service
that cannot get an address (its request outside the pool or held, the pool full) keeps its
status and is reported. Writes are conditional on the Service's ``resourceVersion``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError, MeshfleetModule, Plan
from ansible_collections.meshfleet.mesh.plugins.module_utils.kube_rest import KubeRest
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet import addressing as a

try:
    from urllib.parse import quote
except ImportError:  # pragma: no cover - Python 2
    from urllib import quote  # type: ignore

#: the smallest pool: .10 (addressing.LB_FIRST) .. .30
MAX_POOL_PREFIX = 27


def pool_addresses(cidr, what="pool"):
    """The addresses of a pool CIDR inside the local load-balancer range, in the order they
    are handed out (from ``.10``, as ``addressing.lb_addresses``)."""
    try:
        net = ipaddress.ip_network(u"%s" % (cidr,))
    except ValueError as e:
        raise MeshfleetError("%s: %r is not a network in CIDR notation (%s)" % (what, cidr, e))
    if net.version != 4 or not net.subnet_of(a.LB_RANGE) or net.prefixlen > MAX_POOL_PREFIX:
        raise MeshfleetError("%s: %s is not a load-balancer pool of the local networks (a /%d or larger inside %s, "
                             "e.g. %s)" % (what, net, MAX_POOL_PREFIX, a.LB_RANGE, a.lb_pool(0)))
    return [str(net.network_address + i) for i in range(a.LB_FIRST, net.num_addresses - 1)]


def key(svc):
    meta = svc.get("metadata") or {}
    return "%s/%s" % (meta.get("namespace"), meta.get("name"))


def ingress_ips(svc):
    lb = ((svc or {}).get("status") or {}).get("loadBalancer") or {}
    return [i.get("ip") or i.get("hostname") for i in (lb.get("ingress") or [])]


def ours(svc):
    spec = svc.get("spec") or {}
    return spec.get("type") == "LoadBalancer" and not spec.get("loadBalancerClass")


def assign(services, pool, requests=None):
    """``{namespace/name: (address or None, why not)}`` for the Services of type LoadBalancer in
    ``services`` (Service dicts) from ``pool`` (addresses in order). ``requests``: {key: address}
    asked for beside ``spec.loadBalancerIP`` (the inventory's east-west address)."""
    requests = dict(requests or {})
    mine = sorted((s for s in services if ours(s)), key=lambda s: (
        (s.get("metadata") or {}).get("creationTimestamp") or "", key(s)))
    in_pool = set(pool)
    taken, out = {}, {}
    for s in mine:
        k = key(s)
        asked = requests.get(k) or (s.get("spec") or {}).get("loadBalancerIP") or None
        requests[k] = asked
        for ip in ingress_ips(s):
            if ip in in_pool and ip not in taken and asked in (None, ip):
                taken[ip] = k
                out[k] = (ip, None)
                break
    for s in mine:
        k, asked = key(s), requests[key(s)]
        if k in out or not asked:
            continue
        if asked not in in_pool:
            out[k] = (None, "the address it asks for, %s, is not in the pool %s .. %s" % (asked, pool[0], pool[-1]))
        elif asked in taken:
            out[k] = (None, "the address it asks for, %s, is held by Service %s" % (asked, taken[asked]))
        else:
            taken[asked] = k
            out[k] = (asked, None)
    free = [ip for ip in pool if ip not in taken]
    for s in mine:
        k = key(s)
        if k in out:
            continue
        if not free:
            out[k] = (None, "the pool %s .. %s is full" % (pool[0], pool[-1]))
            continue
        ip = free.pop(0)
        taken[ip] = k
        out[k] = (ip, None)
    return out


class LocalLb:
    """The pool of one cluster over its API (``kube``: a KubeRest): :meth:`observe` lists the
    Services, :meth:`plan` the addresses and the writes, :meth:`apply` writes them."""

    def __init__(self, kube, pool, requests=None):
        self.kube, self.pool, self.requests = kube, pool, requests or {}
        self.services = {}
        self.assigned = {}
        self.writes = []

    def observe(self):
        doc = self.kube.get("list Services in all namespaces", "/api/v1/services")
        self.services = dict((key(s), s) for s in doc.get("items") or [])
        return self.services

    def plan(self, only=None):
        """``[(key, before, after)]``: the status writes, only ``only`` (keys) when given."""
        self.assigned = assign(list(self.services.values()), self.pool, self.requests)
        self.writes = []
        for k, (ip, dummy) in sorted(self.assigned.items()):
            if ip is None or (only is not None and k not in only):
                continue
            before = ingress_ips(self.services[k])
            if before != [ip]:
                self.writes.append((k, before, ip))
        return self.writes

    def apply(self):
        for k, dummy, ip in self.writes:
            svc = self.services[k]
            ns, name = k.split("/", 1)
            self.kube.request(
                "give Service %s the load-balancer address %s" % (k, ip), "PATCH",
                "/api/v1/namespaces/%s/services/%s/status" % (quote(ns, safe=""), quote(name, safe="")),
                {"metadata": {"resourceVersion": (svc.get("metadata") or {}).get("resourceVersion")},
                 "status": {"loadBalancer": {"ingress": [{"ip": ip}]}}},
                content_type="application/merge-patch+json")

    def problems(self):
        return dict((k, why) for k, (ip, why) in self.assigned.items() if ip is None)


class LocalLbModule(MeshfleetModule):
    argument_spec = dict(
        kubeconfig=dict(type="path", required=True),
        context=dict(type="str"),
        pool=dict(type="str"),
        node_slot=dict(type="int"),
    )
    module_kwargs = dict(required_one_of=[("pool", "node_slot")], mutually_exclusive=[("pool", "node_slot")])
    receipt_step = True

    def observe(self):
        p = self.params
        if p.get("node_slot") is not None:
            pool = a.lb_addresses(p["node_slot"])
        elif p.get("pool"):
            pool = pool_addresses(p["pool"], "pool")
        else:
            raise MeshfleetError("one of pool, node_slot is required")
        self.lb = LocalLb(KubeRest(p["kubeconfig"], p.get("context"), label="cluster"), pool)
        return self.lb.observe()

    def plan(self, observed):
        writes = self.lb.plan()
        plan = Plan(before=dict((k, b) for k, b, dummy in writes), after=dict((k, [ip]) for k, dummy, ip in writes))
        for k, before, ip in writes:
            plan.add("give Service %s the address %s%s" % (k, ip, " (it had %s)" % ", ".join(before) if before else ""))
        return plan

    def apply(self, plan, observed):
        self.lb.apply()

    def result(self, observed, plan):
        self.lb.kube.close()
        problems = self.lb.problems()
        for k, why in sorted(problems.items()):
            self.warn("Service %s has no load-balancer address: %s" % (k, why))
        return dict(addresses=dict((k, ip) for k, (ip, dummy) in self.lb.assigned.items() if ip),
                    unassigned=problems)
