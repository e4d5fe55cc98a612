# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mesh topology file (``*.meshfleet.yml``): normalise and validate it.

Pure Python, shared by the inventory plugin ``meshfleet.mesh.topology`` (which
loads the file and turns it into hosts, groups and vars), the action plugin and module
``meshfleet.mesh.topology_validate`` (which re-check ``meshfleet_topology`` before a play
changes anything). docs/topology.md is the contract. One module per job:

- ``schema``: the vocabulary (keys, defaults, limits, patterns); provider names and
  settings are views of ``provider_spec``;
- ``common``: type tests, how values and paths read in a message, the problem list;
- ``normalise``: :func:`normalise` fills the defaults in without changing or dropping
  anything it does not understand, so ``validate(normalise(t)) == validate(t)``;
- ``mesh``, ``clusters`` (and networks), ``settings`` (provider settings against their
  spec), ``vm_groups``: the validation of each section;
- ``validate``: :func:`validate` returns one message per problem, each starting with the
  dotted path of the offending field (``clusters.cluster-2.provider: ...``); it never raises
  on bad input, whatever its types. :func:`check_topology` is what topology_validate reports;
- ``summary``: :func:`summarise`;
- ``loader``: bounded YAML decoding; :class:`TopologyLoader` / :func:`find_duplicate_keys`:
  YAML mappings silently keep the last of two equal keys (two ``cluster1:`` entries become
  one cluster); these find every duplicate, with its path and lines.

Everything is importable from ``module_utils.topology`` itself.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.schema import (  # noqa: F401
    AKS_CLOUD_ENVIRONMENTS, AKS_NETWORK_KEYS, AKS_NETWORK_PLUGINS, AKS_POOL_KEYS,
    AKS_POOL_MODES, AKS_POOL_NAME, CA_KEY_TYPES, CLOUD_VM_PROVIDERS, CLUSTER_KEYS,
    CLUSTER_PROVIDERS, DEFAULT_CA, DEFAULT_FEATURES, DEFAULT_ISTIO_HUB,
    DEFAULT_ISTIO_VERSION, DEFAULT_STATE_DIR, DEFAULT_TRUST_DOMAIN, DEFAULT_VM_COUNT,
    ISTIO_DEFAULT_RELEASE, ISTIO_HUB, ISTIO_KEYS, ISTIO_RELEASE, ISTIO_SUPPORTED_MINOR,
    ISTIO_VERSION, LABEL_NAME, LABEL_RULE, LABEL_VALUE, LOCAL_CLUSTER_PROVIDERS,
    MAX_CA_DAYS, MAX_FILE_BYTES, MAX_MESSAGE, MAX_PATH_SHOWN, MAX_SETTING_INT, MAX_SHOWN,
    MAX_VM_COUNT, MAX_YAML_ALIASES, MAX_YAML_DEPTH, MAX_YAML_NODES, MESH_KEYS, NETWORK_KEYS,
    PLUGIN_KEYS, REQUIRED_SETTINGS, RESERVED_HOST_NAMES, ROLES, SETTING_TYPES, STATE_DIR_ENV, TOP_KEYS,
    VM_GROUP_KEYS, VM_PROVIDERS, WAIT_OPERATIONS)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.common import (  # noqa: F401
    clip, did_you_mean, is_dns_label, is_dns_subdomain, is_host_name, is_hostname, is_int,
    is_ip, is_mapping, is_str, key_path, kind, one_of, PLAIN_KEY, show, string_types)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.normalise import (  # noqa: F401
    default_istio_version, image_pulling_clusters, mesh_defaults, normalise, state_dir)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.settings import (  # noqa: F401
    aks_pool_mode, aks_settings_problems, cidr_problem, source_cidr_problem)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.mesh import (  # noqa: F401
    _istio_minor)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.vm_groups import (  # noqa: F401
    netns_addresses, netns_vm_names)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.validate import (  # noqa: F401
    check_topology, validate)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.summary import (  # noqa: F401
    summarise)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.loader import (  # noqa: F401
    compose_topology, decode_topology, DuplicateKeyError, find_duplicate_keys, HAS_YAML,
    LenientTopologyLoader, load_topology, NOT_A_TOPOLOGY, PLUGIN_NAME, TopologyFileError,
    TopologyLoader, yaml)
