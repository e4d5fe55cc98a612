# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build OCI image archives of specs (module_utils/images/spec.py) with umoci and skopeo.

Cache: ``${MESHFLEET_IMAGE_CACHE:-~/.cache/meshfleet/images}``:

- ``<inputs digest>/<name>.tar``: the image as an OCI archive whose one manifest is annotated
  with the image's reference (``ctr -n k8s.io images import`` names it so), and
  ``<name>.json`` beside it (reference, manifest digest, size);
- ``base-<key>/oci``: an OCI layout holding the base tree as one layer, shared by every image
  on that base (same compressed blob, so a containerd stores it once);
- ``.hashes.json``: content hashes of source files by (path, size, mtime, inode), so a cache
  hit does not read 250 MB of binaries again.

An image is two layers at most: the base tree, and one layer of the spec's entries (made here
with ``tarfile``: owners and modes as the spec says, fixed mtimes) added with
``umoci raw add-layer``; ``umoci config`` writes entrypoint, cmd, env, user, working dir and
ports; ``skopeo copy oci:… oci-archive:…:<ref>`` writes the archive. Everything is built in a
temp dir under a lock and renamed into place: an interrupted build leaves nothing half-made,
and a second caller waits and takes the first one's result.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import time

from ansible_collections.meshfleet.mesh.plugins.module_utils.images import spec as specs
from ansible_collections.meshfleet.mesh.plugins.module_utils.ports import locked

#: what the builder runs, and the Debian package that has it
TOOLS = dict(umoci="umoci", skopeo="skopeo", gcc="gcc")
LAYER_MTIME = 1767225600  # CREATED (2026-01-01T00:00:00Z) as a timestamp
ISTIO_TAG_GROUP = ("proxyv2", "pilot")


class BuildError(Exception):
    """A build that failed; the message names the image and what to do."""


def cache_dir(path=None):
    return os.path.abspath(os.path.expanduser(
        path or os.environ.get("MESHFLEET_IMAGE_CACHE") or "~/.cache/meshfleet/images"))


