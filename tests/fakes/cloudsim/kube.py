# -*- coding: utf-8 -*-
"""Real kwok clusters behind the fake clouds' clusters, and a fake cloud controller for them.

:class:`KubeClusters` creates one kwok cluster (plugins/module_utils/providers/kwok.py
KwokProvider, state under the sim's work dir) per cloud cluster, in a thread, with the
kube-apiserver flags of a token webhook served by the sim
(``--authentication-token-webhook-config-file``, through the provider's
``apiserver_extra_args`` setting). :class:`LoadBalancerController` is the cloud controller
manager's service controller in small: a ``LoadBalancer`` Service gets the finalizer
``service.kubernetes.io/load-balancer-cleanup``, a provider load balancer (a callback into
the sim) and ``status.loadBalancer.ingress`` with a 127.0.0.x address; when the Service is
deleted (or stops being a LoadBalancer) the load balancer goes and the finalizer is removed.
"""

from __future__ import absolute_import, division, print_function

import json
import logging
import os
import threading
import time

import requests

from ansible_collections.meshfleet.mesh.plugins.module_utils.providers.kwok import KwokProvider

LOG = logging.getLogger("cloudsim.kube")
FINALIZER = "service.kubernetes.io/load-balancer-cleanup"
#: how long the API server caches a webhook's answer: short, so an expired token is refused soon
WEBHOOK_CACHE_TTL = "5s"


class KubeClusters:
    def __init__(self, state_dir, tools_bin, webhook_url, ca_file, lb_callbacks, ready_timeout=240):
        self.state_dir = state_dir
        self.tools_bin = tools_bin
        self.webhook_url = webhook_url          # base URL; + "/<cluster id>"
        self.ca_file = ca_file
        self.lb = lb_callbacks                  # object with create_lb(cid, svc) / delete_lb(cid, svc)
        self.ready_timeout = ready_timeout
        self.items = {}
        self.lock = threading.Lock()
        os.makedirs(os.path.join(state_dir, "webhooks"), 0o700, exist_ok=True)

    @staticmethod
    def kwok_name(cid):
        return cid.replace("/", "-").lower()

    def _webhook_config(self, cid):
        path = os.path.join(self.state_dir, "webhooks", "%s.yaml" % self.kwok_name(cid))
        with open(path, "w") as f:
            json.dump({"apiVersion": "v1", "kind": "Config",
                       "clusters": [{"name": "cloudsim", "cluster": {
                           "server": "%s/%s" % (self.webhook_url, cid),
                           "certificate-authority": self.ca_file}}],
                       "users": [{"name": "apiserver", "user": {}}],
                       "contexts": [{"name": "webhook",
                                     "context": {"cluster": "cloudsim", "user": "apiserver"}}],
                       "current-context": "webhook"}, f, indent=1)
        return path

    def provider(self, cid):
        return KwokProvider(self.kwok_name(cid), dict(
            tools_bin=self.tools_bin, nodes=1, apiserver_extra_args={
                "authentication-token-webhook-config-file": self._webhook_config(cid),
                "authentication-token-webhook-version": "v1",
                "authentication-token-webhook-cache-ttl": WEBHOOK_CACHE_TTL}), self.state_dir)

    # --- lifecycle --------------------------------------------------------------------------
    def ensure(self, cid):
        """Start creating the kwok cluster of cloud cluster ``cid`` (no-op when it exists)."""
        with self.lock:
            if cid in self.items:
                return
            item = self.items[cid] = dict(state="creating", error=None, started=time.time())
        t = threading.Thread(target=self._create, args=(cid, item), name="kwok-" + cid, daemon=True)
        item["thread"] = t
        t.start()

    def _create(self, cid, item):
        try:
            prov = self.provider(cid)
            prov.validate()
            if prov.get() is not None:
                prov.delete()
            prov.create()
            deadline = time.monotonic() + self.ready_timeout
            while not prov.is_ready():
                if time.monotonic() > deadline:
                    raise RuntimeError("kwok cluster %s not ready after %ss" % (cid, self.ready_timeout))
                if item.get("stop"):
                    return
                time.sleep(1)
            kc = prov._kwok_kubeconfig()
            with open(kc["ca"]) as f:
                ca_pem = f.read()
            item.update(server=kc["server"], ca_pem=ca_pem, admin=kc, kwok_dir=prov.kwok_dir)
            ctl = LoadBalancerController(cid, kc, self.lb)
            item["controller"] = ctl
            ctl.start()
            item["state"] = "ready"
            LOG.info("kwok cluster for %s ready at %s after %.0fs", cid, kc["server"],
                     time.time() - item["started"])
        except Exception as e:  # reported through /sim/inventory and the log
            LOG.exception("kwok cluster for %s failed", cid)
            item.update(state="failed", error=str(e))

    def ready(self, cid):
        """{"server", "ca_pem"} of a ready cluster, else None."""
        item = self.items.get(cid)
        return item if item and item["state"] == "ready" and not item.get("deleting") else None

    def failed(self, cid):
        item = self.items.get(cid)
        return item["error"] if item and item["state"] == "failed" else None

    def exists(self, cid):
        return cid in self.items

    def delete_async(self, cid):
        """Start deleting the kwok cluster of ``cid``; ``exists(cid)`` is true until it is gone."""
        with self.lock:
            item = self.items.get(cid)
            if item is None or item.get("deleting"):
                return
            item.update(deleting=True, stop=True)
        threading.Thread(target=self._delete, args=(cid, item), name="kwok-rm-" + cid, daemon=True).start()

    def _delete(self, cid, item):
        try:
            if item.get("thread") is not None:
                item["thread"].join(timeout=self.ready_timeout)
            item["state"] = "deleting"
            if item.get("controller") is not None:
                item["controller"].stop()
            prov = self.provider(cid)
            if os.path.isdir(prov.kwok_dir) or os.path.isdir(prov.cluster_dir):
                prov.delete()
            LOG.info("kwok cluster for %s deleted", cid)
        except Exception:
            LOG.exception("deleting kwok cluster for %s", cid)
        finally:
            with self.lock:
                self.items.pop(cid, None)

    def delete(self, cid, timeout=120):
        """Delete the kwok cluster of ``cid`` and wait until it is gone."""
        self.delete_async(cid)
        deadline = time.monotonic() + timeout
        while self.exists(cid) and time.monotonic() < deadline:
            time.sleep(0.2)

    def shutdown(self):
        for cid in list(self.items):
            self.delete_async(cid)
        deadline = time.monotonic() + 120
        while self.items and time.monotonic() < deadline:
            time.sleep(0.2)

    def describe(self):
        out = {}
        for cid, item in list(self.items.items()):
            pids = []
            kwok_dir = item.get("kwok_dir") or self.provider(cid).kwok_dir
            piddir = os.path.join(kwok_dir, "pids")
            for name in sorted(os.listdir(piddir)) if os.path.isdir(piddir) else []:
                try:
                    with open(os.path.join(piddir, name)) as f:
                        pids.append(int(f.read().strip()))
                except (IOError, ValueError):
                    pass
            out[cid] = dict(state=item["state"], server=item.get("server"), error=item.get("error"),
                            kwok_name=self.kwok_name(cid), pids=pids)
        return out


