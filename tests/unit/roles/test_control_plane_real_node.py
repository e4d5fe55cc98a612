# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the role meshfleet.mesh.control_plane renders for real-node clusters (kwok with
``settings.real_node: true``, docs/real-pods.md "Istio on real nodes"), next to fake-node and cloud
clusters of the same mesh, which must keep exactly today's rendering.

The role's templates are rendered by ansible-playbook with the role's defaults and a real
topology inventory (as in test_control_plane_release). The ``integration`` test feeds the
real-node IstioOperators to the real istioctl and checks what reaches the cluster: istiod's
environment, the images and their pull policy, config validation, no metrics provider.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import subprocess
import sys

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
BIN = os.path.dirname(sys.executable)
ROLE = os.path.join(REPO, "roles", "control_plane")
sys.path.insert(0, HERE)
import test_control_plane_release as release  # noqa: E402  (its istioctl helpers)

HUB, TAG = "localhost/meshfleet", "1.30.4-742a79c2550f"
GATEWAY = "10.130.1.10"   # what local_lb gave cluster1's east-west gateway

PLAY = """\
- name: Render the control plane's IstioOperators of every cluster
  hosts: clusters
  gather_facts: false
  vars_files:
    - {role}/defaults/main.yml
  vars:
    # what the role's node_images tasks set on a real-node cluster
    control_plane_image_hub: {hub}
    control_plane_image_tag: "{tag}"
  tasks:
    - name: The primaries' play remembered their gateway addresses
      ansible.builtin.set_fact:
        control_plane_gateway: {{address: "{gateway}"}}
      when: inventory_hostname == 'cluster1'

    - name: Each IstioOperator as the role's install task renders it
      ansible.builtin.set_fact:
        rendered_operators:
          istio-operator: "{{{{ lookup('ansible.builtin.template', '{role}/templates/istio-operator.yaml.j2') }}}}"
          eastwest-operator: "{{{{ lookup('ansible.builtin.template', '{role}/templates/eastwest-operator.yaml.j2') }}}}"
        rendered_flags:
          real_node: "{{{{ control_plane_real_node | bool }}}}"
          local: "{{{{ control_plane_local | bool }}}}"
          istiod_local: "{{{{ control_plane_istiod_local | bool }}}}"

    - name: Write them all
      ansible.builtin.copy:
        dest: "{out}"
        content: >-
          {{{{ dict(ansible_play_hosts | zip(ansible_play_hosts | map('extract', hostvars)
                    | map(attribute='rendered_operators') | zip(ansible_play_hosts | map('extract', hostvars)
                    | map(attribute='rendered_flags')))) | to_json }}}}
        mode: "0600"
      run_once: true
      delegate_to: localhost
"""

TOPOLOGY = """\
plugin: meshfleet.mesh.topology
mesh:
  id: mesh1
  istio: {version: "1.30"}
clusters:
  cluster1: {provider: kwok, network: network1, settings: {real_node: true}}
  cluster2: {provider: kwok, network: network1, role: remote, primary: cluster1, settings: {real_node: true}}
  cluster3: {provider: kwok, network: network2, settings: {real_node: true}}
  fake4: {provider: kwok, network: network3, eastwest_address: 127.0.10.4}
  aks5:
    provider: aks
    network: net-azure
    settings: {resource_group: rg, location: westeurope}
"""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("realnode")
    inv = tmp / "inventory"
    inv.mkdir()
    (inv / "mesh.meshfleet.yml").write_text(TOPOLOGY)
    out = tmp / "rendered.json"
    play = tmp / "render.yml"
    play.write_text(PLAY.format(role=ROLE, out=out, hub=HUB, tag=TAG, gateway=GATEWAY))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    r = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", str(inv), str(play)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    with open(str(out)) as f:
        data = json.load(f)
    return dict((c, (dict((n, (t, yaml.safe_load(t))) for n, t in ops.items()), flags))
                for c, (ops, flags) in data.items())


def test_which_clusters_are_real_node(rendered):
    flags = dict((c, f) for c, (_ops, f) in rendered.items())
    assert flags["cluster1"] == {"real_node": True, "local": False, "istiod_local": False}
    assert flags["cluster2"] == {"real_node": True, "local": False, "istiod_local": False}
    assert flags["fake4"] == {"real_node": False, "local": True, "istiod_local": True}
    assert flags["aks5"] == {"real_node": False, "local": False, "istiod_local": False}


