/* The demo's network server: listens on 127.0.0.1 (its port and pid in DIR/port), answers each line a
 * client sends with "N LINE", N counting the lines of every connection since it started.
 * demo-server DIR */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX 64

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    /* nothing but stdio from whoever started us (a checkpoint would carry it) */
    for (int fd = 3; fd < 1024; fd++) close(fd);
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 8) || getsockname(l, (struct sockaddr *)&a, &al))
        return 1;
    char path[4096];
    snprintf(path, sizeof path, "%s/port.tmp", argv[1]);
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    fprintf(f, "%d %d\n", ntohs(a.sin_port), (int)getpid());
    fclose(f);
    char done[4096];
    snprintf(done, sizeof done, "%s/port", argv[1]);
    rename(path, done);
    struct pollfd p[MAX] = {{.fd = l, .events = POLLIN}};
    char buf[MAX][512];
    size_t have[MAX] = {0};
    int n = 1;
    unsigned long lines = 0;
    for (;;) {
        if (poll(p, n, -1) < 0) continue;
        if ((p[0].revents & POLLIN) && n < MAX) {
            int c = accept(l, NULL, NULL);
            if (c >= 0) { p[n].fd = c; p[n].events = POLLIN; have[n] = 0; n++; }
        }
        for (int i = 1; i < n; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP))) continue;
            ssize_t r = read(p[i].fd, buf[i] + have[i], sizeof buf[i] - have[i] - 1);
            if (r <= 0) { close(p[i].fd); p[i] = p[--n]; memcpy(buf[i], buf[n], have[n]); have[i] = have[n]; i--; continue; }
            have[i] += r;
            char *nl;
            while ((nl = memchr(buf[i], '\n', have[i]))) {
                *nl = 0;
                char out[600];
                int len = snprintf(out, sizeof out, "%lu %s\n", ++lines, buf[i]);
                if (write(p[i].fd, out, len) != len) break;
                size_t used = nl + 1 - buf[i];
                memmove(buf[i], nl + 1, have[i] - used);
                have[i] -= used;
            }
            if (have[i] == sizeof buf[i] - 1) have[i] = 0;
        }
    }
}
