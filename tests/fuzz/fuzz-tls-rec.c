/* fuzz-tls-rec.c: libFuzzer target for the server's own TLS 1.3 record layer (lib/sncp-tls.c,
 * compiled into this target, white-box like tests/unit/test-tls-records.c).
 *
 * No handshake: an established server connection is built directly from fixed traffic
 * secrets for the suite the first input byte chooses, and a "mirror" record layer holds the
 * client's side of the same keys.  The rest of the input is a program of steps: the mirror
 * seals records (application data with padding, KeyUpdates, alerts, any inner plaintext,
 * oversized ones), ciphertext is fed to the server in chunks, flipped or mixed with raw
 * bytes, the server reads, writes, updates its key, trims and shuts down, and the mirror
 * drains and opens what the server sent (answering its KeyUpdates), and sequence numbers
 * jump near their limits.  Each sealed record is judged by an independent model of
 * RFC 8446 §5, §4.6.3 and §6 (what the server must do with it and which alert it sends).
 * Invariants checked after every step:
 *   - the server hands out only application data the mirror sealed, in order, and none
 *     from a record at or after the first corrupted or fatal one;
 *   - reading everything fed gives exactly what the model predicts: the data, then nothing,
 *     close_notify, or a failure with the model's alert; its read key and sequence number
 *     then equal the mirror's write side;
 *   - a failed connection stays failed and sends nothing more, close_notify stays;
 *   - everything the server sends opens under the mirror's read key: the written bytes in
 *     order, well-formed KeyUpdates, and nothing after an alert;
 *   - sequence numbers never go back under one key; buffer offsets stay inside buffers.
 * Seeds: tests/fuzz/corpus/tls-rec/, written by `fuzz-tls-rec -write_seeds=DIR`.
 */
#include "sncp-tls.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz-tls-rec: %s:%d: check failed: %s\n", __FILE__, __LINE__, #c);    \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

enum op {
    OP_SEAL_DATA,  /* L, P, L bytes: application data with P bytes of padding */
    OP_SEAL_INNER, /* F, [type], [version16], L, L bytes: any inner plaintext */
    OP_SEAL_KU,    /* B: KeyUpdate, update_requested = B & 1, (B >> 1) bytes of padding */
    OP_SEAL_ALERT, /* level, description */
    OP_SEAL_BIG,   /* L16, P, fill: up to REC_PLAIN_MAX + 300 bytes of data */
    OP_FEED,       /* N16: the next N bytes of the mirror's ciphertext to the server (0: all) */
    OP_RAW,        /* L, L bytes: appended to the mirror's ciphertext as they are */
    OP_FLIP,       /* POS16, X: XOR a byte of the ciphertext not fed yet */
    OP_READ,       /* CAP16: one sncp_tls_read */
    OP_READ_ALL,   /* CAP16: read until nothing more, then check the model's prediction */
    OP_WRITE,      /* N16: sncp_tls_write of N bytes */
    OP_SERVER_KU,  /* sncp_tls_key_update */
    OP_DRAIN,      /* CAP16: the mirror drains that much of the server's output (0: all) */
    OP_TRIM,       /* sncp_tls_trim */
    OP_SHUTDOWN,   /* sncp_tls_shutdown */
    OP_JUMP_WRITE, /* B: the server's write sequence number near 2^24 or 2^64 */
    OP_JUMP_READ,  /* B: the server's read sequence number near 2^24 or 2^64 */
    OP_COUNT,
};

enum {
    MAX_RECS = 4096,
    STREAM_MAX = 4 << 20,
    BIG_MAX = REC_PLAIN_MAX + 300,
    CIN_CAP = 2 * (REC_HDR + REC_CT_MAX),
    OUT_MAX = 1 << 20, /* the server's output not drained */
};

/* What the server must do with a record the mirror sealed. */
enum verdict { V_DATA, V_KU, V_CANCELED, V_CLOSE, V_FATAL, V_UNKNOWN };

struct rec_model {
    size_t start, end; /* in the mirror's ciphertext stream */
    size_t data_off;   /* application data sealed before it */
    size_t data_len;
    enum verdict v;
    int alert;     /* V_FATAL: the alert the server sends, -1 for none */
    int hdr_fatal; /* V_FATAL already from its 5-byte header */
};

