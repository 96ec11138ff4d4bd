/*
 * privileges.c — the "privileges" start-up phase (SPEC §1, §2 `user:`).
 *
 * Started as root with `user:` set, the master binds its listeners, hands the
 * files this start created as root to that user (never a directory or file that
 * was already there: run_dir could be /run), then becomes that user itself. It keeps
 * one capability, CAP_NET_BIND_SERVICE, so that a reload can still bind a new
 * listener below port 1024; every child clears even that one right after fork.
 * Done with libcap (cap_set_proc) and prctl(PR_SET_KEEPCAPS) across setuid().
 *
 * What a master running as `user:` needs afterwards, checked here (as that user,
 * in a probe child, before the master itself drops) so that a mistake is one
 * clear line at start instead of a stream of EACCES later: its
 * configuration readable (reload), run_dir writable (pidfile and control socket
 * removal), the log file writable, and for SQLite the database's directory
 * writable (SQLite creates its -wal and -shm files beside the database). A log
 * directory it cannot create files in is only a warning: logrotate's `create`
 * makes the new file for it.
 */
#include "master.h"
#include "../common/log.h"

#include <errno.h>
#include <grp.h>
#include <libgen.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Give `path` (when this start created it, it exists and is root's) to uid:gid. */
static int hand_over(const char *path, int fresh, uid_t uid, gid_t gid, char *err, size_t errlen)
{
    struct stat st;
    if (!fresh || !path[0] || lstat(path, &st) < 0 || S_ISLNK(st.st_mode)) return 0;
    if (st.st_uid == uid) return 0;
    if (st.st_uid != 0) return 0; /* somebody else's: left alone, access is checked later */
    if (chown(path, uid, gid) < 0) {
        snprintf(err, errlen, "cannot give %s to uid %d: %s", path, (int)uid, strerror(errno));
        return -1;
    }
    return 0;
}

/* The directory part of `path` into `dir` (dirname(3) works on a copy). */
static void dirname_of(const char *path, char *dir, size_t len)
{
    char copy[CONFIG_PATH_MAX];
    snprintf(copy, sizeof(copy), "%s", path);
    snprintf(dir, len, "%s", dirname(copy));
}

struct need {
    const char *path;
    int mode;
    const char *why;
};

/* After the drop: can the new uid do what it must? */
static int check_access(const struct svcd_config *cfg, char *err, size_t errlen)
{
    char dir[CONFIG_PATH_MAX];
    struct need need[5];
    int n = 0;
    need[n++] = (struct need){cfg->path, R_OK, "read its configuration on reload"};
    need[n++] = (struct need){cfg->run_dir, W_OK | X_OK, "remove its pidfile and socket"};
    if (cfg->log.file[0])
        need[n++] = (struct need){cfg->log.file, W_OK, "reopen its log on SIGUSR1"};
    if (cfg->storage.driver == STORE_SQLITE) {
        dirname_of(cfg->storage.path, dir, sizeof(dir));
        need[n++] = (struct need){dir, W_OK | X_OK, "create the SQLite -wal/-shm files"};
        need[n++] = (struct need){cfg->storage.path, R_OK | W_OK, "write the database"};
    }
    for (int i = 0; i < n; i++) {
        if (access(need[i].path, need[i].mode) == 0) continue;
        if (errno == ENOENT && need[i].mode == (R_OK | W_OK)) continue; /* created later */
        snprintf(err, errlen,
                 "user '%s' cannot %s: %s: %s; give that user access (e.g. chown) or change "
                 "the path",
                 cfg->user, need[i].why, need[i].path, strerror(errno));
        return -1;
    }
    return 0;
}

/* A log directory the user cannot create files in only breaks rotation by rename. */
static void warn_log_dir(const struct svcd_config *cfg)
{
    if (cfg->log.file[0]) {
        char logdir[CONFIG_PATH_MAX];
        dirname_of(cfg->log.file, logdir, sizeof(logdir));
        if (access(logdir, W_OK | X_OK) < 0)
            log_warn("phase privileges: user '%s' cannot create files in %s (%s): after a "
                     "rotation by rename, SIGUSR1 finds no new log file unless the rotation "
                     "creates it (logrotate `create ... %s ...`)",
                     cfg->user, logdir, strerror(errno), cfg->user);
    }
}

/*
 * Run check_access() as the user in a short-lived child, before the master commits
 * to the drop: a refusal then leaves the master root, so it still removes its
 * pidfile from a run_dir the user could not write. (No threads run at this point
 * of start-up, so the fork is safe.)
 */
