# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Progress lines of the long-running modules' action plugins (plugin_utils/progress.py),
through a real ``ansible-playbook`` run: a module that waits with ``base.wait_for`` (as every
provider does) behind an action plugin built on ProgressActionBase, with
MESHFLEET_PROGRESS_INTERVAL lowered so the test takes seconds, not minutes."""

from __future__ import absolute_import, division, print_function

import os
import re
import subprocess
import sys
import textwrap
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "collections"))

import pytest  # noqa: E402


@pytest.fixture
def progress():
    """The plugin_utils module; importing controller code flips ansible's module-side
    ``is_controller`` switch for the whole test process: put it back afterwards."""
    from ansible.module_utils import _internal
    before = _internal.is_controller
    from ansible_collections.meshfleet.mesh.plugins.plugin_utils import progress as mod
    yield mod
    _internal.is_controller = before


MODULE = textwrap.dedent('''\
    #!/usr/bin/python
    from ansible_collections.meshfleet.mesh.plugins.module_utils.base import MeshfleetModule, wait_for
    import time

    class Slow(MeshfleetModule):
        argument_spec = dict(seconds=dict(type="float", required=True), timeout=dict(type="int", default=60))

        def run(self):
            end = time.time() + self.params["seconds"]
            wait_for(lambda: time.time() >= end, self.params["timeout"], "the fake cloud's slow operation",
                     sleep=0.2, max_sleep=0.2)
            return dict(changed=True)

    def main():
        Slow()()

    if __name__ == "__main__":
        main()
''')

ACTION = textwrap.dedent('''\
    from ansible_collections.meshfleet.mesh.plugins.plugin_utils.progress import ProgressActionBase

    class ActionModule(ProgressActionBase):
        pass
''')

PLAYBOOK = textwrap.dedent('''\
    - hosts: localhost
      gather_facts: false
      tasks:
        - name: Slow
          slowmod:
            seconds: {seconds}
            timeout: {timeout}
''')


def run_playbook(tmp_path, seconds, timeout=60, interval="1", merge=True, **extra_env):
    (tmp_path / "library").mkdir(exist_ok=True)
    (tmp_path / "action_plugins").mkdir(exist_ok=True)
    (tmp_path / "library" / "slowmod.py").write_text(MODULE)
    (tmp_path / "action_plugins" / "slowmod.py").write_text(ACTION)
    (tmp_path / "play.yml").write_text(PLAYBOOK.format(seconds=seconds, timeout=timeout))
    env = dict(os.environ, MESHFLEET_PROGRESS_INTERVAL=interval, ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "collections"),
               ANSIBLE_LIBRARY=str(tmp_path / "library"), ANSIBLE_ACTION_PLUGINS=str(tmp_path / "action_plugins"),
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCALHOST_WARNING="0")
    env.pop("MESHFLEET_PROGRESS_FILE", None)
    env.update(extra_env)
    started = time.monotonic()
    proc = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", "localhost,",
                           "-c", "local", str(tmp_path / "play.yml")], cwd=str(tmp_path), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT if merge else subprocess.PIPE,
                          text=True, timeout=120, check=False)
    return proc, time.monotonic() - started


def test_progress_lines_name_the_wait_while_the_module_runs(tmp_path):
    proc, _seconds = run_playbook(tmp_path, seconds=5)
    out = proc.stdout
    assert proc.returncode == 0, out
    lines = [line for line in out.splitlines() if "still running after" in line]
    # one line per second of a 5 s wait (the first after 1 s): at least 3 on a loaded box
    assert len(lines) >= 3, out
    assert all(line.startswith("slowmod on localhost: still running after ") for line in lines), lines
    waiting = [line for line in lines if "waiting for the fake cloud's slow operation" in line]
    assert waiting, out
    assert re.search(r"waiting for the fake cloud's slow operation \(\d+s of at most 1m00s\)", waiting[-1]), waiting
    # the lines come before the task's result, on the console (stderr, merged here)
    assert out.index(lines[0]) < out.index("changed: [localhost]"), out
    # the progress file is removed afterwards
    assert not [f for f in os.listdir(tmp_path) if f.startswith("meshfleet-progress-")]


def test_json_stdout_stays_parseable(tmp_path):
    import json
    proc, _seconds = run_playbook(tmp_path, seconds=3, merge=False, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["plays"][0]["tasks"][0]["hosts"]["localhost"]["changed"] is True
    assert "still running after" in proc.stderr


def test_no_progress_line_for_a_quick_task(tmp_path):
    proc, _seconds = run_playbook(tmp_path, seconds=0, interval="30")
    assert proc.returncode == 0, proc.stdout
    assert "still running" not in proc.stdout


def test_timeout_message_and_progress_format(progress):
    state = dict(what="node group ng1 to become active", timeout=2400, started=1000.0)
    line = progress.progress_line("meshfleet.mesh.cluster on eks1", 900.0, state, now=1150.0)
    assert line == ("meshfleet.mesh.cluster on eks1: still running after 4m10s; waiting for node group ng1 "
                    "to become active (2m30s of at most 40m00s)")
    assert progress.progress_line("x on h", 0.0, {}, now=3725.0) == "x on h: still running after 1h02m"


def test_interval_from_the_environment(monkeypatch, progress):
    monkeypatch.setenv("MESHFLEET_PROGRESS_INTERVAL", "2")
    assert progress.interval() == 2.0
    monkeypatch.setenv("MESHFLEET_PROGRESS_INTERVAL", "soon")
    assert progress.interval() == 30.0
    monkeypatch.delenv("MESHFLEET_PROGRESS_INTERVAL")
    assert progress.interval() == 30.0


# Modules that wait (wait_for in their module_utils: clusters, VMs, istiod readiness, the
# Istio kinds and the gateway's load balancer address, the mesh's sync): each has an action
# plugin that prints the progress lines.
WAITING_MODULES = {
    "cluster": "cluster.py", "vm_instance": "vm_providers/openstack.py", "istiod_local": "istiod_local.py",
    "istio_install": "istio_install.py", "gateway_address": "gateway_address.py", "mesh_verify": "mesh_verify.py",
}


@pytest.mark.parametrize("module", sorted(WAITING_MODULES))
def test_modules_that_wait_print_progress(module, progress):
    import importlib
    utils = os.path.join(ROOT, "plugins", "module_utils", WAITING_MODULES[module])
    with open(utils) as f:
        code = f.read()
    assert "wait_for(" in code or "recorded_wait(" in code
    action = importlib.import_module("ansible_collections.meshfleet.mesh.plugins.action.%s" % module)
    assert issubclass(action.ActionModule, progress.ProgressActionBase)