static struct {
    struct sncp_tls *t;
    struct tls_rec m; /* the mirror: wr is the client's write side, rd the server's */
    uint8_t *stream;  /* everything the mirror produced; stream[0..fed) went to the server */
    size_t stream_len, stream_cap, fed;
    struct rec_model recs[MAX_RECS];
    size_t nrecs;
    uint8_t *exp; /* the application data sealed, in order */
    size_t exp_len, exp_cap;
    size_t read_pos; /* how much of it the server handed out */
    size_t cut;      /* the server never hands out exp[cut..) */
    int failed, closed;
    size_t pending_at_fail;
    /* the mirror's side of the server's output */
    uint8_t cin[CIN_CAP];
    size_t cin_len;
    uint64_t s_written, s_attempted, s_received; /* server data bytes */
    int got_alert, alert_level, alert_desc;
    int shutdown;   /* close_notify asked for before any failure */
    int want_alert; /* the alert a predicted failure sends: -1 none, -2 not known */
    uint8_t prev_rd_secret[EVP_MAX_MD_SIZE], prev_wr_secret[EVP_MAX_MD_SIZE];
    uint64_t prev_rd_seq, prev_wr_seq;
} S;

struct input {
    const uint8_t *p;
    size_t left;
};

static uint8_t take(struct input *in)
{
    if (!in->left)
        return 0;
    in->left--;
    return *in->p++;
}

static size_t take16(struct input *in)
{
    size_t hi = take(in);
    return hi << 8 | take(in);
}

/* The server's data, byte i. */
static uint8_t s_byte(uint64_t i)
{
    return (uint8_t)(i * 131 + (i >> 9) + 7);
}

static void setup(unsigned suite)
{
    memset(&S, 0, sizeof S);
    S.cut = SIZE_MAX;
    S.want_alert = -2;
    S.alert_level = S.alert_desc = -1;
    struct sncp_tls *t = calloc(1, sizeof *t);
    struct tls_rec *r = calloc(1, sizeof *r);
    CHECK(t && r);
    t->role = SNCP_TLS_SERVER;
    t->established = 1;
    t->rec = r;
    S.t = t;
    uint8_t c_secret[EVP_MAX_MD_SIZE], s_secret[EVP_MAX_MD_SIZE];
    for (size_t i = 0; i < rec_suites[suite].hash_len; i++) {
        c_secret[i] = (uint8_t)(i * 7 + 1);
        s_secret[i] = (uint8_t)(i * 13 + 5);
    }
    CHECK(rec_keys(r, &rec_suites[suite], c_secret, s_secret) == 0);
    CHECK(rec_keys(&S.m, &rec_suites[suite], s_secret, c_secret) == 0);
    memcpy(S.prev_rd_secret, r->rd.secret, sizeof S.prev_rd_secret);
    memcpy(S.prev_wr_secret, r->wr.secret, sizeof S.prev_wr_secret);
}

static void teardown(void)
{
    sncp_tls_destroy(S.t);
    dir_clear(&S.m.rd);
    dir_clear(&S.m.wr);
    free(S.stream);
    free(S.exp);
}

/* The library's buffer growth; a buffer exists even for nothing (memcpy of 0 bytes to it). */
static void grow(uint8_t **buf, size_t *cap, size_t need)
{
    CHECK(buf_reserve(buf, cap, need ? need : 1) == 0);
}

/* The model (RFC 8446): what the server does with a record of outer `type` and `version`
 * whose inner plaintext is in[0..len), sealed at sequence number `seq`. */
