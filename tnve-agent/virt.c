/* virt.c: libvirt connection, events, domain XML and addresses (see virt.h).
 *
 * Handles: `timer` (reconnect and deferred teardown after a close callback), `work` (a 0 ms
 * timer draining the event queue; started when the queue becomes non-empty, never re-armed
 * from inside its own callback), `poll` (address polling), `apply` (a 0 ms timer applying
 * a finished listing a slice at a time), `read_async` / `bulk_async` (a reader thread
 * finished a job), `post` (a check handle: the read behind an effect applied early goes to
 * the reader after the loop pass's requests left).  libvirt callbacks only queue work.
 *
 * Reading a domain (state, XML) waits for libvirtd's lock on that domain, and libvirtd
 * holds that lock while it runs the qemu hook, which waits for this agent's answer on the
 * control socket; listing a thousand domains takes seconds.  So the loop makes no libvirt
 * call but connecting and the event registrations: two threads of their own (the
 * "readers"), each with a connection of its own (with no events or keepalive, see
 * virt-loop.h), do the reading:
 *   - the event reader reads the domain of one event at a time (and re-reads a domain on
 *     the reconciler's request); its result is applied on the loop, so events take effect
 *     in order;
 *   - the bulk reader lists every domain (after a (re)connect, a resync, new rules) and
 *     polls addresses, while events go on.
 * A started domain the agent already knows is activated at once from the XML it has (the
 * definition): the live XML is read after, and corrects what it changes.
 *
 * A listing is framed on the loop: the inventory begins when the listing is asked for, and
 * ends once its result is applied.  A domain an event changed meanwhile keeps what the
 * event gave it (the event read libvirt later than, or as late as, the listing matters):
 * the listing's entry for it is skipped.
 */
#include "virt.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "domxml.h"
#include "events.h"
#include "sncp-error.h"
#include "snv-log.h"

enum {
    VIRT_MAX_QUEUE = 100000,
    VIRT_MAX_POLL = 4096,
    VIRT_APPLY_SLICE = 32, /* listed domains applied per loop pass, at most */
    VIRT_LIST_THREADS = 4, /* domain reads of a listing in flight at once */
    VIRT_DOM_CACHE = 1024, /* domains a reader thread keeps looked up */
    VIRT_EARLY_QUEUE = 64, /* events queued, at most, for a stop to be applied early */
};

/* A pseudo event: the reconciler asked for a domain to be read again. */
enum { VIRT_EVENT_REFRESH = 1000 };
/* and for at most about this long (one domain at least) */
#define VIRT_APPLY_BUDGET_NS (UINT64_C(2) * 1000 * 1000)
static const struct tnve_event_action refresh_action = {VIRT_EVENT_REFRESH,   -1, "refreshed",
                                                        TNVE_EFFECT_INACTIVE, 0,  1};

struct virt_event {
    struct virt_event *next;
    uint8_t uuid[16];
    char name[256];
    int event, detail;
    uint64_t received;    /* uv_now, ms */
    uint64_t received_ns; /* uv_hrtime */
};

/* The addresses of one vNIC, by MAC. */
struct virt_mac_addrs {
    uint8_t mac[6];
    unsigned n;
    struct sncp_addr addrs[SNCP_MAX_ADDRS];
};

/* One domain as a reader thread found it. */
struct virt_dom {
    uint8_t uuid[16];
    char name[256];
    int gone;     /* libvirt has no such domain */
    int state_ok; /* state and reason are valid */
    int state, reason;
    int active;
    char *xml; /* NULL: not readable, see err */
    char err[256];
    struct virt_mac_addrs *macs; /* addresses polled, n_macs of them */
    unsigned n_macs;
    int incoming; /* JOB_LIST: paused as the destination of a migration under way */
    int done;     /* JOB_LIST: read (atomic: set by a reader thread, read by the loop) */
};

enum virt_job_kind { JOB_READ, JOB_LIST, JOB_ADDRS };

/* Work for a reader thread: the request is set by the loop, the rest by the reader. */
struct virt_job {
    enum virt_job_kind kind;
    unsigned gen;                   /* the loop's connection generation when asked */
    int want_state, want_xml;       /* JOB_READ */
    unsigned sources;               /* JOB_LIST, JOB_ADDRS: address sources to poll (0: none) */
    uint64_t queued_ns, libvirt_ns; /* when asked; time spent in libvirt calls */
    struct virt_dom *doms;          /* JOB_READ: one, uuid set by the loop; JOB_ADDRS: uuids set by
                                     * the loop; JOB_LIST: what the listing found */
    unsigned n_doms;
    int failed; /* JOB_LIST: no listing, see err */
    int listed; /* JOB_LIST: doms and n_doms are set (atomic, as virt_dom.done) */
    char err[256];
};

/* Shared by the loop and one reader thread (under lock).  The thread frees it once `quit`
 * is set, possibly after the loop side is gone. */
