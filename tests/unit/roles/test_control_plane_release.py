# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Istio release identity of what the role meshfleet.mesh.control_plane renders.

The role's two IstioOperator templates are rendered by ansible-playbook, with the role's
defaults and a real topology inventory (the inventory plugin), exactly as the role's install
task does (``lookup('ansible.builtin.template', ...)``). Clusters that pull images (aks, gke,
eks, minikube) must get ``spec.hub``/``spec.tag`` of the release named by
``mesh.istio.version``; a kwok-only mesh with ``"1.30"`` keeps istioctl's own build identity.

The ``integration`` test at the end feeds those IstioOperators to the real istioctl and checks
every container image of its output and the sidecar injector's values.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from ansible_collections.meshfleet.mesh.plugins.module_utils import topology as t

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
BIN = os.path.dirname(sys.executable)
ROLE = os.path.join(REPO, "roles", "control_plane")
OPERATORS = ("istio-operator", "eastwest-operator")

PLAY = """\
- name: Render the control plane's IstioOperators of every cluster
  hosts: clusters
  gather_facts: false
  vars_files:
    - {role}/defaults/main.yml
  tasks:
    - name: Each IstioOperator as the role's install task renders it
      ansible.builtin.set_fact:
        rendered_operators:
          istio-operator: "{{{{ lookup('ansible.builtin.template', '{role}/templates/istio-operator.yaml.j2') }}}}"
          eastwest-operator: "{{{{ lookup('ansible.builtin.template', '{role}/templates/eastwest-operator.yaml.j2') }}}}"

    - name: The image tag the role derives from each version
      ansible.builtin.set_fact:
        rendered_tags: "{{{{ rendered_tags | default([]) + [control_plane_istio_tag] }}}}"
      vars:
        control_plane_istio_version: "{{{{ item }}}}"
      loop: {versions}
      run_once: true

    - name: Write them all
      ansible.builtin.copy:
        dest: "{out}"
        content: >-
          {{{{ {{'tags': rendered_tags,
                'operators': dict(ansible_play_hosts | zip(ansible_play_hosts
                                  | map('extract', hostvars, 'rendered_operators')))}} | to_json }}}}
        mode: "0600"
      run_once: true
      delegate_to: localhost
"""

# the tag rule in the role's defaults must be topology.ISTIO_RELEASE
VERSIONS = ["1.30.4", "1.30.0", "1.30.0-alpha.0", "1.30.1-beta.2", "1.30.0-rc.10", "10.0.1",
            "1.30", "1.30-dev", "1.30.4-dev", "1.30.4-rc", "1.30.4-rc.01", "01.30.4", "1.30.4.1",
            "latest", "v1.30.4", "1.30.4-custom"]


def render(tmp_path, topology_text, versions=("1.30.4",)):
    """({cluster: {operator name: (text, parsed IstioOperator)}}, {version: tag}) of one
    inventory, from one ansible-playbook run."""
    inv = tmp_path / "inventory"
    inv.mkdir()
    (inv / "mesh.meshfleet.yml").write_text(topology_text)
    out = tmp_path / "rendered.json"
    play = tmp_path / "render.yml"
    play.write_text(PLAY.format(role=ROLE, out=out, versions=json.dumps(list(versions))))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    r = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", str(inv), str(play)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    with open(str(out)) as f:
        data = json.load(f)
    rendered = dict((cluster, dict((name, (text, yaml.safe_load(text))) for name, text in ops.items()))
                    for cluster, ops in data["operators"].items())
    return rendered, dict(zip(versions, data["tags"]))


def mixed_topology(istio):
    """aks + gke primaries, an eks remote of the aks one, a kwok primary."""
    return """\
plugin: meshfleet.mesh.topology
mesh:
  id: m1
  istio: %s
clusters:
  aks-weu:
    provider: aks
    network: net-azure
    settings: {resource_group: rg, location: westeurope}
  gke-euw:
    provider: gke
    network: net-gcp
    settings: {project: p, location: europe-west1}
  eks-euc:
    provider: eks
    network: net-aws
    role: remote
    primary: aks-weu
    settings: {region: eu-central-1, role_arn: "arn:aws:iam::123456789012:role/r", subnet_ids: [subnet-1]}
  local:
    provider: kwok
    network: net-local
    eastwest_address: 127.0.0.1
""" % json.dumps(istio)


def spec_and_global(iop):
    spec = iop["spec"]
    return spec, ((spec.get("values") or {}).get("global") or {})


