# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render the mesh report (the dict :func:`.mesh_report.gather` returns) as one HTML page.

Self-contained: inline CSS and an inline SVG picture, no script, nothing fetched. Every
value that comes from the inventory or a cluster goes through :func:`esc` (HTML text and
attribute escaping), so a hostile name shows as text and never becomes markup.

:func:`render` returns the page in two halves around the generation time, so the module
can tell whether anything but that time changed (:func:`same_page`).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

try:
    from html import escape as _escape
except ImportError:  # pragma: no cover - Python 2
    from cgi import escape as _cgi_escape

    def _escape(text, quote=True):
        return _cgi_escape(text, quote).replace("'", "&#x27;")

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

# picture geometry (SVG user units)
MARGIN = 70           # left and right: room for the arcs between clusters of one network
TOP = 16
COL_W = 290           # a network's column
GAP = 170             # between columns: room for the arcs between networks
HEAD_H = 50           # network name
BOX_W, BOX_H = 250, 104
VM_W = 210
ROW_GAP = 16

#: status -> CSS class (the colour) of a cell, a pill or an edge
GOOD = ("valid", "synced", "passed", "ok")
WARN = ("expiring", "no expiry")
#: not known (a cluster that could not be read): neither good nor bad
NONE = (None, "-", "n/a", "unknown")

CSS = """
:root{--ok:#1b7f3b;--warn:#9a6700;--bad:#c62828;--muted:#5f6b7a;--line:#d8dee6;--ink:#1d2530;--link:#2f6fca}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 "DejaVu Sans",system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:#f5f7fa}
header,section,footer{max-width:1180px;margin:0 auto;padding:14px 24px}
header{padding-top:22px}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:18px;margin:0 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:14px 0 6px}
.meta{color:var(--muted);margin:0 0 10px}
.pills{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:8px}
.pills li{background:#fff;border:1px solid var(--line);border-radius:14px;padding:3px 12px}
.pills b{font-weight:600}
section{background:#fff;border:1px solid var(--line);border-radius:8px;margin:14px auto}
figure{margin:0;overflow-x:auto}
figure svg{display:block;width:100%;height:auto;margin:0 auto}
table{border-collapse:collapse;width:100%;margin:4px 0 8px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;background:#f0f3f7}
code{font:12px/1.4 "DejaVu Sans Mono",ui-monospace,monospace;word-break:break-all}
.st{font-weight:600;white-space:nowrap}
.st-ok{color:var(--ok)}.st-warn{color:var(--warn)}.st-bad{color:var(--bad)}.st-none{color:var(--muted);font-weight:400}
.empty{color:var(--muted);font-style:italic}
.legend{color:var(--muted);font-size:13px;margin:8px 0 0}
.legend span{display:inline-block;margin-right:14px}
.sw{display:inline-block;width:22px;height:0;border-top:3px solid;vertical-align:middle;margin-right:5px}
.checks{margin:6px 0 0;padding-left:20px}
.checks li{margin:2px 0}
footer{color:var(--muted);font-size:12px}
svg text{font-family:"DejaVu Sans",system-ui,sans-serif;fill:var(--ink)}
svg .net rect.area{fill:#eef3fa;stroke:#b9c7da}
svg .net text.name{font-size:16px;font-weight:700;fill:#284a78}
svg .net text.sub{font-size:12px;fill:var(--muted)}
svg .cluster rect.box{fill:#fff;stroke:#3f6fb0;stroke-width:1.6}
svg .cluster.remote rect.box{stroke-dasharray:6 4}
svg .cluster.down rect.box{stroke:var(--bad);stroke-width:2.2}
svg .cluster text.name{font-size:15px;font-weight:700}
svg .cluster text.sub{font-size:12px;fill:var(--muted)}
svg .cluster text.down{fill:var(--bad)}
svg .role rect{fill:#3f6fb0}
svg .cluster.remote .role rect{fill:#7a5bb0}
svg .role text{font-size:11px;font-weight:700;fill:#fff}
svg .gateway rect{fill:#fff4e0;stroke:#c98a1a}
svg .gateway text{font-size:12px;fill:#6b4a00}
svg .gateway.none rect{fill:#f3f3f3;stroke:#b5b5b5}
svg .gateway.none text{fill:var(--muted)}
svg .vm-group rect{fill:#eefaf1;stroke:#3c9a5a}
svg .vm-group text{font-size:12px}
svg .vm-group text.name{font-weight:700}
svg .attach{stroke:#3c9a5a;stroke-width:1.4;stroke-dasharray:3 3;fill:none}
svg .link{fill:none;stroke-width:2.2;stroke:var(--link)}
svg .link.warn{stroke:#c98a1a}
svg .link.bad{stroke:var(--bad)}
svg .link.missing{stroke:var(--bad);stroke-dasharray:7 5}
svg marker path{fill:context-stroke}
"""


