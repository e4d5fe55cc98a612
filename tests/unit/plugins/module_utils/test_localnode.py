# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""localnode: the rendered configuration of a real node (pure), its client certificates, the
API forwarder, and the kwok provider's handling of a real-node cluster's remnants. The node
itself (namespaces, containerd, kubelet) is tests/integration/test_real_node.py."""

from __future__ import absolute_import, division, print_function

import datetime
import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet import addressing
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet.slots import SlotRegistry
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnode import certs, config, forward
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnode.runtime import Node
from ansible_collections.meshfleet.mesh.plugins.module_utils.providers.kwok import KwokProvider


def paths(slot=7):
    return config.layout("/state/clusters/c1", slot)


def test_layout_keeps_sockets_short_and_per_slot():
    p = paths(7)
    assert p["run_dir"] == "/run/meshfleet/node/7"
    assert p["containerd_sock"].startswith(p["run_dir"] + "/")
    assert len(p["containerd_sock"]) < 108
    assert p["containerd_root"].startswith("/state/clusters/c1/node/")
    assert paths(8)["run_dir"] != p["run_dir"]
    with pytest.raises(Exception):
        config.layout("/x", 256)


def test_holder_covers_every_guarded_sysctl_and_the_shared_runtime_folders():
    p = paths()
    script = config.holder_script(p)
    for name in ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops"):
        assert name in config.GUARDED_SYSCTLS
        assert "mount --bind '%s' /proc/sys/%s" % (config.sysctl_file(p["sysctl_dir"], name), name) in script
    for folder in ("/run/containerd", "/run/netns", "/var/lib/cni"):
        assert "mount -t tmpfs -o mode=0711 meshfleet-node '%s'" % folder in script
        assert "mount --make-private '%s'" % folder in script
    assert script.rstrip().endswith("exec sleep infinity")
    argv = config.holder_argv("mfn-7", p)
    assert argv[:2] == ["nsenter", "--net=/run/netns/mfn-7"]
    assert argv[argv.index("unshare"):argv.index("unshare") + 4] == ["unshare", "--mount", "--propagation", "slave"]
    assert config.enter_argv(42, ["kubelet", "-v"]) == [
        "nsenter", "--target", "42", "--mount", "--net", "--", "kubelet", "-v"]


def test_containerd_config_is_private_and_restricts_oom_score_adj():
    p = paths()
    text = config.containerd_config(p, "localhost/meshfleet/pause:1")
    assert 'root = "%s"' % p["containerd_root"] in text
    assert 'state = "%s"' % p["containerd_state"] in text
    assert 'address = "%s"' % p["containerd_sock"] in text
    assert "restrict_oom_score_adj = true" in text
    assert 'sandbox_image = "localhost/meshfleet/pause:1"' in text
    assert 'BinaryName = "/usr/sbin/runc"' in text
    assert 'bin_dir = "/usr/lib/cni"' in text and 'conf_dir = "%s"' % p["cni_conf_dir"] in text
    assert "SystemdCgroup = false" in text


def test_cni_network_is_a_bridge_over_the_node_pod_cidr():
    conf = config.cni_config(5)
    bridge = conf["plugins"][0]
    assert bridge["type"] == "bridge" and bridge["bridge"] == "cni0" and bridge["isGateway"]
    assert bridge["ipMasq"] is False
    rng = bridge["ipam"]["ranges"][0][0]
    assert bridge["ipam"]["type"] == "host-local"
    assert rng == {"subnet": str(addressing.pod_cidr(5)), "gateway": addressing.pod_gateway(5)}
    assert [p["type"] for p in conf["plugins"]] == ["bridge", "portmap"]
    assert config.cni_config(6)["name"] != conf["name"]
    json.dumps(conf)  # plain data


def test_kubelet_config():
    p = paths(9)
    conf = config.kubelet_config(9, p, "/a/meshfleet-mfn-9", "/ca.crt")
    assert conf["failCgroupV1"] is False
    assert conf["cgroupRoot"] == "/a/meshfleet-mfn-9"
    assert conf["clusterDNS"] == [addressing.cluster_dns(9)] == ["10.131.9.10"]
    assert conf["podCIDR"] == str(addressing.pod_cidr(9))
    assert conf["containerRuntimeEndpoint"] == "unix://" + p["containerd_sock"]
    assert conf["protectKernelDefaults"] is False
    assert conf["authentication"]["anonymous"]["enabled"] is False
    assert conf["authentication"]["x509"]["clientCAFile"] == "/ca.crt"
    yaml.safe_dump(conf)
    argv = config.kubelet_argv("/bin/kubelet", 9, p, "c1-node")
    assert "--node-ip=%s" % addressing.node_ip(9) in argv
    assert "--hostname-override=c1-node" in argv
    assert "--root-dir=%s" % p["kubelet_root"] in argv


def test_cgroup_root_is_below_the_current_cgroup():
    assert config.cgroup_root("/process_api/abc", 3) == "/process_api/abc/meshfleet-mfn-3"
    assert config.cgroup_root("/", 0) == "/meshfleet-mfn-0"


def test_kube_proxy_leaves_global_conntrack_settings_alone():
    conf = config.kube_proxy_config(4, paths(4), "c1-node")
    assert conf["mode"] == "iptables"
    assert conf["clusterCIDR"] == str(addressing.pod_cidr(4))
    assert conf["conntrack"]["maxPerCore"] == 0 and conf["conntrack"]["min"] == 0
    assert conf["hostnameOverride"] == "c1-node"


def test_apiserver_settings_and_routes():
    api = config.apiserver_settings(2, 20006)
    host_end = addressing.host_link(2)[1]
    assert api["advertise"] == host_end
    assert api["service_ip"] == "10.131.2.1"
    assert set(api["cert_sans"]) == {host_end, "10.131.2.1"}
    assert api["extra_args"]["service-cluster-ip-range"] == "10.131.2.0/24"
    assert api["extra_args"]["advertise-address"] == host_end
    assert api["extra_args"]["enable-aggregator-routing"] == "true"
    assert api["extra_args"]["kubelet-preferred-address-types"].startswith("InternalIP")
    # the host routes only the node's own ranges, all inside the plan
    routes = config.host_routes(2)
    assert routes == [str(addressing.pod_cidr(2)), str(addressing.service_cidr(2)), str(addressing.lb_pool(2))]
    assert all(addressing.which_range(ipaddress.ip_network(r).network_address) for r in routes)
    assert config.node_routes(2) == [str(addressing.HOST_LINK_RANGE)]


def test_components_patches_of_a_real_node_cluster():
    """kwokctl's componentsPatches: every control plane component gets Go's GC target, the API
    server its flags, kwok only the fake nodes."""
    api = config.apiserver_settings(2, 20006)
    patches = config.components_patches(api["extra_args"])
    by_name = dict((p["name"], p) for p in patches)
    assert len(by_name) == len(patches)
    assert sorted(by_name) == sorted(["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                                      "kwok-controller"])
    for patch in patches:
        assert patch["extraEnvs"] == [{"name": "GOGC", "value": str(config.GO_GC)}], patch
    assert 0 < config.GO_GC < 100
    args = dict((a["key"], a["value"]) for a in by_name["kube-apiserver"]["extraArgs"])
    assert args == api["extra_args"]
    kwok = [(a["key"], a["value"]) for a in by_name["kwok-controller"]["extraArgs"]]
    assert kwok == [("manage-all-nodes", "false"), ("manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake")]
    for name in ("etcd", "kube-controller-manager", "kube-scheduler"):
        assert "extraArgs" not in by_name[name]
    # no flags asked for: none rendered (kwokctl would append an empty flag)
    assert "extraArgs" not in dict((p["name"], p) for p in config.components_patches({}))["kube-apiserver"]


def test_daemon_env_sets_the_gc_target_of_the_go_daemons_only():
    base = dict(PATH="/usr/bin", HOME="/root")
    for name in ("containerd", "kubelet", "kube-proxy"):
        assert config.daemon_env(name, base) == dict(base, GOGC=str(config.GO_GC))
    for name in ("forwarder", "holder"):
        assert config.daemon_env(name, base) == base
    assert base == dict(PATH="/usr/bin", HOME="/root")  # not changed in place


def test_coredns_service_sits_at_the_cluster_dns_address():
    docs = config.coredns_manifests(3, "localhost/meshfleet/coredns:x")
    kinds = [d["kind"] for d in docs]
    assert kinds == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "Service"]
    svc = docs[-1]
    assert svc["spec"]["clusterIP"] == addressing.cluster_dns(3)
    dep = docs[4]["spec"]["template"]["spec"]
    assert dep["containers"][0]["image"] == "localhost/meshfleet/coredns:x"
    assert dep["containers"][0]["imagePullPolicy"] == "Never"
    assert dep["nodeSelector"] == {"meshfleet.io/node": "real"}
    assert "kubernetes cluster.local" in docs[3]["data"]["Corefile"]


def _ca():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kwok-ca")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def test_node_certificate_is_system_node_in_system_nodes_signed_by_the_cluster_ca():
    ca, ca_key = _ca()
    user, groups = certs.node_identity("c1-node")
    cert, key = certs.sign_client(ca, ca_key, user, groups)
    assert certs.identity_of(cert) == ("system:node:c1-node", ["system:nodes"])
    assert certs.is_signed_by(cert, ca)
    other, dummy = _ca()
    assert not certs.is_signed_by(cert, other)
    parsed = x509.load_pem_x509_certificate(cert)
    # never outlives the CA (30 days here)
    assert parsed.not_valid_after_utc <= x509.load_pem_x509_certificate(ca).not_valid_after_utc
    assert b"PRIVATE KEY" in key
    assert certs.identity_of(certs.sign_client(ca, ca_key, *certs.PROXY_IDENTITY)[0]) == ("system:kube-proxy", [])


def test_forwarder_relays_both_ways(tmp_path):
    script = tmp_path / "forward.py"
    script.write_text(forward.SCRIPT)
    upstream = socket.socket()
    upstream.bind(("127.0.0.1", 0))
    upstream.listen(1)
    uport = upstream.getsockname()[1]

    def echo():
        conn, dummy = upstream.accept()
        data = conn.recv(100)
        conn.sendall(b"echo:" + data)
        conn.close()
    threading.Thread(target=echo, daemon=True).start()
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    lport = probe.getsockname()[1]
    probe.close()
    proc = subprocess.Popen([sys.executable, str(script), "127.0.0.1", str(lport), "127.0.0.1", str(uport)],
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().startswith(b"forwarding")
        c = socket.create_connection(("127.0.0.1", lport), timeout=5)
        c.sendall(b"ping")
        assert c.recv(100) == b"echo:ping"
        c.close()
    finally:
        proc.kill()
        proc.wait()
        upstream.close()


class Module(object):
    def __init__(self, state):
        self.params = dict(state=state)


def test_kwok_real_node_remnants_are_removed_on_absent(tmp_path, monkeypatch):
    """A removal interrupted after kwokctl's part and the cluster folder leaves the node slot:
    state=absent still sees a cluster to remove, removes the node's remnants, frees the slot."""
    monkeypatch.setenv("MESHFLEET_PORTS_DIR", str(tmp_path / "ports"))
    monkeypatch.setenv("MESHFLEET_LOCALNET_DIR", str(tmp_path / "localnet"))
    monkeypatch.setenv("MESHFLEET_NODE_TOOLS_BIN", str(tmp_path / "missing"))
    prov = KwokProvider("c1", dict(tools_bin=str(tmp_path / "bin"), real_node=True), str(tmp_path / "state"),
                        module=Module("absent"))
    cdir = prov.ensure_cluster_dir()
    # a slot no namespace on this machine uses (never touch another node's namespace)
    slot = SlotRegistry(in_use=lambda kind, s: s < 250 or os.path.exists("/run/netns/mfn-%d" % s)).reserve(
        "node", prov.port_owner)
    node = Node("c1", cdir, slot, prov.kwok_dir, None, "")
    os.makedirs(node.paths["conf_dir"])
    assert prov.get() is not None and prov.get()["running"] is False
    assert prov.delete() is True
    assert not os.path.exists(cdir)
    assert prov.slots().get("node", prov.port_owner) is None
    assert node.leftovers() == []
    assert prov.get() is None


def test_real_node_setting_is_checked():
    prov = KwokProvider("c1", dict(real_node="yes", tools_bin="/nonexistent"), "/tmp/x")
    with pytest.raises(Exception) as e:
        prov.validate()
    assert "settings.real_node must be true or false" in str(e.value)