static void judge(struct rec_model *rm, uint8_t type, unsigned version, const uint8_t *in,
                  size_t len, uint64_t seq)
{
    size_t ct_len = len + REC_TAG;
    rm->v = V_FATAL;
    rm->hdr_fatal = 1;
    if (type != CT_APPLICATION_DATA) { /* §5: nothing unprotected after the handshake */
        rm->alert = ALERT_UNEXPECTED_MESSAGE;
        return;
    }
    if (version != 0x0303) { /* as OpenSSL */
        rm->alert = ALERT_DECODE_ERROR;
        return;
    }
    if (ct_len > REC_PLAIN_MAX + 256) { /* §5.2 */
        rm->alert = ALERT_RECORD_OVERFLOW;
        return;
    }
    if (len == 0) { /* not even a tag and a content type */
        rm->alert = ALERT_DECODE_ERROR;
        return;
    }
    rm->hdr_fatal = 0;
    if (seq == UINT64_MAX) { /* §5.3: never wraps */
        rm->alert = ALERT_BAD_RECORD_MAC;
        return;
    }
    if (len > REC_PLAIN_MAX + 1) { /* §5.4: padding included */
        rm->alert = ALERT_RECORD_OVERFLOW;
        return;
    }
    size_t n = len;
    while (n && in[n - 1] == 0)
        n--;
    if (!n) { /* §5.4 */
        rm->alert = ALERT_UNEXPECTED_MESSAGE;
        return;
    }
    uint8_t ct = in[--n];
    rm->alert = ALERT_UNEXPECTED_MESSAGE;
    switch (ct) {
    case CT_APPLICATION_DATA:
        rm->v = V_DATA;
        rm->data_len = n;
        return;
    case CT_HANDSHAKE:
        /* only a whole KeyUpdate, ending its record (§4.6.3, §5.1) */
        if (n < 4 || in[0] != HS_KEY_UPDATE)
            return;
        if ((in[1] | in[2]) != 0 || in[3] != 1 || n < 5)
            rm->alert = ALERT_DECODE_ERROR;
        else if (in[4] > 1)
            rm->alert = ALERT_ILLEGAL_PARAMETER;
        else if (n == 5)
            rm->v = V_KU;
        return;
    case CT_ALERT: /* §6: the level does not matter */
        if (n != 2)
            rm->alert = ALERT_DECODE_ERROR;
        else if (in[1] == ALERT_CLOSE_NOTIFY)
            rm->v = V_CLOSE;
        else if (in[1] == ALERT_USER_CANCELED)
            rm->v = V_CANCELED;
        else
            rm->alert = -1;
        return;
    default:
        return;
    }
}

static void cut_at(size_t data_off)
{
    if (data_off < S.cut)
        S.cut = data_off;
}

/* The mirror seals inner plaintext in[0..len) as the client, with that outer type and
 * version (the length is always right), judges it, and follows its own KeyUpdate. */
static void mirror_seal(uint8_t type, unsigned version, const uint8_t *in, size_t len)
{
    if (S.nrecs == MAX_RECS || S.stream_len + REC_HDR + len + REC_TAG > STREAM_MAX)
        return;
    struct rec_model *rm = &S.recs[S.nrecs++];
    memset(rm, 0, sizeof *rm);
    judge(rm, type, version, in, len, S.m.wr.seq);
    rm->data_off = S.exp_len;
    if (rm->v == V_DATA) {
        grow(&S.exp, &S.exp_cap, S.exp_len + rm->data_len);
        memcpy(S.exp + S.exp_len, in, rm->data_len);
        S.exp_len += rm->data_len;
    } else if (rm->v != V_KU && rm->v != V_CANCELED) {
        cut_at(rm->data_off);
    }
    size_t total = REC_HDR + len + REC_TAG;
    grow(&S.stream, &S.stream_cap, S.stream_len + total);
    uint8_t *p = S.stream + S.stream_len;
    p[0] = type;
    p[1] = (uint8_t)(version >> 8);
    p[2] = (uint8_t)version;
    p[3] = (uint8_t)((len + REC_TAG) >> 8);
    p[4] = (uint8_t)(len + REC_TAG);
    memcpy(p + REC_HDR, in, len);
    CHECK(dir_crypt(&S.m, &S.m.wr, 1, p, p + REC_HDR, len) == 0);
    rm->start = S.stream_len;
    S.stream_len += total;
    rm->end = S.stream_len;
    if (rm->v == V_KU)
        CHECK(dir_update(&S.m, &S.m.wr) == 0);
}