def test_real_node_primaries_run_the_local_images_for_upstream_envoy(rendered):
    for cluster in ("cluster1", "cluster3"):
        ops, _flags = rendered[cluster]
        for name, (text, iop) in ops.items():
            spec = iop["spec"]
            glob = spec["values"]["global"]
            assert (spec["hub"], spec["tag"]) == (HUB, TAG), (cluster, name, text)
            assert glob["imagePullPolicy"] == "Never", (cluster, name)
            # config validation stays on (Istio's default): the API server reaches the webhook
            assert "configValidation" not in glob, (cluster, name)
            # no metrics provider, so istiod sends no istio.stats filter
            assert spec["values"]["telemetry"] == {"enabled": False}, (cluster, name)
        iop = ops["istio-operator"][1]
        env = iop["spec"]["values"]["pilot"]["env"]
        assert env["PILOT_ENABLE_METADATA_EXCHANGE"] == "false"
        assert env["PILOT_ENABLE_ALPN_FILTER"] == "false"
        assert iop["spec"]["values"]["pilot"]["autoscaleEnabled"] is False
        # memory (issue #11's 1.5 GiB per cluster): istiod's and pilot-agent's GC target, one Envoy worker
        assert env["GOGC"] == "50"
        default = iop["spec"]["meshConfig"]["defaultConfig"]
        assert default["concurrency"] == 1
        assert default["proxyMetadata"]["GOGC"] == "50"
        assert iop["spec"]["profile"] == "default"
        gw = ops["eastwest-operator"][1]["spec"]["components"]["ingressGateways"][0]["k8s"]
        matcher = json.loads(gw["podAnnotations"]["proxy.istio.io/config"])["proxyStatsMatcher"]
        assert matcher == {"inclusionPrefixes": ["listener.0.0.0.0_15443.", "cluster.outbound_."]}
        assert ops["eastwest-operator"][1]["spec"]["values"]["gateways"]["istio-ingressgateway"]["autoscaleEnabled"] is False
    # cluster1 has the remote cluster2: it is its external istiod
    assert rendered["cluster1"][0]["istio-operator"][1]["spec"]["values"]["pilot"]["env"]["EXTERNAL_ISTIOD"] is True


def test_a_real_node_remote_uses_its_primarys_gateway_from_local_lb(rendered):
    ops, _flags = rendered["cluster2"]
    spec = ops["istio-operator"][1]["spec"]
    assert spec["profile"] == "remote"
    assert spec["values"]["global"]["remotePilotAddress"] == GATEWAY
    assert (spec["hub"], spec["tag"]) == (HUB, TAG)
    assert spec["values"]["global"]["imagePullPolicy"] == "Never"
    assert "pilot" not in spec["values"]
    # the remote's proxies (injected by the primary with the remote's mesh config) get the same
    assert spec["meshConfig"]["defaultConfig"]["concurrency"] == 1
    assert spec["meshConfig"]["defaultConfig"]["proxyMetadata"]["GOGC"] == "50"


def test_fake_node_and_cloud_clusters_keep_todays_rendering(rendered):
    for cluster in ("fake4", "aks5"):
        ops, _flags = rendered[cluster]
        for name, (text, iop) in ops.items():
            spec = iop["spec"]
            for word in ("imagePullPolicy", "telemetry", "PILOT_ENABLE_METADATA_EXCHANGE", "podAnnotations",
                         "accessLog", "proxyStatsMatcher",
                         "PILOT_ENABLE_ALPN_FILTER", "localhost/meshfleet", "autoscaleEnabled", "resources",
                         "GOGC", "concurrency"):
                assert word not in text, (cluster, name, word)
            assert "hub" not in spec and "tag" not in spec, (cluster, name)
    glob = rendered["fake4"][0]["istio-operator"][1]["spec"]["values"]["global"]
    assert glob["configValidation"] is False
    assert "configValidation" not in rendered["aks5"][0]["istio-operator"][1]["spec"]["values"]["global"]


@pytest.mark.integration
def test_istioctl_output_for_a_real_node_primary(rendered, tmp_path):
    istioctl = release.tools_bin()
    ops, _flags = rendered["cluster1"]
    objects = release.istioctl_generate(istioctl, tmp_path, "cluster1.istio", ops["istio-operator"][0])
    istiod = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "istiod"]
    assert len(istiod) == 1
    (c,) = release.containers(istiod[0])
    assert c["image"] == "%s/pilot:%s" % (HUB, TAG)
    assert c["imagePullPolicy"] == "Never"
    env = dict((e["name"], e.get("value")) for e in c["env"])
    assert env["PILOT_ENABLE_METADATA_EXCHANGE"] == "false"
    assert env["PILOT_ENABLE_ALPN_FILTER"] == "false"
    assert env["GOGC"] == "50"
    # the plug-in CA: istiod mounts the cacerts secret
    vols = istiod[0]["spec"]["template"]["spec"]["volumes"]
    assert any((v.get("secret") or {}).get("secretName") == "cacerts" for v in vols)
    # config validation on: the validating webhook is rendered
    assert any(o["kind"] == "ValidatingWebhookConfiguration" for o in objects)
    mesh = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "istio"]
    mesh_cfg = yaml.safe_load(mesh[0]["data"]["mesh"])
    assert not (mesh_cfg.get("defaultProviders") or {}).get("metrics"), mesh_cfg
    for _name, (values, _config) in release.injector_values(objects).items():
        g = json.loads(values)["global"]
        assert (g["hub"], g["tag"], g["imagePullPolicy"]) == (HUB, TAG, "Never")
