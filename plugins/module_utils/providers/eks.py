# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Amazon EKS cluster provider (boto3).

One EKS cluster plus, optionally, one managed node group. Waits use boto3's EKS
waiters bounded by the module's ``wait_timeout``.

Kubeconfig user (``settings.credential_plugin``): ``meshfleet`` (default) is an exec
credential plugin shipped with the collection (module_utils/exec_credential.py, copied
next to the kubeconfig and run with the Python that wrote it) which signs a fresh
presigned-STS token whenever a client asks, so the kubeconfig outlives EKS's 15-minute
tokens; ``aws-cli`` (``aws eks get-token``) and ``aws-iam-authenticator`` use those
tools instead; ``static`` writes one token (valid 15 minutes, refreshed by a re-run).

A node group's ``scaling.desired`` is its initial size only: cluster-autoscaler moves it
within [min, max], so a re-run compares ``min`` and ``max`` and never resets desired.
A cluster whose creation ended ``FAILED`` is deleted and created again by the next run
(EKS cannot repair it).

Credentials: boto3's normal chain (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
instance or container roles). ``settings.endpoint_url`` points EKS and STS at a custom
endpoint; without it boto3 itself honours ``AWS_ENDPOINT_URL`` and the service-specific
``AWS_ENDPOINT_URL_EKS`` / ``AWS_ENDPOINT_URL_STS`` (never passed on explicitly, which
would override the service-specific ones).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import (
    MeshfleetError, WaitTimeout, recorded_wait)
from ansible_collections.meshfleet.mesh.plugins.module_utils import exec_credential as xc
from ansible_collections.meshfleet.mesh.plugins.module_utils import kubeconfig as kc
from ansible_collections.meshfleet.mesh.plugins.module_utils.providers.base import ClusterProvider
from ansible_collections.meshfleet.mesh.plugins.module_utils.cloud import (
    aws_client, aws_session, diff_flat, flatten_settings, module_timeout,
    module_wait, version_matches)

K8S_AWS_ID_HEADER = xc.K8S_AWS_ID_HEADER
TOKEN_PREFIX = xc.TOKEN_PREFIX
TOKEN_URL_EXPIRES = xc.TOKEN_URL_EXPIRES
eks_token = xc.eks_token


