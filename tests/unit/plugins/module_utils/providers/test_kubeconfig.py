# -*- coding: utf-8 -*-
"""kubeconfig helper (module_utils/kubeconfig.py) and the shared cloud helpers (module_utils/cloud.py)."""

from __future__ import absolute_import, division, print_function

import base64
import os
import stat

import pytest
import yaml

from ansible_collections.meshfleet.mesh.plugins.module_utils import kubeconfig as kc
from ansible_collections.meshfleet.mesh.plugins.module_utils import cloud

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"


def test_build_token_kubeconfig():
    cfg = kc.build_kubeconfig("c1", "https://10.0.0.1:6443", kc.token_user("t0k"), ca=PEM, namespace="ns")
    assert cfg["current-context"] == "c1"
    assert cfg["contexts"] == [{"name": "c1", "context": {"cluster": "c1", "user": "c1", "namespace": "ns"}}]
    assert base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"]).decode() == PEM + "\n"
    assert cfg["users"][0]["user"] == {"token": "t0k"}
    assert kc.server_of(cfg) == "https://10.0.0.1:6443"
    # already-base64 CA data is kept as is
    assert kc.ca_data("RkFLRQ==") == "RkFLRQ=="


def test_exec_and_cert_users():
    user = kc.exec_user("gke-gcloud-auth-plugin", install_hint="install it", provide_cluster_info=True,
                        env={"B": "2", "A": "1"})
    assert user["exec"]["command"] == "gke-gcloud-auth-plugin" and user["exec"]["provideClusterInfo"] is True
    assert user["exec"]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert user["exec"]["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    cert = kc.cert_user(PEM, "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----")
    assert set(cert) == {"client-certificate-data", "client-key-data"}


def test_write_is_0600_and_token_refresh_is_no_change(tmp_path):
    path = str(tmp_path / "clusters" / "c1" / "kubeconfig")
    cfg = kc.build_kubeconfig("c1", "https://a", kc.token_user("one"))
    assert kc.write_kubeconfig(path, cfg) is True
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert kc.write_kubeconfig(path, cfg) is False
    # a new token is written (refresh) but is not a change
    assert kc.write_kubeconfig(path, kc.build_kubeconfig("c1", "https://a", kc.token_user("two"))) is False
    assert yaml.safe_load(open(path))["users"][0]["user"]["token"] == "two"
    # anything else is
    assert kc.write_kubeconfig(path, kc.build_kubeconfig("c1", "https://b", kc.token_user("two"))) is True
    # a loose mode is tightened even when nothing else changes
    os.chmod(path, 0o644)
    kc.write_kubeconfig(path, kc.build_kubeconfig("c1", "https://b", kc.token_user("two")))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_write_accepts_yaml_text(tmp_path):
    path = str(tmp_path / "kc")
    text = kc.dump(kc.build_kubeconfig("c1", "https://a", kc.token_user("x")))
    assert kc.write_kubeconfig(path, text) is True
    with pytest.raises(ValueError):
        kc.write_kubeconfig(path, "- not a mapping")


def test_field_patterns():
    p = cloud.FieldPatterns(("location", "network_profile.*", "node_pools.*.vm_size"))
    assert "location" in p and "network_profile.pod_cidr" in p and "node_pools.sys.vm_size" in p
    assert "node_pools.sys.count" not in p and "node_pools.new" not in p and "tags" not in p
    assert list(p) == ["location", "network_profile.*", "node_pools.*.vm_size"]


def test_flatten_and_diff():
    nested = {"node_pools": "by_name", "network_profile": "dict", "node_group": "dict"}
    want = cloud.flatten_settings(dict(
        location="x", tags={"a": "1"}, network_profile=dict(pod_cidr="10.0.0.0/16", plugin=None),
        node_pools=[dict(name="sys", count=2), dict(name="new", count=1, vm_size="big")],
        node_group=dict(name="ng", scaling=dict(min=1, max=2))), nested)
    assert want == {"location": "x", "tags": {"a": "1"}, "network_profile.pod_cidr": "10.0.0.0/16",
                    "node_pools.sys.count": 2, "node_pools.new.count": 1, "node_pools.new.vm_size": "big",
                    "node_group.name": "ng", "node_group.scaling.min": 1, "node_group.scaling.max": 2}
    have = cloud.flatten_settings(dict(location="x", tags={"a": "1"},
                                       network_profile=dict(pod_cidr="10.1.0.0/16"),
                                       node_pools=[dict(name="sys", count=3)],
                                       node_group=dict(name="ng", scaling=dict(min=1, max=2))), nested)
    changes = cloud.group_new_items(cloud.diff_flat(want, have), have, ("node_pools",))
    assert changes == {"network_profile.pod_cidr": ("10.1.0.0/16", "10.0.0.0/16"),
                       "node_pools.sys.count": (3, 2),
                       "node_pools.new": (None, {"count": 1, "vm_size": "big"})}
    with pytest.raises(cloud.MeshfleetError, match="needs a name"):
        cloud.flatten_settings(dict(node_pools=[dict(count=1)]), nested)


@pytest.mark.parametrize("have,want,same", [
    ("1.33.2", "1.33", True), ("v1.33.2", "1.33", True), ("1.33.5-gke.100", "1.33", True),
    ("1.34.0", "1.33", False), ("1.3", "1.33", False), (None, "1.33", False), ("1.33", "1.33", True)])
def test_version_matches(have, want, same):
    assert cloud.version_matches(have, want) is same
