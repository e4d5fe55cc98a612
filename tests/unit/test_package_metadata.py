# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's metadata agrees with itself: one version (galaxy.yml, the latest
changelog release, every plugin's version_added), requires_ansible claims exactly the
ansible-core versions the sanity tests cover, requirements.yml lists what galaxy.yml
depends on, and requirements.txt's optional cloud groups are the SDKs the project pins."""

from __future__ import absolute_import, division, print_function

import glob
import os
import re

import yaml
from ansible.release import __version__ as ansible_core_version
from packaging.specifiers import SpecifierSet
from packaging.version import Version

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def load(path):
    with open(os.path.join(REPO, path)) as f:
        return yaml.safe_load(f)


def test_one_version():
    version = load("galaxy.yml")["version"]
    releases = load("changelogs/changelog.yaml")["releases"]
    assert max(releases, key=Version) == version
    added = {}
    for path in glob.glob(os.path.join(REPO, "plugins", "*", "*.py")):
        with open(path) as f:
            for found in re.findall(r"^version_added: *['\"]?([0-9.]+)", f.read(), re.M):
                added[os.path.relpath(path, REPO)] = found
    assert len(added) >= 15
    assert not [p for p, v in added.items() if Version(v) > Version(version) or v not in releases], added
    # every module of the release is listed in the changelog as new in the release it names
    listed = dict((m["name"], rel) for rel, body in releases.items()
                  for m in body.get("modules", []))
    for path, v in added.items():
        if path.startswith("plugins/modules/"):
            assert listed.get(os.path.basename(path)[:-3]) == v, path


def test_requires_ansible_is_what_sanity_covers():
    spec = SpecifierSet(load("meta/runtime.yml")["requires_ansible"])
    claimed = set("2.%d" % minor for minor in range(10, 40) if Version("2.%d.0" % minor) in spec)
    sanity = set(re.match(r"ignore-(\d+\.\d+)\.txt", os.path.basename(p)).group(1)
                 for p in glob.glob(os.path.join(REPO, "tests", "sanity", "ignore-*.txt")))
    assert claimed and claimed == sanity, (claimed, sanity)
    assert Version(ansible_core_version) in spec        # the ansible-core the tests run with


def test_requirements_yml_is_what_galaxy_yml_depends_on():
    deps = load("galaxy.yml")["dependencies"]
    reqs = dict((c["name"], c.get("version")) for c in load("requirements.yml")["collections"])
    assert reqs == deps


def test_requirements_txt_cloud_groups_are_the_pinned_sdks():
    """The optional groups (commented, one per provider) name the SDKs pyproject.toml pins,
    and the base names none of them."""
    with open(os.path.join(REPO, "requirements.txt")) as f:
        lines = f.read().splitlines()
    groups = dict((m.group(1), m.group(2).split()) for m in
                  (re.match(r"# \[(\w+)\]: (.+)$", ln) for ln in lines) if m)
    assert sorted(groups) == ["aks", "ec2", "eks", "gke", "openstack"]
    base = [ln.split(">=")[0].lower() for ln in lines if ln and not ln.startswith("#")]
    with open(os.path.join(REPO, "pyproject.toml")) as f:
        pyproject = f.read()
    for provider, reqs in groups.items():
        for req in reqs:
            assert '"%s"' % req in pyproject, (provider, req)
            assert req.split(">=")[0].lower() not in base
    assert base == ["cryptography", "pyyaml"]
    # the collection's own code imports no kubernetes client (KubeRest); kubernetes.core brings it
    for root, dummy, files in os.walk(os.path.join(REPO, "plugins")):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(root, name)) as f:
                    assert not re.search(r"^\s*(from|import) kubernetes\b", f.read(), re.M), name
