# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared helpers of the integration tests and the benchmarks (no pytest in here).

- ``find_tools_bin()``: the folder of the built Go tools, or an explanation why there is none.
- ``KwokMesh``: a state dir of kwok clusters driven through Ansible the way a user does
  (``ansible -m meshfleet.mesh.cluster`` over an inventory of N local hosts, in parallel
  forks), with a teardown that checks nothing is left.
- ``run_playbook()`` / ``parse_recap()``: ``ansible-playbook`` in a given inventory.
- ``kube_client()``: a ``kubernetes`` API client for a kubeconfig file.
- process and port checks from ``/proc`` (PID 1 here may not reap zombies: a zombie
  counts as gone).
- ``safety_net()``: an atexit hook that kills whatever is left of a state dir's processes.
"""

from __future__ import absolute_import, division, print_function

import atexit
import errno
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
COLLECTIONS = os.path.join(REPO, "collections")
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible_collections.meshfleet.mesh.plugins.module_utils.ports import PortRegistry  # noqa: E402

VENV_BIN = os.path.join(REPO, ".venv", "bin")
VENV_PYTHON = os.path.join(VENV_BIN, "python")
#: what a kwok cluster needs in the tools folder (providers/kwok.py)
KWOK_TOOLS = ("kwokctl", "kwok", "etcd", "kube-apiserver", "kube-controller-manager",
              "kube-scheduler", "kubectl")
KWOK_PORT_NAMES = ("etcdPort", "etcdPeerPort", "kubeApiserverPort", "kwokControllerPort",
                   "kubeControllerManagerPort", "kubeSchedulerPort")


def venv_tool(name):
    path = os.path.join(VENV_BIN, name)
    return path if os.path.exists(path) else name


# --- tools ----------------------------------------------------------------------------

def find_tools_bin():
    """Return (path, None) or (None, why): MESHFLEET_TOOLS_BIN, else tools/build-tools.sh --print-bin."""
    path = os.environ.get("MESHFLEET_TOOLS_BIN")
    origin = "MESHFLEET_TOOLS_BIN"
    if not path:
        origin = "tools/build-tools.sh --print-bin"
        try:
            p = subprocess.run(["bash", os.path.join(REPO, "tools", "build-tools.sh"), "--print-bin"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               universal_newlines=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, "%s failed: %s" % (origin, e)
        if p.returncode != 0 or not p.stdout.strip():
            return None, "%s failed (rc=%d): %s" % (origin, p.returncode, p.stderr.strip())
        path = p.stdout.strip().splitlines()[-1]
    missing = [t for t in KWOK_TOOLS if not os.access(os.path.join(path, t), os.X_OK)]
    if missing:
        return None, ("the Meshfleet Go tools are not built: %s missing from %s (from %s). "
                      "Build them with `make tools` (tools/build-tools.sh); `make integration` "
                      "builds them before it runs this suite."
                      % (", ".join(missing), path, origin))
    return os.path.realpath(path), None


# --- processes and ports ---------------------------------------------------------------

def proc_state(pid):
    """The one-letter state of ``pid`` (R, S, Z, ...) or None when there is no such process."""
    try:
        with open("/proc/%d/stat" % int(pid)) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (IOError, OSError, ValueError, IndexError):
        return None


def alive(pid):
    """A process that exists and is not a zombie (PID 1 here may reap late or never).

    A killed multi-threaded process shows its leader as a zombie while the other threads
    are still exiting (and still hold its sockets): it is dead once every thread is.
    """
    state = proc_state(pid)
    if state is None:
        return False
    if state != "Z":
        return True
    try:
        tids = os.listdir("/proc/%d/task" % int(pid))
    except OSError:
        return False
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/stat" % (int(pid), tid)) as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    return True
        except (IOError, OSError, IndexError):
            pass
    return False


def read_pids(kwok_cluster_dir):
    """{component: pid} from ``<kwok dir>/pids/*.pid``."""
    pids = {}
    for path in glob.glob(os.path.join(kwok_cluster_dir, "pids", "*.pid")):
        try:
            with open(path) as f:
                pids[os.path.basename(path)[:-4]] = int(f.read().strip())
        except (IOError, ValueError):
            pass
    return pids


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % int(pid), "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except (IOError, OSError):
        return ""


def processes_under(path):
    """{pid: cmdline} of the live (non-zombie) processes whose command line names ``path``."""
    path = os.path.abspath(path).rstrip("/") + "/"
    me = os.getpid()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        line = cmdline(entry)
        if path in line + "/" and alive(entry):
            found[int(entry)] = line
    return found


def kill_pids(pids, timeout=10.0):
    """SIGTERM, wait, SIGKILL what is left; returns the pids still alive (should be none)."""
    pids = [p for p in pids if alive(p)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    for pid in [p for p in pids if alive(p)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def listening_sockets():
    """{port: [socket inode, ...]} of the TCP sockets in LISTEN state (IPv4 and IPv6)."""
    out = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except IOError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "0A":
                port = int(parts[1].rsplit(":", 1)[1], 16)
                out.setdefault(port, []).append(parts[9])
    return out


def socket_owners(inodes):
    """{inode: pid} for the given socket inodes (scans /proc/*/fd; we are root in CI)."""
    wanted = set("socket:[%s]" % i for i in inodes)
    owners = {}
    if not wanted:
        return owners
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir("/proc/%s/fd" % entry)
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink("/proc/%s/fd/%s" % (entry, fd))
            except OSError:
                continue
            if link in wanted:
                owners[link[8:-1]] = int(entry)
    return owners


def port_listeners(ports):
    """{port: [pid or None, ...]} for the ``ports`` that something listens on."""
    listening = listening_sockets()
    hits = dict((p, listening[p]) for p in ports if p in listening)
    owners = socket_owners([i for inodes in hits.values() for i in inodes])
    return dict((p, [owners.get(i) for i in inodes]) for p, inodes in hits.items())


def _proc_kib(pid, name, field):
    """The ``field`` line (``"VmRSS:"``) of ``/proc/<pid>/<name>`` in KiB, 0 when gone."""
    try:
        with open("/proc/%d/%s" % (int(pid), name)) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (IOError, OSError, ValueError):
        pass
    return 0


def rss_kib(pid):
    """Resident memory of ``pid`` in KiB (VmRSS), 0 when gone."""
    return _proc_kib(pid, "status", "VmRSS:")


def pss_kib(pid):
    """Proportional set size of ``pid`` in KiB (shared pages split among their users), 0 when gone."""
    return _proc_kib(pid, "smaps_rollup", "Pss:")


class Listener:
    """A TCP listener on ``host:port`` (to take a port away from a cluster)."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # like Go's listeners: a port whose old connections are in TIME_WAIT can be bound
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.bind((host, port))
                break
            except OSError as e:
                if e.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    holders = port_listeners([port]).get(port, [])
                    self.sock.close()
                    raise OSError(e.errno, "%s: %s:%d (listening: %s)" % (
                        e.strerror, host, port, ", ".join(
                            "%s %s" % (p, cmdline(p)[:120]) if p else "?" for p in holders) or "none"))
                time.sleep(0.2)
        self.sock.listen(1)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- the safety net ------------------------------------------------------------------------

