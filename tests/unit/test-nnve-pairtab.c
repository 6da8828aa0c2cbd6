/* test-nnve-pairtab.c: the ToR pair's tag rules (pairtab.h): the halves, claims and grants,
 * holds, releases and the resynchronisation, then a randomized run of two tables linked by
 * a channel that partitions and heals at random, checking after every step that no tag
 * ever carries two VNs on the two switches together. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../nnve-daemon/pairtab.h"
#include "sncp-error.h"

static const struct nnve_tag_range pool_r[] = {{100, 109}};
static const uint16_t pool_res[] = {105};

static struct nnve_vn vn(uint32_t id)
{
    struct nnve_vn v;
    memset(&v, 0, sizeof v);
    v.id = id;
    v.has_id = 1;
    return v;
}

/* init_pool: T as ROLE over the test pool (100-109, 105 reserved). */
static void init_pool(struct nnve_pairtab *t, enum nnve_pair_role role)
{
    ck_assert_int_eq(nnve_pairtab_init(t, role, pool_r, 1, pool_res, 1), 0);
}

/* The allocator and the follower of each rule test, fresh for each (a checked fixture). */
static struct nnve_pairtab a, f;

static void setup_pair(void)
{
    init_pool(&a, NNVE_PAIR_ALLOCATOR);
    init_pool(&f, NNVE_PAIR_FOLLOWER);
}

START_TEST(test_halves)
{
    /* 9 VIDs: the allocator the lowest 5 (rounded up), the follower the other 4. */
    ck_assert_uint_eq(a.pool_size, 9);
    ck_assert_uint_eq(a.own_size, 5);
    ck_assert_uint_eq(f.own_size, 4);
    for (unsigned v = 1; v <= SNCP_MAX_VID; v++) {
        ck_assert(!(a.own[v] && f.own[v]));
        ck_assert_int_eq(a.own[v] || f.own[v], v >= 100 && v <= 109 && v != 105);
    }
    ck_assert(a.own[104] && f.own[106]);
    struct nnve_tag_range bad = {10, 5};
    ck_assert_int_lt(nnve_pairtab_init(&a, NNVE_PAIR_ALLOCATOR, &bad, 1, NULL, 0), 0);
}
END_TEST

START_TEST(test_claim_grant)
{
    struct nnve_vn v1 = vn(5001);
    uint16_t tag, tag2;
    /* Connected follower: ask the allocator first. */
    ck_assert_int_eq(nnve_pairtab_acquire(&f, &v1, NULL, 0, 1, &tag), SNCP_E_BUSY);
    ck_assert_uint_eq(f.n_rows, 0);
    ck_assert_int_eq(nnve_pairtab_grant(&a, &v1, NULL, 0, &tag), 0);
    ck_assert_uint_eq(tag, 100);
    ck_assert(a.rows[100].peer && !a.rows[100].mine);
    ck_assert_int_eq(nnve_pairtab_granted(&f, &v1, tag), 0);
    ck_assert_int_eq(nnve_pairtab_acquire(&f, &v1, NULL, 0, 1, &tag2), 0);
    ck_assert_uint_eq(tag2, 100);
    /* The allocator's own VAP of the same VN takes the same row. */
    ck_assert_int_eq(nnve_pairtab_acquire(&a, &v1, NULL, 0, 0, &tag2), 0);
    ck_assert_uint_eq(tag2, 100);
    ck_assert(a.rows[100].mine && a.rows[100].peer);
    /* A second claim of it is granted the same tag; a grant never reaches the other half. */
    ck_assert_int_eq(nnve_pairtab_grant(&a, &v1, NULL, 0, &tag2), 0);
    ck_assert_uint_eq(tag2, 100);
    for (uint32_t id = 6000; id < 6010; id++) {
        struct nnve_vn w = vn(id);
        if (nnve_pairtab_grant(&a, &w, NULL, 0, &tag) == 0)
            ck_assert(a.own[tag]);
        else
            ck_assert_uint_eq(a.n_rows, 5);
    }
    struct nnve_vn w = vn(7000);
    ck_assert_int_eq(nnve_pairtab_grant(&a, &w, NULL, 0, &tag), SNCP_E_TAG_POOL_EXHAUSTED);
    /* A grant of a tag the follower binds to another VN is refused, nothing changes. */
    ck_assert_int_eq(nnve_pairtab_granted(&f, &w, 100), SNCP_E_CONFLICT);
    ck_assert_int_eq(nnve_pairtab_granted(&f, &w, 105), SNCP_E_INVALID_VALUE);
    ck_assert(nnve_pairtab_vn_eq(&f.rows[100].vn, &v1));
}
END_TEST

