# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fake clouds for the end-to-end test: the cloudsim process and an inventory overlay.

- ``CloudSimProcess(work_dir, tools_bin, token_ttl)``: starts
  ``python -m ansible_collections.meshfleet.mesh.tests.fakes.cloudsim`` (127.0.0.1 only), reads
  its endpoints, ``inventory()`` reads ``GET /sim/inventory``, ``stop()`` stops it (it deletes
  its kwok clusters on the way out) and kills whatever is left of its work dir.
- ``make_overlay(dest, endpoints, vm_access=dict(key_file=...))``: a copy of
  inventories/multicloud-example pointed at the sim. It changes only where things are
  (endpoints, credentials, the IDs the fake AWS account has, the VMs' SSH key file) and one
  thing that cannot be faked: the pods on kwok nodes do not run, so istiod runs beside each
  kwok-backed cluster (``control_plane_local`` / ``control_plane_istiod_local`` in
  group_vars/clusters.yml), as for kwok clusters, and a cluster with a VM group runs it on the
  host's address in the group's subnet (``control_plane_istiod_address`` in host_vars: where
  a real VM would reach istiod through the east-west gateway's load balancer); the VMs' subnets
  do not route to each other, so the cross-network mTLS probe uses the controller's relay
  (``vm_sidecar_mtls_relay``). The clusters, networks, roles and VM groups stay those of the
  example.
- ``register_key_pair(endpoints, name, public_key)``: import the key pair the example names into
  EC2 and OpenStack, as a user does once.
- ``overlay_env(endpoints, work_dir)``: the environment the providers read their credentials
  and endpoints from (AZURE_*, GOOGLE_APPLICATION_CREDENTIALS, AWS_*, OS_CLIENT_CONFIG_FILE,
  the sim's CA), with HTTP(S)_PROXY at a closed port so that nothing can reach a real cloud.
"""

from __future__ import absolute_import, division, print_function

import copy
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time

import requests
import yaml

import helpers

EXAMPLE = os.path.join(helpers.REPO, "inventories", "multicloud-example", "mesh.meshfleet.yml")

#: provider setting -> where it points, for settings the providers may not have yet; the
#: overlay sets each one the validation knows (plugins/module_utils/provider_spec.py)
ENDPOINT_SETTINGS = {
    "aks": {"arm_endpoint": lambda ep: ep["azure"]["arm_endpoint"]},
    "gke": {"api_endpoint": lambda ep: ep["gcp"]["api_endpoint"]},
}
#: the same settings without which a provider would call the real cloud (the test refuses to
#: run without them: the dead proxy would make it fail anyway, less clearly)
REQUIRED_ENDPOINT_SETTINGS = {"aks": ("arm_endpoint",), "gke": ("api_endpoint",)}

LOCAL_CONTROL_PLANE_VARS = """\
---
# The one local substitution of the end-to-end test against fake clouds: every cluster's API
# server is a real kwok cluster, whose pods are fake, so an in-cluster istiod cannot run.
# istiod runs beside each cluster as a local process, as for provider kwok
# (roles/control_plane/defaults/main.yml); the east-west gateway address still comes from
# the cloud's load balancer (the sim's cloud controller).
control_plane_local: true
control_plane_istiod_local: true
"""


class CloudSimProcess:
    def __init__(self, work_dir, tools_bin, token_ttl=60, start_timeout=90, vm_rootfs=None):
        self.work = os.path.abspath(work_dir)
        os.makedirs(self.work, 0o700, exist_ok=True)
        helpers.safety_net(self.work)
        env = dict(os.environ)
        env["PYTHONPATH"] = helpers.COLLECTIONS + os.pathsep + env.get("PYTHONPATH", "")
        env["MESHFLEET_TOOLS_BIN"] = tools_bin
        for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
            env.pop(k, None)
        self.log_path = os.path.join(self.work, "cloudsim.log")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [helpers.VENV_PYTHON, "-m", "ansible_collections.meshfleet.mesh.tests.fakes.cloudsim",
             "--work-dir", self.work, "--tools-bin", tools_bin, "--token-ttl", str(token_ttl),
             "--parent-pid", str(os.getpid())]
            + (["--vms", "--vm-rootfs", vm_rootfs] if vm_rootfs else []),
            cwd=helpers.REPO, env=env, stdout=subprocess.PIPE, stderr=self._log)
        deadline = time.monotonic() + start_timeout
        line = b""
        while time.monotonic() < deadline and self.proc.poll() is None:
            line = self.proc.stdout.readline()
            if line.strip().startswith(b"{"):
                break
        if not line.strip().startswith(b"{"):
            self.stop()
            raise AssertionError("cloudsim did not start:\n%s" % self.log_tail())
        self.endpoints = json.loads(line)

    def inventory(self):
        r = requests.get(self.endpoints["inventory_url"], verify=self.endpoints["ca_file"], timeout=30,
                         proxies={"http": None, "https": None})
        r.raise_for_status()
        return r.json()

    def log_tail(self, lines=80):
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except IOError:
            return ""
        return "\n".join([ln for ln in text.splitlines() if " werkzeug " not in ln][-lines:])

    def stop(self, timeout=150):
        """SIGTERM (the sim deletes its kwok clusters), then kill what is left; [] when clean."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return helpers.force_cleanup(self.work)


def make_overlay(dest, endpoints, setting_types=None, keep_vm_groups=True, clusters=None, vm_access=None):
    """Write the overlay inventory folder ``dest``; return (path, notes).

    ``clusters`` (names) keeps only those clusters, their networks and VM groups (debugging).
    ``notes`` lists the endpoint settings the validation does not know yet.
    ``vm_access`` (dict ``key_file``): the VM groups' hosts get that SSH key; each cluster with
    a VM group runs its local istiod on the host's address in the group's subnet (.1), where
    the VMs reach it (a real VM reaches istiod through the east-west gateway's load balancer).
    Without it the VM groups are dropped (their VMs could not be reached).
    """
    if setting_types is None:
        from ansible_collections.meshfleet.mesh.plugins.module_utils.topology import SETTING_TYPES
        setting_types = SETTING_TYPES
    with open(EXAMPLE) as f:
        doc = yaml.safe_load(f)
    doc = copy.deepcopy(doc)
    notes = []
    aws = endpoints["aws"]
    for name, cluster in list(doc["clusters"].items()):
        if clusters is not None and name not in clusters:
            doc["clusters"].pop(name)
            continue
        provider, settings = cluster["provider"], cluster.setdefault("settings", {})
        for key, value in ENDPOINT_SETTINGS.get(provider, {}).items():
            if key in setting_types.get(provider, {}):
                settings[key] = value(endpoints)
            else:
                notes.append("clusters.%s.settings.%s (provider %s) is not a setting yet" % (name, key, provider))
        if provider == "eks":
            # the IDs of the fake AWS account (moto makes its own IDs)
            settings["subnet_ids"] = list(aws["subnet_ids"])
            settings["security_group_ids"] = aws["security_group_ids"][:1]
        if provider == "gke":
            settings["project"] = endpoints["gcp"]["project"]
    if clusters is not None:
        doc["networks"] = dict((n, v) for n, v in (doc.get("networks") or {}).items()
                               if any(c["network"] == n for c in doc["clusters"].values()))
    istiod_addresses = {}
    for name, group in list((doc.get("vm_groups") or {}).items()):
        if not keep_vm_groups or vm_access is None or group.get("cluster") not in doc["clusters"]:
            doc["vm_groups"].pop(name)
            continue
        settings = group.setdefault("settings", {})
        vm_subnets = (endpoints.get("vms") or {}).get("subnets") or {}
        subnet = None
        if group.get("provider") == "ec2":
            settings.update(subnet_id=aws["subnet_ids"][0], ami=aws["ami"],
                            security_group_ids=aws["security_group_ids"][1:2])
            subnet = vm_subnets.get("ec2", {}).get(settings["subnet_id"])
        if group.get("provider") == "openstack":
            settings["cloud"] = endpoints["openstack"]["cloud"]
            subnet = vm_subnets.get("openstack", {}).get(settings.get("network"))
        if subnet:
            istiod_addresses[group["cluster"]] = str(ipaddress.ip_network(subnet).network_address + 1)
        if vm_access is not None:
            # the user's side of SSH: the key pair's private key (the example uses ssh-agent or
            # this variable); the fake clouds' VMs are on subnets that do not route to each
            # other, so the cross-network mTLS probe goes through the controller's relay
            for host, hostvars in (group.get("hosts") or {}).items():
                group["hosts"][host] = dict(hostvars or {}, ansible_ssh_private_key_file=vm_access["key_file"],
                                            vm_sidecar_mtls_relay=True)
    if not doc.get("vm_groups"):
        doc.pop("vm_groups", None)
    os.makedirs(os.path.join(dest, "group_vars"), 0o700, exist_ok=True)
    path = os.path.join(dest, "mesh.meshfleet.yml")
    with open(path, "w") as f:
        f.write("# Overlay of inventories/multicloud-example for the fake clouds (tests/integration/"
                "multicloud.py)\n")
        yaml.safe_dump(doc, f, default_flow_style=False, sort_keys=False)
    with open(os.path.join(dest, "group_vars", "clusters.yml"), "w") as f:
        f.write(LOCAL_CONTROL_PLANE_VARS)
    if istiod_addresses:
        os.makedirs(os.path.join(dest, "host_vars"), 0o700, exist_ok=True)
    for cluster, address in istiod_addresses.items():
        with open(os.path.join(dest, "host_vars", "%s.yml" % cluster), "w") as f:
            f.write("---\n# istiod runs beside the kwok-backed cluster: it listens where this cluster's VMs\n"
                    "# reach it, the host's address on their subnet (tests/integration/multicloud.py)\n"
                    "control_plane_istiod_address: %s\n" % address)
    return path, notes


def register_key_pair(endpoints, name, public_key):
    """What a user does once before provisioning: import the key pair the example names
    (``settings.key_name``) into EC2 and OpenStack, through their SDKs (the sim's clouds)."""
    import boto3
    import openstack
    aws = endpoints["aws"]
    ec2 = boto3.session.Session(aws_access_key_id=aws["access_key_id"], aws_secret_access_key=aws["secret_access_key"],
                                region_name=aws["region"]).client("ec2", endpoint_url=aws["endpoint_url"])
    ec2.import_key_pair(KeyName=name, PublicKeyMaterial=public_key.encode())
    old = os.environ.get("OS_CLIENT_CONFIG_FILE")
    os.environ["OS_CLIENT_CONFIG_FILE"] = endpoints["openstack"]["clouds_yaml"]
    try:
        conn = openstack.connect(cloud=endpoints["openstack"]["cloud"])
        conn.compute.create_keypair(name=name, public_key=public_key)
    finally:
        if old is None:
            os.environ.pop("OS_CLIENT_CONFIG_FILE", None)
        else:
            os.environ["OS_CLIENT_CONFIG_FILE"] = old


def missing_endpoint_settings(setting_types=None):
    if setting_types is None:
        from ansible_collections.meshfleet.mesh.plugins.module_utils.topology import SETTING_TYPES
        setting_types = SETTING_TYPES
    return ["%s.%s" % (p, k) for p, keys in REQUIRED_ENDPOINT_SETTINGS.items() for k in keys
            if k not in setting_types.get(p, {})]


def overlay_env(endpoints, work_dir):
    """The providers' credentials and endpoints in the environment, the sim's CA trusted."""
    az, gcp, aws = endpoints["azure"], endpoints["gcp"], endpoints["aws"]
    home = os.path.join(work_dir, "home")
    os.makedirs(home, 0o700, exist_ok=True)
    dead_proxy = "http://127.0.0.1:9"
    return {
        # Azure (azure-identity EnvironmentCredential; the authority host is the sim's AAD)
        "AZURE_SUBSCRIPTION_ID": az["subscription_id"], "AZURE_TENANT_ID": az["tenant_id"],
        "AZURE_CLIENT_ID": az["client_id"], "AZURE_CLIENT_SECRET": az["client_secret"],
        "AZURE_AUTHORITY_HOST": az["authority_host"],
        # GCP (a service-account key file whose token_uri is the sim's)
        "GOOGLE_APPLICATION_CREDENTIALS": gcp["credentials_file"],
        "CLOUDSDK_CONFIG": os.path.join(home, "gcloud"),
        # AWS (boto3 reads AWS_ENDPOINT_URL itself: moto for EKS, EC2, STS, ELBv2)
        "AWS_ACCESS_KEY_ID": aws["access_key_id"], "AWS_SECRET_ACCESS_KEY": aws["secret_access_key"],
        "AWS_DEFAULT_REGION": aws["region"], "AWS_ENDPOINT_URL": aws["endpoint_url"],
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.path.join(home, "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "aws-credentials"),
        # OpenStack
        "OS_CLIENT_CONFIG_FILE": endpoints["openstack"]["clouds_yaml"],
        # the sim's CA for Python (requests, ssl) and Go clients
        "REQUESTS_CA_BUNDLE": endpoints["ca_file"], "SSL_CERT_FILE": endpoints["ca_file"],
        # nothing may reach a real cloud: every non-local request fails at a closed port
        "HTTPS_PROXY": dead_proxy, "HTTP_PROXY": dead_proxy, "https_proxy": dead_proxy,
        "http_proxy": dead_proxy,
        "NO_PROXY": "127.0.0.1,localhost,127.0.0.0/8", "no_proxy": "127.0.0.1,localhost,127.0.0.0/8",
    }


def cloud_vms_wired():
    """Whether site.yml provisions cloud VMs yet (role vms_provision in a playbook it imports)."""
    for name in ("site.yml", "mesh.yml", "vms.yml"):
        with open(os.path.join(helpers.REPO, "playbooks", name)) as f:
            if "vms_provision" in f.read():
                return True
    return False


if __name__ == "__main__":  # pragma: no cover - manual use: print the overlay for an endpoints file
    with open(sys.argv[1]) as f:
        print(make_overlay(sys.argv[2], json.load(f)))
