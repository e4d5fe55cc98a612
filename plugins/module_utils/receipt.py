# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The converge receipt: a re-run of a converged mesh checked in one process.

A converge of the mesh runs ~6 modules per cluster, each its own Python process (~0.25 s
of CPU before it does anything). When nothing changed, that start-up cost is most of the
run. So ``site.yml`` ends its mesh part by recording a *receipt* in the state dir:

- a fingerprint of everything the modules' arguments are made from: the inventory
  sources, the collection's roles, plugins and playbooks, the Ansible config file, the
  extra vars and limit of the command line, ``MESHFLEET_*`` environment variables, the
  Ansible and Python versions, and the built tools (size and mtime);
- each mesh step's class and the arguments a re-run passes (``receipt_step`` and
  ``module_args`` of its registered result: every module class with ``receipt_step = True``
  returns them, see ``MeshfleetModule``), and its result.

The next run first loads the receipt (action ``meshfleet.mesh.converge_receipt``). When
the fingerprint is the same, the same arguments would be computed again, so it asks every
recorded step's own module code the one question of ``MeshfleetModule.check``: is its plan
empty and is it healthy? One forked process per host; the same observations and plans as a
normal run (cluster processes and API server, every Istio object
and label, ``cacerts`` against the PKI, istiod's process, configuration and readiness,
each remote secret's server, CA and token expiry, the PKI's expiry). Only when none of
them would change anything is the mesh part skipped; anything else (no receipt, other
inputs, drift, an error) runs the normal path, which repairs and reports it.