static void seal_ku(int request, size_t pad)
{
    uint8_t msg[5 + 1 + 127] = {HS_KEY_UPDATE, 0, 0, 1, (uint8_t)request, CT_HANDSHAKE};
    mirror_seal(CT_APPLICATION_DATA, 0x0303, msg, 6 + pad);
}

/* Raw bytes or a flipped byte: the model knows nothing of that record or what follows. */
static void mark_unknown(size_t rec_index)
{
    S.recs[rec_index].v = V_UNKNOWN;
    cut_at(S.recs[rec_index].data_off);
}

/* Opens the server's records in S.cin as the client. */
static void mirror_open(void)
{
    size_t off = 0;
    while (S.cin_len - off >= REC_HDR) {
        uint8_t *h = S.cin + off;
        size_t len = (size_t)h[3] << 8 | h[4];
        CHECK(h[0] == CT_APPLICATION_DATA && h[1] == 3 && h[2] == 3);
        CHECK(len > REC_TAG && len <= REC_TAG + REC_PLAIN_MAX + 1);
        if (S.cin_len - off < REC_HDR + len)
            break;
        CHECK(!S.got_alert); /* nothing after close_notify or a fatal alert */
        uint8_t *body = h + REC_HDR;
        CHECK(dir_crypt(&S.m, &S.m.rd, 0, h, body, len) == 0);
        off += REC_HDR + len;
        size_t n = len - REC_TAG;
        uint8_t type = body[--n]; /* the server does not pad */
        if (type == CT_APPLICATION_DATA) {
            for (size_t i = 0; i < n; i++)
                CHECK(body[i] == s_byte(S.s_received + i));
            S.s_received += n;
            CHECK(S.s_received <= S.s_attempted);
        } else if (type == CT_HANDSHAKE) {
            CHECK(n == 5 && body[0] == HS_KEY_UPDATE && body[1] == 0 && body[2] == 0 &&
                  body[3] == 1 && body[4] <= 1);
            CHECK(dir_update(&S.m, &S.m.rd) == 0);
            if (body[4] == 1)
                seal_ku(0, 0); /* §4.6.3: answered before the client's next data */
        } else {
            CHECK(type == CT_ALERT && n == 2);
            S.got_alert = 1;
            S.alert_level = body[0];
            S.alert_desc = body[1];
            CHECK((body[0] == 1 && body[1] == ALERT_CLOSE_NOTIFY) ||
                  (body[0] == 2 && body[1] != ALERT_CLOSE_NOTIFY));
        }
    }
    memmove(S.cin, S.cin + off, S.cin_len - off);
    S.cin_len -= off;
}

static void mirror_drain(size_t cap)
{
    do {
        size_t room = CIN_CAP - S.cin_len;
        size_t want = cap && cap < room ? cap : room;
        size_t n = sncp_tls_drain(S.t, S.cin + S.cin_len, want);
        S.cin_len += n;
        mirror_open();
        if (cap || !n)
            break;
    } while (1);
    if (!cap)
        CHECK(S.cin_len == 0 && sncp_tls_pending(S.t) == 0);
}

/* What the server must have done once it read every record fed to it. */
struct prediction {
    enum verdict end; /* V_DATA: nothing more; V_CLOSE; V_FATAL; V_UNKNOWN */
    size_t data;      /* bytes of application data handed out */
    int alert;
    int all_consumed; /* every record fed was whole and consumed */
};

static void predict(struct prediction *pr)
{
    pr->end = V_DATA;
    pr->data = 0;
    pr->alert = -1;
    pr->all_consumed = 0;
    for (size_t i = 0; i < S.nrecs; i++) {
        const struct rec_model *rm = &S.recs[i];
        if (rm->start >= S.fed) {
            pr->all_consumed = 1;
            return;
        }
        if (rm->end > S.fed) { /* partly fed: only its header may have been judged */
            if (rm->v == V_UNKNOWN) {
                pr->end = V_UNKNOWN;
            } else if (rm->v == V_FATAL && rm->hdr_fatal && S.fed - rm->start >= REC_HDR) {
                pr->end = V_FATAL;
                pr->alert = rm->alert;
            }
            return;
        }
        if (rm->v == V_DATA) {
            pr->data = rm->data_off + rm->data_len;
        } else if (rm->v != V_KU && rm->v != V_CANCELED) {
            pr->end = rm->v;
            pr->alert = rm->alert;
            return;
        }
    }
    pr->all_consumed = 1;
}

