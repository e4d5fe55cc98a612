# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The netns VM provider without root: names, addresses, settings, the SSH key, the
module's validation and check mode (which touch nothing). The real VMs are tested in
tests/integration/test_vms_local.py (marker ``vm``)."""

from __future__ import absolute_import, division, print_function

import json
import os
import shutil
import subprocess

import pytest

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers import netns
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers.netns import runtime as netns_runtime
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers.base import (
    get_vm_provider_class, public_view)
from ansible_collections.meshfleet.mesh.plugins.module_utils import topology
from ansible_collections.meshfleet.mesh.plugins.modules import vm_instance, vm_instance_info


def provider(settings, group="web", state=None):
    class Module:
        params = dict(state=state) if state else {}
        check_mode = False
    p = netns.NetnsVmProvider(group, "mesh1", settings, module=Module())
    p.validate()
    return p


def test_registered_everywhere():
    assert get_vm_provider_class("netns") is netns.NetnsVmProvider
    assert "netns" in topology.VM_PROVIDERS
    assert topology.REQUIRED_SETTINGS["netns"] == ("subnet",)
    assert set(topology.SETTING_TYPES["netns"]) == {"subnet", "count", "rootfs_cache"}


@pytest.mark.parametrize("subnet, gw, first, room, bridge", [
    ("10.77.0.0/24", "10.77.0.1", "10.77.0.2", 253, "mfbr-0a4d000018"),
    ("10.77.1.0/24", "10.77.1.1", "10.77.1.2", 253, "mfbr-0a4d010018"),
    ("192.168.8.0/30", "192.168.8.1", "192.168.8.2", 1, "mfbr-c0a808001e"),
    ("10.0.0.0/8", "10.0.0.1", "10.0.0.2", 2 ** 24 - 3, "mfbr-0a00000008"),
])
def test_addresses_and_bridge(subnet, gw, first, room, bridge):
    net = netns.parse_subnet(subnet)
    assert netns.gateway_address(net) == gw
    assert netns.vm_address(net, 0) == first
    assert netns.capacity(net) == room
    assert netns.bridge_name(net) == bridge and len(bridge) <= 15


@pytest.mark.parametrize("bad", ["10.77.0.1/24", "10.77.0.0/31", "fd00::/64", "nonsense", "10.77.0.0/33"])
def test_bad_subnets(bad):
    with pytest.raises(MeshfleetError, match="settings.subnet"):
        netns.parse_subnet(bad)


def test_full_subnet():
    net = netns.parse_subnet("10.77.0.0/30")
    with pytest.raises(MeshfleetError, match="room for 1 VMs"):
        netns.vm_address(net, 1)


@pytest.mark.parametrize("name, veth", [
    ("vm1", "mfv-vm1"),
    ("web-1", "mfv-web-1"),
    ("abcdefghijk", "mfv-abcdefghijk"),
    ("abcdefghijkl", None),
    ("db.example", None),
])
def test_interface_names_fit(name, veth):
    got = netns.veth_name(name)
    assert len(got) <= 15 and got.startswith("mfv-")
    if veth:
        assert got == veth
    assert netns.netns_name(name) == "mf-%s" % name
    # stable, and different names give different interfaces
    assert netns.veth_name(name) == got
    assert netns.veth_name(name + "x") != got


def test_names_from_hosts_or_count(tmp_path):
    sd = str(tmp_path)
    assert provider(dict(subnet="10.77.0.0/24", state_dir=sd)).desired_names() == ["web-1"]
    assert provider(dict(subnet="10.77.0.0/24", state_dir=sd, count=3)).desired_names() == [
        "web-1", "web-2", "web-3"]
    p = provider(dict(subnet="10.77.0.0/24", state_dir=sd, hosts=["vm1", "vm9"]))
    assert p.desired_names() == ["vm1", "vm9"] and p.count == 2
    assert p.addresses == {"vm1": "10.77.0.2", "vm9": "10.77.0.3"}
    # hosts as the topology's mapping
    assert provider(dict(subnet="10.77.0.0/24", state_dir=sd, hosts={"a": {}, "b": None})).desired_names() \
        == ["a", "b"]
    assert provider(dict(subnet="10.77.0.0/24", state_dir=sd, count=0)).desired_names() == []


@pytest.mark.parametrize("settings, message", [
    (dict(subnet="10.77.0.0/24"), "missing provider setting: state_dir"),
    (dict(state_dir="/x"), "missing provider setting: subnet"),
    (dict(subnet="10.77.0.0/24", state_dir="/x", count=3, hosts=["a", "b"]),
     "settings.count is 3 but 2 hosts are listed"),
    (dict(subnet="10.77.0.0/30", state_dir="/x", count=2), "2 VMs do not fit in 10.77.0.0/30"),
    (dict(subnet="10.77.0.0/24", state_dir="/x", hosts=["Bad_Name"]), "not a valid VM name"),
    (dict(subnet="10.77.0.0/24", state_dir="/x", hosts=["a", "a"]), "VM names repeat"),
    (dict(subnet="10.77.0.5/24", state_dir="/x"), "not an IPv4 network in CIDR notation"),
])
def test_bad_settings(settings, message):
    with pytest.raises(MeshfleetError, match=message):
        provider(settings)


def test_connection_vars_match_the_inventory_plugin(tmp_path):
    cv = netns.connection_vars(str(tmp_path), "10.77.0.2")
    assert cv == dict(
        ansible_host="10.77.0.2", ansible_user="root",
        ansible_ssh_private_key_file=str(tmp_path / "vms" / "ssh" / "id_ed25519"),
        ansible_ssh_common_args="-o StrictHostKeyChecking=yes -o UserKnownHostsFile=%s"
                                % (tmp_path / "vms" / "known_hosts"),
        ansible_python_interpreter="/usr/bin/python3", meshfleet_vm_private_ip="10.77.0.2")
    # public_view passes them on at the top level, for add_host
    view = public_view(dict(name="vm1", id="mf-vm1", status="running", private_ip="10.77.0.2",
                            settings={}, hostvars=cv))
    assert view["ansible_host"] == "10.77.0.2" and view["address"] == "10.77.0.2"
    assert view["ansible_ssh_private_key_file"] == cv["ansible_ssh_private_key_file"]


def test_topology_addresses_follow_host_order():
    group = dict(settings=dict(subnet="10.77.1.0/24"), hosts={"vm2": {}, "vm3": {}})
    assert topology.netns_addresses("db", group) == {"vm2": "10.77.1.2", "vm3": "10.77.1.3"}
    assert topology.netns_addresses("db", dict(settings=dict(subnet="10.77.1.0/24", count=2))) == {
        "db-1": "10.77.1.2", "db-2": "10.77.1.3"}
    assert topology.netns_addresses("db", dict(settings=dict(subnet="bad"))) == {}


def test_ssh_key_is_made_once_private_and_openssh(tmp_path):
    sd = str(tmp_path / "state")
    pub = netns.ensure_ssh_key(sd)
    paths = netns.ssh_paths(sd)
    assert pub.startswith("ssh-ed25519 ")
    assert oct(os.stat(paths["key"]).st_mode & 0o777) == "0o600"
    assert oct(os.stat(paths["dir"]).st_mode & 0o777) == "0o700"
    with open(paths["key"]) as f:
        assert f.read().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert netns.ensure_ssh_key(sd) == pub
    if shutil.which("ssh-keygen"):
        derived = subprocess.run(["ssh-keygen", "-y", "-f", paths["key"]], stdout=subprocess.PIPE,
                                 universal_newlines=True, check=True).stdout.split()[:2]
        assert derived == pub.split()[:2]


def test_known_hosts_filter(tmp_path):
    path = str(tmp_path / "known_hosts")
    with open(path, "w") as f:
        f.write("10.77.0.2 ssh-ed25519 AAAAold\n10.77.0.3 ssh-ed25519 AAAAother\n"
                "[10.77.0.2]:2222 ssh-ed25519 AAAAport\n")
    netns._filter_known_hosts(path, {"10.77.0.2"}, ["10.77.0.2 ssh-ed25519 AAAAnew"])
    with open(path) as f:
        assert f.read() == "10.77.0.3 ssh-ed25519 AAAAother\n10.77.0.2 ssh-ed25519 AAAAnew\n"


def test_base_rootfs_lookup(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    with pytest.raises(MeshfleetError, match="roles/vms_local/files/vm-rootfs.sh"):
        netns.find_base_rootfs(str(cache))
    for name, mtime in (("old", 1000), ("new", 2000)):
        (cache / name).mkdir(parents=True)
        marker = cache / name / netns.ROOTFS_MARKER
        marker.write_text("key=%s\n" % name)
        os.utime(str(marker), (mtime, mtime))
    (cache / ".new.tmp-1").mkdir()  # a build in progress is never picked
    assert netns.find_base_rootfs(str(cache)) == str(cache / "new")
    assert netns.find_base_rootfs(str(cache / "old")) == str(cache / "old")
    monkeypatch.setenv("MESHFLEET_VM_CACHE", str(cache))
    assert netns.find_base_rootfs() == str(cache / "new")


def test_list_reads_records_of_the_group_and_hides_stopped_ones_for_present(tmp_path):
    sd = str(tmp_path)
    for name, group in (("ut-lone1", "web"), ("ut-lone2", "db")):
        d = tmp_path / "vms" / name
        d.mkdir(parents=True)
        (d / "vm.json").write_text(json.dumps(dict(
            name=name, group=group, mesh="mesh1", subnet="10.77.0.0/24", address="10.77.0.2",
            bridge="mfbr-0a4d000018")))
    # nothing runs under these names (the demo's VMs may: netns names are machine-wide)
    p = provider(dict(subnet="10.77.0.0/24", state_dir=sd, hosts=["ut-lone1"]))
    assert [(i["name"], i["status"]) for i in p.list()] == [("ut-lone1", "stopped")]
    assert provider(dict(subnet="10.77.0.0/24", state_dir=sd, hosts=["ut-lone1"]), state="present").list() == []
    assert p.immutable_changes(p.list()[0]) == []
    other = provider(dict(subnet="10.77.5.0/24", state_dir=sd, hosts=["ut-lone1"]))
    assert other.immutable_changes(p.list()[0]) == ["subnet", "address (the VM's position in hosts)"]


def test_module_check_mode_touches_nothing(run_module, tmp_path):
    sd = tmp_path / "state"
    args = dict(group="web", mesh="mesh1", provider="netns",
                settings=dict(subnet="10.77.250.0/24", hosts=["unit-vm1", "unit-vm2"], state_dir=str(sd)))
    r = run_module(vm_instance, args, check_mode=True, diff=True)
    assert r["rc"] == 0 and r["changed"] is True, r
    assert r["created"] == ["unit-vm1", "unit-vm2"]
    assert [i["status"] for i in r["instances"]] == ["planned", "planned"]
    assert not sd.exists()
    assert not os.path.exists("/run/netns/mf-unit-vm1")
    r = run_module(vm_instance, dict(args, state="absent"), check_mode=True)
    assert r["rc"] == 0 and r["changed"] is False
    r = run_module(vm_instance_info, args)
    assert r["rc"] == 0 and r["instances"] == []


def test_module_reports_bad_settings(run_module, tmp_path):
    r = run_module(vm_instance, dict(group="web", mesh="mesh1", provider="netns",
                                     settings=dict(subnet="10.77.0.0/24", count=2, hosts=["a"],
                                                   state_dir=str(tmp_path))))
    assert r["failed"] and "settings.count is 2 but 1 hosts are listed" in r["msg"]


def test_rootfs_script_prints_its_cache_dir(tmp_path, repo_root):
    env = dict(os.environ, MESHFLEET_VM_CACHE=str(tmp_path))
    script = os.path.join(repo_root, "roles", "vms_local", "files", "vm-rootfs.sh")
    out = subprocess.run(["bash", script, "--print-dir"], env=env, stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout.strip()
    assert os.path.dirname(out) == str(tmp_path)
    assert os.path.basename(out).startswith("bookworm-minbase-")
    assert subprocess.run(["bash", script, "--check"], env=env, check=False).returncode == 1
    os.makedirs(out)
    open(os.path.join(out, netns.ROOTFS_MARKER), "w").close()
    assert subprocess.run(["bash", script, "--check"], env=env, check=False).returncode == 0
    done = subprocess.run(["bash", script], env=env, stdout=subprocess.PIPE,
                          universal_newlines=True, check=True).stdout
    assert "[vm-rootfs] cached rootfs" in done and done.strip().splitlines()[-1] == out


def _fake_owner_records(tmp_path, monkeypatch, records):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for rec in records:
        (run_dir / ("%s.json" % rec["netns"])).write_text(json.dumps(rec))
    monkeypatch.setattr(netns_runtime, "RUN_DIR", str(run_dir))
    monkeypatch.setattr(netns_runtime, "_kill_all", lambda ns: None)
    monkeypatch.setattr(netns_runtime, "netns_exists", lambda ns: False)
    monkeypatch.setattr(netns_runtime, "_link_exists", lambda name: False)
    return run_dir


def test_remove_orphans_keeps_vms_of_a_live_state_dir_unless_reclaimed(tmp_path, monkeypatch):
    live = tmp_path / "live-state"
    live.mkdir()
    run_dir = _fake_owner_records(tmp_path, monkeypatch, [
        {"netns": "mf-a1", "state_dir": str(live)},
        {"netns": "mf-b1", "state_dir": str(tmp_path / "gone")},
        {"netns": "mf-c1", "state_dir": str(live)},
    ])
    # a missing state dir is an orphan; a live one is someone's mesh
    assert netns.remove_orphans(["a1", "b1"]) == ["b1"]
    assert sorted(p.name for p in run_dir.glob("mf-*")) == ["mf-a1.json", "mf-c1.json"]
    # reclaim: the caller owns these names outright; others are never touched
    assert netns.remove_orphans(["a1"], reclaim=True) == ["a1"]
    assert sorted(p.name for p in run_dir.glob("mf-*")) == ["mf-c1.json"]


def test_remove_orphans_reclaim_needs_names():
    with pytest.raises(ValueError, match="needs the list of names"):
        netns.remove_orphans(reclaim=True)


def test_the_inventory_plugin_and_the_validation_load_only_the_addressing():
    """netns addressing is one module, shared by the topology validation, the inventory
    plugin and the provider; the first two never import the runtime."""
    import sys
    code = ("import sys\n"
            "from ansible_collections.meshfleet.mesh.plugins.inventory import topology as inv\n"
            "from ansible_collections.meshfleet.mesh.plugins.module_utils import topology as t\n"
            "t.validate({'mesh': {'id': 'm'}, 'clusters': {'c': {'provider': 'kwok', 'network': 'n'}},\n"
            "            'vm_groups': {'g': {'cluster': 'c', 'provider': 'netns',\n"
            "                                'settings': {'subnet': '10.77.0.0/24'}}}})\n"
            "print(' '.join(sorted(m for m in sys.modules if '.netns' in m)))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                         stdout=subprocess.PIPE, universal_newlines=True).stdout.split()
    prefix = "ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers.netns"
    assert out == [prefix, prefix + ".addressing"]
    assert topology.netns_addresses("g", {"settings": {"subnet": "10.77.0.0/24", "count": 2}}) \
        == netns.group_addresses("g", {"settings": {"subnet": "10.77.0.0/24", "count": 2}}) \
        == {"g-1": "10.77.0.2", "g-2": "10.77.0.3"}
