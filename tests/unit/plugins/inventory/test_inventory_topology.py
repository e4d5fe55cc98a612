# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory plugin meshfleet.mesh.topology.

Built directly with an ``InventoryData()`` and a ``DataLoader()`` (openstack.cloud
style), and run for real through ``ansible-inventory`` from the repo root.
"""

from __future__ import absolute_import, division, print_function

import glob
import json
import os
import subprocess
import time
import sys

import pytest

from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import inventory_loader
from ansible.template import is_trusted_as_template

from ansible_collections.meshfleet.mesh.plugins.inventory import topology as plugin_mod
from ansible_collections.meshfleet.mesh.plugins.module_utils import topology as t

NAME = "meshfleet.mesh.topology"
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
FIXTURES = os.path.join(REPO, "tests", "unit", "fixtures", "topologies")
LOCAL = os.path.join(REPO, "inventories", "local", "mesh.meshfleet.yml")
PRIMARY_REMOTE = os.path.join(REPO, "inventories", "primary-remote", "mesh.meshfleet.yml")
MULTICLOUD = os.path.join(REPO, "inventories", "multicloud-example", "mesh.meshfleet.yml")
BIN = os.path.dirname(sys.executable)


def make_plugin():
    """The plugin as Ansible's plugin loader would hand it out (names + option definitions)."""
    inventory_loader._load_config_defs(NAME, plugin_mod, plugin_mod.__file__)
    plugin = plugin_mod.InventoryModule()
    inventory_loader._update_object(obj=plugin, name=NAME, path=plugin_mod.__file__,
                                    resolved=NAME)
    return plugin


def load(path):
    inventory = InventoryData()
    make_plugin().parse(inventory, DataLoader(), path, cache=False)
    inventory.reconcile_inventory()  # what InventoryManager does after the sources
    return inventory


def hosts_of(inventory, group):
    return sorted(h.name for h in inventory.groups[group].get_hosts())


def direct_hosts(inventory, group):
    return sorted(h.name for h in inventory.groups[group].hosts)


def children(inventory, group):
    return sorted(g.name for g in inventory.groups[group].child_groups)


MAGIC = ("inventory_hostname", "inventory_hostname_short", "group_names", "inventory_file",
         "inventory_dir")


def host_vars(inventory, host):
    return dict((k, v) for k, v in inventory.get_host(host).get_vars().items() if k not in MAGIC)


def all_vars(inventory):
    return inventory.groups["all"].get_vars()