class Hasher:
    """sha256 of source files, remembered in ``<cache>/.hashes.json`` by (path, size, mtime,
    inode, device): unchanged files are not read again."""

    def __init__(self, cache):
        self.path = os.path.join(cache, ".hashes.json")
        try:
            with open(self.path) as f:
                self.known = json.load(f)
        except (IOError, OSError, ValueError):
            self.known = {}
        self.dirty = False

    def __call__(self, path):
        try:
            st = os.stat(path)
        except OSError as e:
            raise BuildError("source file %s: %s" % (path, e.strerror))
        key = "%s|%d|%d|%d|%d" % (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
        if key not in self.known:
            self.known[key] = specs.sha256_file(path)
            self.dirty = True
        return self.known[key]

    def save(self):
        if not self.dirty:
            return
        tmp = "%s.tmp-%d" % (self.path, os.getpid())
        with open(tmp, "w") as f:
            json.dump(self.known, f, sort_keys=True)
        os.rename(tmp, self.path)
        self.dirty = False


class Planned:
    """A spec resolved against the cache: its input digest, reference and archive path."""

    def __init__(self, spec, digest, cache):
        self.spec = spec
        self.name = spec.name
        self.inputs_digest = digest
        self.ref = spec.ref_of(digest)
        self.tag = spec.tag_of(digest)
        self.dir = os.path.join(cache, digest)
        self.archive = os.path.join(self.dir, spec.name + ".tar")
        self.meta_path = os.path.join(self.dir, spec.name + ".json")

    @property
    def cached(self):
        return os.path.isfile(self.archive) and os.path.isfile(self.meta_path)

    def meta(self):
        with open(self.meta_path) as f:
            return json.load(f)


def check_sources(spec):
    """Fail naming the image and the missing file or tree."""
    for e in spec.entries:
        if e["type"] == "file" and not os.path.isfile(e["src"]):
            raise BuildError("image %s: %s: source %s does not exist" % (spec.name, e["path"], e["src"]))
    if spec.base and not os.path.isdir(os.path.join(spec.base["path"], "etc")):
        raise BuildError("image %s: base %s is not a root tree (no etc/); build it with "
                         "roles/vms_local/files/vm-rootfs.sh" % (spec.name, spec.base["path"]))


def resolve(image_specs, cache=None, hasher=None):
    """``[Planned]`` for ``image_specs`` (a list or a name -> spec dict), without building.

    proxyv2 and pilot, when both are given without an explicit tag, get one tag
    (:func:`spec.group_tag` of their input digests): Istio's manifests take one tag for both."""
    cache = cache_dir(cache)
    if isinstance(image_specs, dict):
        image_specs = list(image_specs.values())
    os.makedirs(cache, exist_ok=True)
    own = hasher is None
    hasher = hasher or Hasher(cache)
    for s in image_specs:
        specs.validate(s)
        check_sources(s)
    group = [s for s in image_specs if s.name in ISTIO_TAG_GROUP and s.tag is None]
    if len(group) > 1 and len(set(s.version for s in group)) == 1:
        tag = specs.group_tag(group[0].version, [specs.inputs_digest(s, hasher) for s in group])
        image_specs = [s.replace(tag=tag) if s in group else s for s in image_specs]
    out = [Planned(s, specs.inputs_digest(s, hasher), cache) for s in image_specs]
    if own:
        hasher.save()
    return out


def build(spec, cache=None, log=None):
    """Build one spec (or take it from the cache); return its result dict (:func:`build_planned`)."""
    return build_planned(resolve([spec], cache)[0], log=log)


def build_all(image_specs, cache=None, log=None):
    """Build every spec (proxyv2 and pilot sharing a tag); a list of result dicts."""
    return [build_planned(p, log=log) for p in resolve(image_specs, cache)]


def _result(planned, cached, seconds):
    meta = planned.meta()
    return dict(name=planned.name, ref=meta["ref"], tag=planned.tag, digest=meta["digest"],
                archive=planned.archive, size=os.path.getsize(planned.archive),
                inputs_digest=planned.inputs_digest, cached=cached, seconds=round(seconds, 2))


def build_planned(planned, log=None):
    """Build ``planned`` into the cache unless it is there; return dict(name, ref, tag, digest
    (the manifest digest containerd will list), archive, size, inputs_digest, cached, seconds)."""
    started = time.monotonic()
    if planned.cached:
        return _result(planned, True, time.monotonic() - started)
    cache = os.path.dirname(planned.dir)
    with locked(os.path.join(cache, ".%s.lock" % planned.inputs_digest)):
        if planned.cached:
            return _result(planned, True, time.monotonic() - started)
        _require_tools(planned.spec)
        tmp = os.path.join(cache, ".tmp-%s-%d" % (planned.inputs_digest[:16], os.getpid()))
        _clean_leftovers(cache, planned.inputs_digest[:16])
        try:
            os.makedirs(tmp)
            out = os.path.join(tmp, "out")
            os.makedirs(out)
            _build_into(planned, tmp, out, cache, log)
            if os.path.isdir(planned.dir):  # no meta: an incomplete dir from an older crash
                shutil.rmtree(planned.dir)
            os.rename(out, planned.dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return _result(planned, False, time.monotonic() - started)


def _clean_leftovers(cache, prefix):
    for name in os.listdir(cache):
        if name.startswith(".tmp-%s-" % prefix):
            pid = name.rsplit("-", 1)[-1]
            if pid.isdigit() and not os.path.exists("/proc/%s" % pid):
                shutil.rmtree(os.path.join(cache, name), ignore_errors=True)


def _require_tools(spec):
    need = ["umoci", "skopeo"]
    if any(e["type"] == "c_static" for e in spec.entries):
        need.append("gcc")
    missing = [t for t in need if not shutil.which(t)]
    if missing:
        raise BuildError("image %s: %s not found; install %s (scripts/setup.sh --images does)"
                         % (spec.name, ", ".join(missing), " ".join(TOOLS[t] for t in missing)))


def _run(argv, what, cwd=None):
    proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        output = proc.stdout.decode("utf-8", "replace")[-2000:]
        raise BuildError("%s failed (rc=%d): %s\n%s" % (what, proc.returncode, " ".join(argv), output))
    return proc.stdout.decode("utf-8", "replace")


def _build_into(planned, tmp, out, cache, log):
    spec = planned.spec
    layout = os.path.join(tmp, "oci")
    if spec.base:
        base_layout = base_image(spec.base, cache, log)
        _copy_layout(base_layout, layout)
        src = "%s:base" % layout
    else:
        _run(["umoci", "init", "--layout", layout], "umoci init")
        _run(["umoci", "new", "--image", "%s:empty" % layout], "umoci new")
        src = "%s:empty" % layout
    layer = os.path.join(tmp, "layer.tar")
    write_entries_layer(spec, layer, tmp)
    _run(["umoci", "raw", "add-layer", "--image", src, "--tag", "image",
          "--history.created", specs.CREATED, "--history.created_by", "meshfleet images: %s" % spec.name,
          layer], "image %s: umoci raw add-layer" % spec.name)
    _run(config_argv(spec, "%s:image" % layout), "image %s: umoci config" % spec.name)
    archive = os.path.join(out, spec.name + ".tar")
    _run(["skopeo", "copy", "--quiet", "oci:%s:image" % layout, "oci-archive:%s:%s" % (archive, planned.ref)],
         "image %s: skopeo copy" % spec.name)
    from ansible_collections.meshfleet.mesh.plugins.module_utils.images.containerd import archive_manifest
    ref, digest = archive_manifest(archive)
    meta = dict(name=spec.name, ref=ref, digest=digest, inputs_digest=planned.inputs_digest,
                size=os.path.getsize(archive))
    with open(os.path.join(out, spec.name + ".json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    if log:
        log("built %s (%d MB)" % (ref, meta["size"] >> 20))


def config_argv(spec, image):
    """``umoci config`` arguments for the spec's runtime settings (pure)."""
    argv = ["umoci", "config", "--image", image, "--created", specs.CREATED, "--author", "meshfleet",
            "--no-history", "--clear=config.entrypoint", "--clear=config.cmd"]
    for a in spec.entrypoint or []:
        argv += ["--config.entrypoint", a]
    for a in spec.cmd or []:
        argv += ["--config.cmd", a]
    env = dict(PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env.update(spec.env)
    argv.append("--clear=config.env")
    for k in sorted(env):
        argv += ["--config.env", "%s=%s" % (k, env[k])]
    if spec.user:
        argv += ["--config.user", spec.user]
    if spec.workdir:
        argv += ["--config.workingdir", spec.workdir]
    for p in spec.ports:
        argv += ["--config.exposedports", p]
    for k in sorted(spec.labels):
        argv += ["--config.label", "%s=%s" % (k, spec.labels[k])]
    return argv


def _copy_layout(src, dst):
    """A copy of an OCI layout whose blobs are hard links (blobs are immutable; umoci writes new
    ones beside them and rewrites index.json, which is copied)."""
    blobs = os.path.join(dst, "blobs", "sha256")
    os.makedirs(blobs)
    for name in os.listdir(os.path.join(src, "blobs", "sha256")):
        s = os.path.join(src, "blobs", "sha256", name)
        try:
            os.link(s, os.path.join(blobs, name))
        except OSError:
            shutil.copy2(s, os.path.join(blobs, name))
    for name in ("index.json", "oci-layout"):
        shutil.copy2(os.path.join(src, name), os.path.join(dst, name))


# --- layers --------------------------------------------------------------------------------------
def _info(path, kind, mode, uid=0, gid=0, size=0, linkname=""):
    ti = tarfile.TarInfo(path)
    ti.type = kind
    ti.mode = mode
    ti.uid, ti.gid = uid, gid
    ti.uname = ti.gname = ""
    ti.mtime = LAYER_MTIME
    ti.size = size
    ti.linkname = linkname
    return ti


def _accounts(spec):
    """/etc/passwd and /etc/group of the base plus the spec's users (bytes, bytes)."""
    def read(name):
        try:
            with open(os.path.join(spec.base["path"], "etc", name)) as f:
                return f.read()
        except IOError:
            return ""
    passwd, group = read("passwd"), read("group")
    have_users = set(line.split(":", 1)[0] for line in passwd.splitlines() if line)
    have_groups = set(line.split(":", 1)[0] for line in group.splitlines() if line)
    for u in spec.users:
        gid = u.get("gid", u["uid"])
        if u["name"] not in have_users:
            passwd += "%s:x:%d:%d::%s:%s\n" % (
                u["name"], u["uid"], gid, u.get("home", "/"), u.get("shell", "/usr/sbin/nologin"))
        if u["name"] not in have_groups:
            group += "%s:x:%d:\n" % (u["name"], gid)
    return passwd.encode("utf-8"), group.encode("utf-8")


def layer_members(spec):
    """The entries layer as ``[(TarInfo, data source)]`` (pure but for reading the base's account
    files and source files' modes): missing parent directories first (those the base lacks),
    then the entries in order; /etc/passwd and /etc/group when the spec adds users. A data
    source is None, bytes, ``('file', path)`` or ``('c_static', source)``."""
    base = spec.base["path"] if spec.base else None
    entries = list(spec.entries)
    if spec.users:
        passwd, group = _accounts(spec)
        entries = [e for e in entries if e["path"] not in ("/etc/passwd", "/etc/group")]
        entries += [specs.content("/etc/passwd", passwd), specs.content("/etc/group", group)]
    declared = set(e["path"].strip("/") for e in entries)
    members, made = [], set()
    for e in entries:
        rel = e["path"].strip("/")
        parts = rel.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in made or parent in declared:
                continue
            if base and os.path.lexists(os.path.join(base, parent)):
                continue
            made.add(parent)
            members.append((_info(parent, tarfile.DIRTYPE, 0o755), None))
        kind = e["type"]
        uid, gid = e.get("uid", 0), e.get("gid", 0)
        if kind == "dir":
            members.append((_info(rel, tarfile.DIRTYPE, e.get("mode") or 0o755, uid, gid), None))
        elif kind == "symlink":
            members.append((_info(rel, tarfile.SYMTYPE, 0o777, linkname=e["target"]), None))
        elif kind == "content":
            data = e["data"].encode("utf-8") if isinstance(e["data"], str) else e["data"]
            members.append((_info(rel, tarfile.REGTYPE, e.get("mode") or 0o644, uid, gid, len(data)), data))
        elif kind == "file":
            mode = e.get("mode")
            if mode is None:
                mode = stat.S_IMODE(os.stat(e["src"]).st_mode)
            members.append((_info(rel, tarfile.REGTYPE, mode, uid, gid), ("file", e["src"])))
        elif kind == "c_static":
            members.append((_info(rel, tarfile.REGTYPE, 0o755, uid, gid), ("c_static", e["source"])))
        made.add(rel)
    return members


def compile_static(source, workdir, name="prog"):
    src = os.path.join(workdir, name + ".c")
    out = os.path.join(workdir, name)
    with open(src, "w") as f:
        f.write(source)
    _run(["gcc", "-static", "-Os", "-s", "-o", out, src], "gcc -static (needs libc6-dev)")
    return out


def write_entries_layer(spec, path, workdir):
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for n, (ti, data) in enumerate(layer_members(spec)):
            if data is None:
                tar.addfile(ti)
            elif isinstance(data, bytes):
                tar.addfile(ti, io.BytesIO(data))
            else:
                src = data[1] if data[0] == "file" else compile_static(data[1], workdir, "c%d" % n)
                ti.size = os.path.getsize(src)
                with open(src, "rb") as f:
                    tar.addfile(ti, f)


def base_key(base, hash_tree=specs.tree_key):
    data = dict(tree=hash_tree(base["path"], base.get("exclude") or ()),
                exclude=sorted(base.get("exclude") or ()), recipe=specs.RECIPE)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def base_image(base, cache, log=None):
    """The OCI layout (tag ``base``) of a base tree as one layer, built once per key."""
    key = base_key(base)
    final = os.path.join(cache, "base-%s" % key)
    layout = os.path.join(final, "oci")
    if os.path.isfile(os.path.join(final, ".complete")):
        return layout
    with locked(os.path.join(cache, ".base-%s.lock" % key)):
        if os.path.isfile(os.path.join(final, ".complete")):
            return layout
        _clean_leftovers(cache, "base" + key)
        tmp = os.path.join(cache, ".tmp-base%s-%d" % (key, os.getpid()))
        try:
            os.makedirs(tmp)
            layer = os.path.join(tmp, "base.tar")
            write_tree_layer(base["path"], base.get("exclude") or (), layer)
            out = os.path.join(tmp, "out")
            os.makedirs(out)
            lay = os.path.join(out, "oci")
            _run(["umoci", "init", "--layout", lay], "umoci init")
            _run(["umoci", "new", "--image", "%s:empty" % lay], "umoci new")
            _run(["umoci", "raw", "add-layer", "--image", "%s:empty" % lay, "--tag", "base",
                  "--history.created", specs.CREATED, "--history.created_by", "meshfleet base tree", layer],
                 "base: umoci raw add-layer")
            with open(os.path.join(out, ".complete"), "w") as f:
                f.write(base["path"] + "\n")
            if os.path.isdir(final):
                shutil.rmtree(final)
            os.rename(out, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if log:
        log("built base layer %s from %s" % (key, base["path"]))
    return layout


def write_tree_layer(root, exclude, path):
    """A tar of the tree (owners, modes, mtimes, hard links kept; device files, sockets and
    fifos left out: the runtime makes /dev)."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        links = {}
        for rel, st, target in specs.walk_tree(root, exclude):
            mode = st.st_mode
            full = os.path.join(root, rel)
            if stat.S_ISDIR(mode):
                ti = tarfile.TarInfo(rel)
                ti.type = tarfile.DIRTYPE
            elif stat.S_ISLNK(mode):
                ti = tarfile.TarInfo(rel)
                ti.type = tarfile.SYMTYPE
                ti.linkname = target
            elif stat.S_ISREG(mode):
                ti = tarfile.TarInfo(rel)
                if st.st_nlink > 1 and (st.st_dev, st.st_ino) in links:
                    ti.type = tarfile.LNKTYPE
                    ti.linkname = links[(st.st_dev, st.st_ino)]
                else:
                    links[(st.st_dev, st.st_ino)] = rel
                    ti.size = st.st_size
            else:
                continue
            ti.mode = stat.S_IMODE(mode)
            ti.uid, ti.gid = st.st_uid, st.st_gid
            ti.uname = ti.gname = ""
            ti.mtime = int(st.st_mtime)
            if ti.type == tarfile.REGTYPE:
                with open(full, "rb") as f:
                    tar.addfile(ti, f)
            else:
                tar.addfile(ti)
