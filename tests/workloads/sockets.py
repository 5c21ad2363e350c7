"""A server holding one socket of each inet kind, for the inet socket tests.

sockets.py DIR: a TCP listener on 127.0.0.1 (SO_REUSEADDR, TCP_NODELAY, keepalive settings, a
receive buffer it chose), a TCP listener on [::1] (IPV6_V6ONLY, backlog 3), a UDP socket on
127.0.0.1 that answers, a UDP socket on [::1] connected to [::1]:9, a UDP "sink" on 127.0.0.1
it never reads, and a NETLINK_ROUTE socket bound to the link group. It writes DIR/ports,
DIR/before (the options of each socket) and DIR/ready. Each accepted connection gets
"hello N" (N counts connections) and is kept open: it answers each line "ping" with "pong M"
(M counts pings over all connections); it closes a connection whose client closed its side,
unless the client said "keep" first: then it sends "eof" and keeps it half-closed (CLOSE_WAIT)
until SIGUSR1, which sends it "bye" and closes it.
Each datagram to the UDP socket gets "echo N:DATA".
On SIGUSR1 it writes the datagrams waiting in the sink, with their senders' ports, to DIR/sink,
then the options again to DIR/result.
"""
import json
import os
import select
import signal
import socket
import sys

d = sys.argv[1]
# Nothing inherited from the test runner beyond stdio.
os.closerange(3, 65536)
S, T = socket.SOL_SOCKET, socket.IPPROTO_TCP

l4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
l4.setsockopt(S, socket.SO_REUSEADDR, 1)
l4.setsockopt(T, socket.TCP_NODELAY, 1)
l4.setsockopt(S, socket.SO_KEEPALIVE, 1)
l4.setsockopt(T, socket.TCP_KEEPIDLE, 77)
l4.setsockopt(T, socket.TCP_KEEPINTVL, 11)
l4.setsockopt(T, socket.TCP_KEEPCNT, 5)
l4.setsockopt(S, socket.SO_RCVBUF, 65536)
l4.bind(("127.0.0.1", 0))
l4.listen(16)
l6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
l6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
l6.bind(("::1", 0))
l6.listen(3)
u4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u4.bind(("127.0.0.1", 0))
u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u6.connect(("::1", 9))
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.bind(("127.0.0.1", 0))
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
nl.bind((0, 1))


def opts():
    return {
        "l4": [l4.getsockname()[1], l4.getsockopt(S, socket.SO_REUSEADDR) != 0,
               l4.getsockopt(T, socket.TCP_NODELAY) != 0, l4.getsockopt(S, socket.SO_KEEPALIVE) != 0,
               l4.getsockopt(T, socket.TCP_KEEPIDLE), l4.getsockopt(T, socket.TCP_KEEPINTVL),
               l4.getsockopt(T, socket.TCP_KEEPCNT), l4.getsockopt(S, socket.SO_RCVBUF)],
        "l6": [l6.getsockname()[1], l6.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)],
        "u4": list(u4.getsockname()),
        "u6": [list(u6.getsockname())[:2], list(u6.getpeername())[:2]],
        "sink": list(sink.getsockname()),
        "nl": list(nl.getsockname()),
    }


def write(name, text):
    with open(os.path.join(d, name + ".tmp"), "w") as f:
        f.write(text)
    os.rename(os.path.join(d, name + ".tmp"), os.path.join(d, name))


report = False


def on_usr1(*_):
    global report
    report = True


signal.signal(signal.SIGUSR1, on_usr1)
write("ports", "%d %d %d %d\n" % (l4.getsockname()[1], l6.getsockname()[1], u4.getsockname()[1],
                                  sink.getsockname()[1]))
write("before", json.dumps(opts()))
write("ready", "")
conns, pending, halfclosed, keep = {}, {}, [], set()
count = pings = 0
while True:
    if report:
        report = False
        for c in halfclosed:
            c.sendall(b"bye\n")
            c.close()
        halfclosed = []
        sink.setblocking(False)
        got = []
        try:
            while True:
                data, peer = sink.recvfrom(4096)
                got.append([data.decode(), peer[1]])
        except BlockingIOError:
            pass
        write("sink", json.dumps(got))
        # SO_REUSEADDR of each open connection (accepted ones inherit their listener's).
        write("conns", json.dumps(sorted(c.getsockopt(S, socket.SO_REUSEADDR) != 0 for c in conns.values())))
        write("result", json.dumps(opts()))
    try:
        ready, _, _ = select.select([l4, l6, u4] + list(conns.values()), [], [], 0.2)
    except InterruptedError:
        continue
    for s in ready:
        if s in (l4, l6):
            c, _ = s.accept()
            count += 1
            c.sendall(b"hello %d\n" % count)
            conns[c.fileno()] = c
            pending[c.fileno()] = b""
        elif s is u4:
            data, peer = u4.recvfrom(4096)
            count += 1
            u4.sendto(b"echo %d:%s" % (count, data), peer)
        else:
            data = s.recv(4096)
            if not data:
                c = conns.pop(s.fileno())
                if c.fileno() in keep:
                    keep.discard(c.fileno())
                    c.sendall(b"eof\n")
                    halfclosed.append(c)
                else:
                    c.close()
                continue
            buf = pending[s.fileno()] + data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line == b"keep":
                    keep.add(s.fileno())
                elif line == b"ping":
                    pings += 1
                    s.sendall(b"pong %d\n" % pings)
            pending[s.fileno()] = buf
