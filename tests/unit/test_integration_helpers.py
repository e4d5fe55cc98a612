# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The integration helpers' failure printing (helpers.PlaybookRun.failures / assert_ok):
the error message of a failed task must be shown, also for a failed loop item whose echoed
item is long (the WorkloadEntry delete fault showed the item, not the error)."""

from __future__ import absolute_import, division, print_function

import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import helpers  # noqa: E402

FIXTURES = os.path.join(HERE, "fixtures", "ansible_output")
NOT_FOUND = ('Failed to delete object: b\'{"kind":"Status","apiVersion":"v1","metadata":{},'
             '"status":"Failure","message":"workloadentries.networking.istio.io '
             '\\"web-10.81.0.2-network1\\" not found","reason":"NotFound","code":404}\\n\'')


def captured(fmt):
    with open(os.path.join(FIXTURES, "failed_loop_item.%s-format.txt" % fmt)) as f:
        return f.read()


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_failed_loop_item_shows_its_message(fmt):
    run = helpers.PlaybookRun(["ansible-playbook"], 2, captured(fmt), 1.0)
    text = run.failures()
    blocks = text.split("TASK [")
    assert blocks[0] == ""
    loop = blocks[1]
    assert loop.startswith("VM sidecar | Delete this VM's WorkloadEntry]\n")
    assert "failed: [ctl] (item=web-10.81.0.2-network1) (ignored)\n" in loop
    # the message, whole and on one line, although the item echoed before it is 60 lines long
    assert "  msg: " + NOT_FOUND + "\n" in loop + "\n"
    # the echoed item itself is not repeated
    assert "managedFields" not in text and "ownerReferences" not in text


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_unreachable_and_failed_command(fmt):
    text = helpers.PlaybookRun(["ansible-playbook"], 2, captured(fmt), 1.0).failures()
    assert ("TASK [Copy a file on the VM]\nfatal: [vm9]: UNREACHABLE!\n  msg: Task failed: Failed to "
            "connect to the host via ssh: ssh: connect to host 127.0.0.1 port 1: Connection refused") in text
    assert ("TASK [Copy a file on the VM]\nfatal: [ctl]: FAILED!\n  msg: non-zero return code\n"
            "  cmd: sh -c echo partial; echo 'cp: cannot stat /nonexistent: No such file or directory' "
            ">&2; exit 3\n  rc: 3\n  stderr: cp: cannot stat /nonexistent: No such file or directory\n"
            "  stdout: partial") in text
    assert text.count("TASK [") == 3


def test_the_old_window_would_have_missed_it():
    """The 25 lines after the failed: line end inside the echoed item (the fault this fixes)."""
    lines = captured("yaml").splitlines()
    start = [i for i, line in enumerate(lines) if line.startswith("failed: [ctl]")][0]
    assert not any(line.lstrip().startswith("msg:") for line in lines[start:start + 25])


def test_assert_ok_message_carries_the_error():
    run = helpers.PlaybookRun(["ansible-playbook"], 2, captured("yaml"), 1.0)
    with pytest.raises(AssertionError) as exc:
        helpers.assert_ok(run)
    assert NOT_FOUND in str(exc.value)
    assert "stderr: cp: cannot stat /nonexistent" in str(exc.value)


def test_loop_summary_lists_each_failed_item():
    """A result with ``results`` (a loop summary, e.g. the json callback's) names every
    failed item with its own message."""
    result = {"changed": False, "msg": "One or more items failed", "results": [
        {"_ansible_item_label": "a", "failed": False, "changed": False},
        {"_ansible_item_label": "web-1", "failed": True, "msg": "conflict: 409"},
        {"item": {"name": "db-1"}, "failed": True, "msg": "not found",
         "stderr": "line\n" * 40},
    ]}
    output = "TASK [Delete them] ****\nfatal: [h1]: FAILED! => %s\n\nPLAY RECAP ***\n" % json.dumps(result)
    text = helpers.format_failures(output)
    assert text.startswith("TASK [Delete them]\nfatal: [h1]: FAILED!\n  msg: One or more items failed\n")
    assert "  item web-1:\n    msg: conflict: 409\n" in text
    assert '  item {"name": "db-1"}:\n    msg: not found\n    stderr:\n      ... (25 lines before)\n' in text
    assert "\n  item a:" not in text


def test_unparsable_block_is_shown_raw():
    output = "TASK [x] ***\nfatal: [h1]: FAILED! => {broken\n  stuff\n}\nafter\n"
    text = helpers.format_failures(output, context=3)
    assert text == "TASK [x]\nfatal: [h1]: FAILED! => {broken\n  stuff\n}"


def test_run_playbook_keeps_the_output_of_a_run_it_kills(tmp_path):
    """A run over its timeout is killed; what it printed so far says where it was."""
    play = tmp_path / "slow.yml"
    play.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                    "    - name: Something slow\n      ansible.builtin.command: sleep 60\n")
    run = helpers.run_playbook(str(play), "localhost,", timeout=8, args=[
        "-c", "local", "-e", "ansible_python_interpreter=%s" % sys.executable])
    assert run.rc == -9 and run.seconds < 30
    assert "TASK [Something slow]" in run.output
    assert run.output.rstrip().endswith("[run_playbook: killed after 8s]")
    with pytest.raises(AssertionError) as exc:
        helpers.assert_ok(run)
    assert "killed after 8s" in str(exc.value)
