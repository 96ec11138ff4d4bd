/*
 * config.c — YAML, then `.env`, then the environment, into one validated svcd_config.
 *
 * Why this file exists: svcd must refuse to start on a bad configuration and say, in one
 * go, everything that is wrong, where, and how to fix it (SPEC §2) — the seeds' servers
 * died at the first request instead. Three steps:
 *
 *  1. The YAML document (libyaml's document API, for line:column marks) is walked with
 *     tables of directives, nginx style: each known key names a setter that checks the
 *     node's type and value and stores it. Unknown keys get a "did you mean".
 *  2. `.env` beside the YAML, then the process environment, override the few names a
 *     MERN deployment already uses (NODE_ENV, PORT, MONGODB_URI, JWT_SECRET, CLIENT_URL,
 *     plus SVCD_ADMIN_TOKEN).
 *  3. Checks that need the whole picture (timeout order, production secrets, duplicate
 *     listeners, TLS key/cert pairs, ...) run last.
 *
 * Every stored value remembers its origin (file:line:col, ".env:N NAME" or "env NAME"),
 * so step 3 still points at the right place whichever source won. Nothing stops at the
 * first error. Secrets (JWT secret, admin token, URI passwords) are never echoed: string
 * setters never print values, URIs go through config_redact_uri().
 */
#include "config.h"
#include "units.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <yaml.h>

#define WHERE_LEN       sizeof(((struct config_error *)0)->where)
#define SHOW_LEN        48  /* longest echo of a user value in a message */
#define KEY_LEN         128 /* "apps[31].restart" */
#define MAX_PAIRS       256 /* keys per mapping: far above any real section */
#define MAX_WORKERS     256
#define MIN_JWT_SECRET  32
#define MIN_ADMIN_TOKEN 16

/* ---------------------------------------------------------------------------------------
 * Origins: where each value came from
 */

enum origin_tag { TAG_VALUE, TAG_NODE }; /* a scalar's value / the mapping, list or item */
enum origin_from { FROM_YAML, FROM_DOTENV, FROM_ENV };

struct origin {
    const void *field;
    enum origin_tag tag;
    enum origin_from from;
    size_t line, col;     /* 1-based (YAML) or the .env line */
    const char *env_name; /* FROM_DOTENV / FROM_ENV */
};

struct loader {
    const char *file;                   /* the YAML path as the caller gave it */
    char dotenv_label[CONFIG_PATH_MAX]; /* ".env" beside it, as shown in messages */
    struct svcd_config *cfg;
    struct config_errors *errs;
    yaml_document_t *doc;
    struct origin *origins;
    size_t norigins, caporigins;
    bool oom;
};

static void note(struct loader *ld, const void *field, enum origin_tag tag, enum origin_from from,
                 size_t line, size_t col, const char *env_name)
{
    struct origin *o = NULL;
    for (size_t i = 0; i < ld->norigins; i++)
        if (ld->origins[i].field == field && ld->origins[i].tag == tag) o = &ld->origins[i];
    if (!o) {
        if (ld->norigins == ld->caporigins) {
            size_t cap = ld->caporigins ? ld->caporigins * 2 : 64;
            struct origin *grown = realloc(ld->origins, cap * sizeof *grown);
            if (!grown) {
                ld->oom = true;
                return;
            }
            ld->origins = grown;
            ld->caporigins = cap;
        }
        o = &ld->origins[ld->norigins++];
    }
    *o = (struct origin){field, tag, from, line, col, env_name};
}

static void note_node(struct loader *ld, const void *field, enum origin_tag tag,
                      const yaml_node_t *n)
{
    note(ld, field, tag, FROM_YAML, n->start_mark.line + 1, n->start_mark.column + 1, NULL);
}

static void format_where(const struct loader *ld, const struct origin *o, char *buf, size_t len)
{
    switch (o->from) {
    case FROM_YAML:
        snprintf(buf, len, "%s:%zu:%zu", ld->file, o->line, o->col);
        break;
    case FROM_DOTENV:
        snprintf(buf, len, "%s:%zu %s", ld->dotenv_label, o->line, o->env_name);
        break;
    case FROM_ENV:
        snprintf(buf, len, "env %s", o->env_name);
        break;
    }
}

/* Where `field` was set; else "env FALLBACK" when given (a value that only the environment
 * is expected to provide); else the file itself. */
static const char *where_of(const struct loader *ld, const void *field, enum origin_tag tag,
                            const char *fallback_env, char *buf, size_t len)
{
    for (size_t i = 0; i < ld->norigins; i++) {
        if (ld->origins[i].field == field && ld->origins[i].tag == tag) {
            format_where(ld, &ld->origins[i], buf, len);
            return buf;
        }
    }
    if (fallback_env)
        snprintf(buf, len, "env %s", fallback_env);
    else
        snprintf(buf, len, "%s", ld->file);
    return buf;
}

/* False when the value came from .env or the environment (or is a default). */
static bool from_yaml(const struct loader *ld, const void *field)
{
    for (size_t i = 0; i < ld->norigins; i++)
        if (ld->origins[i].field == field && ld->origins[i].tag == TAG_VALUE)
            return ld->origins[i].from == FROM_YAML;
    return true;
}

/* ---------------------------------------------------------------------------------------
 * Findings
 */

static void verror(struct config_errors *errs, bool *oom, const char *where, const char *fmt,
                   va_list ap)
{
    if (errs->count == errs->cap) {
        size_t cap = errs->cap ? errs->cap * 2 : 16;
        struct config_error *grown = realloc(errs->items, cap * sizeof *grown);
        if (!grown) {
            *oom = true;
            return;
        }
        errs->items = grown;
        errs->cap = cap;
    }
    struct config_error *e = &errs->items[errs->count++];
    snprintf(e->where, sizeof e->where, "%s", where);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
}

__attribute__((format(printf, 3, 4))) static void errorf(struct loader *ld, const char *where,
                                                         const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(ld->errs, &ld->oom, where, fmt, ap);
    va_end(ap);
}

__attribute__((format(printf, 3, 4))) static void
node_error(struct loader *ld, const yaml_node_t *n, const char *fmt, ...)
{
    char where[WHERE_LEN];
    snprintf(where, sizeof where, "%s:%zu:%zu", ld->file, (size_t)n->start_mark.line + 1,
             (size_t)n->start_mark.column + 1);
    va_list ap;
    va_start(ap, fmt);
    verror(ld->errs, &ld->oom, where, fmt, ap);
    va_end(ap);
}

__attribute__((format(printf, 5, 6))) static void field_error(struct loader *ld, const void *field,
                                                              enum origin_tag tag,
                                                              const char *fallback_env,
                                                              const char *fmt, ...)
{
    char where[WHERE_LEN];
    where_of(ld, field, tag, fallback_env, where, sizeof where);
    va_list ap;
    va_start(ap, fmt);
    verror(ld->errs, &ld->oom, where, fmt, ap);
    va_end(ap);
}

/* A user value, shortened and made printable, for messages. Never used on secrets. */
static const char *show(const char *s, char *buf, size_t len)
{
    size_t i = 0, o = 0;
    for (; s[i] && o + 4 < len; i++) buf[o++] = isprint((unsigned char)s[i]) ? s[i] : '?';
    if (s[i])
        snprintf(buf + o, len - o, "...");
    else
        buf[o] = '\0';
    return buf;
}

/* 60000 -> "60s", 1500 -> "1500ms", 3600000 -> "1h": the way people write them. */
static void format_ms(uint64_t ms, char *buf, size_t len)
{
    unsigned long long v = (unsigned long long)ms;
    if (v % 1000)
        snprintf(buf, len, "%llums", v);
    else if (v < 600000 || v % 60000)
        snprintf(buf, len, "%llus", v / 1000);
    else if (v % 3600000)
        snprintf(buf, len, "%llum", v / 60000);
    else
        snprintf(buf, len, "%lluh", v / 3600000);
}

/* ---------------------------------------------------------------------------------------
 * Suggestions: optimal string alignment distance, case-insensitive
 */

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return 99;
    size_t d[65][65];
    for (size_t i = 0; i <= la; i++) d[i][0] = i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
            size_t cost = ca != cb, best = d[i - 1][j - 1] + cost;
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

/* One word starts the other ("warning"/"warn", "prod"/"production"), at least 3 long. */
static bool prefix_of(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), n = la < lb ? la : lb;
    return n >= 3 && !strncasecmp(a, b, n);
}

/* The closest candidate when it is close enough to be a typo: at most 2 edits, and at
 * most a third of the longer word (so "uri" suggests "url" but "foo" suggests nothing),
 * or a shortened / lengthened form of it. */
static const char *suggest(const char *word, const char *const *candidates, size_t n)
{
    const char *best = NULL;
    size_t best_d = 99;
    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(word, candidates[i]);
        size_t longer = strlen(word) > strlen(candidates[i]) ? strlen(word) : strlen(candidates[i]);
        if (((d <= 2 && d * 3 <= longer) || prefix_of(word, candidates[i])) && d < best_d) {
            best = candidates[i];
            best_d = d;
        }
    }
    return best;
}