/* One sncp_tls_read of up to cap bytes, checked against the mirror's data. */
static int server_read(size_t cap)
{
    uint8_t *buf = malloc(cap ? cap : 1);
    CHECK(buf);
    int rc = sncp_tls_read(S.t, buf, cap);
    if (rc > 0) {
        CHECK(!S.failed && !S.closed && (size_t)rc <= cap);
        CHECK(S.read_pos + (size_t)rc <= S.exp_len && S.read_pos + (size_t)rc <= S.cut);
        CHECK(memcmp(buf, S.exp + S.read_pos, (size_t)rc) == 0);
        S.read_pos += (size_t)rc;
    } else if (rc == SNCP_E_TLS) {
        CHECK(S.t->failed && S.t->error[0]);
        if (!S.failed)
            S.pending_at_fail = sncp_tls_pending(S.t);
        S.failed = 1;
    } else if (rc == SNCP_E_PEER_CLOSED) {
        CHECK(!S.failed);
        S.closed = 1;
    } else {
        CHECK(rc == 0 && !S.failed && !S.closed);
    }
    free(buf);
    return rc;
}

static void read_all(size_t cap)
{
    int rc;
    while ((rc = server_read(cap)) > 0)
        ;
    struct prediction pr;
    predict(&pr);
    if (pr.end == V_UNKNOWN)
        return;
    CHECK(S.read_pos == pr.data);
    switch (pr.end) {
    case V_DATA:
        CHECK(rc == 0);
        if (pr.all_consumed && S.fed == S.stream_len) {
            const struct tls_rec *r = S.t->rec;
            CHECK(r->in_off == r->in_len && r->pt_len == 0);
            CHECK(r->rd.seq == S.m.wr.seq);
            CHECK(!memcmp(r->rd.secret, S.m.wr.secret, r->suite->hash_len));
        }
        break;
    case V_CLOSE:
        CHECK(rc == SNCP_E_PEER_CLOSED);
        break;
    default:
        CHECK(rc == SNCP_E_TLS);
        if (S.want_alert == -2)
            S.want_alert = S.shutdown ? -1 : pr.alert;
        break;
    }
}

static void server_write(size_t len)
{
    uint8_t *buf = malloc(len ? len : 1);
    CHECK(buf);
    for (size_t i = 0; i < len; i++)
        buf[i] = s_byte(S.s_written + i);
    int was_failed = S.t->failed, was_closed = S.t->rec->sent_close;
    S.s_attempted = S.s_written + len;
    int rc = sncp_tls_write(S.t, buf, len);
    if (rc == 0) {
        CHECK(!was_failed && !was_closed);
        S.s_written += len;
    } else {
        CHECK(was_failed || was_closed);
        CHECK(rc == (was_failed ? SNCP_E_TLS : SNCP_E_PEER_CLOSED));
    }
    free(buf);
}

/* After each step. */
static void check_state(void)
{
    struct sncp_tls *t = S.t;
    const struct tls_rec *r = t->rec;
    CHECK(r->in_off <= r->in_len && r->in_len <= r->in_cap);
    CHECK(!r->pt_len || (r->pt_off >= REC_HDR && r->pt_off + r->pt_len <= r->in_off));
    CHECK(r->out_off <= r->out_len && r->out_len <= r->out_cap);
    if (S.failed) {
        CHECK(t->failed);
        CHECK(sncp_tls_pending(t) <= S.pending_at_fail); /* nothing sent after failing */
        S.pending_at_fail = sncp_tls_pending(t);
    }
    if (t->failed && !S.failed) { /* failed in a write, a KeyUpdate or a read */
        S.failed = 1;
        S.pending_at_fail = sncp_tls_pending(t);
    }
    if (!memcmp(S.prev_rd_secret, r->rd.secret, r->suite->hash_len))
        CHECK(r->rd.seq >= S.prev_rd_seq);
    if (!memcmp(S.prev_wr_secret, r->wr.secret, r->suite->hash_len))
        CHECK(r->wr.seq >= S.prev_wr_seq);
    memcpy(S.prev_rd_secret, r->rd.secret, r->suite->hash_len);
    memcpy(S.prev_wr_secret, r->wr.secret, r->suite->hash_len);
    S.prev_rd_seq = r->rd.seq;
    S.prev_wr_seq = r->wr.seq;
}

