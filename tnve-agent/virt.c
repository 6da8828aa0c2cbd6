/* virt.c: libvirt connection, events, domain XML and addresses (see virt.h).
 *
 * Handles: `timer` (reconnect and deferred teardown after a close callback), `work` (a 0 ms
 * timer draining the event queue; started when the queue becomes non-empty, never re-armed
 * from inside its own callback), `poll` (address polling), `read_async` (an event's domain
 * read finished).  libvirt callbacks only queue work.
 *
 * Reading a domain (state, XML) waits for libvirtd's lock on that domain, and libvirtd
 * holds that lock while it runs the qemu hook, which waits for this agent's answer on the
 * control socket: an event of a domain that is being started, read from the loop, would
 * stop the loop until the hook times out.  So events are read by a thread of their own
 * (the "reader") over a connection of its own (with no events or keepalive, see
 * virt-loop.h); one event is in flight at a time and its result is applied on the loop, so
 * events still take effect in order.  Everything else runs on the loop thread.
 */
#include "virt.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "domxml.h"
#include "events.h"
#include "sncp-error.h"
#include "snv-log.h"

enum { VIRT_MAX_QUEUE = 100000, VIRT_MAX_POLL = 4096 };

struct virt_event {
    struct virt_event *next;
    uint8_t uuid[16];
    char name[256];
    int event, detail;
    uint64_t received;    /* uv_now, ms */
    uint64_t received_ns; /* uv_hrtime */
    virDomainPtr dom;     /* a reference of our own */
};

/* One domain read by the reader thread: the request is set by the loop, the rest by the
 * reader. */
struct virt_read {
    uint8_t uuid[16];
    int want_state;
    int gone;     /* libvirt has no such domain */
    int state_ok; /* state and reason are valid */
    int state, reason;
    char *xml; /* NULL: not readable, see err */
    char err[256];
};

/* Shared by the loop and the reader thread (under lock).  The thread frees it once `quit`
 * is set, possibly after the loop side is gone. */
struct virt_reader {
    uv_mutex_t lock;
    uv_cond_t cond;
    char *uri;
    struct virt_read *job;  /* to read */
    struct virt_read *done; /* read, not yet taken by the loop */
    uv_async_t *async;      /* NULL once the loop side is gone */
    int quit;
};

struct tnve_virt {
    uv_loop_t *loop;
    struct tnve_virt_config cfg;
    char *uri;
    struct tnve_rec *recs[TNVE_MAX_NNVES]; /* one per nNVE, each told every change */
    unsigned n_recs;
    virConnectPtr conn;
    int cb_ids[4];
    int close_registered;
    int lost; /* the close callback ran: tear down from the timer */
    uv_timer_t timer, work, poll;
    uv_async_t read_async;
    struct virt_reader *reader;     /* NULL: no thread, events are read on the loop */
    struct virt_event *reading;     /* the event whose domain the reader reads */
    int reading_need_xml;           /* its XML is needed (else only its state) */
    unsigned conn_gen, reading_gen; /* a read started on an older connection is dropped */
    int open_handles;
    int destroying;
    unsigned failures;
    uint32_t rng;
    struct virt_event *q_head, *q_tail;
    unsigned q_len;
    int q_overflow;
    uint64_t events, reconnects, listings, xml_errors, dropped;
    uint64_t current_event_time;
    char last_error[256];
};

/* ---------------------------------------------------------------- the reconcilers
 * Every nNVE's reconciler holds the whole desired state; each decides what its nNVE
 * serves.  A domain is busy while any of them holds a hook request for it. */

static int recs_domain_effect(struct tnve_virt *v, const uint8_t uuid[16], enum tnve_effect e,
                              uint16_t flags, const char *state, uint64_t now)
{
    int rc = 0;
    for (unsigned i = 0; i < v->n_recs; i++) {
        int r = tnve_rec_domain_effect(v->recs[i], uuid, e, flags, state, now);
        if (i == 0)
            rc = r;
    }
    return rc;
}

static int recs_domain_update(struct tnve_virt *v, const struct tnve_domxml *x, enum tnve_effect e,
                              uint16_t flags, const char *state, uint64_t now)
{
    int rc = 0;
    for (unsigned i = 0; i < v->n_recs; i++) {
        int r = tnve_rec_domain_update(v->recs[i], x, e, flags, state, now);
        if (r < 0 && !rc)
            rc = r;
    }
    return rc;
}

static int recs_domain_known(struct tnve_virt *v, const uint8_t uuid[16])
{
    return tnve_rec_domain_known(v->recs[0], uuid);
}

static int recs_domain_busy(struct tnve_virt *v, const uint8_t uuid[16])
{
    for (unsigned i = 0; i < v->n_recs; i++)
        if (tnve_rec_domain_busy(v->recs[i], uuid))
            return 1;
    return 0;
}

