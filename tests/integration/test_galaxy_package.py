# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection as people install it: ``ansible-galaxy collection build`` of this repo,
installed with ``ansible-galaxy collection install`` into an empty path, used from a folder
outside the repo with no ansible.cfg (ANSIBLE_COLLECTIONS_PATH = that path + the site-packages
of the ``ansible`` package, where kubernetes.core comes from). The repo's own copy
(collections/ symlink, ansible.cfg) is out of reach, so whatever the package lacks fails here.

Also the execution environment: ``ansible-builder create`` writes the build context of
execution-environment.yml (building the image needs a container engine, which this machine
has not: docs/awx.md), and ``ansible-builder introspect`` finds the collection's own
requirements in the installed copy (meta/execution-environment.yml).
"""

from __future__ import absolute_import, division, print_function

import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.dirname(sys.executable)
SITE = os.path.join(os.path.dirname(os.path.dirname(yaml.__file__)))  # site-packages of .venv

# What an installed collection uses (top-level entries of the tarball) ...
ALLOWED_TOP = {"MANIFEST.json", "FILES.json", "README.md", "COPYING", "CHANGELOG.rst",
               "requirements.txt", "bindep.txt", "meta", "plugins", "roles", "playbooks",
               "docs", "changelogs"}
# ... and the repo's development side, which must not be in it.
REPO_ONLY = ("uv.lock", "pyproject.toml", "Makefile", "ansible.cfg", "requirements.yml",
             "execution-environment.yml", "tools", "tests", "bench", ".ci", "molecule", "scripts",
             "inventories", "collections", "ee", "changelogs/fragments", "changelogs/.plugin-cache.yaml")

TOPOLOGY = """\
plugin: meshfleet.mesh.topology
mesh:
  id: pkgtest
clusters:
  pkg1:
    provider: kwok
    network: n1
    eastwest_address: 127.0.10.9