The receipt vouches for whole converges: a run whose ``--tags``/``--skip-tags`` leave out
one of the mesh steps (:data:`MESH_STEPS`, the tags of ``playbooks/mesh.yml``'s plays) neither
checks nor records it (:func:`selected_steps`).

The receipt holds no secrets: a step whose arguments carry a ``no_log`` value, or whose
result was censored, is not recorded and the receipt is dropped.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import hashlib
import importlib
import json
import os
import platform
import re
import select
import signal
import sys
import time

from ansible_collections.meshfleet.mesh.plugins.module_utils.base import (
    MeshfleetError, MeshfleetModule, Plan, ensure_private_dir, write_file_atomic)

VERSION = 2
FILE_NAME = "converge-receipt.json"
NO_LOG_MARK = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
_PKG = "ansible_collections.meshfleet.mesh.plugins"
#: ``<module_utils file>.<class>``, as MeshfleetModule.step_name() makes it
STEP_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.[A-Z][A-Za-z0-9]*$")
# seconds the checks of all hosts may take together (a hung API server: the normal path runs;
# every Kubernetes request has its own 30 s timeout, so this is a backstop), plus
# CHECK_STEP_SECONDS per recorded step: a 20-cluster full mesh records about 460 steps
# (380 remote secrets) and its checks share the machine's cores, so a fixed bound that
# suits 3 clusters would send a big mesh down the slow path on a busy machine
CHECK_TIMEOUT = 120
CHECK_STEP_SECONDS = 0.5
# files bigger than this are fingerprinted by size and mtime (the Go tools are 100+ MB)
BIG_FILE = 4 * 1024 * 1024


#: The steps whose results the receipt records, in order: the tag of each play of
#: ``playbooks/mesh.yml`` that runs one (the role of the same name). Validation carries the tag
#: ``always``; the VM plays (``vms``) are not part of the receipt.
MESH_STEPS = ("trust", "clusters", "control_plane", "mesh_links")


def receipt_path(state_dir):
    return os.path.join(state_dir, FILE_NAME)


# --- which steps this run selects ------------------------------------------------------------
def _tag_set(tags):
    """Tags as a set (``--tags a,b`` may arrive unsplit)."""
    out = set()
    for tag in tags or ():
        out.update(t.strip() for t in str(tag).split(",") if t.strip())
    return out


def runs_with_tags(task_tags, only_tags, skip_tags):
    """Whether a task tagged ``task_tags`` runs under ``--tags only_tags --skip-tags skip_tags``:
    Ansible's rule (``Taggable.evaluate_tags``: ``always`` unless skipped by name or ``all``,
    ``never`` only when named, ``tagged``/``untagged``, ``all``)."""
    tags = _tag_set(task_tags) or {"untagged"}
    only, skip = _tag_set(only_tags), _tag_set(skip_tags)
    run = True
    if only:
        run = ("always" in tags or ("all" in only and "never" not in tags) or bool(tags & only)
               or ("tagged" in only and tags != {"untagged"} and "never" not in tags))
    if run and skip:
        if "all" in skip:
            run = "always" in tags and "always" not in skip
        elif tags & skip or ("tagged" in skip and tags != {"untagged"}):
            run = False
    return run


def selected_steps(only_tags, skip_tags):
    """The mesh steps (:data:`MESH_STEPS`) a run with these ``--tags``/``--skip-tags`` runs."""
    return [step for step in MESH_STEPS if runs_with_tags([step], only_tags, skip_tags)]


def out_of_scope(fast_noop, selected):
    """Why this run neither checks nor records the receipt (None: it does): the fast no-op is
    off (``meshfleet_fast_noop=false``), or its tags leave out a mesh step (``selected``, from
    :func:`selected_steps`)."""
    if not fast_noop:
        return "fast no-op off: meshfleet_fast_noop=false"
    if not selected:
        return "this run's tags select none of the mesh steps (%s)" % ", ".join(MESH_STEPS)
    if len(selected) < len(MESH_STEPS):
        return ("this run's tags select only %s of the mesh steps (the receipt is for whole converges)"
                % ", ".join(selected))
    return None


# --- fingerprint -------------------------------------------------------------------------
def _hash_file(h, path):
    st = os.stat(path)
    h.update(("F\0%s\0%d\0" % (path, st.st_size)).encode("utf-8", "surrogateescape"))
    if st.st_size > BIG_FILE:
        # no inode number: it differs on another host or container for the same image file
        h.update(("%d\0" % st.st_mtime_ns).encode())
        return
    with open(path, "rb") as f:
        h.update(f.read())


def fingerprint(paths, extras, skip=()):
    """``(sha256, parts)``: one hash over the files under ``paths`` (hidden entries,
    ``__pycache__`` and the ``skip`` folders left out) and the JSON of ``extras``, and the
    hash of each path and extra (``parts``, so a mismatch can say what changed)."""
    total = hashlib.sha256()
    parts = {}
    skip = set(os.path.realpath(s) for s in skip if s)
    for top in sorted(set(p for p in paths if p)):
        h = hashlib.sha256()
        if os.path.isfile(top):
            _hash_file(h, top)
        elif not os.path.isdir(top):
            h.update(("missing\0%s\0" % top).encode("utf-8", "surrogateescape"))
        else:
            for root, dirs, files in os.walk(top, followlinks=False):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__"
                                 and os.path.realpath(os.path.join(root, d)) not in skip)
                for name in sorted(files):
                    if name.startswith(".") or name.endswith((".pyc", ".pyo", ".retry")):
                        continue
                    path = os.path.join(root, name)
                    if os.path.isfile(path):
                        _hash_file(h, path)
        parts[top] = h.hexdigest()
    for key in sorted(extras):
        parts[key] = hashlib.sha256(json.dumps(extras[key], sort_keys=True, default=str).encode("utf-8")).hexdigest()
    for key in sorted(parts):
        total.update(("%s\0%s\0" % (key, parts[key])).encode("utf-8", "surrogateescape"))
    return total.hexdigest(), parts


def changed_parts(old, new):
    """Which fingerprint parts differ (added, removed or changed), sorted."""
    old, new = old or {}, new or {}
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def environment_extras():
    """What besides files the steps' arguments depend on."""
    return dict(
        env=dict((k, v) for k, v in sorted(os.environ.items()) if k.startswith("MESHFLEET_") or k == "HOME"),
        python=sys.version,
        # the OS and architecture, never the host name: an AWX/AAP job runs in a fresh
        # container with a new name each time, and the checks find a moved mesh anyway
        platform=[platform.system(), platform.machine()],
        receipt=VERSION,
    )


def tool_dirs(steps):
    """The tools folders the recorded steps use (their binaries are part of the fingerprint)."""
    return sorted(set(s["args"].get("tools_bin") for s in steps if s.get("args", {}).get("tools_bin")))


