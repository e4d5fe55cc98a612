# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Root rotation on the live VM mesh, step by step as docs/trust.md describes it, with
playbooks/site.yml (the shared ``onboarded`` mesh of conftest_vm_mesh.py: two kwok primaries
on two networks, a local istiod each, one netns VM per network).

    introduce   site.yml -e trust_root_rotation=introduce   bundles [old, new], intermediates from old
    switch      site.yml -e trust_root_rotation=switch      bundles [new, old], intermediates from new
    retire      site.yml -e trust_root_rotation=retire      bundles [new]

After each step, for every cluster, the ``istio-ca-root-cert`` ConfigMap of every namespace
holds the expected bundle (what the cluster's workloads trust), each VM's
``/etc/certs/root-cert.pem`` (the bundle its agent received from istiod) too, and:

- a cross-network mutual-TLS exchange between the two VMs (playbooks/vms_verify.yml, the
  vm_identity_check serve/connect probe) where each side verifies its peer with its OWN live
  bundle (``vm_sidecar_root_bundle_file`` pointed at the VM's /etc/certs/root-cert.pem);
- every live workload chain in the mesh (the VMs', issued by cluster1's and cluster3's
  istiods) verifies against every live trust bundle in the mesh (both VMs' and every
  cluster's ConfigMaps) and against the bundles of the step before (a workload that has not
  received the new bundle yet), and so does a workload chain of the old root kept from
  before the rotation while the old root is still in the bundles. There is no live pod in a
  kwok cluster: this verification (cryptography, the chain the peer would present against
  the bundle the pod would load) stands for the pod side.

Steps are separate tests (each well under 3 minutes on 2 cores); they run in order.
"""

from __future__ import absolute_import, division, print_function

import datetime
import os
import re
import time

import pytest

import helpers
from conftest_vm_mesh import CLUSTERS, VMS, assert_ok, log

pytestmark = pytest.mark.vm

STEP_TARGET = 180  # seconds per step (site.yml + checks): logged, and exceeded only under load
STEP_LIMIT = 420   # seconds: a site.yml run that takes longer is killed (its output is kept)


def x509():
    from cryptography import x509 as mod
    return mod


def load(path_or_pem):
    data = path_or_pem
    if not isinstance(data, bytes):
        with open(path_or_pem, "rb") as f:
            data = f.read()
    return x509().load_pem_x509_certificates(data)


def fp(cert):
    from cryptography.hazmat.primitives import hashes
    return cert.fingerprint(hashes.SHA256()).hex()[:16]


def fps(certs):
    return [fp(c) for c in certs]


def chain_verifies(chain, bundle):
    """Whether the workload chain (leaf first) verifies to one of the bundle's roots."""
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
    builder = PolicyBuilder().store(Store(list(bundle))).time(datetime.datetime.now(datetime.timezone.utc))
    try:
        builder.build_client_verifier().verify(chain[0], [c for c in chain[1:] if c not in bundle])
        return True
    except VerificationError:
        return False


class State:
    """What the mesh holds right now: roots on the controller, bundles in the clusters and on
    the VMs, the VMs' workload chains."""

    def __init__(self, mesh):
        self.mesh = mesh
        root = os.path.join(mesh.state_dir, "pki", "root")
        self.root = load(os.path.join(root, "root-cert.pem"))[0]
        prev = os.path.join(root, "previous-root-cert.pem")
        self.previous = load(prev)[0] if os.path.exists(prev) else None
        self.pki_bundles = dict((c, load(os.path.join(mesh.state_dir, "pki", c, "root-cert.pem")))
                                for c in CLUSTERS)
        self.intermediates = dict((c, load(os.path.join(mesh.state_dir, "pki", c, "ca-cert.pem"))[0])
                                  for c in CLUSTERS)
        self.configmaps = configmap_bundles(mesh)
        self.vm_bundles = dict((vm, load(mesh.rootfs(vm, "etc", "certs", "root-cert.pem"))) for vm in VMS)
        self.vm_chains = dict((vm, load(mesh.rootfs(vm, "etc", "certs", "cert-chain.pem"))) for vm in VMS)

    def all_bundles(self):
        out = dict(("VM %s" % vm, b) for vm, b in self.vm_bundles.items())
        for (cluster, ns), b in self.configmaps.items():
            out["%s ConfigMap %s/istio-ca-root-cert" % (cluster, ns)] = b
        return out


def configmap_bundles(mesh):
    """{(cluster, namespace): [certs]} of every istio-ca-root-cert ConfigMap."""
    from kubernetes import client
    out = {}
    for cluster in CLUSTERS:
        core = client.CoreV1Api(helpers.kube_client(mesh.kubeconfig(cluster)))
        for cm in core.list_config_map_for_all_namespaces(
                field_selector="metadata.name=istio-ca-root-cert").items:
            out[(cluster, cm.metadata.namespace)] = load((cm.data or {})["root-cert.pem"].encode())
    return out


def wait_state(mesh, ok, what, timeout=90):
    """The mesh's State once ``ok(state)`` holds (istiods rewrite ConfigMaps and agents get
    new certificates asynchronously after site.yml returns); fails with the last state."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = State(mesh)
            problem = ok(last)
        except (IOError, OSError, ValueError, KeyError) as e:  # a file being rewritten
            problem = "%s: %s" % (type(e).__name__, e)
        if not problem:
            return last
        assert time.monotonic() < deadline, "timed out after %ss waiting for %s: %s" % (timeout, what, problem)
        time.sleep(1)


def expect(roots, signer, retired=()):
    """A check: every bundle in the mesh is exactly ``roots`` (fingerprints, in order), every
    intermediate and every VM chain is issued under ``signer``, and nothing chains to ``retired``."""
    want = fps(roots)

    def ok(st):
        for c, b in st.pki_bundles.items():
            if fps(b) != want:
                return "pki/%s/root-cert.pem is %s, not %s" % (c, fps(b), want)
        namespaces = dict((c, [ns for (cc, ns) in st.configmaps if cc == c]) for c in CLUSTERS)
        for c, nss in namespaces.items():
            for ns in ("istio-system", "default"):
                if ns not in nss:
                    return "%s has no istio-ca-root-cert in %s (has %s)" % (c, ns, nss)
        for where, b in st.all_bundles().items():
            # istiod and the agent pass the bundle on as the PKI wrote it; the order does not
            # matter to a verifier, the set does (and no duplicates)
            if sorted(fps(b)) != sorted(want):
                return "%s holds %s, not %s" % (where, fps(b), want)
        for c, inter in st.intermediates.items():
            try:
                inter.verify_directly_issued_by(signer)
            except Exception:
                return "the intermediate of %s is not issued by root %s" % (c, fp(signer))
        for vm, chain in st.vm_chains.items():
            if not chain_verifies(chain, [signer]):
                return "the workload chain of VM %s (issuer %s) does not chain to root %s" % (
                    vm, chain[0].issuer.rfc4514_string(), fp(signer))
            for old in retired:
                if chain_verifies(chain, [old]):
                    return "the workload chain of VM %s still chains to the old root %s" % (vm, fp(old))
        return None
    return ok


def cross_trust(st, extra_chains=()):
    """Every workload chain verifies against every live bundle: [(chain, bundle)] that fail."""
    chains = [("VM %s" % vm, chain) for vm, chain in st.vm_chains.items()] + list(extra_chains)
    return ["%s against %s" % (name, where) for name, chain in chains
            for where, bundle in st.all_bundles().items() if not chain_verifies(chain, bundle)]


def live_mtls(mesh):
    """vms_verify.yml with each VM verifying its peer against its own live bundle."""
    run = mesh.play("vms_verify.yml", "-e", "vm_sidecar_root_bundle_file={{ meshfleet_state_dir }}/vms/"
                    "{{ inventory_hostname }}/rootfs/etc/certs/root-cert.pem")
    assert_ok(run)
    flat = " ".join(run.output.split())
    assert "server saw spiffe://cluster.local/ns/vm-web/sa/web" in flat, run.tail(40)
    return run


@pytest.fixture(scope="module")
def rotation(onboarded):
    """The mesh before the rotation: its root, and a workload chain of the old root."""
    if not all(os.path.exists(onboarded.rootfs(vm, "etc", "certs", "cert-chain.pem")) for vm in VMS):
        assert_ok(onboarded.play("vms.yml", timeout=600))  # the VMs were offboarded by another test
    st = State(onboarded)
    assert st.previous is None and not os.path.exists(os.path.join(
        onboarded.state_dir, "pki", "root", "next-root-cert.pem")), "a rotation window is already open"
    before = wait_state(onboarded, expect([st.root], st.root), "the mesh on its first root")
    assert not cross_trust(before)
    return dict(mesh=onboarded, old_root=before.root, old_chain=before.vm_chains["mfi-web1"],
                last=before, steps=[])


def step(rotation, name):
    # task timings in the output (ansible.posix.profile_tasks), to see where a slow step goes
    run = rotation["mesh"].play("site.yml", "-e", "trust_root_rotation=%s" % name, timeout=STEP_LIMIT,
                                env={"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks"})
    slow = [line for line in run.output.splitlines() if re.match(r"^.{1,120} -+ \d+\.\d+s$", line)]
    log("%s: slowest tasks:\n  %s" % (name, "\n  ".join(slow[:8])))
    assert_ok(run)
    rotation["steps"].append(name)
    return run


def lagging(rotation):
    """The bundles of the step before: what a workload that has not caught up still trusts."""
    return [("VM %s before this step" % vm, b) for vm, b in rotation["last"].vm_bundles.items()]


def cross_trust_all(rotation, st, extra_chains=()):
    problems = cross_trust(st, extra_chains)
    for where, bundle in lagging(rotation):
        for vm, chain in st.vm_chains.items():
            if not chain_verifies(chain, bundle):
                problems.append("VM %s (now) against %s" % (vm, where))
    return problems


def finish(rotation, name, t0, st, mtls):
    rotation["last"] = st
    took = time.monotonic() - t0
    log("root rotation, %s: %.1fs (site.yml + checks, mTLS probe %.1fs; target %ss); bundle %s" % (
        name, took, mtls.seconds, STEP_TARGET, fps(st.pki_bundles[sorted(CLUSTERS)[0]])))


def test_1_introduce(rotation):
    t0 = time.monotonic()
    run = step(rotation, "introduce")
    assert "rotation: introduced, window open: True" in " ".join(run.output.split()), run.tail(60)
    mesh, old = rotation["mesh"], rotation["old_root"]
    new = load(os.path.join(mesh.state_dir, "pki", "root", "next-root-cert.pem"))[0]
    assert fp(new) != fp(old)
    # the new root is in every bundle; every certificate still chains to the old one
    st = wait_state(mesh, expect([old, new], old), "the introduced root in every bundle")
    assert fp(st.root) == fp(old) and st.previous is None
    assert not cross_trust_all(rotation, st, [("the old-root chain of mfi-web1", rotation["old_chain"])])
    mtls = live_mtls(mesh)
    rotation["new_root"] = new
    finish(rotation, "introduce", t0, st, mtls)


def test_2_switch(rotation):
    assert rotation["steps"] == ["introduce"], "introduce did not pass"
    t0 = time.monotonic()
    run = step(rotation, "switch")
    assert "rotation: switched, window open: True" in " ".join(run.output.split()), run.tail(60)
    mesh, new, old = rotation["mesh"], rotation["new_root"], rotation["old_root"]
    # intermediates and the VMs' certificates from the new root, both roots still trusted
    st = wait_state(mesh, expect([new, old], new, retired=[old]), "the mesh on the new chain, both roots trusted")
    assert fp(st.root) == fp(new) and fp(st.previous) == fp(old)
    # new chains are trusted by every bundle, also the ones of the step before; a chain of
    # the old root still is too
    assert not cross_trust_all(rotation, st, [("the old-root chain of mfi-web1", rotation["old_chain"])])
    mtls = live_mtls(mesh)
    finish(rotation, "switch", t0, st, mtls)


def test_3_retire(rotation):
    assert rotation["steps"] == ["introduce", "switch"], "an earlier step did not pass"
    t0 = time.monotonic()
    run = step(rotation, "retire")
    assert "rotation: retired" in " ".join(run.output.split()), run.tail(60)
    mesh, new, old = rotation["mesh"], rotation["new_root"], rotation["old_root"]
    st = wait_state(mesh, expect([new], new, retired=[old]), "the new root alone everywhere")
    assert st.previous is None
    assert not cross_trust_all(rotation, st)
    # the old root is gone from every bundle: its chains are trusted nowhere any more
    old_chain = rotation["old_chain"]
    assert [w for w, b in st.all_bundles().items() if chain_verifies(old_chain, b)] == []
    archived = os.listdir(os.path.join(mesh.state_dir, "pki", "root", "retired"))
    assert archived == ["root-cert-%s.pem" % fp(old)], archived
    mtls = live_mtls(mesh)
    finish(rotation, "retire", t0, st, mtls)
