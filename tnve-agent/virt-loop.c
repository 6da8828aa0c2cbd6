/* virt-loop.c: libvirt's event loop interface on libuv (see virt-loop.h).
 *
 * Ownership: every object is freed only from a libuv callback.  A timeout embeds a
 * uv_timer_t and a uv_idle_t (period 0 means "every iteration", which a re-armed 0 ms
 * uv_timer cannot express without spinning inside one uv__run_timers pass); removal closes
 * both and the second close callback runs libvirt's free callback and frees the object.  A
 * watch shares its fd's uv_poll_t with the other watches of that fd; removal detaches it at
 * once (the poll's event mask is recomputed, the poll is closed when it was the last
 * watch) and queues it for the module's idle "reaper", which runs the free callback on the
 * next loop iteration.  A poll struct is freed in its close callback.
 */
#include "virt-loop.h"

#include <errno.h>
#include <stdlib.h>

#include "snv-log.h"

struct vl_poll {
    uv_poll_t poll;
    int fd;
    int uv_events; /* events the poll is started with; 0 = stopped */
    int closing;
    struct vl_poll *next;
};

struct vl_watch {
    int id;
    int fd;
    int events; /* VIR_EVENT_HANDLE_* wanted */
    virEventHandleCallback cb;
    void *opaque;
    virFreeCallback ff;
    struct vl_poll *p;
    struct vl_watch *next;
};

struct vl_timeout {
    int id;
    int period;
    uv_timer_t timer;
    uv_idle_t idle;
    int closes_pending;
    virEventTimeoutCallback cb;
    void *opaque;
    virFreeCallback ff;
    struct vl_timeout *next;
};

static struct {
    uv_loop_t *loop;
    int registered;
    int shutting_down;
    struct vl_watch *watches;    /* active */
    struct vl_watch *doomed;     /* removed, free callback pending */
    struct vl_poll *polls;       /* open and not closing */
    struct vl_timeout *timeouts; /* active */
    unsigned n_watches, n_polls, n_timeouts, n_pending;
    int next_watch, next_timeout;
    uv_idle_t reaper;
    int reaper_open;
    unsigned long long dispatched;
    uv_thread_t owner; /* the loop's thread */
} vl;

/* A connection opened by another thread (virt.c's reader) gets no watch and no timeout:
 * libvirt then runs that connection's calls synchronously in the calling thread, without
 * events or keepalive, and the loop's handles are never touched from two threads. */
static int foreign_thread(void)
{
    uv_thread_t self = uv_thread_self();
    return !uv_thread_equal(&self, &vl.owner);
}

static int to_uv_events(int vir_events)
{
    int ev = 0;
    if (vir_events & VIR_EVENT_HANDLE_READABLE)
        ev |= UV_READABLE;
    if (vir_events & VIR_EVENT_HANDLE_WRITABLE)
        ev |= UV_WRITABLE;
    return ev;
}

static struct vl_watch *watch_find(int id)
{
    for (struct vl_watch *w = vl.watches; w; w = w->next)
        if (w->id == id)
            return w;
    return NULL;
}

static struct vl_timeout *timeout_find(int id)
{
    for (struct vl_timeout *t = vl.timeouts; t; t = t->next)
        if (t->id == id)
            return t;
    return NULL;
}

static struct vl_poll *poll_find(int fd)
{
    for (struct vl_poll *p = vl.polls; p; p = p->next)
        if (p->fd == fd)
            return p;
    return NULL;
}

static void poll_close_cb(uv_handle_t *h)
{
    struct vl_poll *p = h->data;
    vl.n_polls--;
    free(p);
}

static void poll_cb(uv_poll_t *h, int status, int events);

