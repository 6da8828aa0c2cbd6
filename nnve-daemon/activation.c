/* activation.c: listening sockets passed by a service manager; see activation.h. */
#include "activation.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "snv-addr.h"
#include "snv-log.h"

enum {
    ACTIVATION_FD_START = 3, /* SD_LISTEN_FDS_START */
    ACTIVATION_MAX_FDS = 64,
};

static bool activation_read;
static int activation_fds[ACTIVATION_MAX_FDS]; /* -1: taken or closed */
static unsigned activation_n;

/* parse_env_uint: the decimal value of environment variable name, or -1. */
static long parse_env_uint(const char *name)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    return errno || *end || v < 0 ? -1 : v;
}

static void activation_init(void)
{
    activation_read = true;
    long pid = parse_env_uint("LISTEN_PID"), n = parse_env_uint("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (pid < 0 || n <= 0)
        return;
    if (pid != (long)getpid()) /* meant for another process (our parent) */
        return;
    if (n > ACTIVATION_MAX_FDS) {
        SNV_WARN("activation", "too many passed sockets, using the first %d passed=%ld",
                 ACTIVATION_MAX_FDS, n);
        n = ACTIVATION_MAX_FDS;
    }
    for (long i = 0; i < n; i++) {
        int fd = ACTIVATION_FD_START + (int)i;
        int flags = fcntl(fd, F_GETFD);
        if (flags < 0) {
            SNV_WARN("activation", "passed socket is not open fd=%d", fd);
            activation_fds[activation_n++] = -1;
            continue;
        }
        fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
        activation_fds[activation_n++] = fd;
    }
}

/* socket_matches: fd is a listening TCP socket bound to want (family, address, port). */
static bool socket_matches(int fd, const struct sockaddr_storage *want)
{
    int type = 0, listening = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM)
        return false;
    len = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 || !listening)
        return false;
    struct sockaddr_storage got;
    len = sizeof got;
    return getsockname(fd, (struct sockaddr *)&got, &len) == 0 && snv_addr_equal(&got, want, true);
}

int nnve_activation_take(const char *addr, uint16_t port)
{
    if (!activation_read)
        activation_init();
    struct sockaddr_storage want;
    memset(&want, 0, sizeof want);
    struct sockaddr_in *in = (struct sockaddr_in *)&want;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&want;
    if (inet_pton(AF_INET, addr, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
    } else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
    } else {
        return -ENOENT;
    }
    for (unsigned i = 0; port && i < activation_n; i++) {
        int fd = activation_fds[i];
        if (fd >= 0 && socket_matches(fd, &want)) {
            activation_fds[i] = -1;
            return fd;
        }
    }
    return -ENOENT;
}

void nnve_activation_finish(void)
{
    if (!activation_read)
        activation_init();
    for (unsigned i = 0; i < activation_n; i++) {
        if (activation_fds[i] < 0)
            continue;
        SNV_WARN("activation", "closing a passed socket that matches no listen address fd=%d",
                 activation_fds[i]);
        close(activation_fds[i]);
        activation_fds[i] = -1;
    }
}