static uint64_t jump_target(uint8_t b)
{
    /* Near the automatic KeyUpdate, or near the end of the sequence space (the write side
     * is never left at UINT64_MAX: each write starts with a KeyUpdate past 2^24). */
    return b & 0x80 ? UINT64_MAX - 1 - (b & 3) : (uint64_t)REC_KEY_UPDATE_AFTER - (b & 3);
}

static void step(struct input *in)
{
    struct sncp_tls *t = S.t;
    struct tls_rec *r = t->rec;
    static uint8_t big[BIG_MAX + 1 + 255];
    switch ((enum op)(take(in) % OP_COUNT)) {
    case OP_SEAL_DATA: {
        size_t l = take(in), pad = take(in);
        uint8_t buf[256 + 1 + 255] = {0};
        for (size_t i = 0; i < l; i++)
            buf[i] = take(in);
        buf[l] = CT_APPLICATION_DATA;
        mirror_seal(CT_APPLICATION_DATA, 0x0303, buf, l + 1 + pad);
        break;
    }
    case OP_SEAL_INNER: {
        uint8_t f = take(in), type = CT_APPLICATION_DATA;
        unsigned version = 0x0303;
        if (f & 1)
            type = take(in);
        if (f & 2)
            version = (unsigned)take16(in);
        size_t l = take(in);
        uint8_t buf[256];
        for (size_t i = 0; i < l; i++)
            buf[i] = take(in);
        mirror_seal(type, version, buf, l);
        break;
    }
    case OP_SEAL_KU: {
        uint8_t b = take(in);
        seal_ku(b & 1, b >> 1);
        break;
    }
    case OP_SEAL_ALERT: {
        uint8_t a[3] = {0, 0, CT_ALERT};
        a[0] = take(in);
        a[1] = take(in);
        mirror_seal(CT_APPLICATION_DATA, 0x0303, a, sizeof a);
        break;
    }
    case OP_SEAL_BIG: {
        size_t l = take16(in) % (BIG_MAX + 1), pad = take(in);
        uint8_t fill = take(in);
        memset(big, fill, l);
        big[l] = CT_APPLICATION_DATA;
        memset(big + l + 1, 0, pad);
        mirror_seal(CT_APPLICATION_DATA, 0x0303, big, l + 1 + pad);
        break;
    }
    case OP_FEED: {
        size_t n = take16(in), left = S.stream_len - S.fed;
        if (!n || n > left)
            n = left;
        if (!n)
            break;
        CHECK(sncp_tls_feed(t, S.stream + S.fed, n) == 0);
        S.fed += n;
        break;
    }
    case OP_RAW: {
        size_t l = take(in);
        if (!l || S.nrecs == MAX_RECS || S.stream_len + l > STREAM_MAX)
            break;
        grow(&S.stream, &S.stream_cap, S.stream_len + l);
        for (size_t i = 0; i < l; i++)
            S.stream[S.stream_len + i] = take(in);
        struct rec_model *rm = &S.recs[S.nrecs];
        memset(rm, 0, sizeof *rm);
        rm->start = S.stream_len;
        rm->end = S.stream_len += l;
        rm->data_off = S.exp_len;
        mark_unknown(S.nrecs++);
        break;
    }
    case OP_FLIP: {
        size_t pos = take16(in);
        uint8_t x = take(in);
        if (S.fed == S.stream_len)
            break;
        pos = S.fed + pos % (S.stream_len - S.fed);
        size_t i = 0;
        while (S.recs[i].end <= pos)
            i++;
        if (S.recs[i].v == V_UNKNOWN) /* once per record: a second flip could undo it */
            break;
        S.stream[pos] ^= x ? x : 1;
        mark_unknown(i);
        break;
    }
    case OP_READ:
        server_read(take16(in));
        break;
    case OP_READ_ALL:
        read_all(take16(in) + 1);
        break;
    case OP_WRITE: {
        size_t n = take16(in) & 0x7fff; /* up to two records */
        if (sncp_tls_pending(t) < OUT_MAX)
            server_write(n);
        break;
    }
    case OP_SERVER_KU: {
        int was_failed = t->failed, was_closed = r->sent_close;
        int rc = sncp_tls_key_update(t);
        CHECK(rc == 0 ? !was_failed && !was_closed : was_failed || was_closed);
        break;
    }
    case OP_DRAIN:
        mirror_drain(take16(in));
        break;
    case OP_TRIM:
        sncp_tls_trim(t);
        CHECK(r->rd.ctx == NULL && r->wr.ctx == NULL);
        break;
    case OP_SHUTDOWN:
        if (!t->failed)
            S.shutdown = 1;
        sncp_tls_shutdown(t);
        break;
    case OP_JUMP_WRITE: {
        uint8_t b = take(in);
        mirror_drain(0);
        CHECK(S.m.rd.seq == r->wr.seq && !memcmp(S.m.rd.secret, r->wr.secret, r->suite->hash_len));
        r->wr.seq = S.m.rd.seq = jump_target(b);
        S.prev_wr_seq = r->wr.seq;
        break;
    }
    case OP_JUMP_READ: {
        uint8_t b = take(in);
        /* Only when the server consumed every record the mirror sealed. */
        if (S.fed != S.stream_len || r->in_off != r->in_len || S.cut != SIZE_MAX || t->failed ||
            r->peer_closed)
            break;
        CHECK(S.m.wr.seq == r->rd.seq && !memcmp(S.m.wr.secret, r->rd.secret, r->suite->hash_len));
        r->rd.seq = S.m.wr.seq = jump_target(b) + (b & 0x80 ? 1 : 0);
        S.prev_rd_seq = r->rd.seq;
        break;
    }
    case OP_COUNT:
        break;
    }
    check_state();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    setup(data[0] % 3);
    struct input in = {data + 1, size - 1};
    while (in.left)
        step(&in);
    /* The end: everything read and drained, the model's prediction met. */
    read_all(4096);
    mirror_drain(0);
    if (S.want_alert >= 0)
        CHECK(S.got_alert && S.alert_level == 2 && S.alert_desc == S.want_alert);
    else if (S.want_alert == -1)
        CHECK(!S.got_alert || S.alert_desc == ALERT_CLOSE_NOTIFY);
    CHECK(S.s_received == S.s_written);
    CHECK(S.m.rd.seq == S.t->rec->wr.seq &&
          !memcmp(S.m.rd.secret, S.t->rec->wr.secret, S.t->rec->suite->hash_len));
    teardown();
    return 0;
}

