/*
 * chat_map.c — string-keyed hash table (see chat_map.h). FNV-1a, chains, doubles
 * at load factor 1.
 */
#include "chat_map.h"

#include <stdlib.h>
#include <string.h>

static size_t hash_str(const char *s)
{
    size_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

void chat_map_init(struct chat_map *m)
{
    memset(m, 0, sizeof(*m));
}

void chat_map_free(struct chat_map *m)
{
    for (size_t i = 0; i < m->nb; i++) {
        struct chat_map_ent *e = m->b[i], *n;
        for (; e; e = n) {
            n = e->next;
            free(e);
        }
    }
    free(m->b);
    memset(m, 0, sizeof(*m));
}

static struct chat_map_ent **find(const struct chat_map *m, const char *key, size_t h)
{
    if (!m->nb) return NULL;
    struct chat_map_ent **p = &m->b[h & (m->nb - 1)];
    for (; *p; p = &(*p)->next)
        if ((*p)->hash == h && strcmp((*p)->key, key) == 0) return p;
    return p;
}

void *chat_map_get(const struct chat_map *m, const char *key)
{
    size_t h = hash_str(key);
    struct chat_map_ent **p = find(m, key, h);
    return p && *p ? (*p)->value : NULL;
}

static int grow(struct chat_map *m)
{
    size_t nb = m->nb ? m->nb * 2 : 16;
    struct chat_map_ent **b = calloc(nb, sizeof(*b));
    if (!b) return -1;
    for (size_t i = 0; i < m->nb; i++) {
        struct chat_map_ent *e = m->b[i], *n;
        for (; e; e = n) {
            n = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
    return 0;
}

void *chat_map_put(struct chat_map *m, const char *key, void *value, int *failed)
{
    size_t h = hash_str(key);
    if (failed) *failed = 0;
    struct chat_map_ent **p = find(m, key, h);
    if (p && *p) {
        void *old = (*p)->value;
        (*p)->value = value;
        return old;
    }
    if (m->n >= m->nb && grow(m) < 0) {
        if (failed) *failed = 1;
        return NULL;
    }
    size_t kl = strlen(key);
    struct chat_map_ent *e = malloc(sizeof(*e) + kl + 1);
    if (!e) {
        if (failed) *failed = 1;
        return NULL;
    }
    memcpy(e->key, key, kl + 1);
    e->hash = h;
    e->value = value;
    size_t i = h & (m->nb - 1);
    e->next = m->b[i];
    m->b[i] = e;
    m->n++;
    return NULL;
}

void *chat_map_del(struct chat_map *m, const char *key)
{
    size_t h = hash_str(key);
    struct chat_map_ent **p = find(m, key, h);
    if (!p || !*p) return NULL;
    struct chat_map_ent *e = *p;
    void *v = e->value;
    *p = e->next;
    free(e);
    m->n--;
    return v;
}

struct chat_map_ent *chat_map_first(const struct chat_map *m, size_t *i)
{
    for (*i = 0; *i < m->nb; (*i)++)
        if (m->b[*i]) return m->b[*i];
    return NULL;
}

struct chat_map_ent *chat_map_next(const struct chat_map *m, struct chat_map_ent *e, size_t *i)
{
    if (e->next) return e->next;
    for ((*i)++; *i < m->nb; (*i)++)
        if (m->b[*i]) return m->b[*i];
    return NULL;
}