struct virt_reader {
    uv_mutex_t lock;
    uv_cond_t cond;
    char *uri;
    struct virt_job *job;  /* to run */
    struct virt_job *done; /* ran, not yet taken by the loop */
    uv_async_t *async;     /* NULL once the loop side is gone */
    int quit;
    struct dom_cache *cache; /* the thread's own */
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
    uv_timer_t timer, work, poll, apply;
    uv_async_t read_async, bulk_async;
    uv_check_t post;              /* hands post_job to the event reader (post_cb) */
    struct virt_job *post_job;    /* the read behind an effect applied early */
    struct virt_reader *reader;   /* events */
    struct virt_reader *bulk;     /* listings, address polls */
    pthread_t reader_th, bulk_th; /* their threads (joined or detached at destroy) */
    struct virt_event *reading;   /* the event whose domain the reader reads */
    int reading_need_xml;         /* its XML is needed (else only its state) */
    int reading_applied;          /* its effect is applied already: the read follows */
    int reading_then_xml;         /* its state is read first, its XML after the effect */
    unsigned conn_gen;            /* a read started on an older connection is dropped */
    int bulk_busy;                /* a job is with the bulk reader */
    int list_wanted;              /* a listing is to start once the bulk reader is free */
    int listing;                  /* an inventory is open (from asking to applying) */
    struct virt_job *list_result; /* the listing being read and applied */
    int list_complete;            /* the bulk reader is done with list_result */
    unsigned list_pos;
    uint8_t (*touched)[16]; /* domains events changed since the listing began */
    unsigned n_touched, cap_touched;
    int touched_sorted;
    int open_handles;
    int destroying;
    unsigned failures;
    uint32_t rng;
    struct virt_event *q_head, *q_tail;
    unsigned q_len;
    int q_overflow;
    uint64_t events, reconnects, listings, xml_errors, dropped, early_activations, early_stops;
    uint64_t list_hold_max_ns; /* the longest a listing held the loop in one pass */
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

static uint64_t now_ms(struct tnve_virt *v)
{
    return uv_now(v->loop);
}

static int domain_gone_error(void)
{
    virErrorPtr e = virGetLastError();
    return e && e->code == VIR_ERR_NO_DOMAIN;
}

static int connected(const struct tnve_virt *v)
{
    return v->conn && !v->lost && !v->destroying;
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

static void event_free(struct virt_event *e)
{
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

/* ---------------------------------------------------------------- the reader threads */

static void job_free(struct virt_job *j)
{
    if (!j)
        return;
    for (unsigned i = 0; i < j->n_doms; i++) {
        free(j->doms[i].xml);
        free(j->doms[i].macs);
    }
    free(j->doms);
    free(j);
}

/* Allocates a job with room for n domains (n_doms = n).  NULL when out of memory. */
static struct virt_job *job_new(enum virt_job_kind kind, unsigned n)
{
    struct virt_job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->kind = kind;
    if (n && !(j->doms = calloc(n, sizeof *j->doms))) {
        free(j);
        return NULL;
    }
    j->n_doms = n;
    return j;
}

/* Addresses come from the guest (agent, leases): complaints about them are rate-limited.
 * Only the bulk reader uses it. */
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

/* Reader thread: the addresses of dom's vNICs from every source in `sources`. */
static void read_addrs(virDomainPtr dom, unsigned sources, struct virt_dom *d)
{
    struct virt_mac_addrs *macs = calloc(TNVE_MAX_VNICS, sizeof *macs);
    unsigned n_macs = 0;
    if (!macs)
        return;
    for (unsigned src = 0; src < 8; src++) {
        if (!(sources & (1u << src)))
            continue;
        virDomainInterfacePtr *ifs = NULL;
        int n = virDomainInterfaceAddresses(dom, &ifs, src, 0);
        if (n < 0) {
            SNV_DBG("virt", "interface addresses unavailable domain=%s source=%u err=%s", d->name,
                    src, last_verr());
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
                    for (unsigned a = 0; a < ifs[i]->naddrs; a++)
                        add_addr(macs[k].addrs, &macs[k].n, mac, &ifs[i]->addrs[a]);
            }
            virDomainInterfaceFree(ifs[i]);
        }
        free(ifs);
    }
    d->macs = macs;
    d->n_macs = n_macs;
}

/* Reader thread: reads what is asked of `dom` into d. */
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

/* incoming_migration() with a bound.  At the source the statistics come from QEMU, which
 * can stall at the switch-over while the destination does not read (a stopped or dying
 * destination): the call then waits as long.  The destination refuses at once, without
 * asking QEMU, so no answer within INCOMING_WAIT_MS means "not the destination".  The
 * call goes on in a thread of its own, which frees what it holds when it returns. */
enum { INCOMING_WAIT_MS = 3000 };

struct incoming_q {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    virDomainPtr dom; /* a reference of its own */
    int done, incoming, refs;
};

static void incoming_q_put(struct incoming_q *q)
{
    pthread_mutex_lock(&q->lock);
    int last = --q->refs == 0;
    pthread_mutex_unlock(&q->lock);
    if (!last)
        return;
    virDomainFree(q->dom);
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->lock);
    free(q);
}

static void *incoming_q_main(void *arg)
{
    struct incoming_q *q = arg;
    int in = incoming_migration(q->dom);
    pthread_mutex_lock(&q->lock);
    q->incoming = in;
    q->done = 1;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
    incoming_q_put(q);
    return NULL;
}

static int incoming_migration_bounded(virDomainPtr dom)
{
    struct incoming_q *q = calloc(1, sizeof *q);
    if (!q || virDomainRef(dom) < 0) {
        free(q);
        return incoming_migration(dom);
    }
    q->dom = dom;
    q->refs = 2;
    pthread_mutex_init(&q->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_attr_t ta;
    pthread_t th;
    pthread_attr_init(&ta);
    pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
    int started = pthread_create(&th, &ta, incoming_q_main, q) == 0;
    pthread_attr_destroy(&ta);
    if (!started) {
        q->refs = 1;
        incoming_q_put(q);
        return incoming_migration(dom);
    }
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += INCOMING_WAIT_MS / 1000;
    until.tv_nsec += (long)(INCOMING_WAIT_MS % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&q->lock);
    while (!q->done && pthread_cond_timedwait(&q->cond, &q->lock, &until) != ETIMEDOUT)
        ;
    int in = q->done && q->incoming;
    pthread_mutex_unlock(&q->lock);
    incoming_q_put(q);
    return in;
}

static void read_dom(virDomainPtr dom, int want_state, int want_xml, unsigned sources,
                     struct virt_dom *d)
{
    const char *name = virDomainGetName(dom);
    snprintf(d->name, sizeof d->name, "%s", name ? name : "-");
    if (want_state) {
        if (virDomainGetState(dom, &d->state, &d->reason, 0) < 0) {
            d->gone = domain_gone_error();
            snprintf(d->err, sizeof d->err, "%s", last_verr());
            return;
        }
        d->state_ok = 1;
        d->active = d->state != VIR_DOMAIN_SHUTOFF;
    }
    if (want_xml) {
        d->xml = virDomainGetXMLDesc(dom, 0);
        if (!d->xml) {
            d->gone = domain_gone_error();
            snprintf(d->err, sizeof d->err, "%s", last_verr());
            return;
        }
    }
    if (sources && (!d->state_ok || d->active))
        read_addrs(dom, sources, d);
}

/* A reader thread's domains, by UUID (direct-mapped): an event of a domain read before
 * costs no lookup round trip.  Emptied with the thread's connection; a domain found gone
 * leaves it. */
struct dom_cache {
    struct {
        uint8_t uuid[16];
        virDomainPtr dom;
    } slot[VIRT_DOM_CACHE];
};

static unsigned cache_index(const uint8_t uuid[16])
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (int i = 0; i < 16; i++)
        h = (h ^ uuid[i]) * 16777619u;
    return h % VIRT_DOM_CACHE;
}

static void cache_drop(struct dom_cache *c, const uint8_t uuid[16])
{
    unsigned i = cache_index(uuid);
    if (c->slot[i].dom && !memcmp(c->slot[i].uuid, uuid, 16)) {
        virDomainFree(c->slot[i].dom);
        c->slot[i].dom = NULL;
    }
}

static void cache_clear(struct dom_cache *c)
{
    for (unsigned i = 0; i < VIRT_DOM_CACHE; i++) {
        if (c->slot[i].dom)
            virDomainFree(c->slot[i].dom);
        c->slot[i].dom = NULL;
    }
}

/* Reader thread: closes *conn (libvirtd may have restarted). */
static void reader_disconnect(virConnectPtr *conn, struct dom_cache *c)
{
    cache_clear(c);
    virConnectClose(*conn);
    *conn = NULL;
}

/* Reader thread: looks up d's domain over *conn (opened, and opened again after an error
 * that is not "no such domain", as needed).  NULL when it cannot (d->gone, d->err set);
 * else a reference of the caller's. */
static virDomainPtr lookup(virConnectPtr *conn, const char *uri, struct dom_cache *c,
                           struct virt_dom *d)
{
    unsigned i = cache_index(d->uuid);
    if (*conn && c->slot[i].dom && !memcmp(c->slot[i].uuid, d->uuid, 16) &&
        virDomainRef(c->slot[i].dom) == 0)
        return c->slot[i].dom;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!*conn && !(*conn = virConnectOpen(uri))) {
            snprintf(d->err, sizeof d->err, "cannot connect: %s", last_verr());
            return NULL;
        }
        virDomainPtr dom = virDomainLookupByUUID(*conn, d->uuid);
        if (dom) {
            if (virDomainRef(dom) == 0) {
                if (c->slot[i].dom)
                    virDomainFree(c->slot[i].dom);
                c->slot[i].dom = dom;
                memcpy(c->slot[i].uuid, d->uuid, 16);
            }
            return dom;
        }
        d->gone = domain_gone_error();
        snprintf(d->err, sizeof d->err, "%s", last_verr());
        if (d->gone)
            return NULL;
        /* libvirtd may have restarted: a new connection, once */
        reader_disconnect(conn, c);
    }
    return NULL;
}

