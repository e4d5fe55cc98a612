# -*- coding: utf-8 -*-
"""meshfleet.mesh.vm_instance / vm_instance_info on EC2 and OpenStack.

EC2: moto in server mode on 127.0.0.1 (free port), real boto3 clients with
``settings.endpoint_url`` and fake credentials from the environment.

OpenStack has no emulator here: the real openstacksdk (keystoneauth, discovery,
nova/neutron/glance proxies) runs over requests-mock, which routes every request to
a small stateful fake of keystone v3, nova, neutron and glance
(tests/fakes/openstack_http.py) answering with the real API shapes; clouds.yaml
points at the fake keystone.

All tests call the real module ``main()`` with ``patch_module_args``.
"""

from __future__ import absolute_import, division, print_function

import os
import sys

_COLLECTIONS = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "..",
                                            "collections"))
if _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)

import boto3  # noqa: E402
import pytest  # noqa: E402

from ansible_collections.meshfleet.mesh.plugins.modules import vm_instance, vm_instance_info  # noqa: E402
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers import ec2 as ec2_provider  # noqa: E402
from ansible_collections.meshfleet.mesh.tests.fakes.aws import (  # noqa: E402,F401 pylint: disable=unused-import
    aws_env, moto_endpoint, no_aws_credentials)
from ansible_collections.meshfleet.mesh.tests.fakes.modrun import run_module  # noqa: E402

# openstacksdk warns about its own internals (find_* ignore_missing, service_type...)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


# --- EC2 (moto server) -----------------------------------------------------------------
@pytest.fixture
def ec2_settings(aws_env, monkeypatch):
    monkeypatch.setattr(ec2_provider.Ec2VmProvider, "waiter_delay", 0.2)
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=aws_env)
    vpc = ec2.create_vpc(CidrBlock="10.10.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.10.1.0/24")["Subnet"]["SubnetId"]
    ami = "ami-0a1b2c3d4e5f60718"  # moto does not validate AMI ids by default
    return dict(region="us-east-1", ami=ami, instance_type="t3.small", subnet_id=subnet,
                endpoint_url=aws_env, count=2, tags={"team": "mesh"})


class Ec2Calls:
    def __init__(self, monkeypatch):
        self.calls = []
        real = ec2_provider.aws_client

        def client(session, service, endpoint_url=None):
            c = real(session, service, endpoint_url)
            c.meta.events.register("before-call", lambda model, **kw: self.calls.append(model.name))
            return c
        monkeypatch.setattr(ec2_provider, "aws_client", client)

    @property
    def writes(self):
        return [c for c in self.calls if not c.startswith("Describe")]


def ec2_run(settings, main=vm_instance.main, **kw):
    args = dict(group="web", mesh="mesh1", provider="ec2", settings=settings, ports=[8080])
    if main is vm_instance.main:
        args["wait_timeout"] = 30
    args.update(kw.pop("args", {}))
    return run_module(main, args, **kw)


