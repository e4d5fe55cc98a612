# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every provider takes: one spec per provider, as plain data (no SDK, no provider code).

The one place provider knowledge lives. It is read by

- topology validation (``module_utils/topology``): provider names, required and known
  settings, their types, bounds and choices;
- the provider registry (``module_utils/provider_registry.py``): which class serves a name;
- the provider base classes: ``validate()`` (required settings), the immutable fields;
- the tests of the doc fragments (``plugins/doc_fragments/cluster_providers.py`` and
  ``vm_providers.py`` document every setting here) and docs/providers.md.

A provider spec::

    kind          "cluster" or "vm"
    description   one line
    impl          (module under module_utils, class name); None: no code (``existing``)
    settings      {name: {"type": TYPE, "description": one line, optional "choices"}}
    required      the settings it cannot work without, in the order messages name them
    immutable     settings (dotted paths, ``*`` wildcards) that cannot change on an existing
                  cluster / VM; a change is refused with a message naming the field
    module_required  settings the module needs that the play adds (not in the topology file)
    local         cluster providers whose nodes never pull an image (kwok)
    rules         provider-specific vocabulary of nested settings (aks)

TYPES gives each setting type what a value must be and its bounds.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.meshfleet.mesh.plugins.module_utils.exec_credential import PLUGINS

#: bounds of numbers read from the topology: positive settings (nodes, cpus) and VM counts
MAX_SETTING_INT = 100000
MAX_VM_COUNT = 1000
#: how many VMs a VM provider makes when ``settings.count`` is not given
DEFAULT_VM_COUNT = 1

#: setting type -> what a value must be (``want``: as messages say it) and its bounds.
TYPES = {
    "str": dict(want="a string"),
    "int": dict(want="a whole number from %(min)d to %(max)d", min=1, max=MAX_SETTING_INT),
    "count": dict(want="a whole number from %(min)d to %(max)d", min=0, max=MAX_VM_COUNT),
    "bool": dict(want="true or false"),
    "list": dict(want="a list"),
    "str_list": dict(want="a list of strings"),
    "dict": dict(want="a mapping"),
    "ip": dict(want="an IP address"),
    "size": dict(want="a number or a size string such as 4g"),
    "cidr": dict(want="an IPv4 network in CIDR notation, /30 or larger, such as 10.77.0.0/24"),
    "cidr_list": dict(want="a list of networks in CIDR notation such as [203.0.113.7/32]"),
}


def _s(typ, description, **extra):
    return dict(extra, type=typ, description=description)


_K8S_VERSION = "the Kubernetes version (\"1.33\" matches any 1.33.x); quote it in YAML"
#: the settings both cloud VM providers (openstack, ec2) take
_CLOUD_VM_SETTINGS = dict(
    key_name=_s("str", "the key pair for SSH"),
    count=_s("count", "how many VMs (named <group>-1 .. <group>-N); instances beyond it are removed"),
    ssh_cidrs=_s("cidr_list", "networks (CIDRs) allowed to reach TCP 22 in the security group the "
                              "module manages"),
    mesh_cidrs=_s("cidr_list", "networks (CIDRs) allowed to reach the other mesh ports and the "
                               "group's ports"),
)

