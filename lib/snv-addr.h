/* snv-addr.h: comparing socket addresses (IPv4 and IPv6), for the listener's per-source
 * limits and for matching a socket passed by a service manager to the configured one. */
#ifndef SNV_ADDR_H
#define SNV_ADDR_H 1

#include <stdbool.h>
#include <sys/socket.h>

/* Returns true when a and b are both AF_INET or both AF_INET6 with the same address and,
 * if with_port, the same port; false otherwise (other families never compare equal).
 * The IPv6 flow label and scope id are not compared. */
bool snv_addr_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b,
                    bool with_port);

#endif
