# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mesh topology file (``*.meshfleet.yml``): normalise and validate it.

Pure Python, shared by the inventory plugin ``meshfleet.mesh.topology`` (which
loads the file and turns it into hosts, groups and vars) and the module
``meshfleet.mesh.topology_validate`` (which re-checks ``meshfleet_topology``
before a play changes anything). docs/topology.md is the contract.

- :func:`validate` returns one message per problem, each starting with the dotted
  path of the offending field (``clusters.cluster-2.provider: ...``). It never
  raises on bad input, whatever its types.
- :func:`normalise` fills the defaults in without changing or dropping anything
  it does not understand, so ``validate(normalise(t)) == validate(t)``.
- :class:`TopologyLoader` / :func:`find_duplicate_keys`: YAML mappings silently
  keep the last of two equal keys (two ``cluster1:`` entries become one cluster);
  these find every duplicate, with its path and lines.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import ipaddress
import os
import re

try:  # only the loader needs PyYAML; normalise/validate do not
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover - PyYAML is a controller dependency
    yaml = None
    HAS_YAML = False

from collections.abc import Mapping

string_types = (str,)

# --- vocabulary ----------------------------------------------------------------

CLUSTER_PROVIDERS = ("aks", "eks", "gke", "kwok", "minikube")
VM_PROVIDERS = ("ec2", "existing", "netns", "openstack")
ROLES = ("primary", "remote")
CA_KEY_TYPES = ("ecdsa-p256", "rsa-2048", "rsa-4096")

#: Settings each provider cannot work without (``clusters.<c>.settings`` for the
#: cluster providers, ``vm_groups.<g>.settings`` for the VM providers).
#: The providers in module_utils/providers and module_utils/vm_providers use
#: exactly these names; docs/providers.md documents them.
REQUIRED_SETTINGS = {
    # cluster providers
    "kwok": (),
    "minikube": (),
    "aks": ("resource_group", "location"),
    "gke": ("project", "location"),
    "eks": ("region", "role_arn", "subnet_ids"),
    # VM providers
    "existing": (),
    "openstack": ("cloud", "image", "flavor", "network"),
    "ec2": ("region", "ami", "instance_type", "subnet_id"),
    "netns": ("subnet",),
}

#: Every setting a provider accepts (required and optional) and its type. A key not
#: listed here is reported as unknown (typo protection): add new settings here.
#: Types: str, int (positive), count (0 or more), bool, list, str_list, dict, ip,
#: size (int or str), cidr (an IPv4 network such as 10.77.0.0/24, /30 or larger),
#: cidr_list (a list of IPv4/IPv6 networks: security group sources).
SETTING_TYPES = {
    "kwok": dict(bind_address="ip", nodes="int", tools_bin="str", apiserver_extra_args="dict"),
    "minikube": dict(profile="str", driver="str", kubernetes_version="str", cpus="int",
                     memory="size", minikube_path="str"),
    "aks": dict(resource_group="str", location="str", subscription_id="str",
                kubernetes_version="str", dns_prefix="str", node_pools="list",
                network_profile="dict", tags="dict", arm_endpoint="str",
                cloud_environment="str"),
    "gke": dict(project="str", location="str", release_channel="str",
                kubernetes_version="str", node_pools="list", network="str",
                subnetwork="str", workload_identity="bool", credentials_file="str",
                api_endpoint="str", credential_plugin="str"),
    "eks": dict(region="str", role_arn="str", subnet_ids="str_list", kubernetes_version="str",
                security_group_ids="str_list", node_group="dict", tags="dict",
                endpoint_url="str", credential_plugin="str"),
    "existing": dict(),
    "openstack": dict(cloud="str", image="str", flavor="str", network="str", key_name="str",
                      security_group="str", floating_ip="bool", count="count",
                      ssh_cidrs="cidr_list", mesh_cidrs="cidr_list"),
    "ec2": dict(region="str", ami="str", instance_type="str", subnet_id="str", key_name="str",
                security_group_ids="str_list", count="count", endpoint_url="str", tags="dict",
                ssh_cidrs="cidr_list", mesh_cidrs="cidr_list"),
    "netns": dict(subnet="cidr", count="count", rootfs_cache="str"),
}
#: AKS: the keys of one ``node_pools`` item and of ``network_profile``, and the Azure clouds
#: ``cloud_environment`` names (providers/aks.py maps them to ARM endpoints and authorities).
AKS_POOL_KEYS = ("name", "vm_size", "count", "mode", "min_count", "max_count", "enable_auto_scaling")
AKS_POOL_MODES = ("System", "User")
AKS_NETWORK_KEYS = ("network_plugin", "network_plugin_mode", "pod_cidr", "service_cidr",
                    "dns_service_ip")
AKS_NETWORK_PLUGINS = ("azure", "kubenet", "none")
AKS_CLOUD_ENVIRONMENTS = ("AzurePublicCloud", "AzureChinaCloud", "AzureUSGovernment")
#: an AKS (Linux) node pool name: a lowercase letter, then lowercase letters and digits, 12 at most
AKS_POOL_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
#: Settings whose value is one of a few words (kept equal to exec_credential.PLUGINS; a
#: unit test compares them).
SETTING_CHOICES = {
    "eks": dict(credential_plugin=("meshfleet", "aws-cli", "aws-iam-authenticator", "static")),
    "gke": dict(credential_plugin=("meshfleet", "gke-gcloud-auth-plugin", "static")),
}
#: The VM providers create ``settings.count`` VMs named ``<group>-1`` .. ``<group>-<count>``
#: (netns: the group's listed hosts when there are any, else those names).
DEFAULT_VM_COUNT = 1
#: Providers whose VMs this project makes from ``settings.count`` (and the host names).
CLOUD_VM_PROVIDERS = ("ec2", "openstack")

DEFAULT_TRUST_DOMAIN = "cluster.local"
#: The Istio minor the pinned istioctl renders: its charts, istiod and the build's own image
#: tag (tools/versions.env: ISTIO_BUILD_VERSION 1.30-dev, istio.io/istio release-1.30).
#: ``mesh.istio.version`` must name this minor; tests/unit check it against versions.env.
ISTIO_SUPPORTED_MINOR = "1.30"
#: The published release of that minor the pinned source is (istio.io/client-go v1.30.4 is
#: the pinned commit, see tools/versions.env): the default ``mesh.istio.version`` of a mesh
#: with a cluster that pulls images, and the release messages suggest.
ISTIO_DEFAULT_RELEASE = "1.30.4"
#: The default ``mesh.istio.version`` when every cluster is local (kwok): nodes there never
#: pull images, so the manifests keep istioctl's own build identity (registry.istio.io/release,
#: 1.30-dev). Only such meshes may name a version that is not a release.
DEFAULT_ISTIO_VERSION = ISTIO_SUPPORTED_MINOR
#: Where a release's images (pilot, proxyv2) come from unless mesh.istio.hub names a mirror.
DEFAULT_ISTIO_HUB = "docker.io/istio"
#: Cluster providers whose nodes never pull an image (kwok: fake nodes, istiod runs on the
#: controller). Every other provider pulls istiod, gateway and sidecar images from the hub.
LOCAL_CLUSTER_PROVIDERS = ("kwok",)
DEFAULT_STATE_DIR = ".meshfleet"
#: Environment variable that sets the mesh state dir for every topology read in this process,
#: over ``mesh.state_dir`` (e.g. a persistent volume in AWX/AAP, docs/awx.md); a relative path
#: is relative to the topology file's folder, as ``mesh.state_dir`` is.
STATE_DIR_ENV = "MESHFLEET_STATE_DIR"
DEFAULT_CA = dict(key_type="ecdsa-p256", root_days=3650, intermediate_days=730,
                  renew_before_days=30, root_cert_file=None, root_key_file=None)
DEFAULT_FEATURES = dict(vm_auto_registration=True, vm_health_checks=True, dns_capture=True)

# --- limits on hostile input ---------------------------------------------------------
#: a topology file is a few KB; anything over this is refused before it is parsed
MAX_FILE_BYTES = 1024 * 1024
#: YAML nodes after aliases are expanded (an alias "bomb" of ~1 KB expands to billions)
MAX_YAML_NODES = 100000
MAX_YAML_ALIASES = 100
MAX_YAML_DEPTH = 50
#: how much of a value, a key path and a whole message a message may quote
MAX_SHOWN = 80
MAX_PATH_SHOWN = 200
MAX_MESSAGE = 2000
#: bounds of numbers read from the file: CA lifetimes (X.509 dates end in 9999; a root
#: beyond a century is a mistake), positive settings (nodes, cpus) and VM counts
MAX_CA_DAYS = 36525
MAX_SETTING_INT = 100000
MAX_VM_COUNT = 1000
#: host names Ansible itself or this plugin's own groups use: a cluster or VM of that name
#: would collide with a group (or with the controller, localhost)
RESERVED_HOST_NAMES = ("all", "ungrouped", "localhost", "clusters", "primaries", "remotes", "vms")

