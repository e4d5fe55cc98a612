# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The API server address each remote secret names (role meshfleet.mesh.mesh_links,
``mesh_links_servers``): the controller's for fake-node and cloud clusters, and for a real-node
cluster the host end of its node's host link (where istiod's pod reaches the API server
forwarder), computed as ``localnet.addressing.host_link`` does. Rendered by ansible-playbook with
the role's defaults and a real topology inventory."""

from __future__ import absolute_import, division, print_function

import json
import os
import subprocess
import sys

from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet import addressing

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
BIN = os.path.dirname(sys.executable)
ROLE = os.path.join(REPO, "roles", "mesh_links")

PLAY = """\
- name: Render the remote secrets' servers
  hosts: clusters
  gather_facts: false
  vars_files:
    - {role}/defaults/main.yml
  tasks:
    - name: What the clusters play registered
      ansible.builtin.set_fact:
        clusters_api_server: "{{{{ {{'cluster1': 'https://127.0.0.1:20055', 'cluster2': 'https://127.0.0.1:20061',
                                    'fake3': 'https://127.0.0.1:20070'}}[inventory_hostname] }}}}"
      when: inventory_hostname != 'aks4'

    - name: Write them
      ansible.builtin.copy:
        dest: "{out}"
        content: "{{{{ mesh_links_servers | to_json }}}}"
        mode: "0600"
      run_once: true
      delegate_to: localhost
"""

TOPOLOGY = """\
plugin: meshfleet.mesh.topology
mesh:
  id: mesh1
  state_dir: {state}
clusters:
  cluster1: {{provider: kwok, network: network1, settings: {{real_node: true}}}}
  cluster2: {{provider: kwok, network: network2, settings: {{real_node: true}}}}
  fake3: {{provider: kwok, network: network3, eastwest_address: 127.0.10.3}}
  aks4:
    provider: aks
    network: net-azure
    settings: {{resource_group: rg, location: westeurope}}
"""


def test_real_node_clusters_name_their_host_link_address(tmp_path):
    state = tmp_path / "state"
    (state / "clusters" / "cluster1").mkdir(parents=True)
    (state / "clusters" / "cluster1" / "real-node.json").write_text(json.dumps({"slot": 70}))
    # cluster2 has no node record yet (created in this run's check mode): the controller's address
    inv = tmp_path / "inventory"
    inv.mkdir()
    (inv / "mesh.meshfleet.yml").write_text(TOPOLOGY.format(state=state))
    out = tmp_path / "servers.json"
    play = tmp_path / "play.yml"
    play.write_text(PLAY.format(role=ROLE, out=out))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    r = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", str(inv), str(play)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    servers = json.loads(out.read_text())
    host_end = addressing.host_link(70)[1]
    assert host_end == "10.132.1.25"
    assert servers == {"cluster1": "https://%s:20055" % host_end, "cluster2": "https://127.0.0.1:20061",
                       "fake3": "https://127.0.0.1:20070", "aks4": None}
