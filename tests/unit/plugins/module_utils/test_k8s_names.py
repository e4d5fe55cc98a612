# -*- coding: utf-8 -*-
"""The one DNS-1123 name rule (module_utils/k8s_names.py) and the lengths per kind of name."""

from __future__ import absolute_import, division, print_function

import pytest

from ansible_collections.meshfleet.mesh.plugins.module_utils import k8s_names as n
from ansible_collections.meshfleet.mesh.plugins.module_utils import pki
from ansible_collections.meshfleet.mesh.plugins.module_utils import topology as t
from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError
from ansible_collections.meshfleet.mesh.plugins.module_utils.remote_secret import check_cluster_name


@pytest.mark.parametrize("kind,value,ok", [
    ("label", "a", True), ("label", "a-1", True), ("label", "x" * 63, True), ("label", "x" * 64, False),
    ("label", "a.b", False), ("label", "-a", False), ("label", "a-", False), ("label", "A", False),
    ("label", "", False), ("label", None, False), ("label", 5, False),
    ("subdomain", "a.b-c.d", True), ("subdomain", ("x" * 63 + ".") * 3 + "x" * 61, True),
    ("subdomain", ("x" * 63 + ".") * 3 + "x" * 62, False), ("subdomain", "a..b", False),
    ("subdomain", "a.-b", False), ("subdomain", ".a", False),
    ("host", "vm-1.example", True), ("host", "x" * 63, True), ("host", "x" * 30 + "." + "x" * 33, False),
    ("Namespace", "istio-system", True), ("Namespace", "a.b", False),
    ("Secret", "istio-remote-secret-" + "c" * 63, True), ("ServiceAccount", "a.b", True),
    ("WorkloadGroup", "x" * 254, False),
])
def test_rules_and_lengths(kind, value, ok):
    assert n.is_name(kind, value) is ok


def test_every_caller_agrees_on_the_label_length():
    """The cluster name rule of the topology, the CA and the remote secret is one rule."""
    for name, ok in (("c" * 63, True), ("c" * 64, False), ("c.1", False)):
        topo = {"mesh": {"id": "m"}, "clusters": {name: {"provider": "kwok", "network": "n"}}}
        assert (t.validate(topo) == []) is ok, name
        for check in (pki.validate_cluster_name, check_cluster_name):
            if ok:
                check(name)
            else:
                with pytest.raises(MeshfleetError):
                    check(name)


def test_vm_host_names_are_host_names():
    """A VM host name is its /etc/hostname: 63 characters at most, as the netns provider needs."""
    long_name = "v" * 40 + "." + "w" * 30
    topo = {"mesh": {"id": "m"}, "clusters": {"c": {"provider": "kwok", "network": "n"}},
            "vm_groups": {"g": {"cluster": "c", "hosts": {long_name: {"ansible_host": "10.0.0.2"}}}}}
    assert t.validate(topo) == [
        'vm_groups.g.hosts.%s: VM host name "%s" is not a DNS-1123 name (lowercase letters, digits, '
        "'-' and '.', at most 63 characters: it is the VM's host name)" % (long_name, long_name)]
