/* activation.h: listening sockets passed by a service manager (socket activation).
 *
 * systemd's protocol (sd_listen_fds(3)): LISTEN_PID names this process and LISTEN_FDS
 * counts the sockets it inherited, numbered from 3.  A `listen` address whose socket was
 * passed uses that socket instead of binding its own, so the service manager (or whoever
 * started the daemon) keeps the port across restarts: connections that arrive meanwhile
 * wait in its backlog instead of being refused.
 */
#ifndef NNVE_ACTIVATION_H
#define NNVE_ACTIVATION_H 1

#include <stdint.h>

/* The passed socket that is a listening TCP socket bound to addr:port (numeric address,
 * e.g. "0.0.0.0", "::1"; port 0 never matches), taken by the caller, who closes it.  The
 * first call reads and unsets LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES, and marks the
 * passed sockets close-on-exec.  Returns the fd, or -ENOENT when none matches. */
int nnve_activation_take(const char *addr, uint16_t port);

/* Closes the passed sockets nobody took, with a warning for each.  Safe to call when
 * nothing was passed. */
void nnve_activation_finish(void);

#endif
