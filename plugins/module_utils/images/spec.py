# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Image specs: plain data, their input digest, tag and reference (pure logic).

An :class:`ImageSpec` says what an image holds and how it starts; nothing in it depends on
how it is built. Its **input digest** is the sha256 of a canonical JSON of the spec in which
every source file is replaced by the sha256 of its content and the base tree by its key
(:func:`tree_key`), plus :data:`RECIPE`. Same inputs, same digest: the builder's cache key.
The **tag** is ``<version>-<first 12 hex of the digest>`` and the **reference**
``<hub>/<name>:<tag>`` (Istio's manifests use ``<hub>/proxyv2:<tag>`` and ``<hub>/pilot:<tag>``).

Entries (``spec.entries``), each a dict with ``path`` (absolute, in the image) and ``type``:

- ``file``: ``src`` (a file on this machine), ``mode`` (default: the source's, executable or not);
- ``content``: ``data`` (text or bytes), ``mode`` (default 0644);
- ``dir``: ``mode`` (default 0755);
- ``symlink``: ``target``;
- ``c_static``: ``source`` (C text) compiled with ``gcc -static`` at build time, mode 0755.

All but symlinks take ``uid``/``gid`` (default 0). Make them with :func:`file`, :func:`content`,
:func:`directory`, :func:`symlink`, :func:`c_static`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import hashlib
import json
import os
import re
import stat

#: bump when the builder's output for the same spec changes (layer layout, config fields)
RECIPE = 1
DEFAULT_HUB = "localhost/meshfleet"
#: a fixed creation time, so the same inputs give the same image config and manifest digest
CREATED = "2026-01-01T00:00:00Z"

NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
HUB = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
VERSION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}$")
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(?::[A-Za-z0-9_][A-Za-z0-9_.-]*)?$")
ACCOUNT = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
PORT = re.compile(r"^[0-9]{1,5}/(tcp|udp|sctp)$")
ENTRY_TYPES = ("file", "content", "dir", "symlink", "c_static")
SHORT_DIGEST = 12


class SpecError(ValueError):
    """A spec that cannot be built; the message names the image and the field."""


# --- entries -----------------------------------------------------------------------------------
def file(path, src, mode=None, uid=0, gid=0):
    return dict(type="file", path=path, src=src, mode=mode, uid=uid, gid=gid)


def content(path, data, mode=0o644, uid=0, gid=0):
    return dict(type="content", path=path, data=data, mode=mode, uid=uid, gid=gid)


def directory(path, mode=0o755, uid=0, gid=0):
    return dict(type="dir", path=path, mode=mode, uid=uid, gid=gid)


def symlink(path, target):
    return dict(type="symlink", path=path, target=target)


def c_static(path, source, uid=0, gid=0):
    return dict(type="c_static", path=path, source=source, mode=0o755, uid=uid, gid=gid)


class ImageSpec:
    """One image, as plain data (see the module docstring).

    ``base``: None (an image of the entries alone) or ``dict(path=<a root tree>, exclude=[...])``,
    the tree's files under the entries (``exclude``: image paths, dirs included recursively).
    ``users``: accounts added to the base's /etc/passwd and /etc/group, each
    ``dict(name, uid, gid=uid, home='/', shell='/usr/sbin/nologin')``.
    """

    FIELDS = ("name", "entries", "entrypoint", "cmd", "env", "user", "workdir", "ports", "labels",
              "base", "users", "hub", "version", "tag")

    def __init__(self, name, entries=(), entrypoint=None, cmd=None, env=None, user=None, workdir=None,
                 ports=(), labels=None, base=None, users=(), hub=DEFAULT_HUB, version="latest", tag=None):
        self.name = name
        self.entries = [dict(e) for e in entries]
        self.entrypoint = list(entrypoint) if entrypoint is not None else None
        self.cmd = list(cmd) if cmd is not None else None
        self.env = dict(env or {})
        self.user = user
        self.workdir = workdir
        self.ports = [str(p) if "/" in str(p) else "%s/tcp" % p for p in ports]
        self.labels = dict(labels or {})
        self.base = dict(base) if base else None
        self.users = [dict(u) for u in users]
        self.hub = hub
        self.version = version
        #: an explicit tag (images that must share one, see :func:`group_tag`); None: derived
        self.tag = tag

    def to_dict(self):
        return copy.deepcopy(dict((f, getattr(self, f)) for f in self.FIELDS))

    @classmethod
    def from_dict(cls, data):
        unknown = sorted(set(data) - set(cls.FIELDS))
        if unknown:
            raise SpecError("image %s: unknown field(s) %s" % (data.get("name"), ", ".join(unknown)))
        return cls(**data)

    def replace(self, **changes):
        data = self.to_dict()
        data.update(changes)
        return ImageSpec(**data)

    # --- derived ---------------------------------------------------------------------------
    def tag_of(self, digest):
        """The image's tag: the explicit one, else ``<version>-<12 hex of digest>``."""
        return self.tag or tag_for(self.version, digest)

    def ref_of(self, digest):
        return "%s/%s:%s" % (self.hub, self.name, self.tag_of(digest))

    def __repr__(self):
        return "ImageSpec(%r)" % self.name


def tag_for(version, digest):
    """``<version>-<12 hex>``: the image's tag for the input digest ``digest``."""
    return "%s-%s" % (version, digest[:SHORT_DIGEST])


def group_tag(version, digests):
    """One tag for images that must share it (Istio's manifests take one tag for proxyv2 and
    pilot): ``<version>-<12 hex of the sha256 of their sorted input digests>``."""
    return tag_for(version, hashlib.sha256(",".join(sorted(digests)).encode("ascii")).hexdigest())


def _err(spec, field, msg):
    return SpecError("image %s: %s: %s" % (getattr(spec, "name", "?"), field, msg))


def _image_path(spec, field, path):
    if not isinstance(path, str) or not path.startswith("/") or path == "/":
        raise _err(spec, field, "%r is not an absolute path below /" % (path,))
    parts = path.strip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise _err(spec, field, "%r is not a normalised path (no '.', '..' or '//')" % path)
    return "/".join(parts)


def _str_list(spec, field, value):
    if value is None:
        return
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise _err(spec, field, "must be a non-empty list of non-empty strings")


def validate(spec):
    """Raise :class:`SpecError` naming the field for anything the builder could not build;
    return the spec. Checks form only (that source files exist is the builder's check)."""
    if not isinstance(spec.name, str) or not NAME.match(spec.name):
        raise _err(spec, "name", "%r is not a lowercase image name ([a-z0-9] words joined by . _ -)"
                   % (spec.name,))
    if not isinstance(spec.hub, str) or not HUB.match(spec.hub):
        raise _err(spec, "hub", "%r is not a registry/repository prefix like localhost/meshfleet"
                   % (spec.hub,))
    if not isinstance(spec.version, str) or not VERSION.match(spec.version):
        raise _err(spec, "version", "%r is not a tag ([A-Za-z0-9_.-], not starting with . or -)"
                   % (spec.version,))
    if spec.tag is not None and not (isinstance(spec.tag, str) and VERSION.match(spec.tag)):
        raise _err(spec, "tag", "%r is not a tag ([A-Za-z0-9_.-], at most 101 characters)" % (spec.tag,))
    _str_list(spec, "entrypoint", spec.entrypoint)
    _str_list(spec, "cmd", spec.cmd)
    if spec.entrypoint is None and spec.cmd is None:
        raise _err(spec, "entrypoint", "an image needs an entrypoint or a cmd")
    for k, v in spec.env.items():
        if not ENV_KEY.match(str(k)) or not isinstance(v, str):
            raise _err(spec, "env", "%r=%r is not NAME=string" % (k, v))
    if spec.user is not None and not (isinstance(spec.user, str) and USER.match(spec.user)):
        raise _err(spec, "user", "%r is not user[:group] (names or ids)" % (spec.user,))
    if spec.workdir is not None:
        _image_path(spec, "workdir", spec.workdir)
    for p in spec.ports:
        m = PORT.match(p)
        if not m or not 0 < int(p.split("/")[0]) < 65536:
            raise _err(spec, "ports", "%r is not <1-65535>/tcp|udp|sctp" % p)
    for k, v in spec.labels.items():
        if not isinstance(k, str) or not k or not isinstance(v, str):
            raise _err(spec, "labels", "%r=%r is not a string label" % (k, v))
    if spec.base is not None:
        if not isinstance(spec.base.get("path"), str) or not spec.base["path"]:
            raise _err(spec, "base.path", "a base needs the path of its root tree")
        for x in spec.base.get("exclude") or []:
            _image_path(spec, "base.exclude", x)
    names = set()
    for u in spec.users:
        if not isinstance(u.get("name"), str) or not ACCOUNT.match(u["name"]) \
                or not isinstance(u.get("uid"), int) or u["uid"] < 0:
            raise _err(spec, "users", "%r needs a name and a uid >= 0" % (u,))
        if u["name"] in names:
            raise _err(spec, "users", "%s appears twice" % u["name"])
        names.add(u["name"])
    if spec.users and spec.base is None:
        raise _err(spec, "users", "accounts are added to the base's /etc/passwd; this image has no base")
    seen = set()
    for e in spec.entries:
        kind = e.get("type")
        if kind not in ENTRY_TYPES:
            raise _err(spec, "entries", "%r: type must be one of %s" % (e.get("path"), ", ".join(ENTRY_TYPES)))
        rel = _image_path(spec, "entries", e.get("path"))
        if rel in seen:
            raise _err(spec, "entries", "/%s appears twice" % rel)
        seen.add(rel)
        need = dict(file="src", content="data", symlink="target", c_static="source").get(kind)
        if need and not e.get(need) and e.get(need) != "":
            raise _err(spec, "entries", "/%s (%s) needs %s" % (rel, kind, need))
        if kind == "file" and not isinstance(e["src"], str):
            raise _err(spec, "entries", "/%s: src must be a path" % rel)
        for idk in ("uid", "gid"):
            if kind != "symlink" and not (isinstance(e.get(idk, 0), int) and e.get(idk, 0) >= 0):
                raise _err(spec, "entries", "/%s: %s must be an integer >= 0" % (rel, idk))
    return spec


# --- the input digest ------------------------------------------------------------------------------
def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                return h.hexdigest()
            h.update(block)


#: the marker vm-rootfs.sh writes at the top of a finished tree (it names the tree's key)
TREE_MARKER = ".meshfleet-rootfs"


def tree_key(path, exclude=()):
    """What a base tree contributes to the input digest: a cached tree built by
    roles/vms_local/files/vm-rootfs.sh is immutable and names itself (its marker's content);
    any other tree is described by a walk (path, type, mode, owner, size, mtime, link target)."""
    marker = os.path.join(path, TREE_MARKER)
    if os.path.isfile(marker):
        with open(marker, "rb") as f:
            return "marker:" + hashlib.sha256(f.read()).hexdigest()
    h = hashlib.sha256()
    for rel, st, target in walk_tree(path, exclude):
        h.update(("%s\0%o\0%d:%d\0%d\0%d\0%s\n" % (rel, st.st_mode, st.st_uid, st.st_gid, st.st_size,
                                                   st.st_mtime_ns, target or "")).encode("utf-8", "surrogateescape"))
    return "walk:" + h.hexdigest()


def excluded(rel, exclude):
    """Whether image path ``rel`` (no leading /) is under one of ``exclude`` (image paths)."""
    for x in exclude:
        x = x.strip("/")
        if rel == x or rel.startswith(x + "/"):
            return True
    return False


def walk_tree(root, exclude=()):
    """Yield ``(rel, lstat, link target)`` for everything under ``root`` (sorted, parents first,
    not crossing mounts), skipping ``exclude`` and the tree marker."""
    root_dev = os.lstat(root).st_dev

    def walk(rel):
        full = os.path.join(root, rel) if rel else root
        for name in sorted(os.listdir(full)):
            r = "%s/%s" % (rel, name) if rel else name
            if r == TREE_MARKER or r.startswith(TREE_MARKER) or excluded(r, exclude):
                continue
            p = os.path.join(root, r)
            st = os.lstat(p)
            target = os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
            yield r, st, target
            if stat.S_ISDIR(st.st_mode) and st.st_dev == root_dev:
                yield from walk(r)
    return walk("")


def canonical(spec, hash_file=sha256_file, hash_tree=tree_key):
    """The spec as the plain data its digest is taken of: sources replaced by content hashes,
    the base tree by its key."""
    data = spec.to_dict()
    for e in data["entries"]:
        if e["type"] == "file":
            e["src"] = "sha256:" + hash_file(e["src"])
            if e.get("mode") is None:
                e["mode"] = "from-source"
        elif e["type"] == "content" and isinstance(e["data"], bytes):
            e["data"] = "sha256:" + hashlib.sha256(e["data"]).hexdigest()
    if data["base"]:
        data["base"] = dict(tree=hash_tree(data["base"]["path"], data["base"].get("exclude") or ()),
                            exclude=sorted(data["base"].get("exclude") or ()))
    data["recipe"] = RECIPE
    data["created"] = CREATED
    return data


def inputs_digest(spec, hash_file=sha256_file, hash_tree=tree_key):
    """sha256 hex of everything that makes the image (see the module docstring)."""
    text = json.dumps(canonical(validate(spec), hash_file, hash_tree), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
