/* dp-mux.c: one dataplane shared by the reconcilers of a dual-homed host (see dp-mux.h). */
#include "dp-mux.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sncp-error.h"
#include "snv-log.h"

enum { MUX_MAX_LEGS = 8 };

struct mux_port {
    struct mux_port *next;
    char ifname[64];
    uint16_t applied;            /* the tag set on the backend, 0: none */
    uint16_t want[MUX_MAX_LEGS]; /* per leg, 0: the leg does not hold the port */
    int mismatch;                /* legs disagree now (reported once per episode) */
};

/* A leg: what one reconciler holds as its dataplane. */
struct tnve_dp {
    struct tnve_dp_mux *mux;
    unsigned index;
};

struct tnve_dp_mux {
    const struct tnve_dp_class *cls;
    struct tnve_dp *dp;
    unsigned n_legs;
    struct tnve_dp legs[MUX_MAX_LEGS];
    char names[MUX_MAX_LEGS][64];
    tnve_dp_mux_rank_fn *rank;
    tnve_dp_mux_vn_name_fn *vn_name;
    void *aux;
    struct mux_port *ports;
    unsigned n_ports, n_mismatched;
    uint64_t mismatches, errors;
    struct snv_ratelimit rl; /* the tags come from the nNVEs: a flapping one is not a flood */
};

static struct mux_port *port_find(struct tnve_dp_mux *m, const char *ifname)
{
    for (struct mux_port *p = m->ports; p; p = p->next)
        if (!strcmp(p->ifname, ifname))
            return p;
    return NULL;
}

/* Whether a port other than `except` has `vid` applied (the uplink keeps it then). */
static int vid_applied_elsewhere(const struct tnve_dp_mux *m, const struct mux_port *except,
                                 uint16_t vid)
{
    for (const struct mux_port *p = m->ports; p; p = p->next)
        if (p != except && p->applied == vid)
            return 1;
    return 0;
}

static void port_free_if_unused(struct tnve_dp_mux *m, struct mux_port *p)
{
    if (p->applied)
        return;
    for (unsigned i = 0; i < m->n_legs; i++)
        if (p->want[i])
            return;
    struct mux_port **pp = &m->ports;
    while (*pp != p)
        pp = &(*pp)->next;
    *pp = p->next;
    if (p->mismatch)
        m->n_mismatched--;
    m->n_ports--;
    free(p);
}

/* Reports the start and the end of a disagreement between legs on port p. */
static void check_mismatch(struct tnve_dp_mux *m, struct mux_port *p, int best)
{
    uint16_t first = 0;
    int differ = 0;
    for (unsigned i = 0; i < m->n_legs; i++) {
        if (!p->want[i])
            continue;
        if (first && p->want[i] != first)
            differ = 1;
        if (!first)
            first = p->want[i];
    }
    if (differ && !p->mismatch) {
        char tags[256] = "";
        size_t used = 0;
        for (unsigned i = 0; i < m->n_legs && used < sizeof tags; i++) {
            if (!p->want[i])
                continue;
            int n = snprintf(tags + used, sizeof tags - used, "%s%s=%u", used ? "," : "",
                             m->names[i], p->want[i]);
            if (n < 0)
                break;
            used += (size_t)n;
        }
        p->mismatch = 1;
        m->n_mismatched++;
        m->mismatches++;
        SNV_ERR("dp", "tag mismatch between nNVEs port=%s tags=%s applied_from=%s applied=%u",
                p->ifname, tags, best >= 0 ? m->names[best] : "-", best >= 0 ? p->want[best] : 0);
    } else if (!differ && p->mismatch) {
        p->mismatch = 0;
        m->n_mismatched--;
        snv_log_rl(&m->rl, SNV_LOG_INFO, "dp", "tag mismatch over port=%s tag=%u", p->ifname,
                   first);
    }
}

int tnve_dp_mux_choose(const uint16_t *want, const unsigned *rank, unsigned n)
{
    int best = -1;
    for (unsigned i = 0; i < n; i++)
        if (want[i] && (best < 0 || rank[i] < rank[best]))
            best = (int)i;
    return best;
}

/* Applies the best-ranked leg's tag on p.  `uplink_hint`: the calling leg still has other
 * ports on the tag it lets go.  `cause`: why, for the log line of a retag.  0 or the
 * backend's error (the previous tag stays). */
static int port_apply(struct tnve_dp_mux *m, struct mux_port *p, int uplink_hint, const char *cause)
{
    unsigned ranks[MUX_MAX_LEGS];
    for (unsigned i = 0; i < m->n_legs; i++)
        ranks[i] = m->rank ? m->rank(m->aux, i) : i;
    int best = tnve_dp_mux_choose(p->want, ranks, m->n_legs);
    check_mismatch(m, p, best);
    uint16_t want = best >= 0 ? p->want[best] : 0;
    if (want == p->applied)
        return 0;
    uint16_t old = p->applied;
    if (want) {
        int err = m->cls->port_set(m->dp, p->ifname, want);
        if (err < 0) {
            m->errors++;
            return err;
        }
        p->applied = want;
        if (old) {
            char vn[96] = "-";
            if (m->vn_name)
                m->vn_name(m->aux, (unsigned)best, want, vn, sizeof vn);
            SNV_INFO("dp", "retag vn=%s port=%s tag %u -> %u cause=%s nnve=%s", vn, p->ifname, old,
                     want, cause, m->names[best]);
        }
    }
    if (old) {
        /* port_set left only `want` on the port; this takes `old` off the uplink when no
         * other port carries it */
        int err = m->cls->port_clear(m->dp, p->ifname, old,
                                     uplink_hint || vid_applied_elsewhere(m, p, old));
        if (err < 0) {
            m->errors++;
            if (!want)
                return err;
        }
        if (!want)
            p->applied = 0;
    }
    return 0;
}