static void recs_set_stamp(struct tnve_virt *v, uint64_t stamp)
{
    for (unsigned i = 0; i < v->n_recs; i++)
        tnve_rec_set_stamp(v->recs[i], stamp);
}

static void recs_domain_remove(struct tnve_virt *v, const uint8_t uuid[16], uint16_t flags,
                               uint64_t now)
{
    for (unsigned i = 0; i < v->n_recs; i++)
        tnve_rec_domain_remove(v->recs[i], uuid, flags, now);
}

static void recs_inventory_begin(struct tnve_virt *v)
{
    for (unsigned i = 0; i < v->n_recs; i++)
        tnve_rec_inventory_begin(v->recs[i]);
}

static void recs_inventory_end(struct tnve_virt *v, uint64_t now)
{
    for (unsigned i = 0; i < v->n_recs; i++)
        tnve_rec_inventory_end(v->recs[i], now);
}

static void recs_set_addresses(struct tnve_virt *v, const uint8_t uuid[16], const uint8_t mac[6],
                               const struct sncp_addr *addrs, unsigned n, uint64_t now)
{
    for (unsigned i = 0; i < v->n_recs; i++)
        tnve_rec_set_addresses(v->recs[i], uuid, mac, addrs, n, now);
}

static void virt_connect(struct tnve_virt *v);
static void virt_list(struct tnve_virt *v);

static void silent_error(void *ud, virErrorPtr err)
{
    (void)ud;
    if (err && err->message)
        SNV_DBG("virt", "libvirt: %s", err->message);
}

static const char *last_verr(void)
{
    const char *m = virGetLastErrorMessage();
    return m ? m : "unknown libvirt error";
}

/* ---------------------------------------------------------------- domain refresh */

static uint64_t now_ms(struct tnve_virt *v)
{
    return uv_now(v->loop);
}

static int domain_gone_error(void)
{
    virErrorPtr e = virGetLastError();
    return e && e->code == VIR_ERR_NO_DOMAIN;
}

/* Hands the domain's XML (NULL: unreadable for the reason `why`) to the reconciler with the
 * effect; without a usable XML only the effect is applied. */
static void take_xml(struct tnve_virt *v, const uint8_t uuid[16], const char *name, const char *xml,
                     const char *why, enum tnve_effect effect, uint16_t flags, const char *what,
                     uint64_t now)
{
    if (!xml) {
        v->xml_errors++;
        SNV_WARN("virt", "cannot read domain XML domain=%s err=%s", name, why);
        recs_domain_effect(v, uuid, effect, flags, what, now);
        return;
    }
    struct tnve_domxml *x = malloc(sizeof *x);
    if (!x)
        return;
    char err[256];
    if (tnve_domxml_parse(xml, strlen(xml), x, err, sizeof err) < 0) {
        v->xml_errors++;
        SNV_WARN("virt", "domain XML rejected domain=%s err=%s", name, err);
        recs_domain_effect(v, uuid, effect, flags, what, now);
    } else {
        tnve_domxml_resolve(x, v->cfg.rules, v->cfg.n_rules);
        recs_domain_update(v, x, effect, flags, what, now);
    }
    free(x);
}

/* 1 when `dom` is the destination of a migration under way.  libvirt (9.0) pauses the
 * incoming domain with reason MIGRATION, as it pauses the source at the switch-over; only
 * the source has job statistics: the destination refuses them with OPERATION_UNSUPPORTED
 * ("available only on the source host"), or, where a libvirt reports them, names the
 * operation MIGRATION_IN. */
static int incoming_migration(virDomainPtr dom)
{
    int type = 0, nparams = 0, op = 0;
    virTypedParameterPtr params = NULL;
    if (virDomainGetJobStats(dom, &type, &params, &nparams, 0) < 0) {
        virErrorPtr e = virGetLastError();
        return e && e->code == VIR_ERR_OPERATION_UNSUPPORTED;
    }
    int in = virTypedParamsGetInt(params, nparams, VIR_DOMAIN_JOB_OPERATION, &op) == 1 &&
             op == VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN;
    virTypedParamsFree(params, nparams);
    return in;
}

/* Reads what is needed of `dom` (state, XML) and hands it to the reconciler with the
 * event's effect, or (listing == 1) the effect the domain's state implies.  A listed domain
 * paused for an incoming migration is Associated with MIGRATION (the guest still runs at
 * the source: activating it here would take its traffic away before the switch-over).  Returns 1
 * when libvirt says the domain no longer exists, else 0. */