MIRROR = {"version": "1.30.1-rc.0", "hub": "mirror.example.com:5000/istio-release",
          "image_pull_secrets": ["istio-pull", "acr.pull"]}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """The mixed mesh with "1.30.4" (and the tag of each of VERSIONS)."""
    return render(tmp_path_factory.mktemp("release"), mixed_topology({"version": "1.30.4"}),
                  versions=VERSIONS)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    return render(tmp_path_factory.mktemp("mirror"), mixed_topology(MIRROR))


def test_the_roles_tag_rule_is_topologys_release_rule(release):
    _rendered, tags = release
    assert tags == dict((v, v if t.ISTIO_RELEASE.match(v) else "") for v in VERSIONS), tags
    assert sum(1 for v in tags.values() if v) == 6


def test_cloud_clusters_render_the_release(release):
    rendered, _tags = release
    assert sorted(rendered) == ["aks-weu", "eks-euc", "gke-euw", "local"]
    for cluster, ops in rendered.items():
        assert sorted(ops) == sorted(OPERATORS)
        for name, (text, iop) in ops.items():
            spec, glob = spec_and_global(iop)
            # every cluster of a mesh with a release runs it, the kwok one too (it never pulls)
            assert (spec["hub"], spec["tag"]) == ("docker.io/istio", "1.30.4"), (cluster, name, text)
            assert isinstance(spec["tag"], str)
            assert "imagePullSecrets" not in glob, (cluster, name)
            assert "-dev" not in text and "registry.istio.io" not in text, (cluster, name)
    # the remote gets the remote profile with the same identity
    assert rendered["eks-euc"]["istio-operator"][1]["spec"]["profile"] == "remote"


def test_a_mirror_hub_and_pull_secrets(mirror):
    rendered, _tags = mirror
    assert sorted(rendered) == ["aks-weu", "eks-euc", "gke-euw", "local"]
    for cluster, ops in rendered.items():
        for name, (text, iop) in ops.items():
            spec, glob = spec_and_global(iop)
            assert (spec["hub"], spec["tag"]) == (MIRROR["hub"], MIRROR["version"]), (cluster, name, text)
            assert glob["imagePullSecrets"] == MIRROR["image_pull_secrets"], (cluster, name, text)


def test_local_clusters_keep_the_build_identity(tmp_path):
    """kwok only and "1.30": no hub/tag, so istioctl's own (registry.istio.io/release, 1.30-dev),
    as before; nothing pulls images there."""
    with open(os.path.join(REPO, "inventories", "local", "mesh.meshfleet.yml")) as f:
        text = f.read()
    assert 'version: "1.30"\n' in text
    rendered, _tags = render(tmp_path, text)
    assert sorted(rendered) == ["cluster1", "cluster2", "cluster3"]
    for cluster, ops in rendered.items():
        for name, (text, iop) in ops.items():
            spec, glob = spec_and_global(iop)
            assert "hub" not in spec and "tag" not in spec, (cluster, name, text)
            assert "imagePullSecrets" not in glob


# --- the real istioctl -------------------------------------------------------------------------

def tools_bin():
    path = os.environ.get("MESHFLEET_TOOLS_BIN")
    if not path:
        r = subprocess.run(["bash", os.path.join(REPO, "tools", "build-tools.sh"), "--print-bin"],
                           cwd=REPO, capture_output=True, text=True, check=False)
        path = r.stdout.strip()
    istioctl = os.path.join(path, "istioctl")
    if not os.access(istioctl, os.X_OK):
        pytest.fail("this test needs the built istioctl (tools/build-tools.sh): none at %s" % istioctl,
                    pytrace=False)
    return istioctl