PROVIDERS = {
    # --- cluster providers ---------------------------------------------------------------
    "kwok": dict(
        kind="cluster", local=True, impl=("providers.kwok", "KwokProvider"),
        description="local clusters: a real kube-apiserver and etcd with kwok fake nodes",
        settings=dict(
            bind_address=_s("ip", "the address the API server listens on (default 127.0.0.1)"),
            nodes=_s("int", "how many fake nodes (default 1)"),
            tools_bin=_s("str", "the folder of the kwok, kube-apiserver and etcd binaries"),
            apiserver_extra_args=_s("dict", "extra kube-apiserver flags (names without --) to values"),
            real_node=_s("bool", "also run a real node (kubelet, containerd, kube-proxy, CoreDNS) in network "
                                 "and mount namespaces of its own, beside the fake nodes (default false; root; "
                                 "docs/real-pods.md)"),
            node_tools_bin=_s("str", "the folder of kubelet, kube-proxy and coredns for real_node "
                                     "(default: tools/build-tools.sh --node's)"),
        ),
        required=(), immutable=("bind_address", "real_node")),
    "minikube": dict(
        kind="cluster", impl=("providers.minikube", "MinikubeProvider"),
        description="a minikube profile on this machine",
        settings=dict(
            profile=_s("str", "the minikube profile (default the cluster name)"),
            driver=_s("str", "minikube start --driver, e.g. docker or kvm2"),
            kubernetes_version=_s("str", _K8S_VERSION),
            cpus=_s("int", "minikube start --cpus"),
            memory=_s("size", "minikube start --memory: MiB or with an m/g suffix (4g)"),
            minikube_path=_s("str", "the minikube binary (default minikube on PATH)"),
        ),
        required=(), immutable=("driver", "cpus", "memory")),
    "aks": dict(
        kind="cluster", impl=("providers.aks", "AksProvider"),
        description="Azure Kubernetes Service",
        settings=dict(
            resource_group=_s("str", "the resource group of the managed cluster"),
            location=_s("str", "the Azure region, e.g. westeurope"),
            subscription_id=_s("str", "the Azure subscription (default AZURE_SUBSCRIPTION_ID)"),
            kubernetes_version=_s("str", _K8S_VERSION),
            dns_prefix=_s("str", "DNS prefix of the API server (default the cluster name)"),
            node_pools=_s("list", "agent pools {name, vm_size, count, mode, min_count, max_count, "
                                  "enable_auto_scaling}"),
            network_profile=_s("dict", "{network_plugin, network_plugin_mode, pod_cidr, service_cidr, "
                                       "dns_service_ip}"),
            tags=_s("dict", "Azure tags of the cluster"),
            arm_endpoint=_s("str", "the ARM base URL (https://...), e.g. Azure Stack Hub or a test server"),
            cloud_environment=_s("str", "the Azure cloud (AzurePublicCloud, AzureChinaCloud, "
                                        "AzureUSGovernment)"),
        ),
        required=("resource_group", "location"),
        immutable=("location", "dns_prefix", "network_profile.*", "node_pools.*.vm_size"),
        rules=dict(
            pool_keys=("name", "vm_size", "count", "mode", "min_count", "max_count",
                       "enable_auto_scaling"),
            pool_modes=("System", "User"),
            # an AKS (Linux) node pool name: a lowercase letter, then lowercase letters and
            # digits, 12 at most
            pool_name=r"^[a-z][a-z0-9]{0,11}$",
            network_keys=("network_plugin", "network_plugin_mode", "pod_cidr", "service_cidr",
                          "dns_service_ip"),
            network_plugins=("azure", "kubenet", "none"),
            # providers/aks.py maps them to ARM endpoints and authorities
            cloud_environments=("AzurePublicCloud", "AzureChinaCloud", "AzureUSGovernment"),
        )),
    "gke": dict(
        kind="cluster", impl=("providers.gke", "GkeProvider"),
        description="Google Kubernetes Engine",
        settings=dict(
            project=_s("str", "the GCP project id"),
            location=_s("str", "a region (regional cluster) or a zone"),
            release_channel=_s("str", "RAPID, REGULAR, STABLE or EXTENDED"),
            kubernetes_version=_s("str", _K8S_VERSION),
            node_pools=_s("list", "node pools {name, machine_type, count, min_count, max_count, "
                                  "disk_size_gb}"),
            network=_s("str", "the VPC network (default: default)"),
            subnetwork=_s("str", "the subnetwork"),
            workload_identity=_s("bool", "enable Workload Identity"),
            credentials_file=_s("str", "a service-account JSON key file (default: application "
                                       "default credentials)"),
            api_endpoint=_s("str", "a different GKE API endpoint: host[:port] or an http(s):// URL"),
            credential_plugin=_s("str", "how the kubeconfig gets its tokens", choices=PLUGINS["gke"]),
        ),
        required=("project", "location"),
        immutable=("location", "network", "subnetwork", "node_pools.*.machine_type",
                   "node_pools.*.disk_size_gb")),
    "eks": dict(
        kind="cluster", impl=("providers.eks", "EksProvider"),
        description="Amazon Elastic Kubernetes Service",
        settings=dict(
            region=_s("str", "the AWS region"),
            role_arn=_s("str", "the IAM role of the EKS control plane"),
            subnet_ids=_s("str_list", "subnets (two or more, in different AZs)"),
            kubernetes_version=_s("str", _K8S_VERSION),
            security_group_ids=_s("str_list", "extra control-plane security groups"),
            node_group=_s("dict", "one managed node group {name, node_role_arn, instance_types, "
                                  "scaling: {min, max, desired}}"),
            tags=_s("dict", "AWS tags of the cluster and node group"),
            endpoint_url=_s("str", "a different EKS (and STS) endpoint, e.g. a moto server"),
            credential_plugin=_s("str", "how the kubeconfig gets its tokens", choices=PLUGINS["eks"]),
        ),
        required=("region", "role_arn", "subnet_ids"),
        immutable=("region", "role_arn", "subnet_ids", "security_group_ids", "node_group.name",
                   "node_group.node_role_arn", "node_group.instance_types")),
    # --- VM providers --------------------------------------------------------------------
    "existing": dict(
        kind="vm", impl=None,
        description="machines that exist already, reached at their hosts' ansible_host",
        settings={}, required=(), immutable=()),
    "netns": dict(
        kind="vm", impl=("vm_providers.netns.provider", "NetnsVmProvider"),
        description="local test VMs in network namespaces on the controller",
        settings=dict(
            subnet=_s("cidr", "the group's IPv4 network: the host gets .1, the VMs .2, .3, ..."),
            count=_s("count", "how many VMs when the group lists no hosts"),
            rootfs_cache=_s("str", "the base root filesystem from roles/vms_local/files/vm-rootfs.sh, or its "
                                   "cache folder"),
        ),
        required=("subnet",), immutable=("subnet",), module_required=("state_dir",)),
    "openstack": dict(
        kind="vm", impl=("vm_providers.openstack", "OpenStackVmProvider"),
        description="OpenStack servers",
        settings=dict(
            _CLOUD_VM_SETTINGS,
            cloud=_s("str", "the clouds.yaml entry with the credentials (envvars: OS_AUTH_URL ...)"),
            image=_s("str", "image name or id"),
            flavor=_s("str", "flavor name or id"),
            network=_s("str", "the network name or id the servers attach to"),
            security_group=_s("str", "a security group name (created when missing)"),
            floating_ip=_s("bool", "attach a floating IP to each server"),
        ),
        required=("cloud", "image", "flavor", "network"),
        immutable=("image", "flavor", "network", "key_name")),
    "ec2": dict(
        kind="vm", impl=("vm_providers.ec2", "Ec2VmProvider"),
        description="Amazon EC2 instances",
        settings=dict(
            _CLOUD_VM_SETTINGS,
            region=_s("str", "the AWS region"),
            ami=_s("str", "the AMI id"),
            instance_type=_s("str", "the instance type, e.g. t3.large"),
            subnet_id=_s("str", "the subnet the instances start in"),
            security_group_ids=_s("str_list", "security groups (default: one the module creates)"),
            endpoint_url=_s("str", "a different EC2 endpoint, e.g. a moto server"),
            tags=_s("dict", "extra tags of the instances"),
        ),
        required=("region", "ami", "instance_type", "subnet_id"),
        immutable=("ami", "instance_type", "subnet_id", "key_name")),
}