START_TEST(test_partition_halves_and_split)
{
    struct nnve_vn v1 = vn(5001), v2 = vn(5002);
    uint16_t ta, tf, tag;
    uint16_t pref = 107, pref_other = 101;
    /* Apart: each binds from its own half, the follower honours a preference there only. */
    ck_assert_int_eq(nnve_pairtab_acquire(&a, &v1, &pref, 1, 0, &ta), 0);
    ck_assert_uint_eq(ta, 100);
    ck_assert_int_eq(nnve_pairtab_acquire(&f, &v1, &pref_other, 1, 0, &tf), 0);
    ck_assert_uint_eq(tf, 106);
    ck_assert_int_eq(nnve_pairtab_acquire(&f, &v2, &pref, 1, 0, &tag), 0);
    ck_assert_uint_eq(tag, 107);
    /* Heal: the follower's SYNC reaches the allocator. */
    int split;
    nnve_pairtab_sync_begin(&a);
    ck_assert_int_eq(nnve_pairtab_peer_hold(&a, &v1, 106, &split), 0);
    ck_assert_int_eq(split, 1);
    ck_assert_int_eq(nnve_pairtab_peer_hold(&a, &v2, 107, &split), 0);
    ck_assert_int_eq(split, 0);
    nnve_pairtab_sync_end(&a);
    ck_assert_uint_eq(nnve_pairtab_splits(&a), 1);
    /* Each side keeps its own tag of the split VN (no re-tag); a new user of v2 at the
     * allocator adopts the follower's binding. */
    ck_assert_uint_eq(nnve_pairtab_lookup(&a, &v1), 100);
    ck_assert_int_eq(nnve_pairtab_acquire(&a, &v2, NULL, 0, 0, &tag), 0);
    ck_assert_uint_eq(tag, 107);
    /* A HOLD of a tag bound to another VN, or outside the pool: refused, no change. */
    ck_assert_int_eq(nnve_pairtab_peer_hold(&a, &v2, 100, &split), SNCP_E_CONFLICT);
    ck_assert_int_eq(nnve_pairtab_peer_hold(&a, &v2, 99, &split), SNCP_E_INVALID_VALUE);
    ck_assert(nnve_pairtab_vn_eq(&a.rows[100].vn, &v1));
}
END_TEST

START_TEST(test_release_needs_the_peers_word)
{
    struct nnve_vn v1 = vn(5001), v3 = vn(5003);
    uint16_t tag;
    ck_assert_int_eq(nnve_pairtab_acquire(&a, &v1, NULL, 0, 0, &tag), 0);
    int split;
    ck_assert_int_eq(nnve_pairtab_peer_hold(&f, &v1, tag, &split), 0);
    /* The allocator's VAP ends: the row stays (a tombstone) until the follower answers. */
    ck_assert_uint_eq(nnve_pairtab_release(&a, &v1), 100);
    ck_assert(a.rows[100].used && !a.rows[100].mine);
    ck_assert_int_eq(nnve_pairtab_acquire(&a, &v3, NULL, 0, 0, &tag), 0);
    ck_assert_uint_ne(tag, 100); /* not reusable yet */
    /* The follower held nothing: its record becomes a tombstone too, and goes only when
     * the allocator answers the follower's own RELEASE. */
    int tomb;
    ck_assert_int_eq(nnve_pairtab_peer_release(&f, &v1, &tomb), 0);
    ck_assert_int_eq(tomb, 1);
    ck_assert(f.rows[100].used && !f.rows[100].mine && !f.rows[100].peer);
    ck_assert_int_eq(nnve_pairtab_acquire(&f, &v1, NULL, 0, 1, &tag),
                     SNCP_E_BUSY); /* not adopted */
    nnve_pairtab_release_answered(&a, &v1, 0);
    ck_assert(!a.rows[100].used);
    nnve_pairtab_release_answered(&f, &v1, 0);
    ck_assert(!f.rows[100].used);
    /* The peer still holding it keeps the row. */
    ck_assert_int_eq(nnve_pairtab_acquire(&f, &v3, NULL, 0, 0, &tag), 0);
    uint16_t t3 = nnve_pairtab_lookup(&a, &v3);
    ck_assert_int_eq(nnve_pairtab_peer_hold(&a, &v3, tag, &split), 0);
    ck_assert_int_eq(split, 1); /* v3 got one tag on each side while apart */
    ck_assert_uint_eq(nnve_pairtab_release(&a, &v3), t3);
    ck_assert_int_eq(nnve_pairtab_peer_release(&f, &v3, &tomb), tag);
    ck_assert_int_eq(tomb, 0);
    nnve_pairtab_release_answered(&a, &v3, tag);
    ck_assert(!a.rows[t3].used);
    ck_assert(a.rows[tag].used && a.rows[tag].peer && !a.rows[tag].mine);
    struct nnve_vn unknown = vn(4242);
    ck_assert_int_eq(nnve_pairtab_peer_release(&f, &unknown, &tomb), SNCP_E_NO_SUCH_VN);
}
END_TEST