def esc(value):
    """HTML-escaped text (quotes too, so it is safe in attributes); None is empty."""
    if value is None:
        return ""
    return _escape(value if isinstance(value, str) else str(value), quote=True)


def clip(value, limit):
    """``value`` as text, at most ``limit`` characters (an ellipsis marks a cut)."""
    text = "" if value is None else (value if isinstance(value, str) else str(value))
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def when(stamp):
    """``2026-12-08T17:56:21Z`` -> ``2026-12-08 17:56 UTC`` (a date people read)."""
    if not stamp:
        return "-"
    if isinstance(stamp, str) and TIMESTAMP.match(stamp):
        return "%s %s UTC" % (stamp[:10], stamp[11:16])
    return str(stamp)


def duration(seconds):
    """``201600`` -> ``56 h``, ``2592000`` -> ``30 days``: a threshold people read."""
    try:
        seconds = int(seconds)
    except (TypeError, ValueError):
        return "-"
    if seconds >= 86400 and seconds % 86400 == 0:
        return "%d day%s" % (seconds // 86400, "" if seconds == 86400 else "s")
    if seconds >= 3600:
        return "%g h" % round(seconds / 3600.0, 1)
    return "%d s" % seconds


def status_class(status):
    if status in GOOD:
        return "ok"
    if status in WARN:
        return "warn"
    if status in NONE:
        return "none"
    return "bad"


def status_cell(status, text=None, attrs=""):
    return '<td class="st st-%s"%s>%s</td>' % (status_class(status), attrs, esc(text if text is not None else status))


def table(headers, rows, attrs=""):
    """``rows``: lists of ready cells (``<td>...``, already escaped)."""
    out = ["<table%s><thead><tr>%s</tr></thead><tbody>" % (attrs, "".join("<th>%s</th>" % esc(h) for h in headers))]
    for row in rows:
        out.append("<tr%s>%s</tr>" % (row[0], "".join(row[1:])))
    out.append("</tbody></table>")
    return "\n".join(out)


def td(value, code=False, title=None):
    inner = "<code>%s</code>" % esc(value) if code and value else esc(value if value not in (None, "") else "-")
    return "<td%s>%s</td>" % (' title="%s"' % esc(title) if title else "", inner)


# --- the picture --------------------------------------------------------------------------
def _networks(report):
    """[(network, [cluster entries])] in the order the clusters come."""
    order, members = [], {}
    for c in report["clusters"]:
        net = c.get("network") or "(no network)"
        if net not in members:
            order.append(net)
            members[net] = []
        members[net].append(c)
    for g in report.get("vm_groups") or []:  # a VM group's network without a cluster still shows
        net = g.get("network")
        if net and net not in members and not any(c["name"] == g.get("cluster") for c in report["clusters"]):
            order.append(net)
            members[net] = []
    return [(n, members[n]) for n in order]


def _links(report):
    """{(reader, read): status}: observed remote secrets, and the expected ones not found
    (``missing``; ``unknown`` when the reader's cluster could not be read)."""
    down = set(c["name"] for c in report["clusters"] if c.get("error"))
    links = {}
    for c in report["clusters"]:
        for s in c.get("remote_secrets") or []:
            if s.get("source"):
                links[(c["name"], s["source"])] = s.get("status")
    for source, target in report.get("expected_links") or []:
        links.setdefault((target, source), "unknown" if target in down else "missing")
    return links


def _gateway_text(c):
    gw = c.get("gateway")
    if not gw or not gw.get("addresses"):
        if c.get("error"):
            return None, "east-west gateway: not observed"
        return None, "no east-west address" if gw else "no east-west gateway"
    port = ":%s" % gw["ports"][0] if gw.get("ports") else ""
    return gw["addresses"], "east-west %s%s" % (", ".join(gw["addresses"]), port)


def _istiod_text(c, sync_rows):
    if c.get("error"):
        return "unreachable: " + (c["error"] or "")
    if c.get("role") == "remote":
        return "istiod of %s" % (c.get("primary") or "its primary")
    row = next((r for r in sync_rows if r["istiod"] == c["name"]), None)
    if row is None or row.get("error"):
        return "istiod: sync not observed"
    done = sum(1 for x in row["expect"] if row["status"].get(x) == "synced")
    return "istiod: %d/%d clusters synced" % (done, len(row["expect"]))


def topology_svg(report):
    """The picture: networks as columns, clusters in them (role, provider, API server, istiod,
    east-west gateway), VM groups under their cluster, arcs for the remote secrets."""
    networks = _networks(report)
    if not networks:
        return '<p class="empty" id="topology-empty">No clusters in the inventory.</p>'
    boxes = {}
    parts_nodes = []
    col_heights = []
    groups_by_cluster = {}
    names = set(c["name"] for c in report["clusters"])
    orphans = {}
    for g in report.get("vm_groups") or []:
        if g.get("cluster") in names:
            groups_by_cluster.setdefault(g["cluster"], []).append(g)
        else:
            orphans.setdefault(g.get("network"), []).append(g)
    layout = []  # (kind, col, x, y, h, item)
    for col, (net, members) in enumerate(networks):
        x0 = MARGIN + col * (COL_W + GAP)
        y = TOP + HEAD_H + 10
        for c in members:
            layout.append(("cluster", col, x0 + 20, y, BOX_H, c))
            boxes[c["name"]] = (col, x0 + 20, y, BOX_W, BOX_H)
            y += BOX_H + ROW_GAP
            for g in groups_by_cluster.get(c["name"], []):
                h = 40 + 15 * min(len(g.get("hosts") or []), 4)
                layout.append(("vm", col, x0 + 40, y, h, g))
                y += h + ROW_GAP
        for g in orphans.get(net, []):
            h = 40 + 15 * min(len(g.get("hosts") or []), 4)
            layout.append(("vm", col, x0 + 40, y, h, g))
            y += h + ROW_GAP
        col_heights.append(y)
    height = max(col_heights) + 12
    width = 2 * MARGIN + len(networks) * COL_W + (len(networks) - 1) * GAP

    for col, (net, members) in enumerate(networks):
        x0 = MARGIN + col * (COL_W + GAP)
        gws = sum(1 for c in members if (c.get("gateway") or {}).get("addresses"))
        parts_nodes.append(
            '<g class="net" data-network="%s"><title>network %s</title>'
            '<rect class="area" x="%d" y="%d" width="%d" height="%d" rx="12"/>'
            '<text class="name" x="%d" y="%d">%s</text>'
            '<text class="sub" x="%d" y="%d">%s</text></g>'
            % (esc(net), esc(net), x0, TOP, COL_W, height - TOP - 4, x0 + 16, TOP + 24, esc(clip(net, 28)),
               x0 + 16, TOP + 42, esc("%d cluster%s, %d east-west gateway%s" % (
                   len(members), "" if len(members) == 1 else "s", gws, "" if gws == 1 else "s"))))
    for kind, col, x, y, h, item in layout:
        if kind == "cluster":
            parts_nodes.append(_cluster_node(item, x, y, report["sync"]))
        else:
            parts_nodes.append(_vm_node(item, x, y, h, boxes.get(item.get("cluster"))))

    edges = _edges(_links(report), boxes)
    return "\n".join([
        # as wide as the page allows, up to 1.5 times its own size
        '<svg xmlns="http://www.w3.org/2000/svg" id="topology-svg" viewBox="0 0 %d %d" width="%d" height="%d" '
        'style="max-width:%dpx" role="img" aria-label="mesh topology">' % (
            width, height, width, height, width * 3 // 2),
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>',
    ] + parts_nodes + edges + ["</svg>"])


def _cluster_node(c, x, y, sync_rows):
    role = "remote" if c.get("role") == "remote" else "primary"
    classes = "cluster %s%s" % (role, " down" if c.get("error") else "")
    api = c.get("api_server") or "-"
    api = re.sub(r"^https?://", "", api)
    sub = "%s \u00b7 API %s" % (c.get("provider") or "?", api)
    istiod = _istiod_text(c, sync_rows)
    addresses, gw_text = _gateway_text(c)
    title = "%s (%s, %s): API %s; %s; %s" % (c["name"], role, c.get("network"), c.get("api_server") or "-",
                                             istiod, gw_text)
    return "".join([
        '<g class="%s" data-cluster="%s"><title>%s</title>' % (classes, esc(c["name"]), esc(title)),
        '<rect class="box" x="%d" y="%d" width="%d" height="%d" rx="8"/>' % (x, y, BOX_W, BOX_H),
        '<text class="name" x="%d" y="%d">%s</text>' % (x + 12, y + 22, esc(clip(c["name"], 21))),
        '<g class="role"><rect x="%d" y="%d" width="58" height="18" rx="9"/>'
        '<text x="%d" y="%d" text-anchor="middle">%s</text></g>' % (x + BOX_W - 66, y + 8, x + BOX_W - 37, y + 21, role),
        '<text class="sub" x="%d" y="%d">%s</text>' % (x + 12, y + 41, esc(clip(sub, 36))),
        '<text class="sub%s" x="%d" y="%d">%s</text>' % (
            " down" if c.get("error") else "", x + 12, y + 58, esc(clip(istiod, 36))),
        '<g class="gateway%s" data-gateway="%s"><rect x="%d" y="%d" width="%d" height="24" rx="5"/>'
        '<text x="%d" y="%d">%s</text></g>' % (
            "" if addresses else " none", esc(" ".join(addresses or [])),
            x + 10, y + 70, BOX_W - 20, x + 18, y + 86, esc(clip(gw_text, 32))),
        "</g>"])


def _vm_node(g, x, y, h, box):
    hosts = g.get("hosts") or []
    entries = g.get("workload_entries")
    registered = set(e.get("address") for e in entries or [])
    head = "VM group %s" % g.get("name")
    sub = "%s \u00b7 %s" % (g.get("namespace") or "-", g.get("network") or "-")
    lines = []
    for host in hosts[:4]:
        mark = "" if entries is None else (" \u2713" if host.get("address") in registered else " (not registered)")
        lines.append("%s %s%s" % (host.get("name"), host.get("address") or "", mark))
    if len(hosts) > 4:
        lines[-1] = "\u2026 and %d more" % (len(hosts) - 3)
    out = ['<g class="vm-group" data-vm-group="%s" data-cluster="%s"><title>%s</title>' % (
        esc(g.get("name")), esc(g.get("cluster")), esc("%s of cluster %s: %s" % (head, g.get("cluster"), sub)))]
    if box is not None:
        _col, bx, by, _bw, bh = box
        ax = bx + 10
        out.append('<path class="attach" d="M%d,%d V%d H%d"/>' % (ax, by + bh, y + 18, x))
    out.append('<rect x="%d" y="%d" width="%d" height="%d" rx="6"/>' % (x, y, VM_W, h))
    out.append('<text class="name" x="%d" y="%d">%s</text>' % (x + 10, y + 17, esc(clip(head, 28))))
    out.append('<text x="%d" y="%d">%s</text>' % (x + 10, y + 33, esc(clip(sub, 30))))
    for i, line in enumerate(lines):
        out.append('<text x="%d" y="%d">%s</text>' % (x + 10, y + 49 + 15 * i, esc(clip(line, 30))))
    out.append("</g>")
    return "".join(out)


def _edges(links, boxes):
    """One arc per pair of clusters with a remote secret (or a missing one) between them; an
    arrow at each end whose istiod reads the other."""
    pairs = {}
    for (reader, read), status in links.items():
        if reader in boxes and read in boxes and reader != read:
            pairs.setdefault(tuple(sorted((reader, read))), {})[(reader, read)] = status
    # anchors: spread the arcs ending on a side of a box along that side
    ends = {}
    plan = []
    for (a, b), dirs in sorted(pairs.items()):
        ca, cb = boxes[a], boxes[b]
        if ca[0] == cb[0]:
            sa = sb = "left"
        elif ca[0] < cb[0]:
            sa, sb = "right", "left"
        else:
            sa, sb = "left", "right"
        plan.append((a, b, dirs, sa, sb))
        ends.setdefault((a, sa), []).append(b)
        ends.setdefault((b, sb), []).append(a)

    def anchor(name, side, other):
        col, x, y, w, h = boxes[name]
        peers = sorted(ends[(name, side)], key=lambda o: (boxes[o][2], o))
        i = peers.index(other)
        return (x + w if side == "right" else x), y + 14 + (h - 28) * (i + 1) // (len(peers) + 1)

    out = []
    for a, b, dirs, sa, sb in plan:
        x1, y1 = anchor(a, sa, b)
        x2, y2 = anchor(b, sb, a)
        if sa == sb:  # same network: bend out to the left
            bend = 34 + 10 * min(abs(boxes[a][2] - boxes[b][2]) // (BOX_H + ROW_GAP), 4)
            d = "M%d,%d C%d,%d %d,%d %d,%d" % (x1, y1, x1 - bend, y1, x2 - bend, y2, x2, y2)
        else:
            dx = (x2 - x1) // 2
            d = "M%d,%d C%d,%d %d,%d %d,%d" % (x1, y1, x1 + dx, y1, x2 - dx, y2, x2, y2)
        statuses = list(dirs.values())
        if all(s == "missing" for s in statuses):
            cls = "missing"
        else:
            cls = max((status_class(s) for s in statuses), key=("none", "ok", "warn", "bad").index)
            cls = {"ok": "", "none": "", "warn": "warn", "bad": "bad"}[cls]
        title = "; ".join("%s's istiod reads %s: %s" % (r, s, dirs[(r, s)]) for r, s in sorted(dirs))
        markers = ""
        if (a, b) in dirs:   # a reads b: the arrow points at b (the end)
            markers += ' marker-end="url(#arrow)"'
        if (b, a) in dirs:
            markers += ' marker-start="url(#arrow)"'
        out.append('<path class="%s" data-a="%s" data-b="%s" data-reads="%s" d="%s"%s><title>%s</title></path>' % (
            ("link " + cls).strip(), esc(a), esc(b), esc(" ".join("%s>%s" % k for k in sorted(dirs))), d, markers, esc(title)))
    return out


# --- the sections -----------------------------------------------------------------------
def _pills(report):
    clusters = report["clusters"]
    down = [c["name"] for c in clusters if c.get("error")]
    rows = report["sync"]
    cells = [(r, x) for r in rows for x in r["expect"]]
    synced = sum(1 for r, x in cells if r["status"].get(x) == "synced")
    secrets = [s for c in clusters for s in c.get("remote_secrets") or []]
    soonest = min([s["expires"] for s in secrets if s.get("expires")] or [None], key=lambda v: v or "~")
    verify = report.get("verify")
    if not verify:
        v_status, v_text = None, "not verified yet"
    elif verify.get("problem"):
        v_status, v_text = "bad", "results unreadable"
    else:
        v_status = "passed" if verify.get("passed") else "failed"
        v_text = "%s at %s" % (v_status, when(verify.get("verified_at")))
    items = [
        ("clusters", "%d (%d unreachable)" % (len(clusters), len(down)) if down else str(len(clusters)),
         "bad" if down else "ok"),
        ("networks", str(len(_networks(report))), "none"),
        ("synced", "%d/%d" % (synced, len(cells)), "ok" if cells and synced == len(cells) else "bad" if cells else "none"),
        ("remote secrets", str(len(secrets)), "none"),
        ("soonest token expiry", when(soonest), "none"),
        ("verify", v_text, v_status if v_status else "none"),
    ]
    return '<ul class="pills" id="summary">%s</ul>' % "".join(
        '<li class="st-%s"><b>%s:</b> %s</li>' % (status_class(s) if s not in ("ok", "bad", "none") else s,
                                                  esc(k), esc(v)) for k, v, s in items)


def clusters_section(report):
    if not report["clusters"]:
        return '<p class="empty">No clusters in the inventory.</p>'
    rows = []
    for c in report["clusters"]:
        gw = c.get("gateway") or {}
        addrs = ", ".join(gw.get("addresses") or []) or ("none published" if gw else "no gateway Service")
        if c.get("error"):
            addrs = "-"
        label = c.get("network_label")
        net_note = c.get("network") or "-"
        if label and label != c.get("network"):
            net_note += " (namespace label says %s)" % label
        rows.append(['', td(c["name"]), td(net_note), td(c.get("role")), td(c.get("provider")),
                     td(c.get("api_server"), code=True), td(addrs, title="from the inventory: %s" % (
                         c.get("inventory_eastwest") or "-")),
                     status_cell("unreachable" if c.get("error") else "ok", c.get("error") or "reachable")])
        rows[-1][0] = ' data-cluster="%s"' % esc(c["name"])
    return table(["cluster", "network", "role", "provider", "API server", "east-west gateway", "status"], rows,
                 ' id="clusters-table"')


def trust_section(report):
    trust = report.get("trust") or {}
    out = ["<h3>Roots</h3>"]
    if trust.get("roots"):
        out.append(table(["root", "subject", "SHA-256 fingerprint", "expires", "status"], [
            [' data-root="%s"' % esc(r["role"]), td(r["role"]), td(r["subject"]),
             '<td class="fingerprint"><code>%s</code></td>' % esc(r["fingerprint"]),
             td(when(r["not_after"])), status_cell(r["status"])] for r in trust["roots"]], ' id="roots-table"'))
    else:
        out.append('<p class="empty">No root certificate yet.</p>')
    out.append("<h3>Cluster intermediates</h3>")
    if trust.get("intermediates"):
        rows = []
        for i in trust["intermediates"]:
            if i.get("missing"):
                rows.append([' data-cluster="%s"' % esc(i["cluster"]), td(i["cluster"]), td(None), td(None), td(None),
                             td(None), status_cell("missing")])
                continue
            signed = i.get("signed_by")
            rows.append([' data-cluster="%s"' % esc(i["cluster"]), td(i["cluster"]), td(i["subject"]),
                         td(i["fingerprint"], code=True), td(when(i["not_after"])),
                         status_cell("ok" if signed else "bad", ("%s root" % signed) if signed else "no mesh root"),
                         status_cell(i["status"])])
        out.append(table(["cluster", "subject", "SHA-256 fingerprint", "expires", "signed by", "status"], rows,
                         ' id="intermediates-table"'))
    else:
        out.append('<p class="empty">No clusters.</p>')
    for problem in trust.get("problems") or []:
        out.append('<p class="st st-bad">%s</p>' % esc(problem))
    out.append('<p class="legend">Read from the certificates under %s; the root key is never read. '
               '&quot;expiring&quot;: within %s days.</p>' % (
                   esc((report.get("state_dir") or "") + "/pki"),
                   esc((report.get("thresholds") or {}).get("cert_warn_days"))))
    return "\n".join(out)


def sync_section(report):
    rows_in = report.get("sync") or []
    if not rows_in:
        return '<p class="empty">No primary cluster: no istiod to ask.</p>'
    names = [c["name"] for c in report["clusters"]]
    rows = []
    for r in rows_in:
        row = [' data-istiod="%s"' % esc(r["istiod"]), "<th>%s</th>" % esc(r["istiod"])]
        if r.get("error"):
            row.append('<td class="st st-warn" colspan="%d">%s</td>' % (len(names), esc(r["error"])))
        else:
            for name in names:
                got = r["status"].get(name)
                attrs = ' data-cluster="%s"' % esc(name)
                if name in r["expect"]:
                    row.append(status_cell(got if got else "not seen", got or "not seen", attrs))
                elif name == r["istiod"]:
                    row.append(status_cell("-", "own cluster%s" % (" (%s)" % got if got else ""), attrs))
                else:
                    row.append(status_cell("-", got or "not expected", attrs))
        rows.append(row)
    return "\n".join([
        table(["istiod of \u2193 / cluster \u2192"] + names, rows, ' id="sync-table"'),
        '<p class="legend">Each primary\'s istiod (<code>/debug/clusterz</code>, what '
        '<code>istioctl remote-clusters</code> reads) and every other cluster it must see.</p>'])


def secrets_section(report):
    rows = []
    for c in report["clusters"]:
        for s in c.get("remote_secrets") or []:
            status = s["status"]
            text = status if not s.get("problem") else "%s: %s" % (status, s["problem"])
            rows.append([' data-target="%s" data-source="%s"' % (esc(c["name"]), esc(s.get("source"))),
                         td(c["name"]), td(s.get("source")), td(s.get("secret"), code=True),
                         td(when(s.get("expires"))), status_cell(status, text)])
    links = _links(report)
    for (reader, read), status in sorted(links.items()):
        if status in ("missing", "unknown"):
            rows.append([' data-target="%s" data-source="%s"' % (esc(reader), esc(read)), td(reader), td(read),
                         td(None), td(None), status_cell(status, "missing" if status == "missing"
                                                         else "not observed (cluster unreachable)")])
    if not rows:
        return '<p class="empty">No remote secrets (a single cluster, or none created yet).</p>'
    return "\n".join([
        table(["istiod of", "reads cluster", "secret", "token expires", "status"], rows, ' id="secrets-table"'),
        '<p class="legend">Expiry: the token&#x27;s own <code>exp</code> claim and the '
        '<code>meshfleet.io/token-expires</code> annotation, the earlier one; tokens are never shown. '
        '&quot;expiring&quot;: within %s (re-run site.yml to renew).</p>'
        % esc(duration((report.get("thresholds") or {}).get("token_warn_seconds")))])


def verify_section(report):
    v = report.get("verify")
    if not v:
        return '<p class="empty" id="verify-none">Not verified yet: run playbooks/verify.yml.</p>'
    if v.get("problem"):
        return '<p class="st st-bad" id="verify-problem">%s</p>' % esc(v["problem"])
    passed = bool(v.get("passed"))
    out = ['<p id="verify-status">Verified at %s: <span class="st st-%s">%s</span>%s</p>' % (
        esc(when(v.get("verified_at"))), "ok" if passed else "bad", "passed" if passed else "failed",
        esc(" (%s)" % v["summary"]) if v.get("summary") else "")]
    if v.get("error"):
        out.append('<p class="st st-bad">%s</p>' % esc(v["error"]))
    checks = v.get("checks") or []
    if checks:
        out.append('<ul class="checks" id="verify-checks">')
        for line in checks:
            line = "" if line is None else str(line)
            ok = not line.startswith("FAILED")
            out.append('<li class="st-%s">%s</li>' % ("ok" if ok else "bad", esc(line)))
        out.append("</ul>")
    return "\n".join(out)


def render(report):
    """The page as ``(head, tail)``: the page is ``head + <generation time> + tail``."""
    mesh = report.get("mesh") or {}
    meta = " \u00b7 ".join(x for x in [
        "trust domain %s" % mesh["trust_domain"] if mesh.get("trust_domain") else "",
        "Istio %s" % mesh["istio_version"] if mesh.get("istio_version") else "",
        "revision %s" % mesh["revision"] if mesh.get("revision") else ""] if x)
    head = "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="meshfleet.mesh.mesh_report">',
        "<title>%s</title>" % esc(report.get("title")),
        "<style>%s</style></head><body>" % CSS,
        "<header><h1>%s</h1>" % esc(report.get("title")),
        '<p class="meta">%s%sgenerated <time id="generated">' % (esc(meta), " \u00b7 " if meta else ""),
    ])
    tail = "\n".join([
        "</time></p>",
        _pills(report),
        "</header>",
        '<section id="topology"><h2>Topology</h2><figure>',
        topology_svg(report),
        "</figure>",
        '<p class="legend"><span><i class="sw" style="border-color:#2f6fca"></i>remote secret: the arrow points '
        'at the cluster an istiod reads</span><span><i class="sw" style="border-color:#c98a1a"></i>token '
        'expiring</span><span><i class="sw" style="border-color:#c62828"></i>token expired or secret broken</span>'
        '<span><i class="sw" style="border-color:#c62828;border-top-style:dashed"></i>secret missing</span>'
        '<span>dashed box: remote cluster</span></p></section>',
        '<section id="clusters"><h2>Clusters</h2>', clusters_section(report), "</section>",
        '<section id="trust"><h2>Trust chain</h2>', trust_section(report), "</section>",
        '<section id="sync"><h2>Sync: istiod \u00d7 cluster</h2>', sync_section(report), "</section>",
        '<section id="secrets"><h2>Remote secrets</h2>', secrets_section(report), "</section>",
        '<section id="verify"><h2>Latest verification</h2>', verify_section(report), "</section>",
        "<footer>meshfleet.mesh.mesh_report \u00b7 state dir %s</footer>" % esc(report.get("state_dir")),
        "</body></html>",
        "",
    ])
    return head, tail


def same_page(before, head, tail):
    """Whether ``before`` (the file's text, or None) is this page at another generation time."""
    if before is None or not before.startswith(head) or not before.endswith(tail):
        return False
    middle = before[len(head):len(before) - len(tail)]
    return bool(TIMESTAMP.match(middle))
