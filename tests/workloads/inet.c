/*
 * Network workload for the inet tests and the bench: sockets of the IPv4/IPv6/netlink families,
 * set up with known state, then (on SIGUSR1, after a checkpoint and restore) checked by the
 * workload itself. Every mode writes DIR/info ("key value" lines: ports, byte counts), then
 * DIR/ready; on SIGUSR1 it checks and writes DIR/result ("OK ..." or "FAIL ...").
 *
 *   inet listen DIR        TCP listeners: v4 (127.0.0.1), v6 (::1, IPV6_V6ONLY), dual (::,
 *                          not v6only), each with its own SO_REUSEADDR, TCP_NODELAY, keepalive
 *                          (idle, interval, count), SO_SNDBUF, SO_RCVBUF and backlog (and the v6
 *                          one SO_REUSEPORT). The test
 *                          may connect to l4 before the dump (a connection left in the backlog).
 *                          On SIGUSR1 compares every option with before, then accepts on each
 *                          listener what the test connected after the restore ("ping" ->
 *                          "pong <name>"), and reports whether the pre-dump backlog connection
 *                          was still there ("backlog=carried" or "backlog=lost").
 *   inet pair DIR          established loopback pairs inside the process: v4 and v6, each way
 *                          4000 bytes unread, and a v4 pair filled until the writer blocks
 *                          (unsent data in the send queue, full receive queue). On SIGUSR1
 *                          reads and checks every byte, then talks both ways again.
 *   inet peer DIR PORT     a connection to 127.0.0.1:PORT (the test, outside the tree): writes
 *                          a stream ("sent N" in info) the test does not read before the dump,
 *                          leaves what the test sends unread. On SIGUSR1 reads the test's
 *                          stream (length from DIR/expect, written by the test), checks it,
 *                          sends 4096 more bytes, shuts down writing.
 *   inet udp DIR           UDP: u4 bound on 127.0.0.1 and c4 connected to it; three datagrams
 *                          queued c4 -> u4 and one u4 -> c4; u6 bound on ::1 (v6only) with one
 *                          queued from c6 (connected). On SIGUSR1 reports how many queued
 *                          datagrams were still there ("queued=N/5", contents checked), checks
 *                          names, peers and options, and exchanges new datagrams.
 *   inet netlink DIR       a NETLINK_ROUTE socket bound with groups RTMGRP_LINK and
 *                          RTMGRP_IPV4_IFADDR. On SIGUSR1 checks its port id and groups, dumps
 *                          the links (finds lo), adds and removes 127.77.x.y/32 on lo and sees
 *                          the RTM_NEWADDR notification on the bound socket.
 *   inet conns DIR N       N established loopback connections (2N fds; RLIMIT_NOFILE raised to
 *                          its hard limit), 4 KiB unread each way on each. On SIGUSR1 reads and
 *                          checks every byte, then one round trip on each connection.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *dir;
static volatile sig_atomic_t go;
static char info[8192];

static void on_usr1(int sig) { (void)sig; go = 1; }

static void write_file(const char *name, const char *text) {
    char path[4096], tmp[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
    FILE *f = fopen(tmp, "w");
    if (!f) { perror(tmp); exit(2); }
    fputs(text, f);
    fclose(f);
    rename(tmp, path);
}

/* Writes "FAIL ..." as the result (and ready, so a test waiting for it goes on) and exits. */
static void die(const char *fmt, ...) {
    char msg[1024] = "FAIL ";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + 5, sizeof msg - 6, fmt, ap);
    va_end(ap);
    size_t n = strlen(msg);
    snprintf(msg + n, sizeof msg - n, " (errno %d %s)\n", errno, strerror(errno));
    write_file("result", msg);
    write_file("ready", "");
    exit(1);
}

static void add_info(const char *fmt, ...) {
    size_t n = strlen(info);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(info + n, sizeof info - n, fmt, ap);
    va_end(ap);
}

