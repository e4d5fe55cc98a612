# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared base for every Meshfleet module.

One place owns what every module needs: the common options (wait, wait_timeout,
state_dir), check mode, diff, and turning errors into one clear ``fail_json``.
A module subclasses :class:`MeshfleetModule`, declares ``argument_spec`` and overrides
the hooks observe -> plan -> apply -> result; the base skips apply in check mode and
sets ``changed`` and ``diff`` from the :class:`Plan`.

Pattern: openstack.cloud's ``OpenStackModule`` and ``StateMachine`` (check mode is one
branch, in the base), kubernetes.core's ``k8s``.
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


class Plan:
    """What a module would change, in order, and the diff that shows it.

    ``add(what, action)`` appends one step: ``what`` says what would change (the converge
    receipt names it when a step would change), ``action`` (a callable, may be None) is what
    the module's apply runs (the default apply: :meth:`run`).
    ``before``/``after`` are the diff of ``--diff``: views with no secrets in them, set by the
    plan hook and refined by the actions when only doing tells (a new fingerprint). An empty
    plan means nothing would change. A step may be added while applying, for what only doing
    can tell (a cloud's kubeconfig whose token was re-minted).
    """

    def __init__(self, before=None, after=None):
        self.steps = []
        self.before = before
        self.after = after
        #: show the diff also when nothing would change (a view that proves what is kept,
        #: e.g. a remote secret's redacted token and its expiry)
        self.always_diff = False
        #: the file the diff is of (its before_header/after_header), when it is a file's text
        self.header = None

    def add(self, what, action=None):
        self.steps.append((what, action))
        return self

    def extend(self, other):
        """Append ``other``'s steps (a sub-plan's)."""
        self.steps.extend(other.steps)
        return self

    @property
    def reasons(self):
        return [what for what, dummy in self.steps]

    def run(self):
        """Run every step's action in order (steps added meanwhile run too)."""
        done = 0
        while done < len(self.steps):
            action = self.steps[done][1]
            done += 1
            if action is not None:
                action()

    def __bool__(self):
        return bool(self.steps)

    __nonzero__ = __bool__

    def __len__(self):
        return len(self.steps)