_NET = set()


def _port_owners_under(path):
    prefix = os.path.abspath(path).rstrip("/") + "/"
    reg = PortRegistry()
    return reg, [o for o in reg._load() if o.startswith(prefix)]


def force_cleanup(state_dir):
    """Kill every live process that names ``state_dir`` and drop its port reservations.

    Returns a description of what had to be cleaned up (empty when nothing was left).
    """
    left = []
    procs = processes_under(state_dir)
    if procs:
        left.append("processes %s" % ", ".join("%d (%s)" % (p, c[:80]) for p, c in sorted(procs.items())))
        kill_pids(list(procs))
    reg, owners = _port_owners_under(state_dir)
    if owners:
        left.append("port reservations of %s" % ", ".join(owners))
        for owner in owners:
            reg.release(owner)
    return left


def _run_net():
    for state_dir in sorted(_NET):
        try:
            left = force_cleanup(state_dir)
        except Exception as e:  # pragma: no cover - last resort at exit
            left = ["cleanup failed: %s" % e]
        if left:
            sys.stderr.write("[meshfleet safety net] %s: removed %s\n" % (state_dir, "; ".join(left)))


def safety_net(state_dir):
    """Make sure ``state_dir``'s processes die when this Python process exits (atexit)."""
    if not _NET:
        atexit.register(_run_net)
    _NET.add(os.path.abspath(state_dir))


