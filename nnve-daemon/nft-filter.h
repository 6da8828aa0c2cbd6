/* nft-filter.h: the IP anti-spoofing filter of the linux backend, one nftables table of the
 * bridge family owned by nnve-daemon ("bridge splitnve" by default), driven with
 * libnftables.
 *
 * The table holds three sets and two chains, and nothing else:
 *   set macs { iifname . vlan id . ether saddr }              source MACs under IP control
 *   set src4 { iifname . vlan id . ether saddr . ip saddr }   their IPv4 addresses
 *   set src6 { iifname . vlan id . ether saddr . ip6 saddr }  their IPv6 addresses
 *   chain prerouting (filter hook prerouting, priority filter): a frame whose (port, VLAN,
 *   source MAC) is in @macs goes to chain guard, which accepts IPv4 and ARP whose source /
 *   sender IP is in @src4 for that (port, VLAN, MAC), IPv6 whose source is in @src6, and
 *   the address-less exceptions (DHCP discover from 0.0.0.0, ARP probes from 0.0.0.0, IPv6
 *   DAD from ::, neighbour and router discovery from link-local), and drops every other
 *   IPv4, ARP and IPv6 frame.  Other frames (and other MACs) are left to port locking.
 * A TSI's addresses are set elements: activation adds them, deactivation removes them, in one
 * nftables transaction each; the rules never change at run time.
 *
 * The bridge hands the hook frames whose 802.1Q tag is in the packet's metadata; nftables
 * rebuilds the tag for link-layer matches (`vlan id`, `vlan type`), and the rules match
 * `vlan type ip|arp|ip6` so that only tagged frames (the VNs' traffic) are examined.
 */
#ifndef NNVE_NFT_FILTER_H
#define NNVE_NFT_FILTER_H 1

#include <net/if.h>
#include <stddef.h>
#include <stdint.h>

#define NNVE_NFT_TABLE "splitnve"

/* One element of the table's sets: family 0 is a member of @macs, AF_INET of @src4,
 * AF_INET6 of @src6. */
struct nnve_nft_elem {
    char port[IF_NAMESIZE];
    uint16_t vid;
    uint8_t mac[6];
    int family;
    uint8_t ip[16];
};

struct nnve_nft;

/* Opens libnftables on table `table` (bridge family; NULL: NNVE_NFT_TABLE), and makes sure
 * the table has exactly the sets and chains above: a missing table is created, a table that
 * differs (rules or sets changed by hand, an older layout) is deleted and created again (its
 * elements are lost: the reconcile that follows puts them back), a table that is right is
 * left alone with its elements.  Returns 0 and *out, or < 0 with a logged reason (-ENOTSUP
 * when the kernel has no nf_tables bridge family). */
int nnve_nft_create(const char *table, struct nnve_nft **out);
/* Accepts NULL. */
void nnve_nft_destroy(struct nnve_nft *nft);

/* Deletes table `table` (NULL: NNVE_NFT_TABLE) if it exists, for a daemon whose
 * anti-spoofing no longer filters IPs.  Returns 0 (also when absent), or < 0 logged. */
int nnve_nft_remove_table(const char *table);

/* One transaction (for up to 512 elements; more are split): adds `add` (present elements
 * are fine) and deletes `del`.  When a deletion fails because an element is already gone,
 * the adds are applied and the deletions retried one by one, ignoring the missing ones.
 * Returns 0, or < 0 with a logged reason. */
int nnve_nft_apply(struct nnve_nft *nft, const struct nnve_nft_elem *add, size_t n_add,
                   const struct nnve_nft_elem *del, size_t n_del);

/* Reads every element of the three sets.  Returns 0 with *out (caller frees) and *n, or
 * < 0 logged. */
int nnve_nft_read(struct nnve_nft *nft, struct nnve_nft_elem **out, size_t *n);

/* Equality of two elements (all fields that matter for the family). */
int nnve_nft_elem_equal(const struct nnve_nft_elem *a, const struct nnve_nft_elem *b);

/* ---- pure helpers (exported for the unit tests) ---- */

/* The table definition (sets and chains) as nft input, for table `table`.  Returns the length
 * written to buf[0..cap) or -ENOSPC. */
int nnve_nft_table_text(char *buf, size_t cap, const char *table);

/* The set key of `e` as the kernel stores it (the concatenation of its fields, each padded
 * to 4 bytes).  Returns its length (28 for @macs, 32 for @src4, 44 for @src6), or -EINVAL
 * for an element nft cannot carry (empty or non-printable port name, one with a quote or
 * backslash, VLAN out of 1..4094, unknown family). */
enum { NNVE_NFT_KEY_MAX = 44 };
int nnve_nft_elem_key(const struct nnve_nft_elem *e, uint8_t key[NNVE_NFT_KEY_MAX]);

/* Parses the JSON of `list set` (any of the three sets) and appends its elements to
 * *out[0..*n) (capacity *cap, grown with realloc).  Returns 0, -EINVAL for a malformed
 * listing, or -ENOMEM. */
int nnve_nft_parse_set_json(const char *json, struct nnve_nft_elem **out, size_t *n, size_t *cap);

#endif
