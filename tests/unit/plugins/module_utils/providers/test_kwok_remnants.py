# -*- coding: utf-8 -*-
"""kwok provider: a removal interrupted after kwokctl's part (Ctrl-C in teardown.yml) leaves
our cluster folder and port reservation; state=absent must still see them and remove them.
The whole interrupted teardown is tests/integration/test_site_clusters.py."""

from __future__ import absolute_import, division, print_function

import os

from ansible_collections.meshfleet.mesh.plugins.module_utils.providers.kwok import KwokProvider


class Module(object):
    def __init__(self, state):
        self.params = dict(state=state)


def remnant(tmp_path, monkeypatch, state):
    monkeypatch.setenv("MESHFLEET_PORTS_DIR", str(tmp_path / "ports"))
    prov = KwokProvider("c1", dict(tools_bin=str(tmp_path / "bin")), str(tmp_path / "state"),
                        module=Module(state))
    cdir = prov.ensure_cluster_dir()
    with open(os.path.join(cdir, "kubeconfig"), "w") as f:
        f.write("apiVersion: v1\n")
    prov.ports().reserve(prov.port_owner, ["kubeApiserverPort"])
    assert not os.path.isdir(prov.kwok_dir)
    return prov, cdir


def test_remnants_are_not_absent_and_are_removed(tmp_path, monkeypatch):
    prov, cdir = remnant(tmp_path, monkeypatch, "absent")
    observed = prov.get()
    assert observed is not None and observed["running"] is False
    assert prov.delete() is True  # no kwokctl needed: its part was done
    assert not os.path.exists(cdir)
    assert prov.ports().get(prov.port_owner) == {}
    assert prov.get() is None


def test_remnants_do_not_count_as_a_cluster_when_creating(tmp_path, monkeypatch):
    prov, dummy = remnant(tmp_path, monkeypatch, "present")
    assert prov.get() is None  # create() reuses the folder and reserves ports anew
