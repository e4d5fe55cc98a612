# -*- coding: utf-8 -*-
"""meshfleet.mesh.cluster / cluster_info with the cloud and laptop providers: cross-cutting checks.

The per-provider lifecycles live in tests/unit/plugins/module_utils/providers/ (AKS: real
azure-mgmt SDK over a fake azure-core transport; GKE: real ClusterManagerClient over
requests-mock; EKS: boto3 against moto in server mode; minikube: a fake executable).
Here: the documentation (ansible-doc) covers every provider setting the topology accepts,
AnsiballZ can see every provider module, and diff/info through the real module ``main()`` carry no secrets.
"""

from __future__ import absolute_import, division, print_function

import ast
import json
import os
import subprocess
import sys

_COLLECTIONS = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "..",
                                            "collections"))
if _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)

import pytest  # noqa: E402

from ansible_collections.meshfleet.mesh.plugins.modules import cluster as cluster_module  # noqa: E402
from ansible_collections.meshfleet.mesh.plugins.modules import cluster_info  # noqa: E402
from ansible_collections.meshfleet.mesh.plugins.module_utils import provider_spec  # noqa: E402
from ansible_collections.meshfleet.mesh.plugins.module_utils.providers import aks  # noqa: E402
from ansible_collections.meshfleet.mesh.tests.fakes.aws import (  # noqa: E402,F401 pylint: disable=unused-import
    aws_env, moto_endpoint)
from ansible_collections.meshfleet.mesh.tests.fakes.azure_transport import (  # noqa: E402
    FakeArm, FakeArmTransport, FakeCredential)
from ansible_collections.meshfleet.mesh.tests.fakes.modrun import run_module  # noqa: E402

ROOT = os.path.dirname(_COLLECTIONS)
CLOUD_CLUSTER_PROVIDERS = ("aks", "eks", "gke", "minikube")
VM_PROVIDERS = ("ec2", "openstack")


@pytest.fixture(scope="module")
def docs():
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-doc"), "--json",
           "meshfleet.mesh.cluster", "meshfleet.mesh.cluster_info", "meshfleet.mesh.vm_instance",
           "meshfleet.mesh.vm_instance_info"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("module,providers", [
    ("meshfleet.mesh.cluster", CLOUD_CLUSTER_PROVIDERS), ("meshfleet.mesh.cluster_info", CLOUD_CLUSTER_PROVIDERS),
    ("meshfleet.mesh.vm_instance", VM_PROVIDERS), ("meshfleet.mesh.vm_instance_info", VM_PROVIDERS)])
def test_every_topology_setting_is_documented(docs, module, providers):
    doc = docs[module]["doc"]
    documented = set(doc["options"]["settings"]["suboptions"])
    for provider in providers:
        missing = set(provider_spec.PROVIDERS[provider]["settings"]) - documented
        assert not missing, "%s: settings of %s not documented: %s" % (module, provider, sorted(missing))
    assert doc.get("notes") and any("Credentials" in n for n in doc["notes"])


#: how ansible-doc may type a setting of each spec type
DOC_TYPES = dict(str=("str", "path"), int=("int",), count=("int",), bool=("bool",), list=("list",),
                 str_list=("list",), dict=("dict",), ip=("str",), size=("raw",), cidr=("str",),
                 cidr_list=("list",))


@pytest.mark.parametrize("module,providers", [
    ("meshfleet.mesh.cluster", CLOUD_CLUSTER_PROVIDERS), ("meshfleet.mesh.vm_instance", VM_PROVIDERS)])
def test_documented_types_and_choices_follow_the_spec(docs, module, providers):
    options = docs[module]["doc"]["options"]["settings"]["suboptions"]
    for provider in providers:
        for key, setting in provider_spec.PROVIDERS[provider]["settings"].items():
            doc = options[key]
            assert doc["type"] in DOC_TYPES[setting["type"]], (provider, key, doc["type"])
            if setting["type"] == "str_list":
                assert doc.get("elements") == "str", (provider, key)
            for choice in setting.get("choices", ()):
                assert choice in doc.get("choices", ()), (provider, key, choice)
            if key in provider_spec.PROVIDERS[provider]["required"]:
                assert "V(%s), required" % provider in " ".join(doc["description"]), (provider, key)


def test_examples_cover_each_provider(docs):
    examples = docs["meshfleet.mesh.cluster"]["examples"]
    for provider in CLOUD_CLUSTER_PROVIDERS:
        assert "provider: %s" % provider in examples
    examples = docs["meshfleet.mesh.vm_instance"]["examples"]
    for provider in VM_PROVIDERS:
        assert "provider: %s" % provider in examples


def test_ansiballz_sees_every_provider():
    """AnsiballZ bundles module_utils found through import statements: the one registry must
    import every provider the spec names a class for."""
    from ansible.executor.module_common import ModuleDepFinder
    with open(os.path.join(ROOT, "plugins/module_utils/provider_registry.py")) as f:
        tree = ast.parse(f.read())
    finder = ModuleDepFinder("ansible_collections.meshfleet.mesh.plugins.module_utils.x", tree, is_pkg_init=False)
    found = set(".".join(m) for m in finder.submodules)
    expected = [s["impl"][0] for s in provider_spec.PROVIDERS.values() if s["impl"]]
    assert len(expected) == 8
    for path in expected:
        mod = "ansible_collections.meshfleet.mesh.plugins.module_utils.%s" % path
        assert any(f == mod or f.startswith(mod + ".") for f in found), (path, sorted(found))


# --- through main(): diff mode and info, no secrets ------------------------------------------
@pytest.fixture
def arm(monkeypatch):
    arm = FakeArm()
    monkeypatch.setattr(aks.AksProvider, "sdk_hooks", dict(transport=FakeArmTransport(arm),
                                                           credential=FakeCredential()))
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000001")
    return arm


def test_aks_diff_mode_and_info(arm, tmp_path):
    args = dict(name="aks1", provider="aks", state_dir=str(tmp_path), wait_timeout=30,
                settings=dict(resource_group="rg", location="westeurope", tags={"a": "1"}))
    info_args = dict((k, v) for k, v in args.items() if k != "wait_timeout")
    r = run_module(cluster_info.main, info_args)
    assert r["rc"] == 0 and r["cluster"]["exists"] is False and arm.writes == []
    r = run_module(cluster_module.main, args, diff=True)
    assert r["rc"] == 0 and r["diff"]["before"]["exists"] is False and r["diff"]["after"]["exists"] is True
    args["settings"]["tags"] = {"a": "2"}
    r = run_module(cluster_module.main, args, diff=True, check_mode=True)
    assert r["diff"]["before"]["settings"]["tags"] == {"a": "1"}
    assert r["diff"]["after"]["settings"]["tags"] == {"a": "2"}
    r = run_module(cluster_info.main, info_args)
    assert r["cluster"]["exists"] is True and r["cluster"]["ready"] is True
    assert r["cluster"]["kubeconfig"].endswith("/clusters/aks1/kubeconfig")
    text = json.dumps(r)
    assert "fake-user-token" not in text and "fake-arm-token" not in text


def test_eks_info_when_absent(aws_env, tmp_path):
    r = run_module(cluster_info.main, dict(
        name="nope", provider="eks", state_dir=str(tmp_path),
        settings=dict(region="us-east-1", role_arn="arn:aws:iam::1:role/r", subnet_ids=["s-1"],
                      endpoint_url=aws_env)))
    assert r["rc"] == 0 and r["cluster"]["exists"] is False and r["changed"] is False