class LoadBalancerController:
    """Poll one cluster's Services (admin client certificate) and reconcile LoadBalancers."""

    interval = 1.0

    def __init__(self, cid, admin, callbacks):
        self.cid = cid
        self.server = admin["server"]
        self.session = requests.Session()
        self.session.verify = admin["ca"]
        self.session.cert = (admin["cert"], admin["key"])
        self.session.trust_env = False
        self.cb = callbacks
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="lb-" + cid, daemon=True)
        self.errors = 0

    def start(self):
        self.thread.start()

    def stop(self):
        self._stop.set()
        self.thread.join(timeout=10)

    def _loop(self):
        while not self._stop.is_set():
            try:
                self.reconcile()
            except Exception as e:
                self.errors += 1
                if self.errors % 30 == 1:
                    LOG.warning("load balancer controller of %s: %s", self.cid, e)
            self._stop.wait(self.interval)

    def _patch(self, path, body, sub=""):
        r = self.session.patch(self.server + path + sub, data=json.dumps(body), timeout=10,
                               headers={"Content-Type": "application/merge-patch+json"})
        if r.status_code not in (200, 201, 404):
            raise RuntimeError("PATCH %s%s: HTTP %s %s" % (path, sub, r.status_code, r.text[:200]))

    def reconcile(self):
        r = self.session.get(self.server + "/api/v1/services", timeout=10)
        r.raise_for_status()
        for svc in r.json().get("items") or []:
            meta, spec = svc["metadata"], svc.get("spec") or {}
            path = "/api/v1/namespaces/%s/services/%s" % (meta["namespace"], meta["name"])
            finalizers = list(meta.get("finalizers") or [])
            is_lb = spec.get("type") == "LoadBalancer"
            if meta.get("deletionTimestamp") or not is_lb:
                if FINALIZER in finalizers:
                    self.cb.delete_lb(self.cid, svc)
                    finalizers.remove(FINALIZER)
                    self._patch(path, {"metadata": {"finalizers": finalizers,
                                                    "resourceVersion": meta["resourceVersion"]}})
                    if not is_lb and not meta.get("deletionTimestamp"):
                        self._patch(path, {"status": {"loadBalancer": {}}}, "/status")
                continue
            if FINALIZER not in finalizers:
                # the finalizer first, as the service controller does: no load balancer can leak
                self._patch(path, {"metadata": {"finalizers": finalizers + [FINALIZER],
                                                "resourceVersion": meta["resourceVersion"]}})
                continue
            address = self.cb.create_lb(self.cid, svc)
            have = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            if [i.get("ip") for i in have] != [address]:  # the API server adds ipMode: VIP
                self._patch(path, {"status": {"loadBalancer": {"ingress": [{"ip": address}]}}},
                            "/status")
