# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""tools/fetch-tools.py: the tools SOURCE choice (auto | release | build).

A local HTTP server on 127.0.0.1 serves release artefacts in the exact upstream layouts
(MESHFLEET_TOOLS_MIRROR=<server> reads <server>/<upstream host>/<upstream path>): the
Kubernetes release binaries with a ``.sha256`` beside each (hash only), the etcd release
archive with the release's ``SHA256SUMS`` list, the Istio release archive with its
``.sha256`` ("<hash> <name>", as istio/release-builder writes it) and the istio-sidecar
.deb (an ``ar`` archive with control.tar.gz/data.tar.gz, as fpm makes it) with its
``.sha256``. The binaries inside are small executable scripts; the script is run for
real (subprocess) against that server, with its cache in a temp folder.
"""

from __future__ import absolute_import, division, print_function

import hashlib
import importlib.util
import io
import os
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SCRIPT = os.path.join(REPO, "tools", "fetch-tools.py")

_spec = importlib.util.spec_from_file_location("fetch_tools", SCRIPT)
ft = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ft)

VERSIONS = ft.read_versions()
GOOS, GOARCH = ft.go_platform()
K8S, ETCD, ISTIO = VERSIONS["K8S_VERSION"], VERSIONS["ETCD_VERSION"], VERSIONS["ISTIO_RELEASE_VERSION"]

pytestmark = pytest.mark.skipif(GOOS != "linux", reason="the release layouts used are the linux ones")


def sha(data):
    return hashlib.sha256(data).hexdigest()


def script(name):
    return ("#!/bin/sh\necho '%s from the release'\n" % name).encode()


def tar_gz(files):
    """{member: (bytes, mode)} -> .tar.gz bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 1700000000
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def ar(members):
    """[(name, bytes)] -> a Debian package (the common `ar` format dpkg reads)."""
    out = [b"!<arch>\n"]
    for name, data in members:
        header = "%-16s%-12d%-6d%-6d%-8s%-10d`\n" % (name, 1700000000, 0, 0, "100644", len(data))
        out.append(header.encode("ascii") + data + (b"\n" if len(data) % 2 else b""))
    return b"".join(out)


SIDECAR_FILES = {
    "./usr/local/bin/pilot-agent": (script("pilot-agent"), 0o755),
    "./usr/local/bin/envoy": (script("envoy"), 0o755),
    "./usr/local/bin/istio-start.sh": (b"#!/bin/bash\nexec pilot-agent proxy\n", 0o755),
    "./lib/systemd/system/istio.service": (b"[Unit]\nDescription=istio-sidecar\n", 0o644),
    "./var/lib/istio/envoy/sidecar.env": (b"# sidecar.env\n", 0o644),
    "./var/lib/istio/envoy/envoy_bootstrap_tmpl.json": (b'{"node": {}}\n', 0o644),
}


def sidecar_deb():
    control = tar_gz({"./control": (b"Package: istio-sidecar\nVersion: %s\n" % ISTIO.encode(), 0o644),
                      "./postinst": (b"#!/bin/sh\nuseradd istio-proxy\n", 0o755)})
    return ar([("debian-binary", b"2.0\n"), ("control.tar.gz", control),
               ("data.tar.gz", tar_gz(SIDECAR_FILES))])


