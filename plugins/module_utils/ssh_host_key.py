# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pinned SSH host keys of the mesh's VMs (meshfleet.mesh.vm_host_key).

Ansible reaches every VM with ``-o StrictHostKeyChecking=<yes|accept-new>
-o UserKnownHostsFile=<state_dir>/vms/known_hosts`` (its ``ansible_ssh_common_args``; the
project never turns host key checking off). The netns provider writes each VM's key into
that file when it makes the VM (``yes``); for other VMs (``existing``, openstack, ec2) the
key is pinned on first contact (``accept-new``) and enforced from then on.

This module is the pre-check of the VM plays: before the first SSH connection it asks the
VM for its host keys (``ssh-keyscan``) and compares them with the pinned ones, so that a
changed key stops the play with a message that names the VM, its address, the file and
what to do, instead of ssh's "REMOTE HOST IDENTIFICATION HAS CHANGED". On first contact
with ``accept-new`` it records the keys itself (ssh would too, but only if the folder of
the known_hosts file exists).

known_hosts lines are parsed as ``sshd(8)`` describes them: comma-separated host patterns
(``*``/``?`` wildcards, ``!`` negation, ``[host]:port`` for ports other than 22), hashed
names (``|1|salt|hmac-sha1``), ``@cert-authority``/``@revoked`` markers (not pins: skipped).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import fcntl
import hashlib
import hmac
import os
import re
import shlex
import shutil
import subprocess

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import (
    MeshfleetError, ensure_private_dir, write_file_atomic)


def ssh_options(args):
    """``{option (lower case): value}`` of the ``-o`` options in an ssh argument string."""
    words = shlex.split(args or "")
    out = {}
    i = 0
    while i < len(words):
        w = words[i]
        opt = None
        if w == "-o" and i + 1 < len(words):
            opt = words[i + 1]
            i += 1
        elif w.startswith("-o") and len(w) > 2:
            opt = w[2:]
        i += 1
        if not opt:
            continue
        if "=" in opt:
            key, value = opt.split("=", 1)
        else:
            parts = opt.split(None, 1)
            key, value = parts[0], parts[1] if len(parts) > 1 else ""
        out.setdefault(key.strip().lower(), value.strip())  # ssh: the first value wins
    return out


def host_name(host, port=22):
    """The name ssh looks up in known_hosts: ``host``, or ``[host]:port`` off port 22."""
    port = int(port or 22)
    return host if port == 22 else "[%s]:%d" % (host, port)


def _hashed_match(pattern, name):
    try:
        _magic, _one, salt, digest = pattern.split("|")
        mac = hmac.new(base64.b64decode(salt), name.encode("utf-8"), hashlib.sha1).digest()
        return hmac.compare_digest(base64.b64encode(mac).decode("ascii"), digest)
    except (ValueError, TypeError):
        return False


def _glob(pattern):
    """ssh's host patterns: ``*`` and ``?`` are wildcards, everything else (``[``) is literal."""
    return re.compile("^%s$" % re.escape(pattern.lower()).replace("\\*", ".*").replace("\\?", "."))


def host_matches(field, name):
    """Whether a known_hosts host field (``a,b,!c,|1|..``) names ``name``."""
    matched = False
    for pattern in field.split(","):
        if pattern.startswith("|1|"):
            if _hashed_match(pattern, name):
                matched = True
            continue
        negate = pattern.startswith("!")
        pattern = pattern[1:] if negate else pattern
        if _glob(pattern).match(name.lower()):
            if negate:
                return False
            matched = True
    return matched


def pinned_keys(path, name):
    """``[(key type, base64 key, line number)]`` pinned for ``name`` in known_hosts ``path``."""
    keys = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except (IOError, OSError):
        return keys
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0].startswith("@"):
            continue  # @cert-authority / @revoked: not a pinned key
        if len(fields) < 3:
            continue
        if host_matches(fields[0], name):
            keys.append((fields[1], fields[2], number))
    return keys


def fingerprint(key_b64):
    """OpenSSH's ``SHA256:...`` fingerprint of a base64 public key blob."""
    try:
        blob = base64.b64decode(key_b64)
    except (ValueError, TypeError):
        return "(invalid key)"
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def scan(host, port=22, timeout=10):
    """The host keys the SSH server at ``host:port`` offers: ``[(type, base64)]`` (empty when
    nothing answers). Uses ssh-keyscan (openssh-client)."""
    keyscan = shutil.which("ssh-keyscan")
    if not keyscan:
        raise MeshfleetError("ssh-keyscan (openssh-client) is needed on the controller to check "
                             "the VMs' SSH host keys")
    proc = subprocess.run([keyscan, "-T", str(int(timeout)), "-p", str(int(port or 22)), host],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=int(timeout) * 4 + 10, check=False)
    keys = []
    for line in proc.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not fields[0].startswith("#"):
            keys.append((fields[1], fields[2]))
    return keys


