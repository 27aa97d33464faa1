"""Tiny TCP peers for NAT tests, run inside namespaces as separate processes.

`listen(ns, port)` starts a server that answers each connection with the peer
address it saw and exits after `count` connections; `connect(ns, addr, port)`
returns what the server answered, or None when the connection fails.
"""

import sys

from vmnet.testing import namespaces as ns
from vmnet.testing.wait import wait_until

SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(8)
print('ready', flush=True)
for _ in range(int(sys.argv[3])):
    c, peer = s.accept()
    c.sendall(peer[0].encode())
    c.close()
"""

CLIENT = """
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
    print(c.recv(100).decode())
except OSError as e:
    print('ERROR', e.__class__.__name__)
"""


def listen(netns, port, bind="0.0.0.0", count=1):
    proc = ns.popen_in(
        netns,
        [sys.executable, "-c", SERVER, bind, str(port), str(count)],
        stdout=__import__("subprocess").PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def connect(netns, addr, port):
    out = ns.exec_in(netns, [sys.executable, "-c", CLIENT, str(addr), str(port)]).stdout.strip()
    return None if out.startswith("ERROR") else out


def stop(proc):
    proc.kill()
    proc.wait()


__all__ = ["connect", "listen", "stop", "wait_until"]