static int refresh(struct tnve_virt *v, virDomainPtr dom, const struct tnve_event_action *a,
                   int listing)
{
    uint8_t uuid[16];
    if (virDomainGetUUID(dom, uuid) < 0)
        return 0;
    int known = recs_domain_known(v, uuid);
    enum tnve_effect effect = listing ? TNVE_EFFECT_NONE : a->effect;
    uint16_t flags = listing ? 0 : a->flags;
    const char *what = listing ? "listed" : a->name;
    int need_xml = listing || a->refresh || !known;
    /* "Not running" effects (define, undefine, stop) follow the domain's state as it is
     * now, exactly as a listing would: a config change or an undefine of a running domain
     * does not stop it, a redefined managed-saved domain stays Associated, and an event
     * processed late never undoes a newer state.  Other events need no state read. */
    if (listing || effect == TNVE_EFFECT_INACTIVE || effect == TNVE_EFFECT_UNDEFINE) {
        int state = 0, reason = 0;
        if (virDomainGetState(dom, &state, &reason, 0) < 0)
            return domain_gone_error();
        if (listing && state == VIR_DOMAIN_PAUSED && reason == VIR_DOMAIN_PAUSED_MIGRATION &&
            incoming_migration(dom)) {
            effect = TNVE_EFFECT_ASSOCIATE;
            flags = SNCP_F_MIGRATION;
            what = "incoming-migration";
        } else if (listing)
            effect = tnve_event_effect_for_state(state, reason, known, &what);
        else
            effect = tnve_event_effect_for_state(state, reason, 1, NULL);
    }
    uint64_t now = now_ms(v);
    if (!need_xml) {
        if (recs_domain_effect(v, uuid, effect, flags, what, now) == 0)
            return 0;
    }
    char *xml = virDomainGetXMLDesc(dom, 0);
    if (!xml && domain_gone_error())
        return 1;
    take_xml(v, uuid, virDomainGetName(dom), xml, last_verr(), effect, flags, what, now);
    free(xml);
    return 0;
}

static void event_free(struct virt_event *e)
{
    if (e->dom)
        virDomainFree(e->dom);
    free(e);
}

/* Drops every queued event (the connection they came from is gone; the listing after the
 * reconnect covers them). */
static void queue_flush(struct tnve_virt *v)
{
    while (v->q_head) {
        struct virt_event *e = v->q_head;
        v->q_head = e->next;
        event_free(e);
    }
    v->q_tail = NULL;
    v->q_len = 0;
}

/* ---------------------------------------------------------------- the reader thread */

static void read_free(struct virt_read *j)
{
    if (j) {
        free(j->xml);
        free(j);
    }
}

/* Reader thread: reads j's domain over *conn (opened, and opened again after an error that
 * is not "no such domain", as needed). */
static void read_domain(virConnectPtr *conn, const char *uri, struct virt_read *j)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!*conn && !(*conn = virConnectOpen(uri))) {
            snprintf(j->err, sizeof j->err, "cannot connect: %s", last_verr());
            return;
        }
        virDomainPtr dom = virDomainLookupByUUID(*conn, j->uuid);
        if (!dom) {
            j->gone = domain_gone_error();
            snprintf(j->err, sizeof j->err, "%s", last_verr());
            if (j->gone)
                return;
            /* libvirtd may have restarted: a new connection, once */
            virConnectClose(*conn);
            *conn = NULL;
            continue;
        }
        if (j->want_state) {
            if (virDomainGetState(dom, &j->state, &j->reason, 0) < 0) {
                j->gone = domain_gone_error();
                snprintf(j->err, sizeof j->err, "%s", last_verr());
                virDomainFree(dom);
                return;
            }
            j->state_ok = 1;
        }
        j->xml = virDomainGetXMLDesc(dom, 0);
        if (!j->xml) {
            j->gone = domain_gone_error();
            snprintf(j->err, sizeof j->err, "%s", last_verr());
        }
        virDomainFree(dom);
        return;
    }
}

static void reader_free(struct virt_reader *r)
{
    read_free(r->job);
    read_free(r->done);
    uv_cond_destroy(&r->cond);
    uv_mutex_destroy(&r->lock);
    free(r->uri);
    free(r);
}

static void *reader_main(void *arg)
{
    struct virt_reader *r = arg;
    virConnectPtr conn = NULL;
    uv_mutex_lock(&r->lock);
    for (;;) {
        while (!r->job && !r->quit)
            uv_cond_wait(&r->cond, &r->lock);
        if (r->quit)
            break;
        struct virt_read *j = r->job;
        r->job = NULL;
        uv_mutex_unlock(&r->lock);
        read_domain(&conn, r->uri, j);
        uv_mutex_lock(&r->lock);
        r->done = j;
        if (r->quit)
            break;
        uv_async_send(r->async);
    }
    uv_mutex_unlock(&r->lock);
    if (conn)
        virConnectClose(conn);
    reader_free(r);
    return NULL;
}

