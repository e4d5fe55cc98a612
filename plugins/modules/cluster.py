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
  - With O(state=absent), on the clouds (aks, eks, gke) the cluster's Services of type
    C(LoadBalancer) in all namespaces (the east-west gateway, ingress gateways) are deleted first
    and waited for until the API server removed them, which happens only after the cloud
    controller deleted their load balancers and then their finalizer
    C(service.kubernetes.io/load-balancer-cleanup); only then is the cluster deleted (on EKS its
    node groups first). A cluster whose API cannot be reached any more, half deleted, is
    deleted anyway, with a warning.
  - While it runs under C(ansible-playbook), the action plugin prints a progress line every
    30 seconds (E(MESHFLEET_PROGRESS_INTERVAL)) naming what the module waits for, how long it
    has waited and its timeout.
version_added: 0.1.0
author: Meshfleet engineers (@meshfleet)
extends_documentation_fragment:
  - meshfleet.mesh.cluster
  - meshfleet.mesh.cluster_providers
options:
  state:
    description: Whether the cluster should exist.
    type: str
    default: present
    choices: [present, absent]
  wait:
    description:
      - Wait until the cluster is ready (or gone, when it is being removed).
      - The deletion of the C(LoadBalancer) Services before a cluster's deletion is always waited for.
    type: bool
    default: true
  wait_timeout:
    description:
      - One bound, in seconds, for every operation; overrides the provider's defaults.
      - Without it (and without O(wait_timeouts)), each operation has its provider's default
        (docs/providers.md, "Wait timeouts"), e.g. EKS create 2700, AKS and GKE create 1800, kwok 600.
    type: int
  wait_timeouts:
    description:
      - Seconds each operation may take, overriding O(wait_timeout) and the provider's defaults;
        the inventory's C(clusters.<name>.wait_timeouts).
      - One bound covers all the waits of an operation (EKS create is the cluster then its node group).
    type: dict
    suboptions:
      create:
        description: Creating (or starting a stopped) cluster, until it is ready.
        type: int
      update:
        description: Changing a cluster in place, until it is ready; also the readiness check of an unchanged cluster.
        type: int
      delete:
        description: Deleting the cluster (node groups included), until the provider reports it gone.
        type: int
      load_balancers:
        description: Deleting the cluster's C(LoadBalancer) Services before the cluster, until they are gone.
        type: int
  delete_load_balancers:
    description:
      - With O(state=absent), delete the cluster's C(LoadBalancer) Services and wait until the cloud
        removed their load balancers before deleting the cluster.
      - Default V(true) for aks, eks and gke, V(false) for kwok and minikube (no cloud load balancers).
    type: bool
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
load_balancers:
  description: The C(LoadBalancer) Services deleted before the cluster (state=absent, when O(delete_load_balancers)).
  returned: when the cluster was deleted with delete_load_balancers on
  type: dict
  contains:
    deleted: {description: The Services deleted and waited for (C(namespace/name))., type: list, elements: str}
    skipped: {description: Why none were deleted (the API could not be reached); the cluster was deleted anyway., type: str}
changes:
  description: Settings that differ on an existing cluster (updated in place, or would be in check mode).
  returned: when settings differ
  type: list
  elements: str
'''

from ansible_collections.meshfleet.mesh.plugins.module_utils.cluster import ClusterModule


def main():
    ClusterModule()()


if __name__ == "__main__":
    main()
