#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: istiod_local
short_description: Run a real istiod (pilot-discovery) as a local process for a local cluster
description:
  - Local (kwok) clusters have no pod network, so the istiod Deployment of the Istio
    manifests never really runs. This module runs the same Istio control plane binary,
    built by Meshfleet's tool build, on the controller against the cluster's kubeconfig.
  - It loads the plug-in CA from the cluster's C(cacerts) secret (C(USE_REMOTE_CERTS)),
    reads the mesh config from the C(istio) ConfigMap and remote secrets from the cluster,
    and serves xDS, the CA and its debug API (C(/debug/clusterz)) on reserved local ports.
  - Re-running with the same settings leaves a running istiod alone; a changed setting
    restarts it; O(state=restarted) restarts it (e.g. after the C(cacerts) secret changed).
version_added: 0.1.0
author: Meshfleet engineers (@meshfleet)
extends_documentation_fragment:
  - meshfleet.mesh.cluster.WAIT
options:
  name:
    description: The cluster name (folder under O(state_dir)/clusters).
    type: str
    required: true
  state_dir:
    description: The mesh state directory.
    type: path
    required: true
  kubeconfig:
    description: Kubeconfig of the cluster istiod runs for. Required to start it.
    type: path
  cluster_id:
    description: Istio cluster ID (C(values.global.multiCluster.clusterName)). Default O(name).
    type: str
  bind_address:
    description:
      - Address of the listeners workloads use (xDS on C(grpc), xDS and the CA on C(secure_grpc)).
      - The debug API, monitoring, webhooks and ctrlz always listen on 127.0.0.1.
    type: str
    default: 127.0.0.1
  prefer_address:
    description:
      - Listen on this address instead of O(bind_address) when it is assigned to one of this
        machine's interfaces (for example the east-west address of a cluster whose VMs reach
        istiod there); otherwise O(bind_address) is used.
    type: str
  namespace:
    description: Istio system namespace.
    type: str
    default: istio-system
  revision:
    description: Istio revision (empty for the default revision).
    type: str
    default: ""
  env:
    description: Extra environment variables for pilot-discovery.
    type: dict
    default: {}
  tools_bin:
    description: Folder of the built Go tools (default C($MESHFLEET_TOOLS_BIN), else the tool cache).
    type: path
  state:
    description: C(started) keeps it running, C(restarted) restarts it, C(stopped) stops it,
      C(absent) stops it and removes its folder and port reservations.
    type: str
    default: started
    choices: [started, restarted, stopped, absent]
attributes:
  check_mode:
    description: Reports whether istiod would be started, restarted or stopped.
    support: full
  diff_mode:
    description: Shows running state, ports and configuration hash before and after.
    support: full
'''

EXAMPLES = r'''
- name: Run istiod for cluster1
  meshfleet.mesh.istiod_local:
    name: cluster1
    state_dir: /srv/mesh/.meshfleet
    kubeconfig: /srv/mesh/.meshfleet/clusters/cluster1/kubeconfig
  register: istiod

- name: Read which remote clusters it sees
  ansible.builtin.uri:
    url: "{{ istiod.istiod.debug_url }}/debug/clusterz"
'''

RETURN = r'''
module_args:
  description: The arguments a re-run passes (those it ran with, defaults filled in, C(no_log)
    values masked; one-shot requests it fulfilled left out); C(site.yml) records them in the
    converge receipt (M(meshfleet.mesh.converge_receipt)).
  returned: success
  type: dict
receipt_step:
  description: The module's class (C(<module_utils file>.<class>)), which makes this result a
    converge-receipt step; the receipt runs the class's check on the next run.
  returned: always
  type: str
istiod:
  description: The local istiod.
  returned: always
  type: dict
  contains:
    running: {description: Whether the process runs., type: bool}
    ready: {description: Whether C(/ready) answers 200., type: bool}
    pid: {description: Process id., type: int}
    ports: {description: "Reserved ports: http (debug), grpc, secure_grpc, https, monitoring, ctrlz.", type: dict}
    debug_url: {description: Base URL of the debug API., type: str}
    xds_address: {description: "Address:port of xDS and the CA (what VMs connect to).", type: str}
    log: {description: Log file., type: str}
reason:
  description: Why it was (re)started.
  returned: when changed
  type: str
'''

from ansible_collections.meshfleet.mesh.plugins.module_utils.istiod_local import IstiodLocalModule


def main():
    IstiodLocalModule()()


if __name__ == "__main__":
    main()