def test_ec2_lifecycle(ec2_settings, aws_env, monkeypatch):
    calls = Ec2Calls(monkeypatch)
    r = ec2_run(ec2_settings, check_mode=True)
    assert r["rc"] == 0 and r["changed"] is True and r["created"] == ["web-1", "web-2"]
    assert calls.writes == []

    r = ec2_run(ec2_settings)
    assert r["rc"] == 0 and r["changed"] is True, r
    assert [i["name"] for i in r["instances"]] == ["web-1", "web-2"]
    for inst in r["instances"]:
        assert inst["id"].startswith("i-") and inst["status"] == "running"
        assert inst["address"] and inst["private_ip"].startswith("10.10.1.")
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=aws_env)
    desc = ec2.describe_instances(InstanceIds=[r["instances"][0]["id"]])["Reservations"][0]["Instances"][0]
    tags = {t["Key"]: t["Value"] for t in desc["Tags"]}
    assert tags == {"Name": "web-1", "meshfleet:mesh": "mesh1", "meshfleet:group": "web", "team": "mesh"}
    sg = ec2.describe_security_groups(GroupIds=[desc["SecurityGroups"][0]["GroupId"]])["SecurityGroups"][0]
    assert sg["GroupName"] == "meshfleet-mesh1-web"
    # no ssh_cidrs / mesh_cidrs: the VPC's own range only, never 0.0.0.0/0
    assert ec2_ingress(ec2, sg["GroupId"]) == {(p, "10.10.0.0/16") for p in (22, 8080, 15012, 15017, 15021, 15443)}

    # idempotent
    del calls.calls[:]
    r = ec2_run(ec2_settings)
    assert r["rc"] == 0 and r["changed"] is False and calls.writes == [], r

    # info
    r = ec2_run(ec2_settings, main=vm_instance_info.main)
    assert r["rc"] == 0, r
    assert [i["name"] for i in r["instances"]] == ["web-1", "web-2"] and r["changed"] is False

    # a new app port is opened in the module's security group (check mode first)
    r = ec2_run(ec2_settings, args=dict(ports=[8080, 9090]), check_mode=True)
    assert r["changed"] is True and r["actions"] == ["open tcp port 9090 from 10.10.0.0/16 in meshfleet-mesh1-web"], r
    assert calls.writes == []
    r = ec2_run(ec2_settings, args=dict(ports=[8080, 9090]))
    assert r["changed"] is True and calls.writes == ["AuthorizeSecurityGroupIngress"], calls.writes
    assert ec2_run(ec2_settings, args=dict(ports=[8080, 9090]))["changed"] is False

    # scale down (mutable: count)
    r = ec2_run(dict(ec2_settings, count=1))
    assert r["rc"] == 0 and r["changed"] is True and r["removed"] == ["web-2"], r
    assert [i["name"] for i in r["instances"]] == ["web-1"]

    # immutable: instance type
    del calls.calls[:]
    r = ec2_run(dict(ec2_settings, count=1, instance_type="m5.large"))
    assert r["rc"] == 1 and "instance_type" in r["msg"] and "web-1" in r["msg"], r
    assert calls.writes == []

    # absent: check mode, real, again
    r = ec2_run(ec2_settings, args=dict(state="absent"), check_mode=True)
    assert r["changed"] is True and calls.writes == []
    r = ec2_run(ec2_settings, args=dict(state="absent"))
    assert r["rc"] == 0 and r["changed"] is True and r["removed"] == ["web-1"], r
    assert "TerminateInstances" in calls.writes and "DeleteSecurityGroup" in calls.writes
    r = ec2_run(ec2_settings, args=dict(state="absent"))
    assert r["rc"] == 0 and r["changed"] is False


def ec2_ingress(ec2, sg_id):
    """{(port, source CIDR)} of every ingress rule of a security group (as EC2 reports it)."""
    sg = ec2.describe_security_groups(GroupIds=[sg_id])["SecurityGroups"][0]
    out = set()
    for perm in sg["IpPermissions"]:
        assert perm["IpProtocol"] == "tcp" and perm["FromPort"] == perm["ToPort"], perm
        assert not perm.get("UserIdGroupPairs"), perm
        out.update((perm["FromPort"], r["CidrIp"]) for r in perm.get("IpRanges") or [])
        out.update((perm["FromPort"], r["CidrIpv6"]) for r in perm.get("Ipv6Ranges") or [])
    return out


def ec2_group(ec2, name="meshfleet-mesh1-web"):
    return ec2.describe_security_groups(Filters=[dict(Name="group-name", Values=[name])])["SecurityGroups"][0]["GroupId"]