static int probe_as_user(const struct svcd_config *cfg, const char *name, uid_t uid, gid_t gid,
                         char *err, size_t errlen)
{
    int p[2];
    if (pipe(p) < 0) {
        snprintf(err, errlen, "cannot check access as user '%s': %s", name, strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "cannot check access as user '%s': %s", name, strerror(errno));
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        close(p[0]);
        char msg[1024] = "";
        int rc = 1;
        if (initgroups(name, gid) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
            snprintf(msg, sizeof(msg), "cannot become user '%s': %s", name, strerror(errno));
        else
            rc = check_access(cfg, msg, sizeof(msg)) < 0 ? 1 : 0;
        ssize_t w = write(p[1], msg, strlen(msg));
        (void)w;
        _exit(rc);
    }
    close(p[1]);
    char msg[1024];
    size_t got = 0;
    for (;;) {
        ssize_t r = read(p[0], msg + got, sizeof(msg) - 1 - got);
        if (r > 0 && (got += (size_t)r) < sizeof(msg) - 1) continue;
        if (r < 0 && errno == EINTR) continue;
        break;
    }
    msg[got] = '\0';
    close(p[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
    snprintf(err, errlen, "%s", msg[0] ? msg : "the access check as the user failed");
    return -1;
}

int privileges_drop_master(const struct svcd_config *cfg, const struct privileges_fresh *fresh,
                           char *err, size_t errlen)
{
    if (!cfg->user[0] || geteuid() != 0) return 0;
    struct passwd *pw = getpwnam(cfg->user);
    if (!pw) {
        snprintf(err, errlen, "user '%s' does not exist; create it or change `user:`", cfg->user);
        return -1;
    }
    uid_t uid = pw->pw_uid;
    gid_t gid = pw->pw_gid;
    char name[64];
    snprintf(name, sizeof(name), "%s", pw->pw_name);
    if (uid == 0) return 0; /* user: root — nothing to drop */

    /* what the master created as root and the user keeps using */
    char wal[CONFIG_PATH_MAX + 8], shm[CONFIG_PATH_MAX + 8], pidfile[CONFIG_PATH_MAX + 16];
    snprintf(pidfile, sizeof(pidfile), "%s/svcd.pid", cfg->run_dir);
    if (hand_over(cfg->run_dir, fresh->run_dir, uid, gid, err, errlen) < 0 ||
        hand_over(pidfile, 1, uid, gid, err, errlen) < 0 ||
        hand_over(cfg->log.file, fresh->log_file, uid, gid, err, errlen) < 0)
        return -1;
    if (cfg->storage.driver == STORE_SQLITE) {
        /* SQLite's -wal/-shm belong with a database this start created */
        snprintf(wal, sizeof(wal), "%s-wal", cfg->storage.path);
        snprintf(shm, sizeof(shm), "%s-shm", cfg->storage.path);
        if (hand_over(cfg->storage.path, fresh->db, uid, gid, err, errlen) < 0 ||
            hand_over(wal, fresh->db, uid, gid, err, errlen) < 0 ||
            hand_over(shm, fresh->db, uid, gid, err, errlen) < 0)
            return -1;
    }

    if (probe_as_user(cfg, name, uid, gid, err, errlen) < 0) return -1;
    if (prctl(PR_SET_KEEPCAPS, 1L, 0L, 0L, 0L) < 0 || initgroups(name, gid) < 0 ||
        setgid(gid) < 0 || setuid(uid) < 0) {
        snprintf(err, errlen, "cannot become user '%s': %s", name, strerror(errno));
        return -1;
    }
    prctl(PR_SET_KEEPCAPS, 0L, 0L, 0L, 0L);
    cap_t caps = cap_init(); /* all clear */
    cap_value_t keep[] = {CAP_NET_BIND_SERVICE};
    int crc = caps ? cap_set_flag(caps, CAP_PERMITTED, 1, keep, CAP_SET) |
                         cap_set_flag(caps, CAP_EFFECTIVE, 1, keep, CAP_SET) | cap_set_proc(caps)
                   : -1;
    int cerr = errno;
    if (caps) cap_free(caps);
    if (crc < 0) {
        snprintf(err, errlen, "cannot keep CAP_NET_BIND_SERVICE as user '%s': %s", name,
                 strerror(cerr));
        return -1;
    }
    if (setuid(0) == 0) {
        snprintf(err, errlen, "still able to become root after dropping to '%s'", name);
        return -1;
    }
    warn_log_dir(cfg);
    return 0;
}

int privileges_drop_child(const struct svcd_config *cfg, char *err, size_t errlen)
{
    if (geteuid() == 0) {
        /* a master that kept root (no `user:`, or `user: root`) */
        if (!cfg->user[0]) return 0;
        struct passwd *pw = getpwnam(cfg->user);
        if (!pw) {
            snprintf(err, errlen, "user '%s' does not exist", cfg->user);
            return -1;
        }
        if (pw->pw_uid == 0) return 0;
        if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
            setuid(pw->pw_uid) < 0) {
            snprintf(err, errlen, "cannot drop privileges to '%s': %s", cfg->user, strerror(errno));
            return -1;
        }
        return 0;
    }
    /* the master's CAP_NET_BIND_SERVICE is not for children: they get their sockets */
    cap_t none = cap_init();
    int rc = none ? cap_set_proc(none) : -1;
    int e = errno;
    if (none) cap_free(none);
    if (rc < 0) {
        snprintf(err, errlen, "cannot clear capabilities: %s", strerror(e));
        return -1;
    }
    return 0;
}
