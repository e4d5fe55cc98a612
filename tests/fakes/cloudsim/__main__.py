# -*- coding: utf-8 -*-
"""``python -m ansible_collections.meshfleet.mesh.tests.fakes.cloudsim --work-dir DIR [...]``

Prints the endpoints as one JSON line on stdout (also ``<work-dir>/endpoints.json``), then
serves until SIGTERM/SIGINT or until ``--parent-pid`` exits; on the way out every kwok
cluster it started is deleted.
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time

from ansible_collections.meshfleet.mesh.tests.fakes.cloudsim.sim import CloudSim


def main(argv=None):
    ap = argparse.ArgumentParser(prog="cloudsim", description=__doc__)
    ap.add_argument("--work-dir", required=True, help="state of the sim (kwok clusters, CA, keys)")
    ap.add_argument("--tools-bin", default=os.environ.get("MESHFLEET_TOOLS_BIN"),
                    help="folder of the built Go tools (default: $MESHFLEET_TOOLS_BIN)")
    ap.add_argument("--token-ttl", type=int, default=3600,
                    help="lifetime in seconds of the AAD and Google access tokens it issues")
    ap.add_argument("--aws-region", default="eu-central-1")
    ap.add_argument("--gcp-project", default="acme-mesh-prod")
    ap.add_argument("--no-kube", action="store_true",
                    help="no kwok clusters (cloud APIs only; clusters never become ready)")
    ap.add_argument("--vms", action="store_true",
                    help="back every instance (EC2, OpenStack) with a netns VM at its address (root; "
                         "tests/fakes/cloudsim/vms.py)")
    ap.add_argument("--vm-rootfs",
                    help="the base VM rootfs (roles/vms_local/files/vm-rootfs.sh; default: the cached one)")
    ap.add_argument("--parent-pid", type=int, help="exit when this process is gone")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)

    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sim = CloudSim(args.work_dir, tools_bin=args.tools_bin, token_ttl=args.token_ttl,
                   aws_region=args.aws_region, gcp_project=args.gcp_project,
                   with_kube=not args.no_kube, with_vms=args.vms, vm_rootfs=args.vm_rootfs).start()
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    endpoints = sim.endpoints()
    path = os.path.join(sim.work, "endpoints.json")
    with open(path + ".tmp", "w") as f:
        json.dump(endpoints, f, indent=1)
    os.rename(path + ".tmp", path)
    sys.stdout.write(json.dumps(endpoints) + "\n")
    sys.stdout.flush()
    try:
        while not stop.wait(1.0):
            if args.parent_pid and not _alive(args.parent_pid):
                logging.getLogger("cloudsim").warning("parent %d is gone: stopping", args.parent_pid)
                break
    finally:
        started = time.monotonic()
        sim.stop()
        logging.getLogger("cloudsim").info("stopped in %.1fs", time.monotonic() - started)
    return 0


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (IOError, OSError, IndexError):
        return True


if __name__ == "__main__":
    sys.exit(main())