def names(kind):
    """The sorted provider names of ``kind`` ("cluster" or "vm")."""
    return tuple(sorted(n for n, s in PROVIDERS.items() if s["kind"] == kind))


CLUSTER_PROVIDERS = names("cluster")
VM_PROVIDERS = names("vm")
#: VM providers that make their VMs (everything but ``existing``)
MANAGED_VM_PROVIDERS = tuple(n for n in VM_PROVIDERS if PROVIDERS[n]["impl"])
#: providers whose VMs this project makes from ``settings.count``, named <group>-1 .. -N
CLOUD_VM_PROVIDERS = ("ec2", "openstack")
#: cluster providers whose nodes never pull an image
LOCAL_CLUSTER_PROVIDERS = tuple(n for n in CLUSTER_PROVIDERS if PROVIDERS[n].get("local"))


def spec(name):
    """The spec of provider ``name``; KeyError for an unknown one."""
    return PROVIDERS[name]


def setting_types(name):
    """{setting: type} of provider ``name``."""
    return dict((k, v["type"]) for k, v in PROVIDERS[name]["settings"].items())


def missing_settings(name, settings, module=False):
    """The required settings of provider ``name`` that ``settings`` lacks (None, "" or []),
    in the spec's order; with ``module`` also those the module needs from the play."""
    s = PROVIDERS[name]
    keys = tuple(s["required"]) + (tuple(s.get("module_required", ())) if module else ())
    return [k for k in keys if (settings or {}).get(k) in (None, "", [])]
