# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The modules' Kubernetes client (module_utils/kube_rest.py) against a real kube-apiserver
(one kwok cluster): through an HTTP CONNECT proxy on 127.0.0.1 that counts its tunnels (from
the kubeconfig's proxy-url and from HTTPS_PROXY, the server named by a name only the proxy
resolves), and with impersonation, which the API server itself reports back
(SelfSubjectReview) and enforces (403 naming the impersonated user)."""

from __future__ import absolute_import, division, print_function

import copy
import os

import pytest
import yaml

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError
from ansible_collections.meshfleet.mesh.plugins.module_utils.kube_rest import KubeRest
from ansible_collections.meshfleet.mesh.tests.fakes.kubeapi import ConnectProxy

NAME = "kp1"
HIDDEN = "api.meshfleet.test"   # resolves only inside the proxy


@pytest.fixture(scope="module")
def cluster(kwok_mesh, kwok_clusters):
    kwok_clusters([NAME])
    with open(kwok_mesh.kubeconfig(NAME)) as f:
        cfg = yaml.safe_load(f)
    try:
        yield cfg
    finally:
        kwok_mesh.run([NAME], state="absent")


def write(tmp_path, cfg):
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    os.chmod(str(path), 0o600)
    return str(path)


def entries(cfg):
    ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == cfg["current-context"])
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
    return cluster, user


def hidden(cfg):
    """The cluster renamed to HIDDEN (its certificate still verified, against its real name)."""
    cfg = copy.deepcopy(cfg)
    cluster, _user = entries(cfg)
    real = cluster["server"]
    host_port = real.split("://", 1)[1]
    host, port = host_port.rsplit(":", 1)
    cluster["server"] = "https://%s:%s" % (HIDDEN, port)
    cluster.setdefault("tls-server-name", host.strip("[]"))
    return cfg, host.strip("[]"), int(port)


def version(kube):
    return kube.get("read the version", "/version")["gitVersion"]


@pytest.fixture
def no_proxy_env(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_through_the_kubeconfig_proxy_url(cluster, tmp_path, no_proxy_env):
    cfg, host, port = hidden(cluster)
    with ConnectProxy(hosts={HIDDEN: host}) as proxy:
        entries(cfg)[0]["proxy-url"] = proxy.url
        kube = KubeRest(write(tmp_path, cfg), label=NAME)
        assert version(kube).startswith("v1.")
        ns = kube.get("read namespace kube-system", "/api/v1/namespaces/kube-system")
        assert ns["metadata"]["name"] == "kube-system"
        assert proxy.tunnels == ["%s:%d" % (HIDDEN, port)]   # both requests, one tunnel
        kube.close()


def test_through_https_proxy_and_not_past_no_proxy(cluster, tmp_path, monkeypatch, no_proxy_env):
    cfg, host, port = hidden(cluster)
    path = write(tmp_path, cfg)
    with ConnectProxy(hosts={HIDDEN: host}) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1,.cluster.local")
        assert version(KubeRest(path, label=NAME)).startswith("v1.")
        assert proxy.tunnels == ["%s:%d" % (HIDDEN, port)]
        monkeypatch.setenv("NO_PROXY", "meshfleet.test")
        with pytest.raises(MeshfleetError) as e:
            version(KubeRest(path, label=NAME))
        assert "is unreachable" in e.value.msg and len(proxy.tunnels) == 1


def test_impersonation_is_what_the_api_server_sees(cluster, tmp_path, no_proxy_env):
    cfg = copy.deepcopy(cluster)
    _cluster, user = entries(cfg)
    user.update({"as": "jane", "as-groups": ["devs"], "as-user-extra": {"acme.com/scopes": ["view", "edit"]}})
    kube = KubeRest(write(tmp_path, cfg), label=NAME)
    review = kube.request("review who I am", "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                          body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    info = review["status"]["userInfo"]
    assert info["username"] == "jane"
    assert "devs" in info["groups"] and "system:masters" not in info["groups"]
    assert info["extra"] == {"acme.com/scopes": ["view", "edit"]}
    # the admin credential itself is not what is authorised: jane may not read secrets
    with pytest.raises(MeshfleetError) as e:
        kube.get("list secrets in kube-system", "/api/v1/namespaces/kube-system/secrets")
    assert e.value.details["status"] == 403 and 'User "jane" cannot list resource "secrets"' in e.value.msg
    # without impersonation the same credential may
    plain = KubeRest(write(tmp_path, cluster), label=NAME)
    assert "items" in plain.get("list secrets in kube-system", "/api/v1/namespaces/kube-system/secrets")
