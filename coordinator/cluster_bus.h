/*
 * cluster_bus.h — chat events between the coordinators of several hosts that
 * share one MongoDB (SPEC §1 multi-host, §7 "across all workers and hosts").
 *
 * With `storage.driver: mongodb`, every host's coordinator publishes what other
 * hosts must see (room broadcasts, "user U connected here", pushes to a user who
 * is not connected here) into one collection, `svcd_bus`, and reads what the
 * others published. Nothing home-made runs between hosts: MongoDB is the only
 * shared component, as it already is for bookings.
 *
 * Order and delivery: every event is a document whose _id is the next integer
 * of one sequence; a writer takes "highest seen + 1" and retries on a duplicate
 * key, so the unique _id index (not a counter update) decides the order. Each
 * reader delivers events in _id order, exactly once, from the point it started;
 * a hole in the sequence (a concurrent insert not visible yet) is waited for
 * briefly, then skipped. Events older than a minute are deleted.
 *
 * The MongoDB client lives on a thread of its own; the coordinator's loop is
 * never blocked by the database. A dead database delays events (they are kept
 * for a few seconds, then dropped with a warning); it never stops local chat.
 */
#ifndef SVCD_CLUSTER_BUS_H
#define SVCD_CLUSTER_BUS_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

struct cluster_bus;

/* An event another host published, delivered on the coordinator's loop. */
typedef void (*cluster_recv_fn)(void *arg, const char *type, const char *key, const char *data,
                                size_t len, int64_t at_ms, const char *host);

/* Start the bus thread for MongoDB `uri` (redacted in logs). Returns NULL with
 * err filled when the URI is unusable; an unreachable database is not an error
 * (the thread keeps trying). */
struct cluster_bus *cluster_bus_start(struct ev_loop *loop, const char *uri, cluster_recv_fn fn,
                                      void *arg, char *err, size_t errlen);

/* Queue an event for the other hosts; never blocks. */
void cluster_bus_publish(struct cluster_bus *b, const char *type, const char *key, const char *data,
                         size_t len, int64_t at_ms);

/* This host's id on the bus (random per coordinator process). */
const char *cluster_bus_host(const struct cluster_bus *b);

void cluster_bus_stop(struct cluster_bus *b);

#endif
