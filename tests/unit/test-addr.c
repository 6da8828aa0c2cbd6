/* test-addr.c: Check suite for snv-addr: snv_addr_equal() over IPv4 and IPv6 addresses,
 * with and without the port, across families, and for families it does not know. */
#include "snv-addr.h"

#include <arpa/inet.h>
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

/* addr: ADDR (IPv4 or IPv6 text) and PORT as a sockaddr_storage. */
static struct sockaddr_storage addr(const char *a, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
    memset(&in, 0, sizeof in);
    memset(&in6, 0, sizeof in6);
    if (inet_pton(AF_INET, a, &in.sin_addr) == 1) {
        in.sin_family = AF_INET;
        in.sin_port = htons(port);
        memcpy(&ss, &in, sizeof in);
    } else {
        ck_assert_int_eq(inet_pton(AF_INET6, a, &in6.sin6_addr), 1);
        in6.sin6_family = AF_INET6;
        in6.sin6_port = htons(port);
        memcpy(&ss, &in6, sizeof in6);
    }
    return ss;
}

START_TEST(test_ipv4)
{
    struct sockaddr_storage a = addr("192.0.2.1", 4000), b = addr("192.0.2.1", 4001),
                            c = addr("192.0.2.2", 4000);
    ck_assert(snv_addr_equal(&a, &a, true));
    ck_assert(snv_addr_equal(&a, &b, false));
    ck_assert(!snv_addr_equal(&a, &b, true));
    ck_assert(!snv_addr_equal(&a, &c, false));
    ck_assert(!snv_addr_equal(&a, &c, true));
}
END_TEST

START_TEST(test_ipv6)
{
    struct sockaddr_storage a = addr("2001:db8::1", 4000), b = addr("2001:db8::1", 4001),
                            c = addr("2001:db8::2", 4000);
    ck_assert(snv_addr_equal(&a, &a, true));
    ck_assert(snv_addr_equal(&a, &b, false));
    ck_assert(!snv_addr_equal(&a, &b, true));
    ck_assert(!snv_addr_equal(&a, &c, false));
    ck_assert(!snv_addr_equal(&c, &a, true));
}
END_TEST

START_TEST(test_families)
{
    /* An IPv4-mapped IPv6 address is another family: not equal to the IPv4 address. */
    struct sockaddr_storage v4 = addr("192.0.2.1", 4000), mapped = addr("::ffff:192.0.2.1", 4000);
    ck_assert(!snv_addr_equal(&v4, &mapped, false));
    ck_assert(!snv_addr_equal(&mapped, &v4, false));
    /* Families it does not know never compare equal, not even to themselves. */
    struct sockaddr_storage u;
    memset(&u, 0, sizeof u);
    u.ss_family = AF_UNIX;
    ck_assert(!snv_addr_equal(&u, &u, false));
    ck_assert(!snv_addr_equal(&u, &u, true));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("snv-addr");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_ipv4);
    tcase_add_test(tc, test_ipv6);
    tcase_add_test(tc, test_families);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
