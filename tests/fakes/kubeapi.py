# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Local servers for the Kubernetes client's tests (127.0.0.1 only, threads, no mocks).

- :class:`ConnectProxy`: an HTTP proxy: ``CONNECT host:port`` tunnels (counted in
  ``tunnels``) and absolute-URL forwarding for ``http://`` servers (counted in
  ``forwarded``). ``hosts`` maps names the proxy alone can resolve (``api.meshfleet.test``)
  to addresses, so a test can prove a request went through it; ``credentials`` makes it
  answer 407 without the matching ``Proxy-Authorization``.
- :class:`RecordedApi`: an HTTP(S) server answering like a kube-apiserver from a table of
  recorded answers (``routes``: ``{(method, path): (status, body)}``, the path without its
  query), JSON bodies; unknown paths get the API server's 404 Status. Every request is kept
  in ``seen`` (method, path with query, headers as a list of pairs, decoded body). POST
  handlers can be callables ``fn(body) -> (status, body)``. Pods added with
  :meth:`RecordedApi.add_pod` answer ``pods/<name>/exec`` over a WebSocket as the API server
  does (``v5.channel.k8s.io``/``v4.channel.k8s.io``, channel bytes, a ``Status`` on the error
  channel) and refuse what it refuses (no command, a container not named when the pod has
  several, an unknown container, a request that is not a WebSocket upgrade, unmasked client
  frames); ``execs`` keeps every (namespace, pod, container, argv) run.
