# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Property-based tests (Hypothesis) of the topology file against hostile input.

Each case starts from a shipped example inventory (inventories/*/mesh.meshfleet.yml) and
mutates it the way a new user or a broken generator would: keys dropped, renamed and
retyped, values swapped for other types, boundary numbers, unicode, deep nesting, and
text-level damage (lines dropped or repeated, bytes inserted). The file then goes through
the real inventory plugin (as ``ansible-inventory`` loads it) and the validation the
``meshfleet.mesh.validate`` role runs. Every case must end either valid or refused with
Meshfleet messages that each name a key path (or the file, line and column); never a
traceback, never a hang, never a memory blow-up: each case runs under a time limit
(SIGALRM) and a memory limit (tracemalloc peak).

The ``@example`` cases are the inputs that found bugs; they stay as regression cases.
"""

from __future__ import absolute_import, division, print_function

import copy
import os
import signal
import tempfile
import tracemalloc

import pytest
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings, strategies as st

from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader

from ansible_collections.meshfleet.mesh.plugins.module_utils import topology as t
from ansible_collections.meshfleet.mesh.tests.unit.plugins.inventory.test_inventory_topology import (
    make_plugin)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
EXAMPLES = dict(
    (name, open(os.path.join(REPO, "inventories", name, "mesh.meshfleet.yml")).read())
    for name in ("local", "primary-remote", "multicloud-example"))
TIME_LIMIT = 10          # seconds per case
MEMORY_LIMIT = 256 << 20  # bytes allocated at the peak of one case
EXAMPLES_PER_TEST = int(os.environ.get("MESHFLEET_PROPERTY_EXAMPLES", "150"))
# make test runs the same cases every time (derandomized); MESHFLEET_PROPERTY_RANDOM=1 explores
DERANDOMIZE = os.environ.get("MESHFLEET_PROPERTY_RANDOM", "") != "1"
# no "explain" phase: its line tracing makes one case ~100x slower than the time limit allows
PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)

# --- running one case ------------------------------------------------------------------


class CaseTimeout(BaseException):
    """A BaseException, so that no ``except Exception`` on the way turns it into a message."""


def _alarm(signum, frame):
    raise CaseTimeout("case took more than %d s" % TIME_LIMIT)


def load_file(text_or_bytes):
    """(errors, unparsed) of a topology file as the inventory plugin and validate see it."""
    data = text_or_bytes if isinstance(text_or_bytes, bytes) else text_or_bytes.encode("utf-8")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "mesh.meshfleet.yml")
        with open(path, "wb") as f:
            f.write(data)
        inventory = InventoryData()
        make_plugin().parse(inventory, DataLoader(), path, cache=False)
        inventory.reconcile_inventory()
        av = inventory.groups["all"].get_vars()
        errors = list(av["meshfleet_topology_errors"])
        topology = av["meshfleet_topology"]
        # what the validate role's module adds (topology_validate: extra errors + validate())
        if not av["meshfleet_topology_unparsed"]:
            errors += [e for e in t.validate(topology) if e not in errors]
            t.summarise(topology)
        return path, errors, av["meshfleet_topology_unparsed"], list(topology)


def run_case(text_or_bytes, top_keys=()):
    """Load one mutated file under the limits and check every message it produced."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIME_LIMIT)
    tracemalloc.start()
    try:
        path, errors, unparsed, loaded_keys = load_file(text_or_bytes)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert peak < MEMORY_LIMIT, "case used %d MiB" % (peak >> 20)
    starts = tuple(t.key_path("", k) for k in list(top_keys) + loaded_keys) + (
        "topology", "mesh", "clusters", "networks", "vm_groups", "plugin")
    for e in errors:
        assert isinstance(e, str) and len(e) <= t.MAX_PATH_SHOWN + t.MAX_MESSAGE + 2, e[:300]
        assert "Traceback" not in e and "is undefined" not in e, e
        if unparsed:
            assert e.startswith(path + ": "), e
            continue
        # "<key path>: <message>", the path starting at a top-level key
        assert any(e.startswith(start + sep) for start in starts for sep in (": ", ".", "[")), e
    return errors, unparsed


# --- mutations of the data ---------------------------------------------------------------

def paths_of(node, prefix=()):
    """Every (path, value) in a loaded topology, containers included."""
    out = [(prefix, node)]
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(paths_of(v, prefix + (k,)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(paths_of(v, prefix + (i,)))
    return out


def parent_and_key(data, path):
    node = data
    for k in path[:-1]:
        node = node[k]
    return node, path[-1]


scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.sampled_from([0, -1, 1, 65535, 65536, 2 ** 31, 2 ** 63, 36525, 36526, 10 ** 18]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0x2FFFF,
                                   blacklist_categories=("Cs",)), max_size=20),
    st.sampled_from(["", " ", "{{ lookup('env', 'HOME') }}", "1.30-dev", "10.0.0.300",
                     "0.0.0.0/0", "all", "localhost", "ungrouped", "clusters", "a" * 300,
                     "x" * 70000, "../../etc/passwd", "~", "-1", "null", "yes"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.text(max_size=12), st.integers()), inner, max_size=4)),
    max_leaves=12)


def deep(depth):
    node = "leaf"
    for i in range(depth):
        node = {"k": node} if i % 2 else [node]
    return node


@st.composite
def mutated(draw):
    name = draw(st.sampled_from(sorted(EXAMPLES)))
    data = copy.deepcopy(t.load_topology(EXAMPLES[name])[0])
    for _step in range(draw(st.integers(min_value=1, max_value=4))):
        candidates = [p for p, _v in paths_of(data) if p and p != ("plugin",)]
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        parent, key = parent_and_key(data, path)
        op = draw(st.sampled_from(["drop", "rename", "retype", "boundary", "swap", "nest"]))
        if op == "drop":
            del parent[key]
        elif op == "rename" and isinstance(parent, dict):
            new = draw(st.one_of(st.text(max_size=15), st.integers(), st.sampled_from(
                ["all", "localhost", "vms", "primaries", "mesh ", "Clusters", "settings", "ID"])))
            if new not in parent:
                parent[new] = parent.pop(key)
        elif op == "swap":
            other = draw(st.sampled_from(candidates))
            oparent, okey = parent_and_key(data, other)
            if other[:len(path)] != path and path[:len(other)] != other:
                parent[key], oparent[okey] = oparent[okey], parent[key]
        elif op == "nest":
            parent[key] = deep(draw(st.integers(min_value=5, max_value=45)))
        else:  # retype / boundary
            parent[key] = draw(values if op == "retype" else scalars)
    return data


@settings(max_examples=EXAMPLES_PER_TEST, deadline=None, phases=PHASES, derandomize=DERANDOMIZE,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated())
@example({"plugin": "meshfleet.mesh.topology", "mesh": {"id": "m", "ca": {"root_days": 10 ** 9}},
          "clusters": {"c1": {"provider": "kwok", "network": "n1"}}})
@example({"plugin": "meshfleet.mesh.topology", "mesh": {"id": "m"},
          "clusters": {"all": {"provider": "kwok", "network": "n1"},
                       "c1": {"provider": "kwok", "network": "n1"}}})
@example({"plugin": "meshfleet.mesh.topology", "mesh": {"id": "m"},
          "clusters": {"c1": {"provider": "kwok", "network": "n1", "eastwest_address": "10.0.0.300"}}})
def test_mutated_topology_is_accepted_or_refused_with_key_paths(data):
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=10 ** 6)
    run_case(text, top_keys=list(data) if isinstance(data, dict) else ())


# --- damage to the text ------------------------------------------------------------------

@st.composite
def damaged(draw):
    name = draw(st.sampled_from(sorted(EXAMPLES)))
    lines = EXAMPLES[name].encode("utf-8").split(b"\n")
    for _step in range(draw(st.integers(min_value=1, max_value=3))):
        i = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        op = draw(st.sampled_from(["drop", "repeat", "indent", "bytes", "truncate", "alias"]))
        if op == "drop":
            del lines[i]
        elif op == "repeat":
            lines.insert(i, lines[i])
        elif op == "indent":
            lines[i] = b" " * draw(st.integers(min_value=1, max_value=7)) + lines[i]
        elif op == "bytes":
            pos = draw(st.integers(min_value=0, max_value=len(lines[i])))
            lines[i] = lines[i][:pos] + draw(st.binary(min_size=1, max_size=6)) + lines[i][pos:]
        elif op == "truncate":
            lines = lines[:i + 1]
        else:
            lines.insert(i, b"x%d: &x%d [*x%d, *x%d, *x%d]" % (i, i, i - 1, i - 1, i - 1))
        if not lines:
            lines = [b""]
    return b"\n".join(lines)


ALIAS_BOMB = "plugin: meshfleet.mesh.topology\na: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\n" + "".join(
    "%s: &%s [%s]\n" % (n, n, ", ".join(["*" + p] * 9)) for p, n in zip("abcdefgh", "bcdefghi"))


@settings(max_examples=EXAMPLES_PER_TEST, deadline=None, phases=PHASES, derandomize=DERANDOMIZE,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(damaged())
@example(b"plugin: meshfleet.mesh.topology\nmesh: {id: caf\xe9}\n")
@example(b"---\n(# An example multi-cloud mesh: one Istio mesh\nplugin: meshfleet.mesh.topology\nmesh: {id: m}\n")
@example(b"mesh:\n  id: m\nclusters: {c1: {provider: kwok, network: n}}\n")
@example(ALIAS_BOMB.encode("ascii"))
def test_damaged_file_is_refused_with_its_line_or_key_path(data):
    run_case(data)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_shipped_examples_are_valid(name):
    errors, unparsed = run_case(EXAMPLES[name])
    assert errors == [] and unparsed is False
