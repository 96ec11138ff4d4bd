/*
 * status.c — `svc status`: the master's JSON rendered as a PM2-like table.
 *
 * The master answers with one JSON document; `--json` re-emits the documented
 * shape ({"master":{pid,version,uptime},"children":[...]}), the default prints a
 * table a person can read at a glance.
 */
#include "ctl.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static void human_uptime(double s, char *out, size_t len)
{
    if (s < 60)
        snprintf(out, len, "%.0fs", s);
    else if (s < 3600)
        snprintf(out, len, "%.0fm", s / 60);
    else if (s < 86400)
        snprintf(out, len, "%.1fh", s / 3600);
    else
        snprintf(out, len, "%.1fd", s / 86400);
}

static void human_bytes(double b, char *out, size_t len)
{
    if (b < 1024 * 1024)
        snprintf(out, len, "%.0fKB", b / 1024);
    else
        snprintf(out, len, "%.1fMB", b / (1024 * 1024));
}

/* A string member, or `dflt` when it is missing or not a string (never NULL to printf). */
static const char *str_of(json_t *obj, const char *key, const char *dflt)
{
    const char *v = json_string_value(json_object_get(obj, key));
    return v ? v : dflt;
}

int status_render(const char *text, int as_json)
{
    json_error_t err;
    json_t *doc = json_loads(text, 0, &err);
    if (!doc) {
        fprintf(stderr, "svc: unreadable reply from svcd: %s\n", err.text);
        return 1;
    }
    json_t *master = json_object_get(doc, "master");
    json_t *children = json_object_get(doc, "children");
    if (!json_is_object(master) || !json_is_array(children)) {
        fprintf(stderr, "svc: unexpected reply from svcd\n");
        json_decref(doc);
        return 1;
    }
    if (as_json) {
        json_t *out = json_pack("{s:O,s:O}", "master", master, "children", children);
        char *s = json_dumps(out, JSON_COMPACT | JSON_REAL_PRECISION(6));
        puts(s ? s : "{}");
        free(s);
        json_decref(out);
        json_decref(doc);
        return 0;
    }
    char up[32];
    human_uptime(json_number_value(json_object_get(master, "uptime")), up, sizeof(up));
    printf("svcd %s  master pid %lld  uptime %s  generation %lld  %s\n",
           str_of(master, "version", "?"), json_integer_value(json_object_get(master, "pid")), up,
           json_integer_value(json_object_get(master, "generation")), str_of(master, "state", "?"));
    printf("%-12s %-4s %-4s %-8s %-9s %-7s %-8s %-9s %-6s %-6s %s\n", "role", "id", "gen", "pid",
           "state", "uptime", "restarts", "mem", "cpu", "conns", "last exit");
    size_t i;
    json_t *c;
    json_array_foreach(children, i, c)
    {
        char cu[32], mem[32];
        human_uptime(json_number_value(json_object_get(c, "uptime")), cu, sizeof(cu));
        human_bytes((double)json_integer_value(json_object_get(c, "rss")), mem, sizeof(mem));
        const char *last = str_of(c, "last_exit", "");
        /* managed apps show their name: "app:web" */
        char role[64];
        const char *name = json_string_value(json_object_get(c, "name"));
        snprintf(role, sizeof(role), "%s%s%.40s", str_of(c, "role", "?"), name ? ":" : "",
                 name ? name : "");
        printf("%-12s %-4lld %-4lld %-8lld %-9s %-7s %-8lld %-9s %-5.1f%% %-6lld %s\n", role,
               json_integer_value(json_object_get(c, "index")),
               json_integer_value(json_object_get(c, "generation")),
               json_integer_value(json_object_get(c, "pid")), str_of(c, "state", "?"), cu,
               json_integer_value(json_object_get(c, "restarts")), mem,
               json_number_value(json_object_get(c, "cpu")),
               json_integer_value(json_object_get(c, "connections")), *last ? last : "-");
    }
    json_decref(doc);
    return 0;
}
