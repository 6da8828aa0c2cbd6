/* test-nnve-show.c: the paged TSI listing of nnve-daemon ("tsi/show", nnvectl show tsis)
 * on a table of 100,000 TSI instances: each page is bounded in rows and bytes, the pages
 * together list every instance exactly once in order, changes between pages neither
 * duplicate nor skip the TSIs present all along, and the filters (hypervisor, VN, port,
 * state) select exactly the matching rows.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../nnve-daemon/state.h"
#include "sncp-error.h"
#include "snv-log.h"

enum { N_TSIS = 100000, N_HVS = 4 };

static const char cfg_text[] = "[global]\ncert=a\nkey=b\nca=c\nmax_tsis_per_session=100000\n"
                               "[domain d1]\nports=swp1,swp2,swp3,swp4\ntags=100-199\n"
                               "[hypervisor hv1]\nport=swp1\nvns=5000-5010,blue\n"
                               "[hypervisor hv2]\nport=swp2\nvns=5000-5010\n"
                               "[hypervisor hv3]\nport=swp3\nvns=5000-5010\n"
                               "[hypervisor hv4]\nport=swp4\nvns=5000-5010\n"
                               "[vn blue]\nid=6000\n";

static struct nnve_config *cfg;
static struct nnve_state *st;
static struct nnve_hv *hvs[N_HVS];
static int sess = 1;

static void tsi_of(unsigned i, struct sncp_tsi_id *id)
{
    memset(id, 0, sizeof *id);
    /* Spread over the ID space so that hash order and ID order differ. */
    uint32_t h = i * 2654435761u;
    memcpy(id->uuid, &h, sizeof h);
    memcpy(id->uuid + 12, &i, sizeof i);
    id->uuid[6] = 0x40;
    id->mac[0] = 0x52;
    id->mac[4] = (uint8_t)(i >> 8);
    id->mac[5] = (uint8_t)i;
}

static int request(enum sncp_msg_type type, unsigned i, uint32_t vn)
{
    struct sncp_msg m;
    struct nnve_result res;
    sncp_msg_init(&m, type, 1);
    tsi_of(i, &m.tsi);
    sncp_msg_set(&m, SNCP_TLV_TSI_ID);
    if (vn) {
        m.vn_id = vn;
        sncp_msg_set(&m, SNCP_TLV_VN_ID);
    }
    return nnve_state_request(st, hvs[i % N_HVS], &m, 0, &res);
}

/* TSI i: hypervisor hv(i%4+1), VN 5000 + i%7, activated when i%3 == 0, else associated. */
static void setup(void)
{
    char err[256];
    ck_assert_int_eq(nnve_config_parse_string(cfg_text, "t", &cfg, err, sizeof err), 0);
    ck_assert_int_eq(nnve_state_create(cfg, NULL, NULL, 0, &st, err, sizeof err), 0);
    for (int h = 0; h < N_HVS; h++) {
        char name[8], port[8];
        snprintf(name, sizeof name, "hv%d", h + 1);
        snprintf(port, sizeof port, "swp%d", h + 1);
        ck_assert_int_eq(nnve_state_hv_up(st, name, port, 0, &hvs[h]), 0);
        nnve_state_hv_set_session(hvs[h], &sess);
        for (uint32_t vn = 5000; vn < 5007; vn++) {
            struct sncp_msg m;
            struct nnve_result res;
            sncp_msg_init(&m, SNCP_MSG_VN_CONNECT, 1);
            m.vn_id = vn;
            sncp_msg_set(&m, SNCP_TLV_VN_ID);
            ck_assert_int_eq(nnve_state_request(st, hvs[h], &m, 0, &res), 0);
        }
    }
    /* 100,000 audit lines: not on the test's output. */
    fflush(stderr);
    int saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY);
    ck_assert_int_ge(dup2(null, STDERR_FILENO), 0);
    close(null);
    for (unsigned i = 0; i < N_TSIS; i++)
        ck_assert_int_eq(
            request(i % 3 ? SNCP_MSG_TSI_ASSOCIATE : SNCP_MSG_TSI_ACTIVATE, i, 5000 + i % 7), 0);
    ck_assert_int_ge(dup2(saved, STDERR_FILENO), 0);
    close(saved);
}

static void teardown(void)
{
    nnve_state_destroy(st);
    nnve_config_destroy(cfg);
}

static json_t *page(struct nnve_tsi_filter *f)
{
    json_t *p = nnve_state_show_tsis_page(st, f);
    ck_assert_ptr_nonnull(p);
    ck_assert(json_is_array(json_object_get(p, "items")));
    return p;
}

