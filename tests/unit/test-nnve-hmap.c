/* test-nnve-hmap.c: the open-addressing pointer table against a reference model under random
 * inserts and removals, with colliding hashes and duplicate keys. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>

#include "../../nnve-daemon/hmap.h"

enum { N = 5000 };

START_TEST(test_random_ops)
{
    struct nnve_hmap m;
    nnve_hmap_init(&m);
    static int objs[N];
    static int present[N];
    static uint32_t hashes[N];
    srand(42);
    for (int i = 0; i < N; i++)
        hashes[i] = (uint32_t)(rand() % 4096); /* many collisions and shared hashes */
    size_t count = 0;
    for (int step = 0; step < 60000; step++) {
        int i = rand() % N;
        if (present[i]) {
            ck_assert_int_eq(nnve_hmap_remove(&m, hashes[i], &objs[i]), 0);
            present[i] = 0;
            count--;
        } else {
            ck_assert_int_eq(nnve_hmap_insert(&m, hashes[i], &objs[i]), 0);
            present[i] = 1;
            count++;
        }
        if (step % 997 == 0) {
            /* every present object is found under its hash, absent ones are not */
            for (int k = 0; k < N; k += 7) {
                struct nnve_hmap_iter it;
                int found = 0;
                for (void *p = nnve_hmap_first(&m, hashes[k], &it); p; p = nnve_hmap_next(&m, &it))
                    found |= p == &objs[k];
                ck_assert_int_eq(found, present[k]);
            }
        }
    }
    ck_assert_uint_eq(nnve_hmap_count(&m), count);
    size_t seen = 0, pos = 0;
    while (nnve_hmap_at(&m, &pos))
        seen++;
    ck_assert_uint_eq(seen, count);
    int absent = 0;
    while (present[absent])
        absent++;
    ck_assert_int_eq(nnve_hmap_remove(&m, hashes[absent], &objs[absent]), -ENOENT);
    nnve_hmap_uninit(&m);
    struct nnve_hmap_iter it;
    ck_assert_ptr_null(nnve_hmap_first(&m, 1, &it));
    ck_assert_int_eq(nnve_hmap_remove(&m, 1, &objs[0]), -ENOENT);
}
END_TEST

START_TEST(test_hash)
{
    ck_assert_uint_ne(nnve_hash_string("a", 0), nnve_hash_string("b", 0));
    ck_assert_uint_ne(nnve_hash_string("a", 0), nnve_hash_string("a", 1));
    ck_assert_uint_eq(nnve_hash_bytes("abc", 3, 5), nnve_hash_string("abc", 5));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nnve-hmap");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_random_ops);
    tcase_add_test(tc, test_hash);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