def test_ec2_security_group_admits_the_configured_cidrs_only(ec2_settings, aws_env, monkeypatch):
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=aws_env)
    s = dict(ec2_settings, count=1, ssh_cidrs=["203.0.113.7/32"], mesh_cidrs=["10.10.0.0/16", "2001:db8::/32"])
    r = ec2_run(s)
    assert r["rc"] == 0, r
    mesh = {8080, 15012, 15017, 15021, 15443}
    assert ec2_ingress(ec2, ec2_group(ec2)) == (
        {(22, "203.0.113.7/32")} | {(p, "10.10.0.0/16") for p in mesh} | {(p, "2001:db8::/32") for p in mesh})
    assert ec2_run(s)["changed"] is False

    # a changed source: the old one is revoked, the new one authorized (check mode first)
    calls = Ec2Calls(monkeypatch)
    s2 = dict(s, ssh_cidrs=["198.51.100.0/24"])
    r = ec2_run(s2, check_mode=True)
    assert r["changed"] is True and r["actions"] == [
        "open tcp port 22 from 198.51.100.0/24 in meshfleet-mesh1-web",
        "close tcp port 22 to 203.0.113.7/32 in meshfleet-mesh1-web"], r
    assert calls.writes == []
    r = ec2_run(s2)
    assert r["rc"] == 0 and sorted(calls.writes) == ["AuthorizeSecurityGroupIngress", "RevokeSecurityGroupIngress"]
    assert (22, "198.51.100.0/24") in ec2_ingress(ec2, ec2_group(ec2))
    assert (22, "203.0.113.7/32") not in ec2_ingress(ec2, ec2_group(ec2))

    # 0.0.0.0/0 only when written; an empty list opens nothing for those ports
    r = ec2_run(dict(s2, ssh_cidrs=["0.0.0.0/0"], mesh_cidrs=[]))
    assert r["rc"] == 0, r
    assert ec2_ingress(ec2, ec2_group(ec2)) == {(22, "0.0.0.0/0")}


def test_ec2_world_open_rules_of_an_older_version_are_closed(ec2_settings, aws_env):
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=aws_env)
    r = ec2_run(dict(ec2_settings, count=1))
    assert r["rc"] == 0, r
    sg = ec2_group(ec2)
    # what the module used to make: every port open to the internet
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[
        dict(IpProtocol="tcp", FromPort=p, ToPort=p, IpRanges=[dict(CidrIp="0.0.0.0/0")]) for p in (22, 15443)])
    r = ec2_run(dict(ec2_settings, count=1))
    assert r["changed"] is True and r["actions"] == ["close tcp ports 22, 15443 to 0.0.0.0/0 in meshfleet-mesh1-web"], r
    assert all(cidr == "10.10.0.0/16" for _p, cidr in ec2_ingress(ec2, sg))


@pytest.mark.parametrize("cidrs,problem", [
    ("10.0.0.0/8", "settings.ssh_cidrs must be a list of CIDRs"),
    (["10.0.0.1/8"], "settings.ssh_cidrs[0] '10.0.0.1/8' has host bits set; the network is 10.0.0.0/8"),
    (["10.0.0.1"], "settings.ssh_cidrs[0] must be a network in CIDR notation"),
    (["anywhere/0"], "settings.ssh_cidrs[0] 'anywhere/0' is not a network in CIDR notation")])
def test_ec2_bad_cidrs_are_refused_before_any_call(ec2_settings, aws_env, monkeypatch, cidrs, problem):
    calls = Ec2Calls(monkeypatch)
    r = ec2_run(dict(ec2_settings, ssh_cidrs=cidrs))
    assert r["rc"] == 1 and problem in r["msg"], r
    assert calls.calls == []


def test_ec2_given_security_groups(ec2_settings, aws_env):
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=aws_env)
    vpc = ec2.describe_subnets(SubnetIds=[ec2_settings["subnet_id"]])["Subnets"][0]["VpcId"]
    sg = ec2.create_security_group(GroupName="mine", Description="mine", VpcId=vpc)["GroupId"]
    r = ec2_run(dict(ec2_settings, count=1, security_group_ids=[sg], key_name=None))
    assert r["rc"] == 0, r
    assert r["instances"][0]["settings"]["security_group_ids"] == [sg]
    names = [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]]
    assert "meshfleet-mesh1-web" not in names


def test_ec2_missing_credentials(monkeypatch, tmp_path, moto_endpoint):
    no_aws_credentials(monkeypatch, tmp_path)
    r = ec2_run(dict(region="us-east-1", ami="ami-1", instance_type="t3.small", subnet_id="subnet-1",
                     endpoint_url=moto_endpoint))
    assert r["rc"] == 1 and "AWS_ACCESS_KEY_ID" in r["msg"] and "AWS_PROFILE" in r["msg"]