def write(tmp_path, text, name="mesh.meshfleet.yml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --- verify_file -----------------------------------------------------------------------

@pytest.mark.parametrize("name,ok", [
    ("mesh.meshfleet.yml", True), ("prod.meshfleet.yaml", True), ("x.meshfleet.yml", True),
    ("mesh.yml", False), ("meshfleet.yml", False), ("mesh.meshfleet.yml.bak", False),
    ("mesh.meshfleet.json", False), ("hosts", False), ("mesh.meshfleet", False),
])
def test_verify_file(tmp_path, name, ok):
    path = write(tmp_path, "plugin: %s\n" % NAME, name)
    assert make_plugin().verify_file(path) is ok


def test_verify_file_needs_an_existing_file(tmp_path):
    assert make_plugin().verify_file(str(tmp_path / "missing.meshfleet.yml")) is False


# --- the local inventory -------------------------------------------------------------------

def test_local_groups():
    inv = load(LOCAL)
    assert children(inv, "all") == sorted([
        "ungrouped", "clusters", "vms", "network_network1", "network_network2",
        "provider_kwok", "vm_provider_netns"])
    assert children(inv, "clusters") == ["primaries", "remotes"]
    assert hosts_of(inv, "clusters") == ["cluster1", "cluster2", "cluster3"]
    assert hosts_of(inv, "primaries") == ["cluster1", "cluster2", "cluster3"]
    assert hosts_of(inv, "remotes") == []
    assert hosts_of(inv, "network_network1") == ["cluster1", "cluster2"]
    assert hosts_of(inv, "network_network2") == ["cluster3"]
    assert hosts_of(inv, "provider_kwok") == ["cluster1", "cluster2", "cluster3"]
    assert children(inv, "vms") == ["vmgroup_db", "vmgroup_web"]
    assert hosts_of(inv, "vms") == ["vm1", "vm2"]
    assert hosts_of(inv, "vmgroup_web") == ["vm1"]
    assert hosts_of(inv, "vmgroup_db") == ["vm2"]
    assert hosts_of(inv, "vm_provider_netns") == ["vm1", "vm2"]


def test_local_cluster_vars():
    inv = load(LOCAL)
    hv = host_vars(inv, "cluster1")
    assert hv["ansible_connection"] == "local"
    assert hv["ansible_python_interpreter"] == "{{ ansible_playbook_python }}"
    assert is_trusted_as_template(hv["ansible_python_interpreter"])
    assert {k: v for k, v in hv.items() if k.startswith("meshfleet_")} == dict(
        meshfleet_cluster_name="cluster1",
        meshfleet_provider="kwok",
        meshfleet_provider_settings={},
        meshfleet_network="network1",
        meshfleet_role="primary",
        meshfleet_primary="cluster1",
        meshfleet_eastwest_address="10.77.0.1",
        meshfleet_wait_timeouts={},
    )
    assert host_vars(inv, "cluster3")["meshfleet_network"] == "network2"


def test_local_vm_vars():
    inv = load(LOCAL)
    hv = host_vars(inv, "vm1")
    vms = os.path.join(os.path.dirname(LOCAL), ".meshfleet", "vms")
    assert hv == dict(
        ansible_host="10.77.0.2",
        ansible_user="root",
        ansible_ssh_private_key_file=os.path.join(vms, "ssh", "id_ed25519"),
        ansible_ssh_common_args="-o StrictHostKeyChecking=yes -o UserKnownHostsFile="
                                + os.path.join(vms, "known_hosts"),
        ansible_python_interpreter="/usr/bin/python3",
        meshfleet_vm_private_ip="10.77.0.2",
        meshfleet_vm_group="web",
        meshfleet_vm_namespace="vm-web",
        meshfleet_vm_service_account="web",
        meshfleet_vm_cluster="cluster1",
        meshfleet_network="network1",
        meshfleet_vm_provider="netns",
        meshfleet_vm_settings={"subnet": "10.77.0.0/24"},
        meshfleet_vm_ports={"http": 8080},
        meshfleet_vm_labels={"app": "web"},
    )
    hv2 = host_vars(inv, "vm2")
    assert (hv2["ansible_host"], hv2["meshfleet_vm_cluster"], hv2["meshfleet_network"]) == \
        ("10.77.1.2", "cluster3", "network2")


def test_local_all_vars():
    inv = load(LOCAL)
    av = all_vars(inv)
    folder = os.path.dirname(LOCAL)
    assert av["meshfleet_topology_file"] == LOCAL
    assert av["meshfleet_state_dir"] == os.path.join(folder, ".meshfleet")
    assert av["meshfleet_topology_errors"] == []
    assert av["meshfleet_mesh"] == dict(
        id="mesh1", trust_domain="cluster.local",
        istio=dict(version="1.30", revision="", hub="docker.io/istio", image_pull_secrets=[]),
        state_dir=os.path.join(folder, ".meshfleet"), ca=t.DEFAULT_CA,
        features=t.DEFAULT_FEATURES)
    topo = av["meshfleet_topology"]
    assert sorted(topo) == ["clusters", "mesh", "plugin", "vm_groups"]
    assert topo["mesh"] == av["meshfleet_mesh"]
    assert sorted(topo["clusters"]) == ["cluster1", "cluster2", "cluster3"]
    assert t.validate(topo) == []


def test_topology_var_is_plain_data():
    """meshfleet_topology is data for the validate module: plain types, JSON-ready."""
    inv = load(LOCAL)

    def walk(v):
        if isinstance(v, dict):
            assert type(v) is dict
            for k, x in v.items():
                assert isinstance(k, str)
                walk(x)
        elif isinstance(v, list):
            assert type(v) is list
            for x in v:
                walk(x)
        else:
            assert isinstance(v, (str, int, float, bool, type(None))), type(v)

    walk(all_vars(inv)["meshfleet_topology"])
    json.dumps(all_vars(inv)["meshfleet_topology"])


def test_primary_remote():
    inv = load(PRIMARY_REMOTE)
    assert hosts_of(inv, "primaries") == ["cluster1"]
    assert hosts_of(inv, "remotes") == ["cluster2"]
    assert hosts_of(inv, "network_network2") == ["cluster2"]
    assert hosts_of(inv, "vms") == []
    hv = host_vars(inv, "cluster2")
    assert (hv["meshfleet_role"], hv["meshfleet_primary"]) == ("remote", "cluster1")
    assert all_vars(inv)["meshfleet_topology_errors"] == []


def test_multicloud_example():
    inv = load(MULTICLOUD)
    assert all_vars(inv)["meshfleet_topology_errors"] == []
    assert hosts_of(inv, "provider_aks") == ["aks-weu"]
    assert hosts_of(inv, "provider_gke") == ["gke-euw"]
    assert hosts_of(inv, "provider_eks") == ["eks-euc"]
    assert hosts_of(inv, "network_net_azure") == ["aks-weu"]
    assert hosts_of(inv, "vm_provider_openstack") == ["billing-1", "billing-2"]
    assert hosts_of(inv, "vm_provider_ec2") == ["batch-1"]
    assert host_vars(inv, "aks-weu")["meshfleet_provider_settings"]["resource_group"] == \
        "rg-mesh-prod"
    assert host_vars(inv, "billing-1")["meshfleet_vm_settings"]["cloud"] == "onprem"
    # cloud clusters pull images: the example names a release
    assert all_vars(inv)["meshfleet_mesh"]["istio"] == dict(
        version="1.30.4", revision="1-30", hub="docker.io/istio", image_pull_secrets=[])


def test_istio_release_defaults_to_the_pinned_minor_release_for_cloud_clusters(tmp_path):
    """No mesh.istio.version: a mesh with an aks cluster gets the release 1.30.4 (its nodes
    pull images); the kwok-only local inventory keeps 1.30 (test_local_all_vars)."""
    inv_dir = tmp_path / "inv"
    inv_dir.mkdir()
    (inv_dir / "mesh.meshfleet.yml").write_text(
        "plugin: meshfleet.mesh.topology\nmesh: {id: m}\nclusters:\n"
        "  a: {provider: aks, network: n, settings: {resource_group: rg, location: westeurope}}\n"
        "  k: {provider: kwok, network: n}\n")
    inv = load(str(inv_dir / "mesh.meshfleet.yml"))
    assert all_vars(inv)["meshfleet_topology_errors"] == []
    assert all_vars(inv)["meshfleet_mesh"]["istio"]["version"] == t.ISTIO_DEFAULT_RELEASE == "1.30.4"


def test_istio_dev_version_on_a_cloud_cluster_is_an_inventory_error(tmp_path):
    inv_dir = tmp_path / "inv"
    inv_dir.mkdir()
    (inv_dir / "mesh.meshfleet.yml").write_text(
        "plugin: meshfleet.mesh.topology\nmesh: {id: m, istio: {version: \"1.30-dev\"}}\n"
        "clusters:\n  g: {provider: gke, network: n, settings: {project: p, location: europe-west1}}\n")
    inv = load(str(inv_dir / "mesh.meshfleet.yml"))
    assert all_vars(inv)["meshfleet_topology_errors"] == [
        'mesh.istio.version: "1.30-dev" is not an Istio release; cluster g (gke) pulls images from '
        'docker.io/istio: set mesh.istio.version to a release such as "1.30.4" (and mesh.istio.hub '
        'for a mirror)']


# --- constructed ---------------------------------------------------------------------------

def test_compose_groups_keyed_groups():
    path = os.path.join(FIXTURES, "good", "full.meshfleet.yml")
    inv = load(path)
    state = os.path.join(os.path.dirname(path), "state", "mesh")
    assert all_vars(inv)["meshfleet_state_dir"] == state
    assert host_vars(inv, "alpha")["meshfleet_kubeconfig"] == state + "/clusters/alpha/kubeconfig"
    assert hosts_of(inv, "laptop") == ["alpha", "beta"]
    assert hosts_of(inv, "role_primary") == ["alpha"]
    assert hosts_of(inv, "role_remote") == ["beta"]
    assert hosts_of(inv, "vmp_existing") == ["api-1", "api-2"]
    # constructed options are not part of meshfleet_topology
    assert "compose" not in all_vars(inv)["meshfleet_topology"]
    assert host_vars(inv, "api-1")["ansible_port"] == 2222
    assert host_vars(inv, "api-1")["meshfleet_network"] == "net-b"


def test_strict_compose_error(tmp_path):
    text = open(os.path.join(FIXTURES, "good", "minimal.meshfleet.yml")).read()
    path = write(tmp_path, text + "strict: true\ncompose:\n  broken: undefined_thing.x\n")
    with pytest.raises(Exception) as exc:
        load(path)
    assert "broken" in str(exc.value)
    path = write(tmp_path, text + "strict: false\ncompose:\n  broken: undefined_thing.x\n")
    assert "broken" not in host_vars(load(path), "only")


def test_group_names_are_sanitised(tmp_path):
    path = write(tmp_path, """\
plugin: meshfleet.mesh.topology
mesh: {id: m}
clusters:
  c1: {provider: kwok, network: net-1}
vm_groups:
  web-tier:
    cluster: c1
    hosts:
      vm-1: {ansible_host: 10.0.0.1}
""")
    inv = load(path)
    assert hosts_of(inv, "network_net_1") == ["c1"]
    assert hosts_of(inv, "vmgroup_web_tier") == ["vm-1"]
    assert host_vars(inv, "vm-1")["meshfleet_vm_group"] == "web-tier"


def test_state_dir(tmp_path):
    path = write(tmp_path, "plugin: %s\nmesh: {id: m, state_dir: ../state}\n"
                           "clusters: {c: {provider: kwok, network: n}}\n" % NAME)
    assert all_vars(load(path))["meshfleet_state_dir"] == str(tmp_path.parent / "state")
    path = write(tmp_path, "plugin: %s\nmesh: {id: m, state_dir: /srv/mesh}\n"
                           "clusters: {c: {provider: kwok, network: n}}\n" % NAME)
    assert all_vars(load(path))["meshfleet_state_dir"] == "/srv/mesh"


def test_state_dir_from_the_environment(tmp_path, monkeypatch):
    """MESHFLEET_STATE_DIR (e.g. a persistent volume in AWX) wins over mesh.state_dir and the
    default, for the inventory vars every role and module reads (meshfleet_state_dir and
    meshfleet_mesh.state_dir); relative to the topology's folder like mesh.state_dir."""
    topo = "plugin: %s\nmesh: {id: m%s}\nclusters: {c: {provider: kwok, network: n}}\n"
    for mesh_extra in ("", ", state_dir: /srv/mesh"):
        path = write(tmp_path, topo % (NAME, mesh_extra))
        monkeypatch.setenv("MESHFLEET_STATE_DIR", "/var/lib/meshfleet/m")
        av = all_vars(load(path))
        assert av["meshfleet_state_dir"] == "/var/lib/meshfleet/m"
        assert av["meshfleet_mesh"]["state_dir"] == "/var/lib/meshfleet/m"
        monkeypatch.setenv("MESHFLEET_STATE_DIR", "state")
        assert all_vars(load(path))["meshfleet_state_dir"] == str(tmp_path / "state")
        monkeypatch.setenv("MESHFLEET_STATE_DIR", "")  # empty: as if unset
        assert all_vars(load(path))["meshfleet_state_dir"] == (
            "/srv/mesh" if mesh_extra else str(tmp_path / ".meshfleet"))
    # a bad mesh.state_dir is still reported, whatever the environment says
    monkeypatch.setenv("MESHFLEET_STATE_DIR", "/var/lib/meshfleet/m")
    path = write(tmp_path, topo % (NAME, ", state_dir: 5"))
    assert any(e.startswith("mesh.state_dir: must be a non-empty path string")
               for e in all_vars(load(path))["meshfleet_topology_errors"])


def test_relative_path_is_made_absolute(tmp_path, monkeypatch):
    write(tmp_path, open(os.path.join(FIXTURES, "good", "minimal.meshfleet.yml")).read())
    monkeypatch.chdir(tmp_path)
    av = all_vars(load("mesh.meshfleet.yml"))
    assert av["meshfleet_topology_file"] == str(tmp_path / "mesh.meshfleet.yml")
    assert av["meshfleet_state_dir"] == str(tmp_path / ".meshfleet")


def test_templates_in_vm_host_vars_stay_templates(tmp_path):
    path = write(tmp_path, """\
plugin: meshfleet.mesh.topology
mesh: {id: m}
clusters: {c: {provider: kwok, network: n}}
vm_groups:
  g:
    cluster: c
    hosts:
      vm1: {ansible_host: 10.0.0.1, ansible_user: "{{ vm_user }}"}
""")
    inv = load(path)
    assert is_trusted_as_template(host_vars(inv, "vm1")["ansible_user"])
    topo_user = all_vars(inv)["meshfleet_topology"]["vm_groups"]["g"]["hosts"]["vm1"]["ansible_user"]
    assert topo_user == "{{ vm_user }}" and not is_trusted_as_template(topo_user)


# --- bad files ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(FIXTURES, "bad", "*.meshfleet.yml"))),
                         ids=lambda p: os.path.basename(p).split(".")[0])