def istioctl_generate(istioctl, tmp_path, name, text):
    path = tmp_path / ("%s.yaml" % name)
    path.write_text(text)
    r = subprocess.run([istioctl, "manifest", "generate", "--filename", str(path)],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    start = r.stdout.find("apiVersion:")
    return [d for d in yaml.safe_load_all(r.stdout[start:]) if isinstance(d, dict) and d.get("kind")]


def containers(obj):
    """Every container of a workload object (Deployment, DaemonSet, ..., Pod)."""
    spec = obj.get("spec") or {}
    pod = ((spec.get("template") or {}).get("spec")) or (spec if obj.get("kind") == "Pod" else {})
    return list(pod.get("containers") or []) + list(pod.get("initContainers") or [])


def pull_secrets(objects, workload):
    """Pull secret names of a workload's pods: its pod spec's, else its ServiceAccount's."""
    pod = ((workload.get("spec") or {}).get("template") or {}).get("spec") or {}
    own = [s.get("name") for s in pod.get("imagePullSecrets") or []]
    if own:
        return own
    sa_name = pod.get("serviceAccountName") or "default"
    namespace = (workload.get("metadata") or {}).get("namespace")
    for obj in objects:
        meta = obj.get("metadata") or {}
        if obj.get("kind") == "ServiceAccount" and (meta.get("name"), meta.get("namespace")) == (sa_name, namespace):
            return [s.get("name") for s in obj.get("imagePullSecrets") or []]
    raise AssertionError("%s: no ServiceAccount %s/%s in the output"
                         % ((workload.get("metadata") or {}).get("name"), namespace, sa_name))


def injector_values(objects):
    """The sidecar injector ConfigMaps' ``values`` (JSON), by ConfigMap name."""
    out = {}
    for obj in objects:
        meta = obj.get("metadata") or {}
        if obj.get("kind") == "ConfigMap" and meta.get("name", "").startswith("istio-sidecar-injector"):
            out[meta["name"]] = ((obj.get("data") or {}).get("values"), (obj.get("data") or {}).get("config"))
    return out


@pytest.mark.integration
@pytest.mark.parametrize("mesh,istio", [("release", {"version": "1.30.4"}), ("mirror", MIRROR)])
def test_istioctl_output_names_only_the_release_images(request, tmp_path, mesh, istio):
    istioctl = tools_bin()
    rendered, _tags = request.getfixturevalue(mesh)
    hub, tag = istio.get("hub", "docker.io/istio"), istio["version"]
    seen_images, injectors, gateways = set(), 0, 0
    for cluster in ("aks-weu", "gke-euw", "eks-euc", "local"):
        for name in OPERATORS:
            text, _iop = rendered[cluster][name]
            objects = istioctl_generate(istioctl, tmp_path, "%s.%s" % (cluster, name), text)
            dump = yaml.safe_dump_all(objects)
            assert "-dev" not in dump and "registry.istio.io" not in dump, (cluster, name)
            for obj in objects:
                for c in containers(obj):
                    image = c.get("image")
                    # gateways are injected ("auto"): their image is the .ProxyImage of the
                    # primary's sidecar injector, checked below (so the east-west operator's
                    # own spec.hub/spec.tag do not change istioctl's output)
                    if image == "auto":
                        tmpl = (obj["spec"]["template"].get("metadata") or {})
                        assert (tmpl.get("labels") or {}).get("sidecar.istio.io/inject") == "true", obj
                        assert (tmpl.get("annotations") or {}).get("inject.istio.io/templates") == "gateway", obj
                        gateways += 1
                        continue
                    assert re.match(r"^%s/(pilot|proxyv2):%s$" % (re.escape(hub), re.escape(tag)), image), \
                        (cluster, name, obj["kind"], obj["metadata"]["name"], image)
                    seen_images.add(image.split("/")[-1])
                if obj.get("kind") == "Deployment":
                    # Istio's charts put the pull secrets on the pods' ServiceAccount
                    assert pull_secrets(objects, obj) == istio.get("image_pull_secrets", []), \
                        (cluster, name, obj["metadata"]["name"])
            for cm_name, (values, config) in injector_values(objects).items():
                injectors += 1
                g = json.loads(values)["global"]
                # the injector's .ProxyImage for sidecars, gateways ("auto") and the init
                # container: <global.hub>/<image>:<global.tag> when the image has no "/"
                assert (g["hub"], g["tag"]) == (hub, tag), (cluster, cm_name)
                for part in ("proxy", "proxy_init"):
                    assert g[part]["image"] == "proxyv2", (cluster, cm_name, part, g[part])
                    assert "%s/%s:%s" % (g["hub"], g[part]["image"], g["tag"]) == "%s/proxyv2:%s" % (hub, tag)
                assert (g.get("imagePullSecrets") or []) == istio.get("image_pull_secrets", [])
                # the gateway template runs the proxy image the values make
                assert json.loads(values) and '"{{ .ProxyImage }}"' in (yaml.safe_load(config) or {}).get(
                    "templates", {}).get("gateway", ""), (cluster, cm_name)
                # no other hub/tag hides in the injection templates
                assert "-dev" not in values + (config or "")
                assert "registry.istio.io" not in values + (config or "")
    assert "pilot:%s" % tag in seen_images     # istiod on the primaries
    assert injectors >= 3                       # the sidecar injector of each primary, and the remote's
    assert gateways == 4                        # one east-west gateway per cluster