static struct virt_reader *reader_start(const char *uri)
{
    struct virt_reader *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->uri = strdup(uri);
    if (!r->uri || uv_mutex_init(&r->lock) < 0) {
        free(r->uri);
        free(r);
        return NULL;
    }
    if (uv_cond_init(&r->cond) < 0) {
        uv_mutex_destroy(&r->lock);
        free(r->uri);
        free(r);
        return NULL;
    }
    pthread_t th;
    if (pthread_create(&th, NULL, reader_main, r) != 0) {
        reader_free(r);
        return NULL;
    }
    pthread_detach(th);
    return r;
}

/* Loop side: the thread finishes (and frees the reader) on its own, after a read in
 * progress, which may wait for libvirtd for a long time. */
static void reader_stop(struct virt_reader *r)
{
    uv_mutex_lock(&r->lock);
    r->quit = 1;
    r->async = NULL;
    uv_cond_signal(&r->cond);
    uv_mutex_unlock(&r->lock);
}

/* ---------------------------------------------------------------- event processing */

/* Applies a finished read of e's domain (j NULL: the read is not needed: the event's
 * effect alone). */
static void event_apply(struct tnve_virt *v, const struct virt_event *e, const struct virt_read *j)
{
    const struct tnve_event_action *a = tnve_event_lookup(e->event, e->detail);
    uint64_t now = now_ms(v);
    char us[40];
    sncp_uuid_format(e->uuid, us, sizeof us);
    v->current_event_time = e->received;
    recs_set_stamp(v, e->received_ns);
    if (!j) {
        recs_domain_effect(v, e->uuid, a->effect, a->flags, a->name, now);
    } else if (j->gone) {
        /* Gone (undefined, or a transient domain that stopped). */
        SNV_INFO("virt", "domain gone domain=%s uuid=%s", e->name, us);
        recs_domain_remove(v, e->uuid, a->flags, now);
    } else if (j->want_state && !j->state_ok) {
        SNV_WARN("virt", "cannot read domain state domain=%s err=%s", e->name, j->err);
    } else {
        /* "Not running" effects (define, undefine, stop) follow the domain's state as it
         * is now (see refresh()). */
        enum tnve_effect effect = a->effect;
        if (j->want_state)
            effect = tnve_event_effect_for_state(j->state, j->reason, 1, NULL);
        if (v->reading_need_xml ||
            recs_domain_effect(v, e->uuid, effect, a->flags, a->name, now) != 0)
            take_xml(v, e->uuid, e->name, j->xml, j->err, effect, a->flags, a->name, now);
    }
    recs_set_stamp(v, 0);
    v->current_event_time = 0;
}

/* Logs e; returns its action, or NULL when there is no connection to read it from. */
static const struct tnve_event_action *event_begin(struct tnve_virt *v, const struct virt_event *e)
{
    const struct tnve_event_action *a = tnve_event_lookup(e->event, e->detail);
    char us[40];
    sncp_uuid_format(e->uuid, us, sizeof us);
    SNV_INFO("virt", "event %s domain=%s uuid=%s effect=%s", a->name, e->name, us,
             tnve_effect_name(a->effect));
    if (!v->conn || v->lost)
        return NULL;
    return a;
}

/* Starts processing e: returns 1 when its domain is being read (e is then v->reading),
 * 0 when it is done (e is to be freed). */
static int event_start(struct tnve_virt *v, struct virt_event *e)
{
    const struct tnve_event_action *a = event_begin(v, e);
    if (!a)
        return 0;
    int need_state = a->effect == TNVE_EFFECT_INACTIVE || a->effect == TNVE_EFFECT_UNDEFINE;
    int need_xml = a->refresh || !recs_domain_known(v, e->uuid);
    if (!need_state && !need_xml) {
        /* no libvirt call needed, unless the reconciler wants the domain's XML */
        if (recs_domain_effect(v, e->uuid, a->effect, a->flags, a->name, now_ms(v)) == 0)
            return 0;
        need_xml = 1;
    }
    struct virt_read *j = calloc(1, sizeof *j);
    if (!j) {
        event_apply(v, e, NULL);
        return 0;
    }
    memcpy(j->uuid, e->uuid, 16);
    j->want_state = need_state;
    v->reading = e;
    v->reading_need_xml = need_xml;
    v->reading_gen = v->conn_gen;
    uv_mutex_lock(&v->reader->lock);
    v->reader->job = j;
    uv_cond_signal(&v->reader->cond);
    uv_mutex_unlock(&v->reader->lock);
    return 1;
}

static void work_cb(uv_timer_t *t);

static void read_done_cb(uv_async_t *h)
{
    struct tnve_virt *v = h->data;
    if (v->destroying || !v->reader)
        return;
    uv_mutex_lock(&v->reader->lock);
    struct virt_read *j = v->reader->done;
    v->reader->done = NULL;
    uv_mutex_unlock(&v->reader->lock);
    struct virt_event *e = v->reading;
    if (!e) {
        read_free(j);
        return;
    }
    if (!j)
        return;
    v->reading = NULL;
    /* A read from before a reconnect is dropped: the listing after it covers the event. */
    if (v->conn && !v->lost && v->reading_gen == v->conn_gen)
        event_apply(v, e, j);
    event_free(e);
    read_free(j);
    if (v->q_head || v->q_overflow)
        uv_timer_start(&v->work, work_cb, 0, 0);
}

