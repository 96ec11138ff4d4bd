/*
 * chat_map.h — a string-keyed hash table (chained, power-of-two buckets).
 *
 * The chat keeps every index it needs (users, sessions, rooms, pairs) in these,
 * on both sides of the worker <-> coordinator links. Keys are copied; values are
 * the caller's.
 */
#ifndef SVCD_CHAT_MAP_H
#define SVCD_CHAT_MAP_H

#include <stddef.h>

struct chat_map_ent {
    struct chat_map_ent *next;
    void *value;
    size_t hash;
    char key[];
};

struct chat_map {
    struct chat_map_ent **b;
    size_t nb, n;
};

void chat_map_init(struct chat_map *m);
/* Free the entries (not the values). */
void chat_map_free(struct chat_map *m);
void *chat_map_get(const struct chat_map *m, const char *key);
/* Insert or replace; returns the previous value (NULL when new), or sets
 * *failed on out of memory. */
void *chat_map_put(struct chat_map *m, const char *key, void *value, int *failed);
/* Remove; returns the value that was there, or NULL. */
void *chat_map_del(struct chat_map *m, const char *key);

/* Iterate: for (e = chat_map_first(m, &i); e; e = chat_map_next(m, e, &i)). Deleting
 * the current entry while iterating is not allowed; collect keys first. */
struct chat_map_ent *chat_map_first(const struct chat_map *m, size_t *i);
struct chat_map_ent *chat_map_next(const struct chat_map *m, struct chat_map_ent *e, size_t *i);

#endif