def test_bad_topologies_still_load(path):
    """Semantic errors do not stop the inventory: they land in meshfleet_topology_errors."""
    inv = load(path)
    with open(path) as f:
        data, dups = t.load_topology(f.read())
    errors = all_vars(inv)["meshfleet_topology_errors"]
    assert errors == dups + t.validate(data)
    assert errors
    assert "meshfleet_mesh" in all_vars(inv) and "meshfleet_state_dir" in all_vars(inv)


def test_duplicate_cluster_is_reported(tmp_path):
    path = write(tmp_path, """\
plugin: meshfleet.mesh.topology
mesh: {id: m}
clusters:
  c1: {provider: kwok, network: n1}
  c1: {provider: kwok, network: n2}
""")
    inv = load(path)
    assert all_vars(inv)["meshfleet_topology_errors"] == [
        "clusters.c1: defined twice (lines 4 and 5); YAML would silently keep only the last one"]
    assert host_vars(inv, "c1")["meshfleet_network"] == "n2"


def test_colliding_vm_never_overwrites_another_host():
    inv = load(os.path.join(FIXTURES, "bad", "vm-host-is-cluster-name.meshfleet.yml"))
    hv = host_vars(inv, "cluster1")
    assert hv["ansible_connection"] == "local" and "meshfleet_vm_group" not in hv
    assert hosts_of(inv, "vmgroup_web") == []
    inv = load(os.path.join(FIXTURES, "bad", "vm-host-in-two-groups.meshfleet.yml"))
    assert host_vars(inv, "vm1")["meshfleet_vm_group"] == "web"
    assert host_vars(inv, "vm1")["ansible_host"] == "10.77.0.2"