/* Without a reader thread (it could not be started): the event is read on the loop. */
static void process_event_here(struct tnve_virt *v, const struct virt_event *e)
{
    const struct tnve_event_action *a = event_begin(v, e);
    if (!a)
        return;
    char us[40];
    sncp_uuid_format(e->uuid, us, sizeof us);
    v->current_event_time = e->received;
    recs_set_stamp(v, e->received_ns);
    if (refresh(v, e->dom, a, 0)) {
        SNV_INFO("virt", "domain gone domain=%s uuid=%s", e->name, us);
        recs_domain_remove(v, e->uuid, a->flags, now_ms(v));
    }
    recs_set_stamp(v, 0);
    v->current_event_time = 0;
}

static void work_cb(uv_timer_t *t)
{
    struct tnve_virt *v = t->data;
    if (v->destroying || v->reading)
        return; /* read_done_cb starts the next */
    if (v->q_overflow && v->conn) {
        v->q_overflow = 0;
        SNV_WARN("virt", "event queue overflowed dropped=%llu; re-listing all domains",
                 (unsigned long long)v->dropped);
        virt_list(v);
    }
    struct virt_event **pe = &v->q_head;
    struct virt_event *prev = NULL;
    while (*pe) {
        struct virt_event *e = *pe;
        /* libvirt holds a domain whose hook we are answering: leave its events queued. */
        if (recs_domain_busy(v, e->uuid)) {
            prev = e;
            pe = &e->next;
            continue;
        }
        *pe = e->next;
        if (v->q_tail == e)
            v->q_tail = prev;
        v->q_len--;
        e->next = NULL;
        if (!v->reader) {
            process_event_here(v, e);
        } else if (event_start(v, e)) {
            return; /* one read at a time */
        }
        event_free(e);
    }
}

static void queue_event(struct tnve_virt *v, virDomainPtr dom, int event, int detail)
{
    v->events++;
    if (v->q_len >= VIRT_MAX_QUEUE) {
        v->dropped++;
        v->q_overflow = 1;
        uv_timer_start(&v->work, work_cb, 0, 0);
        return;
    }
    struct virt_event *e = calloc(1, sizeof *e);
    if (!e || virDomainGetUUID(dom, e->uuid) < 0) {
        free(e);
        v->dropped++;
        v->q_overflow = 1;
        uv_timer_start(&v->work, work_cb, 0, 0);
        return;
    }
    const char *name = virDomainGetName(dom);
    snprintf(e->name, sizeof e->name, "%s", name ? name : "-");
    if (virDomainRef(dom) < 0) {
        free(e);
        v->dropped++;
        v->q_overflow = 1;
        uv_timer_start(&v->work, work_cb, 0, 0);
        return;
    }
    e->dom = dom;
    e->event = event;
    e->detail = detail;
    e->received = uv_now(v->loop);
    e->received_ns = uv_hrtime();
    if (v->q_tail)
        v->q_tail->next = e;
    else
        v->q_head = e;
    v->q_tail = e;
    v->q_len++;
    if (!v->reading && !uv_is_active((uv_handle_t *)&v->work))
        uv_timer_start(&v->work, work_cb, 0, 0);
}

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
    (void)conn;
    queue_event(opaque, dom, event, detail);
    return 0;
}

static void on_device_added(virConnectPtr conn, virDomainPtr dom, const char *alias, void *opaque)
{
    (void)conn;
    (void)alias;
    queue_event(opaque, dom, TNVE_EVENT_DEVICE_ADDED, 0);
}

static void on_device_removed(virConnectPtr conn, virDomainPtr dom, const char *alias, void *opaque)
{
    (void)conn;
    (void)alias;
    queue_event(opaque, dom, TNVE_EVENT_DEVICE_REMOVED, 0);
}

static void on_metadata(virConnectPtr conn, virDomainPtr dom, int type, const char *nsuri,
                        void *opaque)
{
    (void)conn;
    if (type == VIR_DOMAIN_METADATA_ELEMENT && nsuri && !strcmp(nsuri, TNVE_DOMXML_NS))
        queue_event(opaque, dom, TNVE_EVENT_METADATA_CHANGE, 0);
}

/* ---------------------------------------------------------------- listing */

static void poll_domain(struct tnve_virt *v, const uint8_t uuid[16]);

