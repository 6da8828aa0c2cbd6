/* listen-socket: keeps a TCP port for a daemon across its restarts, by socket activation
 * (the protocol of systemd's sd_listen_fds(3), which nnve-daemon follows).
 *
 *   listen-socket hold ADDR UNIX-PATH      binds ADDR port 0 (the kernel picks a free port),
 *                                          listens, prints the port on a line and serves
 *                                          the socket to every client of UNIX-PATH
 *                                          (SCM_RIGHTS) until it is killed
 *   listen-socket run UNIX-PATH PROGRAM [ARG...]
 *                                          gets the socket from the holder, makes it fd 3,
 *                                          sets LISTEN_FDS=1 and LISTEN_PID, execs PROGRAM
 *
 * The port never goes back to the kernel while the holder lives, so no other process can
 * take it between two daemon instances, and a connection that arrives while none runs
 * waits in the backlog.  Exit status: 1 failure, 2 usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

enum { PASSED_FD = 3 }; /* SD_LISTEN_FDS_START */

static int die(const char *what)
{
    fprintf(stderr, "listen-socket: %s: %s\n", what, strerror(errno));
    return 1;
}

static int unix_addr(const char *path, struct sockaddr_un *sun)
{
    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    if ((size_t)snprintf(sun->sun_path, sizeof sun->sun_path, "%s", path) >=
        sizeof sun->sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

static int hold(const char *addr, const char *path)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    socklen_t len;
    if (inet_pton(AF_INET, addr, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        len = sizeof *in;
    } else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        len = sizeof *in6;
    } else {
        fprintf(stderr, "listen-socket: not a numeric address: %s\n", addr);
        return 2;
    }
    int tcp = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (tcp < 0 || bind(tcp, (struct sockaddr *)&ss, len) < 0 || listen(tcp, 128) < 0)
        return die(addr);
    len = sizeof ss;
    if (getsockname(tcp, (struct sockaddr *)&ss, &len) < 0)
        return die("getsockname");
    struct sockaddr_un sun;
    int us = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (us < 0 || unix_addr(path, &sun) < 0 || bind(us, (struct sockaddr *)&sun, sizeof sun) < 0 ||
        listen(us, 16) < 0)
        return die(path);
    printf("%u\n", ntohs(ss.ss_family == AF_INET ? in->sin_port : in6->sin6_port));
    if (fflush(stdout) != 0)
        return die("stdout");
    for (;;) {
        int c = accept4(us, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return die("accept");
        }
        char byte = 0, cbuf[CMSG_SPACE(sizeof(int))];
        memset(cbuf, 0, sizeof cbuf);
        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
        struct msghdr m = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
        struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &tcp, sizeof tcp);
        if (sendmsg(c, &m, MSG_NOSIGNAL) < 0)
            fprintf(stderr, "listen-socket: sendmsg: %s\n", strerror(errno));
        close(c);
    }
}

static int run(const char *path, char **argv)
{
    struct sockaddr_un sun;
    int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0 || unix_addr(path, &sun) < 0 || connect(c, (struct sockaddr *)&sun, sizeof sun) < 0)
        return die(path);
    char byte, cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    if (recvmsg(c, &m, MSG_CMSG_CLOEXEC) != 1)
        return die("no socket from the holder");
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    if (!cm || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
        cm->cmsg_len != CMSG_LEN(sizeof(int))) {
        fprintf(stderr, "listen-socket: the holder sent no socket\n");
        return 1;
    }
    int fd;
    memcpy(&fd, CMSG_DATA(cm), sizeof fd);
    close(c);
    /* dup2 clears close-on-exec on the copy; the original (if not 3) goes at exec. */
    if (fd != PASSED_FD && dup2(fd, PASSED_FD) < 0)
        return die("dup2");
    if (fd == PASSED_FD && fcntl(fd, F_SETFD, 0) < 0)
        return die("fcntl");
    char pid[24];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    if (setenv("LISTEN_FDS", "1", 1) < 0 || setenv("LISTEN_PID", pid, 1) < 0)
        return die("setenv");
    unsetenv("LISTEN_FDNAMES");
    execvp(argv[0], argv);
    return die(argv[0]);
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "hold"))
        return hold(argv[2], argv[3]);
    if (argc >= 4 && !strcmp(argv[1], "run"))
        return run(argv[2], argv + 3);
    fprintf(stderr, "usage: listen-socket hold ADDR UNIX-PATH\n"
                    "       listen-socket run UNIX-PATH PROGRAM [ARG...]\n");
    return 2;
}