/* Follows a listing to its end; returns the number of rows, checking order and bounds. */
static size_t list_all(struct nnve_tsi_filter f, size_t *pages, int (*check)(const json_t *))
{
    size_t rows = 0;
    char *cursor = NULL, last[160] = "";
    *pages = 0;
    for (;;) {
        f.after = cursor;
        json_t *p = page(&f);
        json_t *items = json_object_get(p, "items");
        size_t limit = f.limit ? f.limit : NNVE_SHOW_PAGE_DEFAULT;
        ck_assert_uint_le(json_array_size(items), limit);
        char *text = json_dumps(p, JSON_COMPACT);
        ck_assert_uint_le(strlen(text), limit * 400); /* bytes bounded by rows */
        free(text);
        for (size_t i = 0; i < json_array_size(items); i++) {
            const json_t *row = json_array_get(items, i);
            char key[160];
            snprintf(key, sizeof key, "%s@%s", json_string_value(json_object_get(row, "tsi")),
                     json_string_value(json_object_get(row, "hypervisor")));
            /* hex text of the ID bytes sorts as the bytes do */
            ck_assert_msg(strcmp(last, key) < 0, "order: %s then %s", last, key);
            snprintf(last, sizeof last, "%s", key);
            if (check)
                ck_assert(check(row));
            rows++;
        }
        (*pages)++;
        free(cursor);
        cursor = NULL;
        const json_t *next = json_object_get(p, "next");
        if (json_is_string(next)) {
            ck_assert_uint_eq(json_array_size(items), limit);
            cursor = strdup(json_string_value(next));
        }
        json_decref(p);
        if (!cursor)
            break;
    }
    return rows;
}

START_TEST(test_pages_list_everything_once)
{
    struct nnve_tsi_filter f = NNVE_TSI_FILTER_INIT;
    size_t pages;
    ck_assert_uint_eq(list_all(f, &pages, NULL), N_TSIS);
    ck_assert_uint_eq(pages, N_TSIS / NNVE_SHOW_PAGE_DEFAULT);
    f.limit = 7777;
    ck_assert_uint_eq(list_all(f, &pages, NULL), N_TSIS);
    ck_assert_uint_eq(pages, N_TSIS / 7777 + 1);
}
END_TEST

static int is_hv3(const json_t *r)
{
    return !strcmp(json_string_value(json_object_get(r, "hypervisor")), "hv3") &&
           !strcmp(json_string_value(json_object_get(r, "port")), "swp3");
}
static int is_vn5003(const json_t *r)
{
    return json_integer_value(json_object_get(r, "vn_id")) == 5003;
}
static int is_activated(const json_t *r)
{
    return !strcmp(json_string_value(json_object_get(r, "state")), "activated");
}
static int is_all(const json_t *r)
{
    return is_hv3(r) && is_vn5003(r) && is_activated(r);
}

START_TEST(test_filters)
{
    size_t pages, expect = 0;
    for (unsigned i = 0; i < N_TSIS; i++)
        expect += i % 4 == 2 && i % 7 == 3 && i % 3 == 0;
    struct nnve_tsi_filter f = NNVE_TSI_FILTER_INIT;
    ck_assert_int_eq(nnve_state_tsi_filter_set(&f, "hypervisor", "hv3"), 0);
    ck_assert_uint_eq(list_all(f, &pages, is_hv3), N_TSIS / 4);
    f = (struct nnve_tsi_filter)NNVE_TSI_FILTER_INIT;
    ck_assert_int_eq(nnve_state_tsi_filter_set(&f, "port", "swp3"), 0);
    ck_assert_uint_eq(list_all(f, &pages, is_hv3), N_TSIS / 4);
    f = (struct nnve_tsi_filter)NNVE_TSI_FILTER_INIT;
    ck_assert_int_eq(nnve_state_tsi_filter_set(&f, "vn", "5003"), 0);
    ck_assert_uint_eq(list_all(f, &pages, is_vn5003), (N_TSIS - 3 + 6) / 7);
    f = (struct nnve_tsi_filter)NNVE_TSI_FILTER_INIT;
    ck_assert_int_eq(nnve_state_tsi_filter_set(&f, "state", "activated"), 0);
    ck_assert_uint_eq(list_all(f, &pages, is_activated), (N_TSIS + 2) / 3);
    ck_assert_int_eq(nnve_state_tsi_filter_set(&f, "hypervisor", "hv3"), 0);
    ck_assert_int_eq(nnve_state_tsi_filter_set(&f, "vn", "5003"), 0);
    ck_assert_int_eq(nnve_state_tsi_filter_set(&f, "port", "swp3"), 0);
    ck_assert_uint_eq(list_all(f, &pages, is_all), expect);
    ck_assert_uint_eq(pages, (expect + NNVE_SHOW_PAGE_DEFAULT - 1) / NNVE_SHOW_PAGE_DEFAULT);
    /* a VN by name; nothing matches an unknown hypervisor or another port */
    f = (struct nnve_tsi_filter)NNVE_TSI_FILTER_INIT;
    ck_assert_int_eq(nnve_state_tsi_filter_set(&f, "vn", "blue"), 0);
    ck_assert_uint_eq(list_all(f, &pages, NULL), 0);
    ck_assert_int_eq(nnve_state_tsi_filter_set(&f, "vn", "5000"), 0);
    ck_assert_int_eq(nnve_state_tsi_filter_set(&f, "port", "swp9"), 0);
    ck_assert_uint_eq(list_all(f, &pages, NULL), 0);
}
END_TEST

