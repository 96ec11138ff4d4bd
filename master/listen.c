/*
 * listen.c — binding the listening sockets, and saying who is in the way.
 *
 * "EADDRINUSE" alone sends people hunting (seed 002); svcd looks up which process
 * holds the port — /proc/net/tcp{,6} gives the socket inode of the listener, a
 * scan of /proc/PID/fd finds its owner — and names it in the error:
 *   port 8080 is already in use by pid 4242 (python3)
 */
#include "master.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Find the inode of a socket listening on `port` in /proc/net/tcp or tcp6. */
static unsigned long listener_inode(const char *table, int port)
{
    FILE *f = fopen(table, "r");
    if (!f) return 0;
    char line[512];
    unsigned long found = 0;
    if (!fgets(line, sizeof(line), f)) {
        fclose(f);
        return 0;
    }
    while (fgets(line, sizeof(line), f)) {
        char local[128], remote[128];
        unsigned st;
        unsigned long inode;
        /* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
        if (sscanf(line, "%*d: %127s %127s %x %*s %*s %*s %*d %*d %lu", local, remote, &st,
                   &inode) != 4)
            continue;
        char *colon = strrchr(local, ':');
        if (!colon) continue;
        int p = (int)strtol(colon + 1, NULL, 16);
        if (p == port && st == 0x0A /* TCP_LISTEN */ && inode) {
            found = inode;
            break;
        }
    }
    fclose(f);
    return found;
}

static pid_t inode_owner(unsigned long inode)
{
    char want[64];
    snprintf(want, sizeof(want), "socket:[%lu]", inode);
    DIR *proc = opendir("/proc");
    if (!proc) return 0;
    struct dirent *de;
    pid_t owner = 0;
    while (!owner && (de = readdir(proc))) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0) continue;
        char fddir[64];
        snprintf(fddir, sizeof(fddir), "/proc/%ld/fd", pid);
        DIR *fds = opendir(fddir);
        if (!fds) continue;
        struct dirent *fe;
        while ((fe = readdir(fds))) {
            char link[320], target[128];
            snprintf(link, sizeof(link), "%s/%s", fddir, fe->d_name);
            ssize_t n = readlink(link, target, sizeof(target) - 1);
            if (n <= 0) continue;
            target[n] = '\0';
            if (strcmp(target, want) == 0) {
                owner = (pid_t)pid;
                break;
            }
        }
        closedir(fds);
    }
    closedir(proc);
    return owner;
}

void port_owner(int port, char *out, size_t outlen)
{
    unsigned long inode = listener_inode("/proc/net/tcp", port);
    if (!inode) inode = listener_inode("/proc/net/tcp6", port);
    pid_t pid = inode ? inode_owner(inode) : 0;
    if (!pid) {
        snprintf(out, outlen,
                 "port %d is already in use by another process (not visible to this "
                 "user; try `ss -ltnp 'sport = :%d'` as root)",
                 port, port);
        return;
    }
    char comm[64] = "?", path[64];
    snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
    FILE *f = fopen(path, "r");
    if (f) {
        if (fgets(comm, sizeof(comm), f)) comm[strcspn(comm, "\n")] = '\0';
        fclose(f);
    }
    snprintf(out, outlen, "port %d is already in use by pid %d (%s)", port, (int)pid, comm);
}

int listen_open(const struct config_listen *l, const char *cfg_path, char *err, size_t errlen)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
    char port[16];
    snprintf(port, sizeof(port), "%d", l->port);
    int rc = getaddrinfo(l->host[0] ? l->host : NULL, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s; use an IP address such as 127.0.0.1",
                 l->address, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s: socket: %s", l->address, strerror(errno));
        freeaddrinfo(res);
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (res->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0) {
        int e = errno;
        char why[256];
        if (e == EADDRINUSE) {
            port_owner(l->port, why, sizeof(why));
            snprintf(err, errlen,
                     "cannot listen on %s: %s; stop that process or change the port "
                     "(listen: in %s, or PORT)",
                     l->address, why, cfg_path);
        } else if (e == EACCES) {
            snprintf(err, errlen,
                     "cannot listen on %s: permission denied; ports below 1024 need root or "
                     "CAP_NET_BIND_SERVICE — start svcd as root (it drops to `user:` after "
                     "binding) or use a port of 1024 or more",
                     l->address);
        } else if (e == EADDRNOTAVAIL) {
            snprintf(err, errlen,
                     "cannot listen on %s: address %s is not configured on this host; use "
                     "127.0.0.1, 0.0.0.0 or an address of this machine",
                     l->address, l->host);
        } else {
            snprintf(err, errlen, "cannot listen on %s: %s", l->address, strerror(e));
        }
        close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    if (listen(fd, 511) < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", l->address, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}