/* ---------------------------------------------------------------------------------------
 * Directives
 */

struct directive;
typedef void (*setter_fn)(struct loader *ld, const char *key, yaml_node_t *n,
                          const struct directive *d, void *base);

struct directive {
    const char *name;
    setter_fn set;
    size_t offset;       /* of the field, from the section's base */
    size_t size;         /* buffer size of strings; sizeof the field of integers */
    const void *arg;     /* nested table, enum names, range or list spec */
    const char *example; /* shown in type errors: "e.g. KEY: EXAMPLE" */
};

struct enum_name {
    const char *name;
    int value;
};

struct range {
    long long min, max;
    const char *what; /* "a port", "a count" */
};

struct list_spec {
    const struct directive *item; /* keys of one entry */
    const char *scalar_key;       /* an entry may be written as just this key's value */
    size_t count_offset;          /* the int counter, from the section's base */
    size_t item_size;
    int max;
    const char *const *required; /* keys every entry must have */
};

static void parse_mapping(struct loader *ld, const char *path, yaml_node_t *n,
                          const struct directive *table, void *base);

static const char *node_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    default:
        return "a single value";
    }
}

/* `key:` with nothing after it, or `~` / `null`. */
static bool is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

static const char *scalar_of(struct loader *ld, const char *key, yaml_node_t *n,
                             const struct directive *d)
{
    if (n->type != YAML_SCALAR_NODE) {
        node_error(ld, n, "%s must be a single value, not %s; write e.g. %s: %s", key, node_kind(n),
                   d->name, d->example);
        return NULL;
    }
    const char *v = (const char *)n->data.scalar.value;
    if (strlen(v) != n->data.scalar.length) {
        node_error(ld, n, "%s contains a NUL character; remove the \\0 escape", key);
        return NULL;
    }
    return v;
}

/* A value every non-string setter needs: present, scalar, non-null. */
static const char *value_of(struct loader *ld, const char *key, yaml_node_t *n,
                            const struct directive *d)
{
    if (is_null(n)) {
        node_error(ld, n, "%s has no value; write e.g. %s: %s (or remove the key for the default)",
                   key, d->name, d->example);
        return NULL;
    }
    return scalar_of(ld, key, n, d);
}

/* Strings, paths and secrets. The value itself is never echoed: it may be a secret. */
static void set_string(struct loader *ld, const char *key, yaml_node_t *n,
                       const struct directive *d, void *base)
{
    char *dst = (char *)base + d->offset;
    if (is_null(n)) {
        dst[0] = '\0';
        note_node(ld, dst, TAG_VALUE, n);
        return;
    }
    const char *v = scalar_of(ld, key, n, d);
    if (!v) return;
    size_t len = strlen(v);
    if (len >= d->size) {
        node_error(ld, n, "%s is %zu characters long; at most %zu are allowed, shorten it", key,
                   len, d->size - 1);
        return;
    }
    memcpy(dst, v, len + 1);
    note_node(ld, dst, TAG_VALUE, n);
}

/* A positive quantity with a unit: `parse` reads it, `hint` says how to write one (it
 * opens the parenthesis the example closes). */
static void set_with_unit(struct loader *ld, const char *key, yaml_node_t *n,
                          const struct directive *d, void *base,
                          int (*parse)(const char *, uint64_t *), const char *hint)
{
    const char *v = value_of(ld, key, n, d);
    char shown[SHOW_LEN];
    uint64_t x;
    if (!v) return;
    if (parse(v, &x) < 0) {
        node_error(ld, n, "%s: '%s' is %se.g. %s: %s)", key, show(v, shown, sizeof shown), hint,
                   d->name, d->example);
        return;
    }
    if (x == 0) {
        node_error(ld, n, "%s must be greater than 0 (got '%s'); e.g. %s: %s", key,
                   show(v, shown, sizeof shown), d->name, d->example);
        return;
    }
    uint64_t *dst = (uint64_t *)((char *)base + d->offset);
    *dst = x;
    note_node(ld, dst, TAG_VALUE, n);
}

static void set_duration(struct loader *ld, const char *key, yaml_node_t *n,
                         const struct directive *d, void *base)
{
    set_with_unit(ld, key, n, d, base, units_parse_duration,
                  "not a duration; write a number with a unit ms, s, m or h (");
}

static void set_size(struct loader *ld, const char *key, yaml_node_t *n, const struct directive *d,
                     void *base)
{
    set_with_unit(ld, key, n, d, base, units_parse_size,
                  "not a size; write a number with a unit B, KiB, MiB or GiB (K, KB, M, MB, G, "
                  "GB also mean 1024-based; ");
}

/* A decimal integer, optionally negative (so "-1" gets a range message, not a syntax one). */
static int parse_integer(const char *v, long long *out)
{
    const char *p = v;
    bool neg = *p == '-';
    if (neg) p++;
    if (!isdigit((unsigned char)*p)) return -1;
    long long x = 0;
    for (; isdigit((unsigned char)*p); p++) {
        if (x > (LLONG_MAX - 9) / 10) return -1;
        x = x * 10 + (*p - '0');
    }
    if (*p) return -1;
    *out = neg ? -x : x;
    return 0;
}

static void set_integer(struct loader *ld, const char *key, yaml_node_t *n,
                        const struct directive *d, void *base)
{
    const struct range *r = d->arg;
    const char *v = value_of(ld, key, n, d);
    char shown[SHOW_LEN];
    long long x;
    if (!v) return;
    if (parse_integer(v, &x) < 0) {
        node_error(ld, n,
                   "%s: '%s' is not a whole number; write %s between %lld and %lld, e.g. %s: %s",
                   key, show(v, shown, sizeof shown), r->what, r->min, r->max, d->name, d->example);
        return;
    }
    if (x < r->min || x > r->max) {
        node_error(ld, n, "%s is %lld; it must be %s between %lld and %lld, e.g. %s: %s", key, x,
                   r->what, r->min, r->max, d->name, d->example);
        return;
    }
    void *dst = (char *)base + d->offset;
    if (d->size == sizeof(uint64_t))
        *(uint64_t *)dst = (uint64_t)x;
    else
        *(int *)dst = (int)x;
    note_node(ld, dst, TAG_VALUE, n);
}

static int enum_lookup(const struct enum_name *names, const char *v)
{
    for (const struct enum_name *e = names; e->name; e++)
        if (!strcmp(e->name, v)) return e->value;
    return -1;
}

/* "a, b or c" and a suggestion for a misspelt enumerated value. */
static void enum_help(const struct enum_name *names, const char *v, char *buf, size_t len)
{
    const char *cands[8];
    size_t n = 0, off = 0;
    for (const struct enum_name *e = names; e->name && n < 8; e++) cands[n++] = e->name;
    for (size_t i = 0; i < n && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%s",
                                i == 0       ? ""
                                : i + 1 == n ? " or "
                                             : ", ",
                                cands[i]);
    const char *s = suggest(v, cands, n);
    if (s && off < len) snprintf(buf + off, len - off, " (did you mean '%s'?)", s);
}

static void set_enum(struct loader *ld, const char *key, yaml_node_t *n, const struct directive *d,
                     void *base)
{
    const char *v = value_of(ld, key, n, d);
    char shown[SHOW_LEN], help[160];
    if (!v) return;
    int value = enum_lookup(d->arg, v);
    if (value < 0) {
        enum_help(d->arg, v, help, sizeof help);
        node_error(ld, n, "%s: '%s' is not allowed; use %s", key, show(v, shown, sizeof shown),
                   help);
        return;
    }
    int *dst = (int *)((char *)base + d->offset); /* the enums are int-sized */
    *dst = value;
    note_node(ld, dst, TAG_VALUE, n);
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) return 1;
    return n > MAX_WORKERS ? MAX_WORKERS : (int)n;
}

static void set_workers(struct loader *ld, const char *key, yaml_node_t *n,
                        const struct directive *d, void *base)
{
    static const struct range workers_range = {1, MAX_WORKERS, "a number of processes"};
    const char *v = value_of(ld, key, n, d);
    if (!v) return;
    if (!strcmp(v, "auto")) {
        int *dst = (int *)((char *)base + d->offset);
        *dst = online_cpus();
        note_node(ld, dst, TAG_VALUE, n);
        return;
    }
    long long x;
    if (parse_integer(v, &x) < 0) {
        char shown[SHOW_LEN];
        node_error(ld, n,
                   "%s: '%s' is neither a number nor auto; write workers: auto (one per CPU) "
                   "or a count from 1 to %d",
                   key, show(v, shown, sizeof shown), MAX_WORKERS);
        return;
    }
    struct directive sub = *d;
    sub.arg = &workers_range;
    set_integer(ld, key, n, &sub, base);
}

static void set_user(struct loader *ld, const char *key, yaml_node_t *n, const struct directive *d,
                     void *base)
{
    set_string(ld, key, n, d, base);
    const char *user = (const char *)base + d->offset;
    char shown[SHOW_LEN];
    if (n->type != YAML_SCALAR_NODE || !*user || strcmp(user, (const char *)n->data.scalar.value))
        return;
    errno = 0;
    if (!getpwnam(user))
        node_error(ld, n,
                   "user '%s' does not exist; create it (adduser --system %s) or remove "
                   "user: to keep the starting user",
                   show(user, shown, sizeof shown), show(user, shown, sizeof shown));
}

