# -*- coding: utf-8 -*-
"""The provider spec (module_utils/provider_spec.py), the one registry that reads it, and the
provider base classes' validate() that check its required settings."""

from __future__ import absolute_import, division, print_function

import pytest

from ansible_collections.meshfleet.mesh.plugins.module_utils import provider_spec as ps
from ansible_collections.meshfleet.mesh.plugins.module_utils import topology as t
from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError
from ansible_collections.meshfleet.mesh.plugins.module_utils.provider_registry import provider_class
from ansible_collections.meshfleet.mesh.plugins.module_utils.providers import get_provider_class
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers.base import get_vm_provider_class


@pytest.mark.parametrize("name", sorted(ps.PROVIDERS))
def test_each_spec_is_complete(name):
    spec = ps.PROVIDERS[name]
    assert spec["kind"] in ("cluster", "vm") and spec["description"]
    for key, setting in spec["settings"].items():
        assert setting["type"] in ps.TYPES, (key, setting)
        assert setting["description"] and "\n" not in setting["description"], key
    assert set(spec["required"]) <= set(spec["settings"])
    for field in spec["immutable"]:
        assert field.split(".")[0] in spec["settings"], field


@pytest.mark.parametrize("name", [n for n, s in sorted(ps.PROVIDERS.items()) if s["impl"]])
def test_the_registry_serves_each_spec_class(name):
    spec = ps.PROVIDERS[name]
    cls = provider_class(name, spec["kind"])
    assert cls.__name__ == spec["impl"][1] and cls.name == name
    assert cls.__module__.endswith(".module_utils.%s" % spec["impl"][0])


def test_unknown_names_and_wrong_kinds_are_refused_with_the_choices():
    with pytest.raises(MeshfleetError, match=r"unknown cluster provider 'netns'; choose one of: aks, eks, gke, kwok, minikube"):
        get_provider_class("netns")
    with pytest.raises(MeshfleetError, match=r"unknown VM provider 'existing'; choose one of: ec2, netns, openstack"):
        get_vm_provider_class("existing")
    with pytest.raises(MeshfleetError, match="unknown VM provider None"):
        provider_class(None, "vm")


def test_the_topology_reads_the_spec():
    ps.PROVIDERS["kwok"]["settings"]["extra_flag"] = dict(type="bool", description="a test setting")
    try:
        cluster = {"provider": "kwok", "network": "n", "settings": {"extra_flag": "yes"}}
        topo = {"mesh": {"id": "m"}, "clusters": {"c": cluster}}
        assert t.validate(topo) == ['clusters.c.settings.extra_flag: must be true or false, got "yes"']
    finally:
        del ps.PROVIDERS["kwok"]["settings"]["extra_flag"]


@pytest.mark.parametrize("typ,bad,message", [
    ("int", 0, "must be a whole number from 1 to 100000, got 0"),
    ("int", 100001, "must be a whole number from 1 to 100000, got 100001"),
    ("count", -1, "must be a whole number from 0 to 1000, got -1"),
    ("count", 1001, "must be a whole number from 0 to 1000, got 1001"),
])
def test_bounds_come_from_the_types_table(typ, bad, message):
    key = {"int": "nodes", "count": "count"}[typ]
    provider, section = ("kwok", "clusters") if typ == "int" else ("ec2", "vm_groups")
    topo = {"mesh": {"id": "m"}, "clusters": {"c": {"provider": "kwok", "network": "n"}}}
    if section == "clusters":
        topo["clusters"]["c"]["settings"] = {key: bad}
        path = "clusters.c.settings.%s" % key
    else:
        topo["vm_groups"] = {"g": {"cluster": "c", "provider": provider, "settings": dict(
            region="r", ami="a", instance_type="t", subnet_id="s", count=bad)}}
        path = "vm_groups.g.settings.count"
    assert "%s: %s" % (path, message) in t.validate(topo)


def test_base_validate_requires_the_spec_settings_in_order():
    cls = get_provider_class("eks")
    with pytest.raises(MeshfleetError, match=r"^cluster c1 \(provider eks\): missing provider settings: region, subnet_ids$"):
        cls("c1", dict(role_arn="arn"), "/nonexistent").validate()
    vm = get_vm_provider_class("openstack")
    with pytest.raises(MeshfleetError, match=r"^VM group web \(provider openstack\): missing provider setting: flavor$"):
        vm("web", "m", dict(cloud="c", image="i", network="n")).validate()


def test_immutable_fields_come_from_the_spec():
    cls = get_provider_class("aks")
    p = cls("c1", dict(resource_group="rg", location="x"), "/nonexistent")
    assert "network_profile.pod_cidr" in p.immutable_settings
    assert "node_pools.system.vm_size" in p.immutable_settings
    assert "node_pools.system.count" not in p.immutable_settings
    assert "tags" not in p.immutable_settings
