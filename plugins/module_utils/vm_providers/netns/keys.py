# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mesh's SSH key pair for its netns VMs and the pinned host keys (known_hosts).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import socket
import subprocess

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import (
    MeshfleetError, ensure_private_dir, write_file_atomic)
from ansible_collections.meshfleet.mesh.plugins.module_utils.vm_providers.netns.addressing import (
    ssh_paths, vms_dir)


def filter_known_hosts(path, addresses, add_lines=()):
    """Drop the lines of ``addresses`` from a known_hosts file, then append ``add_lines``."""
    keep = []
    try:
        with open(path) as f:
            for line in f:
                hosts = line.split(" ", 1)[0].split(",") if line.strip() else []
                if any(h in addresses or h.strip("[]").split("]:")[0] in addresses
                       for h in hosts):
                    continue
                keep.append(line if line.endswith("\n") else line + "\n")
    except IOError:
        pass
    keep.extend(l + "\n" for l in add_lines)
    write_file_atomic(path, "".join(keep), mode=0o600)


def ensure_ssh_key(state_dir):
    """The mesh's VM key pair (ed25519, OpenSSH format); created once. Returns the public key line."""
    paths = ssh_paths(state_dir)
    ensure_private_dir(vms_dir(state_dir))
    ensure_private_dir(paths["dir"])
    if os.path.isfile(paths["key"]) and os.path.isfile(paths["pub"]):
        os.chmod(paths["key"], 0o600)
        with open(paths["pub"]) as f:
            return f.read().strip()
    comment = "meshfleet-vms@%s" % socket.gethostname()
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
        key = ed25519.Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH)
        public = public.decode("ascii") + " " + comment
    except ImportError:
        tmp = paths["key"] + ".new"
        for p in (tmp, tmp + ".pub"):
            if os.path.exists(p):
                os.unlink(p)
        proc = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", tmp],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
        if proc.returncode != 0:
            raise MeshfleetError("ssh-keygen failed (rc=%d): %s" % (proc.returncode, proc.stdout.strip()))
        with open(tmp, "rb") as f:
            private = f.read()
        with open(tmp + ".pub") as f:
            public = f.read().strip()
        os.unlink(tmp)
        os.unlink(tmp + ".pub")
    write_file_atomic(paths["key"], private, mode=0o600)
    write_file_atomic(paths["pub"], public + "\n", mode=0o644)
    return public