START_TEST(test_sync_clears_what_the_peer_dropped)
{
    struct nnve_vn v1 = vn(5001), v2 = vn(5002);
    int split;
    ck_assert_int_eq(nnve_pairtab_peer_hold(&a, &v1, 106, &split), 0);
    ck_assert_int_eq(nnve_pairtab_peer_hold(&a, &v2, 107, &split), 0);
    /* The follower lost v1 while apart: its SYNC lists v2 only. */
    nnve_pairtab_sync_begin(&a);
    ck_assert_int_eq(nnve_pairtab_peer_hold(&a, &v2, 107, &split), 0);
    nnve_pairtab_sync_end(&a);
    ck_assert(a.rows[106].used && !a.rows[106].peer && !a.rows[106].mine); /* tombstone */
    ck_assert(a.rows[107].peer);
    /* A session lost inside the SYNC keeps everything held. */
    nnve_pairtab_sync_begin(&a);
    nnve_pairtab_session_lost(&a);
    ck_assert(a.rows[107].peer);
    /* Load and dirty tracking. */
    static struct nnve_pairtab b;
    init_pool(&b, NNVE_PAIR_ALLOCATOR);
    ck_assert_int_eq(nnve_pairtab_load(&b, 101, &v1, 1, 0), 0);
    ck_assert_int_eq(nnve_pairtab_load(&b, 101, &v2, 1, 0), SNCP_E_CONFLICT);
    ck_assert_uint_eq(b.n_dirty, 0);
    ck_assert_uint_eq(nnve_pairtab_lookup(&b, &v1), 101);
    /* A VAP older than the table is taken in as ours, once; never over another VN's row. */
    struct nnve_vn v9 = vn(5009);
    ck_assert_int_eq(nnve_pairtab_hold_local(&b, &v9, 107), 1);
    ck_assert_int_eq(nnve_pairtab_hold_local(&b, &v9, 107), 0);
    ck_assert(b.rows[107].mine && !b.rows[107].peer);
    ck_assert_int_eq(nnve_pairtab_hold_local(&b, &v9, 101), SNCP_E_CONFLICT);
    ck_assert_int_eq(nnve_pairtab_hold_local(&b, &v9, 105), SNCP_E_INVALID_VALUE);
}
END_TEST

/* ---- randomized: two tables, a channel, partitions ---------------------------------- */

enum { M_HOLD, M_CLAIM, M_RELEASE, M_SYNC_BEGIN, M_SYNC_END, M_R_CLAIM, M_R_RELEASE };
struct m {
    int kind;
    uint32_t vn;
    int tag; /* HOLD / R_CLAIM: the tag; R_RELEASE: held tag, 0, or SNCP_E_NO_SUCH_VN */
};
enum { QCAP = 4096, NVN = 14 };
struct side {
    struct nnve_pairtab t;
    uint16_t using[NVN]; /* tag a VAP of VN i uses, 0: none */
    int in_sync;
};
static struct side S[2];
static struct m Q[2][QCAP]; /* Q[i]: messages to side i */
static unsigned qh[2], qt[2];
static int up;
static int trace; /* PAIRTAB_TRACE=1: print every step (to find a failing sequence) */
static const char *const mname[] = {"HOLD",     "CLAIM",   "RELEASE",  "SYNC_BEGIN",
                                    "SYNC_END", "R_CLAIM", "R_RELEASE"};

