# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mesh report's HTML: escaping of what comes from the inventory and the clusters, empty
sections, the picture's nodes and arcs, and the page-equality rule the module relies on."""

from __future__ import absolute_import, division, print_function

import copy
import re

try:
    from html.parser import HTMLParser
except ImportError:  # pragma: no cover - Python 2
    from HTMLParser import HTMLParser  # type: ignore

import pytest

from ansible_collections.meshfleet.mesh.plugins.module_utils import mesh_report_html as H

STAMP = "2026-12-01T18:05:00Z"
NAMES = ("cluster1", "cluster2", "cluster3")

#: every element and attribute the renderer may emit; anything else came from data
TAGS = {"html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "p", "time", "ul",
        "li", "b", "section", "figure", "svg", "defs", "marker", "path", "g", "rect", "text", "table",
        "thead", "tbody", "tr", "th", "td", "code", "span", "i", "footer"}
ATTRS = {"lang", "charset", "name", "content", "id", "class", "xmlns", "viewbox", "width", "height", "role",
         "aria-label", "refx", "refy", "markerwidth", "markerheight", "orient", "d", "x", "y", "rx",
         "text-anchor", "marker-end", "marker-start", "colspan", "title", "style", "data-cluster",
         "data-network", "data-gateway", "data-vm-group", "data-a", "data-b", "data-reads", "data-istiod",
         "data-target", "data-source", "data-root"}


class Elements(HTMLParser):
    def __init__(self):
        HTMLParser.__init__(self)
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def parse(page):
    p = Elements()
    p.feed(page)
    p.close()
    return p.tags


def page_of(report):
    head, tail = H.render(report)
    return head + STAMP + tail


def secret(src, status="valid", expires="2026-12-08T17:56:21Z", problem=None):
    return dict(secret="istio-remote-secret-" + src, source=src, expires=expires, time_bound=status != "no expiry",
                status=status, problem=problem, server="https://127.0.0.1:6443")


def cluster(name, network, address, secrets, role="primary", error=None):
    return dict(name=name, network=network, role=role, primary=name if role == "primary" else "cluster1",
                provider="kwok", api_server="https://127.0.0.1:64%s" % name[-2:], error=error, network_label=network,
                gateway=dict(addresses=[address], ports=[15443]), remote_secrets=secrets, inventory_eastwest=address)


@pytest.fixture
def report():
    """The demo mesh (inventories/local) as gather() describes it when all is well."""
    nets = {"cluster1": "network1", "cluster2": "network1", "cluster3": "network2"}
    addr = {"cluster1": "10.77.0.1", "cluster2": "127.0.10.2", "cluster3": "10.77.1.1"}
    return dict(
        title="Mesh mesh1", state_dir="/srv/mesh/.meshfleet",
        mesh=dict(id="mesh1", trust_domain="cluster.local", istio_version="1.30", revision=""),
        clusters=[cluster(n, nets[n], addr[n], [secret(o) for o in NAMES if o != n]) for n in NAMES],
        vm_groups=[dict(name="web", cluster="cluster1", network="network1", namespace="vm-web", provider="netns",
                        hosts=[dict(name="vm1", address="10.77.0.2")],
                        workload_entries=[dict(name="web-10.77.0.2", address="10.77.0.2", network="network1")])],
        trust=dict(roots=[dict(role="current", subject="CN=Root CA,O=Istio", fingerprint="AA:BB", not_before=STAMP,
                               not_after="2036-12-01T18:00:00Z", status="valid")],
                   intermediates=[dict(cluster=n, subject="L=%s,CN=Intermediate CA,O=Istio" % n, fingerprint="CC:%s" % n,
                                       not_after="2028-12-01T18:00:00Z", status="valid", signed_by="current",
                                       missing=False) for n in NAMES],
                   problems=[]),
        sync=[dict(istiod=n, url="http://127.0.0.1:1", expect=[o for o in NAMES if o != n],
                   status=dict((o, "synced") for o in NAMES), error=None) for n in NAMES],
        expected_links=[[s, t] for t in NAMES for s in NAMES if s != t],
        verify=None,
        thresholds=dict(cert_warn_days=30, token_warn_seconds=201600))


