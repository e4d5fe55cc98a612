# -*- coding: utf-8 -*-
"""kwok provider: the ``apiserver_extra_args`` setting (kube-apiserver flags via kwokctl's
componentsPatches); creating clusters with it is covered by tests/integration/test_multicloud_fakes.py."""

from __future__ import absolute_import, division, print_function

import pytest

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError
from ansible_collections.meshfleet.mesh.plugins.module_utils.providers.kwok import KwokProvider
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology import validate


def test_apiserver_extra_args_must_be_a_mapping(tmp_path):
    prov = KwokProvider("c1", dict(apiserver_extra_args=["--x=1"], tools_bin=str(tmp_path)), str(tmp_path))
    with pytest.raises(MeshfleetError) as e:
        prov.validate()
    assert "apiserver_extra_args must be a mapping" in str(e.value)


def test_topology_knows_the_setting():
    topo = {"mesh": {"id": "m"}, "clusters": {"c": {
        "provider": "kwok", "network": "n",
        "settings": {"apiserver_extra_args": {"authentication-token-webhook-cache-ttl": "5s"}}}}}
    assert [str(x) for x in validate(topo)] == []
    topo["clusters"]["c"]["settings"]["apiserver_extra_args"] = "x"
    problems = [str(x) for x in validate(topo)]
    assert len(problems) == 1 and "apiserver_extra_args" in problems[0], problems
