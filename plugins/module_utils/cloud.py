# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers shared by the cloud cluster providers (aks, gke, eks, minikube) and the cloud VM providers.

- :class:`FieldPatterns`: an ``immutable_settings`` value matching dotted field paths
  with wildcards (``network_profile.*``, ``node_pools.*.vm_size``), so the generic
  state machine's ``field in provider.immutable_settings`` check works on fine-grained
  paths without changing ``module_utils/cluster.py``.
- :func:`flatten_settings`: turn nested settings into ``{dotted.path: value}``.
- :func:`module_timeout` / :func:`module_wait`: the module's wait options, for providers
  that wait on a cloud long-running operation themselves.
- AWS session + credential check shared by the EKS and EC2 providers.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
import ipaddress
import os
import time

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError

DEFAULT_TIMEOUT = 300


class FieldPatterns(tuple):
    """A tuple of glob patterns whose ``in`` matches dotted field paths.

    ``"network_profile.pod_cidr" in FieldPatterns(("network_profile.*",))`` is True.
    A pattern also matches the paths below it: ``"location"`` covers ``"location.x"``.
    """

    def __contains__(self, field):
        for pattern in tuple.__iter__(self):
            if fnmatch.fnmatchcase(field, pattern) or field.startswith(pattern + "."):
                return True
        return False


def flatten_settings(settings, nested):
    """Flatten ``settings`` for comparison.

    ``nested`` maps a setting to how it nests: ``"dict"`` (one level of keys:
    ``network_profile.pod_cidr``; a value that is itself a dict recurses one more
    level: ``node_group.scaling.min``) or ``"by_name"`` (a list of dicts keyed by
    their ``name``: ``node_pools.system.count``). Other settings stay whole.
    ``None`` values are dropped (not given = not compared).
    """
    flat = {}
    for key, value in (settings or {}).items():
        if value is None:
            continue
        kind = nested.get(key)
        if kind == "dict" and isinstance(value, dict):
            _flatten_dict(flat, key, value, depth=2)
        elif kind == "by_name" and isinstance(value, list):
            for item in value:
                if not isinstance(item, dict) or not item.get("name"):
                    raise MeshfleetError("setting %s: every item needs a name" % key)
                _flatten_dict(flat, "%s.%s" % (key, item["name"]), item, depth=1, skip=("name",))
        else:
            flat[key] = value
    return flat


def _flatten_dict(flat, prefix, value, depth, skip=()):
    for k, v in value.items():
        if k in skip or v is None:
            continue
        path = "%s.%s" % (prefix, k)
        if isinstance(v, dict) and depth > 1:
            _flatten_dict(flat, path, v, depth - 1)
        else:
            flat[path] = v


def diff_flat(desired, observed, same=None):
    """{path: (observed, desired)} for each desired path whose value differs.

    A desired item (``node_pools.<name>.*``) with no observed counterpart at all is
    reported once as ``node_pools.<name>`` (a new item), not field by field.
    """
    same = same or (lambda k, a, b: a == b)
    changes = {}
    for path in sorted(desired):
        want = desired[path]
        have = observed.get(path)
        if same(path, have, want):
            continue
        changes[path] = (have, want)
    return changes


def group_new_items(changes, observed, prefixes):
    """Collapse ``prefix.<name>.field`` changes of items absent from ``observed`` into ``prefix.<name>``."""
    out = {}
    for path, value in changes.items():
        parts = path.split(".")
        if parts[0] in prefixes and len(parts) >= 3:
            item = "%s.%s" % (parts[0], parts[1])
            if not any(k.startswith(item + ".") for k in observed):
                out.setdefault(item, (None, {}))[1][parts[2]] = value[1]
                continue
        out[path] = value
    return out


def version_matches(have, want):
    """``"1.30"`` matches ``"1.30.4"`` and ``"v1.30.4"``; both compared without a leading ``v``."""
    if have is None or want is None:
        return have == want
    have = str(have).lstrip("v")
    want = str(want).lstrip("v")
    return have == want or have.startswith(want + ".")


def module_params(module):
    """The params of the MeshfleetModule driving a provider (``{}`` without one)."""
    return getattr(module, "params", None) or {}


def module_timeout(module):
    """Seconds a provider may wait now: what is left of the running operation's budget when
    the module set one (``module.wait_deadline``, a ``time.monotonic()`` value: one bound for
    all the waits of an operation, e.g. EKS cluster then node group), else ``wait_timeout``."""
    deadline = getattr(module, "wait_deadline", None)
    if deadline is not None:
        return max(1, int(round(deadline - time.monotonic())))
    return module_params(module).get("wait_timeout") or DEFAULT_TIMEOUT


def module_wait(module):
    params = module_params(module)
    return params.get("wait", True) if "wait" in params else True


# --- security group sources ----------------------------------------------------

def source_cidr_problem(value, show=repr, kind=None):
    """Why ``value`` is not an IPv4/IPv6 network in CIDR notation (a security group source such
    as 203.0.113.7/32 or 2001:db8::/32), or None. ``show`` quotes a value and ``kind`` names a
    type in the message (the topology validation passes its own)."""
    if not isinstance(value, str) or "/" not in value:
        return "must be a network in CIDR notation such as 203.0.113.7/32, got %s" % (
            kind(value) if kind and isinstance(value, (list, dict)) else show(value))
    try:
        net = ipaddress.ip_network(u"%s" % value, strict=False)
    except ValueError:
        return "%s is not a network in CIDR notation such as 203.0.113.7/32" % show(value)
    if str(net) != value:
        return "%s has host bits set; the network is %s" % (show(value), net)
    return None


# --- AWS ----------------------------------------------------------------------

AWS_CREDENTIALS_HELP = (
    "set AWS_PROFILE (a profile in ~/.aws/config or ~/.aws/credentials), or "
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN for temporary "
    "credentials), or run where an instance/container role is available")


def aws_session(region, what):
    """A boto3 Session for ``region`` whose credentials were found (no API call).

    Raises MeshfleetError naming the variables to set when boto3 finds none.
    """
    try:
        import boto3
        import botocore.exceptions
    except ImportError:
        raise MeshfleetError("%s needs the boto3 Python package (pip install boto3)" % what)
    try:
        session = boto3.session.Session(region_name=region)
        creds = session.get_credentials()
    except botocore.exceptions.ProfileNotFound as e:
        raise MeshfleetError("%s: %s; set AWS_PROFILE to a profile that exists in ~/.aws/config"
                             % (what, e))
    except botocore.exceptions.BotoCoreError as e:
        raise MeshfleetError("%s: cannot load AWS credentials: %s" % (what, e))
    if creds is None:
        raise MeshfleetError("%s: no AWS credentials found: %s" % (what, AWS_CREDENTIALS_HELP))
    return session


def aws_client(session, service, endpoint_url=None):
    from botocore.config import Config
    config = Config(retries={"max_attempts": 8, "mode": "standard"}, user_agent_extra="meshfleet")
    return session.client(service, endpoint_url=endpoint_url or None, config=config)


def env_first(*names):
    for name in names:
        if os.environ.get(name):
            return name, os.environ[name]
    return None, None