# --- recording ---------------------------------------------------------------------------
def _has_no_log_value(value):
    if isinstance(value, dict):
        return any(_has_no_log_value(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_no_log_value(v) for v in value)
    return value == NO_LOG_MARK


def steps_from_results(results):
    """Receipt steps from ``[{host, var, result}]`` (registered results of receipt steps).
    Returns ``(steps, problem)``; ``problem`` says why nothing can be recorded.

    A step that another host recorded already - the same variable, module and arguments - is
    recorded once: a ``run_once`` task's result is registered on every host of its play (the
    trust step), and the same arguments ask the same question."""
    steps = []
    seen = []
    for item in results:
        host, var, result = item.get("host"), item.get("var"), item.get("result")
        where = "%s of %s" % (var, host)
        if not isinstance(result, dict) or result.get("skipped"):
            continue
        if result.get("failed"):
            return None, "%s failed" % where
        if "censored" in result:
            return None, "%s was hidden by no_log" % where
        name = result.get("receipt_step")
        if not isinstance(name, str) or not STEP_NAME.match(name):
            return None, "%s is not the result of a converge-receipt step (receipt_step %r)" % (where, name)
        args = result.get("module_args")
        if not isinstance(args, dict):
            return None, "%s has no recorded module arguments" % where
        if _has_no_log_value(args):
            return None, "%s has a no_log argument (the receipt never stores secrets)" % where
        key = (var, name, json.dumps(args, sort_keys=True, default=str))
        if key in seen:
            continue
        seen.append(key)
        keep = dict((k, v) for k, v in result.items()
                    if k not in ("module_args", "receipt_step", "diff", "changed"))
        steps.append(dict(host=host, var=var, module=name, args=dict(args), result=keep))
    return steps, None


def save(state_dir, fp, steps, parts=None):
    ensure_private_dir(state_dir)
    body = dict(version=VERSION, fingerprint=fp, parts=parts or {}, recorded=time.time(), steps=steps)
    write_file_atomic(receipt_path(state_dir), json.dumps(body, sort_keys=True, default=str), mode=0o600)


def load(state_dir):
    """The receipt, or ``(None, why not)``."""
    path = receipt_path(state_dir)
    try:
        with open(path) as f:
            body = json.load(f)
    except (IOError, OSError):
        return None, "no receipt yet (first converge, or the last one did not finish)"
    except ValueError:
        return None, "the receipt %s is not JSON" % path
    if not isinstance(body, dict) or body.get("version") != VERSION or not isinstance(body.get("steps"), list):
        return None, "the receipt %s is from another Meshfleet version" % path
    return body, None


def drop(state_dir):
    try:
        os.unlink(receipt_path(state_dir))
        return True
    except OSError:
        return False


# --- checking ----------------------------------------------------------------------------
def step_class(name):
    """The module class of a recorded step (``<module_utils module path>.<class>``)."""
    if not isinstance(name, str) or not STEP_NAME.match(name):
        raise MeshfleetError("%r is not a converge-receipt step" % (name,))
    mod, cls_name = name.rsplit(".", 1)
    cls = getattr(importlib.import_module("%s.module_utils.%s" % (_PKG, mod)), cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, MeshfleetModule) and cls.receipt_step):
        raise MeshfleetError("%s is not a converge-receipt step" % name)
    return cls


def run_step(step):
    """Ask one recorded step's module, on its own copy of the arguments: ``(why, result)``;
    ``why`` is None when its plan is empty and it is healthy."""
    return step_class(step["module"])(params=copy.deepcopy(step["args"])).check()


def step_label(step):
    """The step's module name for messages (``remote_secret``)."""
    return str(step.get("module")).split(".", 1)[0]


def _check_host(host_steps):
    """``(problem or None, {var: result})`` for one host's steps, in order."""
    results = {}
    for step in host_steps:
        try:
            why, res = run_step(step)
        except MeshfleetError as e:
            res, why = None, "check failed: %s" % e.msg.splitlines()[0]
        except Exception as e:  # a step's own bug must not hide drift: run the normal path
            res, why = None, "check failed: %s: %s" % (type(e).__name__, e)
        if why:
            return "%s %s" % (step_label(step), why), {}
        results[step["var"]] = res
    return None, results


