# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read a topology file within limits: bounded YAML decoding (size, UTF-8, one document,
nesting, aliases and nodes counted without expanding them) and duplicate mapping keys,
which YAML would silently drop.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.common import (
    clip, did_you_mean, is_str, show)
from ansible_collections.meshfleet.mesh.plugins.module_utils.topology.schema import (
    MAX_FILE_BYTES, MAX_MESSAGE, MAX_YAML_ALIASES, MAX_YAML_DEPTH, MAX_YAML_NODES)

try:  # only the loader needs PyYAML; normalise/validate do not
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover - PyYAML is a controller dependency
    yaml = None
    HAS_YAML = False


# --- YAML loading ------------------------------------------------------------------------

class TopologyFileError(Exception):
    """The file is not a topology file: not UTF-8, too large, not YAML, YAML beyond the
    limits, not a single mapping, or without ``plugin: meshfleet.mesh.topology``.
    ``str(e)`` starts with ``line L, column C:`` where the problem has a place."""

    def __init__(self, msg, mark=None):
        self.line = mark.line + 1 if mark is not None else None
        self.column = mark.column + 1 if mark is not None else None
        if self.line is not None:
            msg = "line %d, column %d: %s" % (self.line, self.column, msg)
        super(TopologyFileError, self).__init__(msg)


PLUGIN_NAME = "meshfleet.mesh.topology"
NOT_A_TOPOLOGY = "a topology file is one YAML mapping with plugin, mesh and clusters"


def decode_topology(data):
    """Bytes of a topology file -> text; refuses what is too large or not UTF-8."""
    if len(data) > MAX_FILE_BYTES:
        raise TopologyFileError("the file has %d bytes; a topology file may have at most %d "
                                "(%d MiB)" % (len(data), MAX_FILE_BYTES, MAX_FILE_BYTES >> 20))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise TopologyFileError("line %d, column %d: not UTF-8 text (byte 0x%02x); save the file "
                                "as UTF-8" % (line, column, data[e.start]))