class MeshfleetModule:
    """Base class: observe -> plan -> apply, check mode and diff decided here only.

    A subclass declares ``argument_spec`` (``module_kwargs``, ``with_wait``) and overrides the
    hooks:

    - :meth:`observe` reads the current state (no change);
    - :meth:`plan` compares it with the parameters and returns a :class:`Plan` (no change;
      refuses what cannot be done, e.g. :class:`ImmutableChange`);
    - :meth:`apply` does the plan (default: run its actions) and whatever a converge does
      beyond it (waiting for readiness); never called in check mode;
    - :meth:`result` returns the result fields, from the observation, the plan and what
      :meth:`apply` left on ``self``;
    - :meth:`healthy` (receipt steps) says why the observed state is not serviceable though
      nothing would change (a cluster not ready), else None.

    The base sets ``changed`` (the plan is not empty) and ``diff`` (the plan's before/after,
    with ``--diff`` and a non-empty plan). A module never looks at check mode.

    ``receipt_step = True`` makes a module a step of the converge receipt
    (module_utils/receipt.py): its result carries ``module_args`` (the arguments a re-run
    passes, :meth:`rerun_params`) and ``receipt_step`` (where its class is), so site.yml's
    record play can find it, and the next run asks it :meth:`check` in one process.
    """

    argument_spec = {}
    module_kwargs = {}
    # Add the wait/wait_timeout options for modules that wait on something.
    with_wait = False
    #: a converge-receipt step (see the class docstring)
    receipt_step = False

    def __init__(self, module=None, params=None):
        if module is None and params is None:
            spec = copy.deepcopy(self.argument_spec)
            if self.with_wait:
                for k, v in WAIT_ARGS.items():
                    spec.setdefault(k, copy.deepcopy(v))
            kwargs = dict(supports_check_mode=True)
            kwargs.update(self.module_kwargs)
            module = AnsibleModule(argument_spec=spec, **kwargs)
        # params without a module: the receipt's check (read-only, no AnsibleModule)
        self.params = params if params is not None else module.params
        self.check_mode = module.check_mode if module is not None else True
        self.diff_mode = module._diff if module is not None else False
        self.module = module
        self.warnings = []
        self.out = dict(changed=False)

    # --- hooks (override) -----------------------------------------------------
    def observe(self):
        return None

    def plan(self, observed):
        return Plan()

    def apply(self, plan, observed):
        plan.run()

    def result(self, observed, plan):
        return {}

    def healthy(self, observed, plan):
        return None

    def rerun_params(self):
        """The arguments a re-run passes (recorded in the receipt): one-shot requests that
        this run fulfilled are dropped by the module that has them."""
        return self.params

    # --- helpers ------------------------------------------------------------
    def warn(self, msg):
        if self.module is not None:
            self.module.warn(msg)
        else:
            self.warnings.append(msg)

    def no_log(self, value):
        """Hide ``value`` wherever it would appear in the output."""
        if value and self.module is not None:
            self.module.no_log_values.add(value)

    def fail(self, msg, **kwargs):
        raise MeshfleetError(msg, **kwargs)

    @classmethod
    def for_task(cls, task, params, **kwargs):
        """The module run by an action plugin in the controller's process, in ``task``'s check
        and diff modes (``params`` validated by the action)."""
        obj = cls(params=params, **kwargs)
        obj.check_mode = bool(task.check_mode)
        obj.diff_mode = bool(task.diff)
        return obj

    @classmethod
    def step_name(cls):
        """``<module_utils module path>.<class>`` (``remote_secret.RemoteSecretModule``,
        ``localnet.network.LocalNetworkModule``): where the receipt finds this step's class."""
        return "%s.%s" % (cls.__module__.split(".module_utils.", 1)[-1], cls.__name__)

    # --- the contract -------------------------------------------------------
    def run(self):
        """observe -> plan -> apply (not in check mode) -> result; ``changed`` and ``diff``
        from the plan."""
        observed = self.observe()
        plan = self.plan(observed)
        if not self.check_mode:
            self.apply(plan, observed)
        out = dict(self.result(observed, plan) or {})
        out["changed"] = bool(plan)
        if (plan or plan.always_diff) and self.diff_mode and (plan.before is not None or plan.after is not None):
            out["diff"] = dict(before=plan.before, after=plan.after)
            if plan.header:
                out["diff"].update(before_header=plan.header, after_header=plan.header)
        return out

    def check(self):
        """The converge receipt's one question: ``(why, result)``; ``why`` is None when the
        plan is empty and the step is healthy, else what would change or what is wrong."""
        observed = self.observe()
        plan = self.plan(observed)
        if plan:
            return "would change: %s" % "; ".join(str(r) for r in plan.reasons[:3]), None
        why = self.healthy(observed, plan)
        if why:
            return why, None
        out = dict(self.result(observed, plan) or {})
        out["changed"] = False
        return None, out

    def __call__(self):
        marker = dict(receipt_step=self.step_name()) if self.receipt_step else {}
        try:
            result = self.run() or {}
        except MeshfleetError as e:
            out = dict(self.out, **marker)
            out.update(e.details)
            out.pop("msg", None)
            self.module.fail_json(msg=e.msg, **out)
        except Exception as e:  # unexpected: keep the traceback for -vvv
            self.module.fail_json(msg="%s: %s" % (type(e).__name__, e),
                                  exception=traceback.format_exc(), **dict(self.out, **marker))
        self.out.update(result)
        if self.receipt_step:
            self.out.update(marker, module_args=self.rerun_params())
        self.module.exit_json(**self.out)