/* A section: a nested mapping with its own table; its fields live under `base + offset`. */
static void set_section(struct loader *ld, const char *key, yaml_node_t *n,
                        const struct directive *d, void *base)
{
    void *sub = (char *)base + d->offset;
    if (is_null(n)) return; /* `timeouts:` alone: all defaults */
    note_node(ld, sub, TAG_NODE, n);
    parse_mapping(ld, key, n, d->arg, sub);
}

static bool has_key(const struct loader *ld, const yaml_node_t *map, const char *name)
{
    if (map->type != YAML_MAPPING_NODE) return false;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(ld->doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && !strcmp((const char *)k->data.scalar.value, name))
            return true;
    }
    return false;
}

/* A list of entries (listen, proxy.routes, apps): each a mapping with the spec's table,
 * or, when the spec allows it, a single value standing for its main key. */
static void set_list(struct loader *ld, const char *key, yaml_node_t *n, const struct directive *d,
                     void *base)
{
    const struct list_spec *spec = d->arg;
    char *items = (char *)base + d->offset;
    int *count = (int *)((char *)base + spec->count_offset);
    *count = 0;
    note_node(ld, count, TAG_NODE, n); /* the list itself; items[0] is noted as an item */
    if (is_null(n)) return;
    if (n->type != YAML_SEQUENCE_NODE) {
        node_error(ld, n,
                   "%s must be a list of entries, each starting with '- ', not %s; e.g. %s: %s",
                   key, node_kind(n), d->name, d->example);
        return;
    }
    int i = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++, i++) {
        yaml_node_t *entry = yaml_document_get_node(ld->doc, *it);
        if (!entry) continue;
        if (i >= spec->max) {
            node_error(ld, entry, "%s has %d entries; at most %d are supported, remove the rest",
                       key, (int)(n->data.sequence.items.top - n->data.sequence.items.start),
                       spec->max);
            break;
        }
        void *item = items + (size_t)i * spec->item_size;
        memset(item, 0, spec->item_size);
        (*count)++;
        note_node(ld, item, TAG_NODE, entry);
        char ikey[KEY_LEN];
        snprintf(ikey, sizeof ikey, "%s[%d]", key, i);
        if (entry->type == YAML_SCALAR_NODE && spec->scalar_key && !is_null(entry)) {
            for (const struct directive *e = spec->item; e->name; e++)
                if (!strcmp(e->name, spec->scalar_key)) e->set(ld, ikey, entry, e, item);
            continue;
        }
        if (entry->type != YAML_MAPPING_NODE) {
            node_error(ld, entry, "%s must be a mapping of keys, not %s; e.g. - %s", ikey,
                       node_kind(entry), d->example);
            continue;
        }
        parse_mapping(ld, ikey, entry, spec->item, item);
        for (const char *const *r = spec->required; r && *r; r++)
            if (!has_key(ld, entry, *r))
                node_error(ld, entry, "%s has no %s; add %s: ... to this entry (e.g. - %s)", ikey,
                           *r, *r, d->example);
    }
}

/* host:port, [ipv6]:port, :port or port (both meaning 127.0.0.1), *:port (0.0.0.0),
 * localhost:port (127.0.0.1). Fills `why` with the reason and the fix on failure. */
static int parse_port(const char *s, size_t len)
{
    if (len == 0 || len > 5) return -1;
    int port = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i])) return -1;
        port = port * 10 + (s[i] - '0');
    }
    return port >= 1 && port <= 65535 ? port : -1;
}

static int parse_address(const char *v, char *host, size_t hostlen, int *port, const char **why)
{
    const char *colon, *portstr;
    char h[256];
    unsigned char bin[16];
    if (*v == '[') {
        const char *close = strchr(v, ']');
        if (!close || close[1] != ':') {
            *why = "is not [IPv6]:PORT; write e.g. \"[::1]:8080\" (quoted in YAML)";
            return -1;
        }
        size_t hl = (size_t)(close - v - 1);
        if (hl >= sizeof h) hl = sizeof h - 1;
        memcpy(h, v + 1, hl);
        h[hl] = '\0';
        if (inet_pton(AF_INET6, h, bin) != 1) {
            *why = "has an invalid IPv6 address in brackets; write e.g. \"[::1]:8080\" or "
                   "\"[::]:8080\"";
            return -1;
        }
        portstr = close + 2;
    } else if (!(colon = strrchr(v, ':'))) {
        snprintf(h, sizeof h, "127.0.0.1");
        portstr = v;
    } else {
        size_t hl = (size_t)(colon - v);
        if (memchr(v, ':', hl)) {
            *why = "looks like an IPv6 address without brackets; write e.g. \"[::1]:8080\"";
            return -1;
        }
        if (hl >= sizeof h) {
            *why = "has a host that is too long; write an IP address such as 127.0.0.1:8080";
            return -1;
        }
        memcpy(h, v, hl);
        h[hl] = '\0';
        if (hl == 0 || !strcmp(h, "localhost"))
            snprintf(h, sizeof h, "127.0.0.1");
        else if (!strcmp(h, "*"))
            snprintf(h, sizeof h, "0.0.0.0");
        else if (inet_pton(AF_INET, h, bin) != 1) {
            *why = "does not start with an IP address; write IPV4:PORT (127.0.0.1:8080, "
                   "0.0.0.0:8080), \"[IPV6]:PORT\", localhost:PORT, *:PORT or just the PORT";
            return -1;
        }
        portstr = colon + 1;
    }
    if ((*port = parse_port(portstr, strlen(portstr))) < 0) {
        *why = "has no valid port; the port must be a number from 1 to 65535, e.g. 127.0.0.1:8080";
        return -1;
    }
    snprintf(host, hostlen, "%s", h);
    return 0;
}

static void set_address(struct loader *ld, const char *key, yaml_node_t *n,
                        const struct directive *d, void *base)
{
    struct config_listen *l = base;
    const char *v = value_of(ld, key, n, d), *why = NULL;
    char shown[SHOW_LEN];
    if (!v) return;
    if (strlen(v) >= sizeof l->address) {
        node_error(ld, n, "%s is too long; write HOST:PORT, e.g. 127.0.0.1:8080", key);
        return;
    }
    if (parse_address(v, l->host, sizeof l->host, &l->port, &why) < 0) {
        node_error(ld, n, "%s: '%s' %s", key, show(v, shown, sizeof shown), why);
        l->port = 0;
        return;
    }
    snprintf(l->address, sizeof l->address, "%s", v);
    note_node(ld, l->address, TAG_VALUE, n);
    note_node(ld, &l->port, TAG_VALUE, n);
}

static void set_tls(struct loader *ld, const char *key, yaml_node_t *n, const struct directive *d,
                    void *base)
{
    struct config_listen *l = base;
    if (is_null(n)) return;
    if (n->type != YAML_MAPPING_NODE) {
        node_error(ld, n, "%s must be a mapping, not %s; e.g. %s: %s", key, node_kind(n), d->name,
                   d->example);
        return;
    }
    l->tls = true;
    note_node(ld, &l->tls, TAG_NODE, n);
    parse_mapping(ld, key, n, d->arg, base);
    if (!has_key(ld, n, "cert"))
        node_error(ld, n, "%s has no cert; add cert: FILE.pem (the certificate chain, PEM)", key);
    if (!has_key(ld, n, "key"))
        node_error(ld, n, "%s has no key; add key: FILE.pem (the unencrypted private key, PEM)",
                   key);
}

static void set_prefix(struct loader *ld, const char *key, yaml_node_t *n,
                       const struct directive *d, void *base)
{
    set_string(ld, key, n, d, base);
    const char *prefix = (const char *)base + d->offset;
    if (n->type == YAML_SCALAR_NODE && !is_null(n) && prefix[0] != '/')
        node_error(ld, n, "%s must start with '/', e.g. %s: %s", key, d->name, d->example);
}

/* http://HOST:PORT with an optional trailing '/'. HOST is a name, IPv4 or [IPv6]. */
static bool valid_upstream(const char *v)
{
    if (strncmp(v, "http://", 7)) return false;
    const char *h = v + 7, *end = h + strlen(h);
    if (end > h && end[-1] == '/') end--;
    const char *colon;
    if (*h == '[') {
        const char *close = memchr(h, ']', (size_t)(end - h));
        if (!close || close + 1 >= end || close[1] != ':') return false;
        colon = close + 1;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        if (!colon || colon == h) return false;
        for (const char *c = h; c < colon; c++)
            if (!isalnum((unsigned char)*c) && *c != '.' && *c != '-' && *c != '_') return false;
    }
    return parse_port(colon + 1, (size_t)(end - colon - 1)) > 0;
}

