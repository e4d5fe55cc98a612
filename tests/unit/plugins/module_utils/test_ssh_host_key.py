# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pinned VM host keys (module_utils/ssh_host_key.py, module vm_host_key).

Keys are real ed25519 keys made with ssh-keygen; hashed known_hosts lines are made by
ssh-keygen -H, so the parser is checked against OpenSSH's own format. The VM's offered keys
come from a scanner function (the integration test vm_host_key_* uses ssh-keyscan on a VM).
"""

from __future__ import absolute_import, division, print_function

import os
import shutil
import stat
import subprocess

import pytest

from ansible_collections.meshfleet.mesh.plugins.module_utils import ssh_host_key as shk
from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers import netns
from ansible_collections.meshfleet.mesh.plugins.modules import vm_host_key

needs_keygen = pytest.mark.skipif(not shutil.which("ssh-keygen"), reason="needs ssh-keygen")


def keypair(tmp_path, name):
    path = str(tmp_path / name)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
    with open(path + ".pub") as f:
        t, k = f.read().split()[:2]
    return t, k


def scanner_of(keys, calls=None):
    def scan(host, port, timeout):
        if calls is not None:
            calls.append((host, port))
        return list(keys)
    return scan


def test_ssh_options():
    args = ("-o StrictHostKeyChecking=yes -o UserKnownHostsFile=/s/vms/known_hosts "
            "-oProxyJump=bastion -o 'ServerAliveInterval 5' -o stricthostkeychecking=no")
    assert shk.ssh_options(args) == {"stricthostkeychecking": "yes",  # ssh: the first one wins
                                     "userknownhostsfile": "/s/vms/known_hosts",
                                     "proxyjump": "bastion", "serveraliveinterval": "5"}
    assert shk.ssh_options("") == {}
    assert shk.ssh_options(netns.ssh_common_args("/s", strict=False)) == {
        "stricthostkeychecking": "accept-new", "userknownhostsfile": "/s/vms/known_hosts"}


def test_host_name():
    assert shk.host_name("10.0.0.1") == "10.0.0.1"
    assert shk.host_name("10.0.0.1", 2222) == "[10.0.0.1]:2222"


def test_host_patterns():
    assert shk.host_matches("10.0.0.1,vm1", "10.0.0.1")
    assert shk.host_matches("10.0.0.*", "10.0.0.7")
    assert not shk.host_matches("10.0.0.*,!10.0.0.7", "10.0.0.7")
    assert not shk.host_matches("10.0.0.10", "10.0.0.1")
    assert shk.host_matches("[10.0.0.1]:2222", "[10.0.0.1]:2222")
    assert not shk.host_matches("[10.0.0.1]:2222", "10.0.0.1")


@needs_keygen
def test_pinned_keys_plain_hashed_and_markers(tmp_path):
    a = keypair(tmp_path, "a")
    b = keypair(tmp_path, "b")
    kh = tmp_path / "known_hosts"
    kh.write_text("# comment\n\n10.0.0.1 %s %s\n@revoked 10.0.0.2 %s %s\n10.0.0.2 %s %s\n"
                  "[10.0.0.3]:2222 %s %s\n" % (a + b + b + a))
    assert shk.pinned_keys(str(kh), "10.0.0.1") == [(a[0], a[1], 3)]
    assert shk.pinned_keys(str(kh), "10.0.0.2") == [(b[0], b[1], 5)]
    assert shk.pinned_keys(str(kh), "[10.0.0.3]:2222") == [(a[0], a[1], 6)]
    assert shk.pinned_keys(str(kh), "10.0.0.3") == []
    assert shk.pinned_keys(str(tmp_path / "missing"), "10.0.0.1") == []
    # OpenSSH's hashed names (HashKnownHosts yes)
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(kh)], check=True, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE)
    assert "10.0.0.1" not in kh.read_text()
    assert [k[:2] for k in shk.pinned_keys(str(kh), "10.0.0.1")] == [a]
    assert [k[:2] for k in shk.pinned_keys(str(kh), "[10.0.0.3]:2222")] == [a]
    assert shk.pinned_keys(str(kh), "10.0.0.9") == []


@needs_keygen
def test_fingerprint_is_openssh_s(tmp_path):
    t, k = keypair(tmp_path, "a")
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(tmp_path / "a.pub")],
                         check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout
    assert out.split()[1] == shk.fingerprint(k)


@needs_keygen
def test_match_changed_and_strict(tmp_path):
    a = keypair(tmp_path, "a")
    b = keypair(tmp_path, "b")
    kh = tmp_path / "vms" / "known_hosts"
    kh.parent.mkdir()
    kh.write_text("10.0.0.1 %s %s\n" % a)
    args = netns.ssh_common_args(str(tmp_path), strict=True)
    res = shk.check_host_key("vm1", "10.0.0.1", 22, ssh_common_args=args, scanner=scanner_of([b, a]))
    assert (res["status"], res["changed"], res["strict"]) == ("match", False, True)
    before = kh.read_text()
    with pytest.raises(MeshfleetError) as exc:
        shk.check_host_key("vm1", "10.0.0.1", 22, ssh_common_args=args, scanner=scanner_of([b]))
    msg = exc.value.msg
    assert msg.startswith("VM vm1 (10.0.0.1): host key does not match the pinned key in %s" % kh)
    assert "if the VM was rebuilt, remove its line (ssh-keygen -R '10.0.0.1' -f %s) and re-run" % kh in msg
    assert shk.fingerprint(a[1]) in msg and shk.fingerprint(b[1]) in msg and "line 1" in msg
    assert kh.read_text() == before  # a changed key is never written over
    # StrictHostKeyChecking=yes and nothing pinned: refused, nothing written
    with pytest.raises(MeshfleetError, match="no host key pinned for it in .*StrictHostKeyChecking=yes"):
        shk.check_host_key("vm2", "10.0.0.2", 22, ssh_common_args=args, scanner=scanner_of([b]))
    assert kh.read_text() == before


@needs_keygen
def test_accept_new_pins_once_then_enforces(tmp_path):
    a = keypair(tmp_path, "a")
    b = keypair(tmp_path, "b")
    state = tmp_path / "state"          # the vms/ folder does not exist yet
    args = netns.ssh_common_args(str(state), strict=False)
    kh = state / "vms" / "known_hosts"
    res, dummy = shk.plan_host_key("api-1", "192.0.2.10", 2222, ssh_common_args=args,
                                   scanner=scanner_of([a]))
    assert (res["status"], res["changed"]) == ("pinned", True) and not kh.exists()
    res = shk.check_host_key("api-1", "192.0.2.10", 2222, ssh_common_args=args, scanner=scanner_of([a]))
    assert (res["status"], res["changed"]) == ("pinned", True)
    assert kh.read_text() == "[192.0.2.10]:2222 %s %s\n" % a
    assert stat.S_IMODE(os.stat(str(kh)).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(str(kh.parent)).st_mode) == 0o700
    res = shk.check_host_key("api-1", "192.0.2.10", 2222, ssh_common_args=args, scanner=scanner_of([a]))
    assert (res["status"], res["changed"]) == ("match", False)
    with pytest.raises(MeshfleetError, match=r"VM api-1 \(\[192.0.2.10\]:2222\): host key does not match"):
        shk.check_host_key("api-1", "192.0.2.10", 2222, ssh_common_args=args, scanner=scanner_of([b]))
    # ssh itself finds the line (same format as its own)
    out = subprocess.run(["ssh-keygen", "-F", "[192.0.2.10]:2222", "-f", str(kh)],
                         stdout=subprocess.PIPE, universal_newlines=True, check=False)
    assert out.returncode == 0 and a[1] in out.stdout


def test_unreachable_and_unchecked(tmp_path):
    args = netns.ssh_common_args(str(tmp_path), strict=True)
    res = shk.check_host_key("vm1", "10.0.0.1", 22, ssh_common_args=args, scanner=scanner_of([]))
    assert (res["status"], res["changed"]) == ("unreachable", False)
    calls = []
    res = shk.check_host_key("vm1", "10.0.0.1", 22, ssh_common_args="-o ProxyJump=x",
                             scanner=scanner_of([("ssh-ed25519", "AAAA")], calls))
    assert res["status"] == "unchecked" and calls == []
    # behind a jump host a scan from the controller could reach another machine: not scanned,
    # but the folder for ssh's own accept-new pin is made
    other = tmp_path / "other"
    res = shk.check_host_key("vm1", "10.0.0.1", 22, scanner=scanner_of([("ssh-ed25519", "AAAA")], calls),
                             ssh_common_args=netns.ssh_common_args(str(other), strict=False)
                             + " -o ProxyJump=bastion")
    assert res["status"] == "unchecked" and calls == []
    assert (other / "vms").is_dir() and not (other / "vms" / "known_hosts").exists()


def test_module_fails_with_the_message(tmp_path, run_module, monkeypatch):
    kh = tmp_path / "known_hosts"
    kh.write_text("10.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPinned\n")
    monkeypatch.setattr(shk, "scan", lambda host, port, timeout: [
        ("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIOther")])
    res = run_module(vm_host_key, dict(name="vm1", host="10.0.0.1", known_hosts=str(kh), strict=True))
    assert res["failed"]
    assert res["msg"].startswith("VM vm1 (10.0.0.1): host key does not match the pinned key in %s" % kh)
    assert res["known_hosts"] == str(kh)
