# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""tools/build-tools.sh --bench: the bench tool set (fortio) has a cache key of its own,
<cache>/bench-<key>/, that neither moves the main nor the node set's key (adding it never
rebuilds the control plane or the node tools) nor moves when a main pin does. The fake ``go``
of test_build_progress stands in; nothing is compiled and the real cache is never touched."""

from __future__ import absolute_import, division, print_function

import os
import subprocess

from test_node_toolset import run, setup_tree


def test_bench_set_has_its_own_key(tmp_path):
    tools, env = setup_tree(tmp_path)
    main = run(tools, env, "--source", "build", "--print-bin")
    node = run(tools, env, "--node", "--print-bin")
    bench = run(tools, env, "--bench", "--print-bin")
    assert os.path.dirname(os.path.dirname(bench)) == str(tmp_path / "cache")
    assert os.path.basename(os.path.dirname(bench)).startswith("bench-")
    assert len(set([main, node, bench])) == 3
    # a bench pin moves the bench key only
    with open(str(tools / "bench-versions.env"), "a") as f:
        f.write("BENCH_BUILD_RECIPE=2\n")
    moved = run(tools, env, "--bench", "--print-bin")
    assert moved != bench
    assert run(tools, env, "--source", "build", "--print-bin") == main
    assert run(tools, env, "--node", "--print-bin") == node
    # a main pin moves the main and node keys, never the bench one
    with open(str(tools / "versions.env"), "r+") as f:
        text = f.read().replace("BUILD_RECIPE=1", "BUILD_RECIPE=2", 1)
        f.seek(0)
        f.write(text)
        f.truncate()
    assert run(tools, env, "--source", "build", "--print-bin") != main
    assert run(tools, env, "--bench", "--print-bin") == moved


def test_bench_build_stamps_and_reuses(tmp_path):
    tools, env = setup_tree(tmp_path)
    p = subprocess.run(["bash", str(tools / "build-tools.sh"), "--bench", "--check"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert p.returncode == 1 and "fortio" in p.stderr
    bin_dir = run(tools, env, "--bench").split("=", 1)[1]
    assert os.listdir(bin_dir) == ["fortio"]
    with open(os.path.join(os.path.dirname(bin_dir), "stamps", "fortio.ok")) as f:
        stamp = f.read()
    assert "package=fortio.org/fortio" in stamp and "source=fortio.org/fortio v" in stamp
    assert not os.path.exists(os.path.join(str(tmp_path / "cache"), "current"))
    p = subprocess.run(["bash", str(tools / "build-tools.sh"), "--bench"], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert p.returncode == 0 and "1 tools ready (0 built)" in p.stderr


def test_bench_and_node_are_exclusive(tmp_path):
    tools, env = setup_tree(tmp_path)
    p = subprocess.run(["bash", str(tools / "build-tools.sh"), "--node", "--bench", "--print-bin"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert p.returncode != 0 and "choose one" in p.stderr
