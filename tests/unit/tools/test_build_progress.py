# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Progress of the Go tool build (tools/progress.sh, tools/build-tools.sh, scripts/setup.sh)
without a real build: the wrapper around a slow fake command, and the whole setup/build path
with a fake ``go`` first on PATH (it prints package paths slowly, as ``go build -v`` does, and
writes a stub binary) into a temporary tool cache. The real cache is never touched, and the
fake is checked to be the ``go`` the scripts find; GOPROXY=off and empty Go caches would make
a real go fail at once anyway."""

from __future__ import absolute_import, division, print_function

import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PROGRESS = os.path.join(REPO, "tools", "progress.sh")
LINE = re.compile(r"^\[tools\] (\S+): still building after (\d+)s; (\d+) packages so far, last: (\S+)$")

SLOW = textwrap.dedent('''\
    echo "# a header line, not a package"
    for i in 1 2 3 4 5 6 7; do echo "example.com/slow/pkg$i" >&2; sleep 0.5; done
    exit "${EXIT:-0}"
''')


def run_wrapper(tmp_path, exit_code=0):
    log = tmp_path / "fake.log"
    env = dict(os.environ, MESHFLEET_PROGRESS_INTERVAL="1", EXIT=str(exit_code))
    proc = subprocess.run(["bash", PROGRESS, "fake-tool", str(log), "--", "bash", "-c", SLOW],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60, check=False)
    return proc, log


def test_wrapper_prints_elapsed_time_and_last_package_while_the_command_runs(tmp_path):
    proc, log = run_wrapper(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""                     # progress is on stderr only
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    # a 3.5 s command and a line every second: at least two, even on a loaded machine
    assert len(lines) >= 2, proc.stderr
    parsed = [LINE.match(ln) for ln in lines]
    assert all(parsed), lines
    seconds = [int(m.group(2)) for m in parsed]
    counts = [int(m.group(3)) for m in parsed]
    assert seconds == sorted(seconds) and counts == sorted(counts) and counts[-1] >= 2, lines
    assert all(m.group(1) == "fake-tool" for m in parsed)
    assert parsed[-1].group(4) == "example.com/slow/pkg%d" % counts[-1]
    # the log keeps the command's whole output (stdout and stderr)
    text = log.read_text()
    assert text.splitlines() == ["# a header line, not a package"] + [
        "example.com/slow/pkg%d" % i for i in range(1, 8)]


def test_wrapper_returns_the_exit_status_of_the_command(tmp_path):
    proc, log = run_wrapper(tmp_path, exit_code=3)
    assert proc.returncode == 3
    assert "example.com/slow/pkg7" in log.read_text()


def test_wrapper_usage(tmp_path):
    proc = subprocess.run(["bash", PROGRESS, "x", str(tmp_path / "log")], stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    assert proc.returncode == 2 and "usage:" in proc.stderr


FAKE_GO = textwrap.dedent('''\
    #!/usr/bin/env bash
    # a stand-in for go: what tools/build-tools.sh asks of it, no compiling
    case "$1" in
      env)
        case "$2" in
          GOVERSION) echo go1.26.0 ;; GOOS) echo linux ;; GOARCH) echo amd64 ;;
          GOPROXY) echo off ;; GOCACHE) echo "$GOCACHE" ;;
        esac ;;
      list) exit 0 ;;
      build)
        shift
        out="" pkg=""
        while [ $# -gt 0 ]; do
          case "$1" in -o) out=$2; shift ;; -ldflags) shift ;; -*) ;; *) pkg=$1 ;; esac
          shift
        done
        n=1
        if [ "$pkg" = "$FAKE_GO_SLOW" ]; then n=6; fi
        for i in $(seq 1 "$n"); do
          echo "$pkg/internal/p$i" >&2
          if [ "$pkg" = "$FAKE_GO_SLOW" ]; then sleep 0.6; fi
        done
        printf '#!/bin/sh\\necho fake\\n' > "$out" ;;
      *) echo "fake go: unexpected $*" >&2; exit 1 ;;
    esac
''')


def scratch_repo(tmp_path):
    """A copy of scripts/setup.sh and tools/ in a scratch repo whose .venv is up to date
    (stamp of the copied uv.lock + pyproject.toml): setup.sh there runs its tools step and
    never syncs or touches the real (shared) .venv."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(os.path.join(REPO, "scripts", "setup.sh"), str(repo / "scripts"))
    shutil.copytree(os.path.join(REPO, "tools"), str(repo / "tools"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("uv.lock", "pyproject.toml"):
        shutil.copy(os.path.join(REPO, name), str(repo))
    venv = repo / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "lib" / "python3.11" / "site-packages" / "ansible_collections" / "kubernetes" / "core").mkdir(parents=True)
    os.symlink(sys.executable, str(venv / "bin" / "python"))
    (venv / "bin" / "ansible-playbook").write_text("#!/bin/sh\nexit 0\n")
    (venv / "bin" / "ansible-playbook").chmod(0o755)
    stamp = subprocess.run("(cat uv.lock pyproject.toml; echo bytecode) | sha256sum | cut -c1-16", shell=True,
                           cwd=str(repo), stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    (venv / ".meshfleet-stamp").write_text(stamp)
    return repo


def test_setup_tools_step_prints_progress_and_keeps_logs(tmp_path):
    """scripts/setup.sh --tools --source build with the fake go (in a scratch copy of the
    repo): a progress line per second (MESHFLEET_PROGRESS_INTERVAL=1) for the slow tool,
    naming the tool, the elapsed time and the last package; the per-tool log keeps go's whole
    -v output; the setup log (.venv/.tools.log) holds everything the step printed."""
    repo = scratch_repo(tmp_path)
    fake_bin = tmp_path / "fakebin"
    fake_bin.mkdir()
    (fake_bin / "go").write_text(FAKE_GO)
    (fake_bin / "go").chmod(0o755)
    for d in ("cache", "gocache", "gomodcache"):
        (tmp_path / d).mkdir()
    path = "%s:%s" % (fake_bin, os.environ.get("PATH", ""))
    assert shutil.which("go", path=path) == str(fake_bin / "go")
    env = dict(os.environ, PATH=path, MESHFLEET_TOOLS_CACHE=str(tmp_path / "cache"),
               MESHFLEET_PROGRESS_INTERVAL="1", MESHFLEET_PYTHON=sys.executable,
               FAKE_GO_SLOW="sigs.k8s.io/kwok/cmd/kwokctl", GOPROXY="off", GOFLAGS="",
               GOCACHE=str(tmp_path / "gocache"), GOMODCACHE=str(tmp_path / "gomodcache"),
               GOTOOLCHAIN="local")
    env.pop("MESHFLEET_TOOLS_SOURCE", None)
    env.pop("MESHFLEET_TOOLS_LOG", None)
    proc = subprocess.run(["bash", str(repo / "scripts" / "setup.sh"), "--tools", "--source", "build"],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300, check=False)
    out = proc.stdout
    assert proc.returncode == 0, out
    assert "python environment up to date" in out          # the scratch .venv was not synced
    slow = [LINE.match(ln) for ln in out.splitlines() if ln.startswith("[tools] kwokctl: still building")]
    assert len(slow) >= 2 and all(slow), out
    assert slow[-1].group(4).startswith("sigs.k8s.io/kwok/cmd/kwokctl/internal/p"), out
    assert "[tools] kwokctl: " in out and "full log: " in out
    # the setup log is the step's whole output, not an empty file
    setup_log = (repo / ".venv" / ".tools.log").read_text()
    assert "[tools] kwokctl: still building after" in setup_log
    assert setup_log.rstrip().splitlines()[-1].startswith("MESHFLEET_TOOLS_BIN=" + str(tmp_path / "cache"))
    # the per-tool log: the command (with -v) and every package go printed
    logs = [p for p in (tmp_path / "cache").glob("*/logs/kwokctl.log") if p.parts[-3] != "current"]
    assert len(logs) == 1
    text = logs[0].read_text()
    assert " go build -v " in text.splitlines()[0]
    assert ["sigs.k8s.io/kwok/cmd/kwokctl/internal/p%d" % i for i in range(1, 7)] == [
        ln for ln in text.splitlines() if ln.startswith("sigs.k8s.io/")]
    # nothing was built into the real cache: the bin dir printed is the temporary one
    assert not any(ln.startswith("MESHFLEET_TOOLS_BIN=" + os.path.expanduser("~/.cache"))
                   for ln in out.splitlines())


@pytest.mark.parametrize("seconds,text", [(5, "5s"), (125, "2m05s"), (3780, "1h03m")])
def test_duration_format(seconds, text):
    proc = subprocess.run(["bash", "-c", '. "$1"; progress_duration "$2"', "sh", PROGRESS, str(seconds)],
                          stdout=subprocess.PIPE, universal_newlines=True, check=True)
    assert proc.stdout == text
