/* sysv: a container's process holding SysV IPC objects of its own IPC namespace, unix sockets
 * of its own network namespace, and files of its own filesystem.
 *
 *   sysv run    creates a shared memory segment (key 0x5354, 64 KiB, a byte pattern), a set of
 *               three semaphores (key 0x5355; values 7, 8, 9) and a message queue (key 0x5356,
 *               two messages), writes their ids to /tmp/ids, keeps the segment attached and
 *               counts: every 50 ms the count goes into the segment's first 8 bytes and into
 *               /tmp/count. It also holds a stream socket pair with "ping" queued, and a
 *               listener bound to /tmp/srv.sock with an accepted connection holding "pong",
 *               an unlinked file holding "boo", a FIFO holding "fifo", an inotify watch on
 *               /tmp and a pty pair; on SIGUSR1 it checks them all (reads what they hold,
 *               connects to its listener again, makes a file for inotify to see, writes a
 *               line through the pty) and writes "OK ..." (or FAIL and why) to /tmp/socket.
 *   sysv check  (in the same container, after a restore) finds the objects by key and checks
 *               their ids, the pattern, the count in the segment, the semaphores and the two
 *               messages in order; prints OK, or FAIL and why (exit status 1).
 *
 * Built static: it runs in a busybox rootfs. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>
#include <sys/ipc.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>

#define SHM_KEY 0x5354
#define SEM_KEY 0x5355
#define MSG_KEY 0x5356
#define SHM_SIZE (64 * 1024)

struct msgbuf_ { long mtype; char text[64]; };

static int fail(const char *why) {
    printf("FAIL: %s\n", why);
    return 1;
}

static volatile sig_atomic_t usr1;

static void on_usr1(int sig) {
    (void)sig;
    usr1 = 1;
}

static struct sockaddr_un srv_addr = {AF_UNIX, "/tmp/srv.sock"};
static int ghost, fifo, watch, master, slave;
static char pts[64];

/* The files' part of the check: NULL if all is well, else what is wrong. */
static const char *check_files(void) {
    char buf[64] = {0};
    struct stat st;
    if (pread(ghost, buf, 3, 0) != 3 || strcmp(buf, "boo") || fstat(ghost, &st) < 0 || st.st_nlink != 0)
        return "the unlinked file";
    memset(buf, 0, sizeof buf);
    if (read(fifo, buf, 4) != 4 || strcmp(buf, "fifo"))
        return "the FIFO";
    close(open("/tmp/inotify-probe", O_CREAT | O_WRONLY, 0600));
    /* The counter's files are created all the time: look for the probe among them. */
    char ev[4096] __attribute__((aligned(8)));
    int seen = 0;
    ssize_t n;
    while (!seen && (n = read(watch, ev, sizeof ev)) > 0) {
        for (char *q = ev; q < ev + n; q += sizeof(struct inotify_event) + ((struct inotify_event *)q)->len) {
            struct inotify_event *e = (struct inotify_event *)q;
            if ((e->mask & IN_CREATE) && e->len && !strcmp(e->name, "inotify-probe"))
                seen = 1;
        }
    }
    if (!seen)
        return "the inotify watch";
    if (!ptsname(master) || strcmp(ptsname(master), pts))
        return "the pty's index";
    memset(buf, 0, sizeof buf);
    if (write(master, "x\n", 2) != 2 || read(slave, buf, sizeof buf - 1) != 2 || strcmp(buf, "x\n"))
        return "a line through the pty";
    return NULL;
}

/* Reads what the pair and the accepted connection hold, and connects to the listener again. */
static void check_sockets(int rd, int conn, int listener) {
    char a[16] = {0}, b[16] = {0};
    const char *why = NULL;
    if (recv(rd, a, sizeof a - 1, MSG_DONTWAIT) != 4 || strcmp(a, "ping"))
        why = "the pair";
    else if (recv(conn, b, sizeof b - 1, MSG_DONTWAIT) != 4 || strcmp(b, "pong"))
        why = "the accepted connection";
    struct sockaddr_un name = {0};
    socklen_t len = sizeof name;
    if (!why && (getsockname(listener, (struct sockaddr *)&name, &len) < 0 || strcmp(name.sun_path, srv_addr.sun_path)))
        why = "the listener's name";
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    if (!why && connect(c, (struct sockaddr *)&srv_addr, sizeof srv_addr) < 0)
        why = "connecting to the listener";
    if (!why && accept(listener, NULL, NULL) < 0)
        why = "accepting again";
    if (!why)
        why = check_files();
    FILE *f = fopen("/tmp/socket", "w");
    if (why)
        fprintf(f, "FAIL %s\n", why);
    else
        fprintf(f, "OK ping pong listen ghost fifo inotify pty\n");
    fclose(f);
}

