# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Find (or, for clusters without a load balancer, publish) an east-west gateway's address."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import (
    MeshfleetError, MeshfleetModule, Plan, WaitTimeout, wait_for)
from ansible_collections.meshfleet.mesh.plugins.module_utils.kube_rest import KubeRest


def lb_ingress(svc):
    """[(ip, hostname)] from a Service's (JSON) status.loadBalancer.ingress."""
    lb = ((svc or {}).get("status") or {}).get("loadBalancer") or {}
    return [(i.get("ip"), i.get("hostname")) for i in (lb.get("ingress") or [])]


def resolve(hostname):
    try:
        infos = socket.getaddrinfo(hostname, None, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise MeshfleetError("the gateway's load balancer hostname %s does not resolve: %s"
                             % (hostname, e))
    return sorted(set(i[4][0] for i in infos))[0]


class GatewayAddress:
    """The address of an east-west gateway, in the order the inventory override (written into
    the Service's load balancer status when ``publish``, as a controller would), the load
    balancer IP, the load balancer hostname (resolved). Shared by the gateway_address and
    istio_install modules, in the modules' steps: :meth:`observe` reads the Service,
    :meth:`plan` says what is known and what publishing would change (``diff``: the before/after
    of the published ingress, else None), :meth:`apply` publishes, and waits for a load balancer
    address unless ``wait`` is false. ``result`` has ``address``, ``source``, ``changed`` (and
    ``hostname``)."""

    def __init__(self, kube, namespace="istio-system", service="istio-eastwestgateway", address=None,
                 publish=False, wait=True, wait_timeout=300, pool=None):
        self.kube, self.namespace, self.service = kube, namespace, service
        self.address, self.publish, self.wait, self.wait_timeout = address, publish, wait, wait_timeout
        #: a real-node cluster's load-balancer pool (addresses in order): the local load balancer
        #: (localnet.lb) gives the gateway its address, the override only asks for one of the pool
        self.pool = pool
        self.local_lb = None
        self.what = "service %s/%s" % (namespace, service)
        self.path = "/api/v1/namespaces/%s/services/%s" % (namespace, service)
        self.svc = self.result = self.diff = None

    def observe(self):
        self.svc = self.kube.get("read " + self.what, self.path, not_found=None)
        return self.svc

    def plan(self):
        """``(result, diff)`` as far as the observed Service tells."""
        current = lb_ingress(self.svc)
        self.diff = None
        if self.pool is not None:
            return self._plan_pool(current)
        if self.address:
            self.result = dict(address=self.address, source="inventory override", changed=False)
            if self.publish and current != [(self.address, None)]:
                # No load balancer controller (local clusters): record the override in the
                # Service status, as a controller would, so istiod sees the gateway address.
                self.result["changed"] = True
                self.diff = dict(before=dict(ingress=[i for i, _h in current]), after=dict(ingress=[self.address]))
        elif self.svc is None:
            self.result = dict(address=None, source="unknown until the gateway exists", changed=False)
        else:
            self.result = self._from_ingress(current)
        return self.result, self.diff

    def apply(self):
        """Publish what the plan says, or wait for a load balancer address; the result."""
        if self.svc is None:
            raise MeshfleetError("%s does not exist in %s; install the east-west gateway first"
                                 % (self.what, self.kube.kubeconfig))
        if self.pool is not None:
            self.local_lb.apply()
        elif self.diff:
            self.kube.request("publish the address of " + self.what, "PATCH", self.path + "/status",
                              {"status": {"loadBalancer": {"ingress": [{"ip": self.address}]}}},
                              content_type="application/merge-patch+json")
        elif not self.address and not lb_ingress(self.svc) and self.wait:
            def found():
                return lb_ingress(self.kube.get("read " + self.what, self.path)) or None
            try:
                ingress = wait_for(found, self.wait_timeout, "a load balancer address on " + self.what, sleep=2)
            except WaitTimeout:
                raise MeshfleetError(
                    "no load balancer address appeared on %s within %ss: the cluster may have no "
                    "load balancer controller; set clusters.<name>.eastwest_address in the topology "
                    "to give the address explicitly" % (self.what, self.wait_timeout))
            self.result = self._from_ingress(ingress)
        return self.result

    def _plan_pool(self, current):
        """A real-node cluster: the gateway's address from its pool (localnet.lb), like every
        other LoadBalancer Service of the cluster, so no address is handed out twice."""
        from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet.lb import LocalLb
        if self.address and self.address not in self.pool:
            raise MeshfleetError("the east-west address %s is not in the cluster's load-balancer pool %s .. %s: "
                                 "leave clusters.<name>.eastwest_address unset (the pool gives one) or pick one of it"
                                 % (self.address, self.pool[0], self.pool[-1]))
        if self.svc is None:
            self.result = dict(address=None, source="unknown until the gateway exists", changed=False)
            return self.result, None
        key = "%s/%s" % (self.namespace, self.service)
        self.local_lb = LocalLb(self.kube, self.pool, requests={key: self.address} if self.address else None)
        self.local_lb.observe()
        writes = self.local_lb.plan(only=[key])
        ip, why = self.local_lb.assigned.get(key, (None, "it is not of type LoadBalancer"))
        if ip is None:
            raise MeshfleetError("%s gets no load-balancer address: %s" % (self.what, why))
        self.result = dict(address=ip, source="local load balancer", changed=bool(writes))
        if writes:
            self.diff = dict(before=dict(ingress=[i for i, _h in current]), after=dict(ingress=[ip]))
        return self.result, self.diff

    @staticmethod
    def _from_ingress(ingress):
        if not ingress:
            return dict(address=None, source="none yet", changed=False)
        ip, hostname = ingress[0]
        if ip:
            return dict(address=ip, source="load balancer ip", changed=False)
        return dict(address=resolve(hostname), hostname=hostname, source="load balancer hostname", changed=False)


class GatewayAddressModule(MeshfleetModule):
    argument_spec = dict(
        kubeconfig=dict(type="path", required=True),
        context=dict(type="str"),
        namespace=dict(type="str", default="istio-system"),
        service=dict(type="str", default="istio-eastwestgateway"),
        address=dict(type="str"),
        publish=dict(type="bool", default=False),
        lb_pool=dict(type="str"),
    )
    with_wait = True

    def observe(self):
        p = self.params
        pool = None
        if p.get("lb_pool"):
            from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet.lb import pool_addresses
            pool = pool_addresses(p["lb_pool"], "lb_pool")
        self.gw = GatewayAddress(KubeRest(p["kubeconfig"], p["context"], label="cluster"), p["namespace"],
                                 p["service"], p["address"], p["publish"], p["wait"], p["wait_timeout"], pool=pool)
        return self.gw.observe()

    def plan(self, observed):
        dummy, diff = self.gw.plan()
        plan = Plan(*((diff["before"], diff["after"]) if diff else ()))
        if diff:
            plan.add("publish %s on %s" % (self.gw.address, self.gw.what))
        return plan

    def apply(self, plan, observed):
        self.gw.apply()

    def result(self, observed, plan):
        return dict(self.gw.result)
