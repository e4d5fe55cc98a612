# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pytest fixtures for tests that need real local VMs (the ``netns`` VM provider).

Import them where they are needed (a test module, or ``tests/integration/conftest.py``)::

    from conftest_vms import netns_vms, vm_ansible  # noqa: F401  (fixtures)

- ``netns_vms`` (session): two VMs on two subnets, ``mft-a1`` (10.78.0.2, group
  ``vmt-a``, 10.78.0.0/24) and ``mft-b1`` (10.78.1.2, group ``vmt-b``, 10.78.1.0/24), in
  a temporary mesh state dir, made from the cached base rootfs (``roles/vms_local/files/vm-rootfs.sh``
  builds it the first time, ~1-3 minutes). Always torn down, also when a test or the
  set-up fails; VMs left by a run that was killed are removed first.
- ``vm_ansible``: ``vm_ansible(pattern, module, args=None) -> {host: result}``, one
  ad-hoc Ansible module run over real SSH against the VMs' inventory.

Tests using them are skipped when this is not root or lacks ip/unshare (the reason is
printed); mark them ``@pytest.mark.vm``.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
COLLECTIONS = os.path.join(REPO, "collections")
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers import netns  # noqa: E402

VENV_BIN = os.path.join(REPO, ".venv", "bin")
MESH = "vmtest"
#: group -> (subnet, VM names): two subnets, one VM each (a different range than the demo's 10.77)
GROUPS = {
    "vmt-a": ("10.78.0.0/24", ["mft-a1"]),
    "vmt-b": ("10.78.1.0/24", ["mft-b1"]),
}


def tool(name):
    """A tool from the repo's .venv (ansible, ansible-playbook), else from PATH."""
    path = os.path.join(VENV_BIN, name)
    return path if os.path.exists(path) else name


def vm_support_problem():
    """Why netns VMs cannot run here, or None."""
    if os.geteuid() != 0:
        return "netns VMs need root (network namespaces, chroot)"
    for cmd in ("ip", "unshare", "setsid", "chroot"):
        if not shutil.which(cmd):
            return "netns VMs need %s" % cmd
    return None


def ensure_rootfs():
    """Run roles/vms_local/files/vm-rootfs.sh (builds the base tree once); return the tree's path."""
    started = time.monotonic()
    proc = subprocess.run(["bash", os.path.join(REPO, "roles", "vms_local", "files", "vm-rootfs.sh")],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    sys.stderr.write(proc.stdout)
    if proc.returncode != 0:
        raise RuntimeError("roles/vms_local/files/vm-rootfs.sh failed:\n%s" % proc.stdout)
    path = proc.stdout.strip().splitlines()[-1]
    sys.stderr.write("[vm-test] rootfs ready in %.1fs: %s\n" % (time.monotonic() - started, path))
    return path


def ansible_env(state_dir):
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
        ANSIBLE_SSH_CONTROL_PATH_DIR=os.path.join(state_dir, "cp"),
        ANSIBLE_LOCAL_TEMP=os.path.join(state_dir, "tmp"),
        ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
        PATH=VENV_BIN + os.pathsep + env.get("PATH", ""),
    )
    return env


class NetnsVms:
    """What the ``netns_vms`` fixture yields."""

    def __init__(self, state_dir, rootfs):
        self.state_dir = state_dir
        self.rootfs = rootfs
        self.groups = GROUPS
        self.inventory = os.path.join(state_dir, "inventory.json")
        self.vms = {}  # name -> view (address, settings, hostvars, ...)

    def provider(self, group):
        subnet, names = GROUPS[group]
        p = netns.NetnsVmProvider(group, MESH, dict(subnet=subnet, hosts=list(names),
                                                    state_dir=self.state_dir,
                                                    rootfs_cache=self.rootfs))
        p.validate()
        return p

    def up(self):
        for group in GROUPS:
            p = self.provider(group)
            started = time.monotonic()
            ids = [p.create(name) for name in p.desired_names()]
            p.wait_ready(ids, 120)
            sys.stderr.write("[vm-test] group %s up in %.1fs\n" % (group, time.monotonic() - started))
            for view in p.list():
                self.vms[view["name"]] = view
        self.write_inventory()

    def write_inventory(self):
        hosts = dict((name, dict(view["hostvars"])) for name, view in self.vms.items())
        with open(self.inventory, "w") as f:
            json.dump({"all": {"hosts": hosts}}, f, indent=2)

    def down(self):
        errors = []
        for group in GROUPS:
            try:
                p = self.provider(group)
                for inst in p.list():
                    p.delete(inst)
            except Exception as e:  # keep tearing down the others
                errors.append("%s: %s" % (group, e))
        return errors

    def address(self, name):
        return self.vms[name]["private_ip"]

    def env(self):
        return ansible_env(self.state_dir)


@pytest.fixture(scope="session")
def netns_vms(tmp_path_factory):
    problem = vm_support_problem()
    if problem:
        pytest.skip(problem)
    names = [n for _subnet, hosts in GROUPS.values() for n in hosts]
    removed = netns.remove_orphans(names, reclaim=True)
    if removed:
        sys.stderr.write("[vm-test] removed VMs left by an earlier run: %s\n" % ", ".join(removed))
    rootfs = ensure_rootfs()
    state_dir = str(tmp_path_factory.mktemp("vm-state"))
    for sub in ("cp", "tmp"):
        os.makedirs(os.path.join(state_dir, sub))
    vms = NetnsVms(state_dir, rootfs)
    try:
        vms.up()
        yield vms
    finally:
        errors = vms.down()
        assert not errors, "teardown of the test VMs failed: %s" % "; ".join(errors)


@pytest.fixture
def vm_ansible(netns_vms):
    """``vm_ansible(pattern, module, args=None, check=True) -> {host: result dict}``."""

    def run(pattern, module, args=None, check=True):
        cmd = [tool("ansible"), pattern, "-i", netns_vms.inventory, "-m", module]
        if args is not None:
            cmd += ["-a", args if isinstance(args, str) else json.dumps(args)]
        env = netns_vms.env()
        env.update(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
        proc = subprocess.run(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=300, check=False)
        try:
            out = json.loads(proc.stdout)
            results = out["plays"][0]["tasks"][0]["hosts"]
        except (ValueError, KeyError, IndexError):
            raise AssertionError("ansible %s %s: rc=%d\n%s\n%s" % (
                pattern, module, proc.returncode, proc.stdout, proc.stderr))
        if check:
            bad = dict((h, r) for h, r in results.items() if r.get("failed") or r.get("unreachable"))
            assert not bad, "ansible %s -m %s failed: %s" % (pattern, module, json.dumps(bad, indent=2))
        return results

    return run