/* Restarts (or stops, or closes) the poll of `p` for the union of its watches' events. */
static void poll_refresh(struct vl_poll *p)
{
    int n = 0, want = 0;
    for (struct vl_watch *w = vl.watches; w; w = w->next) {
        if (w->p == p) {
            n++;
            want |= to_uv_events(w->events);
        }
    }
    if (n == 0) {
        struct vl_poll **pp = &vl.polls;
        while (*pp && *pp != p)
            pp = &(*pp)->next;
        if (*pp)
            *pp = p->next;
        p->closing = 1;
        uv_close((uv_handle_t *)&p->poll, poll_close_cb);
        return;
    }
    if (want == p->uv_events)
        return;
    if (want == 0) {
        uv_poll_stop(&p->poll);
        p->uv_events = 0;
        return;
    }
    int err = uv_poll_start(&p->poll, want | UV_DISCONNECT, poll_cb);
    if (err < 0) {
        SNV_ERR("virt-loop", "poll start failed fd=%d err=%s", p->fd, uv_strerror(err));
        p->uv_events = 0;
        return;
    }
    p->uv_events = want;
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    struct vl_poll *p = h->data;
    int vir = 0;
    if (status < 0) {
        /* libuv stopped the poll; a later update restarts it. */
        vir = VIR_EVENT_HANDLE_ERROR;
        p->uv_events = 0;
    } else {
        if (events & UV_READABLE)
            vir |= VIR_EVENT_HANDLE_READABLE;
        if (events & UV_WRITABLE)
            vir |= VIR_EVENT_HANDLE_WRITABLE;
        if (events & UV_DISCONNECT)
            vir |= VIR_EVENT_HANDLE_HANGUP;
    }
    /* Callbacks may add, update or remove watches (this one included): collect the ids
     * first and look each up again before calling it. */
    int ids[16], n = 0;
    for (struct vl_watch *w = vl.watches; w && n < (int)(sizeof ids / sizeof ids[0]); w = w->next)
        if (w->p == p)
            ids[n++] = w->id;
    for (int i = 0; i < n; i++) {
        struct vl_watch *w = watch_find(ids[i]);
        if (!w || w->p != p)
            continue;
        int mine = vir & (w->events | VIR_EVENT_HANDLE_ERROR | VIR_EVENT_HANDLE_HANGUP);
        if (!mine)
            continue;
        vl.dispatched++;
        w->cb(w->id, w->fd, mine, w->opaque);
    }
}

static void reaper_close_cb(uv_handle_t *h)
{
    (void)h;
    vl.reaper_open = 0;
    vl.loop = NULL;
}

static void reaper_cb(uv_idle_t *h)
{
    /* Detach the list first: free callbacks may remove more objects. */
    struct vl_watch *list = vl.doomed;
    vl.doomed = NULL;
    while (list) {
        struct vl_watch *w = list;
        list = w->next;
        if (w->ff)
            w->ff(w->opaque);
        vl.n_pending--;
        free(w);
    }
    if (!vl.doomed) {
        uv_idle_stop(h);
        if (vl.shutting_down && vl.reaper_open == 1) {
            vl.reaper_open = 2;
            uv_close((uv_handle_t *)h, reaper_close_cb);
        }
    }
}

int tnve_virt_loop_add_handle(int fd, int events, virEventHandleCallback cb, void *opaque,
                              virFreeCallback ff)
{
    if (foreign_thread() || !vl.loop || vl.shutting_down || fd < 0 || !cb)
        return -1;
    struct vl_watch *w = calloc(1, sizeof *w);
    if (!w)
        return -1;
    struct vl_poll *p = poll_find(fd);
    if (!p) {
        p = calloc(1, sizeof *p);
        if (!p) {
            free(w);
            return -1;
        }
        int err = uv_poll_init(vl.loop, &p->poll, fd);
        if (err < 0) {
            SNV_ERR("virt-loop", "poll init failed fd=%d err=%s", fd, uv_strerror(err));
            free(p);
            free(w);
            return -1;
        }
        p->fd = fd;
        p->poll.data = p;
        p->next = vl.polls;
        vl.polls = p;
        vl.n_polls++;
    }
    if (vl.next_watch >= INT32_MAX - 1)
        vl.next_watch = 0;
    w->id = ++vl.next_watch;
    w->fd = fd;
    w->events = events;
    w->cb = cb;
    w->opaque = opaque;
    w->ff = ff;
    w->p = p;
    w->next = vl.watches;
    vl.watches = w;
    vl.n_watches++;
    poll_refresh(p);
    return w->id;
}

void tnve_virt_loop_update_handle(int watch, int events)
{
    if (foreign_thread())
        return;
    struct vl_watch *w = watch_find(watch);
    if (!w)
        return;
    w->events = events;
    poll_refresh(w->p);
}

int tnve_virt_loop_remove_handle(int watch)
{
    if (foreign_thread())
        return -1;
    struct vl_watch **pw = &vl.watches;
    while (*pw && (*pw)->id != watch)
        pw = &(*pw)->next;
    struct vl_watch *w = *pw;
    if (!w)
        return -1;
    *pw = w->next;
    vl.n_watches--;
    struct vl_poll *p = w->p;
    w->p = NULL;
    poll_refresh(p);
    w->next = vl.doomed;
    vl.doomed = w;
    vl.n_pending++;
    if (vl.reaper_open == 1)
        uv_idle_start(&vl.reaper, reaper_cb);
    return 0;
}