def _yaml_error(e):
    """A PyYAML error as ``line L, column C: problem (context)`` (no snippet of the file)."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or "%s" % e
    context = getattr(e, "context", None)
    if context:
        problem = "%s (%s)" % (problem, context)
    return TopologyFileError("not valid YAML: %s" % clip(problem, MAX_MESSAGE), mark)


def _check_events(text):
    """Walk the YAML events once, constructing nothing: refuse more than one document,
    and nesting, aliases or nodes (aliases expanded, counted without expanding them)
    beyond the limits. Linear in the text, whatever its aliases."""
    depth = 0
    aliases = 0
    documents = 0
    anchors = {}
    stack = [[None, 0]]  # [anchor, expanded size] of each open collection
    loader = yaml.CSafeLoader(text) if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader(text)
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise TopologyFileError("a second YAML document starts here; %s, in one "
                                            "document" % NOT_A_TOPOLOGY, event.start_mark)
                continue
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise TopologyFileError("nested more than %d levels deep; a topology file "
                                            "needs far fewer" % MAX_YAML_DEPTH, event.start_mark)
                stack.append([event.anchor, 1])
                continue
            if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
                anchor, size = stack.pop()
                if anchor is not None:
                    anchors[anchor] = size
            elif isinstance(event, yaml.AliasEvent):
                if any(frame[0] == event.anchor for frame in stack):
                    raise TopologyFileError("alias *%s refers to a node that contains it; a "
                                            "topology file cannot be recursive" % clip(event.anchor),
                                            event.start_mark)
                aliases += 1
                if aliases > MAX_YAML_ALIASES:
                    raise TopologyFileError("more than %d YAML aliases (*name); a topology file "
                                            "needs few or none" % MAX_YAML_ALIASES, event.start_mark)
                size = anchors.get(event.anchor, 1)
            elif isinstance(event, yaml.ScalarEvent):
                size = 1
                if event.anchor is not None:
                    anchors[event.anchor] = 1
            else:
                continue
            if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent, yaml.AliasEvent,
                                  yaml.ScalarEvent)):
                stack[-1][1] += size
                if stack[0][1] > MAX_YAML_NODES or stack[-1][1] > MAX_YAML_NODES:
                    raise TopologyFileError(
                        "expands to more than %d YAML nodes (aliases counted at their full size); "
                        "a topology file needs far fewer" % MAX_YAML_NODES, event.start_mark)
    except yaml.YAMLError as e:
        raise _yaml_error(e)
    finally:
        loader.dispose()


def compose_topology(text, require_plugin=False):
    """Check topology text within the limits and return its composed top node (a mapping;
    with ``require_plugin``, one with ``plugin: meshfleet.mesh.topology``).
    Raises :class:`TopologyFileError`."""
    if not is_str(text):
        text = decode_topology(text)
    elif len(text) > MAX_FILE_BYTES:
        raise TopologyFileError("the file has %d characters; a topology file may have at most %d"
                                % (len(text), MAX_FILE_BYTES))
    _check_events(text)
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as e:
            raise _yaml_error(e)
    finally:
        loader.dispose()
    if node is None:
        raise TopologyFileError("the file is empty; %s" % NOT_A_TOPOLOGY)
    if not isinstance(node, yaml.MappingNode):
        what = "a list" if isinstance(node, yaml.SequenceNode) else "a single value"
        raise TopologyFileError("%s, got %s" % (NOT_A_TOPOLOGY, what), node.start_mark)
    if not require_plugin:
        return node
    plugin = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == "plugin"]
    if not plugin:
        raise TopologyFileError("plugin: missing; a topology file starts with the line "
                                "`plugin: %s`" % PLUGIN_NAME, node.start_mark)
    key, value = plugin[-1]
    if not (isinstance(value, yaml.ScalarNode) and value.value == PLUGIN_NAME):
        given = value.value if isinstance(value, yaml.ScalarNode) else "a %s" % (
            "list" if isinstance(value, yaml.SequenceNode) else "mapping")
        raise TopologyFileError("plugin: %s is not %s; the files this inventory plugin reads (*.meshfleet.yml) "
                                "start with `plugin: %s`%s" % (
                                    show(given), PLUGIN_NAME, PLUGIN_NAME,
                                    did_you_mean(given, [PLUGIN_NAME])), key.start_mark)
    return node


def _duplicates_in(node, path=""):
    """Yield (message, mark) for every duplicate key below a composed YAML node."""
    stack = [(node, path)]
    seen_nodes = set()
    while stack:
        node, path = stack.pop(0)
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first = {}
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    if key_node.value == "<<":
                        continue
                    ident = (key_node.tag, key_node.value)
                    child = "%s.%s" % (path, key_node.value) if path else key_node.value
                    line = key_node.start_mark.line + 1
                    if ident in first:
                        yield ("%s: defined twice (lines %d and %d); YAML would silently keep "
                               "only the last one" % (child, first[ident], line),
                               key_node.start_mark)
                    else:
                        first[ident] = line
                    stack.append((value_node, child))
                else:
                    stack.append((value_node, path))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                stack.append((item, "%s[%d]" % (path, i)))


if HAS_YAML:
    class DuplicateKeyError(yaml.constructor.ConstructorError):
        pass

    class TopologyLoader(yaml.SafeLoader):
        """A ``yaml.SafeLoader`` that does not silently drop duplicate mapping keys.

        With ``strict`` (the default) the first duplicate raises
        :class:`DuplicateKeyError`; otherwise every duplicate is recorded in
        ``duplicates`` (one message each, with its dotted path and lines) and, as
        with the plain loader, the last value wins.
        """

        strict = True

        def __init__(self, stream):
            super(TopologyLoader, self).__init__(stream)
            self.duplicates = []

        def construct_document(self, node):
            for msg, mark in _duplicates_in(node):
                if self.strict:
                    raise DuplicateKeyError(None, None, msg, mark)
                self.duplicates.append(msg)
            return super(TopologyLoader, self).construct_document(node)

    class LenientTopologyLoader(TopologyLoader):
        strict = False
else:  # pragma: no cover - PyYAML is a controller dependency
    DuplicateKeyError = TopologyLoader = LenientTopologyLoader = None


def load_topology(text, strict=False):
    """Parse topology YAML text (or bytes) within the limits. Returns
    ``(data, duplicate_key_messages)``.

    Raises :class:`TopologyFileError` when the text is not a topology file (see
    :func:`compose_topology`), and (with ``strict``) on the first duplicate key.
    """
    if not is_str(text):
        text = decode_topology(text)
    compose_topology(text)
    loader = (TopologyLoader if strict else LenientTopologyLoader)(text)
    try:
        try:
            data = loader.get_single_data()
        except DuplicateKeyError:
            raise
        except yaml.YAMLError as e:
            raise _yaml_error(e)
        return data, list(loader.duplicates)
    finally:
        loader.dispose()


def find_duplicate_keys(text, require_plugin=False):
    """Check topology YAML text without constructing it (any tags, e.g. !vault, are fine).

    Returns the duplicate-key messages. Raises :class:`TopologyFileError` when the
    text is not a topology file (see :func:`compose_topology`).
    """
    return [msg for msg, _mark in _duplicates_in(compose_topology(text, require_plugin))]