"""

from __future__ import absolute_import, division, print_function

import base64
import hashlib
import json
import select
import socket
import ssl
import struct
import threading

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    from urllib.parse import parse_qs, urlsplit
except ImportError:  # pragma: no cover
    from urlparse import parse_qs, urlsplit  # type: ignore

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: the channel protocols the API server speaks, in its order of preference
WS_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io",
                "channel.k8s.io")


def ws_frame(opcode, payload, fin=True):
    """A server frame (unmasked, RFC 6455 5.1)."""
    n = len(payload)
    head = bytearray([(0x80 if fin else 0) | opcode])
    if n < 126:
        head.append(n)
    elif n < 65536:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return bytes(head) + payload


def exit_status(rc):
    """The Status the API server writes on the exec error channel for exit code ``rc``."""
    if rc == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure",
            "message": "command terminated with non-zero exit code: exit status %d" % rc,
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(rc)}]}}


def send_json(handler, code, body):
    """Answer an http.server request with ``body`` as JSON (Content-Length set: keep-alive)."""
    data = json.dumps(body).encode("utf-8")
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def status(code, message, reason=None):
    """A Kubernetes Status body."""
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
            "reason": reason or "", "code": code}


def not_found(path):
    return status(404, "the server could not find the requested resource (%s)" % path, "NotFound")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def get_request(self):
        # the headers and the body of an answer are two writes: without TCP_NODELAY the body
        # waits for the client's delayed ACK (~40 ms a request), as no real API server does
        conn, addr = ThreadingHTTPServer.get_request(self)
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        return conn, addr


class RecordedApi:
    """An API server from recorded answers; ``url`` once started (``with`` or :meth:`start`)."""

    def __init__(self, routes=None, tls=None):
        self.routes = dict(routes or {})
        self.seen = []
        self.tls = tls  # (cert file, key file) for HTTPS
        self.pods = {}           # (namespace, name) -> (containers, run)
        self.pod_objects = {}    # (namespace, name) -> Pod
        self.pod_logs = {}       # (namespace, name) -> log(container) or None
        self.execs = []          # (namespace, pod, container, argv) of each exec answered
        self.client_frames = []  # (opcode, masked) of the client's frames after an exec
        self._httpd = None

    def add(self, method, path, code, body):
        self.routes[(method, path)] = (code, body)

    def requests(self, method=None):
        return [r for r in self.seen if method is None or r[0] == method]

    def add_pod(self, namespace, name, containers, run=None, labels=None, ready=True, log=None):
        """A pod: listed in its namespace (``GET .../pods?labelSelector=``, equality terms as the
        API server filters them), answering exec with ``run(container, argv) -> (rc, stdout
        bytes, stderr bytes)`` and ``GET .../pods/<name>/log?container=`` with ``log(container)``
        (text)."""
        self.pods[(namespace, name)] = (list(containers), run)
        self.pod_objects[(namespace, name)] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
            "spec": {"containers": [{"name": c} for c in containers]},
            "status": {"phase": "Running" if ready else "Pending",
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
        self.pod_logs[(namespace, name)] = log

    def _list_pods(self, handler, namespace, query):
        selector = (parse_qs(query).get("labelSelector") or [""])[0]
        terms = []
        for term in [t for t in selector.split(",") if t]:
            key, sep, value = term.partition("=")
            if not sep or not key or "!" in key or value.startswith("="):
                # only equality terms here; the API server's own parse error for the rest
                return handler._answer(400, status(400, "unable to parse requirement: %s" % term, "BadRequest"))
            terms.append((key.strip(), value.strip()))
        items = [obj for (ns, _n), obj in sorted(self.pod_objects.items())
                 if ns == namespace and all(obj["metadata"]["labels"].get(k) == v for k, v in terms)]
        return handler._answer(200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})

    def _pod_log(self, handler, namespace, name, query):
        accept = [a.split(";")[0].strip() for a in (handler.headers.get("Accept") or "*/*").split(",")]
        if not set(accept) & {"application/json", "application/yaml", "application/vnd.kubernetes.protobuf", "*/*"}:
            # what kube-apiserver answers a log request that accepts only text/plain
            return handler._answer(406, status(406, "only the following media types are accepted: application/json, "
                                                    "application/yaml, application/vnd.kubernetes.protobuf",
                                               "NotAcceptable"))
        if (namespace, name) not in self.pod_objects:
            return handler._answer(404, status(404, 'pods "%s" not found' % name, "NotFound"))
        containers, _run = self.pods[(namespace, name)]
        container = (parse_qs(query).get("container") or [None])[0]
        if container is None and len(containers) > 1:
            return handler._answer(400, status(
                400, "a container name must be specified for pod %s, choose one of: [%s]"
                % (name, " ".join(containers)), "BadRequest"))
        container = container or containers[0]
        if container not in containers:
            return handler._answer(400, status(400, "container %s is not valid for pod %s" % (container, name),
                                               "BadRequest"))
        log = self.pod_logs.get((namespace, name))
        text = (log(container) if log else "").encode("utf-8")
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", str(len(text)))
        handler.end_headers()
        handler.wfile.write(text)

    def _exec(self, handler, path, query):
        """Answer ``GET .../pods/<name>/exec`` as the API server does (see the module doc)."""
        parts = path.split("/")  # ['', 'api', 'v1', 'namespaces', ns, 'pods', name, 'exec']
        ns, name = parts[4], parts[6]
        q = parse_qs(query)
        argv, container = q.get("command") or [], (q.get("container") or [None])[0]
        headers = handler.headers
        if (headers.get("Upgrade") or "").lower() != "websocket" or not headers.get("Sec-WebSocket-Key"):
            # kubectl's SPDY executor is not served here; a plain GET is refused as the server does
            return handler._answer(400, status(400, "Upgrade request required", "BadRequest"))
        pod = self.pods.get((ns, name))
        if pod is None:
            return handler._answer(404, status(404, 'pods "%s" not found' % name, "NotFound"))
        containers, run = pod
        if not argv:
            return handler._answer(400, status(400, "you must specify at least 1 command", "BadRequest"))
        if container is None:
            if len(containers) > 1:
                return handler._answer(400, status(
                    400, "a container name must be specified for pod %s, choose one of: [%s]"
                    % (name, " ".join(containers)), "BadRequest"))
            container = containers[0]
        if container not in containers:
            return handler._answer(400, status(400, "container %s is not valid for pod %s" % (container, name),
                                               "BadRequest"))
        offered = [p.strip() for p in (headers.get("Sec-WebSocket-Protocol") or "").split(",") if p.strip()]
        chosen = next((p for p in offered if p in WS_PROTOCOLS), "")
        accept = base64.b64encode(hashlib.sha1((headers["Sec-WebSocket-Key"] + WS_GUID).encode()).digest()).decode()
        lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Accept: " + accept]
        if chosen:
            lines.append("Sec-WebSocket-Protocol: " + chosen)
        w = handler.wfile
        w.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self.execs.append((ns, name, container, list(argv)))
        # a pod without a command table: as a container whose image lacks the program
        rc, out, err = run(container, list(argv)) if run else (126, b"", b"exec: not found\n")
        # as wsstream does: one empty message per channel first, then the data, a stream in
        # several frames (one message fragmented), the exit Status last, then close
        for ch in (0, 1, 2, 3):
            w.write(ws_frame(2, bytes([ch])))
        if out:
            half = len(out) // 2
            w.write(ws_frame(2, bytes([1]) + out[:half], fin=False))
            w.write(ws_frame(0, out[half:], fin=True))
        if err:
            w.write(ws_frame(2, bytes([2]) + err))
        w.write(ws_frame(2, bytes([3]) + json.dumps(exit_status(rc)).encode()))
        w.write(ws_frame(8, struct.pack("!H", 1000)))
        w.flush()
        # the client's close frame must be masked
        head = handler.rfile.read(2)
        if len(head) == 2:
            masked = bool(head[1] & 0x80)
            self.client_frames.append((head[0] & 0x0F, masked))
        handler.close_connection = True

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self, code, body):
                send_json(self, code, body)

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                api.seen.append((self.command, self.path, list(self.headers.items()), body))
                path = urlsplit(self.path).path
                parts = path.split("/")
                if self.command == "GET" and len(parts) == 6 and parts[1:4] == ["api", "v1", "namespaces"] \
                        and parts[5] == "pods" and (self.command, path) not in api.routes:
                    return api._list_pods(self, parts[4], urlsplit(self.path).query)
                if self.command == "GET" and len(parts) == 8 and parts[1:4] == ["api", "v1", "namespaces"] \
                        and parts[5] == "pods" and parts[7] == "log":
                    return api._pod_log(self, parts[4], parts[6], urlsplit(self.path).query)
                if self.command in ("GET", "POST") and path.endswith("/exec") and path.startswith("/api/v1/namespaces/") \
                        and len(path.split("/")) == 8 and path.split("/")[5] == "pods":
                    return api._exec(self, path, urlsplit(self.path).query)
                answer = api.routes.get((self.command, path))
                if answer is None:
                    return self._answer(404, not_found(path))
                if callable(answer):
                    answer = answer(body)
                return self._answer(*answer)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        return Handler

    def start(self):
        self._httpd = _Server(("127.0.0.1", 0), self._handler())
        scheme = "http"
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
            scheme = "https"
        self.port = self._httpd.server_address[1]
        self.url = "%s://127.0.0.1:%d" % (scheme, self.port)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class ConnectProxy:
    """A CONNECT (and forwarding) HTTP proxy on 127.0.0.1; ``url`` once started."""

    def __init__(self, hosts=None, credentials=None):
        self.hosts = dict(hosts or {})
        self.credentials = credentials  # "user:password" or None
        self.tunnels = []     # "host:port" of each CONNECT tunnel opened
        self.forwarded = []   # absolute URLs forwarded
        self.refused = []     # (request line, code)
        self._httpd = None

    def _resolve(self, host, port):
        return self.hosts.get(host, host), port

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _refuse(self, code, message):
                proxy.refused.append((self.requestline, code))
                self.send_response(code, message)
                if code == 407:
                    self.send_header("Proxy-Authenticate", 'Basic realm="meshfleet-test"')
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True

            def _authorized(self):
                if proxy.credentials is None:
                    return True
                want = "Basic " + base64.b64encode(proxy.credentials.encode()).decode()
                return self.headers.get("Proxy-Authorization") == want

            def do_CONNECT(self):
                if not self._authorized():
                    return self._refuse(407, "Proxy Authentication Required")
                host, _sep, port = self.path.rpartition(":")
                host = host.strip("[]")
                try:
                    upstream = socket.create_connection(self._target(host, int(port)), 10)
                except (OSError, ValueError):
                    return self._refuse(502, "Bad Gateway")
                proxy.tunnels.append(self.path)
                self.send_response(200, "Connection established")
                self.end_headers()
                self._pipe(self.connection, upstream)
                self.close_connection = True

            def _target(self, host, port):
                return proxy._resolve(host, port)

            def _pipe(self, a, b):
                try:
                    while True:
                        ready, _w, _x = select.select([a, b], [], [], 30)
                        if not ready:
                            return
                        for s in ready:
                            data = s.recv(65536)
                            if not data:
                                return
                            (b if s is a else a).sendall(data)
                except OSError:
                    return
                finally:
                    b.close()

            def _forward(self):
                if not self._authorized():
                    return self._refuse(407, "Proxy Authentication Required")
                url = urlsplit(self.path)
                if url.scheme != "http":
                    return self._refuse(400, "Bad Request")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                proxy.forwarded.append(self.path)
                import http.client
                host, port = proxy._resolve(url.hostname, url.port or 80)
                conn = http.client.HTTPConnection(host, port, timeout=10)
                headers = dict((k, v) for k, v in self.headers.items() if k.lower() != "proxy-authorization")
                conn.request(self.command, url.path + ("?" + url.query if url.query else ""), body=body,
                             headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

        return Handler

    def start(self):
        self._httpd = _Server(("127.0.0.1", 0), self._handler())
        self.port = self._httpd.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
