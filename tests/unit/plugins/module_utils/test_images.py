# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Image specs, their input digest and tag, the builder's pure parts and the ctr parsing
(module_utils/images/). Building and importing for real: tests/integration/test_node_images.py."""

from __future__ import absolute_import, division, print_function

import io
import json
import os
import shutil
import tarfile

import pytest

from ansible_collections.meshfleet.mesh.plugins.module_utils.images import builder, catalog, containerd
from ansible_collections.meshfleet.mesh.plugins.module_utils.images import spec as S


@pytest.fixture
def tree(tmp_path):
    """A small root tree with accounts, like the VM rootfs."""
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "share" / "doc" / "x").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    (root / "usr" / "bin" / "tool").write_text("#!/bin/sh\n")
    (root / "usr" / "share" / "doc" / "x" / "README").write_text("doc\n")
    os.symlink("usr/bin", str(root / "bin"))
    return str(root)


@pytest.fixture
def binaries(tmp_path):
    out = {}
    for name in ("pilot-agent", "pilot-discovery", "envoy"):
        p = tmp_path / "bin" / name
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"\x7fELF " + name.encode())
        p.chmod(0o755)
        out[name] = str(p)
    share = tmp_path / "share" / "istio"
    share.mkdir(parents=True)
    (share / "envoy_bootstrap.json").write_text("{}")
    out["bin"] = str(tmp_path / "bin")
    return out


def standard(tree, binaries, **kw):
    return catalog.standard(tools_bin=binaries["bin"], envoy=binaries["envoy"], rootfs=tree, **kw)


# --- specs ---------------------------------------------------------------------------------------
def test_tag_and_ref():
    s = S.ImageSpec("pilot", cmd=["x"], hub="localhost/meshfleet", version="1.30.4")
    d = "ab" * 32
    assert s.tag_of(d) == "1.30.4-" + "ab" * 6
    assert s.ref_of(d) == "localhost/meshfleet/pilot:1.30.4-abababababab"
    assert s.replace(tag="fixed").ref_of(d) == "localhost/meshfleet/pilot:fixed"


def test_group_tag_is_order_independent_and_depends_on_every_digest():
    a, b, c = "1" * 64, "2" * 64, "3" * 64
    assert S.group_tag("1.30.4", [a, b]) == S.group_tag("1.30.4", [b, a])
    assert S.group_tag("1.30.4", [a, b]) != S.group_tag("1.30.4", [a, c])
    assert S.group_tag("1.30.4", [a, b]).startswith("1.30.4-")


@pytest.mark.parametrize("change,field", [
    (dict(name="Bad_Name"), "name"),
    (dict(hub="http://x"), "hub"),
    (dict(version="-1"), "version"),
    (dict(tag="a b"), "tag"),
    (dict(entrypoint=[], cmd=None), "entrypoint"),
    (dict(entrypoint=None, cmd=None), "entrypoint"),
    (dict(env={"1X": "y"}), "env"),
    (dict(env={"X": 1}), "env"),
    (dict(user="a b"), "user"),
    (dict(workdir="relative"), "workdir"),
    (dict(ports=["70000/tcp"]), "ports"),
    (dict(ports=["80/icmp"]), "ports"),
    (dict(entries=[S.content("etc/x", "y")]), "entries"),
    (dict(entries=[S.content("/a/../b", "y")]), "entries"),
    (dict(entries=[S.content("/a", "y"), S.directory("/a")]), "entries"),
    (dict(entries=[dict(type="fifo", path="/a")]), "entries"),
    (dict(entries=[S.file("/a", None)]), "entries"),
    (dict(entries=[S.content("/a", "y", uid=-1)]), "entries"),
    (dict(users=[dict(name="u", uid=5)]), "users"),
    (dict(base=dict(path="/b"), users=[dict(name="Bad", uid=5)]), "users"),
    (dict(base=dict(path="/b"), users=[dict(name="u", uid=5), dict(name="u", uid=6)]), "users"),
    (dict(base=dict(path="")), "base.path"),
    (dict(base=dict(path="/b", exclude=["rel"])), "base.exclude"),
])
def test_validate_names_the_field(change, field):
    data = dict(name="img", entrypoint=["/x"])
    data.update(change)
    with pytest.raises(S.SpecError) as e:
        S.validate(S.ImageSpec(**data))
    assert "image %s: %s:" % (data["name"], field) in str(e.value)


def test_ports_default_to_tcp_and_from_dict_refuses_unknown_fields():
    assert S.ImageSpec("a", cmd=["x"], ports=[5000, "53/udp"]).ports == ["5000/tcp", "53/udp"]
    s = S.ImageSpec.from_dict(S.ImageSpec("a", cmd=["x"], env=dict(A="1")).to_dict())
    assert s.env == dict(A="1")
    with pytest.raises(S.SpecError, match="unknown field.*colour"):
        S.ImageSpec.from_dict(dict(name="a", cmd=["x"], colour="red"))


# --- the input digest ----------------------------------------------------------------------------
def test_digest_is_stable_and_follows_every_input(tree, binaries, tmp_path):
    specs = standard(tree, binaries, version="1.30.4")
    d = dict((n, S.inputs_digest(s)) for n, s in specs.items())
    assert d == dict((n, S.inputs_digest(s)) for n, s in standard(tree, binaries, version="1.30.4").items())
    assert len(set(d.values())) == 5
    # a binary's content (not its path or mtime) is an input
    os.utime(binaries["envoy"], (1, 1))
    assert S.inputs_digest(standard(tree, binaries, version="1.30.4")["proxyv2"]) == d["proxyv2"]
    with open(binaries["envoy"], "ab") as f:
        f.write(b"patched")
    after = dict((n, S.inputs_digest(s)) for n, s in standard(tree, binaries, version="1.30.4").items())
    assert after["proxyv2"] != d["proxyv2"]
    assert [after[n] == d[n] for n in ("pause", "pilot", "helloworld", "curl")] == [True] * 4
    # version, hub, env and a spec field are inputs
    assert S.inputs_digest(standard(tree, binaries, version="1.30.5")["pause"]) != d["pause"]
    assert S.inputs_digest(standard(tree, binaries, version="1.30.4", hub="localhost/x")["curl"]) != d["curl"]
    assert S.inputs_digest(specs["helloworld"].replace(env=dict(SERVICE_VERSION="v2"))) != d["helloworld"]


def test_base_tree_key_uses_the_rootfs_marker_else_a_walk(tree):
    walk = S.tree_key(tree)
    assert walk.startswith("walk:")
    with open(os.path.join(tree, "usr", "bin", "tool"), "a") as f:
        f.write("# changed\n")
    assert S.tree_key(tree) != walk
    # an excluded change does not count
    k = S.tree_key(tree, ["/usr/share/doc"])
    with open(os.path.join(tree, "usr", "share", "doc", "x", "README"), "a") as f:
        f.write("more\n")
    assert S.tree_key(tree, ["/usr/share/doc"]) == k
    with open(os.path.join(tree, S.TREE_MARKER), "w") as f:
        f.write("key=bookworm-minbase-amd64-abc\n")
    marked = S.tree_key(tree)
    assert marked.startswith("marker:")
    with open(os.path.join(tree, "usr", "bin", "tool"), "a") as f:
        f.write("# the marker names an immutable tree\n")
    assert S.tree_key(tree) == marked


def test_walk_tree_skips_excludes_and_does_not_follow_symlinks(tree):
    rels = [r for r, st, t in S.walk_tree(tree, ["/usr/share/doc"])]
    for i, r in enumerate(rels):  # parents first
        if "/" in r:
            assert rels.index(r.rsplit("/", 1)[0]) < i
    assert "bin" in rels and "usr/bin/tool" in rels
    assert not any(r.startswith("usr/share/doc") for r in rels)
    assert not any(r.startswith("bin/") for r in rels)
    assert S.excluded("usr/share/doc", ["/usr/share/doc"]) and not S.excluded("usr/share/docs", ["/usr/share/doc"])


# --- catalog -------------------------------------------------------------------------------------
def test_catalog_layout_is_istios(tree, binaries):
    specs = standard(tree, binaries, version="1.30.4")
    p = specs["proxyv2"]
    paths = dict((e["path"], e) for e in p.entries)
    assert paths["/usr/local/bin/pilot-agent"]["src"] == os.path.join(binaries["bin"], "pilot-agent")
    assert paths["/usr/local/bin/envoy"]["src"] == binaries["envoy"]
    assert paths["/var/lib/istio/envoy/envoy_bootstrap_tmpl.json"]["src"].endswith("share/istio/envoy_bootstrap.json")
    assert p.entrypoint == ["/usr/local/bin/pilot-agent"] and p.user == "1337:1337"
    assert p.users == [dict(name="istio-proxy", uid=1337, gid=1337, home="/home/istio-proxy")]
    assert specs["pilot"].entrypoint == ["/usr/local/bin/pilot-discovery"]
    assert specs["helloworld"].ports == ["5000/tcp"] and specs["helloworld"].env["SERVICE_VERSION"] == "v1"
    assert specs["curl"].cmd == ["/bin/sleep", "infinity"]
    assert specs["pause"].base is None and specs["pause"].entries[0]["type"] == "c_static"
    assert "/usr/share/doc" in p.base["exclude"]


def test_catalog_names_what_an_image_needs(tree, binaries):
    with pytest.raises(ValueError, match="image proxyv2 needs envoy"):
        catalog.standard(tools_bin=binaries["bin"], rootfs=tree, names=["proxyv2"])
    with pytest.raises(ValueError, match="image helloworld needs rootfs"):
        catalog.standard(names=["pause", "helloworld"])
    with pytest.raises(ValueError, match="unknown image.*coredns"):
        catalog.standard(names=["coredns"])
    assert list(catalog.standard(names=["pause"])) == ["pause"]


def test_resolve_gives_proxyv2_and_pilot_one_tag(tree, binaries, tmp_path):
    planned = builder.resolve(standard(tree, binaries, version="1.30.4"), cache=str(tmp_path / "c"))
    by = dict((p.name, p) for p in planned)
    assert by["proxyv2"].tag == by["pilot"].tag
    assert by["proxyv2"].inputs_digest != by["pilot"].inputs_digest
    assert by["helloworld"].tag == "1.30.4-" + by["helloworld"].inputs_digest[:12]
    assert by["pause"].archive == str(tmp_path / "c" / by["pause"].inputs_digest / "pause.tar")
    assert not any(p.cached for p in planned)
    # the memo of source hashes is written (a cache hit does not read binaries again)
    with open(str(tmp_path / "c" / ".hashes.json")) as f:
        assert len(json.load(f)) == 4


def test_resolve_refuses_a_missing_source(tree, binaries, tmp_path):
    os.unlink(binaries["pilot-discovery"])
    with pytest.raises(builder.BuildError, match="image pilot: /usr/local/bin/pilot-discovery: source .* does not exist"):
        builder.resolve(standard(tree, binaries, names=["pilot"]), cache=str(tmp_path / "c"))
    with pytest.raises(builder.BuildError, match="image curl: base .* is not a root tree"):
        builder.resolve([catalog.curl(str(tmp_path))], cache=str(tmp_path / "c"))


# --- builder's pure parts ---------------------------------------------------------------------------
def test_config_argv():
    s = S.ImageSpec("hw", entrypoint=["/usr/bin/python3", "/app.py"], env=dict(B="2", A="1"), user="1000:1000",
                    workdir="/opt", ports=[5000], labels=dict(k="v"))
    argv = builder.config_argv(s, "oci:image")
    text = " ".join(argv)
    assert "--config.entrypoint /usr/bin/python3 --config.entrypoint /app.py" in text
    assert "--config.env A=1 --config.env B=2 --config.env PATH=" in text
    assert "--config.user 1000:1000" in text and "--config.workingdir /opt" in text
    assert "--config.exposedports 5000/tcp" in text and "--config.label k=v" in text
    assert "--created %s" % S.CREATED in text and "--config.cmd" not in text


def test_layer_members_add_missing_parents_and_accounts(tree, binaries):
    p = standard(tree, binaries, version="1.30.4")["proxyv2"]
    members = builder.layer_members(p)
    names = [ti.name for ti, data in members]
    # usr/ exists in the base: not repeated; usr/local and usr/local/bin do not: made, before their files
    assert "usr" not in names
    assert names.index("usr/local") < names.index("usr/local/bin") < names.index("usr/local/bin/envoy")
    by = dict((ti.name, (ti, data)) for ti, data in members)
    assert by["etc/istio/proxy"][0].uid == 1337 and by["etc/istio/proxy"][0].type == tarfile.DIRTYPE
    assert by["usr/local/bin/envoy"][1] == ("file", binaries["envoy"]) and by["usr/local/bin/envoy"][0].mode == 0o755
    passwd = by["etc/passwd"][1].decode()
    assert passwd.startswith("root:x:0:0:") and "istio-proxy:x:1337:1337::/home/istio-proxy:/usr/sbin/nologin\n" in passwd
    assert by["etc/group"][1].decode().endswith("istio-proxy:x:1337:\n")
    assert all(ti.mtime == builder.LAYER_MTIME and ti.uname == "" for ti, data in members)


def test_layer_members_without_base_make_every_parent():
    s = S.ImageSpec("coredns", entries=[S.content("/usr/bin/coredns", b"bin", mode=0o755)], entrypoint=["/usr/bin/coredns"])
    names = [ti.name for ti, data in builder.layer_members(s)]
    assert names == ["usr", "usr/bin", "usr/bin/coredns"]


def test_entries_layer_is_deterministic(tmp_path, tree, binaries):
    p = standard(tree, binaries, version="1.30.4")["pilot"]
    a, b = str(tmp_path / "a.tar"), str(tmp_path / "b.tar")
    builder.write_entries_layer(p, a, str(tmp_path))
    builder.write_entries_layer(p, b, str(tmp_path))
    with open(a, "rb") as fa, open(b, "rb") as fb:
        assert fa.read() == fb.read()
    with tarfile.open(a) as t:
        assert t.extractfile("usr/local/bin/pilot-discovery").read() == b"\x7fELF pilot-discovery"


# --- containerd ------------------------------------------------------------------------------------
#: ``ctr images ls`` as containerd 1.6.20 printed it after importing an OCI and a CRI-named image
CTR_LS = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "ctr_images_ls.txt")


def test_parse_images_ls():
    with open(CTR_LS) as f:
        got = containerd.parse_images_ls(f.read())
    assert len(got) == 2
    assert got["localhost/meshfleet/pause:t1"] == "sha256:9c08693858346a65352709e00665bcef9ced63bc72d5b4c040ee1d4825f16df7"
    assert containerd.parse_images_ls("REF TYPE DIGEST SIZE PLATFORMS LABELS\n") == {}


def _oci_archive(path, manifests):
    with tarfile.open(path, "w") as t:
        data = json.dumps(dict(schemaVersion=2, manifests=manifests)).encode()
        ti = tarfile.TarInfo("index.json")
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    return path


def test_archive_manifest_and_plan_imports(tmp_path):
    ref = "localhost/meshfleet/pause:t1"
    a = _oci_archive(str(tmp_path / "a.tar"), [dict(digest="sha256:" + "1" * 64, annotations={containerd.REF_ANNOTATION: ref})])
    assert containerd.archive_manifest(a) == (ref, "sha256:" + "1" * 64)
    assert containerd.plan_imports([a], {ref: "sha256:" + "1" * 64}) == [(a, ref, "sha256:" + "1" * 64, False)]
    assert containerd.plan_imports([a], {ref: "sha256:" + "2" * 64})[0][3] is True
    assert containerd.plan_imports([a], {})[0][3] is True
    bare = _oci_archive(str(tmp_path / "b.tar"), [dict(digest="sha256:" + "1" * 64, annotations={containerd.REF_ANNOTATION: "t1"})])
    with pytest.raises(containerd.ContainerdError, match="no full image reference"):
        containerd.archive_manifest(bare)
    two = _oci_archive(str(tmp_path / "c.tar"), [dict(digest="x"), dict(digest="y")])
    with pytest.raises(containerd.ContainerdError, match="expected one manifest"):
        containerd.archive_manifest(two)
    (tmp_path / "d.tar").write_text("not a tar")
    with pytest.raises(containerd.ContainerdError, match="not an OCI archive"):
        containerd.archive_manifest(str(tmp_path / "d.tar"))


def test_list_images_refuses_a_missing_socket(tmp_path):
    with pytest.raises(containerd.ContainerdError, match="address: no containerd socket at"):
        containerd.list_images(str(tmp_path / "nope.sock"))


# --- the module's refusals (nothing changes) ----------------------------------------------------------
def test_module_refuses_a_missing_socket_and_unknown_images(run_module, tmp_path, tree, binaries):
    from ansible_collections.meshfleet.mesh.plugins.modules import node_images
    args = dict(address=str(tmp_path / "none.sock"), tools_bin=binaries["bin"], envoy=binaries["envoy"],
                rootfs=tree, cache_dir=str(tmp_path / "cache"))
    r = run_module(node_images, args)
    assert r["failed"] and "address: no containerd socket at %s" % args["address"] in r["msg"]
    r = run_module(node_images, dict(args, images=["pause", "coredns"]))
    assert r["failed"] and r["msg"].startswith("images: unknown image(s) coredns")
    r = run_module(node_images, dict(args, images=["proxyv2"], envoy=None))
    assert r["failed"] and r["msg"] == "images: image proxyv2 needs envoy"
    r = run_module(node_images, dict(args, istio_version="1.30 4"))
    assert r["failed"] and r["msg"].startswith("istio_version: image pause: version:")
    assert not os.path.exists(os.path.join(str(tmp_path / "cache"), "base"))


# --- a real build (no base: fast), when the host tools are there ------------------------------------
needs_build_tools = pytest.mark.skipif(not all(shutil.which(t) for t in ("umoci", "skopeo", "gcc")),
                                       reason="needs umoci, skopeo and gcc (scripts/setup.sh --images)")


@needs_build_tools
def test_build_is_reproducible_cached_and_leaves_nothing_on_failure(tmp_path):
    cache = str(tmp_path / "cache")
    first = builder.build(catalog.pause(version="1.30.4"), cache=cache)
    assert first["cached"] is False and first["ref"].startswith("localhost/meshfleet/pause:1.30.4-")
    assert containerd.archive_manifest(first["archive"]) == (first["ref"], first["digest"])
    again = builder.build(catalog.pause(version="1.30.4"), cache=cache)
    assert again["cached"] is True and again["digest"] == first["digest"]
    other = builder.build(catalog.pause(version="1.30.4"), cache=str(tmp_path / "cache2"))
    assert other["cached"] is False and other["digest"] == first["digest"]  # same inputs, same bytes
    before = sorted(n for n in os.listdir(cache) if not n.startswith("."))
    broken = S.ImageSpec("broken", entries=[S.c_static("/x", "int main(void) { return }")], entrypoint=["/x"])
    with pytest.raises(builder.BuildError, match="gcc -static"):
        builder.build(broken, cache=cache)
    assert sorted(n for n in os.listdir(cache) if not n.startswith(".")) == before
    assert not [n for n in os.listdir(cache) if n.startswith(".tmp-")]
