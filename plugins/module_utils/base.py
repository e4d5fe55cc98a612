# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared base for every Meshfleet module.

One place owns what every module needs: the common options (wait, wait_timeout,
state_dir), check mode, diff, and turning errors into one clear ``fail_json``.
A module subclasses :class:`MeshfleetModule`, declares ``argument_spec`` and
implements :meth:`run`, which returns the result dict (``changed`` and friends).

Pattern: openstack.cloud's ``OpenStackModule`` and kubernetes.core's ``k8s``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import os
import time
import traceback

from ansible.module_utils.basic import AnsibleModule

try:
    import yaml
except ImportError:  # pragma: no cover - PyYAML ships with ansible-core
    yaml = None

WAIT_ARGS = dict(
    wait=dict(type="bool", default=True),
    wait_timeout=dict(type="int", default=300),
)


class MeshfleetError(Exception):
    """An error with a message meant for the user, plus optional result fields."""

    def __init__(self, msg, **details):
        super(MeshfleetError, self).__init__(msg)
        self.msg = msg
        self.details = details


class ImmutableChange(MeshfleetError):
    """Raised when the desired state differs in a field that cannot change in place."""

    def __init__(self, fields, resource="resource"):
        fields = sorted(fields)
        msg = ("cannot change %s of existing %s in place: %s; delete and re-create it, "
               "or restore the previous value" % (
                   "field" if len(fields) == 1 else "fields", resource, ", ".join(fields)))
        super(ImmutableChange, self).__init__(msg, immutable_fields=fields)


class WaitTimeout(MeshfleetError):
    pass


#: The environment variable naming the file where a module records what it waits for
#: (set by the collection's action plugins, e.g. plugins/action/cluster.py, which print it
#: on the console while the module runs). Unset: waits are not recorded.
PROGRESS_ENV = "MESHFLEET_PROGRESS_FILE"
#: The waits of this process, innermost last ({what, timeout, started}).
WAITS = []


def _write_progress():
    path = os.environ.get(PROGRESS_ENV)
    if not path:
        return
    current = dict(WAITS[-1]) if WAITS else {}
    try:
        write_file_atomic(path, json.dumps(dict(current, pid=os.getpid(), waits=len(WAITS))))
    except (IOError, OSError):  # progress is best effort; the wait itself goes on
        pass


class recorded_wait:
    """Context manager: record ``what`` the module waits for (at most ``timeout`` seconds) in
    :data:`WAITS` and in the progress file, for as long as the block runs.

    Every wait of a module goes through it (:func:`wait_for`; providers that wait with an SDK's
    own waiter or poller wrap that call), so the action plugin can show what a long-running
    module waits for, how long it has waited and its timeout.
    """

    def __init__(self, what, timeout):
        self.entry = dict(what=what, timeout=timeout, started=time.time())

    def __enter__(self):
        WAITS.append(self.entry)
        _write_progress()
        return self.entry

    def __exit__(self, *exc):
        if self.entry in WAITS:
            WAITS.remove(self.entry)
        _write_progress()
        return False


def wait_for(predicate, timeout, what, sleep=1.0, max_sleep=5.0, clock=time.monotonic,
             sleeper=time.sleep):
    """Call ``predicate()`` until it returns a truthy value or ``timeout`` seconds pass.

    Returns the truthy value. Raises :class:`WaitTimeout` naming ``what`` on timeout.
    Sleep backs off from ``sleep`` to ``max_sleep``. ``what`` is recorded while it waits
    (:class:`recorded_wait`). ``what`` may be a callable returning the text: it is called
    again for the timeout message (e.g. to name what is still missing).
    """
    text = what() if callable(what) else what
    with recorded_wait(text, timeout):
        deadline = clock() + timeout
        delay = sleep
        last = None
        while True:
            last = predicate()
            if last:
                return last
            if clock() >= deadline:
                raise WaitTimeout("timed out after %ss waiting for %s"
                                  % (timeout, what() if callable(what) else what))
            sleeper(min(delay, max(0.0, deadline - clock())))
            delay = min(delay * 1.5, max_sleep)


def yaml_load(stream, all_documents=False):
    """PyYAML's safe load (all documents of a stream when ``all_documents``: a list), with
    libyaml when PyYAML has it: several times faster on kubeconfigs, kwok's config and
    istioctl's manifests."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    if all_documents:
        return list(yaml.load_all(stream, Loader=loader))
    return yaml.load(stream, Loader=loader)


def ensure_private_dir(path):
    """Create ``path`` (and parents) with mode 0700; tighten it if it exists."""
    if not os.path.isdir(path):
        os.makedirs(path, 0o700)
    os.chmod(path, 0o700)
    return path


def write_file_atomic(path, data, mode=0o600):
    """Write ``data`` to ``path`` atomically with ``mode``. Returns True when content changed."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                if (os.stat(path).st_mode & 0o777) != mode:
                    os.chmod(path, mode)
                return False
    except IOError:
        pass
    tmp = "%s.tmp-%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return True


class MeshfleetModule:
    """Base class: subclasses set ``argument_spec`` / ``module_kwargs`` and implement ``run``."""

    argument_spec = {}
    module_kwargs = {}
    # Add the wait/wait_timeout options for modules that wait on something.
    with_wait = False
    # Return the arguments as ``module_args`` (Ansible drops ``invocation`` from registered
    # results): site.yml records them in the converge receipt (module_utils/receipt.py).
    # no_log values are masked in it like anywhere else in the result.
    return_args = False

    def __init__(self, module=None):
        if module is None:
            spec = copy.deepcopy(self.argument_spec)
            if self.with_wait:
                for k, v in WAIT_ARGS.items():
                    spec.setdefault(k, copy.deepcopy(v))
            kwargs = dict(supports_check_mode=True)
            kwargs.update(self.module_kwargs)
            module = AnsibleModule(argument_spec=spec, **kwargs)
        self.module = module
        self.params = module.params
        self.check_mode = module.check_mode
        self.diff_mode = module._diff
        self.result = dict(changed=False)

    # --- helpers ------------------------------------------------------------
    def warn(self, msg):
        self.module.warn(msg)

    def set_diff(self, before, after):
        """Record a diff for ``--diff`` (secrets must already be redacted by the caller)."""
        if self.diff_mode:
            self.result["diff"] = dict(before=before, after=after)

    def fail(self, msg, **kwargs):
        self.module.fail_json(msg=msg, **kwargs)

    def run(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self):
        try:
            result = self.run() or {}
        except MeshfleetError as e:
            out = dict(self.result)
            out.update(e.details)
            out.pop("msg", None)
            self.module.fail_json(msg=e.msg, **out)
        except Exception as e:  # unexpected: keep the traceback for -vvv
            self.module.fail_json(msg="%s: %s" % (type(e).__name__, e),
                                  exception=traceback.format_exc(), **self.result)
        self.result.update(result)
        if self.return_args:
            self.result["module_args"] = self.params
        self.module.exit_json(**self.result)
