# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Amazon EKS cluster provider (boto3).

One EKS cluster plus, optionally, one managed node group. Waits use boto3's EKS
waiters bounded by the module's ``wait_timeout``. The kubeconfig carries a bearer
token generated in Python the way aws-iam-authenticator / ``aws eks get-token`` do
it: a presigned STS ``GetCallerIdentity`` URL signed with the ``x-k8s-aws-id:
<cluster>`` header, base64url-encoded without padding, prefixed ``k8s-aws-v1.``.
EKS accepts such a token for 15 minutes only; re-run the module (or use the exec
plugin alternative documented in docs/providers.md) to refresh it.

Credentials: boto3's normal chain (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
instance or container roles). ``settings.endpoint_url`` points EKS and STS at a custom
endpoint (moto in the tests).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import (
    MeshfleetError, WaitTimeout, recorded_wait)
from ansible_collections.meshfleet.mesh.plugins.module_utils import kubeconfig as kc
from ansible_collections.meshfleet.mesh.plugins.module_utils.providers.base import ClusterProvider
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers.cloud import (
    FieldPatterns, aws_client, aws_session, diff_flat, flatten_settings, module_timeout,
    module_wait, version_matches)

K8S_AWS_ID_HEADER = "x-k8s-aws-id"
TOKEN_PREFIX = "k8s-aws-v1."
#: a presigned URL lives 60 s; EKS itself honours a token for 15 minutes
TOKEN_URL_EXPIRES = 60


def eks_token(session, cluster_name, region, endpoint_url=None):
    """Return a bearer token for ``cluster_name`` (no API call: a presigned STS URL)."""
    sts = aws_client(session, "sts", endpoint_url=endpoint_url)
    if endpoint_url is None and sts.meta.endpoint_url.rstrip("/") == "https://sts.amazonaws.com":
        # EKS wants the regional STS endpoint for regional clusters
        sts = session.client("sts", region_name=region,
                             endpoint_url="https://sts.%s.amazonaws.com" % region)

    def retrieve_id(params, context, **kwargs):
        if K8S_AWS_ID_HEADER in params:
            context[K8S_AWS_ID_HEADER] = params.pop(K8S_AWS_ID_HEADER)

    def inject_header(request, **kwargs):
        if K8S_AWS_ID_HEADER in request.context:
            request.headers[K8S_AWS_ID_HEADER] = request.context[K8S_AWS_ID_HEADER]

    sts.meta.events.register("provide-client-params.sts.GetCallerIdentity", retrieve_id)
    sts.meta.events.register("before-sign.sts.GetCallerIdentity", inject_header)
    url = sts.generate_presigned_url("get_caller_identity",
                                     Params={K8S_AWS_ID_HEADER: cluster_name},
                                     ExpiresIn=TOKEN_URL_EXPIRES, HttpMethod="GET")
    encoded = base64.urlsafe_b64encode(url.encode("utf-8")).decode("ascii").rstrip("=")
    return TOKEN_PREFIX + encoded