def leftovers(state_dir):
    """What is left of a state dir's kwok clusters: [] when everything is gone."""
    problems = []
    procs = processes_under(state_dir)
    if procs:
        problems.append("live processes: %s" % ", ".join(
            "%d %s" % (p, c[:100]) for p, c in sorted(procs.items())))
    _reg, owners = _port_owners_under(state_dir)
    if owners:
        problems.append("port reservations: %s" % ", ".join(owners))
    for sub in ("kwok/clusters", "clusters"):
        d = os.path.join(state_dir, sub)
        names = sorted(os.listdir(d)) if os.path.isdir(d) else []
        if names:
            problems.append("folders in %s: %s" % (d, ", ".join(names)))
    return problems


# --- ansible ---------------------------------------------------------------------------------

def ansible_env(tools_bin=None, extra=None):
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
        ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PY_COLORS="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        PATH=VENV_BIN + os.pathsep + env.get("PATH", ""),
    )
    env.pop("KUBECONFIG", None)
    if tools_bin:
        env["MESHFLEET_TOOLS_BIN"] = tools_bin
    env.update(extra or {})
    return env


def parse_recap(text):
    """{host: {ok: n, changed: n, ...}} from the PLAY RECAP of ansible-playbook's output."""
    recap = {}
    part = text.rsplit("PLAY RECAP", 1)
    if len(part) < 2:
        return recap
    for line in part[1].splitlines():
        m = re.match(r"^(\S+)\s*:\s*(.*)$", line.strip())
        if not m:
            continue
        counts = dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2)))
        if counts:
            recap[m.group(1)] = counts
    return recap


FAILURE_RE = re.compile(r"^(fatal|failed): \[([^\]]+)\](.*?)(?: =>(.*))?$")
#: result keys shown for a failure, in this order (msg first: it says what went wrong)
FAILURE_KEYS = ("msg", "cmd", "rc", "stderr", "stdout", "module_stderr", "module_stdout",
                "exception")


def _failure_block(lines, i):
    """The result printed after the ``fatal:``/``failed:`` line ``i``: (text, next index).

    The yaml result format indents the result below the line; the json one opens ``{`` on
    it and closes with ``}`` at the start of a line.
    """
    m = FAILURE_RE.match(lines[i])
    inline = (m.group(4) or "").strip() if m else ""
    block = []
    j = i + 1
    if inline.startswith("{"):
        depth_closed = inline.rstrip().endswith("}") and _parse_result(inline) is not None
        block.append(inline)
        while not depth_closed and j < len(lines):
            block.append(lines[j])
            j += 1
            if lines[j - 1].startswith("}"):
                break
        return "\n".join(block), j
    while j < len(lines) and (lines[j].startswith(" ") or lines[j].startswith("\t")):
        block.append(lines[j])
        j += 1
    return "\n".join(block), j


def _parse_result(text):
    try:
        import yaml
        value = yaml.safe_load(textwrap.dedent(text)) if text.strip() else None
    except Exception:
        try:
            value = json.loads(text)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def _show(key, value, indent="  ", tail=15):
    text = value if isinstance(value, str) else json.dumps(value)
    lines = text.rstrip().splitlines() or [""]
    if len(lines) > tail:
        lines = ["... (%d lines before)" % (len(lines) - tail)] + lines[-tail:]
    if len(lines) == 1:
        return "%s%s: %s" % (indent, key, lines[0])
    return "%s%s:\n%s" % (indent, key, "\n".join(indent + "  " + line for line in lines))