def release_tree(deb=None):
    """{url path: bytes}: the upstream layouts under the mirror."""
    files = {}
    k8s = "/dl.k8s.io/release/%s/bin/%s/%s" % (K8S, GOOS, GOARCH)
    for tool in ft.K8S_TOOLS:
        files["%s/%s" % (k8s, tool)] = script(tool)
        files["%s/%s.sha256" % (k8s, tool)] = sha(script(tool)).encode()
    name = "etcd-%s-%s-%s" % (ETCD, GOOS, GOARCH)
    etcd = tar_gz({name + "/etcd": (script("etcd"), 0o755), name + "/etcdctl": (script("etcdctl"), 0o755),
                   name + "/README.md": (b"etcd\n", 0o644)})
    base = "/github.com/etcd-io/etcd/releases/download/%s" % ETCD
    files["%s/%s.tar.gz" % (base, name)] = etcd
    files[base + "/SHA256SUMS"] = ("%s  etcd-%s-darwin-amd64.zip\n%s  %s.tar.gz\n%s  etcd-%s-linux-arm64.tar.gz\n" % (
        sha(b"other"), ETCD, sha(etcd), name, sha(b"arm"), ETCD)).encode()
    name = "istio-%s-%s-%s.tar.gz" % (ISTIO, GOOS, GOARCH)
    istio = tar_gz({"istio-%s/bin/istioctl" % ISTIO: (script("istioctl"), 0o755),
                    "istio-%s/manifest.yaml" % ISTIO: (b"version: %s\n" % ISTIO.encode(), 0o644)})
    base = "/github.com/istio/istio/releases/download/%s" % ISTIO
    files["%s/%s" % (base, name)] = istio
    files["%s/%s.sha256" % (base, name)] = ("%s %s\n" % (sha(istio), name)).encode()
    deb = sidecar_deb() if deb is None else deb
    base = "/storage.googleapis.com/istio-release/releases/%s/deb" % ISTIO
    files[base + "/istio-sidecar.deb"] = deb
    files[base + "/istio-sidecar.deb.sha256"] = ("%s istio-sidecar.deb\n" % sha(deb)).encode()
    return files