def test_the_demo_mesh_picture_has_every_cluster_network_gateway_and_arc(report):
    page = page_of(report)
    tags = parse(page)
    svg = [a for t, a in tags if t == "svg"]
    assert len(svg) == 1 and svg[0]["id"] == "topology-svg"
    clusters = [a["data-cluster"] for t, a in tags if t == "g" and "cluster" in a.get("class", "").split()]
    assert clusters == list(NAMES)
    assert [a["data-network"] for t, a in tags if t == "g" and a.get("class") == "net"] == ["network1", "network2"]
    gateways = [a["data-gateway"] for t, a in tags if t == "g" and "gateway" in a.get("class", "")]
    assert gateways == ["10.77.0.1", "127.0.10.2", "10.77.1.1"]
    links = dict(((a["data-a"], a["data-b"]), a) for t, a in tags if t == "path" and "link" in a.get("class", ""))
    assert sorted(links) == [("cluster1", "cluster2"), ("cluster1", "cluster3"), ("cluster2", "cluster3")]
    for (x, y), a in links.items():  # each pair reads the other: an arrow at both ends
        assert a["data-reads"] == "%s>%s %s>%s" % (x, y, y, x)
        assert a["marker-end"] == a["marker-start"] == "url(#arrow)"
        assert a["class"].split() == ["link"]
    assert [a["data-vm-group"] for t, a in tags if t == "g" and a.get("class") == "vm-group"] == ["web"]
    assert "vm1 10.77.0.2 \u2713" in page  # its WorkloadEntry is there


def test_self_contained_no_script_nothing_fetched(report):
    page = page_of(report)
    tags = set(t for t, _a in parse(page))
    assert tags <= TAGS
    assert not re.search(r"<(script|link|img|iframe|object|embed)\b", page)
    assert "url(http" not in page and "@import" not in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "").replace("http://127.0.0.1", "")


HOSTILE = [
    '<script>alert(1)</script>',
    '"><img src=x onerror=alert(1)>',
    "' onmouseover='alert(1)",
    '</title><style>body{display:none}</style>',
    '&amp;<b>bold</b>',
]


@pytest.mark.parametrize("evil", HOSTILE)
def test_hostile_names_are_text_never_markup(report, evil):
    r = copy.deepcopy(report)
    r["title"] = "Mesh " + evil
    r["mesh"]["trust_domain"] = evil
    r["state_dir"] = "/srv/" + evil
    c = r["clusters"][0]
    c["name"] = evil
    c["network"] = evil
    c["provider"] = evil
    c["api_server"] = "https://" + evil
    c["error"] = "unreachable: " + evil
    c["gateway"] = dict(addresses=[evil], ports=[15443])
    c["remote_secrets"] = [secret(evil, status="malformed", problem=evil)]
    r["vm_groups"][0].update(name=evil, cluster=evil, namespace=evil,
                             hosts=[dict(name=evil, address=evil)])
    r["trust"]["roots"][0]["subject"] = evil
    r["trust"]["intermediates"][0].update(cluster=evil, subject=evil)
    r["trust"]["problems"] = [evil]
    r["sync"][0].update(istiod=evil, error=evil)
    r["sync"][1]["status"] = {evil: evil}
    r["expected_links"].append([evil, "cluster2"])
    r["verify"] = dict(verified_at=evil, passed=False, summary=evil, error=evil, checks=["FAILED: " + evil, evil])
    page = page_of(r)
    tags = parse(page)
    assert set(t for t, _a in tags) <= TAGS, sorted(set(t for t, _a in tags) - TAGS)
    for t, attrs in tags:
        assert set(attrs) <= ATTRS, (t, sorted(set(attrs) - ATTRS))
    assert page.count("<script") == 0 and page.count("<img") == 0 and page.count("<b>") == 6  # the summary pills
    assert page.count("<style>") == 1 and page.count("<title>") == page.count("</title>")
    # the text is there, escaped
    from html import escape
    assert escape(evil, quote=True) in page
    # and the attributes that carry names hold it whole
    assert any(a.get("data-cluster") == evil for _t, a in tags)


def test_empty_sections_say_so():
    empty = dict(title="Mesh ", mesh={}, state_dir="/x", clusters=[], vm_groups=[],
                 trust=dict(roots=[], intermediates=[], problems=["no root certificate in /x/pki/root"]),
                 sync=[], expected_links=[], verify=None, thresholds={})
    page = page_of(empty)
    assert 'id="topology-empty"' in page and "No clusters in the inventory." in page
    assert "No root certificate yet." in page and "no root certificate in /x/pki/root" in page
    assert "No primary cluster: no istiod to ask." in page
    assert "No remote secrets" in page
    assert 'id="verify-none"' in page and "Not verified yet" in page
    assert "<svg" not in page
    assert set(t for t, _a in parse(page)) <= TAGS


