# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""kwok provider: a local cluster of real etcd + kube-apiserver + kube-controller-manager
(+ kube-scheduler) processes, with kwok faking nodes and pods.

``kwokctl --runtime binary`` runs the binaries Meshfleet built from Go modules
(tools/build-tools.sh). Everything binds to 127.0.0.1 by default; kwokctl's state
lives in ``<state_dir>/kwok`` (``KWOK_WORKDIR``), never in ``~/.kwok`` or
``~/.kube/config``. Ports are reserved by Meshfleet (see ports.py) so clusters can
be created in parallel.

``settings.apiserver_extra_args`` ({flag: value}, flag names without ``--``) adds
kube-apiserver flags through the kwokctl configuration's ``componentsPatches`` (e.g. a
token webhook: ``authentication-token-webhook-config-file``); it applies when the
cluster is created.

``settings.real_node: true`` adds a real node (``localnode``: kubelet, containerd, kube-proxy in
network and mount namespaces of its own, CoreDNS as the cluster DNS) beside kwok's fake nodes,
which are tainted so real workloads land on the real node. It starts and stops with the
cluster; docs/real-pods.md, "The node".
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import glob
import json
import os
import shutil
import socket
import subprocess

try:
    from urllib.parse import quote
except ImportError:  # Python 2
    from urllib import quote  # type: ignore

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover - PyYAML comes with ansible-core
    HAS_YAML = False

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import (
    MeshfleetError, ensure_private_dir, write_file_atomic, yaml_load)
from ansible_collections.meshfleet.mesh.plugins.module_utils.kubeconfig import (
    build_kubeconfig, cert_user, write_kubeconfig)
from ansible_collections.meshfleet.mesh.plugins.module_utils.localproc import (
    TOOLS_HINT, https_get, pid_alive, read_pid, stop_pid, tool, tools_bin)
from ansible_collections.meshfleet.mesh.plugins.module_utils.kube_rest import KubeRest
from ansible_collections.meshfleet.mesh.plugins.module_utils.ports import PortRegistry
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnet.slots import SlotRegistry
from ansible_collections.meshfleet.mesh.plugins.module_utils.localnode import config as node_config
from ansible_collections.meshfleet.mesh.plugins.module_utils.providers.base import ClusterProvider

PORT_NAMES = ("etcdPort", "etcdPeerPort", "kubeApiserverPort", "kwokControllerPort",
              "kubeControllerManagerPort", "kubeSchedulerPort")
BINARIES = dict(kube_apiserver="kube-apiserver", kube_controller_manager="kube-controller-manager",
                kube_scheduler="kube-scheduler", kwok_controller="kwok", etcd="etcd")
#: which component (pid file name) listens on which port
PORT_COMPONENTS = dict(etcdPort="etcd", etcdPeerPort="etcd", kubeApiserverPort="kube-apiserver",
                       kwokControllerPort="kwok-controller",
                       kubeControllerManagerPort="kube-controller-manager",
                       kubeSchedulerPort="kube-scheduler")
#: how many times one run starts components that died while it waits for the cluster
MAX_RESTARTS = 3


