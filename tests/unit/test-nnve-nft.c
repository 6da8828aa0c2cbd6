/* test-nnve-nft.c: the linux backend's nftables anti-spoofing table (nft-filter.c).
 *
 * The text builders and the JSON parser are checked as pure functions; the table itself is
 * created, read back, changed and repaired against the running kernel's nf_tables, each
 * test in a network namespace of its own (Check forks every test; the child unshares). */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <nftables/libnftables.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../../nnve-daemon/nft-filter.h"
#include "snv-log.h"

static struct nnve_nft_elem elem(const char *port, uint16_t vid, uint8_t last, int family,
                                 const char *ip)
{
    struct nnve_nft_elem e;
    memset(&e, 0, sizeof e);
    snprintf(e.port, sizeof e.port, "%s", port);
    e.vid = vid;
    uint8_t mac[6] = {2, 0, 0, 0, 0, last};
    memcpy(e.mac, mac, 6);
    e.family = family;
    if (family)
        ck_assert_int_eq(inet_pton(family, ip, e.ip), 1);
    return e;
}

START_TEST(keys)
{
    /* the bytes nft itself puts in the set for "swp1" . 100 . 02:00:00:00:00:01 . 192.0.2.1 */
    static const uint8_t want4[32] = {
        's', 'w',  'p', '1', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* iifname */
        0,   0x64, 0,   0,                                       /* vlan id */
        2,   0,    0,   0,   0, 1, 0, 0,                         /* ether saddr */
        192, 0,    2,   1,                                       /* ip saddr */
    };
    uint8_t key[NNVE_NFT_KEY_MAX];
    struct nnve_nft_elem e = elem("swp1", 100, 1, AF_INET, "192.0.2.1");
    ck_assert_int_eq(nnve_nft_elem_key(&e, key), 32);
    ck_assert_mem_eq(key, want4, 32);
    e = elem("swp1", 100, 1, 0, NULL);
    ck_assert_int_eq(nnve_nft_elem_key(&e, key), 28);
    ck_assert_mem_eq(key, want4, 28);
    e = elem("swp1", 4094, 1, AF_INET6, "2001:db8::1");
    ck_assert_int_eq(nnve_nft_elem_key(&e, key), 44);
    ck_assert_uint_eq(key[16], 0x0f);
    ck_assert_uint_eq(key[17], 0xfe);
    ck_assert_uint_eq(key[28], 0x20);
    ck_assert_uint_eq(key[43], 0x01);
    /* what nft cannot carry */
    e = elem("sw\"p", 100, 1, 0, NULL);
    ck_assert_int_eq(nnve_nft_elem_key(&e, key), -EINVAL);
    e = elem("swp1", 4095, 1, 0, NULL);
    ck_assert_int_eq(nnve_nft_elem_key(&e, key), -EINVAL);
    e = elem("swp1", 0, 1, 0, NULL);
    ck_assert_int_eq(nnve_nft_elem_key(&e, key), -EINVAL);
    e = elem("", 100, 1, 0, NULL);
    ck_assert_int_eq(nnve_nft_elem_key(&e, key), -EINVAL);
    e = elem("swp1", 100, 1, 0, NULL);
    e.family = 99;
    ck_assert_int_eq(nnve_nft_elem_key(&e, key), -EINVAL);
    char buf[1024];
    ck_assert_int_eq(nnve_nft_table_text(buf, 40, "t"), -ENOSPC);
    ck_assert_int_gt(nnve_nft_table_text(buf, sizeof buf, "t"), 0);
    ck_assert_ptr_nonnull(strstr(buf, "table bridge t {"));
}
END_TEST

