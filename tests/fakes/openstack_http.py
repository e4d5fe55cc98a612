# -*- coding: utf-8 -*-
"""A fake OpenStack cloud (keystone v3, nova v2.1, neutron v2.0, glance v2) behind requests-mock.

There is no OpenStack emulator here, so the OpenStack tests run the real openstacksdk
(clouds.yaml loading, keystoneauth password auth and service catalog, version
discovery, microversions, the compute/network/image proxies and their waiters)
with requests-mock routing every request to this stateful model, which answers with
the APIs' JSON shapes: token + catalog, version documents, servers that go BUILD ->
ACTIVE, 404 ``itemNotFound`` / ``NotFound`` bodies, security groups and rules,
ports and floating IPs. Injected faults (``fail``) cover 409 conflicts and 429s.

:func:`clouds_yaml` writes a clouds.yaml that points at the fake keystone.
"""

from __future__ import absolute_import, division, print_function

import base64
import hashlib
import ipaddress
import itertools
import json
import re
import uuid
from urllib.parse import parse_qs, urlparse

import requests_mock

KEYSTONE = "http://keystone.fake.test:5000"
NOVA = "http://nova.fake.test:8774"
NEUTRON = "http://neutron.fake.test:9696"
GLANCE = "http://glance.fake.test:9292"
PROJECT_ID = "0123456789abcdef0123456789abcdef"
TOKEN = "gAAAAA-fake-keystone-token"


def clouds_yaml(path, cloud="fakecloud"):
    path.write_text(
        "clouds:\n  %s:\n    auth:\n      auth_url: %s/v3\n      username: demo\n      password: secret\n"
        "      project_name: demo\n      user_domain_name: Default\n      project_domain_name: Default\n"
        "    region_name: RegionOne\n    identity_api_version: 3\n" % (cloud, KEYSTONE))
    return str(path)


def _id():
    return str(uuid.uuid4())