class EksProvider(ClusterProvider):
    name = "eks"
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
        plugin = s.get("credential_plugin") or "meshfleet"
        if plugin not in xc.PLUGINS["eks"]:
            raise MeshfleetError("cluster %s (provider eks): settings.credential_plugin %r is not one of: %s"
                                 % (self.cluster_name, plugin, ", ".join(xc.PLUGINS["eks"])))
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
            last = getattr(e, "last_response", None) or {}
            item = last.get("cluster") or last.get("nodegroup")
            if item and item.get("status") in ("FAILED", "CREATE_FAILED", "DELETE_FAILED", "DEGRADED"):
                issues = "; ".join("%s: %s" % (i.get("code"), i.get("message"))
                                   for i in (item.get("health") or {}).get("issues") or [])
                raise MeshfleetError("waiting for %s failed: it is %s%s%s" % (
                    what, item["status"], " (%s)" % issues if issues else "",
                    "; the next run deletes the failed cluster and creates it again"
                    if "cluster" in last and item["status"] == "FAILED" else ""))
            if last.get("Error"):
                err = last["Error"]
                raise MeshfleetError("waiting for %s failed: %s: %s" % (what, err.get("Code"), err.get("Message")))
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
        flat = flatten_settings(want, self.NESTED)
        # the desired size is the initial size: cluster-autoscaler moves it within [min, max]
        flat.pop("node_group.scaling.desired", None)
        return flat

    def diff(self, observed):
        if (observed or {}).get("status") == "FAILED":
            # a failed creation cannot be repaired: update() deletes and creates it again
            return {"status": ("FAILED", "ACTIVE")}
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

    def _scaling_update(self, observed):
        """The UpdateNodegroupConfig scalingConfig for new min/max: the current desired size
        stays unless it falls outside the new range."""
        want = self._nodegroup_params()["scalingConfig"]
        config = dict(minSize=want["minSize"], maxSize=want["maxSize"])
        have = ((observed or {}).get("settings", {}).get("node_group") or {}).get("scaling") or {}
        current = have.get("desired")
        if current is not None and not want["minSize"] <= current <= want["maxSize"]:
            config["desiredSize"] = min(max(current, want["minSize"]), want["maxSize"])
        return config

    def recreate(self):
        """Delete a cluster whose creation FAILED, wait until it is gone, create it again."""
        if self.module is not None and hasattr(self.module, "warn"):
            self.module.warn("EKS cluster %s is FAILED; deleting it and creating it again" % self.cluster_name)
        self.delete(wait=True)
        self.create()

    def update(self, changes):
        if "status" in changes:
            return self.recreate()
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
                                                 scalingConfig=self._scaling_update(observed))
                if module_wait(self.module):
                    self._wait("nodegroup_active", "node group %s update" % params["nodegroupName"],
                               clusterName=self.cluster_name, nodegroupName=params["nodegroupName"])
        except MeshfleetError:
            raise
        except Exception as e:
            raise self._err(e, "update")

    def delete(self, wait=None):
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
        if module_wait(self.module) if wait is None else wait:
            self._wait("cluster_deleted", "cluster %s to be deleted" % self.cluster_name,
                       name=self.cluster_name)

    # --- kubeconfig ---------------------------------------------------------------------
    def kubeconfig_user(self):
        """(kubeconfig user, whether the meshfleet plugin file changed) for settings.credential_plugin."""
        s = self.settings
        plugin = s.get("credential_plugin") or "meshfleet"
        region, endpoint = s["region"], s.get("endpoint_url")
        if plugin == "static":
            return kc.token_user(eks_token(self._session, self.cluster_name, region, endpoint_url=endpoint)), False
        # the endpoints the writer uses now, for a client that runs later with another environment
        env = {"AWS_ENDPOINT_URL_STS": endpoint} if endpoint else xc.carried_env(xc.EKS_CARRIED_ENV)
        profile = os.environ.get("AWS_PROFILE")
        if plugin == "meshfleet":
            script, changed = self._install_plugin()
            if endpoint:
                env = {}  # --endpoint-url says it
            try:
                spec = xc.exec_spec(script, xc.eks_exec_args(self.cluster_name, region, endpoint, profile), env)
            except xc.CredentialError as e:
                raise MeshfleetError("cluster %s (provider eks): %s" % (self.cluster_name, e))
            return {"exec": spec}, changed
        if profile:
            env["AWS_PROFILE"] = profile
        if plugin == "aws-cli":
            return kc.exec_user("aws", ["eks", "get-token", "--cluster-name", self.cluster_name, "--region", region,
                                        "--output", "json"], env=env,
                                install_hint="Install the AWS CLI v2 (https://aws.amazon.com/cli/)"), False
        return kc.exec_user("aws-iam-authenticator", ["token", "-i", self.cluster_name, "--region", region],
                            env=env, install_hint="Install aws-iam-authenticator "
                            "(https://github.com/kubernetes-sigs/aws-iam-authenticator)"), False

    def kubeconfig(self, observed):
        user, _changed = self.kubeconfig_user()
        return kc.build_kubeconfig(self.cluster_name, observed["api_server"], user, ca=observed.get("ca"))

    def write_kubeconfig(self):
        observed = self.get()
        if not observed or not observed.get("api_server"):
            return self.kubeconfig_path, self.cluster_name, False
        self.ensure_cluster_dir()
        user, script_changed = self.kubeconfig_user()
        config = kc.build_kubeconfig(self.cluster_name, observed["api_server"], user, ca=observed.get("ca"))
        changed = kc.write_kubeconfig(self.kubeconfig_path, config)
        return self.kubeconfig_path, self.cluster_name, changed or script_changed
