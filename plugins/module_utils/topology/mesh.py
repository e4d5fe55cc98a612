# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation of the ``mesh`` block: id, trust domain, Istio version/revision/hub/pull secrets,
state dir, CA, features.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.common import (
    _float_hint, is_dns_label, is_dns_subdomain, is_int, is_mapping, is_str, kind, one_of,
    show)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.normalise import (
    image_pulling_clusters)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.schema import (
    CA_KEY_TYPES, DEFAULT_CA, DEFAULT_FEATURES, DEFAULT_ISTIO_HUB, ISTIO_DEFAULT_RELEASE,
    ISTIO_HUB, ISTIO_KEYS, ISTIO_RELEASE, ISTIO_SUPPORTED_MINOR, ISTIO_VERSION, MAX_CA_DAYS,
    MESH_KEYS)


def _validate_mesh(p, mesh, present):
    if not present or mesh is None:
        p.add("mesh", "missing; every topology needs a mesh block with at least id")
        return
    if not p.mapping("mesh", mesh, "mesh settings (id, trust_domain, istio, ...)"):
        return
    p.unknown_keys("mesh", mesh, MESH_KEYS, "mesh")

    mesh_id = mesh.get("id")
    if mesh_id is None:
        p.add("mesh.id", "missing; give the mesh an id such as mesh1 (a DNS-1123 label)")
    else:
        p.label("mesh.id", mesh_id, what="mesh id")

    td = mesh.get("trust_domain")
    if td is not None:
        problem = _trust_domain_problem(td)
        if problem:
            p.add("mesh.trust_domain", problem)

    istio = mesh.get("istio")
    if istio is not None and p.mapping("mesh.istio", istio, "Istio settings (version, revision, hub, "
                                                            "image_pull_secrets)"):
        p.unknown_keys("mesh.istio", istio, ISTIO_KEYS, "mesh.istio")
        version = istio.get("version")
        if version is not None and not (is_str(version) and ISTIO_VERSION.match(version)):
            p.add("mesh.istio.version", "unsupported Istio version %s%s; use a release as a quoted "
                  "string, MAJOR.MINOR.PATCH optionally with -alpha.N, -beta.N or -rc.N (\"%s\"), "
                  "or \"%s\" when every cluster is local (kwok)"
                  % (show(version), _float_hint(version), ISTIO_DEFAULT_RELEASE, ISTIO_SUPPORTED_MINOR))
        elif version is not None and _istio_minor(version) != ISTIO_SUPPORTED_MINOR:
            p.add("mesh.istio.version", "%s is Istio %s, but the pinned istioctl renders Istio %s "
                  "(its charts, istiod and images): use a %s release such as \"%s\""
                  % (show(version), _istio_minor(version), ISTIO_SUPPORTED_MINOR,
                     ISTIO_SUPPORTED_MINOR, ISTIO_DEFAULT_RELEASE))
        revision = istio.get("revision")
        if revision is not None and revision != "":
            p.label("mesh.istio.revision", revision, what="revision")
        hub = istio.get("hub")
        if hub is not None:
            problem = _istio_hub_problem(hub)
            if problem:
                p.add("mesh.istio.hub", problem)
        secrets = istio.get("image_pull_secrets")
        if secrets is not None:
            _validate_image_pull_secrets(p, secrets)

    state_dir = mesh.get("state_dir")
    if state_dir is not None and (not is_str(state_dir) or not state_dir.strip()):
        p.add("mesh.state_dir", "must be a non-empty path string, got %s" % kind(state_dir))

    ca = mesh.get("ca")
    if ca is not None and p.mapping("mesh.ca", ca, "CA settings"):
        _validate_ca(p, ca)

    features = mesh.get("features")
    if features is not None and p.mapping("mesh.features", features, "feature switches"):
        p.unknown_keys("mesh.features", features, tuple(DEFAULT_FEATURES), "feature")
        for key in DEFAULT_FEATURES:
            value = features.get(key)
            if value is not None and not isinstance(value, bool):
                p.add("mesh.features.%s" % key, "must be true or false, got %s" % show(value))


def _istio_minor(version):
    """"1.30" of "1.30", "1.30.4", "1.30-dev" (a version ISTIO_VERSION accepts)."""
    return ".".join(re.split(r"[.-]", version)[:2])


def _istio_hub_problem(hub):
    example = "such as %s or myregistry.example.com/mirror/istio" % DEFAULT_ISTIO_HUB
    if not is_str(hub) or not hub:
        return "must be an image registry path %s, got %s" % (example, kind(hub) if hub != "" else "\"\"")
    if "://" in hub:
        return "%s must be a registry path without a scheme (like https://), %s" % (show(hub), example)
    last = hub.rsplit("/", 1)[-1]
    if "@" in hub or ("/" in hub and ":" in last):
        return ("%s must not carry a tag or digest: the tag is mesh.istio.version; give the registry "
                "path only, %s" % (show(hub), example))
    if "/" not in hub:
        return "%s must be registry/path (the images are <hub>/pilot, <hub>/proxyv2), %s" % (show(hub), example)
    if len(hub) > 200 or not ISTIO_HUB.match(hub):
        return ("%s is not an image registry path: registry[:port]/path, with lowercase path parts "
                "(letters, digits, '.', '_', '-'), %s" % (show(hub), example))
    return None