/* Reader thread: tells the loop that a listing made progress. */
static void reader_progress(struct virt_reader *r)
{
    uv_mutex_lock(&r->lock);
    if (r->async)
        uv_async_send(r->async);
    uv_mutex_unlock(&r->lock);
}

/* Reads a share of a listing's domains: those at index k, k + step, ... */
struct list_share {
    struct virt_reader *r;
    virDomainPtr *doms;
    struct virt_dom *out;
    int n, k, step;
    unsigned sources;
};

static void *list_share_main(void *arg)
{
    struct list_share *sh = arg;
    unsigned count = 0;
    for (int i = sh->k; i < sh->n; i += sh->step) {
        struct virt_dom *d = &sh->out[i];
        if (!d->gone)
            read_dom(sh->doms[i], !d->state_ok, 1, sh->sources, d);
        if (!d->gone && d->state_ok && d->state == VIR_DOMAIN_PAUSED &&
            d->reason == VIR_DOMAIN_PAUSED_MIGRATION)
            d->incoming = incoming_migration_bounded(sh->doms[i]);
        __atomic_store_n(&d->done, 1, __ATOMIC_RELEASE);
        if (++count % VIRT_APPLY_SLICE == 0)
            reader_progress(sh->r); /* the loop applies what is read meanwhile */
    }
    return NULL;
}

/* Reader thread: lists every domain with its state, XML and (when running and asked)
 * addresses.  A domain read is a round trip to libvirtd each: VIRT_LIST_THREADS threads
 * share the connection (libvirt's are thread-safe) to keep several in flight. */
/* Reader thread: the domains and, when libvirt can list them with their states in one call
 * (virConnectGetAllDomainStats), their states.  Returns the count (*doms and, if set,
 * *stats to free with free_listing()), or -1 with j->err set. */
static int list_all(virConnectPtr conn, struct virt_job *j, virDomainPtr **doms,
                    virDomainStatsRecordPtr **stats)
{
    *doms = NULL;
    *stats = NULL;
    int n = virConnectGetAllDomainStats(conn, VIR_DOMAIN_STATS_STATE, stats, 0);
    if (n >= 0) {
        *doms = n ? calloc((size_t)n, sizeof **doms) : NULL;
        if (n && !*doms) {
            virDomainStatsRecordListFree(*stats);
            *stats = NULL;
            snprintf(j->err, sizeof j->err, "out of memory");
            return -1;
        }
        for (int i = 0; i < n; i++)
            (*doms)[i] = (*stats)[i]->dom;
        return n;
    }
    virErrorPtr e = virGetLastError();
    if (!e || e->code != VIR_ERR_NO_SUPPORT) {
        snprintf(j->err, sizeof j->err, "%s", last_verr());
        return -1;
    }
    n = virConnectListAllDomains(conn, doms, 0);
    if (n < 0)
        snprintf(j->err, sizeof j->err, "%s", last_verr());
    return n;
}