static int run(void) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 || write(sv[0], "ping", 4) != 4)
        return fail("socketpair");
    unlink(srv_addr.sun_path);
    int listener = socket(AF_UNIX, SOCK_STREAM, 0), client = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(listener, (struct sockaddr *)&srv_addr, sizeof srv_addr) < 0 || listen(listener, 4) < 0 ||
        connect(client, (struct sockaddr *)&srv_addr, sizeof srv_addr) < 0)
        return fail("the listener");
    int conn = accept(listener, NULL, NULL);
    if (conn < 0 || write(client, "pong", 4) != 4)
        return fail("accept");
    ghost = open("/tmp/ghost", O_CREAT | O_RDWR | O_TRUNC, 0640);
    if (ghost < 0 || write(ghost, "boo", 3) != 3 || unlink("/tmp/ghost") < 0)
        return fail("the unlinked file");
    unlink("/tmp/fifo");
    if (mkfifo("/tmp/fifo", 0600) < 0 || (fifo = open("/tmp/fifo", O_RDWR | O_NONBLOCK)) < 0 || write(fifo, "fifo", 4) != 4)
        return fail("the FIFO");
    watch = inotify_init1(IN_NONBLOCK);
    if (watch < 0 || inotify_add_watch(watch, "/tmp", IN_CREATE) < 0)
        return fail("inotify");
    master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 || !ptsname(master))
        return fail("the pty");
    strncpy(pts, ptsname(master), sizeof pts - 1);
    if ((slave = open(pts, O_RDWR | O_NOCTTY | O_NONBLOCK)) < 0)
        return fail("the pty's slave");
    signal(SIGUSR1, on_usr1);
    int shm = shmget(SHM_KEY, SHM_SIZE, IPC_CREAT | IPC_EXCL | 0640);
    int sem = semget(SEM_KEY, 3, IPC_CREAT | IPC_EXCL | 0600);
    int msg = msgget(MSG_KEY, IPC_CREAT | IPC_EXCL | 0620);
    if (shm < 0 || sem < 0 || msg < 0)
        return fail("creating the objects");
    unsigned char *p = shmat(shm, NULL, 0);
    if (p == (void *)-1)
        return fail("shmat");
    for (int i = 8; i < SHM_SIZE; i++)
        p[i] = (unsigned char)(i * 7 + 3);
    unsigned short vals[3] = {7, 8, 9};
    if (semctl(sem, 0, SETALL, vals) < 0)
        return fail("SETALL");
    struct msgbuf_ m1 = {1, "first"}, m2 = {2, "second message"};
    if (msgsnd(msg, &m1, strlen(m1.text) + 1, 0) < 0 || msgsnd(msg, &m2, strlen(m2.text) + 1, 0) < 0)
        return fail("msgsnd");
    FILE *f = fopen("/tmp/ids", "w");
    fprintf(f, "%d %d %d\n", shm, sem, msg);
    fclose(f);
    for (unsigned long long i = 1;; i++) {
        if (usr1) {
            usr1 = 0;
            check_sockets(sv[1], conn, listener);
        }
        memcpy(p, &i, 8);
        f = fopen("/tmp/count.new", "w");
        fprintf(f, "%llu\n", i);
        fclose(f);
        rename("/tmp/count.new", "/tmp/count");
        usleep(50000);
    }
}

static int check(void) {
    int ids[3];
    FILE *f = fopen("/tmp/ids", "r");
    if (!f || fscanf(f, "%d %d %d", &ids[0], &ids[1], &ids[2]) != 3)
        return fail("no /tmp/ids");
    int shm = shmget(SHM_KEY, 0, 0), sem = semget(SEM_KEY, 0, 0), msg = msgget(MSG_KEY, 0);
    if (shm != ids[0] || sem != ids[1] || msg != ids[2])
        return fail("an object has another id, or is gone");
    struct shmid_ds ds;
    if (shmctl(shm, IPC_STAT, &ds) < 0 || ds.shm_segsz != SHM_SIZE || (ds.shm_perm.mode & 0777) != 0640)
        return fail("the segment's size or mode");
    if (ds.shm_nattch != 1)
        return fail("the counting process does not hold the segment");
    unsigned char *p = shmat(shm, NULL, SHM_RDONLY);
    if (p == (void *)-1)
        return fail("shmat");
    for (int i = 8; i < SHM_SIZE; i++)
        if (p[i] != (unsigned char)(i * 7 + 3))
            return fail("the segment's contents");
    unsigned long long count;
    memcpy(&count, p, 8);
    if (count < 5)
        return fail("the count in the segment");
    unsigned short vals[3];
    if (semctl(sem, 0, GETALL, vals) < 0 || vals[0] != 7 || vals[1] != 8 || vals[2] != 9)
        return fail("the semaphores");
    struct msgbuf_ m;
    if (msgrcv(msg, &m, sizeof m.text, 0, IPC_NOWAIT) < 0 || m.mtype != 1 || strcmp(m.text, "first"))
        return fail("the first message");
    if (msgrcv(msg, &m, sizeof m.text, 0, IPC_NOWAIT) < 0 || m.mtype != 2 || strcmp(m.text, "second message"))
        return fail("the second message");
    printf("OK %llu\n", count);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "run"))
        return run();
    if (argc > 1 && !strcmp(argv[1], "check"))
        return check();
    fprintf(stderr, "usage: sysv run|check\n");
    return 2;
}