START_TEST(json_parse)
{
    static const char good[] =
        "{\"nftables\": [{\"metainfo\": {\"version\": \"1.0.6\"}}, {\"set\": {\"family\": "
        "\"bridge\", \"name\": \"src4\", \"table\": \"splitnve\", \"elem\": [{\"concat\": "
        "[\"swp1\", 100, \"02:00:00:00:00:01\", \"192.0.2.1\"]}, {\"elem\": {\"val\": "
        "{\"concat\": [\"swp2\", 7, \"02:00:00:00:00:02\", \"192.0.2.2\"]}, \"counter\": "
        "{}}}]}}]}";
    static const char macs[] = "{\"nftables\": [{\"set\": {\"name\": \"macs\", \"elem\": "
                               "[{\"concat\": [\"swp1\", 100, \"02:00:00:00:00:01\"]}]}}]}";
    static const char empty[] = "{\"nftables\": [{\"set\": {\"name\": \"src6\"}}]}";
    struct nnve_nft_elem *v = NULL;
    size_t n = 0, cap = 0;
    ck_assert_int_eq(nnve_nft_parse_set_json(good, &v, &n, &cap), 0);
    ck_assert_int_eq(nnve_nft_parse_set_json(macs, &v, &n, &cap), 0);
    ck_assert_int_eq(nnve_nft_parse_set_json(empty, &v, &n, &cap), 0);
    ck_assert_uint_eq(n, 3);
    struct nnve_nft_elem e0 = elem("swp1", 100, 1, AF_INET, "192.0.2.1");
    struct nnve_nft_elem e1 = elem("swp2", 7, 2, AF_INET, "192.0.2.2");
    struct nnve_nft_elem e2 = elem("swp1", 100, 1, 0, NULL);
    ck_assert(nnve_nft_elem_equal(&v[0], &e0));
    ck_assert(nnve_nft_elem_equal(&v[1], &e1));
    ck_assert(nnve_nft_elem_equal(&v[2], &e2));
    ck_assert(!nnve_nft_elem_equal(&v[0], &e1));
    static const char *const bad[] = {
        "not json",
        "{\"x\": 1}",
        "{\"nftables\": [{\"set\": {\"name\": \"other\", \"elem\": []}}]}",
        "{\"nftables\": [{\"set\": {\"name\": \"macs\", \"elem\": [{\"concat\": [\"swp1\", "
        "100]}]}}]}",
        "{\"nftables\": [{\"set\": {\"name\": \"macs\", \"elem\": [{\"concat\": [\"swp1\", "
        "5000, \"02:00:00:00:00:01\"]}]}}]}",
        "{\"nftables\": [{\"set\": {\"name\": \"src4\", \"elem\": [{\"concat\": [\"swp1\", "
        "5, \"02:00:00:00:00:01\", \"2001:db8::1\"]}]}}]}",
        "{\"nftables\": [{\"set\": {\"name\": \"macs\", \"elem\": [{\"concat\": [\"\", "
        "5, \"02:00:00:00:00:01\"]}]}}]}",
        "{\"nftables\": [{\"set\": {\"name\": \"macs\", \"elem\": 3}}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t before = n;
        ck_assert_msg(nnve_nft_parse_set_json(bad[i], &v, &n, &cap) == -EINVAL, "accepted %s",
                      bad[i]);
        ck_assert_uint_eq(n, before);
    }
    free(v);
}
END_TEST

/* ---- against the kernel, in a namespace of our own ---- */

static void own_netns(void)
{
    ck_assert_msg(unshare(CLONE_NEWNET) == 0, "unshare(CLONE_NEWNET): %s (run as root)",
                  strerror(errno));
}

/* Runs nft commands outside the module under test (to tamper with the table). */
static int nft_cmd(const char *cmd)
{
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    nft_ctx_buffer_error(ctx);
    nft_ctx_buffer_output(ctx);
    int r = nft_run_cmd_from_buffer(ctx, cmd);
    nft_ctx_free(ctx);
    return r;
}

static size_t count_elems(struct nnve_nft *nft)
{
    struct nnve_nft_elem *v;
    size_t n;
    ck_assert_int_eq(nnve_nft_read(nft, &v, &n), 0);
    free(v);
    return n;
}

