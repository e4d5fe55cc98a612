# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""EC2 VM provider (boto3): instances of a mesh VM group.

Instances are found by their tags (``meshfleet:mesh``, ``meshfleet:group``, ``Name``).
Without ``settings.security_group_ids`` a security group ``meshfleet-<mesh>-<group>``
is created in the subnet's VPC; it admits SSH from ``settings.ssh_cidrs`` and the mesh
ports and the group's app ports from ``settings.mesh_cidrs`` (default for both: the VPC's
CIDR blocks), and nothing else: other rules in it are revoked.
Credentials: boto3's chain (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
instance roles); ``settings.endpoint_url`` for a custom endpoint (moto in the tests).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError, WaitTimeout, recorded_wait
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers.base import (
    TAG_GROUP, TAG_MESH, VmProvider, describe_rules, ingress_rules)
from ansible_collections.meshfleet.mesh.plugins.module_utils.cloud import (
    aws_client, aws_session)

LIVE_STATES = ["pending", "running", "stopping", "stopped"]


class Ec2VmProvider(VmProvider):
    name = "ec2"
    #: seconds between waiter polls (tests lower it)
    waiter_delay = 10

    def __init__(self, *args, **kwargs):
        super(Ec2VmProvider, self).__init__(*args, **kwargs)
        self._session = None
        self._ec2 = None

    def validate(self):
        super(Ec2VmProvider, self).validate()
        self._session = aws_session(self.settings["region"], "VM group %s (provider ec2)" % self.group)

    @property
    def ec2(self):
        if self._ec2 is None:
            if self._session is None:
                self.validate()
            self._ec2 = aws_client(self._session, "ec2", self.settings.get("endpoint_url"))
        return self._ec2

    def _err(self, e, action):
        import botocore.exceptions
        if isinstance(e, botocore.exceptions.ClientError):
            err = e.response.get("Error", {})
            return MeshfleetError("EC2 %s for VM group %s failed: %s: %s" % (
                action, self.group, err.get("Code"), err.get("Message")))
        return MeshfleetError("EC2 %s for VM group %s failed: %s" % (action, self.group, e))

    @property
    def sg_name(self):
        return "meshfleet-%s-%s" % (self.mesh, self.group)

    # --- observe -------------------------------------------------------------------
    def list(self):
        filters = [dict(Name="tag:%s" % TAG_MESH, Values=[self.mesh]),
                   dict(Name="tag:%s" % TAG_GROUP, Values=[self.group]),
                   dict(Name="instance-state-name", Values=LIVE_STATES)]
        out = []
        try:
            for page in self.ec2.get_paginator("describe_instances").paginate(Filters=filters):
                for res in page.get("Reservations", []):
                    for inst in res.get("Instances", []):
                        out.append(self._view(inst))
        except Exception as e:
            raise self._err(e, "describe")
        return out

    def _view(self, inst):
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags") or []}
        return dict(
            name=tags.get("Name"), id=inst["InstanceId"], status=inst.get("State", {}).get("Name"),
            private_ip=inst.get("PrivateIpAddress"), public_ip=inst.get("PublicIpAddress"),
            settings=dict(ami=inst.get("ImageId"), instance_type=inst.get("InstanceType"),
                          subnet_id=inst.get("SubnetId"), key_name=inst.get("KeyName"),
                          security_group_ids=sorted(g["GroupId"] for g in inst.get("SecurityGroups") or [])))

    # --- security group --------------------------------------------------------------
    def _find_sg(self):
        subnet = self.ec2.describe_subnets(SubnetIds=[self.settings["subnet_id"]])["Subnets"][0]
        groups = self.ec2.describe_security_groups(Filters=[
            dict(Name="group-name", Values=[self.sg_name]),
            dict(Name="vpc-id", Values=[subnet["VpcId"]])])["SecurityGroups"]
        return subnet["VpcId"], (groups[0] if groups else None)

    def prepare(self, apply=True):
        """Ensure the security group (unless given) admits exactly the configured sources.

        Returns what was (or, with ``apply=False``, would be) done; read-only without apply.
        """
        if self.settings.get("security_group_ids"):
            self._sg_ids = list(self.settings["security_group_ids"])
            return []
        actions = []
        try:
            vpc_id, sg = self._find_sg()
            want = ingress_rules(self.ports, *self.source_cidrs(lambda: self._vpc_cidrs(vpc_id)))
            if sg is None:
                actions.append("create security group %s" % self.sg_name)
                have = set()
                sg_id = None
                if apply:
                    sg_id = self.ec2.create_security_group(
                        GroupName=self.sg_name, VpcId=vpc_id,
                        Description="Meshfleet mesh %s VM group %s" % (self.mesh, self.group),
                        TagSpecifications=[dict(ResourceType="security-group", Tags=[
                            dict(Key=TAG_MESH, Value=self.mesh), dict(Key=TAG_GROUP, Value=self.group)])],
                    )["GroupId"]
            else:
                sg_id = sg["GroupId"]
                have = self._rules_of(sg)
            missing, extra = want - have, have - want
            if missing:
                actions.extend(describe_rules("open", missing, self.sg_name))
                if apply:
                    self.ec2.authorize_security_group_ingress(GroupId=sg_id, IpPermissions=_permissions(missing))
            if extra:
                # the group is ours (by name): a source nobody configured (e.g. 0.0.0.0/0 of an
                # older version) goes
                actions.extend(describe_rules("close", extra, self.sg_name))
                if apply:
                    self.ec2.revoke_security_group_ingress(GroupId=sg_id, IpPermissions=_permissions(extra))
        except Exception as e:
            raise self._err(e, "security group setup")
        self._sg_ids = [sg_id] if sg_id else []
        return actions

    def _vpc_cidrs(self, vpc_id):
        vpc = self.ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]
        cidrs = [a["CidrBlock"] for a in vpc.get("CidrBlockAssociationSet") or []
                 if (a.get("CidrBlockState") or {}).get("State", "associated") == "associated"]
        return cidrs or [vpc["CidrBlock"]]

    @staticmethod
    def _rules_of(sg):
        """{(port, cidr)} of the group's single-port TCP ingress rules."""
        have = set()
        for perm in sg.get("IpPermissions", []):
            if perm.get("IpProtocol") != "tcp" or perm.get("FromPort") != perm.get("ToPort"):
                continue
            for r in perm.get("IpRanges") or []:
                have.add((perm["FromPort"], r["CidrIp"]))
            for r in perm.get("Ipv6Ranges") or []:
                have.add((perm["FromPort"], r["CidrIpv6"]))
        return have

    def cleanup(self):
        if self.settings.get("security_group_ids"):
            return
        try:
            _vpc, sg = self._find_sg()
            if sg is not None:
                self.ec2.delete_security_group(GroupId=sg["GroupId"])
        except Exception as e:
            raise self._err(e, "security group removal")

    # --- change ------------------------------------------------------------------------
    def create(self, name):
        s = self.settings
        tags = dict(s.get("tags") or {})
        tags.update(self.tags(name))
        params = dict(ImageId=s["ami"], InstanceType=s["instance_type"], SubnetId=s["subnet_id"],
                      MinCount=1, MaxCount=1, SecurityGroupIds=list(getattr(self, "_sg_ids", [])),
                      TagSpecifications=[dict(ResourceType="instance", Tags=[
                          dict(Key=k, Value=str(v)) for k, v in sorted(tags.items())])])
        if s.get("key_name"):
            params["KeyName"] = s["key_name"]
        try:
            return self.ec2.run_instances(**params)["Instances"][0]["InstanceId"]
        except Exception as e:
            raise self._err(e, "creation of %s" % name)

    def delete(self, instance):
        try:
            self.ec2.terminate_instances(InstanceIds=[instance["id"]])
        except Exception as e:
            raise self._err(e, "termination of %s" % instance["name"])

    def _wait(self, waiter, ids, timeout, what):
        import botocore.exceptions
        delay = max(0.1, min(self.waiter_delay, timeout))
        try:
            with recorded_wait(what, timeout):
                self.ec2.get_waiter(waiter).wait(
                    InstanceIds=list(ids),
                    WaiterConfig=dict(Delay=delay, MaxAttempts=max(1, int(timeout // delay))))
        except botocore.exceptions.WaiterError as e:
            if "Max attempts exceeded" in str(e):
                raise WaitTimeout("timed out after %ss waiting for %s" % (timeout, what))
            raise MeshfleetError("waiting for %s failed: %s" % (what, e))

    def wait_ready(self, ids, timeout):
        self._wait("instance_running", ids, timeout, "instances %s to run" % ", ".join(ids))

    def wait_deleted(self, ids, timeout):
        self._wait("instance_terminated", ids, timeout, "instances %s to terminate" % ", ".join(ids))


def _permissions(rules):
    """EC2 IpPermissions for {(port, cidr)}: one per port, IPv4 and IPv6 sources apart."""
    by_port = {}
    for port, cidr in sorted(rules):
        by_port.setdefault(port, []).append(cidr)
    out = []
    for port, cidrs in sorted(by_port.items()):
        perm = dict(IpProtocol="tcp", FromPort=port, ToPort=port)
        v4 = [dict(CidrIp=c) for c in cidrs if ":" not in c]
        v6 = [dict(CidrIpv6=c) for c in cidrs if ":" in c]
        if v4:
            perm["IpRanges"] = v4
        if v6:
            perm["Ipv6Ranges"] = v6
        out.append(perm)
    return out
