# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ports.PortRegistry with real sockets on 127.0.0.1 (a private registry dir and port range)."""

from __future__ import absolute_import, division, print_function

import socket

import pytest

from ansible_collections.meshfleet.mesh.plugins.module_utils.ports import PortRegistry, port_free


def free_range(size=20):
    """A range of ``size`` consecutive free ports (the tests bind some of them)."""
    for start in range(41000, 47000, size):
        if all(port_free(p) for p in range(start, start + size)):
            return (start, start + size - 1)
    pytest.skip("no free port range")


@pytest.fixture
def registry(tmp_path):
    return PortRegistry(str(tmp_path / "ports"), port_range=free_range())


def listen(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", port))
    s.listen(1)
    return s


def test_owners_get_distinct_ports_and_keep_them(registry, tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    for d in (a, b):
        (tmp_path / d).mkdir()
    pa = registry.reserve(a, ["http", "grpc"])
    pb = registry.reserve(b, ["http", "grpc"])
    assert not set(pa.values()) & set(pb.values())
    assert registry.reserve(a, ["http", "grpc"]) == pa


def test_busy_ports_are_skipped_and_recheck_moves_a_kept_one(registry, tmp_path):
    owner = str(tmp_path / "istiod")
    (tmp_path / "istiod").mkdir()
    first = registry.reserve(owner, ["http"])["http"]
    sock = listen(first)  # something else took it while the owner was stopped
    try:
        assert registry.reserve(owner, ["http"])["http"] == first  # kept without recheck
        moved = registry.reserve(owner, ["http"], recheck=True)["http"]
        assert moved != first and port_free(moved)
        assert registry.reserve(owner, ["http"]) == {"http": moved}  # and recorded
    finally:
        sock.close()


def test_owners_whose_folder_is_gone_are_pruned(registry, tmp_path):
    gone = str(tmp_path / "gone")
    port = registry.reserve(gone, ["http"])["http"]
    (tmp_path / "new").mkdir()
    assert registry.reserve(str(tmp_path / "new"), ["http"])["http"] == port
    assert registry.get(gone) == {}