START_TEST(kernel_table)
{
    own_netns();
    struct nnve_nft *nft = NULL;
    ck_assert_int_eq(nnve_nft_create(NULL, &nft), 0);
    ck_assert_uint_eq(count_elems(nft), 0);
    struct nnve_nft_elem e[4] = {
        elem("swp1", 100, 1, 0, NULL),
        elem("swp1", 100, 1, AF_INET, "192.0.2.1"),
        elem("swp1", 100, 1, AF_INET6, "2001:db8::1"),
        elem("swp2", 200, 2, 0, NULL),
    };
    ck_assert_int_eq(nnve_nft_apply(nft, e, 4, NULL, 0), 0);
    ck_assert_int_eq(nnve_nft_apply(nft, e, 4, NULL, 0), 0); /* present: fine */
    struct nnve_nft_elem *v;
    size_t n;
    ck_assert_int_eq(nnve_nft_read(nft, &v, &n), 0);
    ck_assert_uint_eq(n, 4);
    for (size_t i = 0; i < 4; i++) {
        int found = 0;
        for (size_t j = 0; j < n; j++)
            found |= nnve_nft_elem_equal(&e[i], &v[j]);
        ck_assert_msg(found, "element %zu not read back", i);
    }
    free(v);
    /* delete two, one of them already gone: the other still goes, adds still apply */
    ck_assert_int_eq(nft_cmd("delete element bridge splitnve macs { \"swp2\" . 200 . "
                             "02:00:00:00:00:02 }"),
                     0);
    struct nnve_nft_elem extra = elem("swp3", 300, 3, AF_INET, "192.0.2.3");
    ck_assert_int_eq(nnve_nft_apply(nft, &extra, 1, &e[2], 2), 0);
    ck_assert_uint_eq(count_elems(nft), 3);
    /* more than one batch: added and deleted in pieces */
    enum { BIG = 1200 };
    struct nnve_nft_elem *big = calloc(BIG, sizeof *big);
    for (unsigned i = 0; i < BIG; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "198.51.100.%u", i % 250);
        big[i] = elem("swp9", (uint16_t)(1 + i / 250), (uint8_t)i, AF_INET, ip);
    }
    ck_assert_int_eq(nnve_nft_apply(nft, big, BIG, NULL, 0), 0);
    ck_assert_uint_eq(count_elems(nft), 3 + BIG);
    ck_assert_int_eq(nnve_nft_apply(nft, NULL, 0, big, BIG), 0);
    ck_assert_uint_eq(count_elems(nft), 3);
    free(big);
    /* a second open keeps a table that is right, with its elements */
    struct nnve_nft *again = NULL;
    ck_assert_int_eq(nnve_nft_create(NULL, &again), 0);
    ck_assert_uint_eq(count_elems(again), 3);
    nnve_nft_destroy(again);
    /* a table changed by hand is made again */
    ck_assert_int_eq(nft_cmd("add rule bridge splitnve guard accept"), 0);
    ck_assert_int_eq(nnve_nft_create(NULL, &again), 0);
    ck_assert_uint_eq(count_elems(again), 0);
    nnve_nft_destroy(again);
    ck_assert_int_eq(nft_cmd("delete set bridge splitnve src6"), -1); /* in use by a rule */
    /* other tables are never touched */
    ck_assert_int_eq(nft_cmd("add table bridge other"), 0);
    ck_assert_int_eq(nnve_nft_remove_table(NULL), 0);
    ck_assert_int_eq(nft_cmd("list table bridge splitnve"), -1);
    ck_assert_int_eq(nft_cmd("list table bridge other"), 0);
    ck_assert_int_eq(nft_cmd("list table bridge splitnve_chk"), -1);
    ck_assert_int_eq(nnve_nft_remove_table(NULL), 0); /* absent: fine */
    /* the handle opened first now fails with a reason, and does not crash */
    ck_assert_int_lt(nnve_nft_apply(nft, e, 1, NULL, 0), 0);
    nnve_nft_destroy(nft);
    nnve_nft_destroy(NULL);
}
END_TEST

START_TEST(kernel_bad_name)
{
    own_netns();
    struct nnve_nft *nft = (struct nnve_nft *)1;
    ck_assert_int_eq(nnve_nft_create("bad name", &nft), -EINVAL);
    ck_assert_ptr_null(nft);
    ck_assert_int_eq(
        nnve_nft_create("a-very-long-table-name-that-is-far-too-long-for-the-backend-to-ever-use",
                        &nft),
        -EINVAL);
}
END_TEST

int main(void)
{
    snv_log_set_level(SNV_LOG_ERR);
    Suite *s = suite_create("nnve-nft");
    TCase *tc = tcase_create("text");
    tcase_add_test(tc, keys);
    tcase_add_test(tc, json_parse);
    suite_add_tcase(s, tc);
    tc = tcase_create("kernel");
    tcase_add_test(tc, kernel_table);
    tcase_add_test(tc, kernel_bad_name);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