#: Options of the inventory plugin itself (they live in the same file).
PLUGIN_KEYS = ("plugin", "compose", "groups", "keyed_groups", "strict", "use_extra_vars",
               "leading_separator")
TOP_KEYS = ("mesh", "clusters", "networks", "vm_groups")
MESH_KEYS = ("id", "trust_domain", "istio", "state_dir", "ca", "features")
ISTIO_KEYS = ("version", "revision", "hub", "image_pull_secrets")
CLUSTER_KEYS = ("provider", "network", "role", "primary", "settings", "eastwest_address",
                "wait_timeouts")
#: operations of ``clusters.<c>.wait_timeouts`` (seconds each; module_utils/cluster.py has the
#: per-provider defaults)
WAIT_OPERATIONS = ("create", "update", "delete", "load_balancers")
NETWORK_KEYS = ("description",)
VM_GROUP_KEYS = ("namespace", "service_account", "cluster", "network", "provider", "settings",
                 "ports", "labels", "hosts")

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# MAJOR.MINOR or MAJOR.MINOR.PATCH, major 1, optional pre-release/build suffix
# (1.30, 1.30.2, 1.30-dev, 1.31.0-beta.1).
ISTIO_VERSION = re.compile(r"^1\.(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))?(-[0-9A-Za-z][0-9A-Za-z.-]*)?$")
# A published Istio release: MAJOR.MINOR.PATCH, optionally -alpha.N, -beta.N or -rc.N (the
# tags Istio publishes images under; "1.30", "1.30-dev", "latest" are not among them).
ISTIO_RELEASE = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-(alpha|beta|rc)\.(0|[1-9][0-9]*))?$")
# An image repository prefix without tag or digest: registry[:port]/path[/path...]
# (the distribution reference grammar: lowercase path components separated by . _ __ -).
_HUB_REGISTRY = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*(:[0-9]+)?"
_HUB_COMPONENT = r"[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*"
ISTIO_HUB = re.compile(r"^%s(/%s)+$" % (_HUB_REGISTRY, _HUB_COMPONENT))
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")

LABEL_RULE = ("a DNS-1123 label (lowercase letters, digits and '-', at most 63 characters, "
              "no leading or trailing '-')")


# --- small helpers ---------------------------------------------------------------

def is_mapping(value):
    return isinstance(value, Mapping)


def is_str(value):
    return isinstance(value, string_types)


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def is_dns_label(value):
    return is_str(value) and len(value) <= 63 and bool(DNS1123_LABEL.match(value))


def is_dns_subdomain(value):
    return is_str(value) and len(value) <= 253 and bool(DNS1123_SUBDOMAIN.match(value))


def is_ip(value):
    try:
        ipaddress.ip_address(u"%s" % value)
        return True
    except ValueError:
        return False


def is_hostname(value):
    """An RFC 1123 host name (case-insensitive), trailing dot allowed."""
    if not is_str(value) or not value or len(value) > 253:
        return False
    name = value[:-1] if value.endswith(".") else value
    labels = name.lower().split(".")
    # an all-numeric top label is an IPv4-looking string, not a name (RFC 3696 2.):
    # 10.0.0.300 is a bad address, not a host name
    return all(is_dns_label(part) for part in labels) and not labels[-1].isdigit()


