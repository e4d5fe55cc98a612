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
        kc = KubeRest(p["kubeconfig"], p["context"], label="cluster")
        what = "service %s/%s" % (p["namespace"], p["service"])
        path = "/api/v1/namespaces/%s/services/%s" % (p["namespace"], p["service"])
        svc = kc.get("read " + what, path, not_found=None)
        if svc is None and not self.check_mode:
            raise MeshfleetError("%s does not exist in %s; install the east-west gateway first"
                                 % (what, p["kubeconfig"]))
        current = lb_ingress(svc)
        if p["address"]:
            result = dict(address=p["address"], source="inventory override")
            if p["publish"]:
                # No load balancer controller (local clusters): record the override in the
                # Service status, as a controller would, so istiod sees the gateway address.
                want = [(p["address"], None)]
                if current != want:
                    self.set_diff(dict(ingress=[i for i, _h in current]), dict(ingress=[p["address"]]))
                    if not self.check_mode:
                        kc.request("publish the address of " + what, "PATCH", path + "/status",
                                   {"status": {"loadBalancer": {"ingress": [{"ip": p["address"]}]}}},
                                   content_type="application/merge-patch+json")
                    result["changed"] = True
            return result
        if self.check_mode and svc is None:
            return dict(address=None, source="unknown until the gateway exists")

        def found():
            return lb_ingress(kc.get("read " + what, path)) or None

        try:
            ingress = current or (wait_for(found, p["wait_timeout"], "a load balancer address on " + what,
                                           sleep=2) if p["wait"] else None)
        except WaitTimeout:
            raise MeshfleetError(
                "no load balancer address appeared on %s within %ss: the cluster may have no "
                "load balancer controller; set clusters.<name>.eastwest_address in the topology "
                "to give the address explicitly" % (what, p["wait_timeout"]))
        if not ingress:
            return dict(address=None, source="none yet")
        ip, hostname = ingress[0]
        if ip:
            return dict(address=ip, source="load balancer ip")
        return dict(address=resolve(hostname), hostname=hostname, source="load balancer hostname")
