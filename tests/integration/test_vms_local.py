# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The netns VM provider for real: VMs that Ansible reaches over SSH and that are other hosts.

Needs root (network namespaces), and the base rootfs (built on first use by
roles/vms_local/files/vm-rootfs.sh). Run: ``.venv/bin/pytest -m vm tests/integration``.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import socket
import subprocess
import time
import uuid

import pytest

# the fixtures netns_vms and vm_ansible are used as test arguments
from conftest_vms import (  # noqa: F401  pylint: disable=unused-import
    MESH, REPO, ansible_env, netns, netns_vms, tool, vm_ansible, vm_support_problem)

pytestmark = pytest.mark.vm

A, B = "mft-a1", "mft-b1"

DEMO_INIT = r'''#!/bin/sh
### BEGIN INIT INFO
# Provides:          mfdemo
# Required-Start:    $network
# Required-Stop:
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: Meshfleet test service (python3 http.server on 8080)
### END INIT INFO
PIDFILE=/run/mfdemo.pid
case "$1" in
  start) start-stop-daemon --start --quiet --background --make-pidfile --pidfile $PIDFILE \
           --exec /usr/bin/python3 -- -m http.server 8080 --directory /srv ;;
  stop) start-stop-daemon --stop --quiet --pidfile $PIDFILE --remove-pidfile ;;
  restart) $0 stop; $0 start ;;
  status) start-stop-daemon --status --pidfile $PIDFILE ;;
  *) echo "usage: $0 start|stop|restart|status"; exit 3 ;;
esac
'''


def shell(vm_ansible, host, cmd):
    return vm_ansible(host, "ansible.builtin.shell", cmd)[host]["stdout"]


def host_addresses():
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    return set(line.split()[3].split("/")[0] for line in out.splitlines())


def http_ok(address, port=8080):
    try:
        with socket.create_connection((address, port), timeout=1) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return s.recv(16).startswith(b"HTTP/1.0 200")
    except OSError:
        return False


# --- reachability and identity ---------------------------------------------------------

