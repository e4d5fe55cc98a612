# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation of provider settings (``clusters.<c>.settings``, ``vm_groups.<g>.settings``)
against each provider's spec (``provider_spec``), with the AKS rules beyond types.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.common import (
    _Problems, _float_hint, _missing, did_you_mean, is_int, is_ip, is_mapping, is_str, kind,
    one_of, show)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.schema import (
    AKS_CLOUD_ENVIRONMENTS, AKS_NETWORK_KEYS, AKS_NETWORK_PLUGINS, AKS_POOL_KEYS,
    AKS_POOL_NAME)
from ansible_collections.meshfleet.mesh.plugins.module_utils import cloud
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers.netns.addressing import subnet_problem
from ansible_collections.meshfleet.mesh.plugins.module_utils.provider_spec import (
    PROVIDERS, TYPES, setting_types)


def _check_type(p, path, value, typ):
    """Report ``value`` at ``path`` when it is not what provider_spec.TYPES[typ] says."""
    rule = TYPES[typ]
    want = rule["want"] % rule
    if typ == "str":
        ok = is_str(value)
        want += _float_hint(value)
    elif typ in ("int", "count"):
        ok = is_int(value) and rule["min"] <= value <= rule["max"]
    elif typ == "bool":
        ok = isinstance(value, bool)
    elif typ == "list":
        ok = isinstance(value, list)
    elif typ == "str_list":
        ok = isinstance(value, list) and all(is_str(v) and v for v in value)
    elif typ == "dict":
        ok = is_mapping(value)
    elif typ == "ip":
        ok = is_str(value) and is_ip(value)
    elif typ == "size":
        ok = (is_int(value) and value > 0) or (is_str(value) and bool(value.strip()))
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
    types = setting_types(provider)
    required = tuple(PROVIDERS[provider]["required"])
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
            choices = PROVIDERS[provider]["settings"][key].get("choices")
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


def source_cidr_problem(value):
    """Why ``value`` is not a security group source (IPv4/IPv6 CIDR), or None."""
    return cloud.source_cidr_problem(value, show, kind)


def cidr_problem(value):
    """Why ``value`` is not a usable netns subnet (IPv4 CIDR, /30 or larger), or None."""
    return subnet_problem(value, show, kind)
