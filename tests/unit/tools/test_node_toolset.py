# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""tools/build-tools.sh --node: the node tool set (kubelet, kube-proxy, coredns) has a cache key
of its own, so adding or moving a node pin never changes the main set's folder (CI's cache),
and it builds into <cache>/node-<key>/ with the same stamps. A fake ``go`` (the one of
test_build_progress) stands in; nothing is compiled and the real cache is never touched."""

from __future__ import absolute_import, division, print_function

import os
import shutil
import subprocess

from test_build_progress import FAKE_GO, REPO


def setup_tree(tmp_path):
    tools = tmp_path / "tools"
    shutil.copytree(os.path.join(REPO, "tools"), str(tools), ignore=shutil.ignore_patterns("__pycache__"))
    fake_bin = tmp_path / "fakebin"
    fake_bin.mkdir()
    (fake_bin / "go").write_text(FAKE_GO)
    (fake_bin / "go").chmod(0o755)
    env = dict(os.environ, PATH="%s:%s" % (fake_bin, os.environ["PATH"]), GOPROXY="off", GOFLAGS="",
               MESHFLEET_TOOLS_CACHE=str(tmp_path / "cache"), GOCACHE=str(tmp_path / "gocache"),
               MESHFLEET_PROGRESS_INTERVAL="1")
    env.pop("MESHFLEET_TOOLS_SOURCE", None)
    return tools, env


def run(tools, env, *args):
    p = subprocess.run(["bash", str(tools / "build-tools.sh")] + list(args), env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().splitlines()[-1]


def test_node_set_has_its_own_key_and_never_moves_the_main_one(tmp_path):
    tools, env = setup_tree(tmp_path)
    main = run(tools, env, "--source", "build", "--print-bin")
    node = run(tools, env, "--node", "--print-bin")
    cache = str(tmp_path / "cache")
    assert os.path.dirname(os.path.dirname(node)) == cache
    assert os.path.basename(os.path.dirname(node)).startswith("node-")
    assert not os.path.basename(os.path.dirname(main)).startswith("node-")
    # a node recipe change moves the node key only
    with open(str(tools / "node-versions.env"), "a") as f:
        f.write("NODE_BUILD_RECIPE=2\n")
    assert run(tools, env, "--source", "build", "--print-bin") == main
    assert run(tools, env, "--node", "--print-bin") != node


def test_node_build_stamps_and_reuses(tmp_path):
    tools, env = setup_tree(tmp_path)
    p = subprocess.run(["bash", str(tools / "build-tools.sh"), "--node", "--check"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert p.returncode == 1 and "kubelet" in p.stderr
    last = run(tools, env, "--node")
    bin_dir = last.split("=", 1)[1]
    assert sorted(os.listdir(bin_dir)) == ["coredns", "kube-proxy", "kubelet"]
    stamps = os.path.join(os.path.dirname(bin_dir), "stamps")
    assert sorted(os.listdir(stamps)) == ["coredns.ok", "kube-proxy.ok", "kubelet.ok"]
    with open(os.path.join(stamps, "coredns.ok")) as f:
        assert "package=github.com/coredns/coredns" in f.read()
    # the main set's `current` link is not moved by a node build
    assert not os.path.exists(os.path.join(str(tmp_path / "cache"), "current"))
    p = subprocess.run(["bash", str(tools / "build-tools.sh"), "--node"], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert p.returncode == 0 and "3 tools ready (0 built)" in p.stderr
