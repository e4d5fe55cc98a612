# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small helpers of the topology validation: type tests, how values and paths read in a
message, and the list of problems.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import ipaddress
import os
import re

from collections.abc import Mapping

from ansible_collections.meshfleet.mesh.plugins.module_utils.k8s_names import (  # noqa: F401 pylint: disable=unused-import
    is_dns_label, is_dns_subdomain, is_host_name)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.schema import (
    LABEL_RULE, MAX_MESSAGE, MAX_PATH_SHOWN, MAX_SHOWN)

string_types = (str,)


# --- small helpers ---------------------------------------------------------------

def is_mapping(value):
    return isinstance(value, Mapping)


def is_str(value):
    return isinstance(value, string_types)


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def is_ip(value):
    try:
        ipaddress.ip_address(u"%s" % value)
        return True
    except ValueError:
        return False


def is_hostname(value):
    """An RFC 1123 host name (case-insensitive), trailing dot allowed."""
    if not is_str(value) or not value or len(value) > 253:
        return False
    name = value[:-1] if value.endswith(".") else value
    labels = name.lower().split(".")
    # an all-numeric top label is an IPv4-looking string, not a name (RFC 3696 2.):
    # 10.0.0.300 is a bad address, not a host name
    return all(is_dns_label(part) for part in labels) and not labels[-1].isdigit()


def kind(value):
    """How a value's type reads in a message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if is_str(value):
        return "a string"
    if is_mapping(value):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return "a %s" % type(value).__name__


def clip(text, limit=None):
    """``text`` as it may stand in a message: a long one becomes its prefix and its length
    (a 5 MiB label value must not be echoed whole, several times)."""
    limit = MAX_SHOWN if limit is None else limit
    text = "%s" % (text,)
    if len(text) <= limit:
        return text
    return "%s... (%d characters)" % (text[:limit], len(text))


PLAIN_KEY = re.compile(r"^[^\s.:\[\]\"']+$")


def key_path(parent, key):
    """``parent.key`` as a message names it; a key that would not read as one path segment
    (empty, not a string, with spaces, dots or colons) is quoted."""
    text = "%s" % (key,) if is_str(key) and PLAIN_KEY.match(key) else show(key)
    if is_str(key) and text == show(key) and not text.startswith('"'):
        text = '"%s"' % text
    return "%s.%s" % (parent, text) if parent else text


def show(value):
    """A value as it should be quoted in a message (long values clipped)."""
    if is_str(value):
        return '"%s"' % clip(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return clip(value)


def one_of(choices):
    return ", ".join(sorted("%s" % (c,) for c in choices))


def did_you_mean(word, choices):
    if not is_str(word):
        return ""
    close = difflib.get_close_matches(word, [c for c in choices if is_str(c)], n=1, cutoff=0.6)
    return ' (did you mean "%s"?)' % close[0] if close else ""


def _missing(value):
    return value is None or (is_str(value) and not value.strip()) or value == [] or value == {}


def _float_hint(value):
    """YAML reads 1.30 as the number 1.3: tell the user to quote it."""
    if isinstance(value, float):
        return " (YAML reads an unquoted %s as a number: quote it)" % value
    return ""


def _copy(value):
    """Copy nested mappings/lists into plain dicts/lists, keeping the leaves."""
    if is_mapping(value):
        return dict((k, _copy(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_copy(v) for v in value]
    return value


def _resolve_path(path, base_dir):
    if not is_str(path) or not path:
        return path
    path = os.path.expanduser(path)
    if base_dir and not os.path.isabs(path):
        path = os.path.join(base_dir, path)
    return os.path.normpath(path)


def _hashable(value):
    try:
        hash(value)
        return True
    except TypeError:
        return False


class _Problems(list):
    def add(self, path, msg):
        # a key can be as long as a value: both are clipped
        self.append("%s: %s" % (clip(path, MAX_PATH_SHOWN), clip(msg, MAX_MESSAGE)))

    def unknown_keys(self, path, mapping, allowed, what):
        for key in mapping:
            if key not in allowed:
                self.add(key_path(path, key),
                         "unknown %s key%s; expected one of %s" % (
                             what, did_you_mean(key, allowed), one_of(allowed)))

    def mapping(self, path, value, what, allow_none=False):
        """Report a value that is not a mapping; return whether it is usable."""
        if value is None and allow_none:
            return False
        if not is_mapping(value):
            self.add(path, "must be a mapping of %s, got %s" % (what, kind(value)))
            return False
        return True

    def label(self, path, value, what="name"):
        if not is_dns_label(value):
            self.add(path, "%s %s is not %s" % (what, show(value), LABEL_RULE))
            return False
        return True


def _plural(n, word, words=None):
    return "%d %s" % (n, word if n == 1 else (words or word + "s"))
