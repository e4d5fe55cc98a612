# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The topology file's vocabulary: keys, defaults, limits and patterns (docs/topology.md).

Provider names and settings come from ``provider_spec``; this module names them as the
topology file does.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.meshfleet.mesh.plugins.module_utils import provider_spec
from ansible_collections.meshfleet.mesh.plugins.module_utils.provider_spec import (  # noqa: F401 pylint: disable=unused-import
    CLOUD_VM_PROVIDERS, CLUSTER_PROVIDERS, DEFAULT_VM_COUNT, LOCAL_CLUSTER_PROVIDERS,
    MAX_SETTING_INT, MAX_VM_COUNT, VM_PROVIDERS)

# --- vocabulary ----------------------------------------------------------------

ROLES = ("primary", "remote")
CA_KEY_TYPES = ("ecdsa-p256", "rsa-2048", "rsa-4096")

#: Settings each provider cannot work without (``clusters.<c>.settings`` for the cluster
#: providers, ``vm_groups.<g>.settings`` for the VM providers), and every setting a provider
#: accepts with its type (a key not listed is reported as unknown: typo protection). Both
#: are views of provider_spec.PROVIDERS, where a new setting goes.
REQUIRED_SETTINGS = dict((n, tuple(s["required"])) for n, s in provider_spec.PROVIDERS.items())
SETTING_TYPES = dict((n, provider_spec.setting_types(n)) for n in provider_spec.PROVIDERS)
#: AKS: the keys of one ``node_pools`` item and of ``network_profile``, and the Azure clouds
#: ``cloud_environment`` names (providers/aks.py maps them to ARM endpoints and authorities).
_AKS = provider_spec.PROVIDERS["aks"]["rules"]
AKS_POOL_KEYS = _AKS["pool_keys"]
AKS_POOL_MODES = _AKS["pool_modes"]
AKS_NETWORK_KEYS = _AKS["network_keys"]
AKS_NETWORK_PLUGINS = _AKS["network_plugins"]
AKS_CLOUD_ENVIRONMENTS = _AKS["cloud_environments"]
AKS_POOL_NAME = re.compile(_AKS["pool_name"])

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
#: beyond a century is a mistake); those of settings (MAX_SETTING_INT, MAX_VM_COUNT) are in provider_spec
MAX_CA_DAYS = 36525
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