def _validate_image_pull_secrets(p, secrets):
    path = "mesh.istio.image_pull_secrets"
    if not isinstance(secrets, (list, tuple)):
        p.add(path, "must be a list of Secret names in the Istio namespace, e.g. [%s], got %s"
              % (secrets if is_dns_subdomain(secrets) else "regcred", kind(secrets)))
        return
    seen = set()
    for i, name in enumerate(secrets):
        if not is_dns_subdomain(name):
            p.add("%s[%d]" % (path, i), "Secret name %s is not a DNS-1123 subdomain (lowercase "
                  "letters, digits, '-' and '.', at most 253 characters)" % show(name))
            continue
        if name in seen:
            p.add("%s[%d]" % (path, i), "%s is listed twice" % show(name))
        seen.add(name)


def _validate_istio_release(p, mesh, clusters):
    """Clusters that pull images need mesh.istio.version to be a published release: the
    manifests name <hub>/pilot:<version> and <hub>/proxyv2:<version>, and no registry serves
    the build's own 1.30-dev. Local (kwok) clusters never pull, so MAJOR.MINOR stays valid
    for them alone."""
    istio = mesh.get("istio") if is_mapping(mesh) else None
    if not is_mapping(istio):
        return  # no version given (the default suits the clusters), or reported already
    version = istio.get("version")
    if not is_str(version) or not ISTIO_VERSION.match(version) or \
            _istio_minor(version) != ISTIO_SUPPORTED_MINOR or ISTIO_RELEASE.match(version):
        return  # a release, no version given, or already reported by _validate_mesh
    pulling = image_pulling_clusters(clusters)
    if not pulling:
        return
    hub = istio.get("hub")
    hub = hub if is_str(hub) and hub else DEFAULT_ISTIO_HUB
    p.add("mesh.istio.version", "%s is not an Istio release; %s %s %s images from %s: set "
          "mesh.istio.version to a release such as \"%s\" (and mesh.istio.hub for a mirror)"
          % (show(version), "clusters" if len(pulling) > 1 else "cluster", ", ".join(pulling),
             "pull" if len(pulling) > 1 else "pulls", hub, ISTIO_DEFAULT_RELEASE))


def _trust_domain_problem(td):
    if not is_str(td):
        return "must be a DNS name string such as cluster.local, got %s" % kind(td)
    if "://" in td:
        return "%s must be a bare DNS name, without a scheme (like spiffe://)" % show(td)
    if "/" in td:
        return "%s must be a bare DNS name, without a path" % show(td)
    if ":" in td:
        return "%s must be a bare DNS name, without a port" % show(td)
    if td != td.lower():
        return "%s must be lowercase" % show(td)
    if len(td) > 255:
        return "%s is longer than 255 characters" % show(td)
    if not td or not all(is_dns_label(part) for part in td.split(".")):
        return ("%s is not a DNS name: dot-separated labels of lowercase letters, digits "
                "and '-', e.g. cluster.local" % show(td))
    return None


def _positive_int(p, path, value, maximum=None, unit=""):
    if not is_int(value) or value <= 0:
        p.add(path, "must be a positive whole number, got %s" % show(value))
        return False
    if maximum is not None and value > maximum:
        p.add(path, "%d is more than %d%s" % (value, maximum, unit))
        return False
    return True


def _validate_ca(p, ca):
    p.unknown_keys("mesh.ca", ca, tuple(DEFAULT_CA), "mesh.ca")
    key_type = ca.get("key_type")
    if key_type is not None and key_type not in CA_KEY_TYPES:
        p.add("mesh.ca.key_type", "unknown key type %s; choose one of %s"
              % (show(key_type), one_of(CA_KEY_TYPES)))
    days = {}
    for key in ("root_days", "intermediate_days", "renew_before_days"):
        value = ca.get(key)
        if value is not None and _positive_int(p, "mesh.ca.%s" % key, value, MAX_CA_DAYS,
                                               " (100 years; X.509 dates end in the year 9999)"):
            days[key] = value
    root = days.get("root_days", DEFAULT_CA["root_days"])
    inter = days.get("intermediate_days", DEFAULT_CA["intermediate_days"])
    renew = days.get("renew_before_days", DEFAULT_CA["renew_before_days"])
    if ("root_days" in days or "intermediate_days" in days) and inter > root:
        p.add("mesh.ca.intermediate_days", "%d is more than root_days (%d); an intermediate "
              "cannot outlive its root" % (inter, root))
    elif ("renew_before_days" in days or "intermediate_days" in days) and renew >= inter:
        p.add("mesh.ca.renew_before_days", "%d must be less than intermediate_days (%d)"
              % (renew, inter))
    cert, key = ca.get("root_cert_file"), ca.get("root_key_file")
    for name, value in (("root_cert_file", cert), ("root_key_file", key)):
        if value is not None and (not is_str(value) or not value.strip()):
            p.add("mesh.ca.%s" % name, "must be a file path, got %s" % kind(value))
    if cert and not key:
        p.add("mesh.ca.root_key_file", "missing; root_cert_file needs the matching "
              "root_key_file to sign the intermediates")
    elif key and not cert:
        p.add("mesh.ca.root_cert_file", "missing; root_key_file needs the matching "
              "root_cert_file")