static void virt_list(struct tnve_virt *v)
{
    virDomainPtr *doms = NULL;
    int n = virConnectListAllDomains(v->conn, &doms, 0);
    if (n < 0) {
        SNV_WARN("virt", "listing domains failed err=%s", last_verr());
        return;
    }
    v->listings++;
    recs_inventory_begin(v);
    for (int i = 0; i < n; i++) {
        uint8_t uuid[16];
        if (virDomainGetUUID(doms[i], uuid) == 0 && recs_domain_busy(v, uuid)) {
            /* answered by the hook right now: keep it as it is */
            recs_domain_effect(v, uuid, TNVE_EFFECT_NONE, 0, NULL, now_ms(v));
        } else {
            refresh(v, doms[i], NULL, 1);
            /* addresses before the SYNC re-announces the domain */
            if (v->cfg.address_poll_ms && virDomainIsActive(doms[i]) == 1)
                poll_domain(v, uuid);
        }
        virDomainFree(doms[i]);
    }
    free(doms);
    recs_inventory_end(v, now_ms(v));
    SNV_INFO("virt", "listed domains count=%d uri=%s", n, v->cfg.uri);
}

/* ---------------------------------------------------------------- connection */

static uint64_t next_delay(struct tnve_virt *v)
{
    uint64_t d = v->cfg.retry_min_ms;
    for (unsigned i = 1; i < v->failures && d < v->cfg.retry_max_ms; i++)
        d *= 2;
    if (d > v->cfg.retry_max_ms)
        d = v->cfg.retry_max_ms;
    v->rng ^= v->rng << 13;
    v->rng ^= v->rng >> 17;
    v->rng ^= v->rng << 5;
    d = d * (750 + v->rng % 500) / 1000;
    return d ? d : 1;
}

static void drop_connection(struct tnve_virt *v)
{
    queue_flush(v);
    if (!v->conn)
        return;
    for (int i = 0; i < 4; i++) {
        if (v->cb_ids[i] >= 0)
            virConnectDomainEventDeregisterAny(v->conn, v->cb_ids[i]);
        v->cb_ids[i] = -1;
    }
    if (v->close_registered)
        virConnectUnregisterCloseCallback(v->conn, NULL);
    v->close_registered = 0;
    virConnectClose(v->conn);
    v->conn = NULL;
}

static void timer_cb(uv_timer_t *t)
{
    struct tnve_virt *v = t->data;
    if (v->destroying)
        return;
    if (v->lost) {
        v->lost = 0;
        drop_connection(v);
        v->failures = 0;
    }
    if (!v->conn)
        virt_connect(v);
}

static void schedule_reconnect(struct tnve_virt *v)
{
    v->failures++;
    uint64_t d = next_delay(v);
    SNV_INFO("virt", "reconnecting to libvirt in %llu ms uri=%s", (unsigned long long)d,
             v->cfg.uri);
    uv_timer_start(&v->timer, timer_cb, d, 0);
}

static void on_close(virConnectPtr conn, int reason, void *opaque)
{
    (void)conn;
    struct tnve_virt *v = opaque;
    static const char *const reasons[] = {"error", "eof", "keepalive", "client"};
    const char *why = reason >= 0 && reason < 4 ? reasons[reason] : "unknown";
    snprintf(v->last_error, sizeof v->last_error, "connection closed: %s", why);
    SNV_WARN("virt", "libvirt connection lost uri=%s reason=%s", v->cfg.uri, why);
    if (v->destroying || v->lost)
        return;
    /* Not from inside libvirt's callback: tear down and reconnect from our timer. */
    v->lost = 1;
    v->failures = 0;
    uv_timer_start(&v->timer, timer_cb, 0, 0);
}

static void virt_connect(struct tnve_virt *v)
{
    v->reconnects++;
    virConnectPtr conn = virConnectOpen(v->cfg.uri);
    if (!conn) {
        snprintf(v->last_error, sizeof v->last_error, "%s", last_verr());
        SNV_WARN("virt", "cannot connect to libvirt uri=%s err=%s", v->cfg.uri, v->last_error);
        schedule_reconnect(v);
        return;
    }
    v->conn = conn;
    if (v->cfg.keepalive_s && virConnectSetKeepAlive(conn, (int)v->cfg.keepalive_s, 3) < 0)
        SNV_WARN("virt", "libvirt keepalive not enabled err=%s", last_verr());
    if (virConnectRegisterCloseCallback(conn, on_close, v, NULL) == 0)
        v->close_registered = 1;
    struct {
        int id;
        virConnectDomainEventGenericCallback cb;
        int required;
    } subs[4] = {
        {VIR_DOMAIN_EVENT_ID_LIFECYCLE, VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), 1},
        {VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, VIR_DOMAIN_EVENT_CALLBACK(on_device_added), 0},
        {VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, VIR_DOMAIN_EVENT_CALLBACK(on_device_removed), 0},
        {VIR_DOMAIN_EVENT_ID_METADATA_CHANGE, VIR_DOMAIN_EVENT_CALLBACK(on_metadata), 0},
    };
    for (int i = 0; i < 4; i++) {
        v->cb_ids[i] =
            virConnectDomainEventRegisterAny(conn, NULL, subs[i].id, subs[i].cb, v, NULL);
        if (v->cb_ids[i] < 0 && subs[i].required) {
            snprintf(v->last_error, sizeof v->last_error, "event registration failed: %s",
                     last_verr());
            SNV_ERR("virt", "%s uri=%s", v->last_error, v->cfg.uri);
            drop_connection(v);
            schedule_reconnect(v);
            return;
        }
    }
    v->failures = 0;
    v->conn_gen++;
    v->last_error[0] = '\0';
    SNV_INFO("virt", "connected to libvirt uri=%s", v->cfg.uri);
    virt_list(v);
}

