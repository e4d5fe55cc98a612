# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Everything a real node runs from, rendered from plain data (pure: no process, no file).

One node per real-node cluster, numbered by its node slot (``localnet.slots``); its addresses
come from ``localnet.addressing``. Two folders:

* ``node_dir`` = ``<cluster folder>/node``: configuration, certificates, logs and containerd's
  root (images, snapshots), removed with the cluster;
* ``run_dir`` = ``/run/meshfleet/node/<slot>``: short paths for sockets (unix socket paths are
  limited to 108 bytes), containerd's state, kubelet's root and the pid files.

Every process of the node runs inside the node's network namespace AND a private mount
namespace held by a small holder process (:func:`holder_script`): there, files of the node
are bind-mounted over the global sysctls kubelet writes (:data:`GUARDED_SYSCTLS`), and
private tmpfs mounts cover ``/run/containerd`` (runc's state, shim sockets, fifos),
``/run/netns`` (the pods' network namespaces) and ``/var/lib/cni`` (CNI results and IPAM),
so the host never sees them and they vanish with the namespace.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet import addressing

RUN_BASE = "/run/meshfleet/node"
#: the global (not per network namespace) sysctls kubelet sets on start; each is covered by
#: a file of the node in the node's mount namespace, so the host's value never changes
GUARDED_SYSCTLS = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic",
                   "kernel/panic_on_oops", "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes")
#: host folders a private tmpfs covers in the node's mount namespace
PRIVATE_TMPFS = ("/run/containerd", "/run/netns", "/var/lib/cni")
CNI_BIN_DIR = "/usr/lib/cni"
RUNC = "/usr/sbin/runc"
#: the taint kept on kwok's fake nodes of a real-node cluster, so real workloads land on the real node
FAKE_NODE_TAINT = dict(key="meshfleet.io/fake-node", value="true", effect="NoSchedule")
COREDNS_NAMESPACE = "kube-system"
#: the annotation of kwok's fake nodes (kwokctl's node template); kwok manages only those
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node=fake"
#: Go's garbage-collection target (GOGC, Go's default 100) of a real-node cluster's Go processes:
#: its control plane (kwokctl's components) and the node's daemons. A heap may grow to
#: (1 + GOGC/100) times its live size before a collection: 50 keeps issue #11's 1.5 GiB per
#: cluster with a margin, for a little more GC work on mostly idle processes (docs/real-pods.md,
#: "Benchmark"). Fake-node clusters keep Go's default.
GO_GC = 50
#: kwokctl's components of a real-node cluster that get :data:`GO_GC`
CONTROL_PLANE_COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok-controller")
#: the node's Go daemons that get :data:`GO_GC` (the forwarder is Python, the holder sleep)
GO_DAEMONS = ("containerd", "kubelet", "kube-proxy")


def node_name(cluster_name):
    return "%s-node" % cluster_name


def layout(cluster_dir, slot):
    """The node's paths (plain dict)."""
    addressing.node_netns(slot)  # checks the slot
    nd = os.path.join(cluster_dir, "node")
    rd = os.path.join(RUN_BASE, str(slot))
    return dict(
        node_dir=nd, run_dir=rd,
        conf_dir=os.path.join(nd, "conf"), pki_dir=os.path.join(nd, "pki"),
        log_dir=os.path.join(nd, "logs"), sysctl_dir=os.path.join(nd, "sysctl"),
        cni_conf_dir=os.path.join(nd, "cni"),
        containerd_root=os.path.join(nd, "containerd"),
        containerd_state=os.path.join(rd, "containerd"),
        containerd_sock=os.path.join(rd, "containerd.sock"),
        kubelet_root=os.path.join(rd, "kubelet"),
        pod_logs=os.path.join(nd, "pod-logs"),
        pid_dir=os.path.join(rd, "pids"),
        containerd_conf=os.path.join(nd, "conf", "containerd.toml"),
        kubelet_conf=os.path.join(nd, "conf", "kubelet.yaml"),
        kubelet_kubeconfig=os.path.join(nd, "conf", "kubelet.kubeconfig"),
        proxy_conf=os.path.join(nd, "conf", "kube-proxy.yaml"),
        proxy_kubeconfig=os.path.join(nd, "conf", "kube-proxy.kubeconfig"),
        holder=os.path.join(nd, "conf", "holder.sh"),
        forwarder=os.path.join(nd, "conf", "forward.py"),
        resolv_conf=os.path.join(nd, "conf", "resolv.conf"),
    )


def sysctl_file(sysctl_dir, name):
    return os.path.join(sysctl_dir, name.replace("/", "."))


def holder_script(paths):
    """The holder: run in the node's netns under ``unshare --mount --propagation slave``; covers
    the guarded sysctls and the shared runtime folders, then waits (its mount namespace is the
    node's: every node process enters it)."""
    lines = ["#!/bin/sh", "# the mount namespace of a Meshfleet real node (docs/real-pods.md)", "set -e"]
    for name in GUARDED_SYSCTLS:
        lines.append("mount --bind '%s' /proc/sys/%s" % (sysctl_file(paths["sysctl_dir"], name), name))
    for folder in PRIVATE_TMPFS:
        lines.append("mount -t tmpfs -o mode=0711 meshfleet-node '%s'" % folder)
        lines.append("mount --make-private '%s'" % folder)
    lines += ["echo ready", "exec sleep infinity", ""]
    return "\n".join(lines)


def holder_argv(netns, paths):
    return ["nsenter", "--net=/run/netns/%s" % netns, "--", "unshare", "--mount",
            "--propagation", "slave", "--", "/bin/sh", paths["holder"]]


def enter_argv(holder_pid, argv):
    """``argv`` inside the node's network and mount namespaces."""
    return ["nsenter", "--target", str(int(holder_pid)), "--mount", "--net", "--"] + list(argv)


def _toml_str(value):
    return json.dumps(str(value))


def containerd_config(paths, sandbox_image):
    """containerd 1.6 (config version 2) for one node: private root, state and socket; CRI with
    runc, ``restrict_oom_score_adj`` (this VM lacks CAP_SYS_RESOURCE) and the node's CNI."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return "\n".join([
        "version = 2",
        "root = %s" % _toml_str(paths["containerd_root"]),
        "state = %s" % _toml_str(paths["containerd_state"]),
        'disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", '
        '"io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]',
        "",
        "[grpc]",
        "  address = %s" % _toml_str(paths["containerd_sock"]),
        "",
        "[ttrpc]",
        '  address = ""',
        "",
        "[debug]",
        '  address = ""',
        "",
        "[metrics]",
        '  address = ""',
        "",
        '[plugins."io.containerd.internal.v1.opt"]',
        "  path = %s" % _toml_str(os.path.join(paths["containerd_root"], "opt")),
        "",
        "[%s]" % cri,
        "  sandbox_image = %s" % _toml_str(sandbox_image),
        "  restrict_oom_score_adj = true",
        "  disable_apparmor = true",
        "  enable_selinux = false",
        "",
        "[%s.containerd]" % cri,
        '  snapshotter = "overlayfs"',
        '  default_runtime_name = "runc"',
        "",
        "[%s.containerd.runtimes.runc]" % cri,
        '  runtime_type = "io.containerd.runc.v2"',
        "",
        "[%s.containerd.runtimes.runc.options]" % cri,
        "  BinaryName = %s" % _toml_str(RUNC),
        "  SystemdCgroup = false",
        "",
        "[%s.cni]" % cri,
        "  bin_dir = %s" % _toml_str(CNI_BIN_DIR),
        "  conf_dir = %s" % _toml_str(paths["cni_conf_dir"]),
        "  max_conf_num = 1",
        "",
    ])


def cni_config(slot):
    """The node's CNI network: bridge ``cni0`` (the gateway, .1 of the pod CIDR), host-local IPAM
    over the pod CIDR, portmap. No masquerade: pods keep their addresses (the host routes the
    pod CIDR to the node; the networks beyond are the router's)."""
    cidr = addressing.pod_cidr(slot)
    return {
        "cniVersion": "0.4.0",
        "name": "meshfleet-%s" % addressing.node_netns(slot),
        "plugins": [
            {"type": "bridge", "bridge": addressing.NODE_BRIDGE_IF, "isGateway": True,
             "ipMasq": False, "hairpinMode": True,
             "ipam": {"type": "host-local",
                      "ranges": [[{"subnet": str(cidr), "gateway": addressing.pod_gateway(slot)}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def cgroup_root(current, slot):
    """kubelet's cgroupRoot: below the cgroup this process runs in (``current``, e.g.
    ``/process_api/abc``), one per node, so clusters never see each other's pods."""
    base = current.rstrip("/")
    return "%s/meshfleet-%s" % (base, addressing.node_netns(slot))


def kubelet_config(slot, paths, cgroup, ca_file):
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup,
        "cgroupsPerQOS": True,
        "containerRuntimeEndpoint": "unix://%s" % paths["containerd_sock"],
        "address": addressing.node_ip(slot),
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "podCIDR": str(addressing.pod_cidr(slot)),
        "clusterDNS": [addressing.cluster_dns(slot)],
        "clusterDomain": "cluster.local",
        "resolvConf": paths["resolv_conf"],
        "podLogsDir": paths["pod_logs"],
        "failSwapOn": False,
        "protectKernelDefaults": False,
        "serializeImagePulls": False,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "authentication": {"anonymous": {"enabled": False},
                           "webhook": {"enabled": False},
                           "x509": {"clientCAFile": ca_file}},
        "authorization": {"mode": "AlwaysAllow"},
        "registerNode": True,
        "registerWithTaints": [],
        "maxPods": 110,
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "nodeStatusUpdateFrequency": "10s",
        "runtimeRequestTimeout": "5m",
        "staticPodPath": "",
        "logging": {"format": "text"},
    }


def kubelet_argv(binary, slot, paths, name):
    return [binary, "--config=%s" % paths["kubelet_conf"],
            "--kubeconfig=%s" % paths["kubelet_kubeconfig"],
            "--root-dir=%s" % paths["kubelet_root"],
            "--cert-dir=%s" % os.path.join(paths["kubelet_root"], "pki"),
            "--hostname-override=%s" % name,
            "--node-ip=%s" % addressing.node_ip(slot),
            "--node-labels=meshfleet.io/node=real",
            "--v=1"]


def kube_proxy_config(slot, paths, name):
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": paths["proxy_kubeconfig"]},
        "hostnameOverride": name,
        "clusterCIDR": str(addressing.pod_cidr(slot)),
        "bindAddress": "0.0.0.0",
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # leave the global conntrack settings (table size, hashsize) alone
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
        "iptables": {"masqueradeAll": False, "syncPeriod": "10s", "minSyncPeriod": "1s"},
    }


def kube_proxy_argv(binary, paths):
    return [binary, "--config=%s" % paths["proxy_conf"], "--v=1"]


def containerd_argv(binary, paths):
    return [binary, "--config", paths["containerd_conf"]]


def apiserver_settings(slot, api_port):
    """What a real-node cluster's API server needs (kwokctl configuration): its advertised
    address (the host end of the host link, where the forwarder listens), the service range,
    the serving certificate's extra names, and flags."""
    dummy, host_end, dummy2 = addressing.host_link(slot)
    service_ip = str(addressing.service_cidr(slot).network_address + 1)
    return dict(
        advertise=host_end, service_ip=service_ip, port=int(api_port),
        cert_sans=[host_end, service_ip],
        extra_args={"advertise-address": host_end,
                    "service-cluster-ip-range": str(addressing.service_cidr(slot)),
                    "enable-aggregator-routing": "true",
                    # the node's name is no host name: dial kubelet (logs, exec) at its address
                    "kubelet-preferred-address-types": "InternalIP,Hostname"},
    )


def go_env():
    """The Go runtime settings of a real-node cluster's Go processes (:data:`GO_GC`)."""
    return {"GOGC": str(GO_GC)}


def daemon_env(name, base):
    """The environment the node runtime starts daemon ``name`` with: ``base``, plus
    :func:`go_env` for the Go daemons (:data:`GO_DAEMONS`)."""
    env = dict(base)
    if name in GO_DAEMONS:
        env.update(go_env())
    return env


def components_patches(apiserver_args):
    """kwokctl's ``componentsPatches`` of a real-node cluster: ``apiserver_args`` ({flag: value})
    as kube-apiserver's extra flags, :func:`go_env` for every component of
    :data:`CONTROL_PLANE_COMPONENTS`, and the kwok-controller restricted to the fake nodes
    (kwokctl's binary runtime lets kwok manage every node, ``--manage-all-nodes=true``; the later
    flags win). kwokctl (v0.8.0) appends extraArgs to the component's flags and extraEnvs to the
    environment it starts the component with."""
    envs = [dict(name=k, value=v) for k, v in sorted(go_env().items())]
    patches = []
    for name in CONTROL_PLANE_COMPONENTS:
        patch = dict(name=name, extraEnvs=list(envs))
        if name == "kube-apiserver" and apiserver_args:
            patch["extraArgs"] = [dict(key=str(k), value=str(v)) for k, v in sorted(apiserver_args.items())]
        if name == "kwok-controller":
            patch["extraArgs"] = [dict(key="manage-all-nodes", value="false"),
                                  dict(key="manage-nodes-with-annotation-selector", value=FAKE_NODE_ANNOTATION)]
        patches.append(patch)
    return patches


def host_routes(slot):
    """Host routes through the node end of the host link (only to this node's ranges)."""
    return [str(addressing.pod_cidr(slot)), str(addressing.service_cidr(slot)), str(addressing.lb_pool(slot))]


def node_routes(slot):
    """Routes inside the node namespace through the host end: the host-link range, where every
    cluster's API server forwarder listens (the host routes nothing between nodes)."""
    return [str(addressing.HOST_LINK_RANGE)]


def coredns_corefile():
    return "\n".join([
        ".:53 {",
        "    errors",
        "    health :8080",
        "    ready :8181",
        "    kubernetes cluster.local in-addr.arpa ip6.arpa {",
        "        pods insecure",
        "        fallthrough in-addr.arpa ip6.arpa",
        "        ttl 30",
        "    }",
        "    cache 30",
        "    loop",
        "    reload",
        "}",
        "",
    ])


def coredns_manifests(slot, image):
    """CoreDNS as the cluster DNS: a Deployment with its Service at ``cluster_dns(slot)``."""
    ns = COREDNS_NAMESPACE
    labels = {"k8s-app": "kube-dns"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", "namespace": ns}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "system:coredns"},
         "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                    "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "system:coredns"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
         "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": ns}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": ns},
         "data": {"Corefile": coredns_corefile()}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "coredns", "namespace": ns, "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "serviceAccountName": "coredns", "dnsPolicy": "Default",
                      "nodeSelector": {"meshfleet.io/node": "real"},
                      "containers": [{
                          "name": "coredns", "image": image, "imagePullPolicy": "Never",
                          "args": ["-conf", "/etc/coredns/Corefile"],
                          "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}],
                          "resources": {"limits": {"memory": "100Mi"}, "requests": {"cpu": "10m", "memory": "30Mi"}},
                          "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}},
                          "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
                          "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}]}],
                      "volumes": [{"name": "config", "configMap": {"name": "coredns"}}]}}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kube-dns", "namespace": ns, "labels": labels},
         "spec": {"selector": labels, "clusterIP": addressing.cluster_dns(slot),
                  "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                            {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}},
    ]