static void free_listing(virDomainPtr *doms, virDomainStatsRecordPtr *stats, int n)
{
    if (stats) {
        virDomainStatsRecordListFree(stats); /* frees the domains too */
    } else {
        for (int i = 0; i < n; i++)
            virDomainFree(doms[i]);
    }
    free(doms);
}

/* The state in a stats record: 0 and *state, *reason, or -1. */
static int stats_state(const virDomainStatsRecord *rec, int *state, int *reason)
{
    int got = 0;
    for (int k = 0; k < rec->nparams; k++) {
        const virTypedParameter *p = &rec->params[k];
        if (p->type != VIR_TYPED_PARAM_INT)
            continue;
        if (!strcmp(p->field, "state.state")) {
            *state = p->value.i;
            got |= 1;
        } else if (!strcmp(p->field, "state.reason")) {
            *reason = p->value.i;
            got |= 2;
        }
    }
    return got == 3 ? 0 : -1;
}

/* Reader thread: lists every domain with its state, XML and (when running and asked)
 * addresses.  A domain read is a round trip to libvirtd each: VIRT_LIST_THREADS threads
 * share the connection (libvirt's are thread-safe) to keep several in flight; the loop
 * applies what is read as it comes. */
static void list_domains(struct virt_reader *r, virConnectPtr *conn, struct dom_cache *c,
                         const char *uri, struct virt_job *j)
{
    virDomainPtr *doms = NULL;
    virDomainStatsRecordPtr *stats = NULL;
    int n = -1;
    for (int attempt = 0; attempt < 2 && n < 0; attempt++) {
        if (!*conn && !(*conn = virConnectOpen(uri))) {
            snprintf(j->err, sizeof j->err, "cannot connect: %s", last_verr());
            j->failed = 1;
            return;
        }
        n = list_all(*conn, j, &doms, &stats);
        if (n < 0)
            reader_disconnect(conn, c);
    }
    if (n < 0) {
        j->failed = 1;
        return;
    }
    j->doms = n ? calloc((size_t)n, sizeof *j->doms) : NULL;
    if (n && !j->doms) {
        snprintf(j->err, sizeof j->err, "out of memory");
        j->failed = 1;
    } else {
        j->n_doms = (unsigned)n;
        for (int i = 0; i < n; i++) {
            struct virt_dom *d = &j->doms[i];
            if (virDomainGetUUID(doms[i], d->uuid) < 0)
                d->gone = 1; /* cannot happen: the UUID comes with the listing */
            if (stats && stats_state(stats[i], &d->state, &d->reason) == 0) {
                d->state_ok = 1;
                d->active = d->state != VIR_DOMAIN_SHUTOFF;
            }
        }
        __atomic_store_n(&j->listed, 1, __ATOMIC_RELEASE);
        struct list_share sh[VIRT_LIST_THREADS];
        pthread_t th[VIRT_LIST_THREADS];
        int started[VIRT_LIST_THREADS] = {0};
        for (int k = 0; k < VIRT_LIST_THREADS; k++) {
            sh[k] = (struct list_share){r, doms, j->doms, n, k, VIRT_LIST_THREADS, j->sources};
            if (k > 0 && n > k)
                started[k] = pthread_create(&th[k], NULL, list_share_main, &sh[k]) == 0;
        }
        for (int k = 0; k < VIRT_LIST_THREADS; k++)
            if (!started[k])
                list_share_main(&sh[k]); /* this thread's share, and those not started */
        for (int k = 1; k < VIRT_LIST_THREADS; k++)
            if (started[k])
                pthread_join(th[k], NULL);
    }
    free_listing(doms, stats, n);
}

static void run_job(struct virt_reader *r, virConnectPtr *conn, struct dom_cache *c,
                    struct virt_job *j)
{
    const char *uri = r->uri;
    uint64_t t0 = uv_hrtime();
    if (j->kind == JOB_LIST) {
        list_domains(r, conn, c, uri, j);
    } else {
        for (unsigned i = 0; i < j->n_doms; i++) {
            struct virt_dom *d = &j->doms[i];
            virDomainPtr dom = lookup(conn, uri, c, d);
            if (!dom)
                continue;
            if (j->kind == JOB_READ)
                read_dom(dom, j->want_state, j->want_xml, 0, d);
            else
                read_dom(dom, 0, 0, j->sources, d);
            virDomainFree(dom);
            if (d->gone)
                cache_drop(c, d->uuid);
        }
    }
    j->libvirt_ns = uv_hrtime() - t0;
}

static void reader_free(struct virt_reader *r)
{
    job_free(r->job);
    job_free(r->done);
    cache_clear(r->cache);
    free(r->cache);
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
        struct virt_job *j = r->job;
        r->job = NULL;
        uv_mutex_unlock(&r->lock);
        run_job(r, &conn, r->cache, j);
        uv_mutex_lock(&r->lock);
        r->done = j;
        if (r->quit)
            break;
        uv_async_send(r->async);
    }
    uv_mutex_unlock(&r->lock);
    if (conn)
        reader_disconnect(&conn, r->cache);
    reader_free(r);
    return NULL;
}