def kind(value):
    """How a value's type reads in a message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if is_str(value):
        return "a string"
    if is_mapping(value):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return "a %s" % type(value).__name__


def clip(text, limit=None):
    """``text`` as it may stand in a message: a long one becomes its prefix and its length
    (a 5 MiB label value must not be echoed whole, several times)."""
    limit = MAX_SHOWN if limit is None else limit
    text = "%s" % (text,)
    if len(text) <= limit:
        return text
    return "%s... (%d characters)" % (text[:limit], len(text))


PLAIN_KEY = re.compile(r"^[^\s.:\[\]\"']+$")


def key_path(parent, key):
    """``parent.key`` as a message names it; a key that would not read as one path segment
    (empty, not a string, with spaces, dots or colons) is quoted."""
    text = "%s" % (key,) if is_str(key) and PLAIN_KEY.match(key) else show(key)
    if is_str(key) and text == show(key) and not text.startswith('"'):
        text = '"%s"' % text
    return "%s.%s" % (parent, text) if parent else text


def show(value):
    """A value as it should be quoted in a message (long values clipped)."""
    if is_str(value):
        return '"%s"' % clip(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return clip(value)


def one_of(choices):
    return ", ".join(sorted("%s" % (c,) for c in choices))


def did_you_mean(word, choices):
    if not is_str(word):
        return ""
    close = difflib.get_close_matches(word, [c for c in choices if is_str(c)], n=1, cutoff=0.6)
    return ' (did you mean "%s"?)' % close[0] if close else ""


def _missing(value):
    return value is None or (is_str(value) and not value.strip()) or value == [] or value == {}


def _float_hint(value):
    """YAML reads 1.30 as the number 1.3: tell the user to quote it."""
    if isinstance(value, float):
        return " (YAML reads an unquoted %s as a number: quote it)" % value
    return ""


def _copy(value):
    """Copy nested mappings/lists into plain dicts/lists, keeping the leaves."""
    if is_mapping(value):
        return dict((k, _copy(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_copy(v) for v in value]
    return value


def _resolve_path(path, base_dir):
    if not is_str(path) or not path:
        return path
    path = os.path.expanduser(path)
    if base_dir and not os.path.isabs(path):
        path = os.path.join(base_dir, path)
    return os.path.normpath(path)


def state_dir(configured, base_dir, environ=None):
    """The mesh state dir, the one place it is worked out: $MESHFLEET_STATE_DIR when set, else
    ``configured`` (``mesh.state_dir``), else .meshfleet; relative to ``base_dir``. A configured
    value that is not a path string is returned as it is (validate reports it)."""
    if configured is not None and not (is_str(configured) and configured.strip()):
        return configured
    env = (os.environ if environ is None else environ).get(STATE_DIR_ENV)
    if env:
        configured = env
    elif configured is None:
        configured = DEFAULT_STATE_DIR
    return _resolve_path(configured, base_dir)


# --- normalise ---------------------------------------------------------------------

def normalise(topology, base_dir=None):
    """Return a copy of ``topology`` with every default filled in.

    Values of the wrong type and unknown keys are kept as they are, so that
    :func:`validate` reports the same problems on the result as on the input.
    ``base_dir`` (the topology file's folder) makes ``mesh.state_dir`` and the CA
    file paths absolute.

    Defaults: ``mesh.trust_domain`` cluster.local, ``mesh.istio.version`` 1.30 when every
    cluster is local (kwok), else the release 1.30.4 (see :func:`default_istio_version`),
    ``mesh.istio.revision`` "" (the default, unrevisioned control plane),
    ``mesh.istio.hub`` docker.io/istio, ``mesh.istio.image_pull_secrets`` [],
    ``mesh.state_dir`` $MESHFLEET_STATE_DIR or .meshfleet (:func:`state_dir`), ``mesh.ca`` / ``mesh.features`` as in
    DEFAULT_CA / DEFAULT_FEATURES; a cluster's ``role`` primary, ``settings`` {},
    ``eastwest_address`` null and, for a primary, ``primary`` = itself; a VM
    group's ``namespace`` and ``service_account`` = the group name, ``network``
    = its cluster's network, ``provider`` existing, ``settings`` / ``ports`` /
    ``labels`` {}, ``hosts`` {} (a host without vars gets {}).
    """
    if not is_mapping(topology):
        return _copy(topology)
    topo = _copy(topology)

    # a missing mesh block stays missing (validate reports it); see mesh_defaults()
    mesh = topo.get("mesh")
    if is_mapping(mesh):
        mesh.setdefault("id", None)
        if mesh.get("trust_domain") is None:
            mesh["trust_domain"] = DEFAULT_TRUST_DOMAIN
        istio = mesh.get("istio")
        if istio is None:
            istio = mesh["istio"] = {}
        if is_mapping(istio):
            if istio.get("version") is None:
                istio["version"] = default_istio_version(topo.get("clusters"))
            if istio.get("revision") is None:
                istio["revision"] = ""
            if istio.get("hub") is None:
                istio["hub"] = DEFAULT_ISTIO_HUB
            if istio.get("image_pull_secrets") is None:
                istio["image_pull_secrets"] = []
        mesh["state_dir"] = state_dir(mesh.get("state_dir"), base_dir)
        ca = mesh.get("ca")
        if ca is None:
            ca = mesh["ca"] = {}
        if is_mapping(ca):
            for key, default in DEFAULT_CA.items():
                if ca.get(key) is None:
                    ca[key] = default
            for key in ("root_cert_file", "root_key_file"):
                ca[key] = _resolve_path(ca[key], base_dir)
        features = mesh.get("features")
        if features is None:
            features = mesh["features"] = {}
        if is_mapping(features):
            for key, default in DEFAULT_FEATURES.items():
                if features.get(key) is None:
                    features[key] = default

    clusters = topo.get("clusters")
    if clusters is None:
        clusters = topo["clusters"] = {}
    if is_mapping(clusters):
        for name, cluster in list(clusters.items()):
            if cluster is None:
                cluster = clusters[name] = {}
            if not is_mapping(cluster):
                continue
            cluster.setdefault("provider", None)
            cluster.setdefault("network", None)
            if cluster.get("role") is None:
                cluster["role"] = "primary"
            if cluster.get("primary") is None:
                cluster["primary"] = name if cluster["role"] == "primary" else None
            if cluster.get("settings") is None:
                cluster["settings"] = {}
            cluster.setdefault("eastwest_address", None)

    networks = topo.get("networks")
    if isinstance(networks, list) and all(is_str(n) for n in networks) \
            and len(set(networks)) == len(networks):
        topo["networks"] = dict((n, {}) for n in networks)
    elif is_mapping(networks):
        for name, value in list(networks.items()):
            if value is None:
                networks[name] = {}

    groups = topo.get("vm_groups")
    if groups is None:
        groups = topo["vm_groups"] = {}
    if is_mapping(groups):
        for name, group in list(groups.items()):
            if group is None:
                group = groups[name] = {}
            if not is_mapping(group):
                continue
            # defaults that would be invalid are left out, so that they add no problems
            for key in ("namespace", "service_account"):
                if group.get(key) is None:
                    group[key] = name if is_dns_label(name) else None
            group.setdefault("cluster", None)
            if group.get("network") is None:
                cluster = clusters.get(group["cluster"]) if is_mapping(clusters) and \
                    _hashable(group["cluster"]) else None
                network = cluster.get("network") if is_mapping(cluster) else None
                group["network"] = network if is_dns_label(network) else None
            if group.get("provider") is None:
                group["provider"] = "existing"
            for key in ("settings", "ports", "labels", "hosts"):
                if group.get(key) is None:
                    group[key] = {}
            hosts = group["hosts"]
            if is_mapping(hosts):
                for host, hostvars in list(hosts.items()):
                    if hostvars is None:
                        hosts[host] = {}
    return topo


def image_pulling_clusters(clusters):
    """["name (provider)", ...] of the clusters whose nodes pull Istio's images: every known
    cluster provider except the local ones (LOCAL_CLUSTER_PROVIDERS)."""
    if not is_mapping(clusters):
        return []
    return ["%s (%s)" % (name, c.get("provider")) for name, c in clusters.items()
            if is_mapping(c) and c.get("provider") in CLUSTER_PROVIDERS
            and c.get("provider") not in LOCAL_CLUSTER_PROVIDERS]


def default_istio_version(clusters):
    """``mesh.istio.version`` when the file gives none: the release ISTIO_DEFAULT_RELEASE when
    some cluster pulls images, else DEFAULT_ISTIO_VERSION (istioctl's own build identity)."""
    return ISTIO_DEFAULT_RELEASE if image_pulling_clusters(clusters) else DEFAULT_ISTIO_VERSION


def mesh_defaults(mesh=None, base_dir=None):
    """The normalised mesh block (defaults filled); {} stands in for a missing or bad one."""
    if not is_mapping(mesh):
        mesh = {}
    return normalise(dict(mesh=mesh), base_dir)["mesh"]


def _hashable(value):
    try:
        hash(value)
        return True
    except TypeError:
        return False


# --- validate --------------------------------------------------------------------

class _Problems(list):
    def add(self, path, msg):
        # a key can be as long as a value: both are clipped
        self.append("%s: %s" % (clip(path, MAX_PATH_SHOWN), clip(msg, MAX_MESSAGE)))

    def unknown_keys(self, path, mapping, allowed, what):
        for key in mapping:
            if key not in allowed:
                self.add(key_path(path, key),
                         "unknown %s key%s; expected one of %s" % (
                             what, did_you_mean(key, allowed), one_of(allowed)))

    def mapping(self, path, value, what, allow_none=False):
        """Report a value that is not a mapping; return whether it is usable."""
        if value is None and allow_none:
            return False
        if not is_mapping(value):
            self.add(path, "must be a mapping of %s, got %s" % (what, kind(value)))
            return False
        return True

    def label(self, path, value, what="name"):
        if not is_dns_label(value):
            self.add(path, "%s %s is not %s" % (what, show(value), LABEL_RULE))
            return False
        return True


def validate(topology):
    """Return the list of problems in ``topology`` (raw or normalised); [] when valid."""
    p = _Problems()
    if not is_mapping(topology):
        p.add("topology", "must be a mapping with the keys mesh, clusters and optionally "
                          "networks and vm_groups, got %s" % kind(topology))
        return p
    allowed = TOP_KEYS + PLUGIN_KEYS
    for key in topology:
        if key not in allowed:
            p.add(key_path("", key), "unknown top-level key%s; expected one of %s (or the "
                  "inventory plugin options %s)" % (did_you_mean(key, allowed),
                                                    one_of(TOP_KEYS + ("plugin",)),
                                                    one_of(PLUGIN_KEYS[1:])))
    _validate_mesh(p, topology.get("mesh"), "mesh" in topology)
    clusters = _validate_clusters(p, topology.get("clusters"))
    _validate_istio_release(p, topology.get("mesh"), topology.get("clusters"))
    _validate_networks(p, topology.get("networks"), clusters)
    _validate_vm_groups(p, topology.get("vm_groups"), clusters)
    return list(p)


def _validate_mesh(p, mesh, present):
    if not present or mesh is None:
        p.add("mesh", "missing; every topology needs a mesh block with at least id")
        return
    if not p.mapping("mesh", mesh, "mesh settings (id, trust_domain, istio, ...)"):
        return
    p.unknown_keys("mesh", mesh, MESH_KEYS, "mesh")

    mesh_id = mesh.get("id")
    if mesh_id is None:
        p.add("mesh.id", "missing; give the mesh an id such as mesh1 (a DNS-1123 label)")
    else:
        p.label("mesh.id", mesh_id, what="mesh id")

    td = mesh.get("trust_domain")
    if td is not None:
        problem = _trust_domain_problem(td)
        if problem:
            p.add("mesh.trust_domain", problem)

    istio = mesh.get("istio")
    if istio is not None and p.mapping("mesh.istio", istio, "Istio settings (version, revision, hub, "
                                                            "image_pull_secrets)"):
        p.unknown_keys("mesh.istio", istio, ISTIO_KEYS, "mesh.istio")
        version = istio.get("version")
        if version is not None and not (is_str(version) and ISTIO_VERSION.match(version)):
            p.add("mesh.istio.version", "unsupported Istio version %s%s; use a release as a quoted "
                  "string, MAJOR.MINOR.PATCH optionally with -alpha.N, -beta.N or -rc.N (\"%s\"), "
                  "or \"%s\" when every cluster is local (kwok)"
                  % (show(version), _float_hint(version), ISTIO_DEFAULT_RELEASE, ISTIO_SUPPORTED_MINOR))
        elif version is not None and _istio_minor(version) != ISTIO_SUPPORTED_MINOR:
            p.add("mesh.istio.version", "%s is Istio %s, but the pinned istioctl renders Istio %s "
                  "(its charts, istiod and images): use a %s release such as \"%s\""
                  % (show(version), _istio_minor(version), ISTIO_SUPPORTED_MINOR,
                     ISTIO_SUPPORTED_MINOR, ISTIO_DEFAULT_RELEASE))
        revision = istio.get("revision")
        if revision is not None and revision != "":
            p.label("mesh.istio.revision", revision, what="revision")
        hub = istio.get("hub")
        if hub is not None:
            problem = _istio_hub_problem(hub)
            if problem:
                p.add("mesh.istio.hub", problem)
        secrets = istio.get("image_pull_secrets")
        if secrets is not None:
            _validate_image_pull_secrets(p, secrets)

    state_dir = mesh.get("state_dir")
    if state_dir is not None and (not is_str(state_dir) or not state_dir.strip()):
        p.add("mesh.state_dir", "must be a non-empty path string, got %s" % kind(state_dir))

    ca = mesh.get("ca")
    if ca is not None and p.mapping("mesh.ca", ca, "CA settings"):
        _validate_ca(p, ca)

    features = mesh.get("features")
    if features is not None and p.mapping("mesh.features", features, "feature switches"):
        p.unknown_keys("mesh.features", features, tuple(DEFAULT_FEATURES), "feature")
        for key in DEFAULT_FEATURES:
            value = features.get(key)
            if value is not None and not isinstance(value, bool):
                p.add("mesh.features.%s" % key, "must be true or false, got %s" % show(value))


def _istio_minor(version):
    """"1.30" of "1.30", "1.30.4", "1.30-dev" (a version ISTIO_VERSION accepts)."""
    return ".".join(re.split(r"[.-]", version)[:2])


def _istio_hub_problem(hub):
    example = "such as %s or myregistry.example.com/mirror/istio" % DEFAULT_ISTIO_HUB
    if not is_str(hub) or not hub:
        return "must be an image registry path %s, got %s" % (example, kind(hub) if hub != "" else "\"\"")
    if "://" in hub:
        return "%s must be a registry path without a scheme (like https://), %s" % (show(hub), example)
    last = hub.rsplit("/", 1)[-1]
    if "@" in hub or ("/" in hub and ":" in last):
        return ("%s must not carry a tag or digest: the tag is mesh.istio.version; give the registry "
                "path only, %s" % (show(hub), example))
    if "/" not in hub:
        return "%s must be registry/path (the images are <hub>/pilot, <hub>/proxyv2), %s" % (show(hub), example)
    if len(hub) > 200 or not ISTIO_HUB.match(hub):
        return ("%s is not an image registry path: registry[:port]/path, with lowercase path parts "
                "(letters, digits, '.', '_', '-'), %s" % (show(hub), example))
    return None


def _validate_image_pull_secrets(p, secrets):
    path = "mesh.istio.image_pull_secrets"
    if not isinstance(secrets, (list, tuple)):
        p.add(path, "must be a list of Secret names in the Istio namespace, e.g. [%s], got %s"
              % (secrets if is_dns_subdomain(secrets) else "regcred", kind(secrets)))
        return
    seen = set()
    for i, name in enumerate(secrets):
        if not is_dns_subdomain(name):
            p.add("%s[%d]" % (path, i), "Secret name %s is not a DNS-1123 subdomain (lowercase "
                  "letters, digits, '-' and '.', at most 253 characters)" % show(name))
            continue
        if name in seen:
            p.add("%s[%d]" % (path, i), "%s is listed twice" % show(name))
        seen.add(name)


def _validate_istio_release(p, mesh, clusters):
    """Clusters that pull images need mesh.istio.version to be a published release: the
    manifests name <hub>/pilot:<version> and <hub>/proxyv2:<version>, and no registry serves
    the build's own 1.30-dev. Local (kwok) clusters never pull, so MAJOR.MINOR stays valid
    for them alone."""
    istio = mesh.get("istio") if is_mapping(mesh) else None
    if not is_mapping(istio):
        return  # no version given (the default suits the clusters), or reported already
    version = istio.get("version")
    if not is_str(version) or not ISTIO_VERSION.match(version) or \
            _istio_minor(version) != ISTIO_SUPPORTED_MINOR or ISTIO_RELEASE.match(version):
        return  # a release, no version given, or already reported by _validate_mesh
    pulling = image_pulling_clusters(clusters)
    if not pulling:
        return
    hub = istio.get("hub")
    hub = hub if is_str(hub) and hub else DEFAULT_ISTIO_HUB
    p.add("mesh.istio.version", "%s is not an Istio release; %s %s %s images from %s: set "
          "mesh.istio.version to a release such as \"%s\" (and mesh.istio.hub for a mirror)"
          % (show(version), "clusters" if len(pulling) > 1 else "cluster", ", ".join(pulling),
             "pull" if len(pulling) > 1 else "pulls", hub, ISTIO_DEFAULT_RELEASE))


def _trust_domain_problem(td):
    if not is_str(td):
        return "must be a DNS name string such as cluster.local, got %s" % kind(td)
    if "://" in td:
        return "%s must be a bare DNS name, without a scheme (like spiffe://)" % show(td)
    if "/" in td:
        return "%s must be a bare DNS name, without a path" % show(td)
    if ":" in td:
        return "%s must be a bare DNS name, without a port" % show(td)
    if td != td.lower():
        return "%s must be lowercase" % show(td)
    if len(td) > 255:
        return "%s is longer than 255 characters" % show(td)
    if not td or not all(is_dns_label(part) for part in td.split(".")):
        return ("%s is not a DNS name: dot-separated labels of lowercase letters, digits "
                "and '-', e.g. cluster.local" % show(td))
    return None


def _positive_int(p, path, value, maximum=None, unit=""):
    if not is_int(value) or value <= 0:
        p.add(path, "must be a positive whole number, got %s" % show(value))
        return False
    if maximum is not None and value > maximum:
        p.add(path, "%d is more than %d%s" % (value, maximum, unit))
        return False
    return True


def _validate_ca(p, ca):
    p.unknown_keys("mesh.ca", ca, tuple(DEFAULT_CA), "mesh.ca")
    key_type = ca.get("key_type")
    if key_type is not None and key_type not in CA_KEY_TYPES:
        p.add("mesh.ca.key_type", "unknown key type %s; choose one of %s"
              % (show(key_type), one_of(CA_KEY_TYPES)))
    days = {}
    for key in ("root_days", "intermediate_days", "renew_before_days"):
        value = ca.get(key)
        if value is not None and _positive_int(p, "mesh.ca.%s" % key, value, MAX_CA_DAYS,
                                               " (100 years; X.509 dates end in the year 9999)"):
            days[key] = value
    root = days.get("root_days", DEFAULT_CA["root_days"])
    inter = days.get("intermediate_days", DEFAULT_CA["intermediate_days"])
    renew = days.get("renew_before_days", DEFAULT_CA["renew_before_days"])
    if ("root_days" in days or "intermediate_days" in days) and inter > root:
        p.add("mesh.ca.intermediate_days", "%d is more than root_days (%d); an intermediate "
              "cannot outlive its root" % (inter, root))
    elif ("renew_before_days" in days or "intermediate_days" in days) and renew >= inter:
        p.add("mesh.ca.renew_before_days", "%d must be less than intermediate_days (%d)"
              % (renew, inter))
    cert, key = ca.get("root_cert_file"), ca.get("root_key_file")
    for name, value in (("root_cert_file", cert), ("root_key_file", key)):
        if value is not None and (not is_str(value) or not value.strip()):
            p.add("mesh.ca.%s" % name, "must be a file path, got %s" % kind(value))
    if cert and not key:
        p.add("mesh.ca.root_key_file", "missing; root_cert_file needs the matching "
              "root_key_file to sign the intermediates")
    elif key and not cert:
        p.add("mesh.ca.root_cert_file", "missing; root_key_file needs the matching "
              "root_cert_file")


class _Clusters(dict):
    """The usable clusters; ``broken`` names the entries that are not mappings (already
    reported, so references to them are not reported again)."""

    def __init__(self):
        super(_Clusters, self).__init__()
        self.broken = set()


def _validate_clusters(p, clusters):
    """Check clusters; return {name: cluster} of the usable ones, or None when the
    section itself is unusable (then references to clusters are not checked)."""
    if clusters is None or (is_mapping(clusters) and not clusters):
        p.add("clusters", "no clusters; declare at least one under clusters:")
        return None
    if not p.mapping("clusters", clusters, "cluster name to cluster settings"):
        return None
    usable = _Clusters()
    seen_lower = {}
    for name, cluster in clusters.items():
        path = "clusters.%s" % (name,)
        if p.label(path, name, what="cluster name"):
            _reserved(p, path, name, "cluster")
        lower = ("%s" % (name,)).lower()
        if lower in seen_lower:
            p.add(path, "cluster name collides with %s (names are case-insensitive as "
                  "kubeconfig contexts and DNS names)" % seen_lower[lower])
        else:
            seen_lower[lower] = name
        if cluster is None:
            cluster = {}
        if not p.mapping(path, cluster, "cluster settings (provider, network, role, ...)"):
            usable.broken.add(name)
            continue
        usable[name] = cluster
        p.unknown_keys(path, cluster, CLUSTER_KEYS, "cluster")

        provider = cluster.get("provider")
        if _missing(provider):
            p.add(path + ".provider", "missing; choose one of %s" % one_of(CLUSTER_PROVIDERS))
        elif provider not in CLUSTER_PROVIDERS:
            p.add(path + ".provider", "unknown provider %s; choose one of %s"
                  % (show(provider), one_of(CLUSTER_PROVIDERS)))

        role = cluster.get("role")
        if role is not None and role not in ROLES:
            p.add(path + ".role", "unknown role %s; choose one of %s" % (show(role), one_of(ROLES)))

        network = cluster.get("network")
        if _missing(network):
            p.add(path + ".network", "missing; name the network this cluster is on, "
                  "e.g. network1")
        else:
            p.label(path + ".network", network, what="network name")

        settings = cluster.get("settings")
        if settings is None:
            settings = {}
        if p.mapping(path + ".settings", settings, "provider settings"):
            if provider in CLUSTER_PROVIDERS:
                _validate_settings(p, path + ".settings", provider, settings)

        address = cluster.get("eastwest_address")
        if address is not None and not (is_ip(address) or is_hostname(address)):
            p.add(path + ".eastwest_address", "%s is neither an IP address nor a host name"
                  % show(address))

        timeouts = cluster.get("wait_timeouts")
        if timeouts is not None and p.mapping(path + ".wait_timeouts", timeouts,
                                              "operation to seconds (%s)" % ", ".join(WAIT_OPERATIONS)):
            for op, seconds in timeouts.items():
                if op not in WAIT_OPERATIONS:
                    p.add("%s.wait_timeouts.%s" % (path, op), "unknown operation%s; expected one of %s"
                          % (did_you_mean(op, WAIT_OPERATIONS), one_of(WAIT_OPERATIONS)))
                elif not (is_int(seconds) and seconds > 0):
                    p.add("%s.wait_timeouts.%s" % (path, op), "must be a positive number of seconds, got %s"
                          % show(seconds))

    # roles and primaries need the whole set
    has_bad_role = False
    primaries = []
    for name, cluster in usable.items():
        role = cluster.get("role") or "primary"
        if role not in ROLES:
            has_bad_role = True
            continue
        path = "clusters.%s.primary" % (name,)
        primary = cluster.get("primary")
        if role == "primary":
            primaries.append(name)
            if primary is not None and primary != name:
                p.add(path, "cluster %s is a primary, so it cannot name another primary (%s); "
                      "drop primary: or set role: remote" % (name, show(primary)))
        elif _missing(primary):
            p.add(path, "missing; a remote cluster needs primary: <name of a primary cluster>")
        elif not _hashable(primary) or primary not in clusters:
            p.add(path, "no cluster named %s; choose one of %s" % (
                show(primary), one_of(_primary_names(usable)) or "(no primaries)"))
        elif primary not in usable:
            pass  # that cluster's own entry is already reported
        elif (usable[primary].get("role") or "primary") != "primary":
            p.add(path, "%s is itself a remote cluster; a remote must name a primary (%s)"
                  % (show(primary), one_of(_primary_names(usable)) or "none declared"))
    if usable and not primaries and not has_bad_role:
        p.add("clusters", "no primary cluster; at least one cluster needs role: primary")
    _validate_remote_pilot_addresses(p, usable)
    return usable


def _validate_remote_pilot_addresses(p, clusters):
    """A primary's east-west address is its remotes' remotePilotAddress: istiod's Service for
    them gets an Endpoint there, and Kubernetes refuses loopback endpoint addresses."""
    for name, cluster in clusters.items():
        primary = cluster.get("primary")
        if (cluster.get("role") or "primary") != "remote" or not _hashable(primary) or primary not in clusters:
            continue
        address = clusters[primary].get("eastwest_address")
        try:
            loopback = is_str(address) and ipaddress.ip_address(address).is_loopback
        except ValueError:
            continue
        if loopback:
            p.add("clusters.%s.eastwest_address" % primary,
                  "%s is a loopback address, but remote cluster %s reaches this primary's istiod "
                  "there (remotePilotAddress; Kubernetes refuses loopback endpoints): give an "
                  "address of a real interface" % (show(address), name))


def _primary_names(clusters):
    return ["%s" % n for n, c in clusters.items() if (c.get("role") or "primary") == "primary"]


def _networks_of(clusters):
    out = []
    for cluster in (clusters or {}).values():
        net = cluster.get("network")
        if is_str(net) and net and net not in out:
            out.append(net)
    return out


def _validate_networks(p, networks, clusters):
    if networks is None:
        return
    if isinstance(networks, list):
        names, seen = [], set()
        for i, name in enumerate(networks):
            if not is_str(name):
                p.add("networks[%d]" % i, "must be a network name, got %s" % kind(name))
                continue
            if name in seen:
                p.add("networks[%d]" % i, "network %s is listed twice" % show(name))
                continue
            seen.add(name)
            names.append(name)
    elif is_mapping(networks):
        names = []
        for name, value in networks.items():
            if value is not None and p.mapping("networks.%s" % (name,), value,
                                               "network settings (description)"):
                p.unknown_keys("networks.%s" % (name,), value, NETWORK_KEYS, "network")
            names.append(name)
    else:
        p.add("networks", "must be a list of network names or a mapping of network name to "
              "settings, got %s" % kind(networks))
        return
    used = _networks_of(clusters)
    for name in names:
        path = "networks.%s" % (name,)
        if not p.label(path, name, what="network name"):
            continue
        if clusters and name not in used:
            p.add(path, "declared but no cluster is on network %s" % show(name))
    if clusters:
        for cname, cluster in clusters.items():
            net = cluster.get("network")
            if is_dns_label(net) and net not in names:
                p.add("clusters.%s.network" % (cname,), "%s is not one of the declared "
                      "networks (%s)%s" % (show(net), one_of(names) or "none",
                                           did_you_mean(net, names)))


def _reserved(p, path, name, what):
    if ("%s" % (name,)).lower() in RESERVED_HOST_NAMES:
        p.add(path, "%s name %s is reserved: Ansible or this inventory's own groups use it (%s); "
              "choose another name" % (what, show(name), one_of(RESERVED_HOST_NAMES)))


def _is_template(value):
    return is_str(value) and ("{{" in value or "{%" in value)


def _check_type(p, path, value, typ):
    if typ == "str":
        ok = is_str(value)
        want = "a string" + _float_hint(value)
    elif typ == "int":
        ok = is_int(value) and 0 < value <= MAX_SETTING_INT
        want = "a whole number from 1 to %d" % MAX_SETTING_INT
    elif typ == "count":
        ok = is_int(value) and 0 <= value <= MAX_VM_COUNT
        want = "a whole number from 0 to %d" % MAX_VM_COUNT
    elif typ == "bool":
        ok = isinstance(value, bool)
        want = "true or false"
    elif typ == "list":
        ok = isinstance(value, list)
        want = "a list"
    elif typ == "str_list":
        ok = isinstance(value, list) and all(is_str(v) and v for v in value)
        want = "a list of strings"
    elif typ == "dict":
        ok = is_mapping(value)
        want = "a mapping"
    elif typ == "ip":
        ok = is_str(value) and is_ip(value)
        want = "an IP address"
    elif typ == "size":
        ok = (is_int(value) and value > 0) or (is_str(value) and bool(value.strip()))
        want = "a number or a size string such as 4g"
    elif typ == "cidr":
        problem = cidr_problem(value)
        if problem:
            p.add(path, problem)
        return
    elif typ == "cidr_list":
        if not isinstance(value, list):
            p.add(path, "must be a list of networks in CIDR notation such as [203.0.113.7/32], got %s"
                  % (show(value) if not isinstance(value, dict) else kind(value)))
        for i, item in enumerate(value if isinstance(value, list) else []):
            problem = source_cidr_problem(item)
            if problem:
                p.add("%s[%d]" % (path, i), problem)
        return
    else:  # pragma: no cover - table error
        raise ValueError("unknown setting type %s" % typ)
    if not ok:
        p.add(path, "must be %s, got %s" % (want, show(value) if not isinstance(
            value, (list, dict)) and not is_mapping(value) else kind(value)))


def _validate_settings(p, path, provider, settings):
    types = SETTING_TYPES[provider]
    required = REQUIRED_SETTINGS[provider]
    for key in required:
        if _missing(settings.get(key)):
            p.add("%s.%s" % (path, key), "missing; provider %s needs %s" % (
                provider, " and ".join(required) if len(required) < 3
                else ", ".join(required[:-1]) + " and " + required[-1]))
    for key, value in settings.items():
        if key not in types:
            p.add("%s.%s" % (path, key), "unknown setting for provider %s%s; %s" % (
                provider, did_you_mean(key, types),
                "expected one of %s" % one_of(types) if types else "it takes no settings"))
        elif value is not None and not (key in required and _missing(value)):
            _check_type(p, "%s.%s" % (path, key), value, types[key])
            choices = SETTING_CHOICES.get(provider, {}).get(key)
            if choices and is_str(value) and value not in choices:
                p.add("%s.%s" % (path, key), "must be one of %s, got %s" % (", ".join(choices), show(value)))
    if provider == "aks":
        p.extend(aks_settings_problems(settings, path))


def aks_pool_mode(pools, index):
    """The mode pool ``index`` of an AKS ``node_pools`` list gets: its own ``mode``
    (System/User, any case), else System for the first pool when no pool says System,
    else User."""
    mode = pools[index].get("mode")
    if is_str(mode) and mode.lower() in ("system", "user"):
        return mode.capitalize()
    if index == 0 and not any(is_mapping(x) and is_str(x.get("mode")) and x["mode"].lower() == "system"
                              for x in pools):
        return "System"
    return "User"


def aks_settings_problems(settings, path="settings"):
    """AKS rules beyond the types: node pools (a System pool, names, autoscaler bounds),
    network profile (a pod CIDR with Azure CNI needs overlay), cloud endpoints.
    Returns ["<path>: <message>", ...]; the aks provider runs it too."""
    p = _Problems()
    pools = settings.get("node_pools")
    if isinstance(pools, list):
        _aks_pools(p, "%s.node_pools" % path, pools)
    net = settings.get("network_profile")
    if is_mapping(net):
        _aks_network(p, "%s.network_profile" % path, net)
    cloud = settings.get("cloud_environment")
    if is_str(cloud) and cloud not in AKS_CLOUD_ENVIRONMENTS:
        p.add("%s.cloud_environment" % path, "unknown Azure cloud %s%s; choose one of %s" % (
            show(cloud), did_you_mean(cloud, AKS_CLOUD_ENVIRONMENTS), one_of(AKS_CLOUD_ENVIRONMENTS)))
    arm = settings.get("arm_endpoint")
    if is_str(arm):
        m = re.match(r"^https://([^/\s?#]+)/?$", arm)
        if not m:
            p.add("%s.arm_endpoint" % path, "%s is not an https:// URL of a host (the ARM base URL, "
                  "e.g. https://management.azure.com; the SDK sends bearer tokens over TLS only)" % show(arm))
    return list(p)


def _aks_pools(p, path, pools):
    if not pools:
        p.add(path, "an empty list; list at least one pool, or leave node_pools out for one "
              "Standard_D2s_v5 System pool")
        return
    names = set()
    for i, pool in enumerate(pools):
        ipath = "%s[%d]" % (path, i)
        if not p.mapping(ipath, pool, "pool settings (name, vm_size, count, mode, ...)"):
            continue
        p.unknown_keys(ipath, pool, AKS_POOL_KEYS, "node pool")
        name = pool.get("name")
        if _missing(name):
            p.add(ipath + ".name", "missing; every node pool needs a name")
        elif not is_str(name) or not AKS_POOL_NAME.match(name):
            p.add(ipath + ".name", "%s is not an AKS node pool name (a lowercase letter, then lowercase "
                  "letters and digits, 12 characters at most)" % show(name))
        elif name in names:
            p.add(ipath + ".name", "pool %s is listed twice" % show(name))
        else:
            names.add(name)
        if pool.get("vm_size") is not None:
            _check_type(p, ipath + ".vm_size", pool["vm_size"], "str")
        mode = pool.get("mode")
        if mode is not None and not (is_str(mode) and mode.lower() in ("system", "user")):
            p.add(ipath + ".mode", "must be System or User, got %s" % show(mode))
        numbers = {}
        for key in ("count", "min_count", "max_count"):
            if pool.get(key) is not None:
                before = len(p)
                _check_type(p, "%s.%s" % (ipath, key), pool[key], "count")
                if len(p) == before:
                    numbers[key] = pool[key]
        auto = pool.get("enable_auto_scaling")
        if auto is not None:
            _check_type(p, ipath + ".enable_auto_scaling", auto, "bool")
        bounds = [k for k in ("min_count", "max_count") if pool.get(k) is not None]
        if auto is False and bounds:
            p.add(ipath + ".enable_auto_scaling", "false, but %s given: min_count/max_count are the "
                  "autoscaler's bounds; leave them out to size the pool by count" % " and ".join(bounds))
        elif len(bounds) == 1 or (auto is True and len(bounds) < 2):
            p.add(ipath + "." + ("max_count" if "min_count" in bounds else "min_count"),
                  "missing; the autoscaler needs both min_count and max_count")
        elif "min_count" in numbers and "max_count" in numbers:
            if numbers["min_count"] > numbers["max_count"]:
                p.add(ipath + ".min_count", "%s is more than max_count %s" % (
                    numbers["min_count"], numbers["max_count"]))
            elif "count" in numbers and not numbers["min_count"] <= numbers["count"] <= numbers["max_count"]:
                p.add(ipath + ".count", "%s is outside min_count..max_count (%s..%s); with the "
                      "autoscaler, count is only the initial size" % (
                          numbers["count"], numbers["min_count"], numbers["max_count"]))
        if aks_pool_mode(pools, i) == "System":
            for key in ("count", "min_count"):
                if numbers.get(key) == 0:
                    p.add("%s.%s" % (ipath, key), "0, but a System pool needs at least one node")
    if all(is_mapping(x) for x in pools) and not any(
            aks_pool_mode(pools, i) == "System" for i in range(len(pools))):
        p.add(path, "no System pool: AKS needs at least one pool with mode System (\"Must define at "
              "least one system pool\"); set mode: System on one, or leave mode out on the first "
              "pool, which then becomes the System pool")


def _aks_network(p, path, net):
    p.unknown_keys(path, net, AKS_NETWORK_KEYS, "network profile")
    for key in AKS_NETWORK_KEYS:
        if net.get(key) is not None:
            _check_type(p, "%s.%s" % (path, key), net[key], "str")
    plugin = net.get("network_plugin")
    plugin = plugin.lower() if is_str(plugin) else None
    if plugin is not None and plugin not in AKS_NETWORK_PLUGINS:
        p.add(path + ".network_plugin", "unknown network plugin %s; choose one of %s" % (
            show(net["network_plugin"]), one_of(AKS_NETWORK_PLUGINS)))
    mode = net.get("network_plugin_mode")
    if is_str(mode):
        if mode.lower() != "overlay":
            p.add(path + ".network_plugin_mode", "must be overlay, got %s" % show(mode))
        elif plugin != "azure":
            p.add(path + ".network_plugin_mode", "overlay is a mode of network_plugin azure, got %s"
                  % show(net.get("network_plugin")))
    for key in ("pod_cidr", "service_cidr"):
        value = net.get(key)
        if is_str(value):
            try:
                ipaddress.ip_network(u"%s" % value, strict=True)
            except ValueError:
                p.add("%s.%s" % (path, key), "%s is not a network in CIDR notation (10.244.0.0/16)"
                      % show(value))
    if net.get("dns_service_ip") is not None and not is_ip(net["dns_service_ip"]):
        p.add(path + ".dns_service_ip", "%s is not an IP address" % show(net["dns_service_ip"]))
    if net.get("pod_cidr") is not None and plugin == "azure" and not (
            is_str(mode) and mode.lower() == "overlay"):
        p.add(path + ".pod_cidr", "Azure CNI (network_plugin azure) gives pods addresses from the "
              "subnet and takes no pod CIDR unless network_plugin_mode is overlay; set "
              "network_plugin_mode: overlay, or leave pod_cidr out (kubenet takes one too)")


def _validate_vm_groups(p, groups, clusters):
    if groups is None:
        return
    if not p.mapping("vm_groups", groups, "VM group name to VM group settings"):
        return
    cluster_names = dict((("%s" % n).lower(), n) for n in (clusters or {}))
    networks = _networks_of(clusters)
    host_owner = {}
    netns_subnets = []
    for name, group in groups.items():
        path = "vm_groups.%s" % (name,)
        p.label(path, name, what="VM group name")
        if group is None:
            group = {}
        if not p.mapping(path, group, "VM group settings (cluster, namespace, hosts, ...)"):
            continue
        p.unknown_keys(path, group, VM_GROUP_KEYS, "VM group")

        cluster_name = group.get("cluster")
        cluster = None
        if _missing(cluster_name):
            p.add(path + ".cluster", "missing; name the primary cluster whose istiod "
                  "onboards these VMs")
        elif clusters is not None:
            if not _hashable(cluster_name) or cluster_name not in clusters:
                if not (_hashable(cluster_name) and cluster_name in clusters.broken):
                    p.add(path + ".cluster", "no cluster named %s; choose one of %s" % (
                        show(cluster_name), one_of(_primary_names(clusters)) or "(none)"))
            else:
                cluster = clusters[cluster_name]
                if (cluster.get("role") or "primary") == "remote":
                    p.add(path + ".cluster", "%s is a remote cluster without its own istiod; "
                          "VMs join through a primary (%s)" % (
                              show(cluster_name), one_of(_primary_names(clusters))))

        network = group.get("network")
        if network is not None:
            if p.label(path + ".network", network, what="network name") \
                    and clusters is not None and network not in networks:
                p.add(path + ".network", "no cluster is on network %s; VMs must join one of "
                      "the clusters' networks (%s)" % (show(network), one_of(networks)))

        for key in ("namespace", "service_account"):
            value = group.get(key)
            if value is not None:
                p.label("%s.%s" % (path, key), value, what=key.replace("_", " "))

        provider = group.get("provider")
        if provider is not None and provider not in VM_PROVIDERS:
            p.add(path + ".provider", "unknown VM provider %s; choose one of %s"
                  % (show(provider), one_of(VM_PROVIDERS)))
            provider = None
        elif provider is None:
            provider = "existing"

        settings = group.get("settings")
        if settings is None:
            settings = {}
        if p.mapping(path + ".settings", settings, "provider settings") and provider:
            _validate_settings(p, path + ".settings", provider, settings)

        ports = group.get("ports")
        if ports is not None and p.mapping(path + ".ports", ports, "port name to port number"):
            for pname, port in ports.items():
                if not is_int(port) or not 0 < port < 65536:
                    p.add("%s.ports.%s" % (path, pname), "must be a port number between 1 "
                          "and 65535, got %s" % show(port))

        labels = group.get("labels")
        if labels is not None and p.mapping(path + ".labels", labels, "label name to value"):
            for lname, value in labels.items():
                lpath = "%s.labels.%s" % (path, lname)
                lkey = lname.rsplit("/", 1)[-1] if is_str(lname) else None
                if not (is_str(lname) and len(lkey) <= 63 and LABEL_NAME.match(lkey)):
                    p.add(lpath, "%s is not a valid Kubernetes label name" % show(lname))
                elif not is_str(value):
                    p.add(lpath, "label values must be strings, got %s (quote it)" % show(value))
                elif len(value) > 63 or not LABEL_VALUE.match(value):
                    p.add(lpath, "%s is not a valid Kubernetes label value (at most 63 letters, "
                          "digits, '-', '_' or '.', starting and ending with a letter or digit)"
                          % show(value))

        hosts = group.get("hosts")
        if provider == "netns" and is_mapping(settings):
            _validate_netns_group(p, path, name, settings, hosts, netns_subnets)
        if hosts is None or (is_mapping(hosts) and not hosts):
            if provider == "existing":
                p.add(path + ".hosts", "no hosts; provider existing needs at least one host "
                      "with ansible_host")
            continue
        if not p.mapping(path + ".hosts", hosts, "host name to host vars"):
            continue
        count = settings.get("count") if is_mapping(settings) else None
        if count is None:
            count = DEFAULT_VM_COUNT
        if not (is_int(count) and count >= 0):
            count = None  # already reported
        for host, hostvars in hosts.items():
            hpath = "%s.hosts.%s" % (path, host)
            if not is_dns_subdomain(host):
                p.add(hpath, "VM host name %s is not a DNS-1123 name (lowercase letters, "
                      "digits, '-' and '.')" % show(host))
            else:
                _reserved(p, hpath, host, "VM host")
            lower = ("%s" % (host,)).lower()
            if lower in cluster_names:
                p.add(hpath, "VM host name collides with cluster %s; host names are shared "
                      "by clusters and VMs in the inventory" % cluster_names[lower])
            elif lower in host_owner:
                p.add(hpath, "VM host %s is already in VM group %s" % (
                    show(host), host_owner[lower]))
            else:
                host_owner[lower] = name
            if hostvars is None:
                hostvars = {}
            if not p.mapping(hpath, hostvars, "host vars (ansible_host, ansible_user, ...)"):
                continue
            if provider in CLOUD_VM_PROVIDERS and count is not None \
                    and not _is_vm_name(host, name, count):
                p.add(hpath, "provider %s names the VMs it creates %s (settings.count: %d); "
                      "use one of those names" % (provider, _vm_names_text(name, count), count))
            address = hostvars.get("ansible_host")
            if provider == "existing" and _missing(address):
                p.add(hpath + ".ansible_host", "missing; provider existing needs the address "
                      "Ansible reaches the VM on")
            elif address is not None and not _is_template(address) \
                    and not (is_ip(address) or is_hostname(address)):
                p.add(hpath + ".ansible_host", "%s is neither an IP address nor a host name"
                      % show(address))


def source_cidr_problem(value):
    """Why ``value`` is not an IPv4/IPv6 network (a security group source such as
    203.0.113.7/32 or 2001:db8::/32), or None."""
    if not is_str(value) or "/" not in value:
        return "must be a network in CIDR notation such as 203.0.113.7/32, got %s" % (
            show(value) if not isinstance(value, (list, dict)) else kind(value))
    try:
        net = ipaddress.ip_network(u"%s" % value, strict=False)
    except ValueError:
        return "%s is not a network in CIDR notation such as 203.0.113.7/32" % show(value)
    if str(net) != value:
        return "%s has host bits set; the network is %s" % (show(value), net)
    return None


def cidr_problem(value):
    """Why ``value`` is not a usable netns subnet (IPv4 CIDR, /30 or larger), or None."""
    if not is_str(value):
        return "must be an IPv4 network in CIDR notation such as 10.77.0.0/24, got %s" % (
            show(value) if not isinstance(value, (list, dict)) else kind(value))
    try:
        net = ipaddress.ip_network(u"%s" % value, strict=False)
    except ValueError:
        return "%s is not an IPv4 network in CIDR notation such as 10.77.0.0/24" % show(value)
    if net.version != 4:
        return "%s is not an IPv4 network; netns VMs use IPv4 (e.g. 10.77.0.0/24)" % show(value)
    if "/" not in value:
        return "%s has no prefix length; write it as %s" % (show(value), net)
    if str(net) != value:
        return "%s has host bits set; the network is %s" % (show(value), net)
    if net.prefixlen > 30:
        return "%s is too small: netns VMs need a /30 or larger (.1 is the host, VMs from .2)" \
            % show(value)
    return None


def netns_vm_names(group_name, group):
    """A netns group's VM names, in address order: its listed hosts, else <group>-1..N."""
    hosts = group.get("hosts") if is_mapping(group) else None
    if is_mapping(hosts) and hosts:
        return ["%s" % (h,) for h in hosts]
    settings = group.get("settings") if is_mapping(group) else None
    count = settings.get("count") if is_mapping(settings) else None
    count = DEFAULT_VM_COUNT if count is None else count
    if not (is_int(count) and count >= 0):
        return []
    return ["%s-%d" % (group_name, i) for i in range(1, count + 1)]


def netns_addresses(group_name, group):
    """{vm name: address} of a netns group (.2, .3, ... of its subnet); {} if the subnet is bad."""
    settings = group.get("settings") if is_mapping(group) else None
    subnet = settings.get("subnet") if is_mapping(settings) else None
    if subnet is None or cidr_problem(subnet):
        return {}
    net = ipaddress.ip_network(u"%s" % subnet)
    room = net.num_addresses - 3
    return dict((n, str(net.network_address + 2 + i))
                for i, n in enumerate(netns_vm_names(group_name, group)) if i < room)


def _validate_netns_group(p, path, name, settings, hosts, seen_subnets):
    """netns: count matches the listed hosts, the VMs fit, subnets of groups do not overlap,
    and a listed ansible_host is the address the VM gets."""
    count = settings.get("count")
    listed = len(hosts) if is_mapping(hosts) else 0
    if is_int(count) and count >= 0 and listed and count != listed:
        p.add(path + ".settings.count", "%d, but %d hosts are listed (%s); provider netns makes "
              "one VM per listed host: drop count or make it %d" % (
                  count, listed, ", ".join("%s" % (h,) for h in hosts), listed))
    subnet = settings.get("subnet")
    if subnet is None or cidr_problem(subnet):
        return  # missing or bad: reported with the settings
    net = ipaddress.ip_network(u"%s" % subnet)
    for other, other_net in seen_subnets:
        if net.overlaps(other_net):
            p.add(path + ".settings.subnet", "%s overlaps %s of VM group %s; every netns VM group "
                  "needs its own subnet" % (show(subnet), other_net, other))
            break
    seen_subnets.append((name, net))
    names = netns_vm_names(name, dict(hosts=hosts, settings=settings))
    room = net.num_addresses - 3
    if len(names) > room:
        p.add(path + ".settings.subnet", "%s has room for %s (.2 to .%d), not %d" % (
            show(subnet), _plural(room, "VM"), room + 1, len(names)))
    addresses = netns_addresses(name, dict(hosts=hosts, settings=settings))
    if is_mapping(hosts):
        for host, hostvars in hosts.items():
            given = hostvars.get("ansible_host") if is_mapping(hostvars) else None
            want = addresses.get("%s" % (host,))
            if given is not None and want and "%s" % (given,) != want:
                p.add("%s.hosts.%s.ansible_host" % (path, host), "%s, but provider netns gives "
                      "this VM %s (the hosts get .2, .3, ... in order); drop ansible_host"
                      % (show(given), want))


def _is_vm_name(host, group, count):
    """Is ``host`` one of ``<group>-1`` .. ``<group>-<count>``?"""
    prefix = "%s-" % (group,)
    if not is_str(host) or not host.startswith(prefix):
        return False
    number = host[len(prefix):]
    return number.isdigit() and not number.startswith("0") and 1 <= int(number) <= count


def _vm_names_text(group, count):
    if count == 0:
        return "(none: count is 0)"
    if count == 1:
        return "%s-1" % group
    return "%s-1 .. %s-%d" % (group, group, count)


def check_topology(topology, extra_errors=(), unparsed=False):
    """What meshfleet.mesh.topology_validate reports: ``(errors, summary, failure message or
    None)``; ``extra_errors`` (the plugin's, e.g. duplicate keys) come first, once each. With
    ``unparsed`` (the file is not a topology at all) they are the only errors."""
    found = [] if unparsed else validate(topology)
    errors = [e for e in extra_errors if e not in found] + found
    msg = None
    if unparsed and errors:
        msg = "\n".join(errors)
    elif errors:
        msg = "topology has %d problem%s:\n%s" % (
            len(errors), "" if len(errors) == 1 else "s", "\n".join("- " + e for e in errors))
    return errors, summarise(topology), msg


# --- summary -------------------------------------------------------------------------

def _plural(n, word, words=None):
    return "%d %s" % (n, word if n == 1 else (words or word + "s"))


def summarise(topology):
    """Counts and a one-line summary of a (valid) topology."""
    topology = topology if is_mapping(topology) else {}
    clusters = topology.get("clusters") if is_mapping(topology.get("clusters")) else {}
    groups = topology.get("vm_groups") if is_mapping(topology.get("vm_groups")) else {}
    usable = dict((n, c) for n, c in clusters.items() if is_mapping(c))
    networks = _networks_of(usable)
    primaries = _primary_names(usable)
    remotes = [n for n, c in usable.items() if c.get("role") == "remote"]
    vm_groups = {}
    for name, group in groups.items():
        hosts = group.get("hosts") if is_mapping(group) else None
        vm_groups["%s" % (name,)] = len(hosts) if is_mapping(hosts) else 0
    line = "%s on %s, %s, %s; %s" % (
        _plural(len(usable), "cluster"), _plural(len(networks), "network"),
        _plural(len(primaries), "primary", "primaries"), _plural(len(remotes), "remote"),
        ("VM groups: " + ", ".join("%s (%s)" % (g, _plural(n, "host"))
                                   for g, n in vm_groups.items())) if vm_groups
        else "no VM groups")
    return dict(clusters=len(usable), networks=networks, primaries=primaries,
                remotes=remotes, vm_groups=vm_groups, line=line)


# --- YAML loading ------------------------------------------------------------------------

class TopologyFileError(Exception):
    """The file is not a topology file: not UTF-8, too large, not YAML, YAML beyond the
    limits, not a single mapping, or without ``plugin: meshfleet.mesh.topology``.
    ``str(e)`` starts with ``line L, column C:`` where the problem has a place."""

    def __init__(self, msg, mark=None):
        self.line = mark.line + 1 if mark is not None else None
        self.column = mark.column + 1 if mark is not None else None
        if self.line is not None:
            msg = "line %d, column %d: %s" % (self.line, self.column, msg)
        super(TopologyFileError, self).__init__(msg)


PLUGIN_NAME = "meshfleet.mesh.topology"
NOT_A_TOPOLOGY = "a topology file is one YAML mapping with plugin, mesh and clusters"


def decode_topology(data):
    """Bytes of a topology file -> text; refuses what is too large or not UTF-8."""
    if len(data) > MAX_FILE_BYTES:
        raise TopologyFileError("the file has %d bytes; a topology file may have at most %d "
                                "(%d MiB)" % (len(data), MAX_FILE_BYTES, MAX_FILE_BYTES >> 20))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise TopologyFileError("line %d, column %d: not UTF-8 text (byte 0x%02x); save the file "
                                "as UTF-8" % (line, column, data[e.start]))


def _yaml_error(e):
    """A PyYAML error as ``line L, column C: problem (context)`` (no snippet of the file)."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or "%s" % e
    context = getattr(e, "context", None)
    if context:
        problem = "%s (%s)" % (problem, context)
    return TopologyFileError("not valid YAML: %s" % clip(problem, MAX_MESSAGE), mark)


def _check_events(text):
    """Walk the YAML events once, constructing nothing: refuse more than one document,
    and nesting, aliases or nodes (aliases expanded, counted without expanding them)
    beyond the limits. Linear in the text, whatever its aliases."""
    depth = 0
    aliases = 0
    documents = 0
    anchors = {}
    stack = [[None, 0]]  # [anchor, expanded size] of each open collection
    loader = yaml.CSafeLoader(text) if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader(text)
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise TopologyFileError("a second YAML document starts here; %s, in one "
                                            "document" % NOT_A_TOPOLOGY, event.start_mark)
                continue
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise TopologyFileError("nested more than %d levels deep; a topology file "
                                            "needs far fewer" % MAX_YAML_DEPTH, event.start_mark)
                stack.append([event.anchor, 1])
                continue
            if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
                anchor, size = stack.pop()
                if anchor is not None:
                    anchors[anchor] = size
            elif isinstance(event, yaml.AliasEvent):
                if any(frame[0] == event.anchor for frame in stack):
                    raise TopologyFileError("alias *%s refers to a node that contains it; a "
                                            "topology file cannot be recursive" % clip(event.anchor),
                                            event.start_mark)
                aliases += 1
                if aliases > MAX_YAML_ALIASES:
                    raise TopologyFileError("more than %d YAML aliases (*name); a topology file "
                                            "needs few or none" % MAX_YAML_ALIASES, event.start_mark)
                size = anchors.get(event.anchor, 1)
            elif isinstance(event, yaml.ScalarEvent):
                size = 1
                if event.anchor is not None:
                    anchors[event.anchor] = 1
            else:
                continue
            if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent, yaml.AliasEvent,
                                  yaml.ScalarEvent)):
                stack[-1][1] += size
                if stack[0][1] > MAX_YAML_NODES or stack[-1][1] > MAX_YAML_NODES:
                    raise TopologyFileError(
                        "expands to more than %d YAML nodes (aliases counted at their full size); "
                        "a topology file needs far fewer" % MAX_YAML_NODES, event.start_mark)
    except yaml.YAMLError as e:
        raise _yaml_error(e)
    finally:
        loader.dispose()


def compose_topology(text, require_plugin=False):
    """Check topology text within the limits and return its composed top node (a mapping;
    with ``require_plugin``, one with ``plugin: meshfleet.mesh.topology``).
    Raises :class:`TopologyFileError`."""
    if not is_str(text):
        text = decode_topology(text)
    elif len(text) > MAX_FILE_BYTES:
        raise TopologyFileError("the file has %d characters; a topology file may have at most %d"
                                % (len(text), MAX_FILE_BYTES))
    _check_events(text)
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as e:
            raise _yaml_error(e)
    finally:
        loader.dispose()
    if node is None:
        raise TopologyFileError("the file is empty; %s" % NOT_A_TOPOLOGY)
    if not isinstance(node, yaml.MappingNode):
        what = "a list" if isinstance(node, yaml.SequenceNode) else "a single value"
        raise TopologyFileError("%s, got %s" % (NOT_A_TOPOLOGY, what), node.start_mark)
    if not require_plugin:
        return node
    plugin = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == "plugin"]
    if not plugin:
        raise TopologyFileError("plugin: missing; a topology file starts with the line "
                                "`plugin: %s`" % PLUGIN_NAME, node.start_mark)
    key, value = plugin[-1]
    if not (isinstance(value, yaml.ScalarNode) and value.value == PLUGIN_NAME):
        given = value.value if isinstance(value, yaml.ScalarNode) else "a %s" % (
            "list" if isinstance(value, yaml.SequenceNode) else "mapping")
        raise TopologyFileError("plugin: %s is not %s; the files this inventory plugin reads (*.meshfleet.yml) "
                                "start with `plugin: %s`%s" % (
                                    show(given), PLUGIN_NAME, PLUGIN_NAME,
                                    did_you_mean(given, [PLUGIN_NAME])), key.start_mark)
    return node


def _duplicates_in(node, path=""):
    """Yield (message, mark) for every duplicate key below a composed YAML node."""
    stack = [(node, path)]
    seen_nodes = set()
    while stack:
        node, path = stack.pop(0)
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first = {}
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    if key_node.value == "<<":
                        continue
                    ident = (key_node.tag, key_node.value)
                    child = "%s.%s" % (path, key_node.value) if path else key_node.value
                    line = key_node.start_mark.line + 1
                    if ident in first:
                        yield ("%s: defined twice (lines %d and %d); YAML would silently keep "
                               "only the last one" % (child, first[ident], line),
                               key_node.start_mark)
                    else:
                        first[ident] = line
                    stack.append((value_node, child))
                else:
                    stack.append((value_node, path))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                stack.append((item, "%s[%d]" % (path, i)))


if HAS_YAML:
    class DuplicateKeyError(yaml.constructor.ConstructorError):
        pass

    class TopologyLoader(yaml.SafeLoader):
        """A ``yaml.SafeLoader`` that does not silently drop duplicate mapping keys.

        With ``strict`` (the default) the first duplicate raises
        :class:`DuplicateKeyError`; otherwise every duplicate is recorded in
        ``duplicates`` (one message each, with its dotted path and lines) and, as
        with the plain loader, the last value wins.
        """

        strict = True

        def __init__(self, stream):
            super(TopologyLoader, self).__init__(stream)
            self.duplicates = []

        def construct_document(self, node):
            for msg, mark in _duplicates_in(node):
                if self.strict:
                    raise DuplicateKeyError(None, None, msg, mark)
                self.duplicates.append(msg)
            return super(TopologyLoader, self).construct_document(node)

    class LenientTopologyLoader(TopologyLoader):
        strict = False


def load_topology(text, strict=False):
    """Parse topology YAML text (or bytes) within the limits. Returns
    ``(data, duplicate_key_messages)``.

    Raises :class:`TopologyFileError` when the text is not a topology file (see
    :func:`compose_topology`), and (with ``strict``) on the first duplicate key.
    """
    if not is_str(text):
        text = decode_topology(text)
    compose_topology(text)
    loader = (TopologyLoader if strict else LenientTopologyLoader)(text)
    try:
        try:
            data = loader.get_single_data()
        except DuplicateKeyError:
            raise
        except yaml.YAMLError as e:
            raise _yaml_error(e)
        return data, list(loader.duplicates)
    finally:
        loader.dispose()


def find_duplicate_keys(text, require_plugin=False):
    """Check topology YAML text without constructing it (any tags, e.g. !vault, are fine).

    Returns the duplicate-key messages. Raises :class:`TopologyFileError` when the
    text is not a topology file (see :func:`compose_topology`).
    """
    return [msg for msg, _mark in _duplicates_in(compose_topology(text, require_plugin))]