/* ---------------------------------------------------------------- addresses */

/* Addresses come from the guest (agent, leases): complaints about them are rate-limited. */
static struct snv_ratelimit bad_addr_rl = SNV_RATELIMIT_INIT(1, 10);

static int add_addr(struct sncp_addr *out, unsigned *n, const uint8_t mac[6],
                    const virDomainIPAddress *ip)
{
    if (*n >= SNCP_MAX_ADDRS || !ip->addr)
        return 0;
    struct sncp_addr a;
    memset(&a, 0, sizeof a);
    char text[128];
    char macs[SNCP_MAC_STRLEN];
    sncp_mac_format(mac, macs, sizeof macs);
    snprintf(text, sizeof text, "%s@%s", ip->addr, macs);
    if (sncp_addr_parse(text, &a) != 0)
        return 0;
    const char *why;
    if (sncp_addr_check(&a, &why) != 0) {
        /* reported by the guest, but the nNVE would refuse it (INVALID_VALUE) */
        snv_log_rl(&bad_addr_rl, SNV_LOG_INFO, "virt", "address skipped: %s address=%s", why, text);
        return 0;
    }
    for (unsigned i = 0; i < *n; i++)
        if (!memcmp(&out[i], &a, sizeof a))
            return 0;
    out[(*n)++] = a;
    return 1;
}

static void poll_domain(struct tnve_virt *v, const uint8_t uuid[16])
{
    virDomainPtr dom = virDomainLookupByUUID(v->conn, uuid);
    if (!dom)
        return;
    struct per_mac {
        uint8_t mac[6];
        unsigned n;
        struct sncp_addr addrs[SNCP_MAX_ADDRS];
    };
    struct per_mac *macs = calloc(TNVE_MAX_VNICS, sizeof *macs);
    unsigned n_macs = 0;
    if (!macs) {
        virDomainFree(dom);
        return;
    }
    for (unsigned src = 0; src < 8; src++) {
        if (!(v->cfg.address_sources & (1u << src)))
            continue;
        virDomainInterfacePtr *ifs = NULL;
        int n = virDomainInterfaceAddresses(dom, &ifs, src, 0);
        if (n < 0) {
            SNV_DBG("virt", "interface addresses unavailable domain=%s source=%u err=%s",
                    virDomainGetName(dom), src, last_verr());
            continue;
        }
        for (int i = 0; i < n; i++) {
            uint8_t mac[6];
            if (ifs[i]->hwaddr && sncp_mac_parse(ifs[i]->hwaddr, mac) == 0) {
                unsigned k;
                for (k = 0; k < n_macs; k++)
                    if (!memcmp(macs[k].mac, mac, 6))
                        break;
                if (k == n_macs && n_macs < TNVE_MAX_VNICS)
                    memcpy(macs[n_macs++].mac, mac, 6);
                if (k < n_macs)
                    for (unsigned j = 0; j < ifs[i]->naddrs; j++)
                        add_addr(macs[k].addrs, &macs[k].n, mac, &ifs[i]->addrs[j]);
            }
            virDomainInterfaceFree(ifs[i]);
        }
        free(ifs);
    }
    for (unsigned k = 0; k < n_macs; k++)
        recs_set_addresses(v, uuid, macs[k].mac, macs[k].addrs, macs[k].n, now_ms(v));
    free(macs);
    virDomainFree(dom);
}

static void poll_cb(uv_timer_t *t)
{
    struct tnve_virt *v = t->data;
    if (v->destroying || !v->conn || v->lost)
        return;
    uint8_t(*uuids)[16] = calloc(VIRT_MAX_POLL, 16);
    if (!uuids)
        return;
    unsigned n = tnve_rec_active_domains(v->recs[0], uuids, VIRT_MAX_POLL);
    for (unsigned i = 0; i < n; i++)
        if (!recs_domain_busy(v, uuids[i]))
            poll_domain(v, uuids[i]);
    free(uuids);
}

/* ---------------------------------------------------------------- public */