/* Publishes DIR/info and DIR/ready, then waits for SIGUSR1. */
static void ready_and_wait(void) {
    write_file("info", info);
    write_file("ready", "");
    while (!go) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Byte `i` of stream `s`. */
static uint8_t pat(uint32_t s, uint64_t i) { return (uint8_t)(i * 131 + s * 17 + (i >> 9)); }

static void fill(uint8_t *b, size_t len, uint32_t s, uint64_t off) {
    for (size_t i = 0; i < len; i++) b[i] = pat(s, off + i);
}

static int setint(int fd, int level, int opt, int v) {
    return setsockopt(fd, level, opt, &v, sizeof v);
}

static int getint(int fd, int level, int opt) {
    int v = -1;
    socklen_t l = sizeof v;
    if (getsockopt(fd, level, opt, &v, &l)) die("getsockopt %d/%d on fd %d", level, opt, fd);
    return v;
}

static void set_nonblock(int fd, int on) {
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

/* Waits up to `ms` for `ev` on fd; 1 when ready. */
static int wait_fd(int fd, short ev, int ms) {
    struct pollfd p = {fd, ev, 0};
    int r;
    do r = poll(&p, 1, ms); while (r < 0 && errno == EINTR);
    return r > 0;
}

/* Reads exactly `len` bytes of stream `s` from offset `off`, checking them. */
static void read_stream(int fd, size_t len, uint32_t s, uint64_t off, const char *what) {
    uint8_t buf[65536];
    size_t got = 0;
    while (got < len) {
        if (!wait_fd(fd, POLLIN, 30000)) die("%s: timed out after %zu of %zu bytes", what, got, len);
        size_t want = len - got < sizeof buf ? len - got : sizeof buf;
        ssize_t n = recv(fd, buf, want, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n <= 0) die("%s: read %zd after %zu of %zu bytes", what, n, got, len);
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != pat(s, off + got + i)) die("%s: byte %zu differs", what, (size_t)(off + got + i));
        got += n;
    }
}

/* Writes `len` bytes of stream `s` from offset `off` (waiting when the socket is full). */
static void write_stream(int fd, size_t len, uint32_t s, uint64_t off, const char *what) {
    uint8_t buf[65536];
    size_t done = 0;
    while (done < len) {
        size_t n = len - done < sizeof buf ? len - done : sizeof buf;
        fill(buf, n, s, off + done);
        if (!wait_fd(fd, POLLOUT, 30000)) die("%s: cannot write", what);
        ssize_t w = send(fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (w <= 0) die("%s: write", what);
        done += w;
    }
}

/* Writes stream `s` without blocking until the socket is full; returns the bytes written. */
static size_t write_until_full(int fd, uint32_t s) {
    uint8_t buf[16384];
    size_t done = 0;
    for (;;) {
        fill(buf, sizeof buf, s, done);
        ssize_t w = send(fd, buf, sizeof buf, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN) {
            /* loopback delivers at once; settle and try once more */
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
            fill(buf, sizeof buf, s, done);
            w = send(fd, buf, sizeof buf, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w < 0 && errno == EAGAIN) return done;
        }
        if (w <= 0) die("write_until_full");
        done += w;
    }
}

union addr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
    struct sockaddr_storage ss;
};

static socklen_t make_addr(union addr *a, int family, const char *host, int port) {
    memset(a, 0, sizeof *a);
    if (family == AF_INET) {
        a->in.sin_family = AF_INET;
        a->in.sin_port = htons(port);
        inet_pton(AF_INET, host, &a->in.sin_addr);
        return sizeof a->in;
    }
    a->in6.sin6_family = AF_INET6;
    a->in6.sin6_port = htons(port);
    inet_pton(AF_INET6, host, &a->in6.sin6_addr);
    return sizeof a->in6;
}

static int port_of(int fd, int peer) {
    union addr a;
    socklen_t l = sizeof a;
    if ((peer ? getpeername : getsockname)(fd, &a.sa, &l)) die("getsockname fd %d", fd);
    return ntohs(a.sa.sa_family == AF_INET ? a.in.sin_port : a.in6.sin6_port);
}

/* ------------------------------------------------------------------ listen */

struct tcp_opts {
    int reuse, nodelay, keepalive, idle, intvl, cnt, sndbuf, rcvbuf, v6only, reuseport;
};

static void get_opts(int fd, int family, struct tcp_opts *o) {
    o->reuse = getint(fd, SOL_SOCKET, SO_REUSEADDR);
    o->nodelay = getint(fd, IPPROTO_TCP, TCP_NODELAY);
    o->keepalive = getint(fd, SOL_SOCKET, SO_KEEPALIVE);
    o->idle = getint(fd, IPPROTO_TCP, TCP_KEEPIDLE);
    o->intvl = getint(fd, IPPROTO_TCP, TCP_KEEPINTVL);
    o->cnt = getint(fd, IPPROTO_TCP, TCP_KEEPCNT);
    o->sndbuf = getint(fd, SOL_SOCKET, SO_SNDBUF);
    o->rcvbuf = getint(fd, SOL_SOCKET, SO_RCVBUF);
    o->v6only = family == AF_INET6 ? getint(fd, IPPROTO_IPV6, IPV6_V6ONLY) : -1;
    o->reuseport = getint(fd, SOL_SOCKET, SO_REUSEPORT);
}

static void compare_opts(const char *what, const struct tcp_opts *a, const struct tcp_opts *b) {
    const int *x = (const int *)a, *y = (const int *)b;
    static const char *names[] = {"SO_REUSEADDR", "TCP_NODELAY", "SO_KEEPALIVE", "TCP_KEEPIDLE",
                                  "TCP_KEEPINTVL", "TCP_KEEPCNT", "SO_SNDBUF", "SO_RCVBUF",
                                  "IPV6_V6ONLY", "SO_REUSEPORT"};
    for (unsigned i = 0; i < sizeof *a / sizeof(int); i++)
        if (x[i] != y[i]) {
            errno = 0;
            die("%s: %s was %d, now %d", what, names[i], x[i], y[i]);
        }
}

struct listener {
    const char *name;
    int family, v6only, backlog, nodelay, idle, intvl, cnt, sndbuf, rcvbuf;
    const char *host;
    int fd, port;
    struct tcp_opts before;
};

static int listen_mode(void) {
    struct listener ls[] = {
        {"l4", AF_INET, -1, 7, 1, 77, 13, 5, 65536, 98304, "127.0.0.1", -1, 0, {0}},
        {"l6", AF_INET6, 1, 9, 0, 91, 17, 3, 49152, 81920, "::1", -1, 0, {0}},
        {"d6", AF_INET6, 0, 5, 1, 120, 11, 7, 73728, 57344, "::", -1, 0, {0}},
    };
    int n = sizeof ls / sizeof ls[0];
    for (int i = 0; i < n; i++) {
        struct listener *l = &ls[i];
        l->fd = socket(l->family, SOCK_STREAM, 0);
        if (l->fd < 0) die("socket");
        if (setint(l->fd, SOL_SOCKET, SO_REUSEADDR, 1) || setint(l->fd, IPPROTO_TCP, TCP_NODELAY, l->nodelay) ||
            setint(l->fd, SOL_SOCKET, SO_KEEPALIVE, 1) || setint(l->fd, IPPROTO_TCP, TCP_KEEPIDLE, l->idle) ||
            setint(l->fd, IPPROTO_TCP, TCP_KEEPINTVL, l->intvl) || setint(l->fd, IPPROTO_TCP, TCP_KEEPCNT, l->cnt) ||
            setint(l->fd, SOL_SOCKET, SO_SNDBUF, l->sndbuf) || setint(l->fd, SOL_SOCKET, SO_RCVBUF, l->rcvbuf))
            die("setsockopt %s", l->name);
        if (l->v6only >= 0 && setint(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, l->v6only)) die("v6only");
        /* One listener shares its port (SO_REUSEPORT), the others do not. */
        if (i == 1 && setint(l->fd, SOL_SOCKET, SO_REUSEPORT, 1)) die("reuseport");
        union addr a;
        socklen_t al = make_addr(&a, l->family, l->host, 0);
        if (bind(l->fd, &a.sa, al) || listen(l->fd, l->backlog)) die("bind/listen %s", l->name);
        l->port = port_of(l->fd, 0);
        get_opts(l->fd, l->family, &l->before);
        add_info("%s %d\n", l->name, l->port);
    }
    signal(SIGUSR1, on_usr1);
    ready_and_wait();
    char res[1024] = "OK";
    for (int i = 0; i < n; i++) {
        struct tcp_opts now;
        get_opts(ls[i].fd, ls[i].family, &now);
        compare_opts(ls[i].name, &ls[i].before, &now);
        if (getint(ls[i].fd, SOL_SOCKET, SO_ACCEPTCONN) != 1) die("%s: not listening", ls[i].name);
    }
    /* The test connected once to each listener after the restore (and maybe once to l4 before
     * the dump, sending "backlog"); each connection says what it is. */
    int backlog = 0;
    for (int i = 0; i < n; i++) {
        int want = i == 0 ? 2 : 1, got = 0;
        for (;;) {
            if (!wait_fd(ls[i].fd, POLLIN, got < 1 ? 20000 : 300)) break;
            int c = accept(ls[i].fd, NULL, NULL);
            if (c < 0) die("accept %s", ls[i].name);
            char buf[32] = {0};
            if (!wait_fd(c, POLLIN, 5000)) { close(c); continue; }
            ssize_t r = recv(c, buf, sizeof buf - 1, 0);
            if (r <= 0) { close(c); continue; } /* a connection the restore reset */
            if (!strcmp(buf, "backlog")) backlog = 1;
            else if (strcmp(buf, "ping")) die("%s: got \"%s\"", ls[i].name, buf);
            char reply[64];
            snprintf(reply, sizeof reply, "pong %s", ls[i].name);
            if (send(c, reply, strlen(reply), MSG_NOSIGNAL) <= 0) die("send pong");
            close(c);
            if (++got == want) break;
        }
        if (got < 1) { errno = 0; die("%s: nothing to accept after the restore", ls[i].name); }
    }
    size_t l = strlen(res);
    snprintf(res + l, sizeof res - l, " backlog=%s\n", backlog ? "carried" : "lost");
    write_file("result", res);
    return 0;
}

/* ------------------------------------------------------------------ pair */

/* Connects a to b over loopback of `family`; returns the accepted end in *b. */
static void loop_pair(int family, int *a, int *b, int bufs) {
    int l = socket(family, SOCK_STREAM, 0);
    union addr ad;
    socklen_t al = make_addr(&ad, family, family == AF_INET ? "127.0.0.1" : "::1", 0);
    if (l < 0 || bind(l, &ad.sa, al) || listen(l, 4)) die("pair listener");
    ad.in.sin_port = htons(port_of(l, 0)); /* same offset for in and in6 */
    *a = socket(family, SOCK_STREAM, 0);
    if (bufs) {
        setint(*a, SOL_SOCKET, SO_SNDBUF, bufs);
        setint(*a, SOL_SOCKET, SO_RCVBUF, bufs);
    }
    if (connect(*a, &ad.sa, al)) die("pair connect");
    *b = accept(l, NULL, NULL);
    if (*b < 0) die("pair accept");
    if (bufs) {
        setint(*b, SOL_SOCKET, SO_SNDBUF, bufs);
        setint(*b, SOL_SOCKET, SO_RCVBUF, bufs);
    }
    close(l);
}

static int pair_mode(void) {
    int a4, b4, a6, b6, af, bf;
    loop_pair(AF_INET, &a4, &b4, 0);
    loop_pair(AF_INET6, &a6, &b6, 0);
    loop_pair(AF_INET, &af, &bf, 32768);
    setint(a4, IPPROTO_TCP, TCP_NODELAY, 1);
    setint(b6, SOL_SOCKET, SO_KEEPALIVE, 1);
    write_stream(a4, 4000, 1, 0, "a4");
    write_stream(b4, 4000, 2, 0, "b4");
    write_stream(a6, 4000, 3, 0, "a6");
    write_stream(b6, 4000, 4, 0, "b6");
    size_t fa = write_until_full(af, 5);
    size_t fb = write_until_full(bf, 6);
    int pa4 = port_of(a4, 0), pb4 = port_of(b4, 0), pa6 = port_of(a6, 0), pb6 = port_of(b6, 0);
    int paf = port_of(af, 0), pbf = port_of(bf, 0);
    add_info("a4 %d\nb4 %d\na6 %d\nb6 %d\naf %d\nbf %d\n", pa4, pb4, pa6, pb6, paf, pbf);
    add_info("sent a4 4000\nsent b4 4000\nsent a6 4000\nsent b6 4000\nsent af %zu\nsent bf %zu\n", fa, fb);
    signal(SIGUSR1, on_usr1);
    ready_and_wait();
    if (port_of(a4, 1) != pb4 || port_of(b4, 1) != pa4 || port_of(a6, 1) != pb6 || port_of(af, 0) != paf)
        die("names changed");
    if (getint(a4, IPPROTO_TCP, TCP_NODELAY) != 1 || getint(b6, SOL_SOCKET, SO_KEEPALIVE) != 1) die("options");
    read_stream(b4, 4000, 1, 0, "a4->b4");
    read_stream(a4, 4000, 2, 0, "b4->a4");
    read_stream(b6, 4000, 3, 0, "a6->b6");
    read_stream(a6, 4000, 4, 0, "b6->a6");
    /* the full pair: read both ways at once (each side's unsent data flows as the other reads) */
    set_nonblock(af, 1);
    set_nonblock(bf, 1);
    read_stream(bf, fa, 5, 0, "af->bf");
    read_stream(af, fb, 6, 0, "bf->af");
    /* and on: the connections go on carrying data */
    write_stream(a4, 100000, 1, 4000, "a4 more");
    read_stream(b4, 100000, 1, 4000, "a4->b4 more");
    write_stream(b6, 100000, 4, 4000, "b6 more");
    read_stream(a6, 100000, 4, 4000, "b6->a6 more");
    write_stream(bf, 1000, 6, fb, "bf more");
    read_stream(af, 1000, 6, fb, "bf->af more");
    char res[256];
    snprintf(res, sizeof res, "OK full pair %zu+%zu bytes\n", fa, fb);
    write_file("result", res);
    return 0;
}

/* ------------------------------------------------------------------ peer */

static int peer_mode(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    union addr a;
    socklen_t al = make_addr(&a, AF_INET, "127.0.0.1", port);
    if (fd < 0 || connect(fd, &a.sa, al)) die("connect to 127.0.0.1:%d", port);
    setint(fd, IPPROTO_TCP, TCP_NODELAY, 1);
    size_t sent = 50000;
    write_stream(fd, sent, 7, 0, "to the test");
    add_info("local %d\nsent %zu\n", port_of(fd, 0), sent);
    signal(SIGUSR1, on_usr1);
    ready_and_wait();
    char path[4096];
    snprintf(path, sizeof path, "%s/expect", dir);
    FILE *f = fopen(path, "r");
    size_t expect = 0;
    if (!f || fscanf(f, "%zu", &expect) != 1) die("%s", path);
    fclose(f);
    if (port_of(fd, 1) != port) die("peer changed");
    read_stream(fd, expect, 8, 0, "from the test");
    write_stream(fd, 4096, 7, sent, "to the test, after");
    shutdown(fd, SHUT_WR);
    char res[128];
    snprintf(res, sizeof res, "OK read %zu\n", expect);
    write_file("result", res);
    return 0;
}

/* ------------------------------------------------------------------ udp */

static int udp_socket(int family, const char *host, int sndbuf) {
    int fd = socket(family, SOCK_DGRAM, 0);
    if (fd < 0) die("udp socket");
    if (sndbuf) setint(fd, SOL_SOCKET, SO_SNDBUF, sndbuf);
    if (family == AF_INET6) setint(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
    if (host) {
        union addr a;
        socklen_t al = make_addr(&a, family, host, 0);
        if (bind(fd, &a.sa, al)) die("udp bind");
    }
    return fd;
}

static void udp_connect(int fd, int family, const char *host, int port) {
    union addr a;
    socklen_t al = make_addr(&a, family, host, port);
    if (connect(fd, &a.sa, al)) die("udp connect");
}

/* Takes what is queued on fd (without waiting); counts datagrams equal to the expected ones. */
static int drain(int fd, const char *const *want, int n, int from_port) {
    int got = 0;
    char buf[256];
    for (;;) {
        union addr a;
        socklen_t al = sizeof a;
        ssize_t r = recvfrom(fd, buf, sizeof buf - 1, MSG_DONTWAIT, &a.sa, &al);
        if (r < 0) return got;
        buf[r] = 0;
        int p = ntohs(a.sa.sa_family == AF_INET ? a.in.sin_port : a.in6.sin6_port);
        if (got >= n || strcmp(buf, want[got]) || p != from_port) {
            errno = 0;
            die("datagram %d: \"%s\" from port %d", got, buf, p);
        }
        got++;
    }
}

static void udp_roundtrip(int from, int to, const char *msg) {
    if (send(from, msg, strlen(msg), 0) != (ssize_t)strlen(msg)) die("udp send %s", msg);
    char buf[256] = {0};
    if (!wait_fd(to, POLLIN, 5000)) die("udp %s not received", msg);
    ssize_t r = recv(to, buf, sizeof buf - 1, 0);
    if (r < 0 || strcmp(buf, msg)) die("udp %s: got \"%s\"", msg, buf);
}

static int udp_mode(void) {
    int u4 = udp_socket(AF_INET, "127.0.0.1", 0);
    int c4 = udp_socket(AF_INET, "127.0.0.1", 0);
    int u6 = udp_socket(AF_INET6, "::1", 0);
    int c6 = udp_socket(AF_INET6, NULL, 0);
    setint(u4, SOL_SOCKET, SO_RCVBUF, 90000);
    setint(u4, SOL_SOCKET, SO_REUSEADDR, 1);
    int pu4 = port_of(u4, 0), pc4 = port_of(c4, 0), pu6 = port_of(u6, 0);
    udp_connect(c4, AF_INET, "127.0.0.1", pu4);
    udp_connect(c6, AF_INET6, "::1", pu6);
    int pc6 = port_of(c6, 0);
    static const char *const to_u4[] = {"dgram-1", "dgram-2", "dgram-3"};
    static const char *const to_c4[] = {"reply-1"};
    static const char *const to_u6[] = {"dgram-6"};
    for (int i = 0; i < 3; i++) send(c4, to_u4[i], strlen(to_u4[i]), 0);
    union addr a;
    socklen_t al = make_addr(&a, AF_INET, "127.0.0.1", pc4);
    sendto(u4, to_c4[0], strlen(to_c4[0]), 0, &a.sa, al);
    send(c6, to_u6[0], strlen(to_u6[0]), 0);
    int rcvbuf = getint(u4, SOL_SOCKET, SO_RCVBUF);
    add_info("u4 %d\nc4 %d\nu6 %d\nc6 %d\n", pu4, pc4, pu6, pc6);
    signal(SIGUSR1, on_usr1);
    ready_and_wait();
    if (port_of(u4, 0) != pu4 || port_of(c4, 0) != pc4 || port_of(u6, 0) != pu6 || port_of(c6, 0) != pc6)
        die("bound ports changed");
    if (port_of(c4, 1) != pu4 || port_of(c6, 1) != pu6) die("connected peers changed");
    if (getint(u4, SOL_SOCKET, SO_RCVBUF) != rcvbuf || getint(u4, SOL_SOCKET, SO_REUSEADDR) != 1)
        die("u4 options");
    if (getint(u6, IPPROTO_IPV6, IPV6_V6ONLY) != 1) die("u6 v6only");
    int queued = drain(u4, to_u4, 3, pc4) + drain(c4, to_c4, 1, pu4) + drain(u6, to_u6, 1, pc6);
    udp_roundtrip(c4, u4, "after-1");
    udp_roundtrip(c6, u6, "after-6");
    al = make_addr(&a, AF_INET, "127.0.0.1", pc4);
    if (sendto(u4, "back", 4, 0, &a.sa, al) != 4) die("sendto c4");
    char buf[16] = {0};
    if (!wait_fd(c4, POLLIN, 5000) || recv(c4, buf, sizeof buf - 1, 0) != 4 || strcmp(buf, "back")) die("c4 back");
    char res[64];
    snprintf(res, sizeof res, "OK queued=%d/5\n", queued);
    write_file("result", res);
    return 0;
}

/* ------------------------------------------------------------------ netlink */

struct nlreq {
    struct nlmsghdr h;
    union {
        struct ifinfomsg ifi;
        struct {
            struct ifaddrmsg ifa;
            struct rtattr rta;
            struct in_addr addr;
        } a;
    };
};

/* Adds (or deletes) addr/32 on lo through `fd`; waits for the kernel's answer. */
static void nl_addr(int fd, int type, struct in_addr addr, int seq) {
    struct nlreq r;
    memset(&r, 0, sizeof r);
    r.h.nlmsg_len = NLMSG_LENGTH(sizeof r.a);
    r.h.nlmsg_type = type;
    r.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (type == RTM_NEWADDR ? NLM_F_CREATE | NLM_F_EXCL : 0);
    r.h.nlmsg_seq = seq;
    r.a.ifa.ifa_family = AF_INET;
    r.a.ifa.ifa_prefixlen = 32;
    r.a.ifa.ifa_index = if_nametoindex("lo");
    r.a.rta.rta_type = IFA_LOCAL;
    r.a.rta.rta_len = RTA_LENGTH(sizeof addr);
    r.a.addr = addr;
    if (send(fd, &r, r.h.nlmsg_len, 0) < 0) die("netlink send %d", type);
    char buf[4096];
    if (!wait_fd(fd, POLLIN, 5000)) die("netlink: no ack");
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    if (n < (ssize_t)sizeof *h || h->nlmsg_type != NLMSG_ERROR) die("netlink: not an ack");
    int err = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
    if (err) { errno = -err; die("netlink %s", type == RTM_NEWADDR ? "RTM_NEWADDR" : "RTM_DELADDR"); }
}

static int netlink_mode(void) {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR};
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa)) die("netlink bind");
    setint(fd, SOL_SOCKET, SO_RCVBUF, 300000);
    socklen_t l = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &l);
    uint32_t portid = sa.nl_pid, groups = sa.nl_groups;
    int rcvbuf = getint(fd, SOL_SOCKET, SO_RCVBUF);
    add_info("portid %u\ngroups %u\n", portid, groups);
    signal(SIGUSR1, on_usr1);
    ready_and_wait();
    l = sizeof sa;
    memset(&sa, 0, sizeof sa);
    if (getsockname(fd, (struct sockaddr *)&sa, &l)) die("getsockname");
    if (sa.nl_pid != portid || sa.nl_groups != groups) {
        errno = 0;
        die("netlink name was %u/%x, now %u/%x", portid, groups, sa.nl_pid, sa.nl_groups);
    }
    if (getint(fd, SOL_SOCKET, SO_RCVBUF) != rcvbuf) die("netlink rcvbuf");
    /* a link dump through the restored socket */
    struct nlreq r;
    memset(&r, 0, sizeof r);
    r.h.nlmsg_len = NLMSG_LENGTH(sizeof r.ifi);
    r.h.nlmsg_type = RTM_GETLINK;
    r.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    r.h.nlmsg_seq = 1;
    if (send(fd, &r, r.h.nlmsg_len, 0) < 0) die("RTM_GETLINK");
    int lo = if_nametoindex("lo"), saw_lo = 0, done = 0;
    static char buf[65536];
    while (!done) {
        if (!wait_fd(fd, POLLIN, 5000)) die("link dump: no answer");
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0) die("link dump recv");
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE) done = 1;
            else if (h->nlmsg_type == RTM_NEWLINK && ((struct ifinfomsg *)NLMSG_DATA(h))->ifi_index == lo) saw_lo = 1;
        }
    }
    if (!saw_lo) { errno = 0; die("link dump without lo"); }
    /* a notification to the bound groups: an address added on lo by another socket */
    int ctl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    struct in_addr addr = {htonl(0x7f4d0000u | ((unsigned)getpid() & 0xffffu))};
    nl_addr(ctl, RTM_NEWADDR, addr, 2);
    nl_addr(ctl, RTM_DELADDR, addr, 3);
    int saw_new = 0;
    while (!saw_new && wait_fd(fd, POLLIN, 3000)) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; n > 0 && NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type != RTM_NEWADDR) continue;
            struct ifaddrmsg *ifa = NLMSG_DATA(h);
            int len = IFA_PAYLOAD(h);
            for (struct rtattr *a = IFA_RTA(ifa); RTA_OK(a, len); a = RTA_NEXT(a, len))
                if (a->rta_type == IFA_LOCAL && !memcmp(RTA_DATA(a), &addr, 4)) saw_new = 1;
        }
    }
    if (!saw_new) { errno = 0; die("no RTM_NEWADDR notification on the bound socket"); }
    write_file("result", "OK\n");
    return 0;
}