static void set_upstream(struct loader *ld, const char *key, yaml_node_t *n,
                         const struct directive *d, void *base)
{
    set_string(ld, key, n, d, base);
    const char *up = (const char *)base + d->offset;
    char shown[256];
    if (n->type != YAML_SCALAR_NODE || is_null(n) || valid_upstream(up)) return;
    config_redact_uri((const char *)n->data.scalar.value, shown, sizeof shown);
    node_error(ld, n,
               "%s: '%.80s' is not http://HOST:PORT; write e.g. %s: %s (plain HTTP to the backend; "
               "https upstreams are not supported)",
               key, shown, d->name, d->example);
}

static void set_app_name(struct loader *ld, const char *key, yaml_node_t *n,
                         const struct directive *d, void *base)
{
    set_string(ld, key, n, d, base);
    const char *name = (const char *)base + d->offset;
    char shown[SHOW_LEN];
    if (n->type != YAML_SCALAR_NODE || is_null(n) ||
        strcmp(name, (const char *)n->data.scalar.value))
        return;
    bool ok = name[0] != '.' && name[0] != '-';
    for (const char *c = name; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '.' && *c != '_' && *c != '-') ok = false;
    if (!ok)
        node_error(ld, n,
                   "%s: '%s' may only contain letters, digits, '.', '_' and '-' (it names log "
                   "files); e.g. %s: %s",
                   key, show(name, shown, sizeof shown), d->name, d->example);
}

/* ---------------------------------------------------------------------------------------
 * The tables
 */

#define SEC(sec, f)  (offsetof(struct svcd_config, sec.f) - offsetof(struct svcd_config, sec))
#define STR(type, f) offsetof(type, f), sizeof(((type *)0)->f)

static const struct enum_name env_names[] = {
    {"development", ENV_DEVELOPMENT}, {"production", ENV_PRODUCTION}, {NULL, 0}};
static const struct enum_name driver_names[] = {
    {"sqlite", STORE_SQLITE}, {"mongodb", STORE_MONGODB}, {NULL, 0}};
static const struct enum_name format_names[] = {
    {"text", LOG_FORMAT_TEXT}, {"json", LOG_FORMAT_JSON}, {NULL, 0}};
static const struct enum_name level_names[] = {
    {"debug", LOG_DEBUG}, {"info", LOG_INFO}, {"warn", LOG_WARN}, {"error", LOG_ERROR}, {NULL, 0}};
static const struct enum_name restart_names[] = {{"on-failure", APP_RESTART_ON_FAILURE},
                                                 {"always", APP_RESTART_ALWAYS},
                                                 {"never", APP_RESTART_NEVER},
                                                 {NULL, 0}};

static const struct range port_range = {1, 65535, "a port"};
static const struct range connections_range = {1, 10000000, "a number of connections"};
static const struct range attempts_range = {1, 100, "a number of attempts"};