"""


def galaxy_version():
    with open(os.path.join(REPO, "galaxy.yml")) as f:
        return yaml.safe_load(f)["version"]


def run(argv, cwd, env, timeout=300):
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=timeout, check=False)
    assert proc.returncode == 0, "%s failed (%d):\n%s" % (" ".join(argv), proc.returncode, proc.stdout)
    return proc.stdout


def clean_env(**extra):
    """No ansible.cfg of the repo, no repo collection path: only what the test gives."""
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith("ANSIBLE_"))
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PATH="%s:%s" % (BIN, os.environ.get("PATH", "")))
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """(tarball, installed collections path, a work folder outside the repo)."""
    root = tmp_path_factory.mktemp("galaxy")
    work = root / "work"
    work.mkdir()
    env = clean_env()
    run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--force", "--output-path",
         str(root / "dist"), REPO], cwd=str(work), env=env)
    tarball = root / "dist" / ("meshfleet-mesh-%s.tar.gz" % galaxy_version())
    assert tarball.is_file()
    colls = root / "collections"
    # --no-deps: kubernetes.core is already there (site-packages); nothing may reach Galaxy
    run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--offline", "--no-deps",
         "-p", str(colls), str(tarball)], cwd=str(work), env=env)
    assert (colls / "ansible_collections" / "meshfleet" / "mesh" / "MANIFEST.json").is_file()
    return tarball, colls, work


def installed_env(colls, **extra):
    return clean_env(ANSIBLE_COLLECTIONS_PATH="%s:%s" % (colls, SITE), **extra)


def test_tarball_holds_only_what_an_installed_collection_uses(package):
    tarball = package[0]
    with tarfile.open(str(tarball)) as tf:
        names = sorted(m.name for m in tf.getmembers())
    size = os.path.getsize(str(tarball))
    sys.stderr.write("[package] %s: %d entries, %d bytes\n" % (tarball.name, len(names), size))
    tops = set(n.split("/", 1)[0] for n in names)
    assert tops <= ALLOWED_TOP, sorted(tops - ALLOWED_TOP)
    for repo_only in REPO_ONLY:
        assert not [n for n in names if n == repo_only or n.startswith(repo_only + "/")], repo_only
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".retry", ".tar.gz"))]
    # what the installed collection needs is there: the role's own script, the EE metadata,
    # the changelog, every module and playbook of the repo
    for need in ("roles/vms_local/files/vm-rootfs.sh", "meta/runtime.yml", "meta/execution-environment.yml",
                 "requirements.txt", "bindep.txt", "changelogs/changelog.yaml", "CHANGELOG.rst"):
        assert need in names, need
    for folder in ("plugins/modules", "playbooks"):
        repo_files = sorted("%s/%s" % (folder, f) for f in os.listdir(os.path.join(REPO, folder))
                            if f.endswith((".py", ".yml")))
        assert repo_files and set(repo_files) <= set(names), sorted(set(repo_files) - set(names))
    with tarfile.open(str(tarball)) as tf:
        manifest = json.load(tf.extractfile("MANIFEST.json"))
    info = manifest["collection_info"]
    assert info["version"] == galaxy_version()
    assert info["dependencies"] == {"kubernetes.core": ">=5.0.0"}
    # no placeholder address: a URL either points at this project or is left out
    assert not [k for k in ("repository", "documentation", "homepage", "issues")
                if info.get(k) and "example" in info[k]]


def test_installed_collection_documents_its_plugins(package):
    tarball, colls, work = package
    env = installed_env(colls)
    out = run([os.path.join(BIN, "ansible-doc"), "-l", "meshfleet.mesh"], cwd=str(work), env=env)
    listed = set(line.split()[0] for line in out.splitlines() if line.startswith("meshfleet.mesh."))
    modules = set("meshfleet.mesh." + f[:-3] for f in os.listdir(os.path.join(REPO, "plugins", "modules"))
                  if f.endswith(".py") and not f.startswith("_"))
    assert modules <= listed, sorted(modules - listed)
    out = run([os.path.join(BIN, "ansible-doc"), "-t", "inventory", "meshfleet.mesh.topology"],
              cwd=str(work), env=env)
    assert "topology" in out
    # the copy in use is the installed one, not the repo's
    out = run([os.path.join(BIN, "ansible-galaxy"), "collection", "list", "meshfleet.mesh"], cwd=str(work), env=env)
    assert str(colls) in out and REPO not in out, out


def test_site_playbook_by_fqcn_from_the_installed_collection(package, tools_bin):
    """--syntax-check of meshfleet.mesh.site, then a check-mode run of a one-cluster kwok
    topology: the whole site.yml path (validation, trust, clusters, Istio, links, receipt,
    summary) resolves from the package, and check mode writes nothing."""
    tarball, colls, work = package
    inv = work / "inv"
    inv.mkdir()
    (inv / "mesh.meshfleet.yml").write_text(TOPOLOGY)
    env = installed_env(colls, MESHFLEET_TOOLS_BIN=tools_bin)
    env.pop("MESHFLEET_STATE_DIR", None)
    playbook = os.path.join(BIN, "ansible-playbook")
    out = run([playbook, "-i", str(inv), "--syntax-check", "meshfleet.mesh.site"], cwd=str(work), env=env)
    assert os.path.join(str(colls), "ansible_collections", "meshfleet", "mesh", "playbooks", "site.yml") in out
    out = run([playbook, "-i", str(inv), "-C", "meshfleet.mesh.site"], cwd=str(work), env=env, timeout=600)
    recap = out[out.rindex("PLAY RECAP"):]
    assert "pkg1" in recap and "failed=0" in recap and "unreachable=0" in recap, out
    assert "pkg1 (primary, n1)" in out, out       # the summary play ran
    assert sorted(os.listdir(str(inv))) == ["mesh.meshfleet.yml"], "check mode wrote state"


def test_execution_environment_build_context(package, tmp_path):
    """ansible-builder create writes the context of execution-environment.yml (the built
    tarball, the cloud SDK groups, istioctl's fetch); introspect reads the installed
    collection's requirements through its meta/execution-environment.yml."""
    builder = os.path.join(BIN, "ansible-builder")
    if not os.path.exists(builder):
        pytest.fail("ansible-builder is not in .venv (uv pip install ansible-builder)", pytrace=False)
    tarball, colls, work = package
    with open(os.path.join(REPO, "execution-environment.yml")) as f:
        ee = yaml.safe_load(f)
    assert ee["version"] == 3
    wanted = [c["name"] for c in ee["dependencies"]["galaxy"]["collections"] if c.get("type") == "file"]
    assert wanted == ["collections/%s" % tarball.name], "execution-environment.yml names another version"
    # the definition reads the tarball from ee/collections (as docs/awx.md builds it): a copy of
    # the repo's definition files in a scratch folder, so the repo's ee/ is left alone
    src = tmp_path / "src"
    (src / "ee" / "collections").mkdir(parents=True)
    (src / "tools").mkdir()
    shutil.copy(os.path.join(REPO, "execution-environment.yml"), str(src))
    for name in ("fetch-tools.py", "versions.env"):
        shutil.copy(os.path.join(REPO, "tools", name), str(src / "tools"))
    shutil.copy(str(tarball), str(src / "ee" / "collections"))
    ctx = tmp_path / "context"
    env = clean_env()
    run([builder, "create", "-f", str(src / "execution-environment.yml"), "-c", str(ctx),
         "--output-filename", "Containerfile"], cwd=str(src), env=env)
    containerfile = (ctx / "Containerfile").read_text()
    build = ctx / "_build"
    assert (build / "collections" / tarball.name).is_file()
    assert (build / "meshfleet-tools" / "fetch-tools.py").is_file()
    assert "fetch-tools.py --source release istioctl" in containerfile
    assert "ENV MESHFLEET_TOOLS_BIN=/opt/meshfleet/bin" in containerfile
    assert "ansible-core>=2.19,<2.20" in containerfile
    galaxy = yaml.safe_load((build / "requirements.yml").read_text())
    assert {"name": "collections/" + tarball.name, "type": "file"} in galaxy["collections"]
    sdk = (build / "requirements.txt").read_text().split()
    assert sdk == cloud_groups_of_requirements_txt()
    # the installed collection's own requirements, as the image build's introspection sees them
    out = run([builder, "introspect", "--sanitize", str(colls)], cwd=str(work), env=env)
    # (PyYAML is left out by --sanitize: ansible-core brings it)
    for req in ("cryptography>=44", "openssh-clients [platform:rpm]"):
        assert req in out, out
    for sdk_req in sdk:                            # the base stays light
        assert sdk_req.split(">=")[0] not in out, out


def cloud_groups_of_requirements_txt():
    """The SDKs of the commented provider groups in requirements.txt, in order, deduplicated."""
    out = []
    with open(os.path.join(REPO, "requirements.txt")) as f:
        for line in f:
            if line.startswith("# [") and "]:" in line:
                for req in line.split("]:", 1)[1].split():
                    if req not in out:
                        out.append(req)
    return out
