# -*- coding: utf-8 -*-
"""The cloud simulator: one HTTPS server for Azure (AAD + ARM), GKE (+ Google OAuth2) and
OpenStack, moto in server mode for AWS, kwok clusters behind every cloud cluster, a token
webhook and a fake cloud controller. See ``__init__.py`` for the overview.

Rules the sim enforces like the real services (docs/providers.md, cloud-facts.md):

- AAD: unknown tenant -> 400 AADSTS90002; wrong client secret -> 401 AADSTS7000215; ARM
  without a valid, unexpired token -> 401 InvalidAuthenticationToken / ExpiredAuthenticationToken.
- Google OAuth2: the JWT-bearer assertion must be RS256-signed by the service account's key,
  ``iss`` = its email, ``aud`` = the token URI, unexpired; GKE REST refuses other tokens (401).
- EKS tokens (aws-iam-authenticator's rules): ``k8s-aws-v1.`` + base64url of a presigned STS
  GetCallerIdentity URL of the sim's STS, ``x-k8s-aws-id`` signed and equal to the cluster,
  ``X-Amz-Expires`` <= 900 s, accepted for 15 minutes after ``X-Amz-Date``, and STS must
  answer GetCallerIdentity for it.
- A cluster is reported running (ARM Succeeded, GKE RUNNING, EKS ACTIVE) only once its kwok
  API server answers; its credentials point there.
- Deleting an AKS cluster deletes its node resource group (``MC_<rg>_<name>_<location>``) and
  the load balancers in it; deleting a GKE or EKS cluster leaves the load balancers of
  LoadBalancer Services behind (GKE: "not always guaranteed", EKS: orphaned), so a teardown
  must delete those Services first.
"""

from __future__ import absolute_import, division, print_function

import base64
import hashlib
import hmac
import ipaddress
import itertools
import json
import logging
import os
import secrets
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlparse

import requests
import requests_mock
from requests.structures import CaseInsensitiveDict

from ansible_collections.meshfleet.mesh.tests.fakes import azure_transport, gcp_http, openstack_http
from ansible_collections.meshfleet.mesh.tests.fakes.cloudsim.kube import KubeClusters
from ansible_collections.meshfleet.mesh.tests.fakes.cloudsim.pki import ServiceAccountKey, make_server_pki
from ansible_collections.meshfleet.mesh.tests.fakes.cloudsim.vms import CloudVms, default_user

LOG = logging.getLogger("cloudsim")
JSON = {"Content-Type": "application/json"}
#: aws-iam-authenticator accepts a presigned URL for 15 minutes after X-Amz-Date
EKS_TOKEN_WINDOW = 15 * 60
EKS_TOKEN_PREFIX = "k8s-aws-v1."
OPENSTACK_BASES = {"keystone": openstack_http.KEYSTONE, "nova": openstack_http.NOVA,
                   "neutron": openstack_http.NEUTRON, "glance": openstack_http.GLANCE}


def _json(status, payload, headers=None):
    h = dict(JSON)
    h.update(headers or {})
    return status, h, json.dumps(payload).encode()


# --- Azure -------------------------------------------------------------------------------------

