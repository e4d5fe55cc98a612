# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""kube_rest.KubeRest's kubeconfig features beyond certificates and tokens, for real: a CONNECT
proxy on 127.0.0.1 that counts its tunnels in front of a real local HTTPS server (the server's
name, api.meshfleet.test, resolves only in the proxy: a request that bypassed it could not
succeed), the proxy environment variables and NO_PROXY, impersonation headers as the server
received them, and the kubeconfig features the client refuses by name."""

from __future__ import absolute_import, division, print_function

import base64
import os

import pytest
import yaml

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError
from ansible_collections.meshfleet.mesh.plugins.module_utils.kube_rest import (
    KubeRest, impersonate_extra_header, no_proxy_matches, proxy_from_environment)
from ansible_collections.meshfleet.mesh.tests.fakes.cloudsim.pki import make_server_pki
from ansible_collections.meshfleet.mesh.tests.fakes.kubeapi import ConnectProxy, RecordedApi

NS = {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "default"}}
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch):
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_server_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def api(pki):
    with RecordedApi({("GET", "/api/v1/namespaces/default"): (200, NS)}, tls=(pki["cert"], pki["key"])) as server:
        yield server


@pytest.fixture
def plain_api():
    with RecordedApi({("GET", "/api/v1/namespaces/default"): (200, NS)}) as server:
        yield server


def write_kubeconfig(tmp_path, cluster, user=None):
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "c1",
           "clusters": [{"name": "c1", "cluster": cluster}],
           "contexts": [{"name": "c1", "context": {"cluster": "c1", "user": "u1"}}],
           "users": [{"name": "u1", "user": user if user is not None else {"token": "t0k3n"}}]}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def named_cluster(api, pki, **extra):
    """The test server under a name only the proxy resolves, verified as ``localhost``."""
    return dict({"server": "https://api.meshfleet.test:%d" % api.port, "certificate-authority": pki["ca"],
                 "tls-server-name": "localhost"}, **extra)


def headers_of(request, name):
    return [v for k, v in request[2] if k.lower() == name.lower()]


def read_default(kube):
    return kube.get("read namespace default", "/api/v1/namespaces/default")["metadata"]["name"]


# --- proxy-url ---------------------------------------------------------------------------------

def test_proxy_url_tunnels_to_the_server_and_keeps_the_tunnel(tmp_path, api, pki):
    hosts = {"api.meshfleet.test": "127.0.0.1"}
    with ConnectProxy(hosts=hosts) as proxy:
        kube = KubeRest(write_kubeconfig(tmp_path, named_cluster(api, pki, **{"proxy-url": proxy.url})), label="c1")
        assert read_default(kube) == "default"
        assert read_default(kube) == "default"
        assert proxy.tunnels == ["api.meshfleet.test:%d" % api.port]   # one keep-alive tunnel, two requests
    # the Host header is the server's, not the proxy's
    assert headers_of(api.seen[-1], "Host") == ["api.meshfleet.test:%d" % api.port]
    assert headers_of(api.seen[-1], "Authorization") == ["Bearer t0k3n"]


def test_proxy_url_wins_over_no_proxy_and_loopback(tmp_path, api, pki, monkeypatch):
    """Like kubectl: proxy-url is used as given (NO_PROXY and the loopback rule are for the
    environment variables)."""
    monkeypatch.setenv("NO_PROXY", "*")
    with ConnectProxy() as proxy:
        cluster = {"server": api.url, "certificate-authority": pki["ca"], "proxy-url": proxy.url}
        assert read_default(KubeRest(write_kubeconfig(tmp_path, cluster), label="c1")) == "default"
        assert proxy.tunnels == ["127.0.0.1:%d" % api.port]


def test_proxy_credentials_from_the_url(tmp_path, api, pki):
    with ConnectProxy(hosts={"api.meshfleet.test": "127.0.0.1"}, credentials="alice:s3cr3t/x") as proxy:
        url = proxy.url.replace("http://", "http://alice:s3cr3t%2Fx@")
        kube = KubeRest(write_kubeconfig(tmp_path, named_cluster(api, pki, **{"proxy-url": url})), label="c1")
        assert read_default(kube) == "default" and len(proxy.tunnels) == 1
        # without them the proxy answers 407, and the message names the proxy, not its password
        bare = KubeRest(write_kubeconfig(tmp_path, named_cluster(api, pki, **{"proxy-url": proxy.url})), label="c1")
        with pytest.raises(MeshfleetError) as e:
            read_default(bare)
        assert "through proxy %s" % proxy.url in e.value.msg and "407" in e.value.msg
        kube.close()
        wrong = url.replace("s3cr3t", "nope")
        kube = KubeRest(write_kubeconfig(tmp_path, named_cluster(api, pki, **{"proxy-url": wrong})), label="c1")
        with pytest.raises(MeshfleetError) as e:
            read_default(kube)
        assert "nope" not in e.value.msg and "alice:xxx@" in e.value.msg


def test_http_server_through_a_proxy_is_forwarded(tmp_path, plain_api):
    with ConnectProxy(hosts={"api.meshfleet.test": "127.0.0.1"}) as proxy:
        cluster = {"server": "http://api.meshfleet.test:%d" % plain_api.port, "proxy-url": proxy.url}
        assert read_default(KubeRest(write_kubeconfig(tmp_path, cluster), label="c1")) == "default"
        assert proxy.forwarded == ["http://api.meshfleet.test:%d/api/v1/namespaces/default" % plain_api.port]
        assert proxy.tunnels == []


@pytest.mark.parametrize("url, scheme", [("socks5://127.0.0.1:1080", "socks5"),
                                         ("https://proxy.example:3128", "https")])
def test_unsupported_proxy_schemes_are_refused_by_name(tmp_path, api, pki, url, scheme):
    with pytest.raises(MeshfleetError) as e:
        KubeRest(write_kubeconfig(tmp_path, named_cluster(api, pki, **{"proxy-url": url})), label="c1")
    assert "is a %s proxy" % scheme in e.value.msg and "proxy-url of cluster 'c1'" in e.value.msg
    assert "http:// proxies only" in e.value.msg


# --- environment ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["HTTPS_PROXY", "https_proxy"])
def test_https_proxy_variable(tmp_path, api, pki, monkeypatch, name):
    with ConnectProxy(hosts={"api.meshfleet.test": "127.0.0.1"}) as proxy:
        monkeypatch.setenv(name, proxy.url.replace("http://", ""))  # no scheme: http, as Go reads it
        monkeypatch.setenv("NO_PROXY", "example.com,10.0.0.0/8")
        kube = KubeRest(write_kubeconfig(tmp_path, named_cluster(api, pki)), label="c1")
        assert read_default(kube) == "default"
        assert proxy.tunnels == ["api.meshfleet.test:%d" % api.port]
        assert "through proxy %s" % proxy.url.replace("http://", "") in kube._name()


@pytest.mark.parametrize("no_proxy", ["meshfleet.test", ".meshfleet.test", "*.meshfleet.test", "*",
                                      "other.example, api.meshfleet.test"])
def test_no_proxy_sends_the_request_directly(tmp_path, api, pki, monkeypatch, no_proxy):
    with ConnectProxy(hosts={"api.meshfleet.test": "127.0.0.1"}) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("no_proxy", no_proxy)
        kube = KubeRest(write_kubeconfig(tmp_path, named_cluster(api, pki)), label="c1")
        with pytest.raises(MeshfleetError) as e:     # the name resolves only in the proxy
            read_default(kube)
        assert "is unreachable" in e.value.msg and "through proxy" not in e.value.msg
        assert proxy.tunnels == []


def test_loopback_servers_skip_the_environment_proxy(tmp_path, api, pki, monkeypatch):
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        kube = KubeRest(write_kubeconfig(tmp_path, {"server": api.url, "certificate-authority": pki["ca"]}))
        assert read_default(kube) == "default" and proxy.tunnels == []


def test_http_proxy_is_for_http_servers():
    env = {"HTTP_PROXY": "http://p1:3128", "HTTPS_PROXY": "http://p2:3128"}
    expected = ("http://p1:3128", "environment variable HTTP_PROXY")
    assert proxy_from_environment("http", "api.example", 80, env) == expected
    assert proxy_from_environment("https", "api.example", 443, env)[0] == "http://p2:3128"
    # upper case first, as Go reads them
    assert proxy_from_environment("https", "api.example", 443, {"HTTPS_PROXY": "http://up:1",
                                                                "https_proxy": "http://low:1"})[0] == "http://up:1"
    assert proxy_from_environment("https", "::1", 443, env) == (None, None)
    assert proxy_from_environment("https", "localhost", 443, env) == (None, None)
    assert proxy_from_environment("https", "api.example", 443, {}) == (None, None)


@pytest.mark.parametrize("host, port, no_proxy, expected", [
    ("api.example.com", 443, "example.com", True),
    ("example.com", 443, "example.com", True),
    ("example.com", 443, ".example.com", False),        # leading dot: subdomains only
    ("a.example.com", 443, ".example.com", True),
    ("a.example.com", 443, "*.example.com", True),
    ("badexample.com", 443, "example.com", False),      # a suffix is not a subdomain
    ("API.Example.COM", 443, "example.com", True),
    ("api.example.com", 443, "example.com:6443", False),
    ("api.example.com", 6443, "example.com:6443", True),
    ("10.1.2.3", 443, "10.0.0.0/8", True),
    ("11.1.2.3", 443, "10.0.0.0/8", False),
    ("10.1.2.3", 443, "10.1.2.3", True),
    ("10.1.2.3", 443, "10.1.2.3:80", False),
    ("fd00::1", 443, "fd00::/8", True),
    ("fd00::1", 443, "[fd00::1]:443", True),
    ("api.example.com", 443, "", False),
    ("api.example.com", 443, " , ,other.org", False),
    ("api.example.com", 443, "*", True),
    ("10.1.2.3", 443, "10.1.2.0/33", False),            # a broken CIDR matches nothing
])
def test_no_proxy_rules(host, port, no_proxy, expected):
    assert no_proxy_matches(host, port, no_proxy) is expected


# --- impersonation ----------------------------------------------------------------------------

def test_impersonation_headers(tmp_path, plain_api):
    user = {"token": "t0k3n", "as": "jane", "as-uid": "u-42", "as-groups": ["devs", "system:authenticated"],
            "as-user-extra": {"scopes": ["view", "edit"], "acme.com/project": ["p1"]}}
    kube = KubeRest(write_kubeconfig(tmp_path, {"server": plain_api.url}, user), label="c1")
    read_default(kube)
    request = plain_api.seen[-1]
    assert headers_of(request, "Impersonate-User") == ["jane"]
    assert headers_of(request, "Impersonate-Uid") == ["u-42"]
    assert headers_of(request, "Impersonate-Group") == ["devs", "system:authenticated"]  # one header each
    assert headers_of(request, "Impersonate-Extra-scopes") == ["view", "edit"]
    assert headers_of(request, "Impersonate-Extra-acme.com%2Fproject") == ["p1"]
    assert headers_of(request, "Authorization") == ["Bearer t0k3n"]


def test_extra_header_names_are_escaped_like_client_go():
    assert impersonate_extra_header("scopes") == "Impersonate-Extra-scopes"
    assert impersonate_extra_header("example.com/a b%") == "Impersonate-Extra-example.com%2Fa%20b%25"
    assert impersonate_extra_header(u"caf\u00e9") == "Impersonate-Extra-caf%C3%A9"


def test_no_impersonation_headers_without_as(tmp_path, plain_api):
    read_default(KubeRest(write_kubeconfig(tmp_path, {"server": plain_api.url}), label="c1"))
    assert not [k for k, _v in plain_api.seen[-1][2] if k.lower().startswith("impersonate-")]


# --- other credentials and refusals -------------------------------------------------------------

def test_basic_auth(tmp_path, plain_api):
    kube = KubeRest(write_kubeconfig(tmp_path, {"server": plain_api.url}, {"username": "admin", "password": "pw:1"}))
    read_default(kube)
    assert headers_of(plain_api.seen[-1], "Authorization") == ["Basic " + base64.b64encode(b"admin:pw:1").decode()]


def test_token_file_wins_over_token(tmp_path, plain_api):
    (tmp_path / "token").write_text("from-file\n")
    user = {"token": "inline", "tokenFile": str(tmp_path / "token")}
    read_default(KubeRest(write_kubeconfig(tmp_path, {"server": plain_api.url}, user)))
    assert headers_of(plain_api.seen[-1], "Authorization") == ["Bearer from-file"]


def test_post_body_and_length_reach_the_server(tmp_path, plain_api):
    plain_api.add("POST", "/api/v1/namespaces", 201, NS)
    kube = KubeRest(write_kubeconfig(tmp_path, {"server": plain_api.url}))
    assert kube.call("create namespace default", kube.core.create_namespace, NS)["metadata"]["name"] == "default"
    method, path, headers, body = plain_api.seen[-1]
    assert (method, path, body) == ("POST", "/api/v1/namespaces", NS)
    assert headers_of(plain_api.seen[-1], "Content-Type") == ["application/json"]


@pytest.mark.parametrize("user, message", [
    ({"auth-provider": {"name": "oidc", "config": {"idp-issuer-url": "https://id.example"}}},
     "user 'u1' authenticates with auth-provider 'oidc', which Meshfleet's Kubernetes client does not support"),
    ({"client-certificate-data": base64.b64encode(b"cert").decode()},
     "user 'u1' has a client certificate but no client key"),
    ({"client-key-data": base64.b64encode(b"key").decode()},
     "user 'u1' has a client key but no client certificate"),
    ({"token": "t", "username": "admin", "password": "pw"},
     "user 'u1' has both a token and a username/password"),
    ({"token": "t", "as-groups": ["devs"], "as-uid": "1"},
     "user 'u1' sets as-uid, as-groups but not as (the user to impersonate)"),
    ({"exec": {"command": "kubelogin", "interactiveMode": "Always"}},
     "wants interactiveMode Always; modules run without a terminal"),
    ({"exec": {"args": ["x"]}}, "the exec credential plugin of user 'u1' has no command"),
])
def test_unsupported_or_inconsistent_users_are_refused_by_name(tmp_path, user, message):
    path = write_kubeconfig(tmp_path, {"server": "https://127.0.0.1:1"}, user)
    with pytest.raises(MeshfleetError) as e:
        KubeRest(path, label="c1")
    assert message in e.value.msg and path in e.value.msg


def test_server_must_be_a_url(tmp_path):
    with pytest.raises(MeshfleetError) as e:
        KubeRest(write_kubeconfig(tmp_path, {"server": "127.0.0.1:6443"}), label="c1")
    assert "the server of cluster 'c1' is '127.0.0.1:6443', not an https:// (or http://) URL" in e.value.msg


def test_exec_plugin_gets_the_cluster_info(tmp_path, api, pki):
    """provideClusterInfo: the plugin reads the cluster (CA included) from KUBERNETES_EXEC_INFO."""
    out = tmp_path / "info.json"
    plugin = tmp_path / "plugin.sh"
    plugin.write_text('#!/bin/sh\nprintf "%%s" "$KUBERNETES_EXEC_INFO" > %s\n'
                      'echo \'{"kind":"ExecCredential","status":{"token":"p"}}\'\n' % out)
    plugin.chmod(0o700)
    cluster = {"server": api.url, "certificate-authority": pki["ca"], "tls-server-name": "localhost",
               "extensions": [{"name": "client.authentication.k8s.io/exec", "extension": {"audience": "a"}}]}
    kube = KubeRest(write_kubeconfig(tmp_path, cluster, {"exec": {"command": str(plugin), "provideClusterInfo": True}}))
    read_default(kube)
    import json
    info = json.loads(out.read_text())["spec"]["cluster"]
    with open(pki["ca"], "rb") as f:
        assert base64.b64decode(info["certificate-authority-data"]) == f.read()
    assert info["server"] == api.url and info["tls-server-name"] == "localhost" and info["config"] == {"audience": "a"}
    assert os.path.exists(out)