static void timeout_fire(struct vl_timeout *t)
{
    vl.dispatched++;
    t->cb(t->id, t->opaque);
}

static void timer_cb(uv_timer_t *h)
{
    timeout_fire(h->data);
}

static void idle_cb(uv_idle_t *h)
{
    timeout_fire(h->data);
}

static void timeout_arm(struct vl_timeout *t)
{
    uv_timer_stop(&t->timer);
    uv_idle_stop(&t->idle);
    if (t->period == 0)
        uv_idle_start(&t->idle, idle_cb);
    else if (t->period > 0)
        uv_timer_start(&t->timer, timer_cb, (uint64_t)t->period, (uint64_t)t->period);
}

int tnve_virt_loop_add_timeout(int period_ms, virEventTimeoutCallback cb, void *opaque,
                               virFreeCallback ff)
{
    if (foreign_thread() || !vl.loop || vl.shutting_down || !cb)
        return -1;
    struct vl_timeout *t = calloc(1, sizeof *t);
    if (!t)
        return -1;
    uv_timer_init(vl.loop, &t->timer);
    uv_idle_init(vl.loop, &t->idle);
    t->timer.data = t;
    t->idle.data = t;
    if (vl.next_timeout >= INT32_MAX - 1)
        vl.next_timeout = 0;
    t->id = ++vl.next_timeout;
    t->period = period_ms < 0 ? -1 : period_ms;
    t->cb = cb;
    t->opaque = opaque;
    t->ff = ff;
    t->next = vl.timeouts;
    vl.timeouts = t;
    vl.n_timeouts++;
    timeout_arm(t);
    return t->id;
}

void tnve_virt_loop_update_timeout(int timer, int period_ms)
{
    if (foreign_thread())
        return;
    struct vl_timeout *t = timeout_find(timer);
    if (!t)
        return;
    t->period = period_ms < 0 ? -1 : period_ms;
    timeout_arm(t);
}

static void timeout_close_cb(uv_handle_t *h)
{
    struct vl_timeout *t = h->data;
    if (--t->closes_pending > 0)
        return;
    if (t->ff)
        t->ff(t->opaque);
    vl.n_pending--;
    free(t);
}

int tnve_virt_loop_remove_timeout(int timer)
{
    if (foreign_thread())
        return -1;
    struct vl_timeout **pt = &vl.timeouts;
    while (*pt && (*pt)->id != timer)
        pt = &(*pt)->next;
    struct vl_timeout *t = *pt;
    if (!t)
        return -1;
    *pt = t->next;
    vl.n_timeouts--;
    vl.n_pending++;
    t->closes_pending = 2;
    uv_close((uv_handle_t *)&t->timer, timeout_close_cb);
    uv_close((uv_handle_t *)&t->idle, timeout_close_cb);
    return 0;
}

int tnve_virt_loop_init(uv_loop_t *loop)
{
    if (vl.loop)
        return vl.loop == loop && !vl.shutting_down ? 0 : -EBUSY;
    vl.loop = loop;
    vl.owner = uv_thread_self();
    vl.shutting_down = 0;
    uv_idle_init(loop, &vl.reaper);
    vl.reaper_open = 1;
    if (!vl.registered) {
        virEventRegisterImpl(tnve_virt_loop_add_handle, tnve_virt_loop_update_handle,
                             tnve_virt_loop_remove_handle, tnve_virt_loop_add_timeout,
                             tnve_virt_loop_update_timeout, tnve_virt_loop_remove_timeout);
        vl.registered = 1;
    }
    return 0;
}

void tnve_virt_loop_uninit(void)
{
    if (!vl.loop || vl.shutting_down)
        return;
    while (vl.watches)
        tnve_virt_loop_remove_handle(vl.watches->id);
    while (vl.timeouts)
        tnve_virt_loop_remove_timeout(vl.timeouts->id);
    vl.shutting_down = 1;
    if (vl.doomed) {
        uv_idle_start(&vl.reaper, reaper_cb); /* closes itself once drained */
    } else if (vl.reaper_open == 1) {
        vl.reaper_open = 2;
        uv_close((uv_handle_t *)&vl.reaper, reaper_close_cb);
    }
}

void tnve_virt_loop_get_stats(struct tnve_virt_loop_stats *st)
{
    st->watches = vl.n_watches;
    st->polls = vl.n_polls;
    st->timeouts = vl.n_timeouts;
    st->pending = vl.n_pending;
    st->dispatched = vl.dispatched;
}