def test_ping_over_real_ssh(netns_vms, vm_ansible):
    results = vm_ansible("all", "ansible.builtin.ping")
    assert sorted(results) == [A, B]
    assert all(r["ping"] == "pong" for r in results.values())
    # it really went over ssh, with the mesh's key and known_hosts
    hv = netns_vms.vms[A]["hostvars"]
    assert hv["ansible_ssh_private_key_file"] == os.path.join(netns_vms.state_dir, "vms", "ssh", "id_ed25519")
    assert oct(os.stat(hv["ansible_ssh_private_key_file"]).st_mode & 0o777) == "0o600"
    assert oct(os.stat(os.path.dirname(hv["ansible_ssh_private_key_file"])).st_mode & 0o777) == "0o700"
    with open(os.path.join(netns_vms.state_dir, "vms", "known_hosts")) as f:
        pinned = f.read()
    assert "10.78.0.2 ssh-ed25519 " in pinned and "10.78.1.2 ssh-ed25519 " in pinned
    ssh = subprocess.run(
        ["ssh", "-i", hv["ansible_ssh_private_key_file"], "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=yes",
         "-o", "UserKnownHostsFile=%s" % os.path.join(netns_vms.state_dir, "vms", "known_hosts"),
         "root@10.78.0.2", "echo", "hello-from-$(hostname)"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=30,
        check=False)
    assert ssh.returncode == 0, ssh.stderr
    assert ssh.stdout.strip() == "hello-from-%s" % A


def test_each_vm_is_its_own_host(netns_vms, vm_ansible):
    mine = host_addresses()
    for name, address in ((A, "10.78.0.2"), (B, "10.78.1.2")):
        assert netns_vms.address(name) == address
        assert shell(vm_ansible, name, "hostname") == name != socket.gethostname()
        addrs = shell(vm_ansible, name, "ip -4 -o addr show | awk '{print $4}'").split()
        assert sorted(addrs) == sorted(["127.0.0.1/8", address + "/24"])
        assert not (set(a.split("/")[0] for a in addrs) - {"127.0.0.1"}) & mine
        route = shell(vm_ansible, name, "ip route show default")
        assert route.startswith("default via %s.1 dev eth0" % address.rsplit(".", 1)[0])
        # its own PID namespace: its init is PID 1, and the host's processes are not visible
        assert shell(vm_ansible, name, "cat /proc/1/comm") == "meshfleet-init"
        ps = shell(vm_ansible, name, "ps -e -o comm=").split()
        assert "pytest" not in " ".join(ps) and len(ps) < 30
    facts = vm_ansible(A, "ansible.builtin.setup", "gather_subset=!all,!min,distribution")[A]
    assert facts["ansible_facts"]["ansible_distribution_release"] == "bookworm"


def test_each_vm_has_its_own_etc(netns_vms, vm_ansible):
    marker = "/etc/meshfleet-vm-test-%s" % uuid.uuid4().hex[:8]
    vm_ansible(A, "ansible.builtin.copy", dict(content="only on %s\n" % A, dest=marker, mode="0644"))
    assert shell(vm_ansible, A, "cat %s" % marker) == "only on %s" % A
    assert not os.path.exists(marker), "the VM wrote to the host's /etc"
    assert vm_ansible(B, "ansible.builtin.stat", "path=%s" % marker)[B]["stat"]["exists"] is False
    # where it really is: the VM's own rootfs copy under the state dir
    rootfs = netns_vms.vms[A]["settings"]["rootfs"]
    assert rootfs == os.path.join(netns_vms.state_dir, "vms", A, "rootfs")
    assert os.path.isfile(rootfs + marker)
    assert not os.path.exists(os.path.join(netns_vms.rootfs, marker.lstrip("/"))), "base rootfs changed"
    # and the machine's own ssh configuration is left alone
    for path in ("/etc/ssh/ssh_known_hosts", os.path.expanduser("~/.ssh/known_hosts")):
        if os.path.exists(path):
            with open(path) as f:
                assert "10.78." not in f.read()


def test_routing_between_subnets_goes_only_to_the_host(netns_vms, vm_ansible):
    """A VM reaches its own subnet's .1 and the host's .1 on the other subnet (a local
    address of the host, no forwarding), but not the VM on the other subnet: the host
    forwards nothing between its bridges (nor anywhere else)."""
    def ping(host, target):
        r = vm_ansible(host, "ansible.builtin.command", "ping -c1 -W1 %s" % target, check=False)[host]
        return r.get("rc") == 0
    assert ping(A, "10.78.0.1")
    assert ping(A, "10.78.1.1")
    assert ping(B, "10.78.0.1")
    assert not ping(A, "10.78.1.2")
    assert not ping(B, "10.78.0.2")
    # the bridges never forward, whatever the machine-wide switch says
    for subnet in ("10.78.0.0/24", "10.78.1.0/24"):
        br = netns.bridge_name(netns.parse_subnet(subnet))
        with open("/proc/sys/net/ipv4/conf/%s/forwarding" % br) as f:
            assert f.read().strip() == "0"


# --- reboot ------------------------------------------------------------------------------

def test_reboot_kills_everything_and_boots_sshd_and_enabled_services(netns_vms, vm_ansible):
    vm_ansible(A, "ansible.builtin.copy", dict(content=DEMO_INIT, dest="/etc/init.d/mfdemo", mode="0755"))
    vm_ansible(A, "ansible.builtin.copy", dict(content="hello\n", dest="/srv/index.html", mode="0644"))
    started = vm_ansible(A, "ansible.builtin.service", "name=mfdemo state=started enabled=true")[A]
    assert started["changed"]
    assert shell(vm_ansible, A, "ls /etc/rc2.d").split().count("S01mfdemo") == 1
    deadline = time.monotonic() + 10
    while not http_ok("10.78.0.2") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert http_ok("10.78.0.2")
    # a process that is not a service: must not survive
    shell(vm_ansible, A, "nohup sleep 3600 >/dev/null 2>&1 &")
    ns = netns.netns_name(A)
    before = set(netns.netns_pids(ns))
    init_before = netns.find_init(ns)
    assert init_before in before and len(before) >= 4

    t0 = time.monotonic()
    netns.reboot(netns_vms.state_dir, A)
    took = time.monotonic() - t0

    after = set(netns.netns_pids(ns))
    assert not before & after, "processes survived the reboot"
    assert netns.find_init(ns) not in (None, init_before)
    with open(os.path.join(netns_vms.state_dir, "vms", A, "init.pid")) as f:
        assert int(f.read()) == netns.find_init(ns)
    assert vm_ansible(A, "ansible.builtin.ping")[A]["ping"] == "pong"
    deadline = time.monotonic() + 10
    while not http_ok("10.78.0.2") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert http_ok("10.78.0.2"), "the enabled rc2.d service did not come back"
    assert vm_ansible(A, "ansible.builtin.service", "name=mfdemo state=started")[A]["changed"] is False
    assert "sleep 3600" not in shell(vm_ansible, A, "ps -e -o args=")
    # the other VM was not touched
    assert vm_ansible(B, "ansible.builtin.ping")[B]["ping"] == "pong"
    print("reboot took %.2fs" % took)


# --- the module: check mode, idempotence, same-subnet VMs, delete ------------------------

def run_module(netns_vms, state, names, check=False, group="vmt-c", subnet="10.78.2.0/24"):
    module_args = dict(
        group=group, mesh=MESH, provider="netns", state=state, wait_timeout=120,
        settings=dict(subnet=subnet, hosts=names, state_dir=netns_vms.state_dir,
                      rootfs_cache=netns_vms.rootfs))
    save = {"content": "{{ r | to_json }}", "mode": "0600",
            "dest": os.path.join(netns_vms.state_dir, "result.json")}
    tasks = [{"name": "vm_instance", "register": "r", "meshfleet.mesh.vm_instance": module_args},
             {"name": "result", "check_mode": False, "ansible.builtin.copy": save}]
    play = [dict(name="netns VMs", hosts="localhost", gather_facts=False, tasks=tasks,
                 vars=dict(ansible_python_interpreter="{{ ansible_playbook_python }}"))]
    path = os.path.join(netns_vms.state_dir, "play.json")
    with open(path, "w") as f:
        json.dump(play, f)
    cmd = [tool("ansible-playbook"), "-i", "localhost,", "-c", "local", path]
    if check:
        cmd.append("--check")
    env = ansible_env(netns_vms.state_dir)
    proc = subprocess.run(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout
    with open(os.path.join(netns_vms.state_dir, "result.json")) as f:
        return json.load(f)


def leftovers(names, subnet="10.78.2.0/24"):
    out = []
    for name in names:
        ns = netns.netns_name(name)
        if netns.netns_exists(ns) or netns.netns_pids(ns):
            out.append(ns)
        if os.path.exists("/sys/class/net/%s" % netns.veth_name(name)):
            out.append(netns.veth_name(name))
    br = netns.bridge_name(netns.parse_subnet(subnet))
    if os.path.exists("/sys/class/net/%s" % br):
        out.append(br)
    ps = subprocess.run(["ps", "-e", "-o", "args="], stdout=subprocess.PIPE, universal_newlines=True,
                        check=True).stdout
    out.extend(line for line in ps.splitlines() if "vms/%s/rootfs" % names[0] in line)
    return out


def test_module_check_mode_idempotence_and_delete(netns_vms):
    names = ["mft-c1", "mft-c2"]
    vmdir = os.path.join(netns_vms.state_dir, "vms")
    try:
        planned = run_module(netns_vms, "present", names, check=True)
        assert planned["changed"] and planned["created"] == names
        assert [i["status"] for i in planned["instances"]] == ["planned", "planned"]
        assert leftovers(names) == [] and not os.path.exists(os.path.join(vmdir, "mft-c1"))

        t0 = time.monotonic()
        made = run_module(netns_vms, "present", names)
        took = time.monotonic() - t0
        assert made["changed"] and made["created"] == names
        got = dict((i["name"], i) for i in made["instances"])
        assert got["mft-c1"]["ansible_host"] == "10.78.2.2" and got["mft-c2"]["ansible_host"] == "10.78.2.3"
        assert got["mft-c1"]["ansible_user"] == "root"
        assert got["mft-c1"]["ansible_ssh_common_args"] == (
            "-o StrictHostKeyChecking=yes -o UserKnownHostsFile=%s/known_hosts" % vmdir)
        assert all(i["status"] == "running" for i in made["instances"])

        again = run_module(netns_vms, "present", names)
        assert again["changed"] is False and again["created"] == []
        assert run_module(netns_vms, "present", names, check=True)["changed"] is False

        # two VMs on one subnet reach each other through the bridge
        inv = os.path.join(netns_vms.state_dir, "inv-c.json")
        with open(inv, "w") as f:
            json.dump({"all": {"hosts": dict((n, dict((k, v) for k, v in got[n].items()
                                                      if k.startswith("ansible_"))) for n in names)}}, f)
        proc = subprocess.run([tool("ansible"), "mft-c1", "-i", inv, "-m", "ansible.builtin.command",
                               "-a", "ping -c1 -W2 10.78.2.3"], env=netns_vms.env(), cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stdout

        # a changed subnet is refused, naming the field
        play_fail = None
        try:
            run_module(netns_vms, "present", names, subnet="10.78.3.0/24")
        except AssertionError as e:
            play_fail = str(e)
        assert play_fail and "cannot change fields of existing VM mft-c1 in place" in play_fail \
            and "subnet" in play_fail

        print("module create of 2 VMs took %.1fs" % took)
    finally:
        gone = run_module(netns_vms, "absent", names)
    assert gone["changed"] and sorted(gone["removed"]) == names
    assert leftovers(names) == []
    assert not os.path.exists(os.path.join(vmdir, "mft-c1")) and not os.path.exists(
        os.path.join(vmdir, "mft-c2"))
    with open(os.path.join(vmdir, "known_hosts")) as f:
        assert "10.78.2." not in f.read()
    assert run_module(netns_vms, "absent", names)["changed"] is False


def test_stopped_vm_is_booted_again_by_present(netns_vms):
    """After a host reboot (processes and netns gone, disk kept), state=present boots it."""
    names = ["mft-d1"]
    subnet = "10.78.4.0/24"
    try:
        run_module(netns_vms, "present", names, group="vmt-d", subnet=subnet)
        vm = netns.NetnsVm(netns_vms.state_dir, "mft-d1")
        with open(os.path.join(vm.rootfs, "etc", "kept"), "w") as f:
            f.write("disk survives\n")
        vm.stop()
        subprocess.run(["ip", "netns", "del", vm.ns], check=True)
        info = netns.list_vms(netns_vms.state_dir)
        assert [v["status"] for v in info if v["name"] == "mft-d1"] == ["stopped"]
        back = run_module(netns_vms, "present", names, group="vmt-d", subnet=subnet)
        assert back["changed"] and back["created"] == ["mft-d1"]
        assert netns.ssh_banner("10.78.4.2")
        assert os.path.exists(os.path.join(vm.rootfs, "etc", "kept"))
    finally:
        run_module(netns_vms, "absent", names, group="vmt-d", subnet=subnet)
    assert leftovers(names, subnet=subnet) == []


# --- pinned host keys -------------------------------------------------------------------------

PRE_CHECK = {"name": "host key",
             "ansible.builtin.include_role": {"name": "meshfleet.mesh.vm_sidecar", "tasks_from": "host_key"}}
HOST_KEY_PLAY = [dict(name="pre-check, then a real connection", hosts="all", gather_facts=False,
                      tasks=[PRE_CHECK, {"name": "ping", "ansible.builtin.ping": {}}])]


def play_on(netns_vms, inventory, play, tag):
    """ansible-playbook over ``inventory`` with a fresh ssh control dir (no master
    connection from an earlier run can hide a key change); a helpers.PlaybookRun."""
    import helpers
    path = os.path.join(netns_vms.state_dir, "play-%s.json" % tag)
    with open(path, "w") as f:
        json.dump(play, f)
    env = dict(netns_vms.env(), ANSIBLE_SSH_CONTROL_PATH_DIR=os.path.join(netns_vms.state_dir, "cp-" + tag))
    env.pop("ANSIBLE_HOST_KEY_CHECKING", None)
    t0 = time.monotonic()
    proc = subprocess.run([tool("ansible-playbook"), "-i", inventory, path], env=env, cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          timeout=300, check=False)
    return helpers.PlaybookRun([path], proc.returncode, proc.stdout, time.monotonic() - t0)


def test_changed_host_key_is_refused(netns_vms, tmp_path):
    """A VM whose host key changed is refused: by the VM plays' pre-check
    (meshfleet.mesh.vm_host_key) with a message naming the VM, its address and the file, and
    by ssh itself (ansible.cfg no longer turns host key checking off). The same for a VM
    reached the way `existing`/cloud VMs are (accept-new: pinned on first contact)."""
    names, subnet = ["mft-e1"], "10.78.5.0/24"
    vm_kh = os.path.join(netns_vms.state_dir, "vms", "known_hosts")
    other_state = str(tmp_path / "existing-state")
    other_kh = os.path.join(other_state, "vms", "known_hosts")
    try:
        made = run_module(netns_vms, "present", names, group="vmt-e", subnet=subnet)
        hv = dict((k, v) for k, v in made["instances"][0].items() if k.startswith("ansible_"))
        assert hv["ansible_ssh_common_args"] == netns.ssh_common_args(netns_vms.state_dir, strict=True)
        # the same VM, addressed as an `existing` VM of another mesh: accept-new, own known_hosts
        existing = dict(hv, ansible_ssh_common_args=netns.ssh_common_args(other_state, strict=False))
        inv = os.path.join(netns_vms.state_dir, "inv-e.json")
        with open(inv, "w") as f:
            json.dump({"all": {"hosts": {"mft-e1": hv, "mft-e1-existing": existing}}}, f)

        first = play_on(netns_vms, inv, HOST_KEY_PLAY, "e1")
        assert first.rc == 0, first.failures() or first.tail(40)
        assert first.recap["mft-e1"]["failed"] == 0 and first.recap["mft-e1-existing"]["failed"] == 0
        # first contact pinned the `existing` VM's key (changed), the netns one was pinned already
        changed = first.changed_tasks()
        assert len(changed) == 1 and changed[0].endswith(
            "VM sidecar | The VM's SSH host key is the pinned one: mft-e1-existing -> localhost"), changed
        with open(vm_kh) as f:
            pinned = [line for line in f.read().splitlines() if line.startswith("10.78.5.2 ")]
        with open(other_kh) as f:
            assert f.read().splitlines() == pinned
        assert oct(os.stat(other_kh).st_mode & 0o777) == "0o600"
        again = play_on(netns_vms, inv, HOST_KEY_PLAY, "e2")
        assert again.rc == 0 and again.changed_tasks() == [], again.failures() or again.tail(40)

        # the VM is rebuilt: a new host key in its rootfs, sshd restarted (a reboot)
        key = os.path.join(netns_vms.state_dir, "vms", "mft-e1", "rootfs", "etc", "ssh", "ssh_host_ed25519_key")
        for path in (key, key + ".pub"):
            os.unlink(path)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        netns.reboot(netns_vms.state_dir, "mft-e1")
        with open(vm_kh) as f:
            before = f.read()

        refused = play_on(netns_vms, inv, HOST_KEY_PLAY, "e3")
        assert refused.rc != 0
        text = refused.failures()
        for host, kh, name in (("mft-e1", vm_kh, "10.78.5.2"), ("mft-e1-existing", other_kh, "10.78.5.2")):
            assert refused.recap[host]["failed"] == 1, refused.recap  # (ok=1: the include)
            assert ("VM %s (%s): host key does not match the pinned key in %s" % (host, name, kh)) in text, text
            assert "if the VM was rebuilt, remove its line (ssh-keygen -R '%s' -f %s) and re-run" % (name, kh) in text
        assert "TASK [ping]" not in refused.output  # no host got past the pre-check

        # without the pre-check ssh itself refuses (no StrictHostKeyChecking=no from ansible.cfg)
        bare = play_on(netns_vms, inv, [dict(HOST_KEY_PLAY[0], tasks=HOST_KEY_PLAY[0]["tasks"][1:])], "e4")
        assert bare.rc != 0 and bare.recap["mft-e1"]["unreachable"] == 1 \
            and bare.recap["mft-e1-existing"]["unreachable"] == 1, bare.tail(40)
        assert "Host key verification failed" in bare.output or \
            "REMOTE HOST IDENTIFICATION HAS CHANGED" in bare.output, bare.tail(40)
        # and nothing was trusted or written over
        with open(vm_kh) as f:
            assert f.read() == before
        with open(other_kh) as f:
            assert f.read().splitlines() == pinned
    finally:
        run_module(netns_vms, "absent", names, group="vmt-e", subnet=subnet)
    with open(vm_kh) as f:
        assert "10.78.5." not in f.read()


def test_support_problem_is_none_here():
    """Documents why the vm tests may skip elsewhere."""
    assert vm_support_problem() is None
