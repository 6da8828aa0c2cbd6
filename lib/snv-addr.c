/* snv-addr.c: comparing socket addresses (see snv-addr.h). */
#include "snv-addr.h"

#include <netinet/in.h>
#include <string.h>

bool snv_addr_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b,
                    bool with_port)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        struct sockaddr_in x, y;
        memcpy(&x, a, sizeof x);
        memcpy(&y, b, sizeof y);
        return x.sin_addr.s_addr == y.sin_addr.s_addr && (!with_port || x.sin_port == y.sin_port);
    }
    if (a->ss_family == AF_INET6) {
        struct sockaddr_in6 x, y;
        memcpy(&x, a, sizeof x);
        memcpy(&y, b, sizeof y);
        return !memcmp(&x.sin6_addr, &y.sin6_addr, sizeof x.sin6_addr) &&
               (!with_port || x.sin6_port == y.sin6_port);
    }
    return false;
}