def test_clusters_as_list_gives_no_hosts():
    inv = load(os.path.join(FIXTURES, "bad", "clusters-as-list.meshfleet.yml"))
    assert hosts_of(inv, "clusters") == []
    assert "clusters: must be a mapping" in all_vars(inv)["meshfleet_topology_errors"][0]


@pytest.mark.parametrize("name,text", [
    ("list", "line 1, column 1: a topology file is one YAML mapping with plugin, mesh and clusters, got a list"),
    ("scalar", "line 1, column 1: a topology file is one YAML mapping with plugin, mesh and clusters, "
               "got a single value"),
    ("syntax", "line 4, column 16: not valid YAML: mapping values are not allowed in this context"),
    ("empty", "the file is empty"),
    ("two-documents", "line 3, column 1: a second YAML document starts here"),
    ("no-plugin-line", "line 1, column 1: plugin: missing; a topology file starts with the line "
                       "`plugin: meshfleet.mesh.topology`"),
    ("plugin-typo", 'line 1, column 1: plugin: "meshfleet.mesh.topologie" is not meshfleet.mesh.topology'),
    ("alias-bomb", "expands to more than 100000 YAML nodes"),
])
def test_unparsable_files_load_an_empty_mesh_that_says_why(name, text):
    """A file that is not a topology still loads: no hosts, every var the plays read, and the
    reason (with its line and column) for the validate role, which runs first and stops."""
    path = os.path.join(FIXTURES, "unparsable", "%s.meshfleet.yml" % name)
    inv = load(path)
    av = all_vars(inv)
    errors = av["meshfleet_topology_errors"]
    assert len(errors) == 1 and errors[0].startswith(path + ": ") and text in errors[0], errors
    assert av["meshfleet_topology_unparsed"] is True
    assert av["meshfleet_topology"] == {}
    assert av["meshfleet_state_dir"] == os.path.join(os.path.dirname(path), ".meshfleet")
    assert inv.hosts == {} or list(inv.hosts) == []