def _describe_result(result, indent="  "):
    out = []
    for key in FAILURE_KEYS:
        value = result.get(key)
        if value in (None, "", []):
            continue
        if key == "cmd" and isinstance(value, list):
            value = " ".join(str(v) for v in value)
        out.append(_show(key, value, indent))
    # a loop's summary result: the error of every failed item
    for item in result.get("results") or []:
        if isinstance(item, dict) and (item.get("failed") or item.get("unreachable")):
            label = item.get("_ansible_item_label", item.get("item"))
            if not isinstance(label, str):
                label = json.dumps(label)[:200]
            out.append("%sitem %s:" % (indent, label))
            out.extend(_describe_result(item, indent + "  "))
    return out


def format_failures(output, context=25):
    """What failed in an ``ansible-playbook`` output (see :meth:`PlaybookRun.failures`)."""
    lines = output.splitlines()
    out, task = [], None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("TASK [") or line.startswith("RUNNING HANDLER ["):
            task = line.rstrip(" *")
            i += 1
            continue
        m = FAILURE_RE.match(line)
        if not m:
            i += 1
            continue
        text, nxt = _failure_block(lines, i)
        result = _parse_result(text)
        head = "%s: [%s]%s" % (m.group(1), m.group(2), m.group(3))
        for later in lines[nxt:]:
            if later.startswith(("TASK [", "RUNNING HANDLER [", "PLAY ", "fatal: [", "failed: [")):
                break
            if later.startswith("...ignoring"):
                head += " (ignored)"
                break
        described = _describe_result(result) if result is not None else []
        if described:
            shown = "\n".join([head] + described)
        else:  # not a result we can read: the raw lines
            shown = "\n".join(lines[i:i + context])
        out.append("%s\n%s" % (task, shown))
        i = max(nxt, i + 1)
    return "\n".join(out)


class PlaybookRun:
    def __init__(self, cmd, rc, output, seconds):
        self.cmd, self.rc, self.output, self.seconds = cmd, rc, output, seconds
        self.recap = parse_recap(output)

    def tail(self, lines=60):
        return "\n".join(self.output.splitlines()[-lines:])

    def failures(self, context=25):
        """The failed tasks of the output: for each ``fatal:`` / ``failed:`` line its task
        header, the line itself (without the echoed loop item) and the error: ``msg`` (of the
        task, or of each failed loop item), then ``stderr``/``stdout``/``rc``/
        ``module_stderr``/``exception`` when the result has them. A block that cannot be
        parsed is shown raw (its first ``context`` lines)."""
        return format_failures(self.output, context)

    def changed_tasks(self):
        """["<task or handler>: <host>"] for every ``changed:`` line of the output."""
        out, task = [], None
        for line in self.output.splitlines():
            m = re.match(r"^(?:TASK|RUNNING HANDLER) \[(.*)\]", line)
            if m:
                task = m.group(1)
                continue
            m = re.match(r"^changed: \[([^\]]+)\]", line)
            if m:
                out.append("%s: %s" % (task, m.group(1)))
        return out

    def __repr__(self):
        return "<ansible-playbook rc=%d %.1fs recap=%s>" % (self.rc, self.seconds, self.recap)


def assert_ok(run):
    """``run`` exited 0 with no failed or unreachable host (else its failures and tail)."""
    assert run.rc == 0, "%r\n%s\n...\n%s" % (run, run.failures(), run.tail(40))
    for host, counts in run.recap.items():
        assert counts.get("failed", 0) == 0 and counts.get("unreachable", 0) == 0, \
            (host, run.failures(), run.tail(40))


