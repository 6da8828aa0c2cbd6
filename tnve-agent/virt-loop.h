/* virt-loop.h: libvirt's event loop interface implemented on a libuv loop.
 *
 * libvirt's client library needs an event loop for its connection socket, keepalive and
 * event delivery.  Instead of a second thread running virEventRunDefaultImpl(), the agent
 * registers this implementation (virEventRegisterImpl()) so libvirt's handles and timeouts
 * become libuv handles on the agent's one loop:
 *   - handles (fd watches) -> one uv_poll_t per file descriptor; when libvirt watches the
 *     same fd more than once the watches share that poll with the union of their events;
 *   - timeouts -> a uv_timer_t (period N ms, repeating) or, for period 0 ("every loop
 *     iteration"), a uv_idle_t; period -1 disables.
 * Removing a handle or timeout never calls libvirt's free callback synchronously: it runs
 * from a libuv close callback (or, for a watch whose poll stays shared, from a deferred
 * idle callback), and memory is released only there.
 *
 * libvirt's event interface is process-global, so this module is a singleton bound to one
 * loop.  Its handles live on the loop thread only: registrations libvirt attempts from any
 * other thread are refused, so a connection opened by another thread (virt.c's domain
 * reader) works without events or keepalive and never touches the loop's handles.
 */
#ifndef TNVE_VIRT_LOOP_H
#define TNVE_VIRT_LOOP_H 1

#include <libvirt/libvirt.h>
#include <uv.h>

/* Binds the implementation to `loop` and registers it with libvirt (virEventRegisterImpl).
 * Call once, before the first virConnectOpen().  Returns 0, or -EBUSY when already bound to
 * another loop that has not been uninitialised. */
int tnve_virt_loop_init(uv_loop_t *loop);

/* Closes every handle and timeout libvirt left registered (their free callbacks run from
 * the close callbacks) and the module's own idle handle.  Run the loop afterwards until it
 * has no more handles; then the loop closes cleanly.  Accepts being called when not
 * initialised. */
void tnve_virt_loop_uninit(void);

/* Counters, for tests and counters/show. */
struct tnve_virt_loop_stats {
    unsigned watches;  /* libvirt handle watches registered and not removed */
    unsigned polls;    /* uv_poll_t handles open (one per distinct fd) */
    unsigned timeouts; /* libvirt timeouts registered and not removed */
    unsigned pending;  /* removed objects whose free callback has not run yet */
    unsigned long long dispatched; /* callbacks into libvirt */
};
void tnve_virt_loop_get_stats(struct tnve_virt_loop_stats *st);

/* The functions registered with libvirt, exported so unit tests can drive them without a
 * libvirt connection.  Semantics exactly as libvirt's virEventAddHandleFunc & co. */
int tnve_virt_loop_add_handle(int fd, int events, virEventHandleCallback cb, void *opaque,
                              virFreeCallback ff);
void tnve_virt_loop_update_handle(int watch, int events);
int tnve_virt_loop_remove_handle(int watch);
int tnve_virt_loop_add_timeout(int period_ms, virEventTimeoutCallback cb, void *opaque,
                               virFreeCallback ff);
void tnve_virt_loop_update_timeout(int timer, int period_ms);
int tnve_virt_loop_remove_timeout(int timer);

#endif
