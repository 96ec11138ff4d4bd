/* test_sio_chat.c — unit tests of the chat's building blocks that need no process:
 * the string-keyed map (coordinator/chat_map.c) and the NUL-separated frame fields
 * (coordinator/chat_proto.c). Compiled in here directly: unit tests link common/ only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../coordinator/chat_map.c"
#include "../../coordinator/chat_proto.c"

static void test_map_basic(void **state)
{
    (void)state;
    struct chat_map m;
    chat_map_init(&m);
    assert_null(chat_map_get(&m, "a"));
    int failed;
    int v1 = 1, v2 = 2;
    assert_null(chat_map_put(&m, "alice", &v1, &failed));
    assert_false(failed);
    assert_ptr_equal(chat_map_get(&m, "alice"), &v1);
    assert_ptr_equal(chat_map_put(&m, "alice", &v2, &failed), &v1); /* replace */
    assert_ptr_equal(chat_map_get(&m, "alice"), &v2);
    assert_int_equal(m.n, 1);
    assert_ptr_equal(chat_map_del(&m, "alice"), &v2);
    assert_null(chat_map_del(&m, "alice"));
    assert_int_equal(m.n, 0);
    chat_map_free(&m);
}

static void test_map_many_and_iterate(void **state)
{
    (void)state;
    struct chat_map m;
    chat_map_init(&m);
    static int vals[5000];
    char key[32];
    for (int i = 0; i < 5000; i++) {
        vals[i] = i;
        snprintf(key, sizeof(key), "user-%d", i);
        chat_map_put(&m, key, &vals[i], NULL);
    }
    assert_int_equal(m.n, 5000);
    for (int i = 0; i < 5000; i += 7) {
        snprintf(key, sizeof(key), "user-%d", i);
        assert_int_equal(*(int *)chat_map_get(&m, key), i);
    }
    for (int i = 0; i < 5000; i += 2) {
        snprintf(key, sizeof(key), "user-%d", i);
        assert_non_null(chat_map_del(&m, key));
    }
    size_t it, seen = 0;
    long sum = 0;
    for (struct chat_map_ent *e = chat_map_first(&m, &it); e; e = chat_map_next(&m, e, &it)) {
        seen++;
        sum += *(int *)e->value;
        assert_true(*(int *)e->value % 2 == 1);
    }
    assert_int_equal(seen, 2500);
    assert_int_equal(sum, 2500L * 2500L); /* 1 + 3 + ... + 4999 */
    chat_map_free(&m);
}

static void test_fields(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    chat_fields_build(&b, 3, CF("lobby"), CF("message"), CFN("{\"a\":\"x\\u0000y\"}", 15));
    struct chat_fields f = {0};
    assert_int_equal(chat_fields_split(b.data, b.len, 3, &f), 0);
    assert_string_equal(f.f[0], "lobby");
    assert_string_equal(f.f[1], "message");
    assert_int_equal(f.len[2], 15);
    /* the last field may contain NULs and runs to the end */
    buf_reset(&b);
    chat_fields_build(&b, 2, CF("slot"), CFN("a\0b", 3));
    assert_int_equal(chat_fields_split(b.data, b.len, 2, &f), 0);
    assert_int_equal(f.len[1], 3);
    assert_memory_equal(f.f[1], "a\0b", 3);
    /* too few fields */
    assert_int_equal(chat_fields_split("only", 4, 2, &f), -1);
    assert_int_equal(chat_fields_split("a", 1, 0, &f), -1);
    assert_int_equal(chat_fields_split("a", 1, CHAT_MAX_FIELDS + 1, &f), -1);
    /* empty fields */
    buf_reset(&b);
    chat_fields_build(&b, 3, CF(""), CF(""), CF(""));
    assert_int_equal(chat_fields_split(b.data, b.len, 3, &f), 0);
    assert_int_equal(f.len[0] + f.len[1] + f.len[2], 0);
    buf_free(&b);
}

/* The binary-attachment field of a relayed event: built and parsed back, and every
 * malformed shape refused without reading past the field (it is a frame's last,
 * not NUL-terminated: the bytes after it are deliberately digits here). */
static void test_binary_field(void **state)
{
    (void)state;
    const char *parts[2] = {"abc", "\0\1"};
    size_t plen[2] = {3, 2};
    struct buf b;
    buf_init(&b);
    chat_binary_build(&b, "[\"x\"]", 5, 2, parts, plen);
    assert_int_equal(b.len, strlen("B2,3,2;") + 5 + 5);
    assert_memory_equal(b.data, "B2,3,2;[\"x\"]abc\0\1", b.len);
    struct chat_binary cb;
    assert_int_equal(chat_binary_parse(b.data, b.len, &cb), 1);
    assert_int_equal(cb.n, 2);
    assert_int_equal(cb.json_len, 5);
    assert_memory_equal(cb.json, "[\"x\"]", 5);
    assert_int_equal(cb.part_len[0], 3);
    assert_memory_equal(cb.part[0], "abc", 3);
    assert_int_equal(cb.part_len[1], 2);
    assert_ptr_equal(cb.part[1], b.data + b.len - 2);
    buf_free(&b);

    assert_int_equal(chat_binary_parse("{\"a\":1}", 7, &cb), 0); /* plain JSON */
    assert_int_equal(chat_binary_parse("", 0, &cb), 0);
    /* regression: "B1" then digits beyond the field's end. strtol() used to read
     * them; the field must be judged on its own 2 bytes. */
    assert_int_equal(chat_binary_parse("B1,5;xxxxx", 2, &cb), -1);
    assert_int_equal(chat_binary_parse("B12345", 2, &cb), -1);
    assert_int_equal(chat_binary_parse("B1,3;ab", 6, &cb), -1); /* ",3" then ';' cut */
    static const char *const bad[] = {
        "B",     "B0;",     "B17,1;x", "B1;",       "B1,;",
        "B1,x;", "B1, 1;a", "B1,+1;a", "B1,-1;a",   "B-1,1;a",
        "B1,1",  "B1,5;ab", "B2,1;ab", "B1,1,1;ab", "B1,99999999999999999999;x",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(chat_binary_parse(bad[i], strlen(bad[i]), &cb), -1);
    /* zero-length attachments and an empty JSON part are well-formed */
    assert_int_equal(chat_binary_parse("B1,0;", 5, &cb), 1);
    assert_int_equal(cb.json_len, 0);
    assert_int_equal(cb.part_len[0], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map_basic),
        cmocka_unit_test(test_map_many_and_iterate),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_binary_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