static void send_to(int to, int kind, uint32_t v, int tag)
{
    if (!up)
        return;
    if (kind == M_RELEASE) {
        struct nnve_vn w = vn(v);
        nnve_pairtab_release_sent(&S[1 - to].t, &w);
    }
    ck_assert_uint_lt(qt[to] - qh[to], QCAP);
    Q[to][qt[to]++ % QCAP] = (struct m){kind, v, tag};
}

static void tomb(void *aux, uint16_t tag, const struct nnve_vn *v)
{
    (void)tag;
    send_to(1 - *(int *)aux, M_RELEASE, v->id, 0);
}

static void deliver(int i)
{
    struct m m = Q[i][qh[i]++ % QCAP];
    if (trace)
        fprintf(stderr, "  -> %c %s vn=%u tag=%d\n", i ? 'F' : 'A', mname[m.kind], m.vn, m.tag);
    struct nnve_pairtab *t = &S[i].t;
    struct nnve_vn v = vn(m.vn);
    int split;
    uint16_t tag;
    switch (m.kind) {
    case M_HOLD:
        ck_assert_int_eq(nnve_pairtab_peer_hold(t, &v, (uint16_t)m.tag, &split), 0);
        break;
    case M_CLAIM:
        ck_assert_int_eq(i, 0);
        if (nnve_pairtab_grant(t, &v, NULL, 0, &tag) == 0)
            send_to(1, M_R_CLAIM, m.vn, tag);
        break;
    case M_R_CLAIM:
        ck_assert_int_eq(nnve_pairtab_granted(t, &v, (uint16_t)m.tag), 0);
        break;
    case M_RELEASE: {
        int tombstoned;
        send_to(1 - i, M_R_RELEASE, m.vn, nnve_pairtab_peer_release(t, &v, &tombstoned));
        if (tombstoned)
            send_to(1 - i, M_RELEASE, m.vn, 0);
        break;
    }
    case M_R_RELEASE:
        if (m.tag >= 0 || m.tag == SNCP_E_NO_SUCH_VN)
            nnve_pairtab_release_answered(t, &v, m.tag > 0 ? (uint16_t)m.tag : 0);
        break;
    case M_SYNC_BEGIN:
        nnve_pairtab_sync_begin(t);
        S[i].in_sync = 1;
        break;
    case M_SYNC_END:
        nnve_pairtab_sync_end(t);
        S[i].in_sync = 0;
        nnve_pairtab_foreach_tombstone(t, tomb, &i);
        break;
    }
}

/* heal: the channel is up again; each side sends its SYNC (every binding it holds). */
static void heal(void)
{
    up = 1;
    for (int k = 0; k < 2; k++) {
        send_to(1 - k, M_SYNC_BEGIN, 0, 0);
        for (unsigned t = 1; t <= SNCP_MAX_VID; t++)
            if (S[k].t.rows[t].used && S[k].t.rows[t].mine)
                send_to(1 - k, M_HOLD, S[k].t.rows[t].vn.id, (int)t);
        send_to(1 - k, M_SYNC_END, 0, 0);
    }
}

static void check_invariant(void)
{
    /* No tag is used by VAPs of two VNs, on one switch or across both. */
    uint32_t owner[SNCP_MAX_VID + 1];
    memset(owner, 0, sizeof owner);
    for (int s = 0; s < 2; s++)
        for (uint32_t v = 1; v < NVN; v++) {
            uint16_t tag = S[s].using[v];
            if (!tag)
                continue;
            ck_assert_msg(owner[tag] == 0 || owner[tag] == v, "tag %u carries VNs %u and %u", tag,
                          owner[tag], v);
            owner[tag] = v;
            ck_assert(S[s].t.rows[tag].used && S[s].t.rows[tag].mine);
        }
}

