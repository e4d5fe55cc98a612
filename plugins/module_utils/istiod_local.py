# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a real istiod (pilot-discovery) as a local process against a cluster's kubeconfig.

Local (kwok) clusters have no pod network, so the istiod Deployment that the Istio
manifests create never really runs there. Meshfleet runs the same binary on the
controller instead, one per primary cluster: it loads the plug-in CA from the
cluster's ``cacerts`` secret (``USE_REMOTE_CERTS``), reads the mesh config and
remote secrets from the cluster, writes ``istio-ca-root-cert`` into every
namespace, and serves xDS/CA and its debug API on reserved loopback ports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import shutil
import subprocess
import time

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import (
    MeshfleetError, MeshfleetModule, ensure_private_dir, wait_for, write_file_atomic)
from ansible_collections.meshfleet.mesh.plugins.module_utils.localproc import (
    https_get, pid_alive, read_pid, stop_pid, tool, tools_bin)
from ansible_collections.meshfleet.mesh.plugins.module_utils.ports import PortRegistry

PORTS = ("http", "grpc", "secure_grpc", "https", "monitoring", "ctrlz")


class IstiodLocal:
    def __init__(self, name, state_dir, kubeconfig, cluster_id, bind_address="127.0.0.1",
                 namespace="istio-system", revision="", env=None, bin_dir=None, ports=None):
        self.name = name
        self.dir = os.path.join(state_dir, "clusters", name, "istiod")
        self.kubeconfig = kubeconfig
        self.cluster_id = cluster_id
        self.bind = bind_address
        self.namespace = namespace
        self.revision = revision
        self.extra_env = dict(env or {})
        self._bin_dir = bin_dir
        self.fixed_ports = dict(ports or {})

    # --- state on disk ----------------------------------------------------------------
    @property
    def pid_file(self):
        return os.path.join(self.dir, "istiod.pid")

    @property
    def config_file(self):
        return os.path.join(self.dir, "config.json")

    @property
    def log_file(self):
        return os.path.join(self.dir, "istiod.log")

    @property
    def ca_dir(self):
        return os.path.join(self.dir, "cacerts")

    def port_owner(self):
        return os.path.abspath(self.dir)

    def pid(self):
        pid = read_pid(self.pid_file)
        return pid if pid and pid_alive(pid) else None

    def debug_url(self, rec=None):
        """Base URL of the debug API of the recorded istiod, or None."""
        rec = rec if rec is not None else self.recorded()
        if not rec:
            return None
        return "http://%s:%d" % (rec.get("debug_bind", rec["bind"]), rec["ports"]["http"])

    def recorded(self):
        try:
            with open(self.config_file) as f:
                return json.load(f)
        except (IOError, ValueError):
            return None

    # --- the desired process ----------------------------------------------------------
    def desired(self, ports):
        # ports may be None (check mode before the first start): "%s", which prints an int as "%d" does
        b = self.bind          # what workloads (VMs) connect to: xDS and the CA
        lo = "127.0.0.1"       # debug, monitoring, webhooks: this machine only (istiod only
        #                        serves its debug API unauthenticated on loopback)
        args = [
            "discovery",
            "--kubeconfig", self.kubeconfig,
            "--clusterID", self.cluster_id,
            "--namespace", self.namespace,
            # no local files: the mesh config and networks come from the cluster's ConfigMap
            "--meshConfig", os.path.join(self.dir, "no-mesh-file"),
            "--networksConfig", os.path.join(self.dir, "no-networks-file"),
            "--httpAddr", "%s:%s" % (lo, ports["http"]),
            "--grpcAddr", "%s:%s" % (b, ports["grpc"]),
            "--secureGRPCAddr", "%s:%s" % (b, ports["secure_grpc"]),
            "--httpsAddr", "%s:%s" % (lo, ports["https"]),
            "--monitoringAddr", "%s:%s" % (lo, ports["monitoring"]),
            "--ctrlz_address", lo, "--ctrlz_port", str(ports["ctrlz"]),
            "--log_output_level", "default:info",
        ]
        if self.revision:
            args += ["--revision", self.revision]
        env = {
            "POD_NAMESPACE": self.namespace,
            "POD_NAME": "istiod-local-%s" % self.name,
            "CLUSTER_ID": self.cluster_id,
            "REVISION": self.revision or "default",
            # load the plug-in CA from the cluster's cacerts secret into ROOT_CA_DIR
            "USE_REMOTE_CERTS": "true",
            "ROOT_CA_DIR": self.ca_dir,
            # webhooks are not reachable from a kwok API server: do not patch their configs
            "VALIDATION_WEBHOOK_CONFIG_NAME": "",
            "INJECTION_WEBHOOK_CONFIG_NAME": "",
            "PILOT_ENABLE_WORKLOAD_ENTRY_AUTOREGISTRATION": "true",
            "PILOT_ENABLE_WORKLOAD_ENTRY_HEALTHCHECKS": "true",
        }
        env.update({k: str(v) for k, v in self.extra_env.items()})
        return dict(args=args, env=env, ports=ports, bind=b, debug_bind=lo, binary=None)

    def reserve_ports(self, recheck=False):
        if self.fixed_ports:
            return dict(self.fixed_ports)
        return PortRegistry().reserve(self.port_owner(), PORTS, host=self.bind, recheck=recheck)

    def status(self):
        rec = self.recorded()
        pid = self.pid()
        ready = False
        if pid and rec:
            code, dummy = https_get(self.debug_url(rec) + "/ready", timeout=2)
            ready = code == 200
        return dict(running=pid is not None, pid=pid, ready=ready,
                    ports=(rec or {}).get("ports"), config_hash=(rec or {}).get("hash"),
                    debug_url=self.debug_url(rec),
                    xds_address=("%s:%d" % (rec["bind"], rec["ports"]["secure_grpc"])) if rec else None,
                    log=self.log_file)

    # --- actions ------------------------------------------------------------------------
    def start(self, desired):
        ensure_private_dir(os.path.dirname(self.dir))
        ensure_private_dir(self.dir)
        # Always re-read the plug-in CA from the cluster: istiod skips the fetch when a
        # complete bundle is on disk, which would hide a rotation.
        if os.path.isdir(self.ca_dir):
            shutil.rmtree(self.ca_dir)
        ensure_private_dir(self.ca_dir)
        binary = tool(self._bin_dir or tools_bin(), "pilot-discovery")
        env = dict(os.environ)
        env.pop("KUBECONFIG", None)
        env.update(desired["env"])
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen([binary] + desired["args"], env=env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=self.dir, start_new_session=True)
        write_file_atomic(self.pid_file, "%d\n" % proc.pid, mode=0o600)
        rec = dict(desired, hash=self.hash(desired), started=time.time())
        write_file_atomic(self.config_file, json.dumps(rec, indent=1, sort_keys=True), mode=0o600)
        return proc.pid

    def stop(self):
        pid = self.pid()
        stopped = stop_pid(pid, timeout=15) if pid else False
        if os.path.exists(self.pid_file):
            os.unlink(self.pid_file)
        return stopped

    def remove(self):
        stopped = self.stop()
        existed = os.path.isdir(self.dir)
        PortRegistry().release(self.port_owner())
        if existed:
            shutil.rmtree(self.dir)
        return stopped or existed

    def wait_ready(self, timeout):
        def ready():
            if not self.pid():
                raise MeshfleetError("istiod for %s exited; last log lines:\n%s"
                                     % (self.name, self.tail()))
            return self.status()["ready"]
        try:
            wait_for(ready, timeout, "istiod of %s to become ready" % self.name, sleep=0.5)
        except MeshfleetError as e:
            if "timed out" in e.msg:
                raise MeshfleetError("%s; last log lines:\n%s" % (e.msg, self.tail()))
            raise

    def tail(self, n=15):
        try:
            with open(self.log_file, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 8000))
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except IOError:
            return "(no log)"

    @staticmethod
    def hash(desired):
        blob = json.dumps(dict(args=desired["args"], env=desired["env"]), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def is_local_address(address):
    """Whether ``address`` is assigned to one of this machine's interfaces (``ip addr``; the
    rest of 127.0.0.0/8 does not count: istiod listens there only when told to)."""
    try:
        out = subprocess.run(["ip", "-o", "addr", "show"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             universal_newlines=True, check=False).stdout
    except OSError:
        return False
    return (" %s/" % address) in out


class IstiodLocalModule(MeshfleetModule):
    return_args = True  # recorded in the converge receipt
    argument_spec = dict(
        name=dict(type="str", required=True),
        state_dir=dict(type="path", required=True),
        kubeconfig=dict(type="path"),
        cluster_id=dict(type="str"),
        bind_address=dict(type="str", default="127.0.0.1"),
        prefer_address=dict(type="str"),
        namespace=dict(type="str", default="istio-system"),
        revision=dict(type="str", default=""),
        env=dict(type="dict", default={}),
        tools_bin=dict(type="path"),
        state=dict(type="str", default="started", choices=["started", "restarted", "stopped", "absent"]),
    )
    module_kwargs = dict(required_if=[("state", "started", ("kubeconfig",)),
                                      ("state", "restarted", ("kubeconfig",))])
    with_wait = True

    def run(self):
        p = self.params
        bind = p["bind_address"]
        if p["prefer_address"] and is_local_address(p["prefer_address"]):
            bind = p["prefer_address"]
        ist = IstiodLocal(p["name"], p["state_dir"], p["kubeconfig"], p["cluster_id"] or p["name"],
                          bind_address=bind, namespace=p["namespace"],
                          revision=p["revision"], env=p["env"], bin_dir=p["tools_bin"])
        before = ist.status()

        def view(st):
            return dict(running=st["running"], ports=st["ports"], config_hash=st["config_hash"])
        if p["state"] in ("stopped", "absent"):
            changed = before["running"] or (p["state"] == "absent" and os.path.isdir(ist.dir))
            if changed and not self.check_mode:
                if p["state"] == "stopped":
                    ist.stop()
                else:
                    ist.remove()
            after = dict(view(before), running=False)
            if changed:
                self.set_diff(view(before), after)
            return dict(changed=changed, istiod=ist.status() if not self.check_mode else after)
        if p["kubeconfig"] and not os.path.isfile(p["kubeconfig"]):
            raise MeshfleetError("kubeconfig %s of cluster %s does not exist; create the cluster first"
                                 % (p["kubeconfig"], p["name"]))
        if self.check_mode:
            rec = ist.recorded()
            ports = rec["ports"] if rec else {k: None for k in PORTS}
        else:
            ports = ist.reserve_ports()
        desired = ist.desired(ports)
        want_hash = ist.hash(desired)
        reason = None
        if not before["running"]:
            reason = "not running"
        elif before["config_hash"] != want_hash:
            reason = "configuration changed"
        elif p["state"] == "restarted":
            reason = "restart requested"
        if reason is None:
            if not self.check_mode and p["wait"] and not before["ready"]:
                ist.wait_ready(p["wait_timeout"])
            return dict(changed=False, istiod=ist.status())
        self.set_diff(view(before), dict(running=True, ports=ports, config_hash=want_hash))
        if self.check_mode:
            return dict(changed=True, reason=reason, istiod=dict(before, running=True))
        ist.stop()
        for attempt in range(3):
            # istiod is stopped: move any reserved port something else took meanwhile
            desired = ist.desired(ist.reserve_ports(recheck=True))
            ist.start(desired)
            if not p["wait"]:
                break
            try:
                ist.wait_ready(p["wait_timeout"])
                break
            except MeshfleetError as e:
                # a port taken between the check and istiod's bind: pick again
                if "address already in use" not in e.msg or attempt == 2:
                    raise
                ist.stop()
        return dict(changed=True, reason=reason, istiod=ist.status())