int tnve_virt_create(uv_loop_t *loop, const struct tnve_virt_config *cfg,
                     struct tnve_rec *const *recs, unsigned n_recs, struct tnve_virt **out)
{
    if (!n_recs || n_recs > TNVE_MAX_NNVES)
        return -EINVAL;
    struct tnve_virt *v = calloc(1, sizeof *v);
    if (!v)
        return -ENOMEM;
    v->loop = loop;
    v->cfg = *cfg;
    v->uri = strdup(cfg->uri ? cfg->uri : "qemu:///system");
    if (!v->uri) {
        free(v);
        return -ENOMEM;
    }
    v->cfg.uri = v->uri;
    if (!v->cfg.retry_min_ms)
        v->cfg.retry_min_ms = 500;
    if (v->cfg.retry_max_ms < v->cfg.retry_min_ms)
        v->cfg.retry_max_ms = v->cfg.retry_min_ms;
    memcpy(v->recs, recs, n_recs * sizeof *recs);
    v->n_recs = n_recs;
    v->rng = (uint32_t)uv_hrtime() | 1;
    for (int i = 0; i < 4; i++)
        v->cb_ids[i] = -1;
    virSetErrorFunc(NULL, silent_error);
    uv_timer_init(loop, &v->timer);
    uv_timer_init(loop, &v->work);
    uv_timer_init(loop, &v->poll);
    uv_async_init(loop, &v->read_async, read_done_cb);
    v->timer.data = v->work.data = v->poll.data = v->read_async.data = v;
    v->open_handles = 4;
    v->reader = reader_start(v->uri);
    if (v->reader)
        v->reader->async = &v->read_async;
    else
        SNV_WARN("virt", "no domain reader thread: events are read on the loop, where a start "
                         "hook can stall them");
    if (v->cfg.address_poll_ms)
        uv_timer_start(&v->poll, poll_cb, v->cfg.address_poll_ms, v->cfg.address_poll_ms);
    *out = v;
    virt_connect(v);
    return 0;
}

static void handle_closed(uv_handle_t *h)
{
    struct tnve_virt *v = h->data;
    if (--v->open_handles > 0)
        return;
    free(v->uri);
    free(v);
}

void tnve_virt_destroy(struct tnve_virt *v)
{
    if (!v || v->destroying)
        return;
    v->destroying = 1;
    if (v->reader)
        reader_stop(v->reader);
    v->reader = NULL;
    if (v->reading)
        event_free(v->reading);
    v->reading = NULL;
    drop_connection(v);
    uv_close((uv_handle_t *)&v->timer, handle_closed);
    uv_close((uv_handle_t *)&v->work, handle_closed);
    uv_close((uv_handle_t *)&v->poll, handle_closed);
    uv_close((uv_handle_t *)&v->read_async, handle_closed);
}

void tnve_virt_set_rules(struct tnve_virt *v, const struct tnve_map_rule *rules, unsigned n)
{
    v->cfg.rules = rules;
    v->cfg.n_rules = n;
    tnve_virt_resync(v);
}

void tnve_virt_resync(struct tnve_virt *v)
{
    if (v->conn && !v->lost && !v->destroying)
        virt_list(v);
}

void tnve_virt_refresh_domain(struct tnve_virt *v, const uint8_t uuid[16])
{
    if (!v->conn || v->lost || v->destroying || recs_domain_busy(v, uuid))
        return;
    virDomainPtr dom = virDomainLookupByUUID(v->conn, uuid);
    if (!dom || refresh(v, dom, NULL, 1)) {
        recs_domain_remove(v, uuid, 0, now_ms(v));
        if (dom)
            virDomainFree(dom);
        return;
    }
    virDomainFree(dom);
}

void tnve_virt_kick(struct tnve_virt *v)
{
    if (v->q_head && !v->destroying && !v->reading && !uv_is_active((uv_handle_t *)&v->work))
        uv_timer_start(&v->work, work_cb, 0, 0);
}

json_t *tnve_virt_json(const struct tnve_virt *v)
{
    json_t *o = json_object();
    json_object_set_new(o, "connected", json_boolean(v->conn && !v->lost));
    json_object_set_new(o, "uri", json_string(v->cfg.uri));
    json_object_set_new(o, "events", json_integer((json_int_t)v->events));
    json_object_set_new(o, "queued", json_integer(v->q_len));
    json_object_set_new(o, "dropped", json_integer((json_int_t)v->dropped));
    json_object_set_new(o, "connects", json_integer((json_int_t)v->reconnects));
    json_object_set_new(o, "listings", json_integer((json_int_t)v->listings));
    json_object_set_new(o, "xml_errors", json_integer((json_int_t)v->xml_errors));
    json_object_set_new(o, "last_error", json_string(v->last_error));
    return o;
}

uint64_t tnve_virt_event_time(const struct tnve_virt *v)
{
    return v->current_event_time;
}