static const struct directive tls_table[] = {
    {"cert", set_string, STR(struct config_listen, tls_cert), NULL, "cert.pem"},
    {"key", set_string, STR(struct config_listen, tls_key), NULL, "key.pem"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

static const struct directive listen_table[] = {
    {"address", set_address, STR(struct config_listen, address), NULL, "127.0.0.1:8080"},
    {"tls", set_tls, 0, 0, tls_table, "{ cert: cert.pem, key: key.pem }"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

static const struct directive timeouts_table[] = {
    {"headers", set_duration, SEC(timeouts, headers_ms), 8, NULL, "66s"},
    {"keepalive", set_duration, SEC(timeouts, keepalive_ms), 8, NULL, "65s"},
    {"request", set_duration, SEC(timeouts, request_ms), 8, NULL, "60s"},
    {"shutdown", set_duration, SEC(timeouts, shutdown_ms), 8, NULL, "10s"},
    {"worker", set_duration, SEC(timeouts, worker_ms), 8, NULL, "30s"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

static const struct directive limits_table[] = {
    {"body", set_size, SEC(limits, body), 8, NULL, "1MiB"},
    {"header", set_size, SEC(limits, header), 8, NULL, "16KiB"},
    {"ws_message", set_size, SEC(limits, ws_message), 8, NULL, "1MiB"},
    {"connections", set_integer, SEC(limits, connections), 8, &connections_range, "10000"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

static const struct directive connect_table[] = {
    {"attempts", set_integer, SEC(storage, connect_attempts), sizeof(int), &attempts_range, "3"},
    {"backoff", set_duration, SEC(storage, connect_backoff_ms), 8, NULL, "2s"},
    {"max_backoff", set_duration, SEC(storage, connect_max_backoff_ms), 8, NULL, "10s"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

static const struct directive storage_table[] = {
    {"driver", set_enum, SEC(storage, driver), sizeof(int), driver_names, "sqlite"},
    {"path", set_string, SEC(storage, path), CONFIG_PATH_MAX, NULL, "var/svcd.db"},
    {"uri", set_string, SEC(storage, uri), 1024, NULL, "mongodb://127.0.0.1:27017/svcd"},
    {"connect", set_section, 0, 0, connect_table, "{ attempts: 3, backoff: 2s, max_backoff: 10s }"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

static const struct directive auth_table[] = {
    {"jwt_secret", set_string, SEC(auth, jwt_secret), 512, NULL, "(set JWT_SECRET instead)"},
    {"client_url", set_string, SEC(auth, client_url), 512, NULL, "http://localhost:5173"},
    {"admin_token", set_string, SEC(auth, admin_token), 512, NULL,
     "(set SVCD_ADMIN_TOKEN instead)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

static const struct directive route_table[] = {
    {"prefix", set_prefix, STR(struct config_route, prefix), NULL, "/api/legacy/"},
    {"upstream", set_upstream, STR(struct config_route, upstream), NULL, "http://127.0.0.1:5000"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

static const char *const route_required[] = {"prefix", "upstream", NULL};

static const struct list_spec routes_spec = {
    route_table,       NULL,           SEC(proxy, nroutes), sizeof(struct config_route),
    CONFIG_MAX_ROUTES, route_required,
};

static const struct directive health_table[] = {
    {"interval", set_duration, SEC(proxy, health_interval_ms), 8, NULL, "5s"},
    {"timeout", set_duration, SEC(proxy, health_timeout_ms), 8, NULL, "1s"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

static const struct directive proxy_table[] = {
    {"routes", set_list, SEC(proxy, routes), 0, &routes_spec,
     "[ { prefix: /api/legacy/, upstream: http://127.0.0.1:5000 } ]"},
    {"health", set_section, 0, 0, health_table, "{ interval: 5s, timeout: 1s }"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

static const struct directive app_table[] = {
    {"name", set_app_name, STR(struct config_app, name), NULL, "web"},
    {"cwd", set_string, STR(struct config_app, cwd), NULL, "./frontend"},
    {"command", set_string, STR(struct config_app, command), NULL,
     "\"npm run dev -- --port {port}\""},
    {"port", set_integer, offsetof(struct config_app, port), sizeof(int), &port_range, "5173"},
    {"project", set_string, STR(struct config_app, project), NULL, "demo"},
    {"owner", set_string, STR(struct config_app, owner), NULL, "alice"},
    {"restart", set_enum, offsetof(struct config_app, restart), sizeof(int), restart_names,
     "on-failure"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

static const char *const app_required[] = {"name", "command", "port", NULL};

static const struct list_spec apps_spec = {
    app_table,       NULL,         offsetof(struct svcd_config, napps), sizeof(struct config_app),
    CONFIG_MAX_APPS, app_required,
};

static const char *const listen_required[] = {"address", NULL};

static const struct list_spec listen_spec = {
    listen_table,
    "address",
    offsetof(struct svcd_config, nlisten),
    sizeof(struct config_listen),
    CONFIG_MAX_LISTEN,
    listen_required,
};

static const struct directive log_table[] = {
    {"file", set_string, SEC(log, file), CONFIG_PATH_MAX, NULL, "var/log/svcd.log"},
    {"format", set_enum, SEC(log, format), sizeof(int), format_names, "text"},
    {"level", set_enum, SEC(log, level), sizeof(int), level_names, "info"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

static const struct directive root_table[] = {
    {"env", set_enum, offsetof(struct svcd_config, env), sizeof(int), env_names, "development"},
    {"listen", set_list, offsetof(struct svcd_config, listen), 0, &listen_spec,
     "[ { address: 127.0.0.1:8080 } ]"},
    {"workers", set_workers, offsetof(struct svcd_config, workers), sizeof(int), NULL, "auto"},
    {"user", set_user, STR(struct svcd_config, user), NULL, "svcd"},
    {"run_dir", set_string, STR(struct svcd_config, run_dir), NULL, "var/run"},
    {"timeouts", set_section, offsetof(struct svcd_config, timeouts), 0, timeouts_table,
     "{ headers: 66s, keepalive: 65s, request: 60s, shutdown: 10s, worker: 30s }"},
    {"limits", set_section, offsetof(struct svcd_config, limits), 0, limits_table,
     "{ body: 1MiB, header: 16KiB, ws_message: 1MiB, connections: 10000 }"},
    {"storage", set_section, offsetof(struct svcd_config, storage), 0, storage_table,
     "{ driver: sqlite, path: var/svcd.db }"},
    {"auth", set_section, offsetof(struct svcd_config, auth), 0, auth_table,
     "{ client_url: http://localhost:5173 }"},
    {"proxy", set_section, offsetof(struct svcd_config, proxy), 0, proxy_table,
     "{ routes: [], health: { interval: 5s, timeout: 1s } }"},
    {"apps", set_list, offsetof(struct svcd_config, apps), 0, &apps_spec,
     "{ name: web, command: \"npm run dev -- --port {port}\", port: 5173 }"},
    {"log", set_section, offsetof(struct svcd_config, log), 0, log_table,
     "{ file: var/log/svcd.log, format: text, level: info }"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

static void unknown_key(struct loader *ld, const char *path, const yaml_node_t *k,
                        const struct directive *table)
{
    const char *cands[16], *name = (const char *)k->data.scalar.value;
    char shown[SHOW_LEN], in[KEY_LEN + 8], known[256];
    size_t n = 0, off = 0;
    for (const struct directive *d = table; d->name && n < 16; d++) cands[n++] = d->name;
    snprintf(in, sizeof in, "%s%s", *path ? "in " : "at the top level", path);
    const char *s = suggest(name, cands, n);
    if (s) {
        node_error(ld, k, "unknown key '%s' %s; did you mean '%s'?",
                   show(name, shown, sizeof shown), in, s);
        return;
    }
    known[0] = '\0';
    for (size_t i = 0; i < n && off < sizeof known; i++)
        off += (size_t)snprintf(known + off, sizeof known - off, "%s%s", i ? ", " : "", cands[i]);
    node_error(ld, k, "unknown key '%s' %s; remove it or use one of: %s",
               show(name, shown, sizeof shown), in, known);
}

/* Walk one mapping against its table: unknown and repeated keys are errors; every known
 * key is handed to its setter with the dotted path ("storage.connect.attempts"). */
static void parse_mapping(struct loader *ld, const char *path, yaml_node_t *n,
                          const struct directive *table, void *base)
{
    if (n->type != YAML_MAPPING_NODE) {
        if (*path)
            node_error(ld, n, "%s must be a mapping of keys (key: value), not %s", path,
                       node_kind(n));
        else
            node_error(ld, n,
                       "the configuration must be a mapping of keys (env:, listen:, workers:, "
                       "...), not %s",
                       node_kind(n));
        return;
    }
    yaml_node_pair_t *start = n->data.mapping.pairs.start, *top = n->data.mapping.pairs.top;
    if (top - start > MAX_PAIRS) {
        node_error(ld, n, "%s has %d keys; at most %d are allowed, remove the extra ones",
                   *path ? path : "the configuration", (int)(top - start), MAX_PAIRS);
        return;
    }
    for (yaml_node_pair_t *p = start; p < top; p++) {
        yaml_node_t *k = yaml_document_get_node(ld->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(ld->doc, p->value);
        if (!k || !v) continue;
        if (k->type != YAML_SCALAR_NODE) {
            node_error(ld, k, "keys must be plain names, not %s; write key: value", node_kind(k));
            continue;
        }
        const char *name = (const char *)k->data.scalar.value;
        bool repeated = false;
        for (yaml_node_pair_t *q = start; q < p && !repeated; q++) {
            yaml_node_t *kq = yaml_document_get_node(ld->doc, q->key);
            if (kq && kq->type == YAML_SCALAR_NODE &&
                !strcmp((const char *)kq->data.scalar.value, name)) {
                char shown[SHOW_LEN];
                node_error(ld, k, "key '%s' is repeated (first at line %zu); keep only one",
                           show(name, shown, sizeof shown), (size_t)kq->start_mark.line + 1);
                repeated = true;
            }
        }
        if (repeated) continue;
        const struct directive *d = table;
        while (d->name && strcmp(d->name, name)) d++;
        if (!d->name) {
            unknown_key(ld, path, k, table);
            continue;
        }
        char key[KEY_LEN];
        snprintf(key, sizeof key, "%s%s%s", path, *path ? "." : "", name);
        d->set(ld, key, v, d, base);
    }
}

/* ---------------------------------------------------------------------------------------
 * Paths
 */

/* Lexically normalise an absolute path: collapse "//", "." and "..". */
static int normalize_path(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
    const char *p = in;
    if (outlen < 2) return -1;
    out[o++] = '/';
    while (*p) {
        while (*p == '/') p++;
        const char *seg = p;
        while (*p && *p != '/') p++;
        size_t len = (size_t)(p - seg);
        if (len == 0 || (len == 1 && seg[0] == '.')) continue;
        if (len == 2 && seg[0] == '.' && seg[1] == '.') {
            while (o > 1 && out[o - 1] != '/') o--;
            if (o > 1) o--;
            continue;
        }
        if (o > 1) {
            if (o + 1 >= outlen) return -1;
            out[o++] = '/';
        }
        if (o + len >= outlen) return -1;
        memcpy(out + o, seg, len);
        o += len;
    }
    out[o] = '\0';
    return 0;
}

static int absolute_path(const char *base, const char *path, char *out, size_t outlen)
{
    char joined[2 * CONFIG_PATH_MAX + 2];
    if (path[0] == '/')
        snprintf(joined, sizeof joined, "%s", path);
    else if ((size_t)snprintf(joined, sizeof joined, "%s/%s", base, path) >= sizeof joined)
        return -1;
    return normalize_path(joined, out, outlen);
}

static void resolve_one(struct loader *ld, char *path, size_t len, const char *key)
{
    char abs[CONFIG_PATH_MAX];
    if (!path[0]) return;
    if (absolute_path(ld->cfg->dir, path, abs, sizeof abs) < 0 || strlen(abs) >= len) {
        field_error(ld, path, TAG_VALUE, NULL,
                    "%s is longer than %d characters once made absolute; use a shorter path", key,
                    CONFIG_PATH_MAX - 1);
        return;
    }
    memcpy(path, abs, strlen(abs) + 1);
}

static void resolve_paths(struct loader *ld)
{
    struct svcd_config *c = ld->cfg;
    char key[KEY_LEN];
    resolve_one(ld, c->run_dir, sizeof c->run_dir, "run_dir");
    resolve_one(ld, c->storage.path, sizeof c->storage.path, "storage.path");
    resolve_one(ld, c->log.file, sizeof c->log.file, "log.file");
    for (int i = 0; i < c->nlisten; i++) {
        snprintf(key, sizeof key, "listen[%d].tls.cert", i);
        resolve_one(ld, c->listen[i].tls_cert, sizeof c->listen[i].tls_cert, key);
        snprintf(key, sizeof key, "listen[%d].tls.key", i);
        resolve_one(ld, c->listen[i].tls_key, sizeof c->listen[i].tls_key, key);
    }
    for (int i = 0; i < c->napps; i++) {
        struct config_app *a = &c->apps[i];
        if (!a->cwd[0]) snprintf(a->cwd, sizeof a->cwd, "%s", c->dir);
        snprintf(key, sizeof key, "apps[%d].cwd", i);
        resolve_one(ld, a->cwd, sizeof a->cwd, key);
    }
}

/* ---------------------------------------------------------------------------------------
 * .env and the environment
 */

struct env_var {
    const char *name;
    void (*apply)(struct loader *ld, const struct env_var *ev, const char *value,
                  const char *where);
    size_t offset; /* string targets: field offset in svcd_config */
    size_t size;
};

static void env_origin(struct loader *ld, const void *field, const struct env_var *ev,
                       enum origin_from from, size_t line)
{
    note(ld, field, TAG_VALUE, from, line, 0, ev->name);
}

static void apply_env_string(struct loader *ld, const struct env_var *ev, const char *value,
                             const char *where)
{
    char *dst = (char *)ld->cfg + ev->offset;
    size_t len = strlen(value);
    if (len >= ev->size) {
        errorf(ld, where, "%s is %zu characters long; at most %zu are allowed, shorten it",
               ev->name, len, ev->size - 1);
        return;
    }
    memcpy(dst, value, len + 1);
}

static void apply_node_env(struct loader *ld, const struct env_var *ev, const char *value,
                           const char *where)
{
    char shown[SHOW_LEN], help[160];
    int v = enum_lookup(env_names, value);
    if (v < 0) {
        enum_help(env_names, value, help, sizeof help);
        errorf(ld, where, "NODE_ENV is '%s'; svcd knows %s, set one of them or unset NODE_ENV",
               show(value, shown, sizeof shown), help);
        return;
    }
    ld->cfg->env = (enum config_env)v;
}

static void apply_port(struct loader *ld, const struct env_var *ev, const char *value,
                       const char *where)
{
    char shown[SHOW_LEN];
    int port = parse_port(value, strlen(value));
    if (port < 0) {
        errorf(ld, where, "PORT is '%s'; it must be a port number from 1 to 65535, e.g. PORT=8080",
               show(value, shown, sizeof shown));
        return;
    }
    if (ld->cfg->nlisten < 1) return; /* "listen is empty" is reported by the checks */
    struct config_listen *l = &ld->cfg->listen[0];
    l->port = port;
    snprintf(l->address, sizeof l->address, strchr(l->host, ':') ? "[%s]:%d" : "%s:%d", l->host,
             port);
}

#define CFG(f) offsetof(struct svcd_config, f), sizeof(((struct svcd_config *)0)->f)

/* The honoured names, with the field whose origin they become. */
static const struct env_var env_vars[] = {
    {"NODE_ENV", apply_node_env, offsetof(struct svcd_config, env), 0},
    {"PORT", apply_port, offsetof(struct svcd_config, listen[0].port), 0},
    {"MONGODB_URI", apply_env_string, CFG(storage.uri)},
    {"JWT_SECRET", apply_env_string, CFG(auth.jwt_secret)},
    {"CLIENT_URL", apply_env_string, CFG(auth.client_url)},
    {"SVCD_ADMIN_TOKEN", apply_env_string, CFG(auth.admin_token)},
    {NULL, NULL, 0, 0},
};

static void apply_env(struct loader *ld, const char *name, size_t namelen, const char *value,
                      enum origin_from from, size_t line)
{
    for (const struct env_var *ev = env_vars; ev->name; ev++) {
        if (strlen(ev->name) != namelen || strncmp(ev->name, name, namelen)) continue;
        if (!*value) return; /* `JWT_SECRET=` is a placeholder, not a value */
        char where[WHERE_LEN];
        struct origin o = {NULL, TAG_VALUE, from, line, 0, ev->name};
        format_where(ld, &o, where, sizeof where);
        size_t before = ld->errs->count;
        ev->apply(ld, ev, value, where);
        if (ld->errs->count == before)
            env_origin(ld, (const char *)ld->cfg + ev->offset, ev, from, line);
        return;
    }
}

/* One `.env` line: [export ]KEY=VALUE, VALUE bare (a " #" starts a comment), 'single'
 * (literal) or "double" (\n \" \\ escapes). Lines are never echoed: they hold secrets. */
static void parse_dotenv_line(struct loader *ld, char *line, size_t lineno)
{
    char where[WHERE_LEN], value[4096];
    size_t len = strlen(line), o = 0;
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
    char *p = line;
    while (*p == ' ' || *p == '\t') p++;
    if (!*p || *p == '#') return;
    snprintf(where, sizeof where, "%s:%zu", ld->dotenv_label, lineno);
    if (!strncmp(p, "export", 6) && (p[6] == ' ' || p[6] == '\t')) {
        p += 6;
        while (*p == ' ' || *p == '\t') p++;
    }
    const char *key = p;
    if (!isalpha((unsigned char)*p) && *p != '_') {
        errorf(ld, where,
               "this line is not KEY=VALUE; write e.g. PORT=8080 (comments start with #)");
        return;
    }
    while (isalnum((unsigned char)*p) || *p == '_') p++;
    size_t keylen = (size_t)(p - key);
    while (*p == ' ' || *p == '\t') p++;
    if (*p != '=') {
        errorf(ld, where,
               "this line is not KEY=VALUE; write e.g. PORT=8080 (comments start with #)");
        return;
    }
    p++;
    while (*p == ' ' || *p == '\t') p++;
    char quote = (*p == '"' || *p == '\'') ? *p++ : 0;
    if (quote) {
        for (; *p && *p != quote; p++) {
            char c = *p;
            if (quote == '"' && c == '\\' && p[1]) {
                c = *++p;
                if (c == 'n') c = '\n';
            }
            if (o + 1 < sizeof value) value[o++] = c;
        }
        if (*p != quote) {
            errorf(ld, where,
                   "%.*s has an opening %c but no closing one; close the quote on the "
                   "same line",
                   (int)(keylen > 64 ? 64 : keylen), key, quote);
            return;
        }
        p++;
        while (*p == ' ' || *p == '\t') p++;
        if (*p && *p != '#') {
            errorf(ld, where, "%.*s has text after its closing quote; put a # before comments",
                   (int)(keylen > 64 ? 64 : keylen), key);
            return;
        }
    } else {
        for (; *p; p++) {
            if (*p == '#' && o > 0 && (value[o - 1] == ' ' || value[o - 1] == '\t')) break;
            if (o + 1 < sizeof value) value[o++] = *p;
        }
        while (o && (value[o - 1] == ' ' || value[o - 1] == '\t')) o--;
    }
    value[o] = '\0';
    apply_env(ld, key, keylen, value, FROM_DOTENV, lineno);
}

static void load_dotenv(struct loader *ld)
{
    char path[CONFIG_PATH_MAX + 8], line[4096];
    snprintf(path, sizeof path, "%s/.env", ld->cfg->dir);
    FILE *fp = fopen(path, "r");
    if (!fp) {
        if (errno != ENOENT)
            errorf(ld, ld->dotenv_label, "cannot read %s: %s; fix its permissions or remove it",
                   path, strerror(errno));
        return;
    }
    size_t lineno = 0;
    while (fgets(line, sizeof line, fp)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            int c;
            while ((c = fgetc(fp)) != EOF && c != '\n') continue;
            char where[WHERE_LEN];
            snprintf(where, sizeof where, "%s:%zu", ld->dotenv_label, lineno);
            errorf(ld, where, "line is longer than %zu characters; shorten the value",
                   sizeof line - 2);
            continue;
        }
        parse_dotenv_line(ld, line, lineno);
    }
    fclose(fp);
}

static void load_environ(struct loader *ld, char *const *envp)
{
    for (; envp && *envp; envp++) {
        const char *eq = strchr(*envp, '=');
        if (eq) apply_env(ld, *envp, (size_t)(eq - *envp), eq + 1, FROM_ENV, 0);
    }
}

/* ---------------------------------------------------------------------------------------
 * Whole-picture checks (after the environment)
 */

static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0; /* never prompt on the terminal for an encrypted key */
}

static X509 *read_cert(struct loader *ld, const struct config_listen *l, const char *key)
{
    FILE *fp = fopen(l->tls_cert, "r");
    if (!fp) {
        field_error(ld, l->tls_cert, TAG_VALUE, NULL,
                    "%s: cannot read %s: %s; check the path (relative paths start at %s) and "
                    "that svcd may read it",
                    key, l->tls_cert, strerror(errno), ld->cfg->dir);
        return NULL;
    }
    X509 *x = PEM_read_X509(fp, NULL, no_password, NULL);
    fclose(fp);
    ERR_clear_error();
    if (!x) {
        field_error(ld, l->tls_cert, TAG_VALUE, NULL,
                    "%s: %s is not a PEM certificate (-----BEGIN CERTIFICATE-----); convert it "
                    "with openssl x509 -outform PEM",
                    key, l->tls_cert);
        return NULL;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
        field_error(ld, l->tls_cert, TAG_VALUE, NULL,
                    "%s: the certificate in %s has expired; renew it", key, l->tls_cert);
    return x;
}

static EVP_PKEY *read_key(struct loader *ld, const struct config_listen *l, const char *key)
{
    FILE *fp = fopen(l->tls_key, "r");
    if (!fp) {
        field_error(ld, l->tls_key, TAG_VALUE, NULL,
                    "%s: cannot read %s: %s; check the path (relative paths start at %s) and "
                    "that svcd may read it",
                    key, l->tls_key, strerror(errno), ld->cfg->dir);
        return NULL;
    }
    EVP_PKEY *k = PEM_read_PrivateKey(fp, NULL, no_password, NULL);
    fclose(fp);
    ERR_clear_error();
    if (!k)
        field_error(ld, l->tls_key, TAG_VALUE, NULL,
                    "%s: %s is not an unencrypted PEM private key; decrypt or convert it with "
                    "openssl pkey -in KEY -out KEY.pem",
                    key, l->tls_key);
    return k;
}

static void check_tls(struct loader *ld, const struct config_listen *l, int i)
{
    char key[KEY_LEN];
    if (!l->tls_cert[0] || !l->tls_key[0]) return; /* reported when parsed */
    snprintf(key, sizeof key, "listen[%d].tls.cert", i);
    X509 *x = read_cert(ld, l, key);
    snprintf(key, sizeof key, "listen[%d].tls.key", i);
    EVP_PKEY *k = read_key(ld, l, key);
    if (x && k && X509_check_private_key(x, k) != 1)
        field_error(ld, l->tls_key, TAG_VALUE, NULL,
                    "%s: %s does not match the certificate %s; use the key the certificate was "
                    "issued for (compare openssl x509 -noout -pubkey and openssl pkey -pubout)",
                    key, l->tls_key, l->tls_cert);
    ERR_clear_error();
    X509_free(x);
    EVP_PKEY_free(k);
}

static bool is_wildcard(const char *host)
{
    return !strcmp(host, "0.0.0.0") || !strcmp(host, "::");
}

static void check_listen(struct loader *ld)
{
    struct svcd_config *c = ld->cfg;
    if (c->nlisten == 0) {
        field_error(ld, &c->nlisten, TAG_NODE, NULL,
                    "listen has no entries; add one, e.g. listen: [ { address: 127.0.0.1:8080 } ]");
        return;
    }
    for (int j = 0; j < c->nlisten; j++) {
        const struct config_listen *b = &c->listen[j];
        for (int i = 0; i < j && b->port; i++) {
            const struct config_listen *a = &c->listen[i];
            if (a->port != b->port) continue;
            bool same = !strcmp(a->host, b->host);
            if (!same && !is_wildcard(a->host) && !is_wildcard(b->host)) continue;
            char from[WHERE_LEN + 32] = "";
            if (!from_yaml(ld, &a->port)) {
                char w[WHERE_LEN];
                snprintf(from, sizeof from, " (its port comes from %s)",
                         where_of(ld, &a->port, TAG_VALUE, NULL, w, sizeof w));
            }
            field_error(ld, b, TAG_NODE, NULL,
                        "listen[%d] (%s) %s listen[%d] (%s)%s; give each listener its own port "
                        "or remove one",
                        j, b->address, same ? "duplicates" : "overlaps", i, a->address, from);
            break;
        }
        if (b->tls) check_tls(ld, b, j);
    }
}

static void check_timeouts(struct loader *ld)
{
    const struct svcd_config *c = ld->cfg;
    char h[32], k[32], r[32];
    if (c->timeouts.headers_ms > c->timeouts.keepalive_ms &&
        c->timeouts.keepalive_ms > c->timeouts.request_ms)
        return;
    format_ms(c->timeouts.headers_ms, h, sizeof h);
    format_ms(c->timeouts.keepalive_ms, k, sizeof k);
    format_ms(c->timeouts.request_ms, r, sizeof r);
    field_error(ld, &c->timeouts, TAG_NODE, NULL,
                "timeouts must satisfy headers > keepalive > request, but headers is %s, keepalive "
                "%s and request %s; e.g. headers: 66s, keepalive: 65s, request: 60s",
                h, k, r);
}

static void check_storage(struct loader *ld)
{
    const struct svcd_config *c = ld->cfg;
    const char *uri = c->storage.uri;
    char shown[256], d1[32], d2[32];
    if (c->storage.driver == STORE_MONGODB) {
        if (!uri[0]) {
            field_error(ld, &c->storage.driver, TAG_VALUE, NULL,
                        "storage.driver is mongodb but no URI is set; set MONGODB_URI (or "
                        "storage.uri), e.g. mongodb://127.0.0.1:27017/svcd");
        } else {
            const char *rest = !strncmp(uri, "mongodb://", 10)       ? uri + 10
                               : !strncmp(uri, "mongodb+srv://", 14) ? uri + 14
                                                                     : NULL;
            config_redact_uri(uri, shown, sizeof shown);
            if (!rest || !*rest || *rest == '/')
                field_error(ld, uri, TAG_VALUE, "MONGODB_URI",
                            "the MongoDB URI '%.120s' must start with mongodb:// or "
                            "mongodb+srv:// and name a host, e.g. mongodb://127.0.0.1:27017/svcd",
                            shown);
        }
    } else if (!c->storage.path[0]) {
        field_error(ld, c->storage.path, TAG_VALUE, NULL,
                    "storage.path is empty; the sqlite driver needs a database file, e.g. "
                    "path: var/svcd.db");
    }
    if (c->storage.connect_backoff_ms > c->storage.connect_max_backoff_ms) {
        format_ms(c->storage.connect_backoff_ms, d1, sizeof d1);
        format_ms(c->storage.connect_max_backoff_ms, d2, sizeof d2);
        field_error(ld, &c->storage.connect_backoff_ms, TAG_VALUE, NULL,
                    "storage.connect.backoff (%s) is larger than max_backoff (%s); make backoff "
                    "the smaller one, e.g. backoff: 2s, max_backoff: 10s",
                    d1, d2);
    }
}

/* An origin: http(s)://HOST[:PORT] (a single trailing '/' is dropped, as browsers send
 * Origin without it). */
static bool valid_origin(char *url)
{
    const char *h = !strncmp(url, "http://", 7)    ? url + 7
                    : !strncmp(url, "https://", 8) ? url + 8
                                                   : NULL;
    if (!h || !*h) return false;
    size_t len = strlen(url);
    if (url[len - 1] == '/' && url + len - 1 > h) url[--len] = '\0';
    const char *colon = NULL;
    const char *p = h;
    if (*p == '[') {
        p = strchr(p, ']');
        if (!p) return false;
        p++;
    } else {
        while (*p && *p != ':') {
            if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' && *p != '_') return false;
            p++;
        }
        if (p == h) return false;
    }
    if (*p == ':')
        colon = p;
    else if (*p)
        return false;
    return !colon || parse_port(colon + 1, strlen(colon + 1)) > 0;
}

static void check_auth(struct loader *ld)
{
    struct svcd_config *c = ld->cfg;
    bool prod = c->env == ENV_PRODUCTION;
    size_t jlen = strlen(c->auth.jwt_secret), alen = strlen(c->auth.admin_token);
    if (c->auth.client_url[0] && !valid_origin(c->auth.client_url))
        field_error(ld, c->auth.client_url, TAG_VALUE, "CLIENT_URL",
                    "CLIENT_URL must be the web client's origin: http:// or https://, a host and "
                    "an optional port, no path, e.g. http://localhost:5173");
    if (!prod) return;
    if (!jlen)
        field_error(ld, c->auth.jwt_secret, TAG_VALUE, "JWT_SECRET",
                    "production needs a JWT secret of at least %d characters; set JWT_SECRET in "
                    "the environment or .env, e.g. from `openssl rand -hex 32`",
                    MIN_JWT_SECRET);
    else if (jlen < MIN_JWT_SECRET)
        field_error(ld, c->auth.jwt_secret, TAG_VALUE, "JWT_SECRET",
                    "JWT_SECRET is %zu characters; production needs at least %d, generate one "
                    "with `openssl rand -hex 32`",
                    jlen, MIN_JWT_SECRET);
    if (!c->auth.client_url[0])
        field_error(ld, c->auth.client_url, TAG_VALUE, "CLIENT_URL",
                    "production needs CLIENT_URL, the web client's origin used for CORS and "
                    "Socket.IO origin checks; set e.g. CLIENT_URL=https://app.example.com");
    if (alen && alen < MIN_ADMIN_TOKEN)
        field_error(ld, c->auth.admin_token, TAG_VALUE, "SVCD_ADMIN_TOKEN",
                    "the admin token is %zu characters; production needs at least %d, generate "
                    "one with `openssl rand -hex 24`",
                    alen, MIN_ADMIN_TOKEN);
}

static void check_proxy(struct loader *ld)
{
    const struct svcd_config *c = ld->cfg;
    char d1[32], d2[32];
    for (int j = 0; j < c->proxy.nroutes; j++) {
        const struct config_route *b = &c->proxy.routes[j];
        for (int i = 0; i < j && b->prefix[0]; i++) {
            if (strcmp(c->proxy.routes[i].prefix, b->prefix)) continue;
            field_error(ld, b->prefix, TAG_VALUE, NULL,
                        "proxy.routes[%d] repeats the prefix of proxy.routes[%d]; each prefix "
                        "may appear once, merge or remove one",
                        j, i);
            break;
        }
    }
    if (c->proxy.health_timeout_ms >= c->proxy.health_interval_ms) {
        format_ms(c->proxy.health_timeout_ms, d1, sizeof d1);
        format_ms(c->proxy.health_interval_ms, d2, sizeof d2);
        field_error(ld, &c->proxy.health_timeout_ms, TAG_VALUE, NULL,
                    "proxy.health.timeout (%s) must be shorter than interval (%s), e.g. "
                    "interval: 5s, timeout: 1s",
                    d1, d2);
    }
}

static void check_apps(struct loader *ld)
{
    const struct svcd_config *c = ld->cfg;
    struct stat st;
    for (int j = 0; j < c->napps; j++) {
        const struct config_app *b = &c->apps[j];
        for (int i = 0; i < j && b->name[0]; i++) {
            if (strcmp(c->apps[i].name, b->name)) continue;
            field_error(ld, b->name, TAG_VALUE, NULL,
                        "apps[%d] has the same name as apps[%d]; give each app its own name", j, i);
            break;
        }
        for (int i = 0; i < j && b->port; i++) {
            if (c->apps[i].port != b->port) continue;
            field_error(ld, &b->port, TAG_VALUE, NULL,
                        "apps[%d] uses port %d like apps[%d]; give each app its own port", j,
                        b->port, i);
            break;
        }
        for (int i = 0; i < c->nlisten && b->port; i++) {
            if (c->listen[i].port != b->port) continue;
            field_error(ld, &b->port, TAG_VALUE, NULL,
                        "apps[%d] uses port %d, which listen[%d] binds; choose another port for "
                        "the app",
                        j, b->port, i);
            break;
        }
        if (b->cwd[0] && (stat(b->cwd, &st) < 0 || !S_ISDIR(st.st_mode)))
            field_error(ld, b->cwd, TAG_VALUE, NULL,
                        "apps[%d].cwd %s is not a directory; create it or fix cwd (relative "
                        "paths start at %s)",
                        j, b->cwd, c->dir);
    }
}

static void check_misc(struct loader *ld)
{
    const struct svcd_config *c = ld->cfg;
    if (!c->run_dir[0])
        field_error(ld, c->run_dir, TAG_VALUE, NULL,
                    "run_dir is empty; svcd needs a directory for its pidfile and control socket, "
                    "e.g. run_dir: var/run");
}

static void (*const checks[])(struct loader *) = {
    resolve_paths, check_misc, check_listen, check_timeouts,
    check_storage, check_auth, check_proxy,  check_apps,
};

/* ---------------------------------------------------------------------------------------
 * Public API
 */

void config_defaults(struct svcd_config *out)
{
    memset(out, 0, sizeof *out);
    out->env = ENV_DEVELOPMENT;
    snprintf(out->listen[0].address, sizeof out->listen[0].address, "127.0.0.1:8080");
    snprintf(out->listen[0].host, sizeof out->listen[0].host, "127.0.0.1");
    out->listen[0].port = 8080;
    out->nlisten = 1;
    out->workers = online_cpus();
    snprintf(out->run_dir, sizeof out->run_dir, "var/run");
    out->timeouts.headers_ms = 66000;
    out->timeouts.keepalive_ms = 65000;
    out->timeouts.request_ms = 60000;
    out->timeouts.shutdown_ms = 10000;
    out->timeouts.worker_ms = 30000;
    out->limits.body = 1 << 20;
    out->limits.header = 16 << 10;
    out->limits.ws_message = 1 << 20;
    out->limits.connections = 10000;
    out->storage.driver = STORE_SQLITE;
    snprintf(out->storage.path, sizeof out->storage.path, "var/svcd.db");
    out->storage.connect_attempts = 3;
    out->storage.connect_backoff_ms = 2000;
    out->storage.connect_max_backoff_ms = 10000;
    out->proxy.health_interval_ms = 5000;
    out->proxy.health_timeout_ms = 1000;
    snprintf(out->log.file, sizeof out->log.file, "var/log/svcd.log");
    out->log.format = LOG_FORMAT_TEXT;
    out->log.level = LOG_INFO;
}

/* cfg->path (absolute), cfg->dir, and the label of the .env beside the file as given. */
static int locate(struct loader *ld, const char *path)
{
    struct svcd_config *c = ld->cfg;
    char cwd[CONFIG_PATH_MAX];
    if (path[0] != '/' && !getcwd(cwd, sizeof cwd)) {
        errorf(ld, path, "cannot find the current directory: %s; pass an absolute -c FILE",
               strerror(errno));
        return -1;
    }
    if (absolute_path(path[0] == '/' ? "/" : cwd, path, c->path, sizeof c->path) < 0) {
        errorf(ld, path, "the path is longer than %d characters; use a shorter one",
               CONFIG_PATH_MAX - 1);
        return -1;
    }
    snprintf(c->dir, sizeof c->dir, "%s", c->path);
    char *slash = strrchr(c->dir, '/');
    if (slash == c->dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    const char *given = strrchr(path, '/');
    if (given)
        snprintf(ld->dotenv_label, sizeof ld->dotenv_label, "%.*s/.env", (int)(given - path), path);
    else
        snprintf(ld->dotenv_label, sizeof ld->dotenv_label, ".env");
    return 0;
}

static void yaml_syntax_error(struct loader *ld, const yaml_parser_t *p)
{
    char where[WHERE_LEN];
    const char *problem = p->problem ? p->problem : "unreadable YAML";
    const char *hint = strstr(problem, "cannot start any token")
                           ? "; tabs are not allowed for indentation and values starting with "
                             "@ or ` must be quoted"
                           : "; check the indentation, quoting and the space after ':'";
    if (p->error == YAML_READER_ERROR) {
        snprintf(where, sizeof where, "%s", ld->file);
        errorf(ld, where, "YAML syntax error: %s at byte %zu; save the file as UTF-8", problem,
               p->problem_offset);
        return;
    }
    snprintf(where, sizeof where, "%s:%zu:%zu", ld->file, (size_t)p->problem_mark.line + 1,
             (size_t)p->problem_mark.column + 1);
    if (p->context)
        errorf(ld, where, "YAML syntax error: %s %s (line %zu)%s", problem, p->context,
               (size_t)p->context_mark.line + 1, hint);
    else
        errorf(ld, where, "YAML syntax error: %s%s", problem, hint);
}

/* Parse the YAML into the config. Returns -1 when the file cannot be read or parsed at
 * all (nothing more can be said about it), 0 otherwise. */
static int load_yaml(struct loader *ld, FILE *fp)
{
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    if (!yaml_parser_initialize(&parser)) {
        errorf(ld, ld->file, "out of memory while reading the configuration");
        return -1;
    }
    yaml_parser_set_input_file(&parser, fp);
    if (!yaml_parser_load(&parser, &doc)) {
        yaml_syntax_error(ld, &parser);
        yaml_parser_delete(&parser);
        return -1;
    }
    int rc = 0;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && !is_null(root)) {
        ld->doc = &doc;
        parse_mapping(ld, "", root, root_table, ld->cfg);
        ld->doc = NULL;
    }
    if (!yaml_parser_load(&parser, &extra)) {
        yaml_syntax_error(ld, &parser);
        rc = -1;
    } else {
        yaml_node_t *more = yaml_document_get_root_node(&extra);
        if (more)
            node_error(ld, more,
                       "a second YAML document starts here; svcd reads one, remove the '---' "
                       "and what follows or merge it");
        yaml_document_delete(&extra);
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

int config_load(const char *path, char *const *environ_override, struct svcd_config *out,
                struct config_errors *errs)
{
    struct loader ld = {.file = path, .cfg = out, .errs = errs};
    size_t before = errs->count;
    struct stat st;
    config_defaults(out);
    if (!path || !*path) {
        ld.file = "(none)";
        errorf(&ld, ld.file, "no configuration file given; pass -c FILE");
        return -1;
    }
    if (locate(&ld, path) < 0) return -1;
    FILE *fp = fopen(path, "r");
    if (!fp) {
        errorf(&ld, path, "cannot open configuration file: %s; create it or pass -c FILE",
               strerror(errno));
        return -1;
    }
    if (fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(fp);
        errorf(&ld, path,
               "cannot open configuration file: it is a directory; pass the YAML "
               "file itself with -c FILE");
        return -1;
    }
    int rc = load_yaml(&ld, fp);
    fclose(fp);
    if (rc == 0) {
        load_dotenv(&ld);
        load_environ(&ld, environ_override ? environ_override : environ);
        for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) checks[i](&ld);
    }
    free(ld.origins);
    return (errs->count > before || ld.oom) ? -1 : 0;
}

void config_errors_print(const struct config_errors *errs, FILE *fp)
{
    for (size_t i = 0; i < errs->count; i++)
        fprintf(fp, "svcd: %s: %s\n", errs->items[i].where, errs->items[i].message);
    if (errs->count) fprintf(fp, "svcd: %zu configuration error(s)\n", errs->count);
}

void config_errors_free(struct config_errors *errs)
{
    free(errs->items);
    errs->items = NULL;
    errs->count = errs->cap = 0;
}

/* Bounded appends for config_redact_uri: truncation may drop text, never reveal it. */
struct sbuf {
    char *p;
    size_t cap, len;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
    if (b->len + 1 >= b->cap) return;
    size_t room = b->cap - 1 - b->len;
    if (n > room) n = room;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static bool sensitive(const char *s, size_t n)
{
    static const char *const words[] = {"pass", "secret", "token", "credential", "key"};
    for (size_t w = 0; w < sizeof words / sizeof words[0]; w++) {
        size_t wl = strlen(words[w]);
        for (size_t i = 0; i + wl <= n; i++)
            if (!strncasecmp(s + i, words[w], wl)) return true;
    }
    return false;
}

void config_redact_uri(const char *uri, char *out, size_t outlen)
{
    if (!out || !outlen) return;
    struct sbuf b = {out, outlen, 0};
    out[0] = '\0';
    if (!uri) return;
    const char *p = uri, *scheme = strstr(uri, "://");
    if (scheme) {
        sb_put(&b, uri, (size_t)(scheme + 3 - uri));
        p = scheme + 3;
    }
    const char *at = strrchr(p, '@'); /* the last '@': passwords may hold unescaped '@' */
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        sb_put(&b, p, (size_t)((colon ? colon : at) - p));
        sb_put(&b, colon ? ":***@" : "@", colon ? 5 : 1);
        p = at + 1;
    }
    const char *q = strchr(p, '?');
    if (!q) {
        sb_put(&b, p, strlen(p));
        return;
    }
    sb_put(&b, p, (size_t)(q + 1 - p));
    for (p = q + 1; *p;) {
        size_t n = strcspn(p, "&");
        const char *eq = memchr(p, '=', n);
        if (eq && sensitive(p, n)) {
            sb_put(&b, p, (size_t)(eq + 1 - p));
            sb_put(&b, "***", 3);
        } else {
            sb_put(&b, p, n);
        }
        p += n;
        if (*p == '&') sb_put(&b, p++, 1);
    }
}