static int mux_port_set(struct tnve_dp *leg, const char *ifname, uint16_t vid)
{
    struct tnve_dp_mux *m = leg->mux;
    struct mux_port *p = port_find(m, ifname);
    if (!p) {
        p = calloc(1, sizeof *p);
        if (!p)
            return -ENOMEM;
        snprintf(p->ifname, sizeof p->ifname, "%s", ifname);
        p->next = m->ports;
        m->ports = p;
        m->n_ports++;
    }
    uint16_t prev = p->want[leg->index];
    p->want[leg->index] = vid;
    int err = port_apply(m, p, 0, "nnve");
    if (err < 0) {
        p->want[leg->index] = prev;
        port_free_if_unused(m, p);
    }
    return err;
}

static int mux_port_clear(struct tnve_dp *leg, const char *ifname, uint16_t vid, int uplink_in_use)
{
    struct tnve_dp_mux *m = leg->mux;
    struct mux_port *p = port_find(m, ifname);
    if (p && p->want[leg->index] == vid) {
        p->want[leg->index] = 0;
        int err = port_apply(m, p, uplink_in_use, "release");
        port_free_if_unused(m, p);
        return err;
    }
    if (p && p->applied == vid)
        return 0; /* another leg holds the port on this tag */
    /* a port of the previous run, or a tag the port no longer has */
    int err = m->cls->port_clear(m->dp, ifname, vid,
                                 uplink_in_use || vid_applied_elsewhere(m, NULL, vid));
    if (err < 0)
        m->errors++;
    return err;
}

static int mux_port_get(struct tnve_dp *leg, const char *ifname)
{
    return leg->mux->cls->port_get(leg->mux->dp, ifname);
}

static int mux_create(const struct tnve_dp_config *cfg, struct tnve_dp **out)
{
    (void)cfg;
    (void)out;
    return -EOPNOTSUPP;
}

static void mux_destroy_leg(struct tnve_dp *leg)
{
    (void)leg; /* the legs go with the mux */
}

const struct tnve_dp_class tnve_dp_mux_class = {
    .name = "mux",
    .create = mux_create,
    .destroy = mux_destroy_leg,
    .port_set = mux_port_set,
    .port_clear = mux_port_clear,
    .port_get = mux_port_get,
};

struct tnve_dp_mux *tnve_dp_mux_create(const struct tnve_dp_class *cls, struct tnve_dp *dp,
                                       unsigned n_legs, const char *const *names,
                                       tnve_dp_mux_rank_fn *rank, void *aux)
{
    if (n_legs > MUX_MAX_LEGS)
        return NULL;
    struct tnve_dp_mux *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->cls = cls;
    m->dp = dp;
    m->n_legs = n_legs;
    m->rank = rank;
    m->aux = aux;
    m->rl = (struct snv_ratelimit)SNV_RATELIMIT_INIT(5, 20);
    for (unsigned i = 0; i < n_legs; i++) {
        m->legs[i].mux = m;
        m->legs[i].index = i;
        snprintf(m->names[i], sizeof m->names[i], "%s", names[i]);
    }
    return m;
}

void tnve_dp_mux_destroy(struct tnve_dp_mux *m)
{
    if (!m)
        return;
    while (m->ports) {
        struct mux_port *p = m->ports;
        m->ports = p->next;
        free(p);
    }
    free(m);
}

struct tnve_dp *tnve_dp_mux_leg(struct tnve_dp_mux *m, unsigned i)
{
    return i < m->n_legs ? &m->legs[i] : NULL;
}

void tnve_dp_mux_set_vn_name(struct tnve_dp_mux *m, tnve_dp_mux_vn_name_fn *fn)
{
    m->vn_name = fn;
}

void tnve_dp_mux_rerank(struct tnve_dp_mux *m, const char *cause)
{
    for (struct mux_port *p = m->ports; p; p = p->next) {
        int err = port_apply(m, p, 0, cause);
        if (err < 0)
            SNV_ERR("dp", "dataplane set failed port=%s err=%s", p->ifname, sncp_strerror(err));
    }
}

json_t *tnve_dp_mux_json(const struct tnve_dp_mux *m)
{
    json_t *o = json_object();
    json_object_set_new(o, "dp_ports", json_integer(m->n_ports));
    json_object_set_new(o, "dp_mismatched_ports", json_integer(m->n_mismatched));
    json_object_set_new(o, "tag_mismatches", json_integer((json_int_t)m->mismatches));
    json_object_set_new(o, "dp_mux_errors", json_integer((json_int_t)m->errors));
    return o;
}

uint64_t tnve_dp_mux_mismatches(const struct tnve_dp_mux *m)
{
    return m->mismatches;
}
