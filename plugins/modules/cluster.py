#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: cluster
short_description: Create, update or delete a Kubernetes cluster of the mesh
description:
  - Converges one cluster through its provider (kwok, minikube, aks, gke, eks) and
    writes its kubeconfig under the mesh state directory.
  - An existing healthy cluster with the same settings is left alone (no change).
  - Settings that a provider cannot change in place are refused with a message naming the field.
version_added: 0.1.0
author: Meshfleet engineers (@meshfleet)
extends_documentation_fragment:
  - meshfleet.mesh.cluster
  - meshfleet.mesh.cluster.WAIT
  - meshfleet.mesh.cluster_providers
options:
  state:
    description: Whether the cluster should exist.
    type: str
    default: present
    choices: [present, absent]
attributes:
  check_mode:
    description: Reports what would be created, changed or deleted without calling the provider's write APIs.
    support: full
  diff_mode:
    description: Shows the cluster before and after (no credentials).
    support: full
'''

EXAMPLES = r'''
- name: A local kwok cluster
  meshfleet.mesh.cluster:
    name: cluster1
    provider: kwok
    state_dir: /srv/mesh/.meshfleet

- name: Remove it
  meshfleet.mesh.cluster:
    name: cluster1
    provider: kwok
    state_dir: /srv/mesh/.meshfleet
    state: absent

- name: A minikube profile on a laptop (KUBECONFIG points at the state dir, not ~/.kube/config)
  meshfleet.mesh.cluster:
    name: laptop1
    provider: minikube
    state_dir: /srv/mesh/.meshfleet
    settings:
      driver: docker
      kubernetes_version: "1.33.1"
      cpus: 4
      memory: 8g

- name: An AKS cluster with Azure CNI overlay (credentials from AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET)
  meshfleet.mesh.cluster:
    name: aks1
    provider: aks
    state_dir: /srv/mesh/.meshfleet
    wait_timeout: 1800
    settings:
      resource_group: rg-mesh
      location: westeurope
      kubernetes_version: "1.33"
      node_pools:
        # the first pool is the System pool unless another says mode: System
        - {name: system, vm_size: Standard_D4s_v5, count: 2}
        # autoscaled: count is the initial size only; re-runs compare min_count/max_count
        - {name: apps, vm_size: Standard_D4s_v5, count: 1, mode: User, min_count: 1, max_count: 5}
      network_profile:
        network_plugin: azure
        network_plugin_mode: overlay  # a pod_cidr with the azure plugin needs overlay
        pod_cidr: 10.244.0.0/16
        service_cidr: 10.0.0.0/16
        dns_service_ip: 10.0.0.10
      tags: {team: mesh}

- name: An AKS cluster in Azure China (ARM endpoint, token scope and authority of that cloud)
  meshfleet.mesh.cluster:
    name: aks-cn
    provider: aks
    state_dir: /srv/mesh/.meshfleet
    wait_timeout: 1800
    settings:
      resource_group: rg-mesh
      location: chinaeast2
      cloud_environment: AzureChinaCloud
      network_profile: {network_plugin: kubenet, pod_cidr: 10.244.0.0/16}

- name: A regional GKE cluster with Workload Identity (service-account key file)
  meshfleet.mesh.cluster:
    name: gke1
    provider: gke
    state_dir: /srv/mesh/.meshfleet
    wait_timeout: 1800
    settings:
      project: my-project
      location: europe-west1
      release_channel: REGULAR
      network: mesh-vpc
      subnetwork: mesh-europe-west1
      workload_identity: true
      credentials_file: /etc/meshfleet/gcp-sa.json
      node_pools:
        - {name: pool1, machine_type: e2-standard-4, count: 1, min_count: 1, max_count: 3}

- name: An EKS cluster with a managed node group (credentials from AWS_PROFILE)
  meshfleet.mesh.cluster:
    name: eks1
    provider: eks
    state_dir: /srv/mesh/.meshfleet
    wait_timeout: 2400
    settings:
      region: eu-central-1
      role_arn: arn:aws:iam::123456789012:role/eks-cluster
      subnet_ids: [subnet-0aaa1111, subnet-0bbb2222]
      kubernetes_version: "1.33"
      node_group:
        name: ng1
        node_role_arn: arn:aws:iam::123456789012:role/eks-node
        instance_types: [m6i.large]
        scaling: {min: 1, max: 4, desired: 2}
      tags: {team: mesh}
'''

RETURN = r'''
module_args:
  description: The arguments the module ran with (defaults filled in, C(no_log) values masked);
    C(site.yml) records them in the converge receipt (M(meshfleet.mesh.converge_receipt)).
  returned: success
  type: dict
cluster:
  description: The cluster as observed after the change (no credentials).
  returned: always
  type: dict
  contains:
    name: {description: Cluster name., type: str}
    provider: {description: Provider name., type: str}
    exists: {description: Whether the cluster exists., type: bool}
    ready: {description: Whether its API server answers., type: bool}
    api_server: {description: API server URL., type: str}
    kubeconfig: {description: Path of the kubeconfig file (mode 0600)., type: str}
    context: {description: Context name in the kubeconfig., type: str}
    settings: {description: Observed provider settings., type: dict}
changes:
  description: Settings that differ (check mode on an existing cluster).
  returned: when changed in check mode
  type: list
  elements: str
'''

from ansible_collections.meshfleet.mesh.plugins.module_utils.cluster import ClusterModule


def main():
    ClusterModule()()


if __name__ == "__main__":
    main()