/* ---- seeds: one small program per step kind ------------------------------------------- */

#define SEED(name, ...)                                                                            \
    {                                                                                              \
        name, sizeof((const uint8_t[]){__VA_ARGS__}),                                              \
        {                                                                                          \
            __VA_ARGS__                                                                            \
        }                                                                                          \
    }
static const struct seed {
    const char *name;
    size_t len;
    uint8_t prog[64];
} seeds[] = {
    SEED("data-aes128", 0, OP_SEAL_DATA, 5, 0, 'h', 'e', 'l', 'l', 'o', OP_FEED, 0, 0, OP_READ_ALL,
         0),
    SEED("data-padded-chunks-aes256", 1, OP_SEAL_DATA, 2, 9, 'h', 'i', OP_SEAL_DATA, 0, 0,
         OP_SEAL_DATA, 1, 40, '!', OP_FEED, 0, 3, OP_READ, 0, 1, OP_READ_ALL, 0, 16),
    SEED("ku-both-chacha", 2, OP_SEAL_KU, 1, OP_SEAL_DATA, 3, 0, 'a', 'b', 'c', OP_FEED, 0, 0,
         OP_READ_ALL, 0, 64, OP_DRAIN, 0, 0, OP_SERVER_KU, OP_DRAIN, 0, 0, OP_FEED, 0, 0),
    SEED("ku-padded-requested", 0, OP_SEAL_KU, 21, OP_SEAL_DATA, 1, 0, 'x', OP_FEED, 0, 7, OP_FEED,
         0, 0, OP_READ_ALL, 0, 0),
    SEED("write-drain-chunks", 1, OP_WRITE, 0x50, 0x00, OP_DRAIN, 0x10, 0x00, OP_TRIM, OP_DRAIN, 0,
         1, OP_DRAIN, 0, 0, OP_WRITE, 0, 3),
    SEED("alerts", 2, OP_SEAL_ALERT, 1, ALERT_USER_CANCELED, OP_SEAL_DATA, 1, 0, 'y', OP_SEAL_ALERT,
         1, ALERT_CLOSE_NOTIFY, OP_FEED, 0, 0, OP_READ_ALL, 0, 0),
    SEED("fatal-alert", 0, OP_SEAL_ALERT, 2, 40, OP_FEED, 0, 0, OP_READ_ALL, 0),
    SEED("inner-heartbeat", 1, OP_SEAL_INNER, 0, 2, 1, 24, OP_FEED, 0, 0, OP_READ_ALL, 0),
    SEED("inner-outer-ccs", 2, OP_SEAL_INNER, 1, 20, 1, 1, OP_FEED, 0, 0, OP_READ_ALL, 0),
    SEED("inner-bad-ku", 0, OP_SEAL_INNER, 0, 6, HS_KEY_UPDATE, 0, 0, 1, 2, CT_HANDSHAKE, OP_FEED,
         0, 0, OP_READ_ALL, 0),
    SEED("inner-ku-trailing", 2, OP_SEAL_INNER, 0, 7, HS_KEY_UPDATE, 0, 0, 1, 0, 0x42, CT_HANDSHAKE,
         OP_FEED, 0, 0, OP_READ_ALL, 0, 0),
    SEED("big-overflow", 1, OP_SEAL_BIG, 0x40, 0x01, 0, 'z', OP_FEED, 0, 0, OP_READ_ALL, 0x40, 0),
    SEED("big-max-padded", 2, OP_SEAL_BIG, 0x40, 0x00, 200, 'z', OP_FEED, 0, 0, OP_READ_ALL, 0x10,
         0),
    SEED("flip", 0, OP_SEAL_DATA, 2, 0, 'o', 'k', OP_FLIP, 0, 9, 0x80, OP_FEED, 0, 0, OP_READ_ALL,
         0),
    SEED("raw", 1, OP_SEAL_DATA, 1, 0, 'a', OP_RAW, 5, 23, 3, 3, 0, 17, OP_FEED, 0, 0, OP_READ_ALL,
         0),
    SEED("shutdown-trim", 2, OP_WRITE, 0, 9, OP_SHUTDOWN, OP_WRITE, 0, 1, OP_SERVER_KU, OP_TRIM,
         OP_DRAIN, 0, 0),
    SEED("jump-write-auto-ku", 0, OP_JUMP_WRITE, 1, OP_WRITE, 0x80, 0x00, OP_DRAIN, 0, 0, OP_WRITE,
         0, 5),
    SEED("jump-read-limit", 1, OP_JUMP_READ, 0x81, OP_SEAL_DATA, 1, 0, 'p', OP_SEAL_DATA, 1, 0, 'q',
         OP_FEED, 0, 0, OP_READ_ALL, 0, 0, OP_DRAIN, 0, 0),
};

/* `fuzz-tls-rec -write_seeds=DIR` writes the seed programs into DIR and exits. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char opt[] = "-write_seeds=";
    for (int i = 1; i < *argc; i++) {
        const char *a = (*argv)[i];
        if (strncmp(a, opt, sizeof opt - 1))
            continue;
        for (size_t k = 0; k < sizeof seeds / sizeof seeds[0]; k++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", a + sizeof opt - 1, seeds[k].name);
            FILE *f = fopen(path, "wb");
            if (!f || fwrite(seeds[k].prog, 1, seeds[k].len, f) != seeds[k].len || fclose(f)) {
                perror(path);
                exit(1);
            }
            LLVMFuzzerTestOneInput(seeds[k].prog, seeds[k].len);
        }
        exit(0);
    }
    return 0;
}