def _forked(fn, arg):
    """Run ``fn(arg)`` in a child process; returns a function that waits for its JSON result
    (the checks are CPU-bound Python: processes use every core, threads one)."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(rfd)
            try:
                out = fn(arg)
            except BaseException as e:  # pylint: disable=broad-except
                out = ("check failed: %s: %s" % (type(e).__name__, e), {})
            with os.fdopen(wfd, "wb") as f:
                f.write(json.dumps(out, default=str).encode("utf-8"))
        except BaseException:  # pylint: disable=broad-except
            code = 1
        finally:
            os._exit(code)  # never return into the parent's code
    os.close(wfd)

    def wait(deadline, bound):
        chunks = []
        with os.fdopen(rfd, "rb") as f:
            while True:
                left = deadline - time.monotonic()
                ready = select.select([f], [], [], max(0.0, left))[0] if left > 0 else []
                if not ready:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    return "check timed out after %ds" % bound, {}
                data = os.read(f.fileno(), 1 << 16)
                if not data:
                    break
                chunks.append(data)
        os.waitpid(pid, 0)
        try:
            problem, results = json.loads(b"".join(chunks).decode("utf-8"))
        except (ValueError, TypeError):
            return "check process died", {}
        return problem, results
    return wait


def check_bound(count):
    """Seconds the checks of ``count`` recorded steps may take together."""
    return int(CHECK_TIMEOUT + CHECK_STEP_SECONDS * count)


def check(steps, parallel=True):
    """``(converged, reason, results)``: every step run in check mode, one forked process per
    host (in turn with ``parallel=False`` or without ``os.fork``); ``results`` maps
    host -> var -> result."""
    if not steps:
        return False, "the receipt records no steps", {}
    by_host = {}
    for step in steps:
        by_host.setdefault(step["host"], []).append(step)
    hosts = sorted(by_host)
    if parallel and hasattr(os, "fork"):
        waits = [_forked(_check_host, by_host[h]) for h in hosts]
        bound = check_bound(len(steps))
        deadline = time.monotonic() + bound
        outcomes = [w(deadline, bound) for w in waits]
    else:
        outcomes = [_check_host(by_host[h]) for h in hosts]
    problems = ["%s: %s" % (h, o[0]) for h, o in zip(hosts, outcomes) if o[0]]
    if problems:
        return False, "; ".join(problems), {}
    results = dict((h, o[1]) for h, o in zip(hosts, outcomes))
    return True, "%d steps on %d hosts would change nothing" % (len(steps), len(hosts)), results


# --- recording and dropping, as a module would (the action plugin's state=recorded/absent) ---
class ReceiptModule(MeshfleetModule):
    """``state=recorded``/``absent`` of the converge_receipt action: planned, and applied
    outside check mode, like any module. ``fingerprint(steps)`` returns ``(sha256, parts)``
    (the action computes it: it sees the controller's run)."""

    def __init__(self, module=None, params=None, fingerprint=None):
        super(ReceiptModule, self).__init__(module, params)
        self.fingerprint = fingerprint
        self.fields = {}

    def observe(self):
        return os.path.exists(receipt_path(self.params["state_dir"]))

    def plan(self, observed):
        exists = observed
        state_dir = self.params["state_dir"]
        plan = Plan()
        if self.params["state"] == "absent":
            self.fields = dict(dropped=exists)
            if exists:
                plan.add("drop the receipt", lambda: drop(state_dir))
            return plan
        steps, problem = steps_from_results(self.params["results"])
        if problem:
            self.fields = dict(recorded=False, reason=problem)
            return plan.add("drop the receipt: %s" % problem, lambda: drop(state_dir))
        self.fields = dict(recorded=False, steps=len(steps), reason="check mode")
        return plan.add("record %d steps" % len(steps), lambda: self._save(steps))

    def _save(self, steps):
        fp, parts = self.fingerprint(steps)
        save(self.params["state_dir"], fp, steps, parts)
        self.fields.update(recorded=True, reason="%d steps recorded" % len(steps))

    def result(self, observed, plan):
        return dict(self.fields)
