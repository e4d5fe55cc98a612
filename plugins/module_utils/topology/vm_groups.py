# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation of ``vm_groups``: cluster, network, namespace and service account, provider and
settings, ports, labels and hosts (with the netns group rules).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


from ansible_collections.meshfleet.mesh.plugins.module_utils.k8s_names import HOST_NAME_MAX
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.clusters import (
    _networks_of, _primary_names, _reserved)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.common import (
    _hashable, _missing, _plural, is_host_name, is_hostname, is_int, is_ip, is_mapping,
    is_str, one_of, show)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.schema import (
    CLOUD_VM_PROVIDERS, DEFAULT_VM_COUNT, LABEL_NAME, LABEL_VALUE, VM_GROUP_KEYS,
    VM_PROVIDERS)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.settings import (
    _validate_settings)
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers.netns.addressing import (
    capacity, parse_subnet, subnet_problem)
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers.netns.addressing import (  # noqa: F401
    group_addresses as netns_addresses, group_vm_names as netns_vm_names)


def _is_template(value):
    return is_str(value) and ("{{" in value or "{%" in value)


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
            if not is_host_name(host):
                p.add(hpath, "VM host name %s is not a DNS-1123 name (lowercase letters, "
                      "digits, '-' and '.', at most %d characters: it is the VM's host name)"
                      % (show(host), HOST_NAME_MAX))
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
    if subnet is None or subnet_problem(subnet):
        return  # missing or bad: reported with the settings
    net = parse_subnet(subnet)
    for other, other_net in seen_subnets:
        if net.overlaps(other_net):
            p.add(path + ".settings.subnet", "%s overlaps %s of VM group %s; every netns VM group "
                  "needs its own subnet" % (show(subnet), other_net, other))
            break
    seen_subnets.append((name, net))
    names = netns_vm_names(name, dict(hosts=hosts, settings=settings))
    room = capacity(net)
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
