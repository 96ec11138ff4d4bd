/*
 * notify.c — the systemd notify protocol (Type=notify), through libsystemd.
 *
 * READY=1 goes out only once every child has reported ready, so `systemctl start`
 * and `svc start` return when svcd really serves. RELOADING=1/STOPPING=1 frame
 * reloads and drains; WATCHDOG=1 is sent from the master's loop at half the
 * interval systemd asked for, so a wedged master gets restarted by systemd.
 */
#include "master.h"

#include <stdio.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

void notify_ready(const char *status)
{
    sd_notifyf(0, "READY=1\nSTATUS=%s\nMAINPID=%d", status, (int)getpid());
}

void notify_status(const char *status)
{
    sd_notifyf(0, "STATUS=%s", status);
}
void notify_reloading(void)
{
    sd_notify(0, "RELOADING=1\nSTATUS=reloading configuration");
}
void notify_stopping(void)
{
    sd_notify(0, "STOPPING=1\nSTATUS=draining connections");
}

static void on_watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents, (void)w;
    sd_notify(0, "WATCHDOG=1");
}

void notify_watchdog_start(struct master *m)
{
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return;
    double every = (double)usec / 2e6;
    ev_timer_init(&m->watchdog, on_watchdog, 0., every);
    ev_timer_again(m->loop, &m->watchdog);
    sd_notify(0, "WATCHDOG=1");
}
