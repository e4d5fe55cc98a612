# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""module_utils/topology: validate, normalise, duplicate keys, summary.

Bad topologies live in tests/unit/fixtures/topologies/bad/*.meshfleet.yml; each starts
with one ``# expect: <field path> | <text>`` line per problem it must produce: the
test checks that the messages name exactly those fields (and no others), each
containing its text.
"""

from __future__ import absolute_import, division, print_function

import glob
import os
import re

import pytest
import yaml

from ansible_collections.meshfleet.mesh.plugins.module_utils import topology as t

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
FIXTURES = os.path.join(REPO, "tests", "unit", "fixtures", "topologies")
BAD = sorted(glob.glob(os.path.join(FIXTURES, "bad", "*.meshfleet.yml")))
GOOD = sorted(glob.glob(os.path.join(FIXTURES, "good", "*.meshfleet.yml"))) + [
    os.path.join(REPO, "inventories", name, "mesh.meshfleet.yml")
    for name in ("local", "primary-remote", "multicloud-example")]


def _id(path):
    return os.path.basename(path).split(".")[0] if "fixtures" in path else \
        os.path.basename(os.path.dirname(path))


def read(path):
    with open(path) as f:
        return f.read()


def expectations(text):
    out = []
    for line in text.splitlines():
        m = re.match(r"^# expect: (\S+) \| (.+)$", line)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def problems(text):
    data, dups = t.load_topology(text)
    return dups + t.validate(data), data


def field(msg):
    return msg.split(": ", 1)[0]


def test_enough_bad_fixtures():
    assert len(BAD) >= 25


@pytest.mark.parametrize("path", BAD, ids=_id)
def test_bad_topology(path):
    text = read(path)
    expected = expectations(text)
    assert expected, "%s has no '# expect:' lines" % path
    errors, _data = problems(text)
    assert len(errors) == len(expected), "\n".join(errors)
    assert sorted(field(e) for e in errors) == sorted(f for f, _ in expected), "\n".join(errors)
    for want_field, want_text in expected:
        assert any(field(e) == want_field and want_text in e for e in errors), \
            "no message for %s containing %r in:\n%s" % (want_field, want_text, "\n".join(errors))


@pytest.mark.parametrize("path", BAD, ids=_id)
def test_normalise_keeps_every_problem(path):
    data, _dups = t.load_topology(read(path))
    assert t.validate(t.normalise(data, "/srv/mesh")) == t.validate(data)


@pytest.mark.parametrize("path", GOOD, ids=_id)
def test_good_topology(path):
    errors, data = problems(read(path))
    assert errors == []
    assert t.validate(t.normalise(data, os.path.dirname(path))) == []


def test_exact_message_for_unknown_provider():
    errors, _ = problems(read(os.path.join(FIXTURES, "bad", "provider-unknown.meshfleet.yml")))
    assert errors == ['clusters.cluster-2.provider: unknown provider "kwak"; choose one of '
                      'aks, eks, gke, kwok, minikube']


def test_not_a_mapping_is_reported_not_raised():
    assert t.validate(["a"]) == [
        "topology: must be a mapping with the keys mesh, clusters and optionally networks "
        "and vm_groups, got a list"]
    assert len(t.validate(None)) == 1


@pytest.mark.parametrize("value", [
    7, 1.5, True, None, [], {}, "x", ["a", {"b": None}], {"a": [1, 2]}, {1: 2},
])
def test_any_type_anywhere_never_crashes(value):
    """Every known key set to every kind of value: messages, never exceptions."""
    base = yaml.safe_load(read(os.path.join(FIXTURES, "good", "full.meshfleet.yml")))

    def paths(node, prefix=()):
        if isinstance(node, dict):
            for k, v in node.items():
                yield prefix + (k,)
                for p in paths(v, prefix + (k,)):
                    yield p

    for path in list(paths(base)):
        topo = yaml.safe_load(read(os.path.join(FIXTURES, "good", "full.meshfleet.yml")))
        node = topo
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        errors = t.validate(topo)
        assert all(isinstance(e, str) for e in errors)
        t.normalise(topo, "/tmp")
        t.summarise(topo)


# --- normalise -------------------------------------------------------------------------

def test_normalise_fills_defaults():
    data, _ = t.load_topology(read(os.path.join(FIXTURES, "good", "minimal.meshfleet.yml")))
    norm = t.normalise(data, "/srv/mesh")
    assert norm["mesh"] == dict(
        id="tiny", trust_domain="cluster.local",
        istio=dict(version="1.30", revision="", hub="docker.io/istio", image_pull_secrets=[]),
        state_dir="/srv/mesh/.meshfleet", ca=t.DEFAULT_CA, features=t.DEFAULT_FEATURES)
    assert norm["clusters"]["only"] == dict(provider="kwok", network="net", role="primary",
                                            primary="only", settings={}, eastwest_address=None)
    assert norm["vm_groups"] == {}
    assert "mesh" not in t.normalise({"clusters": {}})  # a missing mesh stays missing


def test_normalise_vm_group_defaults_and_paths():
    data, _ = t.load_topology(read(os.path.join(FIXTURES, "good", "full.meshfleet.yml")))
    norm = t.normalise(data, "/srv/mesh")
    assert norm["mesh"]["state_dir"] == "/srv/mesh/state/mesh"
    assert norm["mesh"]["ca"]["root_cert_file"] == "/srv/mesh/ca/root-cert.pem"
    assert norm["networks"]["net-b"] == {}
    workers = norm["vm_groups"]["workers"]
    assert workers["namespace"] == "workers" and workers["service_account"] == "workers"
    assert workers["network"] == "net-a"  # its cluster's network
    assert workers["hosts"] == {} and workers["ports"] == {} and workers["labels"] == {}
    assert norm["vm_groups"]["api"]["network"] == "net-b"
    assert norm["clusters"]["beta"]["primary"] == "alpha"
    # the input is not changed
    assert "namespace" not in data["vm_groups"]["workers"]


def test_normalise_list_of_networks():
    norm = t.normalise({"networks": ["a", "b"], "clusters": {}})
    assert norm["networks"] == {"a": {}, "b": {}}


def test_mesh_defaults_for_a_bad_mesh():
    assert t.mesh_defaults([1], "/x")["state_dir"] == "/x/.meshfleet"


def test_state_dir_is_worked_out_in_one_place(monkeypatch):
    monkeypatch.delenv("MESHFLEET_STATE_DIR", raising=False)
    assert t.state_dir(None, "/x") == "/x/.meshfleet"
    assert t.state_dir("s", "/x") == "/x/s"
    assert t.state_dir("~/s", "/x") == os.path.expanduser("~/s")
    env = {"MESHFLEET_STATE_DIR": "/pv/mesh1"}
    assert t.state_dir(None, "/x", env) == "/pv/mesh1"
    assert t.state_dir("s", "/x", env) == "/pv/mesh1"
    assert t.state_dir(None, "/x", {"MESHFLEET_STATE_DIR": "rel"}) == "/x/rel"
    assert t.state_dir(7, "/x", env) == 7          # kept for validate to report
    monkeypatch.setenv("MESHFLEET_STATE_DIR", "/pv/mesh2")
    assert t.normalise(dict(mesh=dict(id="m")), "/x")["mesh"]["state_dir"] == "/pv/mesh2"
    assert t.mesh_defaults(None, "/x")["state_dir"] == "/pv/mesh2"


# --- single rules --------------------------------------------------------------------------

@pytest.mark.parametrize("version,ok", [
    ("1.30", True), ("1.30.2", True), ("1.30-dev", True), ("1.30.0-beta.1", True),
    ("1.30.4-custom", True),
    # the pinned istioctl renders 1.30 only, on local clusters too
    ("1.31.0-beta.1", False), ("1.9", False), ("1.29.3", False),
    ("2.0", False), ("v1.30", False), ("1", False), ("1.30.2.1", False),
    ("1.030", False), ("latest", False), (1.3, False),
])
def test_istio_version_on_local_clusters(version, ok):
    errors = t.validate({"mesh": {"id": "m", "istio": {"version": version}},
                         "clusters": {"c": {"provider": "kwok", "network": "n"}}})
    assert (errors == []) is ok, errors


# a cluster of each provider whose nodes pull images (settings complete)
PULLING = {
    "aks-weu": {"provider": "aks", "network": "n1",
                "settings": {"resource_group": "rg", "location": "westeurope"}},
    "gke-euw": {"provider": "gke", "network": "n2",
                "settings": {"project": "p", "location": "europe-west1"}},
    "eks-euc": {"provider": "eks", "network": "n3",
                "settings": {"region": "eu-central-1", "role_arn": "arn:aws:iam::1:role/r",
                             "subnet_ids": ["subnet-1"]}},
    "mk": {"provider": "minikube", "network": "n4"},
}


def with_istio(istio, clusters=("aks-weu",)):
    return {"mesh": {"id": "m", "istio": istio},
            "clusters": dict((name, PULLING.get(name) or {"provider": "kwok", "network": "n0"})
                             for name in clusters)}


@pytest.mark.parametrize("provider", ["aks", "gke", "eks", "minikube"])
@pytest.mark.parametrize("version", ["1.30", "1.30-dev", "1.30.4-dev", "1.30.4-custom"])
def test_clusters_that_pull_images_need_an_istio_release(provider, version):
    name = [n for n, c in PULLING.items() if c["provider"] == provider][0]
    errors = t.validate(with_istio({"version": version}, clusters=(name, "local")))
    assert errors == [
        'mesh.istio.version: "%s" is not an Istio release; cluster %s (%s) pulls images from '
        'docker.io/istio: set mesh.istio.version to a release such as "1.30.4" (and '
        'mesh.istio.hub for a mirror)' % (version, name, provider)], errors


def test_istio_release_message_names_every_pulling_cluster_and_the_hub():
    errors = t.validate(with_istio({"version": "1.30", "hub": "mirror.example.com/istio"},
                                   clusters=("aks-weu", "local", "gke-euw")))
    assert errors == [
        'mesh.istio.version: "1.30" is not an Istio release; clusters aks-weu (aks), gke-euw (gke) '
        'pull images from mirror.example.com/istio: set mesh.istio.version to a release such as '
        '"1.30.4" (and mesh.istio.hub for a mirror)'], errors


@pytest.mark.parametrize("version,text", [
    ("latest", 'unsupported Istio version "latest"; use a release as a quoted string, '
               'MAJOR.MINOR.PATCH optionally with -alpha.N, -beta.N or -rc.N ("1.30.4"), or '
               '"1.30" when every cluster is local (kwok)'),
    ("1.29.3", '"1.29.3" is Istio 1.29, but the pinned istioctl renders Istio 1.30 (its charts, '
               'istiod and images): use a 1.30 release such as "1.30.4"'),
    ("1.31.0", '"1.31.0" is Istio 1.31, but the pinned istioctl renders Istio 1.30'),
    (1.3, "YAML reads an unquoted 1.3 as a number: quote it"),
])
def test_bad_istio_version_for_an_aks_cluster_is_one_message(version, text):
    errors = t.validate(with_istio({"version": version}))
    assert len(errors) == 1 and errors[0].startswith("mesh.istio.version: "), errors
    assert text in errors[0], errors


@pytest.mark.parametrize("version", ["1.30.4", "1.30.0", "1.30.0-alpha.0", "1.30.1-beta.2",
                                     "1.30.0-rc.1"])
def test_istio_release_is_valid_everywhere(version):
    everyone = tuple(PULLING) + ("local",)
    assert t.validate(with_istio({"version": version}, clusters=everyone)) == []


def test_istio_release_with_a_mirror_hub_and_pull_secrets():
    istio = {"version": "1.30.4", "hub": "myregistry.azurecr.io/mirror/istio",
             "image_pull_secrets": ["istio-pull", "acr.pull"]}
    assert t.validate(with_istio(istio, clusters=("aks-weu", "eks-euc"))) == []


def test_istio_version_left_out_defaults_to_a_release_when_a_cluster_pulls_images():
    topo = {"mesh": {"id": "m"}, "clusters": {"aks-weu": PULLING["aks-weu"],
                                              "local": {"provider": "kwok", "network": "n0"}}}
    assert t.validate(topo) == []
    assert t.normalise(topo)["mesh"]["istio"]["version"] == t.ISTIO_DEFAULT_RELEASE == "1.30.4"
    # the same with an istio block that names no version
    topo["mesh"]["istio"] = {"revision": "1-30"}
    assert t.validate(topo) == []
    assert t.normalise(topo)["mesh"]["istio"]["version"] == "1.30.4"
    # local clusters only: the build's MAJOR.MINOR, as before
    local = {"mesh": {"id": "m"}, "clusters": {"local": {"provider": "kwok", "network": "n0"}}}
    assert t.normalise(local)["mesh"]["istio"]["version"] == t.DEFAULT_ISTIO_VERSION == "1.30"


def test_istio_release_check_ignores_clusters_with_a_bad_provider():
    topo = with_istio({"version": "1.30"}, clusters=("local",))
    topo["clusters"]["x"] = {"provider": "kwak", "network": "n0"}
    assert [field(e) for e in t.validate(topo)] == ["clusters.x.provider"]


@pytest.mark.parametrize("hub,text", [
    ("docker.io/istio", None), ("gcr.io/istio-release", None),
    ("localhost:5000/istio", None), ("registry.example.com:443/a/b_c/istio", None),
    ("https://docker.io/istio", "without a scheme"),
    ("docker.io/istio:1.30.4", "must not carry a tag or digest"),
    ("docker.io/istio@sha256:abc", "must not carry a tag or digest"),
    ("docker.io", "must be registry/path"),
    ("istio", "must be registry/path"),
    ("docker.io/Istio", "is not an image registry path"),
    ("docker.io/istio/", "is not an image registry path"),
    ("docker.io//istio", "is not an image registry path"),
    ("docker .io/istio", "is not an image registry path"),
    ("", 'got ""'), (5, "got a number"), (["docker.io/istio"], "got a list"),
])
def test_istio_hub(hub, text):
    errors = t.validate(with_istio({"version": "1.30.4", "hub": hub}))
    if text is None:
        assert errors == [], errors
    else:
        assert [field(e) for e in errors] == ["mesh.istio.hub"], errors
        assert text in errors[0], errors


@pytest.mark.parametrize("secrets,paths,text", [
    ([], [], None), (["regcred"], [], None), (["a.b-c", "d"], [], None),
    ("regcred", ["mesh.istio.image_pull_secrets"], "must be a list of Secret names"),
    ({"name": "x"}, ["mesh.istio.image_pull_secrets"], "got a mapping"),
    (["Reg_Cred"], ["mesh.istio.image_pull_secrets[0]"], "not a DNS-1123 subdomain"),
    (["ok", 5], ["mesh.istio.image_pull_secrets[1]"], "Secret name 5"),
    (["ok", "x" * 254], ["mesh.istio.image_pull_secrets[1]"], "at most 253"),
    (["a", "a"], ["mesh.istio.image_pull_secrets[1]"], '"a" is listed twice'),
])
def test_istio_image_pull_secrets(secrets, paths, text):
    errors = t.validate(with_istio({"version": "1.30.4", "image_pull_secrets": secrets}))
    assert [field(e) for e in errors] == paths, errors
    if text:
        assert text in errors[0], errors


def test_istio_unknown_key_suggests_the_right_one():
    errors = t.validate(with_istio({"version": "1.30.4", "image_pull_secret": ["x"]}))
    assert errors == ['mesh.istio.image_pull_secret: unknown mesh.istio key (did you mean '
                      '"image_pull_secrets"?); expected one of hub, image_pull_secrets, revision, '
                      'version'], errors


def _versions_env():
    out = {}
    with open(os.path.join(REPO, "tools", "versions.env")) as f:
        for line in f:
            m = re.match(r"^([A-Z0-9_]+)=\"?([^\"\s]*)", line)
            if m:
                out[m.group(1)] = m.group(2)
    return out


def test_supported_istio_minor_is_the_pinned_one():
    """topology.ISTIO_SUPPORTED_MINOR is what tools/versions.env builds: every ISTIO_* pin that
    names an Istio version (ISTIO_BUILD_VERSION 1.30-dev, ...) is of that minor."""
    pins = dict((k, v) for k, v in _versions_env().items()
                if k.startswith("ISTIO_") and re.match(r"^v?1\.[0-9]+([.-]|$)", v))
    assert pins, "no ISTIO_* version pin in tools/versions.env"
    for key, value in pins.items():
        assert t._istio_minor(value.lstrip("v")) == t.ISTIO_SUPPORTED_MINOR, (key, value)
    assert t.ISTIO_DEFAULT_RELEASE.startswith(t.ISTIO_SUPPORTED_MINOR + ".")
    assert t.ISTIO_RELEASE.match(t.ISTIO_DEFAULT_RELEASE)
    assert t.DEFAULT_ISTIO_VERSION == t.ISTIO_SUPPORTED_MINOR


@pytest.mark.parametrize("td,ok", [
    ("cluster.local", True), ("example", True), ("a-b.example.com", True),
    ("spiffe://x", False), ("x:1", False), ("x/y", False), ("X.local", False),
    ("-x.local", False), ("x..local", False), ("", False), (5, False),
])
def test_trust_domain(td, ok):
    errors = t.validate({"mesh": {"id": "m", "trust_domain": td},
                         "clusters": {"c": {"provider": "kwok", "network": "n"}}})
    assert (errors == []) is ok, errors


@pytest.mark.parametrize("address,ok", [
    ("127.0.0.1", True), ("::1", True), ("gw.example.com", True), ("GW.Example.com", True),
    ("gw_1.example.com", False), ("http://gw", False), (80, False),
])
def test_eastwest_address(address, ok):
    errors = t.validate({"mesh": {"id": "m"}, "clusters": {
        "c": {"provider": "kwok", "network": "n", "eastwest_address": address}}})
    assert (errors == []) is ok, errors


def test_required_settings_table_matches_the_contract():
    assert t.REQUIRED_SETTINGS == {
        "kwok": (), "minikube": (),
        "aks": ("resource_group", "location"),
        "gke": ("project", "location"),
        "eks": ("region", "role_arn", "subnet_ids"),
        "existing": (),
        "openstack": ("cloud", "image", "flavor", "network"),
        "ec2": ("region", "ami", "instance_type", "subnet_id"),
        "netns": ("subnet",),
    }
    for provider, required in t.REQUIRED_SETTINGS.items():
        assert set(required) <= set(t.SETTING_TYPES[provider])
    assert set(t.CLUSTER_PROVIDERS) | set(t.VM_PROVIDERS) == set(t.REQUIRED_SETTINGS)


def test_remote_problems_are_not_cascaded():
    """A remote pointing at a cluster whose own entry is broken: one message only."""
    errors = t.validate({"mesh": {"id": "m"}, "clusters": {
        "c1": {"provider": "kwok", "network": "n"},
        "c2": "oops",
        "c3": {"provider": "kwok", "network": "n", "role": "remote", "primary": "c2"}}})
    assert [field(e) for e in errors] == ["clusters.c2"]


# --- YAML loading ------------------------------------------------------------------------------

DUPS = """\
plugin: meshfleet.mesh.topology
mesh:
  id: a
  id: b
clusters:
  c1: {provider: kwok, network: n}
  c1:
    provider: kwok
    network: n
    network: m
"""


def test_duplicate_keys_are_all_found():
    msgs = t.find_duplicate_keys(DUPS)
    assert msgs == [
        "mesh.id: defined twice (lines 3 and 4); YAML would silently keep only the last one",
        "clusters.c1: defined twice (lines 6 and 7); YAML would silently keep only the last one",
        "clusters.c1.network: defined twice (lines 9 and 10); YAML would silently keep only "
        "the last one",
    ]
    data, dups = t.load_topology(DUPS)
    assert dups == msgs
    assert data["clusters"]["c1"]["network"] == "m"  # last one wins, as plain YAML


def test_strict_loader_raises_on_the_first_duplicate():
    with pytest.raises(t.DuplicateKeyError) as exc:
        yaml.load(DUPS, Loader=t.TopologyLoader)
    assert "mesh.id: defined twice" in str(exc.value)
    assert "line 4" in str(exc.value)
    with pytest.raises(t.DuplicateKeyError):
        t.load_topology(DUPS, strict=True)


def test_duplicates_in_lists_and_merge_keys():
    text = "base: &b {x: 1}\nitems:\n  - {a: 1, a: 2}\n  - <<: *b\n    y: 2\n"
    assert t.find_duplicate_keys(text) == [
        "items[0].a: defined twice (lines 3 and 3); YAML would silently keep only the last one"]


def test_keys_of_different_types_are_not_duplicates():
    assert t.find_duplicate_keys("a:\n  1: x\n  '1': y\n") == []


def test_find_duplicate_keys_accepts_any_tag():
    assert t.find_duplicate_keys("a: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6161\n") == []


@pytest.mark.parametrize("name,text", [
    ("list", "- a\n- b\n"), ("scalar", "hello\n"), ("syntax", "a: [1\n"), ("empty", "# x\n"),
    ("two documents", "a: 1\n---\nb: 2\n"),
])
def test_not_a_mapping_file(name, text):
    with pytest.raises(t.TopologyFileError):
        t.find_duplicate_keys(text)
    with pytest.raises(t.TopologyFileError):
        t.load_topology(text)


# --- summary -----------------------------------------------------------------------------------

def test_summary_of_the_local_inventory():
    data, _ = t.load_topology(read(os.path.join(REPO, "inventories", "local", "mesh.meshfleet.yml")))
    s = t.summarise(t.normalise(data))
    assert s["line"] == ("3 clusters on 2 networks, 3 primaries, 0 remotes; "
                         "VM groups: web (1 host), db (1 host)")
    assert s["networks"] == ["network1", "network2"]
    assert s["vm_groups"] == {"web": 1, "db": 1}


def test_summary_of_primary_remote():
    data, _ = t.load_topology(read(os.path.join(REPO, "inventories", "primary-remote",
                                                "mesh.meshfleet.yml")))
    assert t.summarise(data)["line"] == ("2 clusters on 2 networks, 1 primary, 1 remote; "
                                         "no VM groups")


def test_vm_group_on_a_broken_cluster_is_not_reported_again():
    errors = t.validate({"mesh": {"id": "m"}, "clusters": {
        "c1": {"provider": "kwok", "network": "n"}, "c2": ["oops"]},
        "vm_groups": {"g": {"cluster": "c2", "hosts": {"vm1": {"ansible_host": "10.0.0.1"}}}}})
    assert [field(e) for e in errors] == ["clusters.c2"]
