# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the kernel holds in a network namespace, and the few changes the local networks
make to it, through ``ip`` (iproute2, JSON output), ``sysctl`` and ``iptables`` run inside
the namespace. Every command names its namespace: nothing here runs in the host's.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError

TOOLS = ("ip", "sysctl", "iptables")


def run(cmd, check=True):
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, check=False)
    except OSError as e:
        raise MeshfleetError("cannot run %s: %s (the local networks need iproute2, procps and iptables)"
                             % (cmd[0], e))
    if check and proc.returncode != 0:
        raise MeshfleetError("command failed (rc=%d): %s: %s" % (
            proc.returncode, " ".join(cmd), (proc.stderr or proc.stdout).strip()))
    return proc


def netns_exists(ns):
    return os.path.exists(os.path.join("/run/netns", ns))


def _json(cmd):
    out = run(cmd).stdout.strip()
    return json.loads(out) if out else []


def _dst(route):
    dst = route.get("dst", "")
    return dst if dst == "default" or "/" in dst else dst + "/32"


def observe(ns, nat=False):
    """``{exists, links: {ifname: {kind, ifindex, peer_index, up, addresses}}, routes: {dst:
    {via, dev}}, forward, snat}`` of ``ns``: links with their IPv4 addresses, the main table's
    routes through a gateway (connected routes are the kernel's), ``net.ipv4.ip_forward``
    and (``nat``) the nat table's POSTROUTING rules."""
    if not netns_exists(ns):
        return dict(exists=False, links={}, routes={}, forward=False, snat=[])
    links = {}
    for link in _json(["ip", "-n", ns, "-d", "-j", "addr", "show"]):
        links[link["ifname"]] = dict(
            kind=(link.get("linkinfo") or {}).get("info_kind"), ifindex=link.get("ifindex"),
            peer_index=link.get("link_index"), up="UP" in (link.get("flags") or []),
            addresses=sorted("%s/%s" % (i["local"], i["prefixlen"]) for i in link.get("addr_info") or []
                             if i.get("family") == "inet"))
    routes = {}
    for r in _json(["ip", "-n", ns, "-j", "route", "show", "table", "main"]):
        if r.get("gateway") and r.get("type", "unicast") == "unicast":
            routes[_dst(r)] = dict(via=r["gateway"], dev=r.get("dev"))
    forward = run(["ip", "netns", "exec", ns, "sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "1"
    snat = []
    if nat:
        out = run(["ip", "netns", "exec", ns, "iptables", "-w", "-t", "nat", "-S", "POSTROUTING"]).stdout
        snat = [line.strip() for line in out.splitlines() if line.startswith("-A POSTROUTING")]
    return dict(exists=True, links=links, routes=routes, forward=forward, snat=snat)


def is_pair(obs_a, if_a, obs_b, if_b):
    """Whether ``if_a`` (observed in namespace a) and ``if_b`` (in b) are the two ends of one veth."""
    la, lb = obs_a["links"].get(if_a), obs_b["links"].get(if_b)
    return bool(la and lb and la["kind"] == "veth" and lb["kind"] == "veth"
                and la["peer_index"] == lb["ifindex"] and lb["peer_index"] == la["ifindex"])


# --- changes -------------------------------------------------------------------------------

def add_netns(ns):
    if not netns_exists(ns):
        run(["ip", "netns", "add", ns])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])


def del_netns(ns):
    """Remove ``ns``. Its links go first, one by one: the kernel frees a deleted namespace's
    links later, in the background, and the other ends of its veths (a node's ``eth0``) must be
    gone when this returns."""
    if not netns_exists(ns):
        return
    for link in _json(["ip", "-n", ns, "-j", "link", "show"]):
        if link["ifname"] != "lo":
            run(["ip", "-n", ns, "link", "del", link["ifname"]], check=False)
    run(["ip", "netns", "del", ns])


def set_forward(ns, on=True):
    run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=%d" % (1 if on else 0)])


def add_veth(ns_a, if_a, ns_b, if_b):
    """A veth pair, ``if_a`` in ``ns_a`` and ``if_b`` in ``ns_b``; ends left over from an
    earlier pair are removed first (deleting one end of a veth deletes both)."""
    for ns, ifname in ((ns_a, if_a), (ns_b, if_b)):
        run(["ip", "-n", ns, "link", "del", ifname], check=False)
    run(["ip", "-n", ns_a, "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", ns_b])
    for ns, ifname in ((ns_a, if_a), (ns_b, if_b)):
        # no IPv6 on the plan's links (no router advertisements, no link-local chatter)
        run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.%s.disable_ipv6=1" % ifname], check=False)


def del_link(ns, ifname):
    if netns_exists(ns):
        run(["ip", "-n", ns, "link", "del", ifname], check=False)


def set_address(ns, ifname, cidr):
    run(["ip", "-n", ns, "addr", "flush", "dev", ifname])
    run(["ip", "-n", ns, "addr", "add", cidr, "dev", ifname])
    run(["ip", "-n", ns, "link", "set", ifname, "up"])


def link_up(ns, ifname):
    run(["ip", "-n", ns, "link", "set", ifname, "up"])


def set_route(ns, dst, via, dev):
    run(["ip", "-n", ns, "route", "replace", dst, "via", via, "dev", dev])


def del_route(ns, dst):
    run(["ip", "-n", ns, "route", "del", dst], check=False)


def add_rule(ns, rule):
    """``rule`` in ``iptables -S`` form (``-A CHAIN ...``), into the nat table."""
    run(["ip", "netns", "exec", ns, "iptables", "-w", "-t", "nat"] + rule.split())


def del_rule(ns, rule):
    run(["ip", "netns", "exec", ns, "iptables", "-w", "-t", "nat", "-D"] + rule.split()[1:], check=False)
