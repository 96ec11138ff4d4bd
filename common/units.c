/*
 * units.c — the one grammar for durations ("500ms", "66s", "1.5m", "1h") and sizes
 * ("512", "16KiB", "10k", "1.5MiB").
 *
 * Why a file of its own: the config validator, the log messages and any module that
 * reads a limit must agree on what "1M" means, and a single parser makes the error
 * wording ("write a number with a unit") the same everywhere. The grammar is
 *
 *     value := DIGITS [ "." DIGITS ] [ SPACES ] [ UNIT ]
 *
 * with no sign (negative values are malformed). Fractions are exact decimal arithmetic,
 * truncated to whole milliseconds / bytes, so "1.5s" is 1500 ms without floating point.
 * Overflow of 64 bits is malformed, never a silent wrap.
 */
#include "units.h"

#include <ctype.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

struct unit {
    const char *name; /* compared case-insensitively */
    uint64_t factor;
};

/* A bare number is the first entry's unit: seconds for durations, bytes for sizes. */
static const struct unit duration_units[] = {
    {"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 3600 * 1000}, {NULL, 0},
};

static const struct unit size_units[] = {
    {"", 1},
    {"b", 1},
    {"k", 1ULL << 10},
    {"kb", 1ULL << 10},
    {"kib", 1ULL << 10},
    {"m", 1ULL << 20},
    {"mb", 1ULL << 20},
    {"mib", 1ULL << 20},
    {"g", 1ULL << 30},
    {"gb", 1ULL << 30},
    {"gib", 1ULL << 30},
    {NULL, 0},
};

#define MAX_FRACTION_DIGITS 9 /* 10^9 * 2^30 still fits in 64 bits */

/*
 * Parse `text` against one unit table. The integer part is accumulated with an
 * overflow check; at most nine fraction digits are kept (more are accepted and
 * ignored: they cannot change a millisecond or byte count by a whole unit).
 */
static int parse_with_units(const char *text, const struct unit *units, uint64_t *out)
{
    if (!text || !out) return -1;
    const char *p = text;
    while (isspace((unsigned char)*p)) p++;
    if (!isdigit((unsigned char)*p)) return -1; /* also rejects "-1", "+1", ".5", "" */

    uint64_t whole = 0;
    for (; isdigit((unsigned char)*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (whole > (UINT64_MAX - d) / 10) return -1;
        whole = whole * 10 + d;
    }

    uint64_t frac = 0, scale = 1;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p)) return -1; /* "1." */
        for (int n = 0; isdigit((unsigned char)*p); p++, n++) {
            if (n >= MAX_FRACTION_DIGITS) continue;
            frac = frac * 10 + (uint64_t)(*p - '0');
            scale *= 10;
        }
    }

    while (*p == ' ' || *p == '\t') p++;
    const char *unit = p;
    size_t ulen = 0;
    while (isalpha((unsigned char)unit[ulen])) ulen++;
    const char *rest = unit + ulen;
    while (isspace((unsigned char)*rest)) rest++;
    if (*rest) return -1;

    for (const struct unit *u = units; u->name; u++) {
        if (strlen(u->name) != ulen || strncasecmp(u->name, unit, ulen) != 0) continue;
        if (whole > UINT64_MAX / u->factor) return -1;
        uint64_t value = whole * u->factor;
        uint64_t part = frac * u->factor / scale;
        if (value > UINT64_MAX - part) return -1;
        *out = value + part;
        return 0;
    }
    return -1;
}

int units_parse_duration(const char *text, uint64_t *ms)
{
    return parse_with_units(text, duration_units, ms);
}

int units_parse_size(const char *text, uint64_t *bytes)
{
    return parse_with_units(text, size_units, bytes);
}
