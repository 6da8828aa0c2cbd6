/* l2-flood.c: a flood of SNCP Layer-2 OPENs from random source MAC addresses, as an attacker
 * on the access network would send them (proto/L2-TRANSPORT.md §6.2, §9).
 *
 *   l2-flood --if IFNAME --dst MAC [--count N] [--seconds S] [--rate R] [--bad-cookies PCT]
 *            [--echo-cookies] [--ethertype N]
 *
 * Sends at most N OPENs (default 100000) for at most S seconds (default 10), R per second
 * (default 20000; 0: as fast as the socket takes them), each from a fresh random locally
 * administered unicast MAC with a random connection id and ISN; PCT percent of them carry a
 * random (forged) cookie.  With --echo-cookies it also reads the COOKIE answers (sent to the
 * random MACs: on a veth or a flooding bridge they reach this interface) and repeats each
 * OPEN with its cookie, as an attacker who sees the segment's traffic can: the nNVE then
 * creates connections, which its cap on unauthenticated connections bounds.  It never
 * answers an OPEN_ACK (the connections it makes never authenticate).
 * SIGINT or SIGTERM ends the flood early.  Prints one summary line: frames sent and answers
 * seen by type.  Needs CAP_NET_RAW.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sncp-l2.h"
#include "sncp-msg.h"

enum { ETH_HDR = 14, MAX_PAYLOAD = 1476 };

static struct {
    int fd, ifindex;
    uint8_t dst[6];
    uint16_t ethertype;
    uint64_t opens, forged, echoes, send_errors;
    uint64_t seen[SNCP_L2_TYPE_MAX + 1];
} fl;

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void rand_bytes(void *b, size_t n)
{
    if (getrandom(b, n, 0) != (ssize_t)n) {
        for (size_t i = 0; i < n; i++) {
            ((uint8_t *)b)[i] = (uint8_t)rand();
        }
    }
}

/* Sends an OPEN from src (id, isn) with `cookie` (NULL: none). */
static void send_open(const uint8_t src[6], uint32_t id, uint32_t isn, const uint8_t *cookie)
{
    uint8_t body[SNCP_L2_OPEN_COOKIE_BODY_LEN] = {MAX_PAYLOAD >> 8, MAX_PAYLOAD & 0xff, 0, 0};
    if (cookie) {
        memcpy(body + SNCP_L2_OPEN_BODY_LEN, cookie, SNCP_L2_COOKIE_LEN);
    }
    struct sncp_l2_frame f = {
        .type = SNCP_L2_OPEN,
        .src_id = id,
        .seq = isn,
        .window = SNCP_L2_DEFAULT_WINDOW,
        .len = cookie ? SNCP_L2_OPEN_COOKIE_BODY_LEN : SNCP_L2_OPEN_BODY_LEN,
        .payload = body,
    };
    uint8_t pkt[ETH_HDR + SNCP_L2_HEADER_LEN + SNCP_L2_OPEN_COOKIE_BODY_LEN + 16] = {0};
    memcpy(pkt, fl.dst, 6);
    memcpy(pkt + 6, src, 6);
    uint16_t et = htons(fl.ethertype);
    memcpy(pkt + 12, &et, 2);
    int n = sncp_l2_frame_encode(&f, pkt + ETH_HDR, sizeof pkt - ETH_HDR);
    if (n < 0) {
        return;
    }
    size_t len = ETH_HDR + (size_t)n < 60 ? 60 : ETH_HDR + (size_t)n;
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_ifindex = fl.ifindex, .sll_halen = 6};
    memcpy(sll.sll_addr, fl.dst, 6);
    if (sendto(fl.fd, pkt, len, 0, (struct sockaddr *)&sll, sizeof sll) < 0) {
        fl.send_errors++;
    }
}

/* Reads what arrived; with echo, answers each COOKIE with the OPEN it asks for. */
static void drain(int echo)
{
    uint8_t pkt[ETH_HDR + 4 + SNCP_L2_MAX_MTU];
    for (int i = 0; i < 256; i++) {
        struct sockaddr_ll sll;
        socklen_t sl = sizeof sll;
        ssize_t n = recvfrom(fl.fd, pkt, sizeof pkt, MSG_DONTWAIT, (struct sockaddr *)&sll, &sl);
        if (n < 0) {
            return;
        }
        uint16_t et;
        if (n < ETH_HDR || sll.sll_pkttype == PACKET_OUTGOING) {
            continue;
        }
        memcpy(&et, pkt + 12, 2);
        struct sncp_l2_frame f;
        if (ntohs(et) != fl.ethertype ||
            sncp_l2_frame_decode(pkt + ETH_HDR, (size_t)n - ETH_HDR, &f) != 0) {
            continue;
        }
        fl.seen[f.type]++;
        if (echo && f.type == SNCP_L2_COOKIE) {
            /* To the random MAC we sent from: its id in dst_id, its ISN in Acknowledgement. */
            send_open(pkt, f.dst_id, f.ack, f.payload);
            fl.echoes++;
        }
    }
}

