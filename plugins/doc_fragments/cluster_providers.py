# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Provider-specific keys of O(settings) for meshfleet.mesh.cluster and cluster_info,
    # and where each provider takes its credentials from. docs/providers.md has the same
    # tables; module_utils/provider_spec.py is the source of truth (a unit test checks this
    # fragment documents each setting there with its type, choices and whether it is required).
    DOCUMENTATION = r'''
options:
  settings:
    suboptions:
      profile:
        description:
          - "V(minikube): the minikube profile. Default: the cluster name."
        type: str
      driver:
        description:
          - "V(minikube): C(minikube start --driver), e.g. V(docker), V(kvm2). Cannot change in place."
        type: str
      cpus:
        description:
          - "V(minikube): C(--cpus). Cannot change in place."
        type: int
      memory:
        description:
          - "V(minikube): C(--memory), MiB or with a V(m)/V(g) suffix (V(4g)). Cannot change in place."
        type: raw
      minikube_path:
        description:
          - "V(minikube): path of the minikube binary. Default: C(minikube) on E(PATH)."
        type: path
      kubernetes_version:
        description:
          - "All providers but kwok: the Kubernetes version (V(\"1.33\") matches any 1.33.x). Quote it in YAML."
          - "V(aks): upgraded in place. V(gke): the master version, upgraded in place.
            V(eks): C(UpdateClusterVersion). V(minikube): upgraded in place by C(minikube start); downgrades are refused."
        type: str
      resource_group:
        description:
          - "V(aks), required: the resource group of the managed cluster."
        type: str
      location:
        description:
          - "V(aks), required: the Azure region (V(westeurope)). V(gke), required: a region (regional cluster)
            or a zone. Cannot change in place."
        type: str
      subscription_id:
        description:
          - "V(aks): the Azure subscription. Default: E(AZURE_SUBSCRIPTION_ID)."
        type: str
      dns_prefix:
        description:
          - "V(aks): DNS prefix of the API server. Default: the cluster name. Cannot change in place."
        type: str
      node_pools:
        description:
          - "V(aks): agent pools, each C({name, vm_size, count, mode, min_count, max_count, enable_auto_scaling});
            V(mode) is V(System) or V(User). AKS needs a System pool: the first pool is it unless a pool says
            C(mode: System); a list whose pools all say V(User) is refused. C(min_count)/C(max_count) turn on the
            autoscaler, which then owns the node count: C(count) is only the initial size and is neither compared
            nor sent again (min/max are); C(enable_auto_scaling: false) turns it off and sizes the pool by C(count).
            Default: one V(Standard_D2s_v5) System pool. Pools are added, changed (C(count), C(min_count),
            C(max_count), C(mode)) and removed in place through the agent pool operations, always keeping a System
            pool; C(node_pools.<name>.vm_size) cannot change."
          - "V(gke): node pools, each C({name, machine_type, count, min_count, max_count, disk_size_gb}).
            C(count) is the initial size; C(min_count)/C(max_count) (autoscaling) and new pools change in place;
            C(machine_type) and C(disk_size_gb) cannot. C(count), C(min_count) and C(max_count) are per zone:
            in a regional location (3 zones) C(count=2) makes 6 nodes."
        type: list
        elements: dict
      network_profile:
        description:
          - "V(aks): C({network_plugin, network_plugin_mode, pod_cidr, service_cidr, dns_service_ip}):
            C(network_plugin) V(azure) (CNI), V(kubenet) or V(none); C(network_plugin_mode: overlay) (Azure CNI
            overlay). A C(pod_cidr) with V(azure) needs V(overlay) (plain Azure CNI gives pods subnet addresses);
            V(kubenet) takes one. None of it can change in place (the error names the field, e.g.
            C(network_profile.pod_cidr))."
        type: dict
      tags:
        description:
          - "V(aks): Azure tags. V(eks): AWS tags of the cluster (and node group). Change in place."
        type: dict
      cloud_environment:
        description:
          - "V(aks): the Azure cloud, V(AzurePublicCloud) (default), V(AzureChinaCloud) or V(AzureUSGovernment):
            its ARM endpoint, token scope and Entra ID authority. E(AZURE_AUTHORITY_HOST) overrides the authority;
            an authority that is not Microsoft's is used without MSAL instance discovery."
        type: str
      arm_endpoint:
        description:
          - "V(aks): the ARM base URL (V(https://...)), e.g. Azure Stack Hub or a test server; tokens are asked for
            C(<arm_endpoint>/.default). Default: the cloud's (V(https://management.azure.com))."
        type: str
      project:
        description:
          - "V(gke), required: the GCP project id."
        type: str
      release_channel:
        description:
          - "V(gke): V(RAPID), V(REGULAR), V(STABLE) or V(EXTENDED). Changes in place."
        type: str
      network:
        description:
          - "V(gke): the VPC network (name or path). Default: V(default). Cannot change in place."
        type: str
      subnetwork:
        description:
          - "V(gke): the subnetwork. Cannot change in place."
        type: str
      workload_identity:
        description:
          - "V(gke): enable Workload Identity (pool C(<project>.svc.id.goog)). Changes in place."
        type: bool
      credentials_file:
        description:
          - "V(gke): a service-account JSON key file. Default: application default credentials
            (E(GOOGLE_APPLICATION_CREDENTIALS), C(gcloud auth application-default login), the metadata server)."
        type: path
      region:
        description:
          - "V(eks), required: the AWS region."
        type: str
      role_arn:
        description:
          - "V(eks), required: the IAM role of the EKS control plane. Cannot change in place."
        type: str
      subnet_ids:
        description:
          - "V(eks), required: subnets (two or more, in different AZs). Cannot change in place."
        type: list
        elements: str
      security_group_ids:
        description:
          - "V(eks): extra control-plane security groups. Cannot change in place."
        type: list
        elements: str
      node_group:
        description:
          - "V(eks): one managed node group C({name, node_role_arn, instance_types, scaling: {min, max, desired}}).
            C(scaling.min)/C(scaling.max) change in place; C(scaling.desired) is the initial size only
            (cluster-autoscaler moves it; re-runs do not compare it); C(name), C(node_role_arn), C(instance_types)
            cannot change."
        type: dict
      endpoint_url:
        description:
          - "V(eks): a different EKS (and STS) endpoint, e.g. a moto server. Without it boto3 itself honours
            E(AWS_ENDPOINT_URL), E(AWS_ENDPOINT_URL_EKS) and E(AWS_ENDPOINT_URL_STS)."
        type: str
      api_endpoint:
        description:
          - "V(gke): a different GKE API endpoint (C(client_options.api_endpoint)): C(host[:port]), or an
            C(http://) / C(https://) URL (an emulator or a test server)."
        type: str
      credential_plugin:
        description:
          - "V(eks), V(gke): the kubeconfig user. V(meshfleet) (default) is an exec credential plugin shipped with
            the collection (copied to C(<state_dir>/clusters/<name>/meshfleet-credential.py) and run with the
            module's Python) that mints a fresh token whenever a client asks, so the kubeconfig outlives the
            token lifetime (EKS 15 minutes, GKE about 1 hour); no aws or gcloud CLI is needed.
            V(eks) also takes V(aws-cli) (C(aws eks get-token)) and V(aws-iam-authenticator); V(gke) takes
            V(gke-gcloud-auth-plugin). V(static) writes one token (refreshed by a re-run)."
        type: str
        choices: [meshfleet, aws-cli, aws-iam-authenticator, gke-gcloud-auth-plugin, static]
notes:
  - "Credentials (never in the inventory; a missing one fails before any API call, naming what to set):
    V(aks) uses azure-identity's DefaultAzureCredential: E(AZURE_CLIENT_ID), E(AZURE_TENANT_ID) and
    E(AZURE_CLIENT_SECRET) (service principal) or E(AZURE_FEDERATED_TOKEN_FILE) (workload identity),
    C(az login), or a managed identity (E(AZURE_TOKEN_CREDENTIALS=ManagedIdentityCredential)), plus
    E(AZURE_SUBSCRIPTION_ID) or O(settings.subscription_id); E(AZURE_AUTHORITY_HOST) for another Entra ID authority.
    V(gke) uses O(settings.credentials_file) or google-auth's application default credentials.
    V(eks) uses boto3's chain: E(AWS_PROFILE), E(AWS_ACCESS_KEY_ID)/E(AWS_SECRET_ACCESS_KEY)/E(AWS_SESSION_TOKEN),
    or an instance/container role. V(minikube) needs the C(minikube) binary."
  - "Kubeconfigs: V(aks) writes the user kubeconfig from C(listClusterUserCredential); V(gke) and V(eks) an
    exec credential plugin chosen by O(settings.credential_plugin) (default V(meshfleet): a fresh OAuth2 access
    token or presigned-STS C(k8s-aws-v1.) token whenever a client asks). With V(static) the token is written
    into the kubeconfig (EKS accepts it for 15 minutes, GKE about 1 hour); re-run the module to refresh it
    (a refreshed token alone is not reported as a change). See docs/providers.md.
    V(minikube) runs with E(KUBECONFIG) set to the cluster's own file, so C(~/.kube/config) is never touched."
  - "A V(eks) cluster whose creation ended C(FAILED), or a V(gke) cluster left in C(ERROR) by a failed
    creation, is deleted and created again by the next run."
requirements:
  - "aks: azure-identity, azure-mgmt-containerservice"
  - "gke: google-cloud-container, google-auth"
  - "eks: boto3"
  - "minikube: the minikube binary"
'''