def test_missing_expired_and_unobserved_links(report):
    r = copy.deepcopy(report)
    r["clusters"][0]["remote_secrets"] = [secret("cluster2", status="expired")]  # cluster3's secret missing in cluster1
    r["clusters"][2]["error"] = "cluster3 cluster (https://127.0.0.1:6403) is unreachable"
    r["clusters"][2]["remote_secrets"] = []
    page = page_of(r)
    links = dict(((a["data-a"], a["data-b"]), a) for t, a in parse(page) if t == "path" and "link" in a.get("class", ""))
    assert links[("cluster1", "cluster2")]["class"] == "link bad"      # an expired token
    assert links[("cluster1", "cluster3")]["class"] == "link bad"      # missing + unknown (cluster3 down)
    assert links[("cluster2", "cluster3")]["class"] == "link"          # ok, and unknown is not alarming
    rows = re.findall(r'<tr data-target="cluster1" data-source="cluster3">(.*?)</tr>', page)
    assert rows and ">missing<" in rows[0]
    rows = re.findall(r'<tr data-target="cluster3" data-source="cluster1">(.*?)</tr>', page)
    assert rows and "not observed (cluster unreachable)" in rows[0]
    assert '<g class="cluster primary down" data-cluster="cluster3">' in page
    r["clusters"][2]["error"] = None
    r["clusters"][2]["remote_secrets"] = []
    r["clusters"][1]["remote_secrets"] = []
    r["clusters"][0]["remote_secrets"] = []
    links = dict(((a["data-a"], a["data-b"]), a) for t, a in parse(page_of(r)) if "link" in a.get("class", ""))
    assert set(a["class"] for a in links.values()) == {"link missing"}


def test_sync_table_cells(report):
    r = copy.deepcopy(report)
    r["sync"][0]["status"] = {"cluster1": "synced", "cluster2": "synced"}            # cluster3 not seen
    r["sync"][1]["status"] = {"cluster1": "timeout", "cluster2": "synced", "cluster3": "synced"}
    r["sync"][2] = dict(istiod="cluster3", url=None, expect=["cluster1", "cluster2"], status={},
                        error="no local istiod recorded")
    page = page_of(r)
    row = re.search(r'<tr data-istiod="cluster1">(.*?)</tr>', page).group(1)
    assert '<td class="st st-none" data-cluster="cluster1">own cluster (synced)</td>' in row
    assert '<td class="st st-ok" data-cluster="cluster2">synced</td>' in row
    assert '<td class="st st-bad" data-cluster="cluster3">not seen</td>' in row
    row = re.search(r'<tr data-istiod="cluster2">(.*?)</tr>', page).group(1)
    assert '<td class="st st-bad" data-cluster="cluster1">timeout</td>' in row
    row = re.search(r'<tr data-istiod="cluster3">(.*?)</tr>', page).group(1)
    assert 'colspan="3">no local istiod recorded<' in row
    assert "<b>synced:</b> 2/6" in page


def test_verify_results(report):
    r = copy.deepcopy(report)
    r["verify"] = dict(verified_at="2026-12-01T18:00:00Z", passed=False, summary="verification failed",
                       checks=["ok: cluster1: fine", "FAILED: cluster2: istiod reports {}"], failures=["x"])
    page = page_of(r)
    assert 'Verified at 2026-12-01 18:00 UTC: <span class="st st-bad">failed</span>' in page
    assert '<li class="st-bad">FAILED: cluster2: istiod reports {}</li>' in page
    assert '<li class="st-ok">ok: cluster1: fine</li>' in page
    r["verify"] = dict(problem="/x/verify-results.json cannot be read: Expecting value")
    assert 'id="verify-problem"' in page_of(r)


def test_long_names_are_clipped_in_the_picture_and_whole_in_the_title(report):
    r = copy.deepcopy(report)
    long = "a-very-long-cluster-name-that-goes-on-and-on"
    r["clusters"][0]["name"] = long
    page = page_of(r)
    assert ">a-very-long-cluster-\u2026</text>" in page
    assert "<title>%s (primary, network1)" % long in page


def test_same_page_ignores_only_the_generation_time(report):
    head, tail = H.render(report)
    page = head + STAMP + tail
    assert H.same_page(page, head, tail)
    assert H.same_page(head + "2027-01-01T00:00:00Z" + tail, head, tail)
    assert not H.same_page(None, head, tail)
    assert not H.same_page(head + "not a time" + tail, head, tail)
    assert not H.same_page(page.replace("cluster3", "cluster4"), head, tail)
    r = copy.deepcopy(report)
    r["clusters"][0]["remote_secrets"][0]["expires"] = "2026-12-09T17:56:21Z"   # a renewed token
    head2, tail2 = H.render(r)
    assert not H.same_page(page, head2, tail2)
    assert H.render(copy.deepcopy(report)) == (head, tail)  # deterministic


@pytest.mark.parametrize("seconds, text", [(201600, "56 h"), (86400, "1 day"), (2592000, "30 days"),
                                           (5400, "1.5 h"), (600, "600 s"), (None, "-")])
def test_duration(seconds, text):
    assert H.duration(seconds) == text


def test_a_remote_cluster_is_drawn_as_one(report):
    r = copy.deepcopy(report)
    r["clusters"][2].update(role="remote", primary="cluster1")
    r["sync"] = r["sync"][:2]
    page = page_of(r)
    assert '<g class="cluster remote" data-cluster="cluster3">' in page
    assert ">istiod of cluster1</text>" in page
    assert '<tr data-istiod="cluster3">' not in page  # no istiod of its own in the sync table
