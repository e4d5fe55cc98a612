# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Local tools and processes: where the built Go binaries are, pid files, HTTPS probes."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import signal
import ssl
import time

try:
    from http.client import HTTPConnection, HTTPSConnection, HTTPException
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover - Python 2
    from httplib import HTTPConnection, HTTPSConnection, HTTPException
    from urlparse import urlsplit

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetError

TOOLS_HINT = "build them with `make tools` (tools/build-tools.sh) or set MESHFLEET_TOOLS_BIN"


def tools_bin(explicit=None):
    """The folder of the built Go tools: explicit > $MESHFLEET_TOOLS_BIN > the cache's current key."""
    candidates = [explicit, os.environ.get("MESHFLEET_TOOLS_BIN"),
                  os.path.join(os.environ.get("MESHFLEET_TOOLS_CACHE")
                               or os.path.expanduser("~/.cache/meshfleet/tools"), "current", "bin")]
    for c in candidates:
        if c and os.path.isdir(c):
            return os.path.realpath(c)
    raise MeshfleetError("the Meshfleet Go tools were not found (looked in: %s); %s"
                         % (", ".join(c for c in candidates if c), TOOLS_HINT))


def tool(bin_dir, name):
    path = os.path.join(bin_dir, name)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise MeshfleetError("%s is missing from %s; %s" % (name, bin_dir, TOOLS_HINT))
    return path


def pid_alive(pid):
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    try:  # a zombie is not alive
        with open("/proc/%d/stat" % int(pid)) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except IOError:
        return False


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0) or None
    except (IOError, ValueError):
        return None


def stop_pid(pid, timeout=10.0):
    """SIGTERM, then SIGKILL after ``timeout``; returns True if a process was stopped."""
    if not pid or not pid_alive(pid):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    return True


def kill_until_gone(list_pids, timeout):
    """SIGKILL every process ``list_pids()`` names, again and again, until it names none; the
    pids still there once ``timeout`` seconds have passed ([] when every one went)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = list_pids()
        if not pids:
            return []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if time.monotonic() > deadline:
            return pids
        time.sleep(0.1)


_SSL_CONTEXTS = {}


def _ssl_context(ca_file, cert_file, key_file, insecure):
    """A TLS context per (files, their mtimes, insecure): built once per process (~10-20 ms each)."""
    def stamp(path):
        try:
            return os.stat(path).st_mtime_ns if path else None
        except OSError:
            return None
    key = (ca_file, cert_file, key_file, insecure, stamp(ca_file), stamp(cert_file), stamp(key_file))
    ctx = _SSL_CONTEXTS.get(key)
    if ctx is None:
        ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
        if insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if cert_file:
            ctx.load_cert_chain(cert_file, key_file)
        _SSL_CONTEXTS[key] = ctx
    return ctx


def https_get(url, ca_file=None, cert_file=None, key_file=None, timeout=3.0, insecure=False):
    """GET ``url``; returns (status, body bytes) or (None, error text) when unreachable.

    Plain http.client (no redirects, no proxies): the targets are local API servers and
    istiod debug endpoints, reached with client certificates.
    """
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        if parts.scheme == "https":
            conn = HTTPSConnection(parts.hostname, parts.port or 443, timeout=timeout,
                                   context=_ssl_context(ca_file, cert_file, key_file, insecure))
        else:
            conn = HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()
    except (HTTPException, OSError, ssl.SSLError) as e:
        return None, str(e)
