# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Port reservations for local processes (kwok clusters, local istiod).

Several clusters are created at once (one Ansible fork each), and kwokctl's own
port picker counts down from 32767 in every process, so two concurrent creates
would pick the same ports. Meshfleet reserves ports itself, under a file lock, in
a registry under the mesh state dir, in a range below the kernel's ephemeral range
(so outbound connections never take a reserved port while a cluster is stopped).

The registry is machine-wide (``$MESHFLEET_PORTS_DIR``, default
``~/.cache/meshfleet/ports``) because several meshes (the demo, test runs) share one
machine; an owner is the absolute path of the folder of what holds the ports, and
owners whose folder is gone are pruned.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import errno
import fcntl
import json
import os
import socket

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import (
    MeshfleetError, ensure_private_dir, write_file_atomic)

DEFAULT_RANGE = (20000, 29999)


@contextlib.contextmanager
def locked(path):
    """An exclusive flock on ``path`` (created if needed)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def port_free(port, host="127.0.0.1"):
    for h in (host, "0.0.0.0") if host != "0.0.0.0" else ("0.0.0.0",):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((h, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            if e.errno == errno.EADDRNOTAVAIL:  # address not on this host: nothing listens there
                continue
            raise
        finally:
            s.close()
    return True


class JsonRegistry:
    """A machine-wide JSON registry: ``<dir>/<name>.json`` (a dict) and ``<name>.lock`` for
    flock, in a private folder: ``directory``, else ``$<env>``, else ``~/.cache/meshfleet/<default>``."""

    def __init__(self, directory, env, default, name):
        if directory is None:
            directory = os.environ.get(env) or os.path.expanduser("~/.cache/meshfleet/%s" % default)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
        self.directory = ensure_private_dir(directory)
        self.path = os.path.join(self.directory, "%s.json" % name)
        self.lock_path = os.path.join(self.directory, "%s.lock" % name)

    def _load(self):
        try:
            with open(self.path) as f:
                data = json.load(f)
            return data if isinstance(data, dict) else {}
        except (IOError, ValueError):
            return {}

    def _save(self, data):
        write_file_atomic(self.path, json.dumps(data, indent=1, sort_keys=True), mode=0o600)


class PortRegistry(JsonRegistry):
    """``<dir>/ports.json``: {owner: {name: port}} shared by every local process of a mesh."""

    def __init__(self, directory=None, port_range=DEFAULT_RANGE):
        JsonRegistry.__init__(self, directory, "MESHFLEET_PORTS_DIR", "ports", "ports")
        self.port_range = port_range

    def get(self, owner):
        return dict(self._load().get(owner, {}))

    def reserve(self, owner, names, host="127.0.0.1", recheck=False):
        """Return {name: port} for ``owner``; keeps existing reservations, adds missing ones.

        ``recheck=True`` (only while the owner's own processes are stopped) also moves a kept
        reservation whose port something else is listening on now - a process this registry
        does not know, or one still exiting after its owner was removed."""
        with locked(self.lock_path):
            data = self._load()
            for other in [o for o in data if o != owner and os.path.isabs(o) and not os.path.exists(o)]:
                del data[other]
            mine = dict(data.get(owner, {}))
            taken = set()
            for other, ports in data.items():
                if other != owner:
                    taken.update(ports.values())
            taken.update(mine.values())
            if recheck:
                for name in [n for n in names if n in mine and not port_free(mine[n], host)]:
                    del mine[name]  # its port stays in ``taken``: busy now
            candidate = self.port_range[0]
            for name in names:
                if name in mine:
                    continue
                while candidate <= self.port_range[1] and (
                        candidate in taken or not port_free(candidate, host)):
                    candidate += 1
                if candidate > self.port_range[1]:
                    raise MeshfleetError("no free port left in %d-%d for %s"
                                         % (self.port_range[0], self.port_range[1], owner))
                mine[name] = candidate
                taken.add(candidate)
            data[owner] = mine
            self._save(data)
            return mine

    def release(self, owner):
        with locked(self.lock_path):
            data = self._load()
            if data.pop(owner, None) is not None:
                self._save(data)
