# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the integration tests (real kwok clusters from the built Go tools).

- Every test in this folder is marked ``integration`` unless it is marked ``vm`` (those
  need root and network namespaces and run with ``-m vm``).
- ``tools_bin`` (session): MESHFLEET_TOOLS_BIN, else ``tools/build-tools.sh --print-bin``.
  When the tools are not built the tests FAIL (the integration stage of scripts/test.sh
  builds them first); they are never skipped silently.
- ``kwok_mesh`` (session): a ``helpers.KwokMesh`` on a temporary state dir. At the end of
  the session every cluster in it is removed through the module (state=absent), and the
  session fails if a process, a port reservation or a folder is left. An atexit hook kills
  what is left even if pytest dies half-way.
- ``kwok_clusters`` (session): ``kwok_clusters(names_or_count, settings=None)`` brings the
  clusters up in parallel (one Ansible run, one fork per cluster) and returns
  ``{name: module result}``.
- Fixtures of the sibling ``conftest_*.py`` files (e.g. ``conftest_vms.py``) are made
  available here too.
"""

from __future__ import absolute_import, division, print_function

import glob
import importlib
import os
import signal
import sys
import warnings

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import helpers  # noqa: E402


# --- fixtures of the sibling conftest_*.py modules ----------------------------------------

def _is_fixture(obj):
    try:
        from _pytest.fixtures import FixtureFunctionDefinition
        if isinstance(obj, FixtureFunctionDefinition):
            return True
    except ImportError:  # pytest < 8.4
        pass
    return hasattr(obj, "_pytestfixturefunction")


def _import_sibling_fixtures():
    for path in sorted(glob.glob(os.path.join(HERE, "conftest_*.py"))):
        name = os.path.basename(path)[:-3]
        try:
            mod = importlib.import_module(name)
        except Exception as e:  # keep the kwok tests running; the VM tests will report it
            warnings.warn("tests/integration/%s.py could not be imported: %s" % (name, e))
            continue
        for attr, obj in vars(mod).items():
            if _is_fixture(obj) and attr not in globals():
                globals()[attr] = obj


_import_sibling_fixtures()


# --- markers ---------------------------------------------------------------------------------

@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark everything in tests/integration ``integration`` unless it is a ``vm`` test."""
    for item in items:
        path = str(getattr(item, "path", None) or item.fspath)
        if not os.path.abspath(path).startswith(HERE + os.sep):
            continue
        if item.get_closest_marker("vm") is None and item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.integration)


# --- tools -----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tools_bin():
    path, why = helpers.find_tools_bin()
    if path is None:
        pytest.fail("integration tests need the built Go tools: %s" % why, pytrace=False)
    return path


# --- kwok clusters ---------------------------------------------------------------------------

def _sigterm_to_keyboard_interrupt():
    """A SIGTERM (CI cancel) unwinds like Ctrl-C, so fixtures' teardowns still run."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        def handler(signum, frame):
            raise KeyboardInterrupt("SIGTERM")
        signal.signal(signal.SIGTERM, handler)


@pytest.fixture(scope="session")
def kwok_mesh(tmp_path_factory, tools_bin):
    _sigterm_to_keyboard_interrupt()
    mesh = helpers.KwokMesh(str(tmp_path_factory.mktemp("kwok") / "state"), tools_bin)
    try:
        yield mesh
    finally:
        problems = mesh.teardown()
        assert not problems, "kwok clusters were not torn down cleanly: %s" % "; ".join(problems)


@pytest.fixture(scope="session")
def kwok_clusters(kwok_mesh):
    """``kwok_clusters(names_or_count, settings=None, prefix="kc") -> {name: module result}``.

    The clusters come up in parallel (one Ansible run, one fork each) and are ready.
    """
    counter = [0]

    def make(names_or_count, settings=None, prefix="kc"):
        if isinstance(names_or_count, int):
            names = []
            for _i in range(names_or_count):
                counter[0] += 1
                names.append("%s%d" % (prefix, counter[0]))
        else:
            names = list(names_or_count)
        res = kwok_mesh.converge(dict((n, dict(settings or {})) for n in names))
        for n in names:
            assert res[n]["cluster"]["ready"], res[n]
        return dict((n, res[n]) for n in names)

    return make
