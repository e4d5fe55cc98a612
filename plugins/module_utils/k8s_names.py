# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The DNS-1123 name rules, once, with the length each kind of name allows.

Kubernetes (apimachinery ``validation.IsDNS1123Label`` / ``IsDNS1123Subdomain``):

- a *label*: lowercase letters, digits and '-', starting and ending with a letter or digit,
  at most 63 characters. Namespace names are labels. Meshfleet also makes labels of the names
  that become label values or Istio IDs: cluster names (``topology.istio.io/cluster``, the
  Istio cluster ID, a CA folder), network names, the mesh id, the revision, a VM group's
  namespace and service account;
- a *subdomain*: labels joined by '.', at most 253 characters: Secret, ConfigMap,
  ServiceAccount and WorkloadGroup names;
- a VM *host name*: a subdomain of at most 63 characters (the VM's /etc/hostname: Linux keeps
  64 bytes at most; the netns provider writes it).

Pure Python: the topology validation, the modules and the netns provider share it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

LABEL_MAX = 63
SUBDOMAIN_MAX = 253
HOST_NAME_MAX = 63

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
LABEL_RE = re.compile(r"^%s$" % _LABEL)
SUBDOMAIN_RE = re.compile(r"^%s(\.%s)*$" % (_LABEL, _LABEL))

#: the rule and length of a name, per kind
KINDS = {
    "label": (LABEL_RE, LABEL_MAX),
    "subdomain": (SUBDOMAIN_RE, SUBDOMAIN_MAX),
    "host": (SUBDOMAIN_RE, HOST_NAME_MAX),
}
#: Kubernetes object kinds Meshfleet names, and the rule of their names
OBJECT_KINDS = {
    "Namespace": "label",
    "Secret": "subdomain",
    "ConfigMap": "subdomain",
    "ServiceAccount": "subdomain",
    "WorkloadGroup": "subdomain",
}


def is_name(kind, value):
    """Is ``value`` a valid name of ``kind`` (a key of KINDS or OBJECT_KINDS)?"""
    rule, limit = KINDS[OBJECT_KINDS.get(kind, kind)]
    return isinstance(value, str) and 0 < len(value) <= limit and bool(rule.match(value))


def is_dns_label(value):
    return is_name("label", value)


def is_dns_subdomain(value):
    return is_name("subdomain", value)


def is_host_name(value):
    return is_name("host", value)