def test_wrong_plugin_name(tmp_path):
    path = write(tmp_path, "plugin: ansible.builtin.yaml\nmesh: {id: m}\n")
    errors = all_vars(load(path))["meshfleet_topology_errors"]
    assert errors == ['%s: line 1, column 1: plugin: "ansible.builtin.yaml" is not meshfleet.mesh.topology; '
                      'the files this inventory plugin reads (*.meshfleet.yml) start with '
                      '`plugin: meshfleet.mesh.topology`' % path]


def test_not_utf8_file_says_where(tmp_path):
    # written here: a Latin-1 fixture file would trip the sanity tests' own YAML reader
    path = tmp_path / "latin1.meshfleet.yml"
    path.write_bytes(b"plugin: meshfleet.mesh.topology\nmesh:\n  id: caf\xe9\n")
    errors = all_vars(load(str(path)))["meshfleet_topology_errors"]
    assert errors == ["%s: line 3, column 10: not UTF-8 text (byte 0xe9); save the file as UTF-8" % path]


def test_good_file_is_not_unparsed():
    inv = load(os.path.join(FIXTURES, "good", "minimal.meshfleet.yml"))
    assert all_vars(inv)["meshfleet_topology_unparsed"] is False


def test_alias_bomb_is_refused_quickly():
    started = time.monotonic()
    inv = load(os.path.join(FIXTURES, "unparsable", "alias-bomb.meshfleet.yml"))
    assert "line 10, column 12: expands to more than" in all_vars(inv)["meshfleet_topology_errors"][0]
    assert time.monotonic() - started < 5


