/*
 * units.h — durations and sizes as people write them in config files.
 *
 * "66s", "500ms", "2m", "1h" and "1MiB", "16KiB", "10k" parse here so that every
 * module and the validator agree on one grammar and one error wording.
 */
#ifndef SVCD_UNITS_H
#define SVCD_UNITS_H

#include <stdint.h>

/* Parse a duration: integer or decimal number followed by ms|s|m|h (a bare number
 * means seconds). Returns 0 and sets *ms, or -1 when malformed or negative. */
int units_parse_duration(const char *text, uint64_t *ms);

/* Parse a size: number followed by B|K|KB|KiB|M|MB|MiB|G|GB|GiB (case-insensitive;
 * K/KB/KiB all mean 1024). A bare number means bytes. Returns 0 or -1. */
int units_parse_size(const char *text, uint64_t *bytes);

#endif