static struct virt_reader *reader_start(const char *uri, uv_async_t *async, pthread_t *th)
{
    struct virt_reader *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->uri = strdup(uri);
    r->async = async;
    r->cache = calloc(1, sizeof *r->cache);
    if (!r->uri || !r->cache || uv_mutex_init(&r->lock) < 0) {
        free(r->cache);
        free(r->uri);
        free(r);
        return NULL;
    }
    if (uv_cond_init(&r->cond) < 0) {
        uv_mutex_destroy(&r->lock);
        free(r->cache);
        free(r->uri);
        free(r);
        return NULL;
    }
    if (pthread_create(th, NULL, reader_main, r) != 0) {
        reader_free(r);
        return NULL;
    }
    return r;
}

/* After reader_stop: waits until the thread has ended, at most until `until` (CLOCK_REALTIME),
 * so that nothing of it (libxml2 keeps per-thread state, freed as the thread ends) is
 * still being torn down as the process exits; a thread still inside libvirt then is left
 * to finish on its own. */
static void reader_join(pthread_t th, const struct timespec *until)
{
    if (pthread_timedjoin_np(th, NULL, until) != 0)
        pthread_detach(th);
}

/* Loop side: the thread finishes (and frees the reader) on its own, after a job in
 * progress, which may wait for libvirtd for a long time.  Accepts NULL. */
static void reader_stop(struct virt_reader *r)
{
    if (!r)
        return;
    uv_mutex_lock(&r->lock);
    r->quit = 1;
    r->async = NULL;
    uv_cond_signal(&r->cond);
    uv_mutex_unlock(&r->lock);
}

/* Loop side: hands j to the reader (which must be idle). */
static void reader_hand(struct virt_reader *r, struct virt_job *j)
{
    uv_mutex_lock(&r->lock);
    r->job = j;
    uv_cond_signal(&r->cond);
    uv_mutex_unlock(&r->lock);
}

static void reader_post(struct tnve_virt *v, struct virt_reader *r, struct virt_job *j)
{
    j->gen = v->conn_gen;
    j->queued_ns = uv_hrtime();
    reader_hand(r, j);
}

/* The read behind an effect applied early goes to the event reader after this loop pass's
 * requests left (the reconciler sends from an idle handle, before the poll; this runs
 * after it): woken earlier, the reader thread and libvirtd serving it would take the CPU
 * the request's encryption and the nNVE's commit need (measured: bench/tnve.sh). */
static void post_cb(uv_check_t *h)
{
    struct tnve_virt *v = h->data;
    struct virt_job *j = v->post_job;
    uv_check_stop(h);
    v->post_job = NULL;
    if (j && !v->destroying)
        reader_hand(v->reader, j);
}

/* Loop side: the finished job, or NULL. */
static struct virt_job *reader_take(struct virt_reader *r)
{
    uv_mutex_lock(&r->lock);
    struct virt_job *j = r->done;
    r->done = NULL;
    uv_mutex_unlock(&r->lock);
    return j;
}

/* ---------------------------------------------------------------- event processing */

/* Notes that an event changed the domain while a listing is open. */
static void touch(struct tnve_virt *v, const uint8_t uuid[16])
{
    if (!v->listing)
        return;
    if (v->n_touched == v->cap_touched) {
        unsigned cap = v->cap_touched ? v->cap_touched * 2 : 64;
        void *p = realloc(v->touched, cap * sizeof *v->touched);
        if (!p)
            return; /* the listing's entry then wins: it is at most as old as the event */
        v->touched = p;
        v->cap_touched = cap;
    }
    memcpy(v->touched[v->n_touched++], uuid, 16);
    v->touched_sorted = 0;
}