/* ------------------------------------------------------------------ conns */

static int conns_mode(int n) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur < (rlim_t)(2 * n + 16)) die("RLIMIT_NOFILE %lu", (unsigned long)rl.rlim_cur);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    union addr a;
    socklen_t al = make_addr(&a, AF_INET, "127.0.0.1", 0);
    if (l < 0 || bind(l, &a.sa, al) || listen(l, 128)) die("conns listener");
    a.in.sin_port = htons(port_of(l, 0));
    int *c = calloc(n, sizeof *c), *s = calloc(n, sizeof *s);
    const size_t k = 4096;
    for (int i = 0; i < n; i++) {
        c[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (c[i] < 0 || connect(c[i], &a.sa, al)) die("connect %d", i);
        s[i] = accept(l, NULL, NULL);
        if (s[i] < 0) die("accept %d", i);
        write_stream(c[i], k, 2 * i, 0, "c");
        write_stream(s[i], k, 2 * i + 1, 0, "s");
    }
    close(l);
    add_info("port %d\nconns %d\n", port_of(s[0], 0), n);
    signal(SIGUSR1, on_usr1);
    ready_and_wait();
    for (int i = 0; i < n; i++) {
        read_stream(s[i], k, 2 * i, 0, "c->s");
        read_stream(c[i], k, 2 * i + 1, 0, "s->c");
        write_stream(c[i], 64, 2 * i, k, "c more");
        read_stream(s[i], 64, 2 * i, k, "c->s more");
        write_stream(s[i], 64, 2 * i + 1, k, "s more");
        read_stream(c[i], 64, 2 * i + 1, k, "s->c more");
    }
    char res[64];
    snprintf(res, sizeof res, "OK %d connections\n", n);
    write_file("result", res);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: inet MODE DIR [ARG]\n");
        return 2;
    }
    dir = argv[2];
    signal(SIGPIPE, SIG_IGN);
    if (!strcmp(argv[1], "listen")) return listen_mode();
    if (!strcmp(argv[1], "pair")) return pair_mode();
    if (!strcmp(argv[1], "peer") && argc > 3) return peer_mode(atoi(argv[3]));
    if (!strcmp(argv[1], "udp")) return udp_mode();
    if (!strcmp(argv[1], "netlink")) return netlink_mode();
    if (!strcmp(argv[1], "conns") && argc > 3) return conns_mode(atoi(argv[3]));
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