class KwokProvider(ClusterProvider):
    name = "kwok"
    compared_settings = ("bind_address", "nodes", "real_node")

    def __init__(self, cluster_name, settings, state_dir, module=None):
        super(KwokProvider, self).__init__(cluster_name, settings, state_dir, module)
        self.settings.setdefault("bind_address", "127.0.0.1")
        self.settings.setdefault("nodes", 1)
        self.settings.setdefault("real_node", False)
        self._bin = None
        self._node_bin = None
        self._dns_applied = False
        self._restarts = 0

    # --- paths ----------------------------------------------------------------------
    @property
    def workdir(self):
        return os.path.join(self.state_dir, "kwok")

    @property
    def kwok_dir(self):
        return os.path.join(self.workdir, "clusters", self.cluster_name)

    @property
    def bin_dir(self):
        if self._bin is None:
            self._bin = tools_bin(self.settings.get("tools_bin"))
        return self._bin

    def ports(self):
        return PortRegistry()

    def slots(self):
        return SlotRegistry()

    @property
    def real_node(self):
        return bool(self.settings.get("real_node"))

    @property
    def node_record(self):
        """Written when a real-node cluster is created: {"slot": N}."""
        return os.path.join(self.cluster_dir, "real-node.json")

    def _node_slot(self):
        try:
            with open(self.node_record) as f:
                return json.load(f)["slot"]
        except (IOError, ValueError, KeyError):
            return self.slots().get("node", self.port_owner)

    def _node(self, slot=None):
        from ansible_collections.meshfleet.mesh.plugins.module_utils.localnode.runtime import Node, node_tools_bin
        slot = self._node_slot() if slot is None else slot
        if slot is None:
            return None
        if self._node_bin is None:
            try:
                self._node_bin = node_tools_bin(self.settings.get("node_tools_bin"))
            except MeshfleetError:
                if not self._removing():
                    raise
                self._node_bin = ""
        api_port = None
        if os.path.isdir(self.kwok_dir):
            try:
                api_port = ((self._config() or {}).get("options") or {}).get("kubeApiserverPort")
            except MeshfleetError:
                if not self._removing():
                    raise
        return Node(self.cluster_name, self.cluster_dir, slot, self.kwok_dir, api_port, self._node_bin,
                    log=getattr(self.module, "log", None))

    def _node_images(self, node):
        """The pause and CoreDNS images (built once into the image cache) for the node."""
        from ansible_collections.meshfleet.mesh.plugins.module_utils.images import builder, catalog, spec
        try:
            pause = builder.build(catalog.pause())
            coredns = builder.build(spec.ImageSpec(
                "coredns", entries=[spec.file("/coredns", os.path.join(node.bin_dir, "coredns"), mode=0o755)],
                entrypoint=["/coredns"], ports=["53/udp", "53/tcp"]))
        except Exception as e:  # the builder's own errors name the missing host tool
            raise MeshfleetError("cluster %s: cannot build the node's images (pause, coredns): %s; "
                                 "`scripts/setup.sh --images` installs what the build needs"
                                 % (self.cluster_name, getattr(e, "msg", None) or e))
        return dict(pause=pause["ref"], coredns=coredns["ref"], archives=[pause["archive"], coredns["archive"]])

    def _node_up(self):
        node = self._node()
        images = self._node_images(node)
        self._coredns_image = images["coredns"]
        node.up(images)
        return node

    @property
    def port_owner(self):
        return os.path.abspath(self.cluster_dir)  # exists before kwokctl runs

    # --- helpers --------------------------------------------------------------------
    def validate(self):
        super(KwokProvider, self).validate()
        extra = self.settings.get("apiserver_extra_args")
        if extra is not None and not isinstance(extra, dict):
            raise MeshfleetError("kwok cluster %s: settings.apiserver_extra_args must be a mapping of "
                                 "kube-apiserver flag names (without --) to values" % self.cluster_name)
        if not HAS_YAML:
            raise MeshfleetError("the kwok provider needs PyYAML on the controller")
        if self.settings.get("real_node") not in (None, True, False):
            raise MeshfleetError("kwok cluster %s: settings.real_node must be true or false" % self.cluster_name)
        missing = []
        for name in list(BINARIES.values()) + ["kwokctl", "kubectl"]:
            try:
                tool(self.bin_dir, name)
            except MeshfleetError:
                missing.append(name)
        if missing:
            raise MeshfleetError("kwok cluster %s: %s %s missing from %s; %s" % (
                self.cluster_name, ", ".join(missing), "is" if len(missing) == 1 else "are",
                self.bin_dir, TOOLS_HINT))

    def _env(self):
        env = dict(os.environ)
        env["KWOK_WORKDIR"] = self.workdir
        # kwokctl runs the first kubectl on PATH: make it ours.
        env["PATH"] = self.bin_dir + os.pathsep + env.get("PATH", "")
        env.pop("KUBECONFIG", None)
        return env

    def _kwokctl(self, *args, **kwargs):
        cmd = [tool(self.bin_dir, "kwokctl")] + list(args)
        timeout = kwargs.get("timeout", 300)
        try:
            p = subprocess.run(cmd, env=self._env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            # kwokctl waits forever for a component that cannot start (e.g. a port taken)
            raise MeshfleetError("kwokctl %s timed out after %ss for cluster %s%s" % (
                args[0] if args else "", timeout, self.cluster_name, self._log_hint()),
                command=" ".join(cmd))
        if p.returncode != 0 and kwargs.get("check", True):
            out = p.stdout.strip().splitlines()[-15:]
            hint = ""
            text = "\n".join(out)
            if "address already in use" in text:
                hint = (" (a port of this cluster is taken by another process: stop it, or "
                        "remove the cluster with state=absent so new ports are reserved)")
            raise MeshfleetError("kwokctl %s failed for cluster %s%s:\n%s"
                                 % (args[0] if args else "", self.cluster_name, hint, text),
                                 command=" ".join(cmd))
        return p

    def _config(self):
        path = os.path.join(self.kwok_dir, "kwok.yaml")
        if not os.path.exists(path):
            return None
        try:
            with open(path) as f:
                for doc in yaml_load(f, all_documents=True):
                    if isinstance(doc, dict) and doc.get("kind") == "KwokctlConfiguration":
                        return doc
        except yaml.YAMLError as e:
            raise self._corrupt("kwok.yaml is not valid YAML (%s)" % e)
        raise self._corrupt("kwok.yaml has no KwokctlConfiguration")

    def _log_hint(self):
        """The components' complaints about taken ports, from kwokctl's logs."""
        lines = []
        for path in sorted(glob.glob(os.path.join(self.kwok_dir, "logs", "*.log"))):
            try:
                with open(path) as f:
                    lines += ["%s: %s" % (os.path.basename(path), line.strip()[-200:])
                              for line in f if "address already in use" in line]
            except IOError:
                pass
        if not lines:
            return ""
        return (" (a port of this cluster is in use by another process: stop it, or remove the "
                "cluster with state=absent so new ports are reserved):\n%s" % "\n".join(lines[-5:]))

    def _check_ports(self, ports, host):
        """Fail before kwokctl when another process listens on one of ``ports``."""
        busy = []
        for name in PORT_NAMES:
            port = ports.get(name)
            if not port:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go's listeners do
            try:
                s.bind((host, int(port)))
            except OSError as e:
                if e.errno in (errno.EADDRINUSE, errno.EACCES):
                    busy.append("%s (%s)" % (port, name))
            finally:
                s.close()
        if busy:
            raise MeshfleetError(
                "cluster %s cannot start: port%s %s on %s %s in use by another process; stop "
                "that process, or remove the cluster with state=absent so new ports are reserved"
                % (self.cluster_name, "s" if len(busy) > 1 else "", ", ".join(busy), host,
                   "is" if len(busy) == 1 else "are"))

    def _removing(self):
        """True when the module run removes the cluster (a broken folder must not stop that)."""
        params = getattr(self.module, "params", None) or {}
        return params.get("state") == "absent"

    def _corrupt(self, why):
        return MeshfleetError(
            "kwok cluster directory %s is corrupt: %s. Remove the cluster with state=absent "
            "(or delete that directory) and run again." % (self.kwok_dir, why))

    def _pids(self):
        return [read_pid(p) for p in glob.glob(os.path.join(self.kwok_dir, "pids", "*.pid"))]

    def _kwok_kubeconfig(self):
        path = os.path.join(self.kwok_dir, "kubeconfig.yaml")
        try:
            with open(path) as f:
                kc = yaml_load(f)
            cluster = kc["clusters"][0]["cluster"]
            user = kc["users"][0]["user"]
        except (IOError, KeyError, IndexError, TypeError, yaml.YAMLError):
            raise self._corrupt("kubeconfig.yaml is missing or unreadable")

        def rel(p):
            return p if p is None or os.path.isabs(p) else os.path.join(self.kwok_dir, p)
        return dict(server=cluster.get("server"), ca=rel(cluster.get("certificate-authority")),
                    cert=rel(user.get("client-certificate")), key=rel(user.get("client-key")))

    # --- interface --------------------------------------------------------------------
    def get(self):
        try:
            return self._observe()
        except MeshfleetError:
            if not self._removing():
                raise
            # state=absent on a broken folder: delete() works from the pid files alone
            return dict(settings={}, ready=False, running=False, stopped=True, api_server=None,
                        context=self.cluster_name, ports={})

    def _observe(self):
        if not os.path.isdir(self.kwok_dir):
            if self._removing() and (os.path.isdir(self.cluster_dir)
                                     or self.ports().get(self.port_owner)
                                     or self.slots().get("node", self.port_owner) is not None):
                # what a removal interrupted after kwokctl's part leaves (our folder, the port
                # reservation): still there to remove, so the cluster is not absent yet
                return dict(settings={}, ready=False, running=False, stopped=True,
                            api_server=None, context=self.cluster_name, ports={})
            return None
        conf = self._config()
        if conf is None:
            raise self._corrupt("kwok.yaml is missing")
        opts = conf.get("options") or {}
        pids = self._pids()
        running = bool(pids) and all(pid and pid_alive(pid) for pid in pids)
        bind = opts.get("bindAddress") or "0.0.0.0"
        api = "https://%s:%s" % ("127.0.0.1" if bind == "0.0.0.0" else bind, opts.get("kubeApiserverPort"))
        ready = False
        nodes = None
        if running:
            kc = self._kwok_kubeconfig()
            status, dummy = https_get(kc["server"] + "/readyz", ca_file=kc["ca"],
                                      cert_file=kc["cert"], key_file=kc["key"])
            ready = status == 200
            api = kc["server"]
            if ready:
                status, body = https_get(kc["server"] + "/api/v1/nodes", ca_file=kc["ca"],
                                         cert_file=kc["cert"], key_file=kc["key"])
                if status == 200:
                    nodes = len(json.loads(body).get("items") or [])
        real = os.path.exists(self.node_record)
        if real and running:
            node = self._node()
            running = bool(node) and node.running()
            ready = ready and running and node.ready(self._kwok_kubeconfig())
        if nodes is not None and real:
            nodes -= 1  # the real node is not one of kwok's
        return dict(settings=dict(bind_address=bind, kube_version=opts.get("kubeVersion"),
                                  nodes=nodes, real_node=real),
                    ready=ready, running=running, stopped=not running, api_server=api,
                    context=self.cluster_name,
                    ports={k: opts.get(k) for k in PORT_NAMES})

    def create(self):
        # Parallel creates race to make the shared folders, and base.ensure_private_dir's
        # makedirs fails with "File exists" when it loses: make them race-safe first.
        for shared in (self.workdir, os.path.join(self.state_dir, "clusters")):
            os.makedirs(shared, 0o700, exist_ok=True)
        ensure_private_dir(self.workdir)
        cdir = self.ensure_cluster_dir()
        # The cluster does not exist: a reservation left by a failed create may be stale.
        self.ports().release(self.port_owner)
        ports = self.ports().reserve(self.port_owner, PORT_NAMES, host=self.settings["bind_address"])
        self._check_ports(ports, self.settings["bind_address"])
        options = dict(bindAddress=self.settings["bind_address"], runtime="binary")
        options.update(ports)
        config = dict(apiVersion="config.kwok.x-k8s.io/v1alpha1", kind="KwokctlConfiguration",
                      options=options)
        extra = dict(self.settings.get("apiserver_extra_args") or {})
        if self.real_node:
            slot = self.slots().reserve("node", self.port_owner)
            node = self._node(slot)
            node.check_host()
            api = node_config.apiserver_settings(slot, ports["kubeApiserverPort"])
            options["kubeApiserverCertSANs"] = api["cert_sans"]
            pki = os.path.join(self.kwok_dir, "pki")
            extra = dict(api["extra_args"], **extra)
            extra.setdefault("kubelet-client-certificate", os.path.join(pki, "admin.crt"))
            extra.setdefault("kubelet-client-key", os.path.join(pki, "admin.key"))
            write_file_atomic(self.node_record, json.dumps(dict(slot=slot)), mode=0o600)
        if self.real_node:
            # the API server's flags, the Go runtime settings of every component, and kwok
            # restricted to the fake nodes (node_config.components_patches)
            config["componentsPatches"] = node_config.components_patches(extra)
        elif extra:
            # kwokctl (v0.8.0) appends componentsPatches extraArgs to the component's flags
            config["componentsPatches"] = [dict(name="kube-apiserver", extraArgs=[
                dict(key=str(k), value=str(v)) for k, v in sorted(extra.items())])]
        cfg_path = os.path.join(cdir, "kwokctl-config.yaml")
        write_file_atomic(cfg_path, yaml.safe_dump(config, default_flow_style=False), mode=0o600)
        args = ["--config", cfg_path, "create", "cluster", "--name", self.cluster_name,
                "--runtime", "binary", "--kubeconfig", os.path.join(cdir, "kwokctl.kubeconfig")]
        for flag, binary in sorted(BINARIES.items()):
            args += ["--%s-binary" % flag.replace("_", "-"), tool(self.bin_dir, binary)]
        try:
            self._kwokctl(*args)
        except MeshfleetError:
            # leave nothing half-made behind: the next run starts clean
            self._kwokctl("delete", "cluster", "--name", self.cluster_name, "--kubeconfig",
                          os.path.join(cdir, "kwokctl.kubeconfig"), check=False)
            raise
        self.update({"nodes": (0, self.settings["nodes"])})
        if self.real_node:
            self._node_up()

    def update(self, changes):
        if "nodes" in changes:
            # kwok nodes are fake: scaling them is how a kwok cluster is resized.
            self._kwokctl("scale", "node", "--replicas", str(int(changes["nodes"][1])),
                          "--name", self.cluster_name)
            if os.path.exists(self.node_record):
                self._taint_fake_nodes()

    def _kube(self):
        """The project's one Kubernetes client on kwokctl's admin kubeconfig."""
        return KubeRest(os.path.join(self.kwok_dir, "kubeconfig.yaml"), label=self.cluster_name)

    def _taint_fake_nodes(self):
        """Keep real workloads off kwok's fake nodes (kwok manages only nodes annotated
        kwok.x-k8s.io/node=fake; kwokctl labels them type=kwok); a node already tainted is
        left alone."""
        t = dict(node_config.FAKE_NODE_TAINT)
        kube = self._kube()
        try:
            nodes = kube.get("list the fake nodes", "/api/v1/nodes", query={"labelSelector": "type=kwok"})
            for node in nodes.get("items") or []:
                name = node["metadata"]["name"]
                taints = (node.get("spec") or {}).get("taints") or []
                if any(all(x.get(k) == t[k] for k in ("key", "value", "effect")) for x in taints):
                    continue
                taints = [x for x in taints if (x.get("key"), x.get("effect")) != (t["key"], t["effect"])] + [t]
                kube.request("taint fake node %s" % name, "PATCH", "/api/v1/nodes/%s" % quote(name, safe=""),
                             body={"spec": {"taints": taints}}, content_type="application/merge-patch+json")
        finally:
            kube.close()

    def _apply_coredns(self):
        """CoreDNS's objects, server-side applied (as kubectl apply --server-side does)."""
        image = getattr(self, "_coredns_image", None)
        if image is None:
            image = self._node_images(self._node())["coredns"]
        kube = self._kube()
        try:
            for doc in node_config.coredns_manifests(self._node_slot(), image):
                path = kube.object_path(doc, default_namespace="kube-system")
                if path is None:
                    raise MeshfleetError("cluster %s does not serve %s %s" % (
                        self.cluster_name, doc.get("apiVersion"), doc.get("kind")))
                kube.request("apply %s %s" % (doc.get("kind"), doc["metadata"]["name"]), "PATCH", path,
                             body=json.dumps(doc).encode("utf-8"), query={"fieldManager": "meshfleet", "force": "true"},
                             content_type="application/apply-patch+yaml")
        finally:
            kube.close()
        self._dns_applied = True

    def start(self):
        """Start the components that are not running (all of them after a reboot)."""
        opts = (self._config() or {}).get("options") or {}
        if not opts:
            raise self._corrupt("kwok.yaml is missing")
        running = set()
        for path in glob.glob(os.path.join(self.kwok_dir, "pids", "*.pid")):
            pid = read_pid(path)
            if pid and pid_alive(pid):
                running.add(os.path.basename(path)[:-4])
            else:
                # kwokctl counts a zombie (PID 1 may reap late) as running: forget the pid
                os.unlink(path)
        self._check_ports(dict((k, v) for k, v in opts.items()
                               if k in PORT_COMPONENTS and PORT_COMPONENTS[k] not in running),
                          opts.get("bindAddress") or "0.0.0.0")
        self._kwokctl("start", "cluster", "--name", self.cluster_name)
        if os.path.exists(self.node_record):
            self._node_up()

    def is_ready(self):
        observed = self.get()
        if observed and observed.get("stopped") and self._restarts < MAX_RESTARTS:
            # kwokctl does not supervise the components: one that gave up while the machine
            # was busy (kube-controller-manager exits when the API server is slow to become
            # healthy) is started again
            self._restarts += 1
            self.start()
            return False
        ready = bool(observed and observed.get("ready"))
        if ready and os.path.exists(self.node_record) and not self._dns_applied:
            self._taint_fake_nodes()
            self._apply_coredns()
        return ready

    def delete(self):
        cdir = self.cluster_dir
        slot = self._node_slot()
        if slot is not None:
            # the real node first (its processes talk to the API server), then kwok's part
            self._node(slot).down()
        pids = self._pids()
        ok = True
        if os.path.isdir(self.kwok_dir):  # else kwokctl's part is done (an interrupted removal)
            ok = self._kwokctl("delete", "cluster", "--name", self.cluster_name, "--kubeconfig",
                               os.path.join(cdir, "kwokctl.kubeconfig"), check=False).returncode == 0
        # Whatever kwokctl could not do (a corrupt folder), do by hand.
        for pid in pids + self._pids():
            stop_pid(pid)  # waits until the process is gone (SIGKILL after 10 s)
        if os.path.isdir(self.kwok_dir):
            shutil.rmtree(self.kwok_dir)
        if os.path.isdir(cdir):
            shutil.rmtree(cdir)
        self.ports().release(self.port_owner)
        self.slots().release("node", self.port_owner)
        return ok

    def write_kubeconfig(self):
        kc = self._kwok_kubeconfig()
        with open(kc["ca"]) as f:
            ca = f.read()
        with open(kc["cert"]) as f:
            cert = f.read()
        with open(kc["key"]) as f:
            key = f.read()
        config = build_kubeconfig(self.cluster_name, kc["server"], cert_user(cert, key), ca=ca)
        changed = write_kubeconfig(self.kubeconfig_path, config)
        return self.kubeconfig_path, self.cluster_name, changed
