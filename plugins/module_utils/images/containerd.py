# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Images into a containerd without a registry: ``ctr images import`` of OCI archives.

:func:`import_images` is idempotent: an archive whose reference the containerd at that socket
already lists with the archive's manifest digest is skipped (``ctr images ls``). An OCI
archive's manifest digest is what containerd lists for it (it keeps the manifest as is).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import tarfile

REF_ANNOTATION = "org.opencontainers.image.ref.name"
NAME_ANNOTATION = "io.containerd.image.name"


class ContainerdError(Exception):
    pass


def archive_manifest(archive):
    """``(ref, manifest digest)`` of an OCI archive with one manifest (its index.json)."""
    try:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("index.json")
            index = json.loads(member.read().decode("utf-8"))
    except (IOError, OSError, KeyError, ValueError, tarfile.TarError) as e:
        raise ContainerdError("%s is not an OCI archive (no readable index.json): %s" % (archive, e))
    manifests = index.get("manifests") or []
    if len(manifests) != 1:
        raise ContainerdError("%s: expected one manifest in index.json, found %d" % (archive, len(manifests)))
    ann = manifests[0].get("annotations") or {}
    ref = ann.get(NAME_ANNOTATION) or ann.get(REF_ANNOTATION)
    if not ref or "/" not in ref:
        raise ContainerdError("%s: its manifest names no full image reference (annotation %s)"
                              % (archive, REF_ANNOTATION))
    return ref, manifests[0]["digest"]


def _ctr(address, namespace, args, ctr="ctr", timeout=600):
    argv = [ctr, "--address", address, "--namespace", namespace] + list(args)
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, check=False)
    except OSError as e:
        raise ContainerdError("cannot run %s: %s (install containerd)" % (ctr, e.strerror))
    except subprocess.TimeoutExpired:
        raise ContainerdError("%s timed out after %ss" % (" ".join(argv), timeout))
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()[-1500:]
        raise ContainerdError("%s failed (rc=%d): %s" % (" ".join(argv), proc.returncode, err))
    return proc.stdout.decode("utf-8", "replace")


def parse_images_ls(text):
    """``{ref: digest}`` of ``ctr images ls`` output (columns REF TYPE DIGEST SIZE ...)."""
    out = {}
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 3 and cols[2].startswith("sha256:"):
            out[cols[0]] = cols[2]
    return out


def check_address(address):
    if not address or not os.path.exists(address):
        raise ContainerdError("address: no containerd socket at %s" % address)


def list_images(address, namespace="k8s.io", ctr="ctr"):
    """``{ref: manifest digest}`` of the images the containerd at ``address`` has."""
    check_address(address)
    return parse_images_ls(_ctr(address, namespace, ["images", "ls"], ctr))


def plan_imports(archives, present):
    """``[(archive, ref, digest, needed)]``: needed unless ``present`` maps ref to digest."""
    out = []
    for archive in archives:
        ref, digest = archive_manifest(archive)
        out.append((archive, ref, digest, present.get(ref) != digest))
    return out


def import_images(address, archives, namespace="k8s.io", ctr="ctr"):
    """Import the OCI archives the containerd at ``address`` lacks (same reference and manifest
    digest = present). Returns ``[dict(archive, ref, digest, imported)]`` in order."""
    present = list_images(address, namespace, ctr)
    out = []
    for archive, ref, digest, needed in plan_imports(archives, present):
        if needed:
            _ctr(address, namespace, ["images", "import", archive], ctr)
        out.append(dict(archive=archive, ref=ref, digest=digest, imported=needed))
    if any(i["imported"] for i in out):
        now = list_images(address, namespace, ctr)
        wrong = [i["ref"] for i in out if now.get(i["ref"]) != i["digest"]]
        if wrong:
            raise ContainerdError("after import, containerd at %s does not list %s with the archive's digest"
                                  % (address, ", ".join(wrong)))
    return out