START_TEST(test_bad_arguments)
{
    struct nnve_tsi_filter f = NNVE_TSI_FILTER_INIT;
    ck_assert_int_eq(nnve_state_tsi_filter_set(&f, "colour", "red"), -ENOENT);
    ck_assert_int_eq(nnve_state_tsi_filter_set(&f, "state", "init"), -EINVAL);
    ck_assert_int_eq(nnve_state_tsi_filter_set(&f, "limit", "0"), -EINVAL);
    ck_assert_int_eq(nnve_state_tsi_filter_set(&f, "limit", "10001"), -EINVAL);
    ck_assert_int_eq(nnve_state_tsi_filter_set(&f, "limit", "-5"), -EINVAL);
    ck_assert_int_eq(nnve_state_tsi_filter_set(&f, "limit", "5x"), -EINVAL);
    ck_assert_int_eq(nnve_state_tsi_filter_set(&f, "after", "hv1"), -EINVAL);
    ck_assert_int_eq(nnve_state_tsi_filter_set(&f, "after", "not-a-tsi@hv1"), -EINVAL);
    ck_assert_int_eq(nnve_state_tsi_filter_set(&f, "limit", "10000"), 0);
}
END_TEST

/* Between two pages TSIs come and go: those present all along appear exactly once. */
START_TEST(test_changes_between_pages)
{
    static unsigned char seen[N_TSIS];
    memset(seen, 0, sizeof seen);
    struct nnve_tsi_filter f = NNVE_TSI_FILTER_INIT;
    f.limit = 5000;
    char *cursor = NULL;
    unsigned round = 0, removed = 0;
    int saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY);
    dup2(null, STDERR_FILENO);
    close(null);
    for (;;) {
        f.after = cursor;
        json_t *p = page(&f);
        json_t *items = json_object_get(p, "items");
        for (size_t i = 0; i < json_array_size(items); i++) {
            /* uuid[12..14] hold i, little-endian: text offset 28 */
            const char *u = json_string_value(json_object_get(json_array_get(items, i), "tsi"));
            unsigned b0, b1, b2, idx;
            ck_assert_int_eq(sscanf(u + 28, "%2x%2x%2x", &b0, &b1, &b2), 3);
            idx = b0 | b1 << 8 | b2 << 16;
            ck_assert_uint_lt(idx, N_TSIS);
            seen[idx]++;
        }
        free(cursor);
        cursor = json_is_string(json_object_get(p, "next"))
                     ? strdup(json_string_value(json_object_get(p, "next")))
                     : NULL;
        json_decref(p);
        if (!cursor)
            break;
        /* Remove 50 TSIs whose index ends in 99 and re-add them (new instances). */
        for (unsigned k = 0; k < 50; k++) {
            unsigned i = (round * 50 + k) * 100 + 99;
            if (i >= N_TSIS)
                continue;
            ck_assert_int_eq(request(SNCP_MSG_TSI_DEASSOCIATE, i, 0), 0);
            if (k % 2)
                ck_assert_int_eq(request(SNCP_MSG_TSI_ASSOCIATE, i, 5000 + i % 7), 0);
            removed++;
        }
        round++;
    }
    dup2(saved, STDERR_FILENO);
    close(saved);
    ck_assert_uint_gt(removed, 0);
    for (unsigned i = 0; i < N_TSIS; i++) {
        if (i % 100 == 99)
            ck_assert_uint_le(seen[i], 1); /* came and went: at most once */
        else
            ck_assert_msg(seen[i] == 1, "TSI %u listed %u times", i, seen[i]);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nnve-show");
    TCase *tc = tcase_create("tsis");
    /* Built once; each test runs in a child process with its own copy. */
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_pages_list_everything_once);
    tcase_add_test(tc, test_filters);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_test(tc, test_changes_between_pages);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