def _describe(keys):
    return ", ".join("%s %s" % (t, fingerprint(k)) for t, k in keys[:6]) or "none"


def record(path, name, keys):
    """Append ``name``'s keys to known_hosts ``path`` (folder 0700, file 0600), under a lock;
    keys pinned meanwhile by another fork are kept as they are. Returns the keys added."""
    ensure_private_dir(os.path.dirname(os.path.abspath(path)))
    with os.fdopen(os.open(path + ".lock", os.O_WRONLY | os.O_CREAT, 0o600), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if pinned_keys(path, name):
            return []
        try:
            with open(path) as f:
                text = f.read()
        except (IOError, OSError):
            text = ""
        if text and not text.endswith("\n"):
            text += "\n"
        text += "".join("%s %s %s\n" % (name, t, k) for t, k in keys)
        write_file_atomic(path, text, mode=0o600)
    return keys


def check_host_key(vm, host, port=22, known_hosts=None, strict=None, ssh_common_args="",
                   timeout=10, scanner=None):
    """:func:`plan_host_key`, then its ``apply``: the result after pinning."""
    dummy, apply = plan_host_key(vm, host, port, known_hosts, strict, ssh_common_args, timeout, scanner)
    return apply()


def plan_host_key(vm, host, port=22, known_hosts=None, strict=None, ssh_common_args="",
                  timeout=10, scanner=None):
    """Compare the VM's offered host keys with the pinned ones; on first contact, plan to pin
    them. Returns ``(result, apply)``; ``apply()`` makes the known_hosts folder (ssh records
    an accept-new key only into a folder that exists), pins the keys when the plan says so and
    returns the result.

    ``known_hosts`` and ``strict`` default to ``UserKnownHostsFile`` and
    ``StrictHostKeyChecking`` of ``ssh_common_args``. The result has ``changed`` (keys would
    be pinned) and ``status``: ``match`` (a pinned key is offered), ``pinned`` (first contact,
    keys recorded), ``unreachable`` (nothing answered: the play's connection reports it),
    ``unchecked`` (no known_hosts file in the VM's ssh arguments, or a ProxyJump /
    ProxyCommand: ssh itself enforces the pin then). Raises MeshfleetError on
    a changed key, or an unpinned VM under ``StrictHostKeyChecking=yes``.
    """
    opts = ssh_options(ssh_common_args)
    known_hosts = known_hosts or opts.get("userknownhostsfile")
    if strict is None:
        strict = opts.get("stricthostkeychecking", "").lower() in ("yes", "true")
    name = host_name(host, port)
    result = dict(changed=False, vm=vm, address=host, port=int(port or 22), known_hosts=known_hosts,
                  strict=bool(strict), pinned=[], offered=[])
    if not known_hosts:
        result["status"] = "unchecked"
        return result, lambda: result
    known_hosts = os.path.expanduser(known_hosts.split()[0])
    result["known_hosts"] = known_hosts

    def folder():
        ensure_private_dir(os.path.dirname(os.path.abspath(known_hosts)))
        return result
    if opts.get("proxyjump", "none").lower() != "none" or opts.get("proxycommand", "none").lower() != "none":
        # the VM is reached through a jump host: a scan from here could reach another
        # machine; ssh itself enforces the pinned key (and pins it on first contact)
        result["status"] = "unchecked"
        return result, folder
    pinned = pinned_keys(known_hosts, name)
    result["pinned"] = ["%s %s" % (t, fingerprint(k)) for t, k, _n in pinned]
    offered = (scanner or scan)(host, port, timeout)
    result["offered"] = ["%s %s" % (t, fingerprint(k)) for t, k in offered]
    if not offered:
        result["status"] = "unreachable"
        return result, folder
    if pinned:
        if set((t, k) for t, k, _n in pinned) & set(offered):
            result["status"] = "match"
            return result, folder
        raise MeshfleetError(
            "VM %s (%s): host key does not match the pinned key in %s (line %s: %s; the VM "
            "offers %s); if the VM was rebuilt, remove its line (ssh-keygen -R '%s' -f %s) and "
            "re-run" % (vm, host if name == host else name, known_hosts,
                        ", ".join(str(n) for _t, _k, n in pinned),
                        _describe([(t, k) for t, k, _n in pinned]), _describe(offered), name,
                        known_hosts), **result)
    if strict:
        raise MeshfleetError(
            "VM %s (%s): no host key pinned for it in %s and its ssh arguments say "
            "StrictHostKeyChecking=yes (the netns provider pins the key when it creates the VM: "
            "re-create the VM, or add its key to that file)" % (vm, name, known_hosts), **result)
    result["changed"] = True
    result["status"] = "pinned"

    def pin():
        folder()
        if not record(known_hosts, name, offered):  # pinned meanwhile by another fork: compare with that
            return check_host_key(vm, host, port, known_hosts, strict, "", timeout, scanner=lambda *a: offered)
        return result
    return result, pin