def run_playbook(playbook, inventory, tools_bin=None, args=(), timeout=900, env=None):
    """``ansible-playbook -i <inventory> playbooks/<playbook>`` from the repo; a PlaybookRun."""
    cmd = [venv_tool("ansible-playbook"), "-i", inventory,
           playbook if os.path.isabs(playbook) else os.path.join(REPO, "playbooks", playbook)]
    cmd += list(args)
    started = time.monotonic()
    try:
        p = subprocess.run(cmd, cwd=REPO, env=ansible_env(tools_bin, env), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True, timeout=timeout,
                           check=False)
    except subprocess.TimeoutExpired as e:
        # keep what it printed: the tail says where it was (assert_ok shows it; rc -9)
        out = e.output if isinstance(e.output, str) else (e.output or b"").decode("utf-8", "replace")
        return PlaybookRun(cmd, -9, out + "\n[run_playbook: killed after %ss]\n" % timeout,
                           time.monotonic() - started)
    return PlaybookRun(cmd, p.returncode, p.stdout, time.monotonic() - started)


class ModuleRun:
    """The results of one ``ansible -m meshfleet.mesh.cluster`` over N cluster hosts."""

    def __init__(self, results, rc, output, seconds, cmd):
        self.results, self.rc, self.output, self.seconds, self.cmd = results, rc, output, seconds, cmd

    def __getitem__(self, name):
        return self.results[name]

    def failed(self):
        return dict((h, r) for h, r in self.results.items() if r.get("failed") or r.get("unreachable"))

    def __repr__(self):
        return "<ansible -m cluster rc=%d %.1fs %s>" % (self.rc, self.seconds, json.dumps(self.results)[:2000])