START_TEST(test_random_partitions)
{
    srandom(1234 + (unsigned)_i);
    trace = getenv("PAIRTAB_TRACE") != NULL;
    if (trace)
        fprintf(stderr, "RUN %d\n", _i);
    memset(S, 0, sizeof S);
    qh[0] = qh[1] = qt[0] = qt[1] = 0;
    up = 0;
    for (int s = 0; s < 2; s++)
        init_pool(&S[s].t, s ? NNVE_PAIR_FOLLOWER : NNVE_PAIR_ALLOCATOR);
    unsigned splits = 0, partitions = 0;
    for (int step = 0; step < 20000; step++) {
        int r = (int)(random() % 100), s = (int)(random() % 2);
        uint32_t v = 1 + (uint32_t)(random() % (NVN - 1));
        struct nnve_vn w = vn(v);
        uint16_t tag;
        if (r < 25) { /* a VAP of v starts on side s */
            if (!S[s].using[v]) {
                int e = nnve_pairtab_acquire(&S[s].t, &w, NULL, 0, up && s == 1, &tag);
                if (trace)
                    fprintf(stderr, "%c acquire vn=%u: %d tag=%u up=%d\n", s ? 'F' : 'A', v, e,
                            e ? 0 : tag, up);
                if (e == SNCP_E_BUSY)
                    send_to(0, M_CLAIM, v, 0);
                else if (e == 0) {
                    S[s].using[v] = tag;
                    send_to(1 - s, M_HOLD, v, tag);
                }
            }
        } else if (r < 40) { /* ... ends */
            if (S[s].using[v]) {
                if (trace)
                    fprintf(stderr, "%c release vn=%u tag=%u\n", s ? 'F' : 'A', v, S[s].using[v]);
                ck_assert_uint_ne(nnve_pairtab_release(&S[s].t, &w), 0);
                S[s].using[v] = 0;
                send_to(1 - s, M_RELEASE, v, 0);
            }
        } else if (r < 93) {
            if (up && qh[s] != qt[s])
                deliver(s);
        } else if (r < 96) { /* partition: whatever is in flight is lost */
            if (up) {
                if (trace)
                    fprintf(stderr, "PARTITION\n");
                partitions++;
                up = 0;
                qh[0] = qt[0], qh[1] = qt[1];
                for (int k = 0; k < 2; k++) {
                    nnve_pairtab_session_lost(&S[k].t);
                    S[k].in_sync = 0;
                }
            }
        } else if (!up) { /* heal: both send their SYNC */
            if (trace)
                fprintf(stderr, "HEAL\n");
            heal();
        }
        check_invariant();
        if (step % 64 == 0)
            splits += nnve_pairtab_splits(&S[0].t) > 0;
    }
    /* Heal for good and let everything be delivered: both tables agree, no tombstone is
     * left, and each binding one side holds is recorded on the other. */
    if (!up)
        heal();
    for (int guard = 0; guard < 100000 && (qh[0] != qt[0] || qh[1] != qt[1]); guard++)
        deliver(qh[0] != qt[0] ? 0 : 1);
    ck_assert(qh[0] == qt[0] && qh[1] == qt[1]);
    check_invariant();
    for (int k = 0; k < 2; k++)
        for (unsigned t = 1; t <= SNCP_MAX_VID; t++) {
            const struct nnve_pair_row *r = &S[k].t.rows[t], *o = &S[1 - k].t.rows[t];
            ck_assert_msg(!r->used || r->mine || r->peer, "tombstone %u left on side %d", t, k);
            if (r->used && r->mine)
                ck_assert_msg(o->used && o->peer && nnve_pairtab_vn_eq(&o->vn, &r->vn),
                              "side %d holds tag %u, the other side does not know", k, t);
        }
    ck_assert_uint_gt(partitions, 100); /* the run did exercise partitions */
    ck_assert_uint_gt(splits, 0);       /* ... and VNs that got two tags while apart */
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("nnve-pairtab");
    TCase *tc = tcase_create("rules");
    tcase_add_checked_fixture(tc, setup_pair, NULL);
    tcase_add_test(tc, test_halves);
    tcase_add_test(tc, test_claim_grant);
    tcase_add_test(tc, test_partition_halves_and_split);
    tcase_add_test(tc, test_release_needs_the_peers_word);
    tcase_add_test(tc, test_sync_clears_what_the_peer_dropped);
    suite_add_tcase(s, tc);
    tc = tcase_create("random");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_random_partitions, 0, 8);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