int main(int argc, char **argv)
{
    const char *ifname = NULL, *dst = NULL;
    unsigned long count = 100000, seconds = 10, rate = 20000, bad_pct = 0;
    int echo = 0;
    fl.ethertype = SNCP_L2_DEFAULT_ETHERTYPE;
    static const struct option opts[] = {
        {"if", required_argument, NULL, 'i'},
        {"dst", required_argument, NULL, 'd'},
        {"count", required_argument, NULL, 'n'},
        {"seconds", required_argument, NULL, 's'},
        {"rate", required_argument, NULL, 'r'},
        {"bad-cookies", required_argument, NULL, 'b'},
        {"echo-cookies", no_argument, NULL, 'e'},
        {"ethertype", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'i':
            ifname = optarg;
            break;
        case 'd':
            dst = optarg;
            break;
        case 'n':
            count = strtoul(optarg, NULL, 0);
            break;
        case 's':
            seconds = strtoul(optarg, NULL, 0);
            break;
        case 'r':
            rate = strtoul(optarg, NULL, 0);
            break;
        case 'b':
            bad_pct = strtoul(optarg, NULL, 0);
            break;
        case 'e':
            echo = 1;
            break;
        case 't':
            fl.ethertype = (uint16_t)strtoul(optarg, NULL, 0);
            break;
        default:
            return 2;
        }
    }
    if (!ifname || !dst || sncp_mac_parse(dst, fl.dst) != 0 || bad_pct > 100) {
        fprintf(stderr, "usage: l2-flood --if IFNAME --dst MAC [--count N] [--seconds S] "
                        "[--rate R] [--bad-cookies PCT] [--echo-cookies] [--ethertype N]\n");
        return 2;
    }
    fl.ifindex = (int)if_nametoindex(ifname);
    fl.fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (!fl.ifindex || fl.fd < 0) {
        fprintf(stderr, "l2-flood: %s: %s\n", ifname, strerror(errno));
        return 1;
    }
    struct sockaddr_ll sll = {
        .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = fl.ifindex};
    if (bind(fl.fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
        fprintf(stderr, "l2-flood: bind %s: %s\n", ifname, strerror(errno));
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)seconds * 1000000000u;
    for (unsigned long i = 0; i < count; i++) {
        uint64_t t = now_ns();
        if (t >= end || stopping) {
            break;
        }
        if (rate) {
            uint64_t due = t0 + (uint64_t)i * 1000000000u / rate;
            while (t < due && !stopping) {
                drain(echo);
                struct timespec ts = {0, (long)(due - t < 200000 ? due - t : 200000)};
                nanosleep(&ts, NULL);
                t = now_ns();
            }
        }
        struct {
            uint8_t mac[6];
            uint32_t id, isn;
            uint8_t cookie[SNCP_L2_COOKIE_LEN];
            uint16_t pct;
        } r;
        rand_bytes(&r, sizeof r);
        r.mac[0] = (uint8_t)((r.mac[0] & 0xfc) | 0x02); /* unicast, locally administered */
        if (!r.id) {
            r.id = 1;
        }
        int forged = r.pct % 100 < bad_pct;
        send_open(r.mac, r.id, r.isn, forged ? r.cookie : NULL);
        fl.opens++;
        fl.forged += forged;
        if ((i & 63) == 0) {
            drain(echo);
        }
    }
    /* Answers still on their way. */
    for (int i = 0; i < 20; i++) {
        drain(echo);
        usleep(10000);
    }
    double el = (double)(now_ns() - t0) / 1e9;
    printf("flood: %lu OPENs (%lu with forged cookies) in %.2f s (%.0f/s), %lu echoed with a "
           "cookie, %lu send errors; seen: COOKIE %lu, OPEN_ACK %lu, RESET/CLOSE %lu\n",
           (unsigned long)fl.opens, (unsigned long)fl.forged, el, (double)fl.opens / el,
           (unsigned long)fl.echoes, (unsigned long)fl.send_errors,
           (unsigned long)fl.seen[SNCP_L2_COOKIE], (unsigned long)fl.seen[SNCP_L2_OPEN_ACK],
           (unsigned long)fl.seen[SNCP_L2_CLOSE]);
    close(fl.fd);
    return 0;
}
