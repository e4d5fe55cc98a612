# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The API server forwarder of a real-node cluster: kwokctl runs kube-apiserver on host
loopback; the node (kubelet, kube-proxy) and its pods reach it at the host end of the node's
host link, same port, through this small TCP relay in the host's network namespace (only the
API server: etcd and the other components stay on loopback).

``SCRIPT`` is written next to the node's configuration and run with the controller's Python:
``python3 forward.py LISTEN_ADDR PORT TARGET_ADDR TARGET_PORT``. Standard library only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

SCRIPT = r'''
import socket
import sys
import threading


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass


def serve(conn, target):
    try:
        upstream = socket.create_connection(target, timeout=10)
        upstream.settimeout(None)
    except OSError:
        conn.close()
        return
    t = threading.Thread(target=pipe, args=(upstream, conn), daemon=True)
    t.start()
    pipe(conn, upstream)
    t.join()
    conn.close()
    upstream.close()


def main():
    listen, port, taddr, tport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((listen, port))
    srv.listen(128)
    print("forwarding %s:%d -> %s:%d" % (listen, port, taddr, tport), flush=True)
    while True:
        conn, dummy = srv.accept()
        threading.Thread(target=serve, args=(conn, (taddr, tport)), daemon=True).start()


if __name__ == "__main__":
    main()
'''
