/*
 * fuzz_config.c — libFuzzer target: arbitrary bytes as svcd.yaml (and as .env).
 *
 * The loader must report errors for any input and never crash, leak or read out
 * of bounds: the first half of the input is written as the YAML file, the second
 * half as the .env file beside it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/config.h"

static char dir[64];

static void write_file(const char *path, const uint8_t *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(data, 1, len, f);
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        snprintf(dir, sizeof(dir), "/tmp/svcd-fuzz-config-XXXXXX");
        if (!mkdtemp(dir)) abort();
    }
    char yaml[128], env[128];
    snprintf(yaml, sizeof(yaml), "%s/svcd.yaml", dir);
    snprintf(env, sizeof(env), "%s/.env", dir);
    size_t half = size / 2;
    write_file(yaml, data, half);
    write_file(env, data + half, size - half);
    static char *no_env[] = {NULL};
    struct svcd_config *cfg = calloc(1, sizeof(*cfg));
    struct config_errors errs = {0};
    (void)config_load(yaml, no_env, cfg, &errs);
    config_errors_free(&errs);
    free(cfg);
    return 0;
}
