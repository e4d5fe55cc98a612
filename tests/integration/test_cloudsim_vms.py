# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cloudsim ``--vms`` alone (no kwok clusters): fake cloud instances that are machines.

The sim runs in this process; EC2 is driven through boto3 against its moto server, OpenStack
through openstacksdk against its HTTPS server. Needs root (netns VMs) and the cached rootfs.
Checks what tests/fakes/cloudsim/vms.py promises: the key pair refusals, the instance at its
reported address reachable over SSH as the image's default user (sudo, root refused), the
unreachable route of the sim's range, and that deleting instances, then stopping the sim,
leaves no netns, veth, bridge, route or process.
"""

from __future__ import absolute_import, division, print_function

import ipaddress
import os
import subprocess

import pytest

from conftest_vms import ensure_rootfs, vm_support_problem

from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers import netns
from ansible_collections.meshfleet.mesh.tests.fakes.cloudsim import vms as sim_vms
from ansible_collections.meshfleet.mesh.tests.fakes.cloudsim.sim import CloudSim

pytestmark = pytest.mark.vm


def ssh(key, user, address, cmd):
    return subprocess.run(
        ["ssh", "-i", key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "%s@%s" % (user, address), cmd],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60, check=False)


@pytest.fixture
def sim(tmp_path, monkeypatch):
    problem = vm_support_problem()
    if problem:
        pytest.skip(problem)
    for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(k, raising=False)
    s = CloudSim(str(tmp_path / "sim"), with_kube=False, with_vms=True, vm_rootfs=ensure_rootfs()).start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", s.pki["ca"])
    rng = str(s.vms.range)
    try:
        yield s
    finally:
        s.stop()
        assert not [ns for ns in os.listdir("/run/netns") if ns.startswith("mf-" + s.vms.prefix)] \
            if os.path.isdir("/run/netns") else True
        routes = subprocess.run(["ip", "-o", "route", "show", "table", "all"], stdout=subprocess.PIPE,
                                universal_newlines=True, check=True).stdout
        assert rng not in routes, routes


def test_instances_are_vms_at_their_addresses(sim, tmp_path, monkeypatch):
    key = str(tmp_path / "id")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    with open(key + ".pub") as f:
        public = f.read()
    rng = sim.vms.range
    # an address of the range on no VM's bridge is refused here, never routed out
    assert sim_vms.route_device(str(rng.network_address + 0xfffe)) is None

    # --- EC2 -------------------------------------------------------------------------------
    ec2 = sim.boto("ec2")
    import botocore.exceptions
    run = dict(ImageId=sim.aws["ami"], MinCount=1, MaxCount=1, InstanceType="t3.large",
               SubnetId=sim.aws["subnet_ids"][0])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.run_instances(KeyName="nobody", **run)
    assert e.value.response["Error"]["Code"] == "InvalidKeyPair.NotFound"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.run_instances(**dict(run, ImageId="ami-00000000000000000"))
    assert e.value.response["Error"]["Code"] == "InvalidAMIID.NotFound"
    ec2.import_key_pair(KeyName="deploy", PublicKeyMaterial=public.encode())
    inst = ec2.run_instances(KeyName="deploy", **run)["Instances"][0]
    assert inst["State"]["Name"] == "pending" and not inst.get("PublicIpAddress")
    ec2.get_waiter("instance_running").wait(InstanceIds=[inst["InstanceId"]],
                                            WaiterConfig=dict(Delay=0.5, MaxAttempts=240))
    address = inst["PrivateIpAddress"]
    assert ipaddress.ip_address(address) in rng
    assert sim_vms.route_device(address).startswith("mfbr-")
    r = ssh(key, "ec2-user", address, "id -un; sudo -n id -u; cat /etc/hostname")
    assert r.returncode == 0, r.stderr
    user, uid, hostname = r.stdout.split()
    assert (user, uid) == ("ec2-user", "0") and hostname == sim.vms.vm_name(inst["InstanceId"])
    r = ssh(key, "root", address, "id -u")
    assert r.returncode != 0 and 'Please login as the user "ec2-user"' in r.stdout
    ns = netns.netns_name(sim.vms.vm_name(inst["InstanceId"]))
    assert netns.find_init(ns)

    # --- OpenStack ---------------------------------------------------------------------------
    import openstack
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", sim.clouds_yaml())
    conn = openstack.connect(cloud="onprem")
    conn.compute.create_keypair(name="deploy", public_key=public)
    server = conn.compute.create_server(
        name="billing-1", image_id=conn.image.find_image("ubuntu-24.04").id,
        flavor_id=conn.compute.find_flavor("m1.medium").id, key_name="deploy",
        networks=[{"uuid": conn.network.find_network("billing-net").id}])
    server = conn.compute.wait_for_server(server, wait=120, interval=0.5)
    fixed = [a["addr"] for addrs in server.addresses.values() for a in addrs]
    assert len(fixed) == 1 and ipaddress.ip_address(fixed[0]) in rng
    r = ssh(key, "ubuntu", fixed[0], "sudo -n id -u")
    assert r.returncode == 0 and r.stdout.strip() == "0", r.stderr
    os_ns = netns.netns_name(sim.vms.vm_name(server.id[:13]))
    assert netns.find_init(os_ns)

    # --- delete: the VMs go with the instances ------------------------------------------------
    ec2.terminate_instances(InstanceIds=[inst["InstanceId"]])
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=60, interval=0.5)
    for name in (ns, os_ns):
        assert not netns.netns_exists(name) and not netns.netns_pids(name)
    assert not [d for d in os.listdir("/sys/class/net") if d.startswith("mfv-" + sim.vms.prefix)]
    assert sim.vms.describe() == {}
