# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Find (or, for clusters without a load balancer, publish) an east-west gateway's address."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import (
    MeshfleetError, MeshfleetModule, WaitTimeout, wait_for)
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


def gateway_address(kube, namespace="istio-system", service="istio-eastwestgateway", address=None,
                    publish=False, wait=True, wait_timeout=300, check_mode=False):
    """The address of an east-west gateway, in the order the inventory override (written into
    the Service's load balancer status when ``publish``, as a controller would), the load
    balancer IP, the load balancer hostname (resolved). Waits for a load balancer address
    unless ``wait`` is false or in check mode. Returns ``(result, diff)``: ``result`` has
    ``address``, ``source``, ``changed`` (and ``hostname``); ``diff`` is the before/after of
    the published ingress when it changes, else None. Shared by the gateway_address and
    istio_install modules."""
    what = "service %s/%s" % (namespace, service)
    path = "/api/v1/namespaces/%s/services/%s" % (namespace, service)
    svc = kube.get("read " + what, path, not_found=None)
    if svc is None and not check_mode:
        raise MeshfleetError("%s does not exist in %s; install the east-west gateway first"
                             % (what, kube.kubeconfig))
    current = lb_ingress(svc)
    if address:
        result = dict(address=address, source="inventory override", changed=False)
        want = [(address, None)]
        if publish and current != want:
            # No load balancer controller (local clusters): record the override in the
            # Service status, as a controller would, so istiod sees the gateway address.
            if not check_mode:
                kube.request("publish the address of " + what, "PATCH", path + "/status",
                             {"status": {"loadBalancer": {"ingress": [{"ip": address}]}}},
                             content_type="application/merge-patch+json")
            result["changed"] = True
            return result, dict(before=dict(ingress=[i for i, _h in current]), after=dict(ingress=[address]))
        return result, None
    if check_mode and svc is None:
        return dict(address=None, source="unknown until the gateway exists", changed=False), None

    def found():
        return lb_ingress(kube.get("read " + what, path)) or None

    try:
        ingress = current or (wait_for(found, wait_timeout, "a load balancer address on " + what, sleep=2)
                              if wait and not check_mode else None)
    except WaitTimeout:
        raise MeshfleetError(
            "no load balancer address appeared on %s within %ss: the cluster may have no "
            "load balancer controller; set clusters.<name>.eastwest_address in the topology "
            "to give the address explicitly" % (what, wait_timeout))
    if not ingress:
        return dict(address=None, source="none yet", changed=False), None
    ip, hostname = ingress[0]
    if ip:
        return dict(address=ip, source="load balancer ip", changed=False), None
    return dict(address=resolve(hostname), hostname=hostname, source="load balancer hostname", changed=False), None


class GatewayAddressModule(MeshfleetModule):
    argument_spec = dict(
        kubeconfig=dict(type="path", required=True),
        context=dict(type="str"),
        namespace=dict(type="str", default="istio-system"),
        service=dict(type="str", default="istio-eastwestgateway"),
        address=dict(type="str"),
        publish=dict(type="bool", default=False),
    )
    with_wait = True

    def run(self):
        p = self.params
        kube = KubeRest(p["kubeconfig"], p["context"], label="cluster")
        result, diff = gateway_address(kube, p["namespace"], p["service"], p["address"], p["publish"],
                                       p["wait"], p["wait_timeout"], self.check_mode)
        if diff:
            self.set_diff(diff["before"], diff["after"])
        return result