def test_ec2_missing_settings(aws_env):
    r = ec2_run(dict(region="us-east-1"))
    assert r["rc"] == 1 and "ami, instance_type, subnet_id" in r["msg"]


# --- OpenStack (real openstacksdk over requests-mock) ------------------------------------
import requests_mock  # noqa: E402

from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers import (  # noqa: E402
    openstack as os_provider)
from ansible_collections.meshfleet.mesh.tests.fakes.openstack_http import (  # noqa: E402
    NEUTRON, NOVA, FakeOpenStack, clouds_yaml)


DEPLOY_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl deploy"


@pytest.fixture
def cloud(monkeypatch, tmp_path):
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", clouds_yaml(tmp_path / "clouds.yaml"))
    for name in ("OS_CLOUD", "OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os_provider.OpenStackVmProvider, "poll_interval", 0.01)
    fake = FakeOpenStack()
    # the user imported the key pair the settings name (nova refuses an unknown key_name)
    fake.add_keypair("deploy", DEPLOY_KEY)
    with requests_mock.Mocker() as m:
        fake.install(m)
        yield fake


def os_settings(**over):
    s = dict(cloud="fakecloud", image="ubuntu-24.04", flavor="m1.small", network="private",
             key_name="deploy", security_group="mesh-web", floating_ip=True, count=2)
    s.update(over)
    return s


def os_run(settings, main=vm_instance.main, **kw):
    args = dict(group="web", mesh="mesh1", provider="openstack", settings=settings, ports=[8080])
    if main is vm_instance.main:
        args["wait_timeout"] = 30
    args.update(kw.pop("args", {}))
    return run_module(main, args, **kw)


def test_openstack_lifecycle(cloud):
    r = os_run(os_settings(), check_mode=True)
    assert r["rc"] == 0 and r["changed"] is True and r["created"] == ["web-1", "web-2"], r
    assert cloud.writes == []

    r = os_run(os_settings())
    assert r["rc"] == 0 and r["changed"] is True, r
    assert [i["name"] for i in r["instances"]] == ["web-1", "web-2"]
    for inst in r["instances"]:
        assert inst["status"] == "ACTIVE"
        assert inst["private_ip"].startswith("10.0.0.") and inst["public_ip"].startswith("172.24.4.")
        assert inst["address"] == inst["public_ip"]
    servers = list(cloud.servers.values())
    assert {s["metadata"]["meshfleet:group"] for s in servers} == {"web"}
    assert {s["metadata"]["meshfleet:mesh"] for s in servers} == {"mesh1"}
    assert {s["key_name"] for s in servers} == {"deploy"}
    # no ssh_cidrs / mesh_cidrs: the network's subnet only, never 0.0.0.0/0
    assert os_ingress(cloud) == {(p, "10.0.0.0/24", "IPv4") for p in (22, 8080, 15012, 15017, 15021, 15443)}
    assert len(cloud.fips) == 2

    # idempotent: reads only
    n = len(cloud.writes)
    r = os_run(os_settings())
    assert r["rc"] == 0 and r["changed"] is False, r
    assert len(cloud.writes) == n

    # info
    r = os_run(os_settings(), main=vm_instance_info.main)
    assert r["rc"] == 0 and [i["name"] for i in r["instances"]] == ["web-1", "web-2"]

    # scale (mutable: count) down to 1
    r = os_run(os_settings(count=1))
    assert r["rc"] == 0 and r["changed"] is True and r["removed"] == ["web-2"], r
    assert len(cloud.servers) == 1 and len(cloud.fips) == 1

    # immutable: flavor
    n = len(cloud.writes)
    r = os_run(os_settings(count=1, flavor="m1.large"))
    assert r["rc"] == 1 and "flavor" in r["msg"] and "web-1" in r["msg"], r
    assert r["immutable_fields"] == ["flavor"]
    assert len(cloud.writes) == n

    # absent: check mode, real, again
    r = os_run(os_settings(), args=dict(state="absent"), check_mode=True)
    assert r["changed"] is True and len(cloud.writes) == n
    r = os_run(os_settings(), args=dict(state="absent"))
    assert r["rc"] == 0 and r["changed"] is True and r["removed"] == ["web-1"], r
    assert not cloud.servers and not cloud.fips
    assert not cloud.security_groups  # the group the module created is gone too
    r = os_run(os_settings(), args=dict(state="absent"))
    assert r["rc"] == 0 and r["changed"] is False


def os_ingress(cloud, name="mesh-web"):
    """{(port, remote_ip_prefix, ethertype)} of the group's rules, as neutron holds them."""
    sg = [g for g in cloud.security_groups.values() if g["name"] == name][0]
    rules = [r for r in cloud.rules.values() if r["security_group_id"] == sg["id"]]
    assert all(r["direction"] == "ingress" and r["protocol"] == "tcp" and
               r["port_range_min"] == r["port_range_max"] for r in rules), rules
    return {(r["port_range_min"], r["remote_ip_prefix"], r["ethertype"]) for r in rules}


def test_openstack_security_group_admits_the_configured_cidrs_only(cloud):
    s = os_settings(count=1, floating_ip=False, ssh_cidrs=["203.0.113.7/32"],
                    mesh_cidrs=["10.0.0.0/24", "2001:db8::/32"])
    r = os_run(s)
    assert r["rc"] == 0, r
    mesh = {8080, 15012, 15017, 15021, 15443}
    assert os_ingress(cloud) == ({(22, "203.0.113.7/32", "IPv4")} | {(p, "10.0.0.0/24", "IPv4") for p in mesh}
                                 | {(p, "2001:db8::/32", "IPv6") for p in mesh})
    assert os_run(s)["changed"] is False
    # a changed source in the group Meshfleet made: old rule removed, new one added
    r = os_run(dict(s, ssh_cidrs=["0.0.0.0/0"]), check_mode=True)
    assert r["actions"] == ["open tcp port 22 from 0.0.0.0/0 in mesh-web",
                            "close tcp port 22 to 203.0.113.7/32 in mesh-web"], r
    r = os_run(dict(s, ssh_cidrs=["0.0.0.0/0"]))
    assert r["rc"] == 0, r
    assert {x for x in os_ingress(cloud) if x[0] == 22} == {(22, "0.0.0.0/0", "IPv4")}


def test_openstack_users_own_group_keeps_its_other_rules(cloud):
    # a group the user made (not Meshfleet's description): missing rules added, others left alone
    sg = cloud._neutron_create("security-groups", "security_group", dict(name="mesh-web", description="ops"))[1]
    cloud._neutron_create("security-group-rules", "security_group_rule", dict(
        security_group_id=sg["security_group"]["id"], direction="ingress", ethertype="IPv4", protocol="tcp",
        port_range_min=22, port_range_max=22, remote_ip_prefix="192.0.2.0/24"))
    r = os_run(os_settings(count=1, floating_ip=False, ssh_cidrs=["203.0.113.7/32"]))
    assert r["rc"] == 0, r
    assert {x for x in os_ingress(cloud) if x[0] == 22} == {(22, "192.0.2.0/24", "IPv4"), (22, "203.0.113.7/32", "IPv4")}
    assert not any(a.startswith("close") for a in r["actions"]), r


def test_openstack_fake_refuses_a_rule_whose_ethertype_does_not_match(cloud):
    sg = cloud._neutron_create("security-groups", "security_group", dict(name="x", description="x"))[1]
    status, body, _h = cloud._neutron_create("security-group-rules", "security_group_rule", dict(
        security_group_id=sg["security_group"]["id"], direction="ingress", ethertype="IPv4", protocol="tcp",
        port_range_min=22, port_range_max=22, remote_ip_prefix="::/0"))
    assert status == 400 and "Conflicting value ethertype IPv4 for CIDR ::/0" in body["NeutronError"]["message"]


def test_openstack_floating_ip_on_existing_server(cloud):
    r = os_run(os_settings(count=1, floating_ip=False))
    assert r["rc"] == 0 and r["instances"][0]["public_ip"] is None, r
    assert r["instances"][0]["address"] == r["instances"][0]["private_ip"]
    n = len(cloud.writes)
    r = os_run(os_settings(count=1, floating_ip=True), check_mode=True)
    assert r["changed"] is True and r["actions"] == ["attach a floating IP to web-1"] and len(cloud.writes) == n
    r = os_run(os_settings(count=1, floating_ip=True))
    assert r["rc"] == 0 and r["changed"] is True and r["instances"][0]["public_ip"].startswith("172.24.4."), r
    assert os_run(os_settings(count=1, floating_ip=True))["changed"] is False


def test_openstack_conflict_and_throttling(cloud):
    cloud.fail("GET", "/v2.1/servers/detail", 429, "Rate limit exceeded", headers={"Retry-After": "0"})
    cloud.fail("POST", "/v2.1/servers", 409,
               "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances")
    r = os_run(os_settings(count=1, floating_ip=False))
    assert r["rc"] == 1, r
    assert "409" in r["msg"] and "Quota exceeded" in r["msg"]
    assert ("POST", NOVA + "/v2.1/servers") in cloud.writes
    # the 429 was retried by keystoneauth (two GETs of the list)
    assert cloud.log.count(("GET", NOVA + "/v2.1/servers/detail")) >= 2


def test_openstack_unknown_image(cloud):
    r = os_run(os_settings(image="no-such-image"))
    assert r["rc"] == 1 and "image 'no-such-image' not found" in r["msg"], r
    assert [w for w in cloud.writes if not w[1].startswith(NEUTRON)] == []


def test_openstack_unknown_key_pair_is_refused_by_nova(cloud):
    # nova: 400 "Invalid key_name provided." (servers.py create(), KeypairNotFound); nothing made
    r = os_run(os_settings(key_name="nobody", count=1, floating_ip=False))
    assert r["rc"] == 1 and "Invalid key_name provided" in r["msg"] and "web-1" in r["msg"], r
    assert cloud.servers == {}


def test_openstack_fake_keypairs_like_nova(cloud):
    import requests
    s = requests.Session()
    s.headers["X-Auth-Token"] = "gAAAAA-fake-keystone-token"
    url = NOVA + "/v2.1/os-keypairs"
    assert s.get(url + "/nope").status_code == 404
    r = s.post(url, json={"keypair": {"name": "k1", "public_key": DEPLOY_KEY}})
    assert r.status_code == 200 and r.json()["keypair"]["fingerprint"].count(":") == 15
    assert s.post(url, json={"keypair": {"name": "k1", "public_key": DEPLOY_KEY}}).status_code == 409
    assert s.post(url, json={"keypair": {"name": "k2", "public_key": "not a key"}}).status_code == 400
    assert s.get(url + "/k1").json()["keypair"]["public_key"] == DEPLOY_KEY
    assert s.delete(url + "/k1").status_code == 202 and s.get(url + "/k1").status_code == 404


def test_openstack_missing_cloud(monkeypatch, tmp_path):
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "nothing.yaml"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("OS_CLOUD", "OS_AUTH_URL"):
        monkeypatch.delenv(name, raising=False)
    r = os_run(os_settings(cloud="mycloud"))
    assert r["rc"] == 1 and "cloud 'mycloud' not found" in r["msg"] and "clouds.yaml" in r["msg"], r


def test_openstack_missing_settings(cloud):
    r = os_run(dict(cloud="fakecloud"))
    assert r["rc"] == 1 and "image, flavor, network" in r["msg"]


# --- the role, through ansible-playbook (EC2 on the moto server) -------------------------
ROLE_PLAY = """
- name: Provision the VM groups
  hosts: localhost
  gather_facts: false
  roles:
    - role: meshfleet.mesh.vms_provision
- name: Reach the new VMs' variables
  hosts: vms
  gather_facts: false
  tasks:
    - name: Record what the onboarding play would see
      ansible.builtin.copy:
        content: "{{ {'host': inventory_hostname, 'ansible_host': ansible_host, 'user': ansible_user,
                      'group': meshfleet_vm_group, 'namespace': meshfleet_vm_namespace,
                      'groups': group_names, 'id': meshfleet_vm_instance_id} | to_json }}"
        dest: "{{ out_dir }}/{{ inventory_hostname }}.json"
        mode: "0600"
      delegate_to: localhost
"""


def test_role_vms_provision_ec2(ec2_settings, aws_env, tmp_path):
    import json
    import subprocess
    import yaml
    root = os.path.dirname(_COLLECTIONS)
    (tmp_path / "play.yml").write_text(ROLE_PLAY)
    out = tmp_path / "out"
    out.mkdir()
    variables = dict(
        out_dir=str(out), ansible_python_interpreter=sys.executable,
        vms_provision_wait=False,  # (the module tests cover the waits; keep the playbook fast)
        meshfleet_mesh=dict(id="mesh1"),
        meshfleet_topology=dict(vm_groups=dict(
            web=dict(provider="ec2", namespace="vm-web", service_account="web", cluster="cluster1",
                     network="network1", ports=dict(http=8080), settings=dict(ec2_settings, count=2)),
            legacy=dict(provider="existing", hosts=dict(vm9=dict(ansible_host="10.0.0.9"))))))
    (tmp_path / "vars.yml").write_text(yaml.safe_dump(variables))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(root, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
           "-c", "local", str(tmp_path / "play.yml"), "-e", "@%s" % (tmp_path / "vars.yml")]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    seen = sorted((json.loads(p.read_text()) for p in out.iterdir()), key=lambda s: s["host"])
    assert [s["host"] for s in seen] == ["web-1", "web-2"]
    for s in seen:
        assert s["ansible_host"].startswith("10.10.1.") and s["user"] == "ubuntu"
        assert s["group"] == "web" and s["namespace"] == "vm-web" and s["id"].startswith("i-")
        assert set(s["groups"]) == {"vms", "vmgroup_web", "vm_provider_ec2"}
    # (idempotence of the module itself: test_ec2_lifecycle)


TEARDOWN_PLAY = """
- name: Find the cloud VMs (as teardown.yml does before offboarding)
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Look up
      ansible.builtin.include_role:
        name: meshfleet.mesh.vms_provision
        tasks_from: known
- name: What the offboarding play sees
  hosts: vms
  gather_facts: false
  tasks:
    - name: Record it
      ansible.builtin.copy:
        content: "{{ {'host': inventory_hostname, 'ansible_host': ansible_host} | to_json }}"
        dest: "{{ out_dir }}/{{ inventory_hostname }}.json"
        mode: "0600"
      delegate_to: localhost
- name: Remove the cloud VMs
  hosts: localhost
  gather_facts: false
  roles:
    - role: meshfleet.mesh.vms_provision
      vars:
        vms_provision_state: absent
"""


def test_role_vms_provision_teardown_finds_then_removes_ec2(ec2_settings, aws_env, tmp_path):
    import subprocess
    import yaml
    s = dict(ec2_settings, count=2)
    r = ec2_run(s)
    assert r["rc"] == 0, r
    addresses = dict((i["name"], i["address"]) for i in r["instances"])
    root = os.path.dirname(_COLLECTIONS)
    (tmp_path / "play.yml").write_text(TEARDOWN_PLAY)
    out = tmp_path / "out"
    out.mkdir()
    variables = dict(out_dir=str(out), ansible_python_interpreter=sys.executable, meshfleet_mesh=dict(id="mesh1"),
                     vms_provision_wait_timeout=30,
                     meshfleet_topology=dict(vm_groups=dict(web=dict(provider="ec2", cluster="cluster1",
                                                                     ports=dict(http=8080), settings=s))))
    (tmp_path / "vars.yml").write_text(yaml.safe_dump(variables))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(root, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
           "-c", "local", str(tmp_path / "play.yml"), "-e", "@%s" % (tmp_path / "vars.yml")]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    import json
    seen = dict((json.loads(p.read_text())["host"], json.loads(p.read_text())["ansible_host"]) for p in out.iterdir())
    assert seen == addresses
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=aws_env)
    r = ec2_run(s, main=vm_instance_info.main)
    assert r["instances"] == []
    names = [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]]
    assert "meshfleet-mesh1-web" not in names