class SimArm(azure_transport.FakeArm):
    """FakeArm behind the sim: AAD tokens, kwok-backed clusters, URLs of the sim."""

    def __init__(self, sim):
        super(SimArm, self).__init__(polls_before_done=1)
        self.sim = sim

    @staticmethod
    def cid(key):
        return "aks/%s" % key[2]

    def handle(self, method, url, headers, body):
        ok, code, why = self.sim.check_aad_token(headers.get("Authorization", ""))
        if not ok:
            return 401, {"Content-Type": "application/json", "WWW-Authenticate": (
                'Bearer authorization_uri="%s/%s", error="invalid_token"' % (
                    self.sim.url, self.sim.azure["tenant_id"]))}, {"error": {"code": code, "message": why}}
        h = CaseInsensitiveDict(headers)
        h["Authorization"] = "Bearer %s" % self.token  # the model's own check
        parsed = urlparse(url)
        query = dict((k, v[0]) for k, v in parse_qs(parsed.query).items())
        status, rh, payload = super(SimArm, self).handle(method, parsed.path, query, headers=h, body=body,
                                                         base_url=self.sim.url)
        rh = dict((k, v.replace(azure_transport.ARM, self.sim.url) if isinstance(v, str) else v)
                  for k, v in rh.items())
        return status, rh, payload

    def _start_op(self, ctx, kind, location, done, failed):
        key = ctx["key"]
        mc = self.clusters.get(key) or {}
        if kind in ("create", "update") and (mc.get("properties") or {}).get("provisioningState") == "Creating":
            self.sim.kube.ensure(self.cid(key))
        if kind == "delete":
            self.sim.kube.delete_async(self.cid(key))
            orig = done

            def done():
                mc = self.clusters.get(key) or {}
                orig()
                self.sim.aks_deleted(key, mc)
        return super(SimArm, self)._start_op(ctx, kind, location, done, failed)

    def _operation(self, op_id, kind):
        op = self.operations.get(op_id)
        if op and op["status"] == "InProgress" and op["kind"] == "delete" \
                and self.sim.kube.exists(self.cid(op["key"])):
            # the cluster is gone when its API server is
            if kind == "operationresults":
                return 202, {"Retry-After": "1", "Location": ""}, None
            return 200, dict(JSON, **{"Retry-After": "1"}), {
                "name": op_id, "status": "InProgress", "startTime": "2026-01-01T00:00:00Z"}
        if op and op["status"] == "InProgress" and op["kind"] in ("create", "update") \
                and not self.sim.kube.ready(self.cid(op["key"])):
            failed = self.sim.kube.failed(self.cid(op["key"]))
            if failed:
                op["status"] = "Failed"
                return 200, dict(JSON), {"name": op_id, "status": "Failed",
                                         "error": {"code": "CreateVMSSAgentPoolFailed", "message": failed}}
            if kind == "operationresults":
                return 202, {"Retry-After": "1", "Location": ""}, None
            return 200, dict(JSON, **{"Retry-After": "1"}), {
                "name": op_id, "status": "InProgress", "startTime": "2026-01-01T00:00:00Z"}
        return super(SimArm, self)._operation(op_id, kind)

    def _credentials(self, key):
        mc = self.clusters.get(key)
        kube = self.sim.kube.ready(self.cid(key)) if mc else None
        if mc is None or kube is None:
            return self._not_found(key)
        token = self.sim.aks_user_token(self.cid(key))
        name, rg = key[2], key[1]
        user = "clusterUser_%s_%s" % (rg, name)
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": name, "preferences": {},
            "clusters": [{"name": name, "cluster": {
                "server": kube["server"],
                "certificate-authority-data": base64.b64encode(kube["ca_pem"].encode()).decode()}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
            "users": [{"name": user, "user": {"token": token}}]}
        value = base64.b64encode(json.dumps(config).encode()).decode()
        return 200, dict(JSON), {"kubeconfigs": [{"name": "clusterUser", "value": value}]}


# --- GKE ---------------------------------------------------------------------------------------

class SimGke(gcp_http.FakeGke):
    def __init__(self, sim):
        super(SimGke, self).__init__()
        self.sim = sim

    @staticmethod
    def cid(key):
        return "gke/%s" % key[2]

    def _authorized(self, header):
        if not header.startswith("Bearer "):
            return False
        token = header[len("Bearer "):]
        if self.sim.google_token_valid(token):
            return True
        try:  # a self-signed service-account JWT (google-auth's always_use_jwt_access)
            claims = self.sim.sa_key.verify_jwt(token)
        except ValueError:
            return False
        return claims.get("iss") == self.sim.sa_key.client_email and claims.get("exp", 0) > time.time()

    def _op(self, key, kind, done, failed=None):
        if kind == "CREATE_CLUSTER":
            self.sim.kube.ensure(self.cid(key))
            orig = done

            def done():
                orig()
                kube = self.sim.kube.ready(self.cid(key))
                self.clusters[key].update(
                    endpoint=urlparse(kube["server"]).netloc,
                    masterAuth={"clusterCaCertificate": base64.b64encode(kube["ca_pem"].encode()).decode()})
        elif kind == "DELETE_CLUSTER":
            self.sim.kube.delete_async(self.cid(key))
            orig = done

            def done():
                cluster = self.clusters.get(key) or {}
                orig()
                self.sim.gke_deleted(key, cluster)
        return super(SimGke, self)._op(key, kind, done, failed)

    def _operation(self, p, loc, name):
        op = self.operations.get(name)
        if op and op["status"] == "RUNNING" and op["kind"] == "DELETE_CLUSTER" \
                and self.sim.kube.exists(self.cid(op["key"])):
            return 200, self._op_json(op), {}
        if op and op["status"] == "RUNNING" and op["kind"] == "CREATE_CLUSTER" \
                and not self.sim.kube.ready(self.cid(op["key"])):
            failed = self.sim.kube.failed(self.cid(op["key"]))
            if failed:
                op["status"] = "DONE"
                body = self._op_json(op)
                body["error"] = {"code": 13, "message": failed}
                return 200, body, {}
            return 200, self._op_json(op), {}
        return super(SimGke, self)._operation(p, loc, name)


# --- the simulator -----------------------------------------------------------------------------

class CloudSim:
    def __init__(self, work_dir, tools_bin=None, token_ttl=3600, aws_region="eu-central-1",
                 gcp_project="acme-mesh-prod", with_kube=True, with_vms=False, vm_rootfs=None):
        self.work = os.path.abspath(work_dir)
        os.makedirs(self.work, 0o700, exist_ok=True)
        # instances backed by netns VMs (tests/fakes/cloudsim/vms.py); else records only
        self.vms = CloudVms(self.work, vm_rootfs) if with_vms else None
        self.token_ttl = int(token_ttl)
        self.aws_region = aws_region
        self.lock = threading.RLock()
        self.pki = make_server_pki(self.work)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.sim = self
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.pki["cert"], self.pki["key"])
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = "https://127.0.0.1:%d" % self.httpd.server_address[1]
        self.azure = dict(tenant_id="72f988bf-0000-4000-8000-00000000e2e0",
                          client_id="00000000-0000-4000-8000-0000000c11e7",
                          client_secret=secrets.token_urlsafe(24),
                          subscription_id="00000000-0000-4000-8000-00000005ab5c")
        self.aad_tokens = {}          # token -> expiry
        self.google_tokens = {}       # token -> expiry
        self.aks_tokens = {}          # cluster id -> static user token
        self.aws_secrets = {"testing": "testing"}   # access key id -> secret (the fake credentials)
        self.sa_key = ServiceAccountKey(gcp_project, self.url + "/google/token")
        self.sa_key_file = self.sa_key.write(os.path.join(self.work, "gcp-sa-key.json"))
        self.arm = SimArm(self)
        self.gke = SimGke(self)
        self.openstack = SimOpenStack(self, build_polls=1)
        self._seed_openstack()
        self.lbs = {}                 # (cluster id, namespace, name) -> record
        self.orphaned_lbs = []        # records of GKE load balancers left by a cluster deletion
        self._addresses = itertools.count(10)
        self.stats = dict(webhook_ok=0, webhook_denied=0, google_tokens=0, aad_tokens=0)
        self.denials = []
        self.moto = None
        self.moto_url = None
        self.aws = {}
        self.kube = KubeClusters(os.path.join(self.work, "kube"), tools_bin, self.url + "/sim/tokenreview",
                                 self.pki["ca"], self) if with_kube else _NoKube(self.pki["ca"])
        self._thread = None

    # --- start / stop ------------------------------------------------------------------
    def start(self):
        try:
            self._start_moto()
        except BaseException:
            if self.vms is not None:
                self.vms.shutdown()
            raise
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="https", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        try:
            self.kube.shutdown()
        finally:
            try:
                if self.vms is not None:
                    self.vms.shutdown()
            finally:
                self.httpd.shutdown()
                self.httpd.server_close()
                if self.moto is not None:
                    self.moto.stop()

    def _start_moto(self):
        from moto.server import ThreadedMotoServer
        _wrap_moto_eks(self)
        _wrap_moto_ec2(self)
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        self.moto_url = "http://%s:%d" % (host, port)
        self.aws = dict(endpoint_url=self.moto_url, region=self.aws_region, access_key_id="testing",
                        secret_access_key="testing")
        ec2 = self.boto("ec2")
        # with VMs, the VPC is the sim's VM range (its subnets become the VMs' bridges)
        vpc_cidr = str(self.vms.range) if self.vms else "10.20.0.0/16"
        subnet_cidr = (lambda i: str(self.vms.subnet(i))) if self.vms else (lambda i: "10.20.%d.0/24" % i)
        vpc = ec2.create_vpc(CidrBlock=vpc_cidr)["Vpc"]["VpcId"]
        subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=subnet_cidr(i),
                                     AvailabilityZone="%s%s" % (self.aws_region, az))["Subnet"]["SubnetId"]
                   for i, az in ((1, "a"), (2, "b"))]
        sgs = [ec2.create_security_group(GroupName="mesh-%d" % i, Description="mesh", VpcId=vpc)["GroupId"]
               for i in (1, 2)]
        try:  # one of moto's default AMIs (listing them all takes seconds)
            ami = ec2.describe_images(ImageIds=["ami-000662bbf33dad88b"])["Images"][0]["ImageId"]
        except Exception:
            ami = sorted(i["ImageId"] for i in ec2.describe_images(Owners=["amazon"])["Images"])[0]
        self.aws.update(vpc_id=vpc, subnet_ids=subnets, security_group_ids=sgs, ami=ami)

    def boto(self, service):
        import boto3
        return boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing",
            region_name=self.aws_region).client(service, endpoint_url=self.moto_url)

    def _seed_openstack(self):
        """What the example inventory's OpenStack VM group names: flavor and network."""
        os_ = self.openstack
        os_.flavors["f-medium"] = {"id": "f-medium", "name": "m1.medium", "vcpus": 2, "ram": 4096, "disk": 40}
        net, subnet = secrets.token_hex(16), secrets.token_hex(16)
        os_.networks[net] = {"id": net, "name": "billing-net", "router:external": False,
                             "status": "ACTIVE", "subnets": [subnet], "shared": False}
        cidr = str(self.vms.subnet(200)) if self.vms else "10.30.0.0/24"
        os_.subnets[subnet] = {"id": subnet, "network_id": net, "cidr": cidr, "ip_version": 4,
                               "name": "billing-subnet",
                               "gateway_ip": str(ipaddress.ip_network(cidr).network_address + 1)}

    def endpoints(self):
        return {
            "url": self.url, "ca_file": self.pki["ca"], "pid": os.getpid(), "work_dir": self.work,
            "inventory_url": self.url + "/sim/inventory", "token_ttl": self.token_ttl,
            "azure": dict(self.azure, authority_host=self.url, arm_endpoint=self.url),
            "gcp": {"api_endpoint": self.url, "credentials_file": self.sa_key_file,
                    "token_uri": self.sa_key.token_uri, "project": self.sa_key.project,
                    "client_email": self.sa_key.client_email},
            "aws": dict(self.aws),
            "openstack": {"clouds_yaml": self.clouds_yaml(), "cloud": "onprem",
                          "auth_url": self.url + "/openstack/keystone/v3"},
            # with VMs: the range every instance address is in, and each VM subnet (the host is .1)
            "vms": ({"range": str(self.vms.range), "subnets": {
                "ec2": dict((sid, self.boto("ec2").describe_subnets(SubnetIds=[sid])["Subnets"][0]["CidrBlock"])
                            for sid in self.aws["subnet_ids"]),
                "openstack": dict((n["name"], self.openstack.subnets[n["subnets"][0]]["cidr"])
                                  for n in self.openstack.networks.values()
                                  if n["subnets"] and n["subnets"][0] in self.openstack.subnets
                                  and ipaddress.ip_network(self.openstack.subnets[n["subnets"][0]]["cidr"])
                                  .subnet_of(self.vms.range))}}
                    if self.vms else None),
        }

    def clouds_yaml(self):
        path = os.path.join(self.work, "clouds.yaml")
        with open(path, "w") as f:
            f.write("clouds:\n  onprem:\n    auth:\n      auth_url: %s/openstack/keystone/v3\n"
                    "      username: demo\n      password: secret\n      project_name: demo\n"
                    "      user_domain_name: Default\n      project_domain_name: Default\n"
                    "    region_name: RegionOne\n    identity_api_version: 3\n    cacert: %s\n"
                    % (self.url, self.pki["ca"]))
        return path

    # --- dispatch ----------------------------------------------------------------------
    def dispatch(self, method, target, headers, body):
        url = urlparse(target)
        path = url.path
        if path.startswith("/sim/"):
            return self.sim_api(method, path, body)
        with self.lock:
            if path.startswith("/subscriptions/"):
                status, h, payload = self.arm.handle(method, self.url + target, headers, body)
                return status, h, json.dumps(payload).encode() if payload is not None else b""
            if path.startswith("/v1/projects/"):
                query = dict((k, v[0]) for k, v in parse_qs(url.query).items())
                status, payload, h = self.gke.handle(method, path, query, body, headers)
                return _json(status, payload, h)
            if path == "/google/token" and method == "POST":
                return self.google_token(body)
            if path.startswith("/openstack/"):
                return self.openstack_request(method, target, headers, body)
            if path.endswith("/v2.0/.well-known/openid-configuration") and method == "GET":
                return self.aad_openid(path)
            if path.endswith("/oauth2/v2.0/token") and method == "POST":
                return self.aad_token(path, body)
        return _json(404, {"error": "no route for %s %s" % (method, path)})

    # --- Azure AD ------------------------------------------------------------------------
    def _tenant_of(self, path):
        tenant = path.strip("/").split("/")[0]
        return tenant if tenant in (self.azure["tenant_id"], "organizations", "common") else None

    def aad_openid(self, path):
        tenant = self._tenant_of(path)
        if tenant is None:
            return _json(400, {"error": "invalid_tenant", "error_description":
                               "AADSTS90002: Tenant '%s' not found." % path.strip("/").split("/")[0]})
        base = "%s/%s" % (self.url, self.azure["tenant_id"])
        return _json(200, {
            "token_endpoint": base + "/oauth2/v2.0/token",
            "authorization_endpoint": base + "/oauth2/v2.0/authorize",
            "device_authorization_endpoint": base + "/oauth2/v2.0/devicecode",
            "issuer": base + "/v2.0", "jwks_uri": base + "/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "tenant_region_scope": "EU", "cloud_instance_name": "cloudsim.local"})

    def aad_token(self, path, body):
        form = dict((k, v[0]) for k, v in parse_qs((body or b"").decode()).items())
        if self._tenant_of(path) != self.azure["tenant_id"]:
            return _json(400, {"error": "invalid_request", "error_description":
                               "AADSTS90002: Tenant not found."})
        if form.get("grant_type") != "client_credentials":
            return _json(400, {"error": "unsupported_grant_type",
                               "error_description": "AADSTS70003: grant %s" % form.get("grant_type")})
        if form.get("client_id") != self.azure["client_id"]:
            return _json(400, {"error": "unauthorized_client", "error_description":
                               "AADSTS700016: Application with identifier '%s' was not found."
                               % form.get("client_id")})
        if form.get("client_secret") != self.azure["client_secret"]:
            return _json(401, {"error": "invalid_client", "error_description":
                               "AADSTS7000215: Invalid client secret provided."})
        token = "aad.%s" % secrets.token_urlsafe(32)
        self.aad_tokens[token] = time.time() + self.token_ttl
        self.stats["aad_tokens"] += 1
        return _json(200, {"token_type": "Bearer", "expires_in": self.token_ttl,
                           "ext_expires_in": self.token_ttl, "access_token": token})

    def check_aad_token(self, header):
        if not header.startswith("Bearer "):
            return False, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
        expiry = self.aad_tokens.get(header[len("Bearer "):])
        if expiry is None:
            return False, "InvalidAuthenticationToken", "The access token is invalid."
        if expiry < time.time():
            return False, "ExpiredAuthenticationToken", "The access token expiry UTC time is earlier than now."
        return True, None, None

    def aks_user_token(self, cid):
        if cid not in self.aks_tokens:
            self.aks_tokens[cid] = secrets.token_hex(32)
        return self.aks_tokens[cid]

    def aks_deleted(self, key, mc):
        """AKS deletes the node resource group, and the load balancers in it, with the cluster."""
        cid = SimArm.cid(key)
        self.aks_tokens.pop(cid, None)
        for k in [k for k in self.lbs if k[0] == cid]:
            self.lbs.pop(k)

    # --- Google ----------------------------------------------------------------------------
    def google_token(self, body):
        form = dict((k, v[0]) for k, v in parse_qs((body or b"").decode()).items())
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" or not form.get("assertion"):
            return _json(400, {"error": "unsupported_grant_type"})
        try:
            claims = self.sa_key.verify_jwt(form["assertion"])
        except ValueError as e:
            return _json(400, {"error": "invalid_grant", "error_description": str(e)})
        if claims.get("iss") != self.sa_key.client_email:
            return _json(400, {"error": "invalid_grant", "error_description": "Invalid JWT: unknown issuer"})
        # google-auth signs for Google's token URI whatever token_uri says; Google accepts both
        if claims.get("aud") not in (self.sa_key.token_uri, "https://oauth2.googleapis.com/token"):
            return _json(400, {"error": "invalid_grant", "error_description":
                               "Invalid JWT: audience %s is not the token URI" % claims.get("aud")})
        if claims.get("exp", 0) < time.time():
            return _json(400, {"error": "invalid_grant", "error_description":
                               "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe"})
        token = "ya29.sim-%s" % secrets.token_urlsafe(32)
        self.google_tokens[token] = time.time() + self.token_ttl
        self.stats["google_tokens"] += 1
        return _json(200, {"access_token": token, "expires_in": self.token_ttl, "token_type": "Bearer"})

    def google_token_valid(self, token):
        expiry = self.google_tokens.get(token)
        return expiry is not None and expiry > time.time()

    def gke_deleted(self, key, cluster):
        """GKE "will attempt" to delete the load balancers (not guaranteed): they are left."""
        cid = SimGke.cid(key)
        for k in [k for k in self.lbs if k[0] == cid]:
            self.orphaned_lbs.append(self.lbs.pop(k))

    # --- OpenStack ---------------------------------------------------------------------------
    def openstack_request(self, method, target, headers, body):
        parts = target.split("/", 3)            # '', 'openstack', service, rest
        service = parts[2] if len(parts) > 2 else ""
        if service.split("?")[0] not in OPENSTACK_BASES:
            return _json(404, {"error": "no OpenStack service %s" % service})
        base = OPENSTACK_BASES[service]
        url = base + "/" + (parts[3] if len(parts) > 3 else "")
        hdrs = dict((k, v) for k, v in headers.items() if k.lower() not in ("host", "content-length"))
        prepared = requests.Request(method, url, headers=hdrs, data=body or None).prepare()
        resp = self.openstack._match(requests_mock.request._RequestObjectProxy(prepared))
        if resp is None:
            return _json(404, {"error": "no route"})
        content = resp.content or b""
        for name, b in OPENSTACK_BASES.items():
            content = content.replace(b.encode(), ("%s/openstack/%s" % (self.url, name)).encode())
        h = dict((k, v) for k, v in resp.headers.items() if k.lower() != "content-length")
        return resp.status_code, h, content

    # --- token webhook ----------------------------------------------------------------------
    def token_review(self, cid, body):
        review = json.loads(body or b"{}")
        token = ((review.get("spec") or {}).get("token")) or ""
        user, why = self._authenticate(cid, token)
        status = {"authenticated": user is not None}
        if user is not None:
            status["user"] = user
            self.stats["webhook_ok"] += 1
        else:
            status["error"] = why
            self.stats["webhook_denied"] += 1
            self.denials.append("%s: %s" % (cid, why))
            del self.denials[:-50]
        return _json(200, {"apiVersion": review.get("apiVersion", "authentication.k8s.io/v1"),
                           "kind": "TokenReview", "status": status})

    def _authenticate(self, cid, token):
        provider = cid.split("/", 1)[0]
        masters = ["system:masters", "system:authenticated"]
        if provider == "aks":
            if token and self.aks_tokens.get(cid) == token:
                return dict(username="clusterUser", uid="aks-user", groups=masters), None
            return None, "not this AKS cluster's user token"
        if provider == "gke":
            expiry = self.google_tokens.get(token)
            if expiry is None:
                return None, "not an access token the Google token endpoint issued"
            if expiry < time.time():
                return None, "Google access token expired %.0fs ago" % (time.time() - expiry)
            return dict(username=self.sa_key.client_email, uid="gke-sa", groups=masters), None
        if provider == "eks":
            return self._eks_authenticate(cid.split("/", 1)[1], token)
        return None, "unknown cluster %s" % cid

    def _eks_authenticate(self, cluster, token):
        """aws-iam-authenticator's checks of a ``k8s-aws-v1.`` token, then STS GetCallerIdentity."""
        if not token.startswith(EKS_TOKEN_PREFIX):
            return None, "not a k8s-aws-v1 token"
        raw = token[len(EKS_TOKEN_PREFIX):]
        try:
            url = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return None, "token is not base64url"
        parsed = urlparse(url)
        if "%s://%s" % (parsed.scheme, parsed.netloc) != self.moto_url:
            return None, "presigned URL is not for this STS endpoint (%s)" % parsed.netloc
        q = dict((k.lower(), v[0]) for k, v in parse_qs(parsed.query).items())
        if q.get("action") != "GetCallerIdentity":
            return None, "presigned URL is not GetCallerIdentity"
        signed = (q.get("x-amz-signedheaders") or "").split(";")
        if "x-k8s-aws-id" not in signed:
            return None, "x-k8s-aws-id is not a signed header"
        try:
            expires = int(q.get("x-amz-expires", ""))
            signed_at = time.mktime(time.strptime(q.get("x-amz-date", ""), "%Y%m%dT%H%M%SZ")) - time.timezone
        except ValueError:
            return None, "X-Amz-Date / X-Amz-Expires missing or malformed"
        if expires > EKS_TOKEN_WINDOW:
            return None, "X-Amz-Expires %d is more than 900 seconds" % expires
        age = time.time() - signed_at
        if age > EKS_TOKEN_WINDOW or age < -60:
            return None, "token signed %.0fs ago: expired (valid 15 minutes)" % age
        problem = self._sigv4_problem(parsed, q, cluster)
        if problem:
            return None, "STS refused the presigned URL: " + problem
        # moto's server picks the service from an Authorization header's credential scope, not
        # from a presigned URL's X-Amz-Credential: repeat the scope there (moto checks no signature)
        auth = "AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=%s, Signature=%s" % (
            q.get("x-amz-credential", ""), q.get("x-amz-signedheaders", ""), q.get("x-amz-signature", ""))
        r = requests.get(url, headers={"x-k8s-aws-id": cluster, "Authorization": auth}, timeout=10,
                         proxies={"http": None, "https": None})
        if r.status_code != 200 or "<Arn>" not in r.text:
            return None, "STS GetCallerIdentity refused the token: HTTP %s" % r.status_code
        arn = r.text.split("<Arn>", 1)[1].split("</Arn>", 1)[0]
        return dict(username="kubernetes-admin", uid=arn, groups=["system:masters", "system:authenticated"],
                    extra={"arn": [arn]}), None

    def _sigv4_problem(self, parsed, q, cluster):
        """What STS would say about the URL's SigV4 query signature (moto's server checks none),
        with the ``x-k8s-aws-id`` header the API server's request carries; None when it verifies."""
        try:
            access_key, date, region, service, term = q["x-amz-credential"].split("/")
        except (KeyError, ValueError):
            return "malformed X-Amz-Credential"
        secret = self.aws_secrets.get(access_key)
        if secret is None:
            return "InvalidClientTokenId: the security token included in the request is invalid"
        signed = q.get("x-amz-signedheaders", "").split(";")
        headers = {"host": parsed.netloc, "x-k8s-aws-id": cluster}
        if any(h not in headers for h in signed):
            return "signed header outside host and x-k8s-aws-id: %s" % ";".join(signed)
        pairs = []
        for k, vals in parse_qs(parsed.query, keep_blank_values=True).items():
            if k != "X-Amz-Signature":
                pairs.append((quote(k, safe="-_.~"), quote(vals[0], safe="-_.~")))
        canonical = "\n".join([
            "GET", parsed.path or "/", "&".join("%s=%s" % kv for kv in sorted(pairs)),
            "".join("%s:%s\n" % (h, headers[h]) for h in signed), ";".join(signed),
            # botocore signs the (empty) payload of a presigned STS GET: its SHA-256
            hashlib.sha256(b"").hexdigest()])
        scope = "/".join([date, region, service, term])
        to_sign = "\n".join([
            "AWS4-HMAC-SHA256", q.get("x-amz-date", ""), scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = ("AWS4" + secret).encode()
        for part in (date, region, service, term):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        want = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, q.get("x-amz-signature", "")):
            return "SignatureDoesNotMatch"
        return None

    # --- fake cloud controller callbacks -----------------------------------------------------
    def create_lb(self, cid, svc):
        """Idempotent: the load balancer of a Service; returns its 127.0.0.x address."""
        meta = svc["metadata"]
        key = (cid, meta["namespace"], meta["name"])
        with self.lock:
            rec = self.lbs.get(key)
            if rec is not None:
                return rec["address"]
            n = next(self._addresses)
            if n > 250:
                raise RuntimeError("no loopback address left for load balancers")
            address = "127.0.0.%d" % n           # loopback only, never a routable address
            uid = hashlib.sha1(("%s/%s" % (cid, meta.get("uid"))).encode()).hexdigest()
            provider = cid.split("/", 1)[0]
            rec = dict(cluster=cid, namespace=meta["namespace"], service=meta["name"],
                       address=address, provider=provider)
            if provider == "eks":
                lb = self.boto("elbv2").create_load_balancer(
                    Name="k8s-%s" % uid[:28], Subnets=self.aws["subnet_ids"], Type="network",
                    Scheme="internet-facing", Tags=[{"Key": "kubernetes.io/cluster/%s" % cid.split("/")[1],
                                                     "Value": "owned"}])
                rec["id"] = lb["LoadBalancers"][0]["LoadBalancerArn"]
            elif provider == "aks":
                mc = next((c for k, c in self.arm.clusters.items() if SimArm.cid(k) == cid), None)
                group = "MC_%s_%s_%s" % (mc["id"].split("/")[4], mc["name"], mc["location"]) if mc else "MC_unknown"
                rec["id"] = ("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/"
                             "loadBalancers/kubernetes/frontendIPConfigurations/a%s"
                             % (self.azure["subscription_id"], group, uid[:32]))
            else:
                rec["id"] = "projects/%s/regions/-/forwardingRules/a%s" % (self.sa_key.project, uid[:31])
            self.lbs[key] = rec
            LOG.info("load balancer %s for %s/%s/%s at %s", rec["id"], cid, meta["namespace"],
                     meta["name"], address)
            return address

    def delete_lb(self, cid, svc):
        meta = svc["metadata"]
        with self.lock:
            rec = self.lbs.pop((cid, meta["namespace"], meta["name"]), None)
        if rec and rec["provider"] == "eks":
            self.boto("elbv2").delete_load_balancer(LoadBalancerArn=rec["id"])
        if rec:
            LOG.info("load balancer %s deleted", rec["id"])

    # --- /sim API ------------------------------------------------------------------------------
    def sim_api(self, method, path, body):
        if path.startswith("/sim/tokenreview/") and method == "POST":
            return self.token_review(path[len("/sim/tokenreview/"):], body)
        if path == "/sim/inventory" and method == "GET":
            with self.lock:
                return _json(200, self.inventory())
        if path == "/sim/health":
            return _json(200, {"ok": True})
        return _json(404, {"error": "no sim route %s" % path})

    def inventory(self):
        """Everything billable the fakes hold, plus the kwok clusters and token statistics."""
        from moto.ec2.models import ec2_backends
        from moto.eks.models import eks_backends
        from moto.elbv2.models import elbv2_backends
        eks, elbs, instances = [], [], []
        for _acct, regions in list(eks_backends.items()):
            for region, b in list(regions.items()):
                for name, c in b.clusters.items():
                    eks.append(dict(name=name, region=region, status=c.status, version=c.version,
                                    nodegroups={n: dict(status=g.status, scaling=g.scaling_config,
                                                        instance_types=g.instance_types)
                                                for n, g in c.nodegroups.items()}))
        for _acct, regions in list(elbv2_backends.items()):
            for region, b in list(regions.items()):
                for arn, lb in b.load_balancers.items():
                    elbs.append(dict(provider="eks", id=arn, name=lb.name, region=region))
        for _acct, regions in list(ec2_backends.items()):
            for region, b in list(regions.items()):
                for inst in b.all_instances():
                    if inst.state not in ("terminated",):
                        instances.append(dict(provider="ec2", id=inst.id, state=inst.state, region=region,
                                              tags=dict((t["key"], t["value"]) for t in inst.get_tags())
                                              if hasattr(inst, "get_tags") else {},
                                              addresses=[a for a in (inst.private_ip, inst.public_ip) if a]))
        servers = [dict(provider="openstack", id=s["id"], name=s["name"], state=s["status"],
                        addresses=[s["fixed_ip"]] + [f["floating_ip_address"] for f in self.openstack.fips.values()
                                                     if f.get("port_id") == s["port"]])
                   for s in self.openstack.servers.values() if s["status"] != "DELETED"]
        aks = [dict(name=k[2], resource_group=k[1], state=c["properties"].get("provisioningState"),
                    pools=[dict(name=p.get("name"), count=p.get("count"), vm_size=p.get("vmSize"),
                                mode=p.get("mode"))
                           for p in c["properties"].get("agentPoolProfiles") or []])
               for k, c in self.arm.clusters.items()]
        gke = [dict(name=k[2], project=k[0], location=k[1], status=c.get("status"),
                    pools=[dict(name=p.get("name"), count=p.get("initialNodeCount"),
                                machine_type=(p.get("config") or {}).get("machineType"))
                           for p in c.get("nodePools") or []])
               for k, c in self.gke.clusters.items()]
        lbs = [dict(r) for r in self.lbs.values() if r["provider"] != "eks"] + elbs \
            + [dict(r, orphaned=True) for r in self.orphaned_lbs]
        return {"clusters": {"aks": aks, "gke": gke, "eks": eks}, "kwok": self.kube.describe(),
                "load_balancers": lbs, "vms": instances + servers, "stats": dict(self.stats),
                # the netns VMs behind the instances (instance id -> name, address, user, state)
                "netns_vms": self.vms.describe() if self.vms else {},
                # when the last access token issued so far expires (epoch seconds)
                "tokens_expire": max(list(self.google_tokens.values()) + list(self.aad_tokens.values()) or [0]),
                "denials": list(self.denials[-10:])}


class SimOpenStack(openstack_http.FakeOpenStack):
    """The OpenStack fake behind the sim: with VMs, a server is a netns VM at its fixed address."""

    def __init__(self, sim, **kwargs):
        super(SimOpenStack, self).__init__(**kwargs)
        self.sim = sim

    def _create_server(self, req):
        status, payload, headers = super(SimOpenStack, self)._create_server(req)
        vms = self.sim.vms
        if vms is None or status != 202:
            return status, payload, headers
        server = self.servers[payload["server"]["id"]]
        image = self.images.get(server["image"]["id"]) or {}
        kp = self.keypairs.get(server.get("key_name") or "")
        subnet = self.subnets[self.networks[req["networks"][0]["uuid"]]["subnets"][0]]
        server["vm"] = "creating"

        def ready():
            server["vm"] = "running"

        def failed(msg):
            server.update(vm="failed", status="ERROR", fault={"code": 500, "message": msg})
        try:
            vms.launch(server["id"][:13], subnet["cidr"], server["fixed_ip"], default_user(image.get("name")),
                       kp["public_key"] if kp else "", ready, failed)
        except ValueError as e:
            failed(str(e))
        return status, payload, headers

    def server_ready(self, server):
        return self.sim.vms is None or server.get("vm") == "running"

    def server_deleted(self, server):
        if self.sim.vms is not None:
            self.sim.vms.remove(server["id"][:13])

    def _server_json(self, s):
        out = super(SimOpenStack, self)._server_json(s)
        if s.get("fault"):
            out["fault"] = dict(s["fault"], created="2026-01-01T00:00:00Z")
            out["OS-EXT-STS:vm_state"] = "error"
        return out


class _NoKube:
    """``with_kube=False`` (tests of the cloud APIs alone): a cluster is ready at once and its
    credentials point at a closed port (``https://127.0.0.1:9``) with the sim's CA."""

    def __init__(self, ca_file):
        with open(ca_file) as f:
            self.ca_pem = f.read()

    def ensure(self, cid):
        pass

    def ready(self, cid):
        return dict(server="https://127.0.0.1:9", ca_pem=self.ca_pem)

    def failed(self, cid):
        return None

    def delete(self, cid):
        pass

    def delete_async(self, cid):
        pass

    def exists(self, cid):
        return False

    def shutdown(self):
        pass

    def describe(self):
        return {}


def _wrap_moto_ec2(sim):
    """With VMs: RunInstances refuses an unknown key pair or AMI, as EC2 does (moto checks neither
    unless told), and each instance stays ``pending`` until its netns VM answers SSH at its private
    address, then is ``running`` (a VM that fails: ``terminated``, Server.InternalError);
    TerminateInstances deletes the VM."""
    from moto.ec2.models import EC2Backend
    from moto.ec2.models.instances import InstanceState, StateReason
    backend = EC2Backend
    backend._cloudsim = sim
    if getattr(backend, "_cloudsim_wrapped", False):
        return
    orig_add, orig_terminate = backend.run_instances, backend.terminate_instances

    def run_instances(self, image_id, count, user_data, security_group_names, **kwargs):
        csim = backend._cloudsim
        if csim is None or csim.vms is None:
            return orig_add(self, image_id, count, user_data, security_group_names, **kwargs)
        # EC2: InvalidKeyPair.NotFound "The key pair '<name>' does not exist" (RunInstances API
        # reference, errors); InvalidAMIID.NotFound for an unknown image
        if kwargs.get("key_name"):
            self.describe_key_pairs(key_names=[kwargs["key_name"]])
        self.describe_images(ami_ids=[image_id])
        reservation = orig_add(self, image_id, count, user_data, security_group_names, **kwargs)
        image = self.describe_images(ami_ids=[image_id])[0]
        for inst in reservation.instances:
            _launch_ec2_vm(csim, self, inst, image, InstanceState, StateReason)
        return reservation

    def terminate_instances(self, instance_ids):
        out = orig_terminate(self, instance_ids)
        csim = backend._cloudsim
        if csim is not None and csim.vms is not None:
            for inst, _previous in out:
                csim.vms.remove(inst.id)
        return out

    backend.run_instances = run_instances
    backend.terminate_instances = terminate_instances
    backend._cloudsim_wrapped = True


def _launch_ec2_vm(sim, backend, inst, image, InstanceState, StateReason):
    inst._state = InstanceState("pending", 0)
    key = backend.key_pairs.get(inst.key_name) if inst.key_name else None
    public = key.material_public.decode() if key is not None and isinstance(key.material_public, bytes) \
        else (key.material_public if key is not None else "")

    def ready():
        if inst._state.name == "pending":
            inst._state = InstanceState("running", 16)

    def failed(msg):
        inst._state = InstanceState("terminated", 48)
        inst.state_reason = StateReason("Server.InternalError: %s" % msg[:200], "Server.InternalError")
    if inst.public_ip:
        failed("cloudsim backs private addresses only (the instance got a public IP)")
        return
    subnet = backend.get_subnet(inst.subnet_id)
    try:
        sim.vms.launch(inst.id, subnet.cidr_block, inst.private_ip, default_user(getattr(image, "name", "")),
                       public, ready, failed)
    except ValueError as e:
        failed(str(e))


def _wrap_moto_eks(sim):
    """moto's EKS marks a cluster ACTIVE at once, with a made-up endpoint: keep it CREATING until
    its kwok cluster answers, then give that endpoint and CA; deleting it stops the kwok cluster."""
    from moto.eks import models
    backend = models.EKSBackend
    if getattr(backend, "_cloudsim_wrapped", False):
        backend._cloudsim = sim
        return
    orig_create, orig_delete, orig_describe = backend.create_cluster, backend.delete_cluster, backend.describe_cluster

    def create_cluster(self, name, *args, **kwargs):
        cluster = orig_create(self, name, *args, **kwargs)
        cluster.status = "CREATING"
        cluster.endpoint = None
        cluster.certificate_authority = {}
        backend._cloudsim.kube.ensure("eks/%s" % name)
        return cluster

    def describe_cluster(self, name):
        cluster = orig_describe(self, name)
        if cluster.status == "CREATING":
            kube = backend._cloudsim.kube.ready("eks/%s" % name)
            failed = backend._cloudsim.kube.failed("eks/%s" % name)
            if kube is not None:
                cluster.status = "ACTIVE"
                cluster.endpoint = kube["server"]
                cluster.certificate_authority = {"data": base64.b64encode(kube["ca_pem"].encode()).decode()}
            elif failed:
                cluster.status = "FAILED"
        return cluster

    def delete_cluster(self, name):
        cluster = orig_delete(self, name)
        backend._cloudsim.kube.delete_async("eks/%s" % name)
        return cluster

    backend.create_cluster = create_cluster
    backend.describe_cluster = describe_cluster
    backend.delete_cluster = delete_cluster
    backend._cloudsim = sim
    backend._cloudsim_wrapped = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cloudsim"

    def log_message(self, fmt, *args):
        LOG.debug("%s %s", self.address_string(), fmt % args)

    def _serve(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            status, headers, content = self.server.sim.dispatch(
                self.command, self.path, dict(self.headers.items()), body)
        except Exception as e:
            LOG.exception("%s %s", self.command, self.path)
            status, headers, content = _json(500, {"error": "cloudsim: %s" % e})
        if isinstance(content, str):
            content = content.encode()
        LOG.info("%s %s -> %s", self.command, self.path.split("?")[0], status)
        self.send_response(status)
        for k, v in (headers or {}).items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(content or b"")))
        self.end_headers()
        if content and self.command != "HEAD":
            self.wfile.write(content)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve
