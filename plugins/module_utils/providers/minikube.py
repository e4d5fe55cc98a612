# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""minikube cluster provider: one minikube profile per mesh cluster, through the minikube CLI.

The CLI is wrapped the way community.general's CmdRunner does it: every argument
has a declared format (:data:`ARG_FORMATS`), a command lists the arguments it takes,
and read-only commands parse ``-o json`` output. ``minikube`` always runs with
``KUBECONFIG`` pointing at the cluster's own kubeconfig under the mesh state dir,
so the user's ``~/.kube/config`` is never touched (not even by ``minikube delete``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import shutil
import subprocess

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError
from ansible_collections.meshfleet.mesh.plugins.module_utils import kubeconfig as kc
from ansible_collections.meshfleet.mesh.plugins.module_utils.providers.base import ClusterProvider
from ansible_collections.meshfleet.mesh.plugins.module_utils.cloud import (
    module_timeout, version_matches)

#: minikube's exit code for "profile not found" (status) / "no profile at all" (profile list)
EXIT_PROFILE_NOT_FOUND = 85


# --- a small CmdRunner: declared argument formats -------------------------------------
def _opt(flag):
    """``-p value``"""
    return lambda v: [flag, str(v)]


def _eq(flag, suffix=""):
    """``--flag=value`` (``suffix`` appended, e.g. ``s`` for durations)"""
    return lambda v: ["%s=%s%s" % (flag, v, suffix)]


def _bool(flag):
    """``--flag`` when true, nothing when false"""
    return lambda v: [flag] if v else []


ARG_FORMATS = dict(
    profile=_opt("-p"),
    output=_opt("-o"),
    driver=_eq("--driver"),
    kubernetes_version=_eq("--kubernetes-version"),
    cpus=_eq("--cpus"),
    memory=_eq("--memory"),
    embed_certs=_bool("--embed-certs"),
    wait=_eq("--wait"),
    wait_timeout=_eq("--wait-timeout", "s"),
)


class MinikubeCli:
    """Runs ``minikube <command> <formatted args>`` with a private KUBECONFIG."""

    def __init__(self, path, kubeconfig, ansible_module=None):
        self.path = path
        self.kubeconfig = kubeconfig
        self.ansible_module = ansible_module

    def args(self, command, order, values):
        argv = [self.path] + list(command)
        for name in order:
            value = values.get(name)
            if value is None:
                continue
            argv += ARG_FORMATS[name](value)
        return argv

    def run(self, command, order=(), **values):
        """Return (rc, stdout, stderr)."""
        argv = self.args(command, order, values)
        env = {"KUBECONFIG": self.kubeconfig, "MINIKUBE_IN_STYLE": "false"}
        if self.ansible_module is not None:
            return self.ansible_module.run_command(argv, environ_update=env, check_rc=False)
        full_env = dict(os.environ, **env)
        proc = subprocess.run(argv, env=full_env, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    def run_json(self, command, order=(), **values):
        """Return (rc, parsed JSON or None, stdout, stderr)."""
        values.setdefault("output", "json")
        rc, out, err = self.run(command, tuple(order) + ("output",), **values)
        return rc, parse_json_output(out), out, err


def parse_json_output(text):
    """Parse minikube's JSON output; tolerate log lines around it. None when there is none."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(("{", "[")):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def memory_mb(value):
    """``4096``, ``"4096"``, ``"4096mb"``, ``"4g"``, ``"4GiB"`` -> 4096 (MiB)."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    m = re.match(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$", str(value))
    if not m:
        raise MeshfleetError("settings.memory: cannot read %r (use MiB, or a g/m suffix)" % (value,))
    n, unit = int(m.group(1)), m.group(2).lower()
    if unit in ("", "m", "mb", "mib"):
        return n
    if unit in ("g", "gb", "gib"):
        return n * 1024
    raise MeshfleetError("settings.memory: unknown unit %r" % unit)