def _fingerprint(public_key):
    """nova's MD5 fingerprint of an OpenSSH public key line, or None when it is not one."""
    parts = (public_key or "").split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-")):
        return None
    try:
        blob = base64.b64decode(parts[1].encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        return None
    digest = hashlib.md5(blob).hexdigest()  # nosec - nova's fingerprint format
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


class FakeOpenStack:
    def __init__(self, build_polls=1):
        self.log = []
        self.faults = []
        self.build_polls = build_polls
        self.ext_net = _id()
        self.images = {_id(): {"name": "ubuntu-24.04", "status": "active", "visibility": "public"}}
        self.flavors = {"f-small": {"name": "m1.small", "vcpus": 1, "ram": 2048, "disk": 20},
                        "f-large": {"name": "m1.large", "vcpus": 4, "ram": 8192, "disk": 80}}
        private = _id()
        self.networks = {
            private: {"name": "private", "router:external": False, "status": "ACTIVE",
                      "subnets": [_id()], "shared": False},
            self.ext_net: {"name": "public", "router:external": True, "status": "ACTIVE",
                           "subnets": [_id()], "shared": False},
        }
        self.private_net = private
        self.subnets = {
            self.networks[private]["subnets"][0]: {
                "network_id": private, "cidr": "10.0.0.0/24", "ip_version": 4, "name": "private-subnet"},
            self.networks[self.ext_net]["subnets"][0]: {
                "network_id": self.ext_net, "cidr": "172.24.4.0/24", "ip_version": 4, "name": "public-subnet"},
        }
        for k, v in self.subnets.items():
            v["id"] = k
        self.servers = {}
        self.keypairs = {}
        self.security_groups = {}
        self.rules = {}
        self.ports = {}
        self.fips = {}
        self._ip = itertools.count(10)
        self._subnet_ips = {}         # subnet id -> next host number
        for i, coll in enumerate((self.images, self.flavors, self.networks)):
            for k, v in coll.items():
                v["id"] = k

    # --- helpers ------------------------------------------------------------------------
    def fail(self, method, path_contains, status, message="injected", headers=None, times=1):
        self.faults.append(dict(method=method, path=path_contains, status=status, message=message,
                                headers=headers or {}, times=times))

    @property
    def writes(self):
        return [(m, u) for m, u in self.log if m in ("POST", "PUT", "DELETE", "PATCH")
                and "/auth/tokens" not in u]

    def add_keypair(self, name, public_key):
        """A key pair the user imported (``openstack keypair create --public-key``)."""
        self.keypairs[name] = {"name": name, "type": "ssh", "public_key": public_key.strip(),
                               "fingerprint": _fingerprint(public_key), "user_id": "u1"}
        return self.keypairs[name]

    # hooks for a fake that backs servers with machines (tests/fakes/cloudsim)
    def server_ready(self, server):
        """Whether a BUILD server may become ACTIVE (its polls done)."""
        return True

    def server_deleted(self, server):
        """Called when a server is deleted (DELETE /servers/<id>)."""

    def install(self, mocker):
        mocker.add_matcher(self._match)

    def _match(self, request):
        url = urlparse(request.url)
        base = "%s://%s" % (url.scheme, url.netloc)
        if base not in (KEYSTONE, NOVA, NEUTRON, GLANCE):
            return None
        self.log.append((request.method, base + url.path))
        query = dict((k, v[0] if len(v) == 1 else v) for k, v in parse_qs(url.query).items())
        body = json.loads(request.text) if request.text else None
        for fault in self.faults:
            if fault["times"] and fault["method"] == request.method and fault["path"] in url.path:
                fault["times"] -= 1
                return self._resp(request, fault["status"],
                                  {"error": {"code": fault["status"], "message": fault["message"]}},
                                  fault["headers"])
        if base == KEYSTONE:
            status, payload, headers = self.keystone(request, url.path, body)
        else:
            if request.headers.get("X-Auth-Token") != TOKEN:
                return self._resp(request, 401, {"error": {"code": 401, "message": "unauthenticated"}})
            handler = {NOVA: self.nova, NEUTRON: self.neutron, GLANCE: self.glance}[base]
            status, payload, headers = handler(request.method, url.path, query, body)
        return self._resp(request, status, payload, headers)

    @staticmethod
    def _resp(request, status, payload, headers=None):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        if payload is None:
            return requests_mock.create_response(request, status_code=status, headers=h, content=b"")
        return requests_mock.create_response(request, status_code=status, json=payload, headers=h)

    # --- keystone -----------------------------------------------------------------------
    def keystone(self, request, path, body):
        if path in ("", "/"):
            return 300, {"versions": {"values": [self._version_doc("v3.14", KEYSTONE + "/v3/")]}}, {}
        if path in ("/v3", "/v3/"):
            return 200, {"version": self._version_doc("v3.14", KEYSTONE + "/v3/")}, {}
        if path == "/v3/auth/tokens" and request.method == "POST":
            pw = body["auth"]["identity"]["password"]["user"]
            if pw.get("name") != "demo" or pw.get("password") != "secret":
                return 401, {"error": {"code": 401, "message": "The request you have made requires "
                                                               "authentication.", "title": "Unauthorized"}}, {}

            def ep(url, svc, typ):
                return {"id": _id(), "type": typ, "name": svc, "endpoints": [
                    {"id": _id(), "interface": "public", "region": "RegionOne", "region_id": "RegionOne",
                     "url": url}]}
            token = {"token": {
                "methods": ["password"], "expires_at": "2099-01-01T00:00:00.000000Z",
                "issued_at": "2026-01-01T00:00:00.000000Z",
                "user": {"id": "u1", "name": "demo", "domain": {"id": "default", "name": "Default"}},
                "project": {"id": PROJECT_ID, "name": "demo", "domain": {"id": "default", "name": "Default"}},
                "roles": [{"id": "r1", "name": "member"}],
                "catalog": [ep(KEYSTONE + "/v3", "keystone", "identity"),
                            ep(NOVA + "/v2.1", "nova", "compute"),
                            ep(NEUTRON, "neutron", "network"),
                            ep(GLANCE, "glance", "image")]}}
            return 201, token, {"X-Subject-Token": TOKEN}
        return 404, {"error": {"code": 404, "message": "not found"}}, {}

    @staticmethod
    def _version_doc(vid, href, **extra):
        doc = {"id": vid, "status": "CURRENT", "links": [{"rel": "self", "href": href}],
               "updated": "2024-01-01T00:00:00Z"}
        doc.update(extra)
        return doc

    # --- nova ---------------------------------------------------------------------------
    def nova(self, method, path, query, body):
        if path in ("", "/"):
            return 300, {"versions": [self._version_doc("v2.1", NOVA + "/v2.1/", version="2.96",
                                                        min_version="2.1")]}, {}
        if path in ("/v2.1", "/v2.1/"):
            return 200, {"version": self._version_doc("v2.1", NOVA + "/v2.1/", version="2.96",
                                                      min_version="2.1")}, {}
        path = path[len("/v2.1"):]
        m = re.match(r"^/flavors(?:/detail)?$", path)
        if m and method == "GET":
            items = [dict(f, **{"os-flavor-access:is_public": True, "OS-FLV-EXT-DATA:ephemeral": 0,
                                "links": []}) for f in self.flavors.values()]
            return 200, {"flavors": items}, {}
        m = re.match(r"^/flavors/([^/]+)$", path)
        if m and method == "GET":
            f = self.flavors.get(m.group(1))
            if not f:
                return 404, {"itemNotFound": {"code": 404, "message": "Flavor %s could not be found."
                                              % m.group(1)}}, {}
            return 200, {"flavor": dict(f, links=[])}, {}
        m = re.match(r"^/flavors/([^/]+)/os-extra_specs$", path)
        if m:
            return 200, {"extra_specs": {}}, {}
        if path in ("/servers/detail", "/servers") and method == "GET":
            self._progress()
            items = list(self.servers.values())
            if "name" in query:
                items = [s for s in items if re.search(query["name"], s["name"])]
            return 200, {"servers": [self._server_json(s) for s in items]}, {}
        if path == "/servers" and method == "POST":
            return self._create_server(body["server"])
        m = re.match(r"^/servers/([^/]+)$", path)
        if m:
            server = self.servers.get(m.group(1))
            if server is None:
                return 404, {"itemNotFound": {"code": 404, "message": "Instance %s could not be found."
                                              % m.group(1)}}, {}
            if method == "GET":
                self._progress()
                if server["id"] not in self.servers:
                    return 404, {"itemNotFound": {"code": 404, "message": "Instance could not be found."}}, {}
                return 200, {"server": self._server_json(server)}, {}
            if method == "DELETE":
                server["status"] = "DELETED"
                server["task_state"] = "deleting"
                self.server_deleted(server)
                return 204, None, {}
        if path == "/os-keypairs" and method == "GET":
            return 200, {"keypairs": [{"keypair": dict(k)} for k in self.keypairs.values()]}, {}
        if path == "/os-keypairs" and method == "POST":
            return self._create_keypair((body or {}).get("keypair") or {})
        m = re.match(r"^/os-keypairs/([^/]+)$", path)
        if m and method in ("GET", "DELETE"):
            kp = self.keypairs.get(m.group(1))
            if kp is None:
                # nova/api/openstack/compute/keypairs.py: KeypairNotFound -> 404
                return 404, {"itemNotFound": {"code": 404, "message": "Keypair %s not found for user u1"
                                              % m.group(1)}}, {}
            if method == "DELETE":
                self.keypairs.pop(m.group(1))
                return 202, None, {}
            return 200, {"keypair": dict(kp)}, {}
        return 404, {"itemNotFound": {"code": 404, "message": "no route %s %s" % (method, path)}}, {}

    def _progress(self):
        """BUILD -> ACTIVE after ``build_polls`` reads; DELETED servers vanish on the next read."""
        for sid, s in list(self.servers.items()):
            if s["status"] == "BUILD":
                if s["polls"] > 0:
                    s["polls"] -= 1
                elif self.server_ready(s):
                    s["status"] = "ACTIVE"
            elif s["status"] == "DELETED":
                if s.get("gone_next"):
                    self.servers.pop(sid)
                    for pid, p in list(self.ports.items()):
                        if p["device_id"] == sid:
                            self.ports.pop(pid)
                else:
                    s["gone_next"] = True

    def _create_server(self, req):
        if req.get("imageRef") not in self.images:
            return 400, {"badRequest": {"code": 400, "message": "Can not find requested image"}}, {}
        if req.get("flavorRef") not in self.flavors:
            return 400, {"badRequest": {"code": 400, "message": "Flavor %s could not be found."
                                        % req.get("flavorRef")}}, {}
        for sg in req.get("security_groups") or []:
            if not any(g["name"] == sg["name"] for g in self.security_groups.values()):
                return 400, {"badRequest": {"code": 400, "message": "Security group %s not found."
                                            % sg["name"]}}, {}
        if req.get("key_name") and req["key_name"] not in self.keypairs:
            # nova/api/openstack/compute/servers.py create(): KeypairNotFound -> 400
            return 400, {"badRequest": {"code": 400, "message": "Invalid key_name provided."}}, {}
        sid = _id()
        net = self.networks[req["networks"][0]["uuid"]]
        ip = self._allocate_ip(net)
        port = _id()
        self.ports[port] = {"id": port, "device_id": sid, "network_id": net["id"], "status": "ACTIVE",
                            "fixed_ips": [{"subnet_id": net["subnets"][0], "ip_address": ip}],
                            "device_owner": "compute:nova", "name": ""}
        self.servers[sid] = {
            "id": sid, "name": req["name"], "status": "BUILD", "polls": self.build_polls,
            "image": {"id": req["imageRef"]}, "flavor_id": req["flavorRef"],
            "key_name": req.get("key_name"), "metadata": req.get("metadata") or {},
            "security_groups": req.get("security_groups") or [{"name": "default"}],
            "network": net["name"], "fixed_ip": ip, "port": port, "tenant_id": PROJECT_ID}
        return 202, {"server": {"id": sid, "links": [], "OS-DCF:diskConfig": "MANUAL",
                                "security_groups": self.servers[sid]["security_groups"],
                                "adminPass": "fake-admin-pass"}}, {}

    def _allocate_ip(self, net):
        """The next address of the network's first subnet (.10, .11, ...; .1 is its gateway)."""
        subnet = self.subnets.get((net.get("subnets") or [None])[0])
        if subnet is None:
            return "10.0.0.%d" % next(self._ip)
        n = self._subnet_ips.get(subnet["id"], 10)
        self._subnet_ips[subnet["id"]] = n + 1
        return str(ipaddress.ip_network(subnet["cidr"]).network_address + n)

    def _create_keypair(self, req):
        name = req.get("name")
        if not name or not re.match(r"^[A-Za-z0-9_ .-]{1,255}$", name):
            return self._bad("Keypair data is invalid: Keypair name contains unsafe characters")
        if name in self.keypairs:
            # nova KeyPairExists -> 409
            return 409, {"conflictingRequest": {"code": 409, "message": "Key pair '%s' already exists." % name}}, {}
        public = req.get("public_key")
        if not public:
            return self._bad("this fake imports key pairs only (give public_key)")
        if _fingerprint(public) is None:
            return self._bad("Keypair data is invalid: failed to generate fingerprint")
        return 200, {"keypair": dict(self.add_keypair(name, public))}, {}

    @staticmethod
    def _bad(message):
        return 400, {"badRequest": {"code": 400, "message": message}}, {}

    def _server_json(self, s):
        f = self.flavors[s["flavor_id"]]
        addrs = [{"version": 4, "addr": s["fixed_ip"], "OS-EXT-IPS:type": "fixed",
                  "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01"}]
        for fip in self.fips.values():
            if fip.get("port_id") == s["port"]:
                addrs.append({"version": 4, "addr": fip["floating_ip_address"], "OS-EXT-IPS:type": "floating",
                              "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01"})
        return {
            "id": s["id"], "name": s["name"], "status": s["status"], "tenant_id": PROJECT_ID,
            "user_id": "u1", "metadata": s["metadata"], "key_name": s["key_name"],
            "image": {"id": s["image"]["id"], "links": []},
            "flavor": {"original_name": f["name"], "vcpus": f["vcpus"], "ram": f["ram"], "disk": f["disk"],
                       "ephemeral": 0, "swap": 0, "extra_specs": {}},
            "addresses": {s["network"]: addrs}, "accessIPv4": "", "accessIPv6": "",
            "security_groups": s["security_groups"], "OS-EXT-STS:task_state": s.get("task_state"),
            "OS-EXT-STS:vm_state": "active" if s["status"] == "ACTIVE" else "building",
            "created": "2026-01-01T00:00:00Z", "updated": "2026-01-01T00:00:00Z", "links": [],
            "hostId": "h1", "progress": 0, "locked": False, "tags": [], "description": None,
        }

    # --- glance -------------------------------------------------------------------------
    def glance(self, method, path, query, body):
        if path in ("", "/"):
            return 300, {"versions": [self._version_doc("v2.16", GLANCE + "/v2/")]}, {}
        m = re.match(r"^/v2/images/([^/]+)$", path)
        if m and method == "GET":
            img = self.images.get(m.group(1))
            if not img:
                return 404, None, {"Content-Type": "text/html"}
            return 200, img, {}
        if path == "/v2/images" and method == "GET":
            items = list(self.images.values())
            if "name" in query:
                items = [i for i in items if i["name"] == query["name"]]
            return 200, {"images": items, "first": "/v2/images", "schema": "/v2/schemas/images"}, {}
        return 404, None, {}

    # --- neutron ------------------------------------------------------------------------
    NEUTRON_COLLECTIONS = {"networks": "network", "security-groups": "security_group",
                           "security-group-rules": "security_group_rule", "ports": "port",
                           "floatingips": "floatingip", "subnets": "subnet"}

    def _store(self, plural):
        return {"networks": self.networks, "security-groups": self.security_groups,
                "security-group-rules": self.rules, "ports": self.ports, "floatingips": self.fips,
                "subnets": self.subnets}[plural]

    def neutron(self, method, path, query, body):
        if path in ("", "/"):
            return 200, {"versions": [self._version_doc("v2.0", NEUTRON + "/v2.0/")]}, {}
        m = re.match(r"^/v2\.0/([a-z-]+)(?:/([^/]+))?$", path)
        if not m or m.group(1) not in self.NEUTRON_COLLECTIONS:
            return 404, {"NeutronError": {"type": "HTTPNotFound", "message": "no route %s" % path}}, {}
        plural, rid = m.group(1), m.group(2)
        singular = self.NEUTRON_COLLECTIONS[plural]
        store = self._store(plural)
        if rid is None and method == "GET":
            self._progress()
            items = list(store.values())
            for k, v in query.items():
                if k in ("fields", "limit", "marker", "sort_key", "sort_dir"):
                    continue
                if k == "router:external":
                    v = v in ("True", "true", True)
                items = [i for i in items if str(i.get(k)) == str(v) or i.get(k) == v]
            return 200, {plural.replace("-", "_"): items}, {}
        if rid is None and method == "POST":
            return self._neutron_create(plural, singular, body[singular])
        item = store.get(rid)
        if item is None:
            return 404, {"NeutronError": {"type": "%sNotFound" % singular.title().replace("_", ""),
                                          "message": "%s %s could not be found." % (singular, rid),
                                          "detail": ""}}, {}
        if method == "GET":
            return 200, {singular: item}, {}
        if method == "PUT":
            item.update(body[singular])
            if singular == "floatingip":
                port = self.ports.get(item.get("port_id"))
                item["fixed_ip_address"] = port["fixed_ips"][0]["ip_address"] if port else None
                item["status"] = "ACTIVE" if port else "DOWN"
            return 200, {singular: item}, {}
        if method == "DELETE":
            if plural == "security-groups" and any(
                    any(g["name"] == item["name"] for g in s["security_groups"]) for s in self.servers.values()):
                return 409, {"NeutronError": {"type": "SecurityGroupInUse", "message":
                                              "Security Group %s in use." % rid, "detail": ""}}, {}
            store.pop(rid)
            if plural == "security-groups":
                for k in [k for k, r in self.rules.items() if r["security_group_id"] == rid]:
                    self.rules.pop(k)
            return 204, None, {}
        return 405, None, {}

    def _neutron_create(self, plural, singular, req):
        rid = _id()
        item = dict(req, id=rid, project_id=PROJECT_ID, tenant_id=PROJECT_ID)
        if plural == "security-groups":
            if any(g["name"] == req["name"] for g in self.security_groups.values()):
                return 409, {"NeutronError": {"type": "Conflict", "message": "exists", "detail": ""}}, {}
            item.update(security_group_rules=[], stateful=True, tags=[])
        elif plural == "security-group-rules":
            if req["security_group_id"] not in self.security_groups:
                return 404, {"NeutronError": {"type": "SecurityGroupNotFound", "message": "no group"}}, {}
            # neutron refuses a remote_ip_prefix that is not a CIDR, and one whose IP version is not
            # the rule's ethertype: 400 "Conflicting value ethertype IPv4 for CIDR ::/0"
            # (neutron API reference, security-group-rules; neutron/db/securitygroups_db.py
            # _validate_ip_prefix)
            prefix = req.get("remote_ip_prefix")
            if prefix is not None:
                try:
                    net = ipaddress.ip_network(prefix, strict=False)
                except ValueError:
                    return 400, {"NeutronError": {"type": "HTTPBadRequest", "message":
                                                  "Invalid input for remote_ip_prefix. Reason: '%s' is not a valid "
                                                  "IP subnet." % prefix, "detail": ""}}, {}
                if "IPv%d" % net.version != req.get("ethertype", "IPv4"):
                    return 400, {"NeutronError": {"type": "SecurityGroupConflictingValue", "message":
                                                  "Conflicting value ethertype %s for CIDR %s"
                                                  % (req.get("ethertype", "IPv4"), prefix), "detail": ""}}, {}
            for r in self.rules.values():
                if all(r.get(k) == req.get(k) for k in ("security_group_id", "direction", "protocol",
                                                        "port_range_min", "port_range_max",
                                                        "remote_ip_prefix")):
                    return 409, {"NeutronError": {"type": "SecurityGroupRuleExists",
                                                  "message": "Security group rule already exists. Rule id "
                                                             "is %s." % r["id"], "detail": ""}}, {}
        elif plural == "floatingips":
            item.update(floating_ip_address="172.24.4.%d" % next(self._ip), status="DOWN",
                        port_id=req.get("port_id"), fixed_ip_address=None, router_id=None)
        self._store(plural)[rid] = item
        return 201, {singular: item}, {}