static int cmp_uuid(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

static int touched(struct tnve_virt *v, const uint8_t uuid[16])
{
    if (!v->n_touched)
        return 0;
    if (!v->touched_sorted) {
        qsort(v->touched, v->n_touched, sizeof *v->touched, cmp_uuid);
        v->touched_sorted = 1;
    }
    return bsearch(uuid, v->touched, v->n_touched, sizeof *v->touched, cmp_uuid) != NULL;
}

static const struct tnve_event_action *event_action(const struct virt_event *e)
{
    if (e->event == VIRT_EVENT_REFRESH)
        return &refresh_action;
    return tnve_event_lookup(e->event, e->detail);
}

/* Applies a finished read of e's domain (d NULL: the read is not needed: the event's
 * effect alone). */
static void event_apply(struct tnve_virt *v, const struct virt_event *e, const struct virt_dom *d)
{
    const struct tnve_event_action *a = event_action(e);
    uint64_t now = now_ms(v);
    char us[40];
    sncp_uuid_format(e->uuid, us, sizeof us);
    touch(v, e->uuid);
    v->current_event_time = e->received;
    recs_set_stamp(v, e->received_ns);
    if (!d) {
        recs_domain_effect(v, e->uuid, a->effect, a->flags, a->name, now);
    } else if (d->gone) {
        /* Gone (undefined, or a transient domain that stopped). */
        SNV_INFO("virt", "domain gone domain=%s uuid=%s", e->name, us);
        recs_domain_remove(v, e->uuid, a->flags, now);
    } else if (a->effect == TNVE_EFFECT_INACTIVE || a->effect == TNVE_EFFECT_UNDEFINE) {
        /* "Not running" effects (define, undefine, stop) follow the domain's state as it
         * is now, exactly as a listing would: a config change or an undefine of a running
         * domain does not stop it, a redefined managed-saved domain stays Associated, and
         * an event processed late never undoes a newer state. */
        if (!d->state_ok) {
            SNV_WARN("virt", "cannot read domain state domain=%s err=%s", e->name, d->err);
        } else {
            enum tnve_effect effect = tnve_event_effect_for_state(d->state, d->reason, 1, NULL);
            if (v->reading_need_xml ||
                recs_domain_effect(v, e->uuid, effect, a->flags, a->name, now) != 0)
                take_xml(v, e->uuid, e->name, d->xml, d->err, effect, a->flags, a->name, now);
        }
    } else {
        take_xml(v, e->uuid, e->name, d->xml, d->err, a->effect, a->flags, a->name, now);
    }
    recs_set_stamp(v, 0);
    v->current_event_time = 0;
}

/* 1 when an event of the domain waits in the queue, or the queue is too long to look
 * (the events are then being processed late). */
static int queued_after(const struct tnve_virt *v, const uint8_t uuid[16])
{
    if (v->q_len > VIRT_EARLY_QUEUE)
        return 1;
    for (const struct virt_event *q = v->q_head; q; q = q->next)
        if (!memcmp(q->uuid, uuid, 16))
            return 1;
    return 0;
}

/* Logs e; returns its action, or NULL when there is no connection to read it from. */
static const struct tnve_event_action *event_begin(struct tnve_virt *v, const struct virt_event *e)
{
    const struct tnve_event_action *a = event_action(e);
    char us[40];
    sncp_uuid_format(e->uuid, us, sizeof us);
    SNV_INFO("virt", "event %s domain=%s uuid=%s effect=%s", a->name, e->name, us,
             tnve_effect_name(a->effect));
    if (!connected(v))
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
    int known = recs_domain_known(v, e->uuid);
    int need_xml = a->refresh || !known;
    int applied = 0;
    if (!need_state && !need_xml) {
        /* no libvirt call needed, unless the reconciler wants the domain's XML */
        if (recs_domain_effect(v, e->uuid, a->effect, a->flags, a->name, now_ms(v)) == 0)
            return 0;
        need_xml = 1;
    } else if (known && a->effect == TNVE_EFFECT_ACTIVATE) {
        /* A start: its vNICs are those of the definition the agent holds; the live XML
         * (target devices, a network's bridge) follows and corrects what it changes. */
        event_apply(v, e, NULL);
        v->early_activations++;
        applied = 1;
    } else if (known && e->event == VIR_DOMAIN_EVENT_STOPPED && a->effect == TNVE_EFFECT_INACTIVE &&
               !queued_after(v, e->uuid)) {
        /* A stop of a known domain, received now (nothing of the domain waits behind
         * it): the effect of a shut-off state goes out at once.  Its state and XML follow
         * and settle it as a listing would: a transient domain is gone, one started again
         * meanwhile runs (its start event follows too), a --config change applies. */
        event_apply(v, e, NULL);
        v->early_stops++;
        applied = 1;
    }
    /* A stop of a known domain processed late: its state decides the effect (an event
     * processed late never undoes a newer state), its XML (the persistent definition
     * again) follows. */
    int then_xml = !applied && known && need_state && e->event == VIR_DOMAIN_EVENT_STOPPED;
    struct virt_job *j = job_new(JOB_READ, 1);
    if (!j) {
        if (!applied)
            event_apply(v, e, NULL);
        return 0;
    }
    memcpy(j->doms[0].uuid, e->uuid, 16);
    j->want_state = need_state;
    j->want_xml = !then_xml;
    v->reading = e;
    v->reading_need_xml = need_xml && !then_xml;
    v->reading_applied = applied;
    v->reading_then_xml = then_xml;
    if (applied) {
        j->gen = v->conn_gen;
        j->queued_ns = uv_hrtime();
        v->post_job = j;
        uv_check_start(&v->post, post_cb);
    } else {
        reader_post(v, v->reader, j);
    }
    return 1;
}

/* Reads the XML of the event being processed, whose effect is applied already. */
static int read_xml_after(struct tnve_virt *v, const struct virt_event *e)
{
    struct virt_job *j = job_new(JOB_READ, 1);
    if (!j)
        return 0;
    memcpy(j->doms[0].uuid, e->uuid, 16);
    j->want_xml = 1;
    v->reading_applied = 1;
    v->reading_then_xml = 0;
    reader_post(v, v->reader, j);
    return 1;
}

static void work_cb(uv_timer_t *t);

static void read_done_cb(uv_async_t *h)
{
    struct tnve_virt *v = h->data;
    if (v->destroying)
        return;
    struct virt_job *j = reader_take(v->reader);
    struct virt_event *e = v->reading;
    if (!j)
        return;
    if (!e) {
        job_free(j);
        return;
    }
    v->reading = NULL;
    /* A read from before a reconnect is dropped: the listing after it covers the event. */
    if (connected(v) && j->gen == v->conn_gen) {
        if (!v->reading_applied) {
            /* what the event's effect waited for: the libvirt calls, and the hand-off to
             * the reader and back */
            uint64_t total = uv_hrtime() - j->queued_ns;
            tnve_lat_add_ns(v->cfg.lat_libvirt, j->libvirt_ns);
            tnve_lat_add_ns(v->cfg.lat_hop, total > j->libvirt_ns ? total - j->libvirt_ns : 0);
            event_apply(v, e, &j->doms[0]);
            if (v->reading_then_xml && !j->doms[0].gone && j->doms[0].state_ok &&
                read_xml_after(v, e)) {
                v->reading = e;
                job_free(j);
                return;
            }
        } else if (j->want_state) {
            /* a stop applied early: the domain as read now settles it */
            event_apply(v, e, &j->doms[0]);
        } else if (!j->doms[0].gone) {
            /* the live XML of a domain activated from its definition */
            const struct tnve_event_action *a = event_action(e);
            touch(v, e->uuid);
            take_xml(v, e->uuid, e->name, j->doms[0].xml, j->doms[0].err, TNVE_EFFECT_NONE,
                     a->flags, NULL, now_ms(v));
        }
        /* gone after an early activation: the stop and undefine events follow */
    }
    event_free(e);
    job_free(j);
    if (v->q_head || v->q_overflow)
        uv_timer_start(&v->work, work_cb, 0, 0);
}

static void work_cb(uv_timer_t *t)
{
    struct tnve_virt *v = t->data;
    if (v->destroying || v->reading)
        return; /* read_done_cb starts the next */
    if (v->q_overflow && connected(v)) {
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
        if (event_start(v, e))
            return; /* one read at a time */
        event_free(e);
    }
}

/* Queues an event for the domain (name may be NULL).  Returns 0, or -1 when it was
 * dropped (a listing follows). */
static int queue_uuid(struct tnve_virt *v, const uint8_t uuid[16], const char *name, int event,
                      int detail)
{
    if (v->q_len >= VIRT_MAX_QUEUE)
        goto drop;
    struct virt_event *e = calloc(1, sizeof *e);
    if (!e)
        goto drop;
    memcpy(e->uuid, uuid, 16);
    snprintf(e->name, sizeof e->name, "%s", name ? name : "-");
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
    return 0;
drop:
    v->dropped++;
    v->q_overflow = 1;
    uv_timer_start(&v->work, work_cb, 0, 0);
    return -1;
}

static void queue_event(struct tnve_virt *v, virDomainPtr dom, int event, int detail)
{
    v->events++;
    uint8_t uuid[16];
    if (virDomainGetUUID(dom, uuid) < 0) {
        v->dropped++;
        v->q_overflow = 1;
        uv_timer_start(&v->work, work_cb, 0, 0);
        return;
    }
    queue_uuid(v, uuid, virDomainGetName(dom), event, detail);
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

/* ---------------------------------------------------------------- listing, addresses */

static void bulk_next(struct tnve_virt *v);

/* Hands the polled addresses of d to the reconciler. */
static void take_addrs(struct tnve_virt *v, const struct virt_dom *d)
{
    for (unsigned k = 0; k < d->n_macs; k++)
        recs_set_addresses(v, d->uuid, d->macs[k].mac, d->macs[k].addrs, d->macs[k].n, now_ms(v));
}

/* Applies one listed domain. */
static void list_apply_one(struct tnve_virt *v, const struct virt_dom *d)
{
    uint64_t now = now_ms(v);
    if (recs_domain_busy(v, d->uuid)) {
        /* answered by the hook right now: keep it as it is */
        recs_domain_effect(v, d->uuid, TNVE_EFFECT_NONE, 0, NULL, now);
        return;
    }
    if (touched(v, d->uuid) || d->gone)
        return; /* an event read it as late, or it went since: its events tell */
    int known = recs_domain_known(v, d->uuid);
    if (!d->state_ok) {
        SNV_WARN("virt", "cannot read domain state domain=%s err=%s", d->name, d->err);
        if (known) /* keep it rather than let the inventory remove it */
            recs_domain_effect(v, d->uuid, TNVE_EFFECT_NONE, 0, NULL, now);
        return;
    }
    const char *what = "listed";
    enum tnve_effect effect;
    uint16_t flags = 0;
    if (d->incoming) {
        /* the guest still runs at the source: activating it here would take its traffic
         * away before the switch-over */
        effect = TNVE_EFFECT_ASSOCIATE;
        flags = SNCP_F_MIGRATION;
        what = "incoming-migration";
    } else {
        effect = tnve_event_effect_for_state(d->state, d->reason, known, &what);
    }
    take_xml(v, d->uuid, d->name, d->xml, d->err, effect, flags, what, now);
    /* addresses before the SYNC re-announces the domain */
    take_addrs(v, d);
}

/* Closes the listing in v->list_result, which the bulk reader has finished with. */
static void list_end(struct tnve_virt *v)
{
    struct virt_job *j = v->list_result;
    v->list_result = NULL;
    v->list_complete = 0;
    v->listing = 0;
    v->n_touched = 0;
    uv_timer_stop(&v->apply);
    if (j && connected(v) && j->gen == v->conn_gen) {
        if (j->failed) {
            SNV_WARN("virt", "listing domains failed err=%s", j->err);
        } else {
            v->listings++;
            recs_inventory_end(v, now_ms(v));
            SNV_INFO("virt", "listed domains count=%u uri=%s", j->n_doms, v->cfg.uri);
        }
    }
    job_free(j);
}

/* Applies what the bulk reader has read of the listing so far, a slice per loop pass, in
 * the listing's order; ends the listing once it is all read and applied. */
static void apply_cb(uv_timer_t *t)
{
    struct tnve_virt *v = t->data;
    struct virt_job *j = v->list_result;
    if (v->destroying || !j)
        return;
    /* (j->failed is the reader's until it completes; a failed listing is never listed) */
    int current = connected(v) && j->gen == v->conn_gen;
    if (current && __atomic_load_n(&j->listed, __ATOMIC_ACQUIRE)) {
        unsigned n = 0;
        uint64_t t0 = uv_hrtime();
        while (n < VIRT_APPLY_SLICE && v->list_pos < j->n_doms &&
               __atomic_load_n(&j->doms[v->list_pos].done, __ATOMIC_ACQUIRE)) {
            list_apply_one(v, &j->doms[v->list_pos++]);
            if (++n < VIRT_APPLY_SLICE && uv_hrtime() - t0 >= VIRT_APPLY_BUDGET_NS)
                n = VIRT_APPLY_SLICE; /* the slice's time is up: the next pass goes on */
        }
        uint64_t held = uv_hrtime() - t0;
        if (held > v->list_hold_max_ns)
            v->list_hold_max_ns = held;
        if (v->list_pos < j->n_doms) {
            if (n == VIRT_APPLY_SLICE)
                uv_timer_start(&v->apply, apply_cb, 0, 0);
            return; /* else the reader's next progress wakes us */
        }
    }
    /* all applied, failed, or from an older connection (the new one lists again): done
     * once the reader has let go of it */
    if (v->list_complete) {
        list_end(v);
        bulk_next(v);
    }
}

static void bulk_done_cb(uv_async_t *h)
{
    struct tnve_virt *v = h->data;
    if (v->destroying)
        return;
    struct virt_job *j = reader_take(v->bulk);
    if (j) {
        v->bulk_busy = 0;
        if (j == v->list_result) {
            v->list_complete = 1;
        } else {
            if (j->kind == JOB_ADDRS && connected(v) && j->gen == v->conn_gen)
                for (unsigned i = 0; i < j->n_doms; i++)
                    if (!recs_domain_busy(v, j->doms[i].uuid))
                        take_addrs(v, &j->doms[i]);
            job_free(j);
        }
    }
    if (v->list_result)
        apply_cb(&v->apply); /* progress, or the end of the listing */
    else
        bulk_next(v);
}

/* Starts a listing asked for when the bulk reader is free.  The listing is applied while
 * it is read (bulk_done_cb). */
static void bulk_next(struct tnve_virt *v)
{
    if (v->bulk_busy || v->list_result || !v->list_wanted || !connected(v))
        return;
    struct virt_job *j = job_new(JOB_LIST, 0);
    if (!j) {
        SNV_WARN("virt", "listing domains failed err=out of memory");
        return;
    }
    v->list_wanted = 0;
    j->sources = v->cfg.address_poll_ms ? v->cfg.address_sources : 0;
    /* The inventory is open from now: what events change meanwhile counts as seen. */
    recs_inventory_begin(v);
    v->listing = 1;
    v->n_touched = 0;
    v->bulk_busy = 1;
    v->list_result = j;
    v->list_pos = 0;
    v->list_complete = 0;
    reader_post(v, v->bulk, j);
}

static void virt_list(struct tnve_virt *v)
{
    v->list_wanted = 1;
    bulk_next(v);
}

static void poll_cb(uv_timer_t *t)
{
    struct tnve_virt *v = t->data;
    if (!connected(v) || v->bulk_busy || v->list_result)
        return; /* a listing in progress polls too */
    uint8_t(*uuids)[16] = calloc(VIRT_MAX_POLL, 16);
    if (!uuids)
        return;
    unsigned n = tnve_rec_active_domains(v->recs[0], uuids, VIRT_MAX_POLL), k = 0;
    for (unsigned i = 0; i < n; i++)
        if (!recs_domain_busy(v, uuids[i]))
            memcpy(uuids[k++], uuids[i], 16);
    struct virt_job *j = k ? job_new(JOB_ADDRS, k) : NULL;
    if (j) {
        for (unsigned i = 0; i < k; i++)
            memcpy(j->doms[i].uuid, uuids[i], 16);
        j->sources = v->cfg.address_sources;
        v->bulk_busy = 1;
        reader_post(v, v->bulk, j);
    }
    free(uuids);
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
    uv_timer_init(loop, &v->apply);
    uv_async_init(loop, &v->read_async, read_done_cb);
    uv_async_init(loop, &v->bulk_async, bulk_done_cb);
    uv_check_init(loop, &v->post);
    v->timer.data = v->work.data = v->poll.data = v->apply.data = v;
    v->read_async.data = v->bulk_async.data = v->post.data = v;
    v->open_handles = 7;
    v->reader = reader_start(v->uri, &v->read_async, &v->reader_th);
    v->bulk = reader_start(v->uri, &v->bulk_async, &v->bulk_th);
    if (!v->reader || !v->bulk) {
        SNV_ERR("virt", "cannot start the domain reader threads");
        *out = v;
        tnve_virt_destroy(v);
        *out = NULL;
        return -ENOMEM;
    }
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
    free(v->touched);
    free(v->uri);
    free(v);
}

void tnve_virt_destroy(struct tnve_virt *v)
{
    if (!v || v->destroying)
        return;
    v->destroying = 1;
    reader_stop(v->reader);
    reader_stop(v->bulk);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 2;
    if (v->reader)
        reader_join(v->reader_th, &until);
    if (v->bulk)
        reader_join(v->bulk_th, &until);
    v->reader = v->bulk = NULL;
    if (v->reading)
        event_free(v->reading);
    v->reading = NULL;
    job_free(v->post_job); /* never handed to the reader */
    v->post_job = NULL;
    if (v->list_complete) /* else the bulk reader frees it */
        job_free(v->list_result);
    v->list_result = NULL;
    drop_connection(v);
    uv_close((uv_handle_t *)&v->timer, handle_closed);
    uv_close((uv_handle_t *)&v->work, handle_closed);
    uv_close((uv_handle_t *)&v->poll, handle_closed);
    uv_close((uv_handle_t *)&v->apply, handle_closed);
    uv_close((uv_handle_t *)&v->read_async, handle_closed);
    uv_close((uv_handle_t *)&v->bulk_async, handle_closed);
    uv_close((uv_handle_t *)&v->post, handle_closed);
}

void tnve_virt_set_rules(struct tnve_virt *v, const struct tnve_map_rule *rules, unsigned n)
{
    v->cfg.rules = rules;
    v->cfg.n_rules = n;
    tnve_virt_resync(v);
}

void tnve_virt_resync(struct tnve_virt *v)
{
    if (connected(v))
        virt_list(v);
}

void tnve_virt_refresh_domain(struct tnve_virt *v, const uint8_t uuid[16])
{
    if (connected(v))
        queue_uuid(v, uuid, NULL, VIRT_EVENT_REFRESH, 0);
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
    json_object_set_new(o, "listing", json_boolean(v->listing));
    json_object_set_new(o, "early_activations", json_integer((json_int_t)v->early_activations));
    json_object_set_new(o, "early_stops", json_integer((json_int_t)v->early_stops));
    json_object_set_new(o, "listing_hold_max_us",
                        json_integer((json_int_t)(v->list_hold_max_ns / 1000)));
    json_object_set_new(o, "last_error", json_string(v->last_error));
    return o;
}

uint64_t tnve_virt_event_time(const struct tnve_virt *v)
{
    return v->current_event_time;
}