class MinikubeProvider(ClusterProvider):
    name = "minikube"
    compared_settings = ("driver", "kubernetes_version", "cpus", "memory")

    def __init__(self, *args, **kwargs):
        super(MinikubeProvider, self).__init__(*args, **kwargs)
        self.profile = self.settings.get("profile") or self.cluster_name
        self._cli = None

    # --- setup ---------------------------------------------------------------------
    def find_minikube(self):
        path = self.settings.get("minikube_path")
        if path:
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
            raise MeshfleetError("cluster %s (provider minikube): settings.minikube_path %s is not "
                                 "an executable file" % (self.cluster_name, path))
        path = shutil.which("minikube")
        if not path:
            raise MeshfleetError("cluster %s (provider minikube): minikube not found on PATH; "
                                 "install it (https://minikube.sigs.k8s.io/docs/start/) or set "
                                 "settings.minikube_path" % self.cluster_name)
        return path

    def validate(self):
        super(MinikubeProvider, self).validate()
        if self.settings.get("memory") is not None:
            memory_mb(self.settings["memory"])
        self._cli = MinikubeCli(self.find_minikube(), self.kubeconfig_path,
                                getattr(self.module, "module", None))

    @property
    def cli(self):
        if self._cli is None:
            self.validate()
        return self._cli

    def _fail(self, what, rc, out, err):
        detail = (err or out or "").strip().splitlines()
        raise MeshfleetError("minikube %s for profile %s failed (rc=%s): %s" % (
            what, self.profile, rc, " ".join(detail[-3:]) or "no output"),
            stdout=out, stderr=err, rc=rc)

    # --- observe -----------------------------------------------------------------------
    def profiles(self):
        rc, data, out, err = self.cli.run_json(["profile", "list"])
        if isinstance(data, dict) and ("valid" in data or "invalid" in data):
            return (data.get("valid") or []) + (data.get("invalid") or [])
        if rc == EXIT_PROFILE_NOT_FOUND or "No minikube profile" in (out or "") + (err or ""):
            return []
        self._fail("profile list", rc, out, err)

    def status(self):
        rc, data, out, err = self.cli.run_json(["status"], ("profile",), profile=self.profile)
        if isinstance(data, list):  # multi-node: one entry per node, control plane first
            data = data[0] if data else None
        if isinstance(data, dict):
            return data
        if rc == EXIT_PROFILE_NOT_FOUND:
            return None
        self._fail("status", rc, out, err)

    def get(self):
        profile = next((p for p in self.profiles() if p.get("Name") == self.profile), None)
        if profile is None:
            return None
        cfg = profile.get("Config") or {}
        k8s = cfg.get("KubernetesConfig") or {}
        nodes = cfg.get("Nodes") or [{}]
        status = self.status() or {}
        ready = status.get("Host") == "Running" and status.get("APIServer") == "Running"
        server = kc.server_of(kc.load_file(self.kubeconfig_path))
        if not server and nodes[0].get("IP"):
            server = "https://%s:%s" % (nodes[0]["IP"], nodes[0].get("Port", 8443))
        return dict(
            settings=dict(profile=self.profile, driver=cfg.get("Driver"),
                          kubernetes_version=k8s.get("KubernetesVersion"),
                          cpus=cfg.get("CPUs"), memory=cfg.get("Memory")),
            ready=ready, api_server=server, context=self.profile,
            status=dict((k, status.get(k)) for k in ("Host", "Kubelet", "APIServer", "Kubeconfig")))

    def same(self, key, have, want):
        if key == "kubernetes_version":
            return version_matches(have, want)
        if key == "memory":
            return have == memory_mb(want)
        if key == "cpus":
            return str(have) == str(want)
        if key == "driver":
            return str(have or "").lower() == str(want).lower()
        return have == want

    # --- change --------------------------------------------------------------------
    def _start(self, **values):
        timeout = module_timeout(self.module)
        rc, out, err = self.cli.run(
            ["start"], ("profile", "driver", "kubernetes_version", "cpus", "memory", "embed_certs",
                        "wait", "wait_timeout"),
            profile=self.profile, embed_certs=True, wait="apiserver,system_pods",
            wait_timeout=timeout, **values)
        if rc != 0:
            self._fail("start", rc, out, err)

    def create(self):
        self.ensure_cluster_dir()
        s = self.settings
        version = s.get("kubernetes_version")
        self._start(driver=s.get("driver"), cpus=s.get("cpus"),
                    memory=memory_mb(s.get("memory")),
                    kubernetes_version=("v%s" % str(version).lstrip("v")) if version else None)

    def update(self, changes):
        unsupported = [k for k in changes if k != "kubernetes_version"]
        if unsupported:
            return super(MinikubeProvider, self).update(changes)
        self.ensure_cluster_dir()
        # `minikube start` on an existing profile upgrades Kubernetes in place
        self._start(kubernetes_version="v%s" % str(self.settings["kubernetes_version"]).lstrip("v"))

    def delete(self):
        rc, out, err = self.cli.run(["delete"], ("profile",), profile=self.profile)
        if rc != 0:
            self._fail("delete", rc, out, err)
        if os.path.exists(self.kubeconfig_path):
            os.unlink(self.kubeconfig_path)

    def write_kubeconfig(self):
        """minikube wrote the kubeconfig on start; refresh it when missing or stale."""
        self.ensure_cluster_dir()
        before = kc.load_file(self.kubeconfig_path)
        names = [c.get("name") for c in (before or {}).get("contexts") or []]
        if self.profile not in names or kc.current_context(before) != self.profile:
            rc, out, err = self.cli.run(["update-context"], ("profile",), profile=self.profile)
            if rc != 0:
                self._fail("update-context", rc, out, err)
        changed = False
        if os.path.exists(self.kubeconfig_path):
            os.chmod(self.kubeconfig_path, 0o600)
            changed = kc.load_file(self.kubeconfig_path) != before
        return self.kubeconfig_path, self.profile, changed