class KwokMesh:
    """A state dir of kwok clusters, driven with ``ansible -m meshfleet.mesh.cluster``.

    ``run({name: settings}, state=..., check=..., diff=...)`` converges the named clusters
    in one Ansible run (one local host per cluster, in parallel forks) and returns a
    ModuleRun. ``teardown()`` removes every cluster it finds in the state dir the same way,
    then returns ``leftovers()`` (falling back to killing what is left).
    """

    def __init__(self, state_dir, tools_bin, wait_timeout=180):
        self.state_dir = os.path.abspath(state_dir)
        self.tools_bin = tools_bin
        self.wait_timeout = wait_timeout
        if not os.path.isdir(self.state_dir):
            os.makedirs(self.state_dir, 0o700)
        self.work = os.path.join(os.path.dirname(self.state_dir),
                                 os.path.basename(self.state_dir) + "-ansible")
        if not os.path.isdir(self.work):
            os.makedirs(self.work, 0o700)
        self._n = 0
        safety_net(self.state_dir)

    # paths
    def cluster_dir(self, name):
        return os.path.join(self.state_dir, "clusters", name)

    def kwok_dir(self, name):
        return os.path.join(self.state_dir, "kwok", "clusters", name)

    def kubeconfig(self, name):
        return os.path.join(self.cluster_dir(name), "kubeconfig")

    def port_owner(self, name):
        return os.path.abspath(self.cluster_dir(name))

    def ports(self, name):
        """{port name: port} reserved for the cluster in the machine-wide registry."""
        return PortRegistry().get(self.port_owner(name))

    def pids(self, name):
        return read_pids(self.kwok_dir(name))

    def existing(self):
        names = set()
        for sub in ("kwok/clusters", "clusters"):
            d = os.path.join(self.state_dir, sub)
            if os.path.isdir(d):
                names.update(os.listdir(d))
        return sorted(names)

    # ansible
    def _inventory(self, clusters):
        self._n += 1
        path = os.path.join(self.work, "inventory-%03d.json" % self._n)
        hosts = {}
        for name, settings in clusters.items():
            hosts[name] = dict(ansible_connection="local", ansible_python_interpreter=VENV_PYTHON,
                               mf_settings=dict(settings or {}))
        with open(path, "w") as f:
            json.dump({"all": {"hosts": hosts}}, f, indent=1)
        return path

    def run(self, clusters, state="present", check=False, diff=False, wait_timeout=None,
            env=None, timeout=600):
        """Converge ``clusters`` ({name: settings} or [names]); returns a ModuleRun."""
        if not isinstance(clusters, dict):
            clusters = dict((n, {}) for n in ([clusters] if isinstance(clusters, str) else clusters))
        args = {"name": "{{ inventory_hostname }}", "provider": "kwok",
                "settings": "{{ mf_settings }}", "state_dir": self.state_dir, "state": state,
                "wait_timeout": wait_timeout or self.wait_timeout}
        cmd = [venv_tool("ansible"), "all", "-i", self._inventory(clusters),
               "-f", str(max(1, len(clusters))), "-m", "meshfleet.mesh.cluster", "-a", json.dumps(args)]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        extra = dict(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
                     ANSIBLE_LOCAL_TEMP=os.path.join(self.work, "tmp"))
        extra.update(env or {})
        started = time.monotonic()
        p = subprocess.run(cmd, cwd=REPO, env=ansible_env(self.tools_bin, extra),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                           timeout=timeout, check=False)
        seconds = time.monotonic() - started
        try:
            out = json.loads(p.stdout)
            results = out["plays"][0]["tasks"][0]["hosts"]
        except (ValueError, KeyError, IndexError):
            raise AssertionError("ansible -m meshfleet.mesh.cluster: rc=%d, no JSON result\n%s\n%s"
                                 % (p.returncode, p.stdout[-4000:], p.stderr[-4000:]))
        return ModuleRun(results, p.returncode, p.stdout + p.stderr, seconds, cmd)

    def converge(self, clusters, **kwargs):
        """``run`` and raise AssertionError unless every cluster succeeded."""
        res = self.run(clusters, **kwargs)
        bad = res.failed()
        if bad:
            raise AssertionError("kwok clusters failed: %s" % json.dumps(bad, indent=1)[:6000])
        return res

    def delete(self, names):
        return self.converge(names, state="absent")

    def teardown(self):
        """Delete every cluster of the state dir through the module; return what is left."""
        problems = []
        names = self.existing()
        if names:
            try:
                res = self.run(names, state="absent")
                bad = res.failed()
                if bad:
                    problems.append("state=absent failed: %s" % json.dumps(bad)[:3000])
            except Exception as e:
                problems.append("state=absent failed: %s" % e)
        left = leftovers(self.state_dir)
        if left:
            problems.extend(left)
            force_cleanup(self.state_dir)
        return problems


# --- kubernetes ----------------------------------------------------------------------------

def kube_client(kubeconfig):
    """A kubernetes.client.ApiClient for ``kubeconfig`` (never ~/.kube/config)."""
    from kubernetes import config as kconfig
    return kconfig.new_client_from_config(config_file=kubeconfig)


def wait_until(predicate, timeout, what, interval=0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as e:  # the API may not answer yet
            last = e
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s (last: %r)" % (timeout, what, last))


def run_playbook_interrupted(playbook, inventory, marker, action, tools_bin=None, args=(),
                             timeout=900, env=None):
    """Like :func:`run_playbook`, but calls ``action(process)`` once, when a line of the output
    contains ``marker`` (a fault injected in the middle of a run). Returns (PlaybookRun, fired)."""
    cmd = [venv_tool("ansible-playbook"), "-i", inventory,
           playbook if os.path.isabs(playbook) else os.path.join(REPO, "playbooks", playbook)]
    cmd += list(args)
    started = time.monotonic()
    # its own process group, so that an action can signal the run as Ctrl-C signals a terminal's
    p = subprocess.Popen(cmd, cwd=REPO, env=ansible_env(tools_bin, env), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, start_new_session=True)
    out, fired = [], False
    try:
        for line in p.stdout:
            out.append(line)
            if not fired and marker in line:
                fired = True
                action(p)
            if time.monotonic() - started > timeout:
                p.kill()
                break
        rc = p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return PlaybookRun(cmd, rc, "".join(out), time.monotonic() - started), fired
