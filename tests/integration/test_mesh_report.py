# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/report.yml on the local kwok mesh, checked in a real headless browser.

The mesh is the ``site`` fixture of test_site_clusters.py (inventories/local's three kwok
clusters on two networks, without its netns VMs) converged by site.yml. The page is opened
in Debian's Chromium (``scripts/setup.sh --browser`` installs it): ``--dump-dom`` of a copy
with a small probe script appended (the report itself has no script) says what the browser
laid out — the SVG picture's size and each cluster node's box — and ``--screenshot`` takes
a picture of the page.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time

import pytest

import helpers
# the fixture `site` (module-scoped: this module gets its own mesh)
from test_site_clusters import CLUSTERS, site  # noqa: F401  pylint: disable=unused-import

sys.path.insert(0, helpers.COLLECTIONS)
from ansible_collections.meshfleet.mesh.plugins.module_utils import pki  # noqa: E402

assert_ok = helpers.assert_ok
NETWORKS = {"cluster1": "network1", "cluster2": "network1", "cluster3": "network2"}

# appended to a copy of the page: writes what the browser laid out into the DOM
PROBE = """<script>
(function () {
  var svg = document.getElementById('topology-svg');
  var out = {svg: null, clusters: {}, links: [], networks: []};
  if (svg) {
    var r = svg.getBoundingClientRect();
    out.svg = {width: r.width, height: r.height};
    svg.querySelectorAll('g.cluster').forEach(function (g) {
      var b = g.getBBox();
      out.clusters[g.getAttribute('data-cluster')] = {width: b.width, height: b.height};
    });
    svg.querySelectorAll('path.link').forEach(function (p) {
      out.links.push({a: p.getAttribute('data-a'), b: p.getAttribute('data-b'),
                      reads: p.getAttribute('data-reads'), length: p.getTotalLength(),
                      cls: p.getAttribute('class')});
    });
    svg.querySelectorAll('g.net').forEach(function (g) { out.networks.push(g.getAttribute('data-network')); });
  }
  var pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


def chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("the report test needs Debian's Chromium: scripts/setup.sh --browser installs it "
                    "(apt-get install chromium)", pytrace=False)
    return path


def browser(*args, timeout=120):
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--no-first-run", "--disable-extensions", "--user-data-dir=" + args[0]] + list(args[1:])
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=timeout, check=False)
    assert p.returncode == 0, "chromium failed (rc=%s): %s" % (p.returncode, p.stderr[-2000:])
    return p.stdout


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG: %r" % head[:8]
    return struct.unpack(">II", head[16:24])


def report_path(site):
    return os.path.join(site.state_dir, "report", "mesh-report.html")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


@pytest.fixture(scope="module")
def converged(site):  # noqa: F811 - the imported fixture
    run = site.play("site.yml")
    assert_ok(run)
    return site


def test_report_before_verify_and_idempotent(converged):
    site = converged
    run = site.play("report.yml")
    assert_ok(run)
    assert run.recap["localhost"]["changed"] == 1, run.recap
    page = read(report_path(site))
    assert 'id="verify-none"' in page and "Not verified yet" in page
    # a second run: only the generation time would differ -> unchanged, file untouched
    mtime = os.stat(report_path(site)).st_mtime_ns
    run = site.play("report.yml")
    assert_ok(run)
    assert run.recap["localhost"]["changed"] == 0, run.tail(30)
    assert os.stat(report_path(site)).st_mtime_ns == mtime
    run = site.play("report.yml", "-C", "--diff")
    assert_ok(run)
    assert run.recap["localhost"]["changed"] == 0, run.tail(30)
    # no token of any remote secret in the page or the output
    for token in remote_secret_tokens(site):
        assert token not in page and token not in run.output


def remote_secret_tokens(site):
    import base64
    import yaml
    from kubernetes import client
    tokens = []
    for name in CLUSTERS:
        core = client.CoreV1Api(helpers.kube_client(site.kubeconfig(name)))
        for s in core.list_namespaced_secret("istio-system", label_selector="istio/multiCluster=true").items:
            for v in (s.data or {}).values():
                cfg = yaml.safe_load(base64.b64decode(v))
                tokens.extend(u["user"]["token"] for u in cfg["users"])
    assert len(tokens) == 6, tokens and len(tokens)
    return tokens


def test_verify_writes_results_and_the_report_in_chromium(converged, tmp_path):
    site = converged
    run = site.play("verify.yml")
    assert_ok(run)
    with open(os.path.join(site.state_dir, "verify-results.json")) as f:
        results = json.load(f)
    assert results["passed"] is True and results["checks"], results
    print("[report] verify.yml with the report: %.1fs" % run.seconds)
    path = report_path(site)
    page = read(path)
    size = os.path.getsize(path)
    print("[report] %s: %d bytes" % (path, size))
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "").replace(
        "http://127.0.0.1", ""), "the page must not fetch anything"
    assert not re.search(r"<(script|link|img|iframe)\b", page), "self-contained: no script, link, img, iframe"

    # what the browser lays out
    probe = str(tmp_path / "probe.html")
    with open(probe, "w", encoding="utf-8") as f:
        f.write(page.replace("</body>", PROBE + "</body>"))
    dom = browser(str(tmp_path / "profile1"), "--dump-dom", "file://" + probe)
    m = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert m, "the probe did not run: %s" % dom[-2000:]
    import html
    seen = json.loads(html.unescape(m.group(1)))
    assert seen["svg"]["width"] > 400 and seen["svg"]["height"] > 200, seen["svg"]
    assert sorted(seen["clusters"]) == sorted(CLUSTERS), seen["clusters"]
    for name, box in seen["clusters"].items():
        assert box["width"] >= 200 and box["height"] >= 90, (name, box)
    assert sorted(seen["networks"]) == ["network1", "network2"]
    pairs = dict(((x["a"], x["b"]), x) for x in seen["links"])
    assert sorted(pairs) == [("cluster1", "cluster2"), ("cluster1", "cluster3"), ("cluster2", "cluster3")], pairs
    for (a, b), link in pairs.items():
        assert link["length"] > 50, link
        assert link["reads"] == "%s>%s %s>%s" % (a, b, b, a), link  # both directions
        assert "missing" not in link["cls"] and "bad" not in link["cls"], link

    # the key elements, in the DOM Chromium built
    with open(os.path.join(site.state_dir, "pki", "root", "root-cert.pem"), "rb") as f:
        root_fp = pki.fingerprint(pki.load_certs_pem(f.read())[0])
    dom = browser(str(tmp_path / "profile2"), "--dump-dom", "file://" + path)
    assert root_fp in dom
    for name in CLUSTERS:
        assert 'data-cluster="%s"' % name in dom
        assert re.search(r'<tr data-istiod="%s">' % name, dom), name
        row = re.search(r'<tr data-istiod="%s">(.*?)</tr>' % name, dom, re.S).group(1)
        others = [c for c in CLUSTERS if c != name]
        for other in others:
            assert re.search(r'data-cluster="%s">synced<' % other, row), (name, other, row)
    for net in ("network1", "network2"):
        assert 'data-network="%s"' % net in dom
    assert dom.count("<tr data-target=") == 6  # six remote secrets, each with an expiry
    assert 'id="verify-status"' in dom and ">passed<" in dom
    assert 'data-gateway="10.77.0.1"' in dom and 'data-gateway="10.77.1.1"' in dom

    shot = str(tmp_path / "mesh-report.png")
    browser(str(tmp_path / "profile3"), "--screenshot=" + shot, "--window-size=1280,1700", "file://" + path)
    assert png_size(shot) == (1280, 1700)
    assert os.path.getsize(shot) > 20000  # a blank page compresses to a few KB
    if os.environ.get("MESHFLEET_REPORT_SCREENSHOT"):
        shutil.copy(shot, os.environ["MESHFLEET_REPORT_SCREENSHOT"])


def test_report_shows_an_unreachable_cluster(converged):
    """A cluster whose API server is gone: the page says so, the run does not fail, and the
    other clusters are still shown."""
    site = converged
    kubeconfig = site.kubeconfig("cluster2")
    saved = kubeconfig + ".saved"
    os.rename(kubeconfig, saved)
    try:
        run = site.play("report.yml")
    finally:
        os.rename(saved, kubeconfig)
    assert_ok(run)
    assert run.recap["localhost"]["changed"] == 1
    page = read(report_path(site))
    assert re.search(r'<g class="cluster primary down" data-cluster="cluster2">', page)
    assert "no kubeconfig at" in page
    run = site.play("report.yml")
    assert_ok(run)
    assert run.recap["localhost"]["changed"] == 1  # back to the full picture
    assert 'class="cluster primary down"' not in read(report_path(site))


def test_failed_verification_is_saved_reported_and_fails_the_run(converged):
    """An istiod that is gone: verify.yml saves the failure, writes the report showing it, and
    only then fails."""
    site = converged
    with open(os.path.join(site.state_dir, "clusters", "cluster2", "istiod", "istiod.pid")) as f:
        pid = int(f.read().strip())
    os.kill(pid, 9)
    deadline = time.monotonic() + 30
    while helpers.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not helpers.alive(pid)
    run = site.play("verify.yml", "-e", "verify_wait_timeout=5", "-e", "verify_probe=false")
    assert run.rc != 0, run.tail(30)
    assert "Fail when the mesh verification failed" in run.output, run.tail(30)
    with open(os.path.join(site.state_dir, "verify-results.json")) as f:
        results = json.load(f)
    assert results["passed"] is False and "istiod" in results["error"], results
    page = read(report_path(site))
    assert '<span class="st st-bad">failed</span>' in page
    row = re.search(r'<tr data-istiod="cluster2">(.*?)</tr>', page, re.S).group(1)
    assert "did not answer" in row, row