class EksProvider(ClusterProvider):
    name = "eks"
    required_settings = ("region", "role_arn", "subnet_ids")
    immutable_settings = FieldPatterns((
        "region", "role_arn", "subnet_ids", "security_group_ids",
        "node_group.name", "node_group.node_role_arn", "node_group.instance_types"))
    compared_settings = ("region", "role_arn", "subnet_ids", "security_group_ids",
                         "kubernetes_version", "tags", "node_group")
    NESTED = {"node_group": "dict"}
    #: seconds between waiter polls (tests lower it)
    waiter_delay = 15

    def __init__(self, *args, **kwargs):
        super(EksProvider, self).__init__(*args, **kwargs)
        self._session = None
        self._eks = None

    # --- setup ---------------------------------------------------------------
    def validate(self):
        super(EksProvider, self).validate()
        s = self.settings
        if not isinstance(s.get("subnet_ids"), list):
            raise MeshfleetError("cluster %s (provider eks): settings.subnet_ids must be a list"
                                 % self.cluster_name)
        ng = s.get("node_group")
        if ng is not None:
            missing = [k for k in ("name", "node_role_arn") if not ng.get(k)]
            if missing:
                raise MeshfleetError("cluster %s (provider eks): settings.node_group needs %s"
                                     % (self.cluster_name, ", ".join(missing)))
        self._session = aws_session(s["region"], "cluster %s (provider eks)" % self.cluster_name)

    @property
    def eks(self):
        if self._eks is None:
            if self._session is None:
                self.validate()
            self._eks = aws_client(self._session, "eks", self.settings.get("endpoint_url"))
        return self._eks

    def _err(self, e, action):
        import botocore.exceptions
        if isinstance(e, botocore.exceptions.ClientError):
            err = e.response.get("Error", {})
            return MeshfleetError("EKS %s of cluster %s failed: %s: %s" % (
                action, self.cluster_name, err.get("Code"), err.get("Message")))
        return MeshfleetError("EKS %s of cluster %s failed: %s" % (action, self.cluster_name, e))

    def _not_found(self, e):
        import botocore.exceptions
        return (isinstance(e, botocore.exceptions.ClientError)
                and e.response.get("Error", {}).get("Code") == "ResourceNotFoundException")

    def _wait(self, waiter_name, what, **kwargs):
        import botocore.exceptions
        timeout = module_timeout(self.module)
        delay = max(0.1, min(self.waiter_delay, timeout))
        waiter = self.eks.get_waiter(waiter_name)
        try:
            with recorded_wait(what, timeout):
                waiter.wait(WaiterConfig={"Delay": delay, "MaxAttempts": max(1, int(timeout // delay))},
                            **kwargs)
        except botocore.exceptions.WaiterError as e:
            if "Max attempts exceeded" in str(e):
                raise WaitTimeout("timed out after %ss waiting for %s" % (timeout, what))
            raise MeshfleetError("waiting for %s failed: %s" % (what, e))

    # --- observe ---------------------------------------------------------------
    def _describe(self):
        try:
            return self.eks.describe_cluster(name=self.cluster_name)["cluster"]
        except Exception as e:
            if self._not_found(e):
                return None
            raise self._err(e, "describe")

    def _describe_nodegroup(self, name):
        try:
            return self.eks.describe_nodegroup(clusterName=self.cluster_name,
                                               nodegroupName=name)["nodegroup"]
        except Exception as e:
            if self._not_found(e):
                return None
            raise self._err(e, "describe node group %s" % name)

    def get(self):
        cluster = self._describe()
        if cluster is None:
            return None
        vpc = cluster.get("resourcesVpcConfig") or {}
        observed = dict(
            region=self.settings["region"],
            role_arn=cluster.get("roleArn"),
            subnet_ids=sorted(vpc.get("subnetIds") or []),
            security_group_ids=sorted(vpc.get("securityGroupIds") or []),
            kubernetes_version=cluster.get("version"),
            tags={k: v for k, v in (cluster.get("tags") or {}).items() if not k.startswith("aws:")},
        )
        ready = cluster.get("status") == "ACTIVE"
        want_ng = self.settings.get("node_group")
        if want_ng and cluster.get("status") != "DELETING":
            ng = self._describe_nodegroup(want_ng["name"])
            if ng is not None:
                scaling = ng.get("scalingConfig") or {}
                observed["node_group"] = dict(
                    name=ng.get("nodegroupName"), node_role_arn=ng.get("nodeRole"),
                    instance_types=ng.get("instanceTypes"),
                    scaling=dict(min=scaling.get("minSize"), max=scaling.get("maxSize"),
                                 desired=scaling.get("desiredSize")))
                ready = ready and ng.get("status") == "ACTIVE"
            else:
                ready = False
        return dict(settings=observed, ready=ready, status=cluster.get("status"),
                    api_server=cluster.get("endpoint"), context=self.cluster_name,
                    arn=cluster.get("arn"),
                    ca=(cluster.get("certificateAuthority") or {}).get("data"))

    # --- compare -----------------------------------------------------------------
    def _desired_flat(self):
        want = {k: self.settings.get(k) for k in self.compared_settings}
        for key in ("subnet_ids", "security_group_ids"):
            if want.get(key) is not None:
                want[key] = sorted(want[key])
        return flatten_settings(want, self.NESTED)

    def diff(self, observed):
        seen = (observed or {}).get("settings", {})
        desired = self._desired_flat()
        if self.settings.get("node_group") and not seen.get("node_group"):
            # the node group does not exist yet: creating it is an in-place change
            desired = {k: v for k, v in desired.items() if not k.startswith("node_group.")}
            changes = diff_flat(desired, flatten_settings(seen, self.NESTED), self._same)
            changes["node_group"] = (None, self.settings["node_group"])
            return changes
        return diff_flat(desired, flatten_settings(seen, self.NESTED), self._same)

    def _same(self, key, have, want):
        if key == "kubernetes_version":
            return version_matches(have, want)
        if key == "node_group.instance_types":
            return sorted(have or []) == sorted(want or [])
        return have == want

    # --- change --------------------------------------------------------------------
    def _nodegroup_params(self):
        ng = self.settings["node_group"]
        scaling = ng.get("scaling") or {}
        desired = scaling.get("desired", scaling.get("min", 1))
        params = dict(
            clusterName=self.cluster_name, nodegroupName=ng["name"], nodeRole=ng["node_role_arn"],
            subnets=list(self.settings["subnet_ids"]),
            scalingConfig=dict(minSize=scaling.get("min", desired), maxSize=scaling.get("max", desired),
                               desiredSize=desired),
            tags=dict(self.settings.get("tags") or {}))
        if ng.get("instance_types"):
            params["instanceTypes"] = list(ng["instance_types"])
        return params

    def _create_nodegroup(self):
        try:
            self.eks.create_nodegroup(**self._nodegroup_params())
        except Exception as e:
            raise self._err(e, "node group creation")
        if module_wait(self.module):
            self._wait("nodegroup_active", "node group %s to become active"
                       % self.settings["node_group"]["name"],
                       clusterName=self.cluster_name, nodegroupName=self.settings["node_group"]["name"])

    def create(self):
        s = self.settings
        vpc = dict(subnetIds=list(s["subnet_ids"]))
        if s.get("security_group_ids"):
            vpc["securityGroupIds"] = list(s["security_group_ids"])
        params = dict(name=self.cluster_name, roleArn=s["role_arn"], resourcesVpcConfig=vpc)
        if s.get("kubernetes_version"):
            params["version"] = str(s["kubernetes_version"])
        if s.get("tags"):
            params["tags"] = dict(s["tags"])
        try:
            self.eks.create_cluster(**params)
        except Exception as e:
            raise self._err(e, "creation")
        if s.get("node_group") or module_wait(self.module):
            # a node group can only join an ACTIVE cluster
            self._wait("cluster_active", "cluster %s to become active" % self.cluster_name,
                       name=self.cluster_name)
        if s.get("node_group"):
            self._create_nodegroup()

    def update(self, changes):
        observed = self.get()
        try:
            if "kubernetes_version" in changes:
                self.eks.update_cluster_version(name=self.cluster_name,
                                                version=str(self.settings["kubernetes_version"]))
                self._wait("cluster_active", "cluster %s version update" % self.cluster_name,
                           name=self.cluster_name)
            if "tags" in changes:
                want = dict(self.settings["tags"] or {})
                have = observed["settings"].get("tags") or {}
                removed = [k for k in have if k not in want]
                if removed:
                    self.eks.untag_resource(resourceArn=observed["arn"], tagKeys=removed)
                if want:
                    self.eks.tag_resource(resourceArn=observed["arn"], tags=want)
            if "node_group" in changes:
                self._create_nodegroup()
            elif any(k.startswith("node_group.scaling.") for k in changes):
                params = self._nodegroup_params()
                self.eks.update_nodegroup_config(clusterName=self.cluster_name,
                                                 nodegroupName=params["nodegroupName"],
                                                 scalingConfig=params["scalingConfig"])
                if module_wait(self.module):
                    self._wait("nodegroup_active", "node group %s update" % params["nodegroupName"],
                               clusterName=self.cluster_name, nodegroupName=params["nodegroupName"])
        except MeshfleetError:
            raise
        except Exception as e:
            raise self._err(e, "update")

    def delete(self):
        try:
            groups = self.eks.list_nodegroups(clusterName=self.cluster_name).get("nodegroups", [])
            for ng in groups:
                self.eks.delete_nodegroup(clusterName=self.cluster_name, nodegroupName=ng)
            for ng in groups:
                self._wait("nodegroup_deleted", "node group %s to be deleted" % ng,
                           clusterName=self.cluster_name, nodegroupName=ng)
            self.eks.delete_cluster(name=self.cluster_name)
        except MeshfleetError:
            raise
        except Exception as e:
            if self._not_found(e):
                return
            raise self._err(e, "deletion")
        if module_wait(self.module):
            self._wait("cluster_deleted", "cluster %s to be deleted" % self.cluster_name,
                       name=self.cluster_name)

    # --- kubeconfig ---------------------------------------------------------------------
    def kubeconfig(self, observed):
        token = eks_token(self._session, self.cluster_name, self.settings["region"],
                          endpoint_url=self.settings.get("endpoint_url"))
        return kc.build_kubeconfig(self.cluster_name, observed["api_server"], kc.token_user(token),
                                   ca=observed.get("ca"))

    def write_kubeconfig(self):
        observed = self.get()
        if not observed or not observed.get("api_server"):
            return self.kubeconfig_path, self.cluster_name, False
        self.ensure_cluster_dir()
        changed = kc.write_kubeconfig(self.kubeconfig_path, self.kubeconfig(observed))
        return self.kubeconfig_path, self.cluster_name, changed
