# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a command in a pod's container through the API server (what ``kubectl exec`` does),
over a WebSocket with Kubernetes' channel protocol (``v5.channel.k8s.io``, else
``v4.channel.k8s.io``), for :meth:`.kube_rest.KubeRest.exec`.

The protocol (k8s.io/apimachinery ``wsstream``, kubectl's WebSocket executor):

- ``GET /api/v1/namespaces/<ns>/pods/<pod>/exec?command=..&command=..&container=..&stdout=true
  &stderr=true`` with ``Upgrade: websocket`` (RFC 6455) and ``Sec-WebSocket-Protocol`` naming
  the channel protocols; the server answers ``101 Switching Protocols`` with the one it chose;
- every binary message starts with a channel byte: 1 stdout, 2 stderr, 3 the error channel
  (a ``Status``: ``Success``, or ``Failure`` with reason ``NonZeroExitCode`` and the exit code
  in ``details.causes[reason=ExitCode].message``, or another failure: no such container, ...);
- frames from the client are masked, the server's are not; the server closes when the
  command has ended.

Only stdout and stderr are read (no stdin, no terminal): enough for the mesh's checks.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import json
import os
import struct

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
STDOUT, STDERR, ERROR = 1, 2, 3
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
#: the most a command may print (stdout + stderr) before the client gives up on it
MAX_OUTPUT = 16 * 1024 * 1024


class ExecError(Exception):
    """The exec could not run (refused, no such container, protocol error); ``status`` is the
    HTTP status of a refused upgrade (0 otherwise), ``message`` the server's words."""

    def __init__(self, message, status=0):
        Exception.__init__(self, message)
        self.status = status
        self.message = message


def accept_key(key):
    """The ``Sec-WebSocket-Accept`` a server must answer to ``Sec-WebSocket-Key: key``."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


def new_key():
    return base64.b64encode(os.urandom(16)).decode("ascii")


def encode_frame(opcode, payload, mask=True):
    """One final frame; masked (a client's frames must be, RFC 6455 5.3)."""
    head = bytearray([0x80 | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head.append(bit | n)
    elif n < 65536:
        head.append(bit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(bit | 127)
        head += struct.pack("!Q", n)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    return bytes(head) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class FrameReader:
    """Frames from a socket-like ``recv``: :meth:`next` returns ``(fin, opcode, payload)``."""

    def __init__(self, recv, buffered=b""):
        self.recv = recv
        self.buf = bytearray(buffered)

    def _take(self, n):
        while len(self.buf) < n:
            chunk = self.recv(65536)
            if not chunk:
                raise ExecError("the connection closed in the middle of a WebSocket frame")
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def next(self):
        b0, b1 = self._take(2)
        fin, opcode, masked, n = bool(b0 & 0x80), b0 & 0x0F, bool(b1 & 0x80), b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._take(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._take(8))[0]
        if n > MAX_OUTPUT:
            raise ExecError("a WebSocket frame of %d bytes is more than this client reads (%d)" % (n, MAX_OUTPUT))
        key = self._take(4) if masked else None
        payload = self._take(n)
        if key:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return fin, opcode, payload


def upgrade_request(path, host, headers, key):
    """The HTTP request bytes that open the exec WebSocket."""
    lines = ["GET %s HTTP/1.1" % path, "Host: %s" % host, "Connection: Upgrade", "Upgrade: websocket",
             "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: %s" % key,
             "Sec-WebSocket-Protocol: %s" % ", ".join(PROTOCOLS)]
    lines.extend("%s: %s" % (k, v) for k, v in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_head(recv):
    """(status, reason, {lower-case header: value}, bytes after the head) of an HTTP answer."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = recv(65536)
        if not chunk:
            raise ExecError("the server closed the connection before answering the exec upgrade")
        buf += chunk
        if len(buf) > 65536:
            raise ExecError("the answer to the exec upgrade has no end of headers")
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    try:
        status = int(parts[1])
    except (IndexError, ValueError):
        raise ExecError("the answer to the exec upgrade is not HTTP: %r" % lines[0][:80])
    headers = {}
    for line in lines[1:]:
        k, _sep, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, parts[2] if len(parts) > 2 else "", headers, rest


def exit_code(status_doc):
    """The command's exit code from the error channel's Status (0 for Success); raises
    :class:`ExecError` for a failure that is not an exit code."""
    try:
        doc = json.loads(status_doc)
    except ValueError:
        # v1-v3 channel protocols send plain text here; v4+ a Status
        raise ExecError(status_doc.decode("utf-8", "replace") if isinstance(status_doc, bytes) else status_doc)
    if doc.get("status") == "Success":
        return 0
    if doc.get("reason") == "NonZeroExitCode":
        for cause in (doc.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                try:
                    return int(cause.get("message"))
                except (TypeError, ValueError):
                    break
    raise ExecError(doc.get("message") or json.dumps(doc))


def run(sock, path, host, headers, deadline_recv):
    """Open the exec WebSocket on a connected ``sock`` and read it to its end: ``(rc, stdout,
    stderr, protocol)``. ``deadline_recv(n)`` reads from the socket (raising on timeout)."""
    key = new_key()
    sock.sendall(upgrade_request(path, host, headers, key))
    status, reason, hdrs, rest = read_head(deadline_recv)
    if status != 101:
        body = rest
        length = int(hdrs.get("content-length") or 0)
        while len(body) < length:
            chunk = deadline_recv(65536)
            if not chunk:
                break
            body += chunk
        message = "%s %s" % (status, reason)
        try:
            doc = json.loads(body.decode("utf-8")) if body else None
            if isinstance(doc, dict) and doc.get("message"):
                message = doc["message"]
        except ValueError:
            pass
        raise ExecError(message, status)
    if hdrs.get("upgrade", "").lower() != "websocket" or hdrs.get("sec-websocket-accept") != accept_key(key):
        raise ExecError("the server answered 101 but not as a WebSocket (Upgrade %r, accept key %s)"
                        % (hdrs.get("upgrade"), "wrong" if hdrs.get("sec-websocket-accept") else "missing"))
    protocol = hdrs.get("sec-websocket-protocol")
    if protocol not in PROTOCOLS:
        raise ExecError("the server chose the channel protocol %r; this client speaks %s"
                        % (protocol, ", ".join(PROTOCOLS)))
    out = {STDOUT: bytearray(), STDERR: bytearray(), ERROR: bytearray()}
    reader = FrameReader(deadline_recv, rest)
    message, total = bytearray(), 0
    while True:
        try:
            fin, opcode, payload = reader.next()
        except ExecError:
            if out[ERROR]:
                break  # the server may drop the connection right after the error channel
            raise
        if opcode == OP_CLOSE:
            try:
                sock.sendall(encode_frame(OP_CLOSE, payload[:2]))
            except OSError:
                pass
            break
        if opcode == OP_PING:
            sock.sendall(encode_frame(OP_PONG, payload))
            continue
        if opcode == OP_PONG:
            continue
        message += payload
        if not fin:
            continue
        data, message = bytes(message), bytearray()
        if not data:
            continue
        channel, data = data[0], data[1:]
        if channel in out:
            out[channel] += data
            total += len(data)
            if total > MAX_OUTPUT:
                raise ExecError("the command printed more than %d bytes" % MAX_OUTPUT)
    if not out[ERROR]:
        # v4 and v5 always end with a Status on the error channel
        raise ExecError("the exec stream ended without the command's exit status")
    rc = exit_code(bytes(out[ERROR]))
    return rc, bytes(out[STDOUT]), bytes(out[STDERR]), protocol