def test_oversized_file_is_not_read(tmp_path):
    path = tmp_path / "big.meshfleet.yml"
    path.write_text("plugin: meshfleet.mesh.topology\n# " + "x" * (5 * 1024 * 1024) + "\n")
    errors = all_vars(load(str(path)))["meshfleet_topology_errors"]
    assert "a topology file may have at most 1048576" in errors[0] and len(errors[0]) < 400


def test_huge_values_are_clipped_in_messages(tmp_path):
    value = "v" * (5 * 1024 * 1024 // 8)
    path = write(tmp_path, "plugin: meshfleet.mesh.topology\nmesh: {id: m}\nclusters:\n"
                           "  c1: {provider: kwok, network: n1}\nvm_groups:\n  g:\n    cluster: c1\n"
                           "    labels: {app: %s}\n    hosts: {vm1: {ansible_host: 10.0.0.1}}\n" % value)
    errors = all_vars(load(path))["meshfleet_topology_errors"]
    assert len(errors) == 1 and errors[0].startswith("vm_groups.g.labels.app: ")
    assert "... (%d characters)" % len(value) in errors[0] and len(errors[0]) < 400


# --- through ansible-inventory --------------------------------------------------------------------

def ansible(tool, *args, **kwargs):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    env.update(kwargs.pop("env", {}))
    return subprocess.run([os.path.join(BIN, tool)] + list(args), cwd=kwargs.pop("cwd", REPO),
                          env=env, capture_output=True, text=True, timeout=300, **kwargs)


def test_ansible_inventory_list():
    r = ansible("ansible-inventory", "-i", "inventories/local", "--list")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert sorted(data["primaries"]["hosts"]) == ["cluster1", "cluster2", "cluster3"]
    assert sorted(data["clusters"]["children"]) == ["primaries", "remotes"]
    assert sorted(data["vms"]["children"]) == ["vmgroup_db", "vmgroup_web"]
    assert data["network_network1"]["hosts"] == ["cluster1", "cluster2"]
    hv = data["_meta"]["hostvars"]
    assert hv["vm1"]["ansible_host"] == "10.77.0.2"
    assert hv["vm2"]["meshfleet_vm_cluster"] == "cluster3"
    assert hv["cluster2"]["meshfleet_primary"] == "cluster2"
    assert hv["cluster1"]["meshfleet_topology_errors"] == []
    assert hv["cluster1"]["meshfleet_state_dir"] == os.path.join(REPO, "inventories", "local",
                                                                 ".meshfleet")
    assert "[WARNING]" not in r.stderr
    assert "__ansible_unsafe" not in r.stdout  # no string in the local topology is a template


def test_ansible_inventory_graph():
    r = ansible("ansible-inventory", "-i", "inventories/local", "--graph")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for line in ("  |--@clusters:", "  |  |--@primaries:", "  |  |  |--cluster1",
                 "  |--@vms:", "  |  |--@vmgroup_web:", "  |  |  |--vm1",
                 "  |--@network_network2:", "  |  |--cluster3", "  |--@vm_provider_netns:"):
        assert line in lines, r.stdout


def test_ansible_inventory_primary_remote_graph():
    r = ansible("ansible-inventory", "-i", "inventories/primary-remote", "--graph", "remotes")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["@remotes:", "|--cluster2"]


def test_ansible_inventory_unparsable_file_says_why():
    path = os.path.join(FIXTURES, "unparsable", "list.meshfleet.yml")
    r = ansible("ansible-inventory", "-i", path, "--list")
    assert "%s: line 1, column 1: a topology file is one YAML mapping" % path in r.stderr


def test_ansible_inventory_warns_about_problems_but_loads():
    path = os.path.join(FIXTURES, "bad", "two-problems.meshfleet.yml")
    r = ansible("ansible-inventory", "-i", path, "--graph", "clusters")
    assert r.returncode == 0, r.stderr
    assert "topology has 2 problems" in r.stderr
    assert '- clusters.cluster-2.provider: unknown provider "kwak"' in r.stderr
    assert "cluster-2" in r.stdout


# --- the validation command ------------------------------------------------------------------

@pytest.mark.parametrize("path,rc,text", [
    ("inventories/local", 0, "3 clusters on 2 networks"),
    (os.path.join(FIXTURES, "unparsable", "syntax.meshfleet.yml"), 2,
     "line 4, column 16: not valid YAML: mapping values are not allowed in this context"),
    (os.path.join(FIXTURES, "bad", "reserved-host-names.meshfleet.yml"), 2,
     'clusters.all: cluster name "all" is reserved'),
])
def test_validate_playbook_exit_code(path, rc, text):
    r = ansible("ansible-playbook", "-i", path, "playbooks/validate.yml")
    assert r.returncode == rc, r.stdout[-3000:] + r.stderr[-3000:]
    assert text in r.stdout + r.stderr


def test_site_validates_an_unparsable_file_before_anything_else():
    """Not "'meshfleet_state_dir' is undefined" from a later play: the file's own message,
    from the first play, before the converge receipt is even looked at."""
    path = os.path.join(FIXTURES, "unparsable", "no-plugin-line.meshfleet.yml")
    r = ansible("ansible-playbook", "-i", path, "playbooks/site.yml")
    out = r.stdout + r.stderr
    assert r.returncode == 2, out[-3000:]
    assert "plugin: missing; a topology file starts with the line" in out
    assert "is undefined" not in out and "Check the last converge's receipt" not in out


def test_other_vms_pin_their_host_key_on_first_contact(tmp_path):
    """existing VMs (and any non-netns VM listed): accept-new into the mesh's known_hosts,
    never StrictHostKeyChecking=no; ssh arguments given in the file win."""
    path = write(tmp_path, """\
plugin: meshfleet.mesh.topology
mesh: {id: m, state_dir: /srv/mesh}
clusters: {c: {provider: kwok, network: n}}
vm_groups:
  api:
    cluster: c
    provider: existing
    hosts:
      api-1: {ansible_host: 192.0.2.10}
      api-2: {ansible_host: 192.0.2.11, ansible_ssh_common_args: "-o UserKnownHostsFile=/etc/mine"}
""")
    inv = load(path)
    assert host_vars(inv, "api-1")["ansible_ssh_common_args"] == (
        "-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=/srv/mesh/vms/known_hosts")
    assert host_vars(inv, "api-2")["ansible_ssh_common_args"] == "-o UserKnownHostsFile=/etc/mine"


def test_ansible_cfg_keeps_host_key_checking_on():
    """The project's ansible.cfg must not turn host key checking off (it would put
    -o StrictHostKeyChecking=no before the VMs' pinned-key arguments)."""
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO, "ansible.cfg"))
    for section in cfg.sections():
        value = cfg[section].get("host_key_checking")
        assert value is None or value.strip().lower() in ("true", "yes", "1"), (section, value)