class Mirror(object):
    """The release files over HTTP on 127.0.0.1, counting requests; `cut` paths send half
    their body and close (as many times as asked), `slow` paths trickle."""

    def __init__(self, files):
        self.files, self.requests, self.cut, self.slow = files, [], {}, set()
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                mirror.requests.append(self.path)
                data = mirror.files.get(self.path)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if mirror.cut.get(self.path, 0) > 0:
                    mirror.cut[self.path] -= 1
                    self.wfile.write(data[:len(data) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if self.path in mirror.slow:
                    for i in range(0, len(data), max(1, len(data) // 8)):
                        self.wfile.write(data[i:i + max(1, len(data) // 8)])
                        self.wfile.flush()
                        time.sleep(0.25)
                    return
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def downloads(self):
        return [p for p in self.requests if not p.endswith((".sha256", "SHA256SUMS"))]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror():
    m = Mirror(release_tree())
    yield m
    m.stop()


@pytest.fixture
def env(tmp_path, mirror):
    e = dict(os.environ)
    for k in list(e):
        if k.startswith("MESHFLEET_TOOLS"):
            del e[k]
    e.update(MESHFLEET_TOOLS_CACHE=str(tmp_path / "cache"), MESHFLEET_TOOLS_MIRROR=mirror.url,
             MESHFLEET_TOOLS_SOURCE="release", MESHFLEET_TOOLS_RETRIES="2",
             MESHFLEET_TOOLS_TIMEOUT="10", MESHFLEET_TOOLS_PROBE_TIMEOUT="3")
    return e


def run(env, *args):
    return subprocess.run([sys.executable, SCRIPT] + list(args), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=120, check=False)


def bin_of(p):
    last = p.stdout.strip().splitlines()[-1]
    assert last.startswith("MESHFLEET_TOOLS_BIN="), p.stdout
    return last.split("=", 1)[1]


def cached_files(env):
    root = env["MESHFLEET_TOOLS_CACHE"]
    out = []
    for d, dummy, names in os.walk(root):
        out += [os.path.relpath(os.path.join(d, n), root) for n in names if n != ".lock"]
    return sorted(out)


TOOLS = ["kubectl", "kube-apiserver", "etcd", "istioctl", "pilot-agent", "envoy"]


# --- a good fetch, and the re-run -------------------------------------------------------

def test_release_fetch_installs_verified_binaries_and_reuses_the_cache(env, mirror):
    p = run(env, *TOOLS)
    assert p.returncode == 0, p.stderr
    bin_dir = bin_of(p)
    assert bin_dir.startswith(os.path.join(env["MESHFLEET_TOOLS_CACHE"], "release-"))
    for tool in TOOLS:
        path = os.path.join(bin_dir, tool)
        assert os.stat(path).st_mode & stat.S_IXUSR, tool
        assert subprocess.run([path], stdout=subprocess.PIPE, check=True).stdout == b"%s from the release\n" % tool.encode()
    key_dir = os.path.dirname(bin_dir)
    # the sidecar package's files, where the VM role looks for them (<bin>/../share/istio)
    share = os.path.join(key_dir, "share", "istio")
    assert sorted(os.listdir(share)) == sorted(ft.SIDECAR_SHARE.values())
    with open(os.path.join(share, "postinst.sh"), "rb") as f:
        assert f.read() == b"#!/bin/sh\nuseradd istio-proxy\n"
    with open(os.path.join(share, "envoy_bootstrap.json"), "rb") as f:
        assert f.read() == b'{"node": {}}\n'
    stamp = ft.ReleaseCache(env["MESHFLEET_TOOLS_CACHE"], os.path.basename(key_dir)).stamp("etcd")
    assert stamp["source"] == "release" and stamp["artefact"] == "etcd-%s-%s-%s.tar.gz" % (ETCD, GOOS, GOARCH)
    assert stamp["sha256"] == sha(script("etcd"))
    assert os.listdir(os.path.join(key_dir, "downloads")) == []
    assert "sha256" in p.stderr and "verified" in p.stderr
    # only what was asked for: no kube-scheduler, kwok, ...
    assert sorted(os.listdir(bin_dir)) == sorted(TOOLS)
    assert not any("kube-scheduler" in r or "kwok" in r for r in mirror.requests)
    # one download per artefact (the sidecar .deb serves pilot-agent and envoy)
    assert len(mirror.downloads()) == 5

    before = list(mirror.requests)
    again = run(env, *TOOLS)
    assert again.returncode == 0, again.stderr
    assert bin_of(again) == bin_dir
    assert mirror.requests == before, "a re-run must download nothing"
    assert "cached" in again.stderr
    assert run(env, "--check", *TOOLS).returncode == 0
    assert run(env, "--print-bin", *TOOLS).stdout.strip() == bin_dir
    assert run(env, "--check", "kube-scheduler").returncode == 1


def test_progress_lines_while_a_download_runs(env, mirror):
    path = "/dl.k8s.io/release/%s/bin/%s/%s/kubectl" % (K8S, GOOS, GOARCH)
    mirror.files[path] = script("kubectl") + b"#" * 4000
    mirror.files[path + ".sha256"] = sha(mirror.files[path]).encode()
    mirror.slow.add(path)
    env["MESHFLEET_TOOLS_PROGRESS_SECONDS"] = "0.5"
    p = run(env, "kubectl")
    assert p.returncode == 0, p.stderr
    ticks = [ln for ln in p.stderr.splitlines() if ln.startswith("[tools]   kubectl: ") and " after " in ln]
    assert ticks, p.stderr
    assert "bytes" not in ticks[0] and "MiB" in ticks[0]


# --- refusals: nothing is cached ------------------------------------------------------------

def test_checksum_mismatch_is_refused_and_nothing_cached(env, mirror):
    path = "/dl.k8s.io/release/%s/bin/%s/%s/kubectl" % (K8S, GOOS, GOARCH)
    good = sha(mirror.files[path])
    mirror.files[path] = b"#!/bin/sh\necho tampered\n"
    p = run(env, "kubectl")
    assert p.returncode == 1
    err = p.stderr
    assert "checksum mismatch for kubectl" in err
    assert good in err and sha(b"#!/bin/sh\necho tampered\n") in err
    assert mirror.url + path in err
    assert not [f for f in cached_files(env) if "/bin/" in f or "/stamps/" in f], cached_files(env)
    assert run(env, "--check", "kubectl").returncode == 1


def test_checksum_mismatch_inside_the_sidecar_package(env, mirror):
    base = "/storage.googleapis.com/istio-release/releases/%s/deb/istio-sidecar.deb" % ISTIO
    mirror.files[base + ".sha256"] = ("%s istio-sidecar.deb\n" % sha(b"something else")).encode()
    p = run(env, "pilot-agent")
    assert p.returncode == 1
    assert "checksum mismatch for istio-sidecar.deb" in p.stderr and sha(b"something else") in p.stderr
    assert not [f for f in cached_files(env) if "/bin/" in f or "/stamps/" in f or "/share/" in f]


def test_404_names_the_url(env, mirror):
    name = "istio-%s-%s-%s.tar.gz" % (ISTIO, GOOS, GOARCH)
    url_path = "/github.com/istio/istio/releases/download/%s/%s" % (ISTIO, name)
    del mirror.files[url_path]
    p = run(env, "istioctl")
    assert p.returncode == 1
    assert "%s%s returned HTTP 404" % (mirror.url, url_path) in p.stderr
    assert not [f for f in cached_files(env) if "/bin/" in f or "/stamps/" in f]


def test_missing_checksum_file_is_refused(env, mirror):
    path = "/dl.k8s.io/release/%s/bin/%s/%s/kubectl.sha256" % (K8S, GOOS, GOARCH)
    del mirror.files[path]
    p = run(env, "kubectl")
    assert p.returncode == 1 and mirror.url + path + " returned HTTP 404" in p.stderr
    assert mirror.downloads() == [], "no artefact is downloaded without its published sha256"


def test_interrupted_download_is_retried_then_refused(env, mirror):
    path = "/github.com/etcd-io/etcd/releases/download/%s/etcd-%s-%s-%s.tar.gz" % (ETCD, ETCD, GOOS, GOARCH)
    mirror.cut[path] = 99
    p = run(env, "etcd")
    assert p.returncode == 1
    assert "cut off" in p.stderr and "gave up after 2 attempts" in p.stderr, p.stderr
    assert mirror.requests.count(path) == 2
    assert not [f for f in cached_files(env) if "/bin/" in f or "/stamps/" in f or "/downloads/" in f], \
        cached_files(env)


def test_interrupted_download_recovers_on_retry(env, mirror):
    path = "/github.com/etcd-io/etcd/releases/download/%s/etcd-%s-%s-%s.tar.gz" % (ETCD, ETCD, GOOS, GOARCH)
    mirror.cut[path] = 1
    p = run(env, "etcd")
    assert p.returncode == 0, p.stderr
    assert "retrying" in p.stderr and mirror.requests.count(path) == 2
    out = subprocess.run([os.path.join(bin_of(p), "etcd")], stdout=subprocess.PIPE, check=True).stdout
    assert out == b"etcd from the release\n"


def test_stale_partial_files_are_never_used(env, mirror):
    p = run(env, "kubectl")
    bin_dir = bin_of(p)
    key_dir = os.path.dirname(bin_dir)
    # what a killed run leaves behind: temp files only, never a stamped binary
    for leftover in ("bin/.kube-apiserver.tmp.123", "downloads/kube-apiserver.part.123"):
        with open(os.path.join(key_dir, leftover), "wb") as f:
            f.write(b"half")
    p = run(env, "kube-apiserver")
    assert p.returncode == 0, p.stderr
    assert not [n for n in os.listdir(bin_dir) if ".tmp." in n]
    assert os.listdir(os.path.join(key_dir, "downloads")) == []
    # a binary whose size no longer matches its stamp is fetched again
    with open(os.path.join(bin_dir, "kubectl"), "ab") as f:
        f.write(b"# changed\n")
    assert run(env, "--check", "kubectl").returncode == 1
    assert run(env, "kubectl").returncode == 0 and run(env, "--check", "kubectl").returncode == 0


# --- auto ---------------------------------------------------------------------------------

def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_choose():
    assert ft.choose("build", None, None, None) == ("build", "requested")
    assert ft.choose("release", None, None, None) == ("release", "requested")

    def never():
        pytest.fail("probed although a cached set exists")

    assert ft.choose("auto", True, False, never)[0] == "release"
    assert ft.choose("auto", False, True, never)[0] == "build"
    assert ft.choose("auto", False, False, lambda: None)[0] == "release"
    source, reason = ft.choose("auto", False, False, lambda: "cannot reach x: refused")
    assert source == "build" and "cannot reach x: refused" in reason


def fake_build_script(tmp_path):
    """Stands in for tools/build-tools.sh (MESHFLEET_TOOLS_BUILD_SCRIPT): records its
    arguments; --check/--print-bin behave as for an empty cache; a build writes the tools."""
    out = tmp_path / "built"
    rec = tmp_path / "build-calls"
    path = tmp_path / "build.sh"
    path.write_text("""#!/bin/bash
echo "$*" >> %(rec)s
case " $* " in
  *" --check "*) exit 1 ;;
  *" --print-bin "*) echo %(out)s; exit 0 ;;
esac
mkdir -p %(out)s
for a in "$@"; do
  case "$a" in --*|build) ;; *) printf '#!/bin/sh\\necho %%s built\\n' "$a" > %(out)s/$a; chmod +x %(out)s/$a ;; esac
done
echo "MESHFLEET_TOOLS_BIN=%(out)s"
""" % dict(rec=rec, out=out))
    return str(path), rec, out


def test_auto_builds_when_the_mirror_is_unreachable(env, tmp_path):
    env.update(MESHFLEET_TOOLS_SOURCE="auto", MESHFLEET_TOOLS_MIRROR="http://127.0.0.1:%d" % closed_port())
    explain = run(env, "--explain", "istioctl")
    assert explain.returncode == 0, explain.stderr
    assert "source=build" in explain.stdout and "not reachable" in explain.stdout
    build, rec, out = fake_build_script(tmp_path)
    env["MESHFLEET_TOOLS_BUILD_SCRIPT"] = build
    p = run(env, "istioctl", "pilot-agent", "envoy")
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if "source auto" in ln]
    assert len(lines) == 1 and "building the tools from source" in lines[0] and "cannot reach" in lines[0]
    assert bin_of(p) == str(out)
    calls = rec.read_text().splitlines()
    # only the needed, buildable tools are built (no Envoy build exists)
    assert "--source build istioctl pilot-agent" in calls
    assert sorted(os.listdir(str(out))) == ["istioctl", "pilot-agent"]


def test_auto_takes_releases_when_reachable_and_then_needs_no_network(env, mirror, tmp_path):
    env["MESHFLEET_TOOLS_SOURCE"] = "auto"
    build, rec = fake_build_script(tmp_path)[:2]
    env["MESHFLEET_TOOLS_BUILD_SCRIPT"] = build
    p = run(env, "istioctl")
    assert p.returncode == 0, p.stderr
    assert "the release artefacts can be fetched -> release" in p.stderr
    bin_dir = bin_of(p)
    assert "--source build istioctl" not in rec.read_text()
    mirror.stop()
    again = run(env, "istioctl")
    assert again.returncode == 0 and bin_of(again) == bin_dir
    assert run(env, "--print-bin", "istioctl").stdout.strip() == bin_dir
    assert run(env, "--check", "istioctl").returncode == 0


def test_release_builds_what_no_release_provides(env, mirror, tmp_path):
    build, rec, out = fake_build_script(tmp_path)
    env["MESHFLEET_TOOLS_BUILD_SCRIPT"] = build
    p = run(env, "istioctl", "pilot-discovery")
    assert p.returncode == 0, p.stderr
    assert "no verifiable release artefact for pilot-discovery" in p.stderr
    bin_dir = bin_of(p)
    assert sorted(os.listdir(bin_dir)) == ["istioctl", "pilot-discovery"]
    assert "--source build pilot-discovery" in rec.read_text().splitlines()
    stamp = ft.ReleaseCache(env["MESHFLEET_TOOLS_CACHE"], os.path.basename(os.path.dirname(bin_dir))).stamp(
        "pilot-discovery")
    assert stamp["source"] == "build" and stamp["built"] == str(out / "pilot-discovery")


def test_bad_source_is_refused(env):
    env["MESHFLEET_TOOLS_SOURCE"] = "download"
    p = run(env, "istioctl")
    assert p.returncode == 2 and "MESHFLEET_TOOLS_SOURCE=download" in p.stderr
    p = subprocess.run(["bash", os.path.join(REPO, "tools", "build-tools.sh"), "--source", "nope"],
                       env=env, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert p.returncode == 1 and "choose auto, release or build" in p.stderr


# --- what an inventory needs ------------------------------------------------------------------

KWOK = sorted(ft.KWOK_CLUSTER_TOOLS)


@pytest.mark.parametrize("inventory, method, expected", [
    ({}, None, []),
    ({"clusters": {"a": {"provider": "aks"}, "g": {"provider": "gke"}, "e": {"provider": "eks"}}}, None,
     ["istioctl"]),
    ({"clusters": {"m": {"provider": "minikube"}}}, None, ["istioctl"]),
    ({"clusters": {"k": {"provider": "kwok"}}}, None, KWOK),
    ({"clusters": {"a": {"provider": "aks"}}, "vm_groups": {"web": {"provider": "ec2"}}}, None,
     ["envoy", "istioctl", "pilot-agent"]),
    ({"clusters": {"a": {"provider": "aks"}}, "vm_groups": {"web": {"hosts": {"vm1": {"ansible_host": "h"}}}}},
     "package", ["istioctl"]),
    ({"clusters": {"a": {"provider": "aks"}},
      "vm_groups": {"web": {"hosts": {"vm1": {"meshfleet_vm_install_method": "package"}}}}}, None, ["istioctl"]),
    ({"clusters": {"a": {"provider": "aks"}},
      "vm_groups": {"web": {"hosts": {"vm1": {"meshfleet_vm_install_method": "package"}, "vm2": {}}}}}, None,
     ["envoy", "istioctl", "pilot-agent"]),
    ({"clusters": {"k": {"provider": "kwok"}, "a": {"provider": "aks"}}, "vm_groups": {"db": {}}}, None,
     sorted(KWOK + ["pilot-agent", "envoy"])),
])
def test_needed_tools(inventory, method, expected):
    assert sorted(ft.needed_tools(inventory, method)) == expected


def test_needed_tools_of_the_shipped_inventories(env):
    for name in ("local", "multicloud-example", "primary-remote"):
        folder = os.path.join(REPO, "inventories", name)
        with open(os.path.join(folder, "mesh.meshfleet.yml")) as f:
            expected = ft.needed_tools(yaml.safe_load(f))
        p = run(env, "--needed", "--inventory", folder)
        assert p.returncode == 0, p.stderr
        assert p.stdout.split() == expected
    local = run(env, "--needed", "--inventory", os.path.join(REPO, "inventories", "local")).stdout.split()
    assert local == list(ft.ALL_TOOLS)    # kwok clusters + netns VMs (binaries)
    p = run(env, "--needed", "--inventory", os.path.join(REPO, "inventories", "nope"))
    assert p.returncode == 1 and "inventories/nope does not exist" in p.stderr


def test_mirror_and_per_artefact_urls():
    bases = ft.release_bases({"MESHFLEET_TOOLS_MIRROR": "http://m:1/x/",
                              "MESHFLEET_TOOLS_ISTIO_SIDECAR_URL": "https://own/sidecar/"})
    assert bases["k8s"] == "http://m:1/x/dl.k8s.io/release"
    assert bases["etcd"] == "http://m:1/x/github.com/etcd-io/etcd/releases/download"
    assert bases["istio_sidecar"] == "https://own/sidecar"
    arts = {a.name: a for a in ft.artefacts(VERSIONS, "linux", "amd64", ft.release_bases({}))}
    assert arts["kubectl"].url == "https://dl.k8s.io/release/%s/bin/linux/amd64/kubectl" % K8S
    assert arts["kubectl"].checksum == ("file", arts["kubectl"].url + ".sha256")
    etcd = arts["etcd-%s-linux-amd64.tar.gz" % ETCD]
    assert etcd.url == "https://github.com/etcd-io/etcd/releases/download/%s/etcd-%s-linux-amd64.tar.gz" % (ETCD, ETCD)
    assert etcd.checksum == ("list", "https://github.com/etcd-io/etcd/releases/download/%s/SHA256SUMS" % ETCD)
    istio = arts["istio-%s-linux-amd64.tar.gz" % ISTIO]
    assert istio.tools == {"istioctl": "istio-%s/bin/istioctl" % ISTIO}
    assert arts["istio-sidecar.deb"].url == (
        "https://storage.googleapis.com/istio-release/releases/%s/deb/istio-sidecar.deb" % ISTIO)
    assert arts["kwok-linux-amd64"].url == (
        "https://github.com/kubernetes-sigs/kwok/releases/download/%s/kwok-linux-amd64" % VERSIONS["KWOK_VERSION"])


def test_kwok_needs_a_pinned_sha256():
    arts = ft.artefacts(dict(VERSIONS, KWOK_RELEASE_SHA256_KWOK_LINUX_AMD64=""), "linux", "amd64",
                        ft.release_bases({}))
    plan, unavailable = ft.release_plan(["kwok", "kubectl"], arts)
    assert [a.name for a in plan] == ["kubectl"] and unavailable == ["kwok"]
    arts = ft.artefacts(dict(VERSIONS, KWOK_RELEASE_SHA256_KWOK_LINUX_AMD64="AB" * 32), "linux", "amd64",
                        ft.release_bases({}))
    plan, unavailable = ft.release_plan(["kwok"], arts)
    assert [a.name for a in plan] == ["kwok-linux-amd64"] and plan[0].checksum == ("pinned", "ab" * 32)


def test_parse_checksum_formats():
    h = sha(b"x")
    assert ft.parse_checksum(h + "\n", "kubectl", "u") == h                         # dl.k8s.io
    assert ft.parse_checksum("%s istio.tar.gz\n" % h, "istio.tar.gz", "u") == h     # release-builder
    assert ft.parse_checksum("%s  a.zip\n%s  b.tar.gz\n" % (sha(b"a"), h), "b.tar.gz", "u") == h
    with pytest.raises(ft.FetchError, match="u has no sha256 for c.tar.gz"):
        ft.parse_checksum("%s  a.zip\n%s  b.tar.gz\n" % (h, h), "c.tar.gz", "u")
    with pytest.raises(ft.FetchError):
        ft.parse_checksum("<html>not found</html>", "kubectl", "u")


@pytest.mark.skipif(not shutil.which("dpkg-deb"), reason="dpkg-deb builds the package here")
@pytest.mark.parametrize("compression", ["gzip", "xz"])
def test_a_dpkg_built_sidecar_package(tmp_path, compression):
    """The .deb reader against a package dpkg-deb made (fpm writes the same ar layout)."""
    root = tmp_path / "pkg"
    for member, (data, mode) in SIDECAR_FILES.items():
        path = root / member[2:]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN" / "control").write_text(
        "Package: istio-sidecar\nVersion: 1.30.4\nArchitecture: amd64\nMaintainer: t <t@t>\nDescription: t\n")
    (root / "DEBIAN" / "postinst").write_text("#!/bin/sh\nexit 0\n")
    (root / "DEBIAN" / "postinst").chmod(0o755)
    deb = tmp_path / "istio-sidecar.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Z" + compression, "--build", str(root), str(deb)],
                   check=True, stdout=subprocess.PIPE)
    work = tmp_path / "work"
    work.mkdir()
    tars = ft.deb_members(str(deb), str(work))
    ft.extract_member(tars["data"], "usr/local/bin/pilot-agent", str(tmp_path / "pilot-agent"), "deb")
    assert (tmp_path / "pilot-agent").read_bytes() == script("pilot-agent")
    ft.extract_member(tars["control"], "postinst", str(tmp_path / "postinst"), "deb")
    assert (tmp_path / "postinst").read_text() == "#!/bin/sh\nexit 0\n"
    with pytest.raises(ft.FetchError, match="has no usr/local/bin/nothing"):
        ft.extract_member(tars["data"], "usr/local/bin/nothing", str(tmp_path / "x"), "deb")


# --- with the real built binaries ---------------------------------------------------------------

@pytest.mark.integration
def test_release_layout_of_the_real_binaries(env, tmp_path):
    """The built binaries (those built so far) packed in the upstream layouts, fetched, and run."""
    build = os.path.join(REPO, "tools", "build-tools.sh")
    built = subprocess.run(["bash", build, "--source", "build", "--print-bin"], stdout=subprocess.PIPE,
                           universal_newlines=True, check=False).stdout.strip()
    # tool -> (arguments, what its output must contain)
    probes = {"kube-apiserver": (["--version"], "Kubernetes " + K8S),
              "kubectl": (["version", "--client"], K8S),
              "etcd": (["--version"], ETCD.lstrip("v")),
              "istioctl": (["version", "--remote=false"], "")}
    tools = [t for t in probes if built and subprocess.run(
        ["bash", build, "--source", "build", "--check", t], stderr=subprocess.PIPE, check=False).returncode == 0]
    if not tools:
        pytest.skip("none of %s is built yet (tools/build-tools.sh --check)" % ", ".join(probes))

    def real(name):
        with open(os.path.join(built, name), "rb") as f:
            return f.read()

    files = release_tree()
    for tool in ("kube-apiserver", "kubectl"):
        if tool in tools:
            k8s = "/dl.k8s.io/release/%s/bin/%s/%s/%s" % (K8S, GOOS, GOARCH, tool)
            files[k8s] = real(tool)
            files[k8s + ".sha256"] = sha(files[k8s]).encode()
    if "etcd" in tools:
        name = "etcd-%s-%s-%s" % (ETCD, GOOS, GOARCH)
        etcd = tar_gz({name + "/etcd": (real("etcd"), 0o755)})
        base = "/github.com/etcd-io/etcd/releases/download/%s" % ETCD
        files["%s/%s.tar.gz" % (base, name)] = etcd
        files[base + "/SHA256SUMS"] = ("%s  %s.tar.gz\n" % (sha(etcd), name)).encode()
    if "istioctl" in tools:
        name = "istio-%s-%s-%s.tar.gz" % (ISTIO, GOOS, GOARCH)
        istio = tar_gz({"istio-%s/bin/istioctl" % ISTIO: (real("istioctl"), 0o755)})
        base = "/github.com/istio/istio/releases/download/%s" % ISTIO
        files["%s/%s" % (base, name)] = istio
        files["%s/%s.sha256" % (base, name)] = ("%s %s\n" % (sha(istio), name)).encode()
    m = Mirror(files)
    try:
        env["MESHFLEET_TOOLS_MIRROR"] = m.url
        p = run(env, *tools)
        assert p.returncode == 0, p.stderr
        b = bin_of(p)
        for tool in tools:
            args, expect = probes[tool]
            out = subprocess.run([os.path.join(b, tool)] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 universal_newlines=True, check=True).stdout
            assert expect in out, out
            with open(os.path.join(b, tool), "rb") as f:
                assert f.read() == real(tool)
    finally:
        m.stop()


def test_build_tools_sh_hands_a_cloud_inventory_to_the_release_fetch(env, mirror, tmp_path):
    """tools/build-tools.sh --inventory (what `make demo` runs): only what the mesh needs."""
    inv = tmp_path / "mesh.meshfleet.yml"
    inv.write_text(yaml.safe_dump({
        "plugin": "meshfleet.mesh.topology",
        "clusters": {"east": {"provider": "aks", "network": "n1"}, "west": {"provider": "eks", "network": "n2"}},
        "vm_groups": {"db": {"cluster": "east", "provider": "ec2", "settings": {"count": 1}}}}))
    env["MESHFLEET_TOOLS_PYTHON"] = sys.executable
    p = subprocess.run(["bash", os.path.join(REPO, "tools", "build-tools.sh"), "--inventory", str(tmp_path)],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    bin_dir = bin_of(p)
    assert sorted(os.listdir(bin_dir)) == ["envoy", "istioctl", "pilot-agent"]
    assert sorted(os.path.basename(r) for r in mirror.downloads()) == [
        "istio-%s-%s-%s.tar.gz" % (ISTIO, GOOS, GOARCH), "istio-sidecar.deb"]
    check = subprocess.run(["bash", os.path.join(REPO, "tools", "build-tools.sh"), "--check", "--inventory",
                            str(inv)], env=env, check=False)
    assert check.returncode == 0
    printed = subprocess.run(["bash", os.path.join(REPO, "tools", "build-tools.sh"), "--print-bin",
                              "--inventory", str(inv)], env=env, stdout=subprocess.PIPE,
                             universal_newlines=True, check=True).stdout.strip()
    assert printed == bin_dir
