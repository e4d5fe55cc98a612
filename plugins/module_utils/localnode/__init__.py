# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real kubelet node per local (kwok) cluster (``real_node: true``; issue #11 item 1).

- :mod:`.config`: pure rendering of everything the node runs from (the node plan of
  ``localnet.addressing``): containerd's config, the CNI bridge network, the kubelet and
  kube-proxy configurations, their kubeconfigs, CoreDNS's Corefile and manifests, the
  namespace holder script and the command lines. No I/O; unit-tested.
- :mod:`.certs`: the node's and kube-proxy's client certificates, signed by the cluster's CA
  that kwokctl generated.
- :mod:`.forward`: the API server forwarder (host-link address -> the API server on loopback).
- :mod:`.runtime`: the node on this machine: network namespace, veth and host routes, the
  mount-namespace holder, containerd, kubelet, kube-proxy, and a teardown that leaves nothing.

docs/real-pods.md, "The node", describes the whole.
"""
