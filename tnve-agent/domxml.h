/* domxml.h: what the agent reads from a libvirt domain XML (libxml2).
 *
 * Every <devices><interface>: MAC, type, target device, source bridge / network /
 * portgroup, alias; and the VN of each vNIC from the domain's <metadata> element in the
 * project's namespace:
 *
 *   namespace URI  urn:splitnve:vn:1   (TNVE_DOMXML_NS), element <vnics>, one <vnic> per MAC:
 *   <metadata>
 *     <splitnve:vnics xmlns:splitnve="urn:splitnve:vn:1">
 *       <splitnve:vnic mac="52:54:00:00:00:01" vn-id="5000" vn-name="blue"/>
 *     </splitnve:vnics>
 *   </metadata>
 *
 *   virsh metadata DOMAIN --uri urn:splitnve:vn:1 --key splitnve --config --live \
 *       --set '<vnics><vnic mac="52:54:00:00:00:01" vn-id="5000"/></vnics>'
 *
 * vn-id (1..16777215) and/or vn-name (1..64 bytes) are required per vnic.  A vNIC not
 * named there gets its VN from the config's [map] rules; with neither it has no VN and the
 * agent leaves it alone.
 */
#ifndef TNVE_DOMXML_H
#define TNVE_DOMXML_H 1

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "vn.h"

#define TNVE_DOMXML_NS "urn:splitnve:vn:1"

enum {
    TNVE_MAX_VNICS = 64,      /* interfaces per domain the agent tracks */
    TNVE_DOMXML_MAX = 4 << 20 /* bytes of XML accepted */
};

enum tnve_vn_source {
    TNVE_VN_SOURCE_NONE = 0,
    TNVE_VN_SOURCE_METADATA = 1,
    TNVE_VN_SOURCE_RULE = 2,
};

struct tnve_vnic {
    uint8_t mac[6];
    char type[16];            /* "bridge", "network", "direct", ... */
    char target[64];          /* target dev (live XML only), "" if unknown */
    char bridge[64];          /* source bridge, also the network's bridge in live XML */
    char network[256];
    char portgroup[256];
    char alias[64];
    struct tnve_vn vn;        /* after tnve_domxml_resolve() */
    enum tnve_vn_source vn_source;
    char vn_rule[64];         /* the [map] rule that matched */
};

struct tnve_domxml_meta {
    uint8_t mac[6];
    struct tnve_vn vn;
};

struct tnve_domxml {
    char name[256];
    uint8_t uuid[16];
    unsigned n_vnics;
    struct tnve_vnic vnics[TNVE_MAX_VNICS];
    unsigned n_meta;
    struct tnve_domxml_meta meta[TNVE_MAX_VNICS];
    unsigned skipped;         /* interfaces ignored (no MAC, over the limit) */
    unsigned bad_meta;        /* malformed <vnic> entries ignored */
};

/* Parses a domain XML document of `len` bytes.  Returns 0 with *out filled (VNs still
 * unresolved), or -EINVAL with the reason in err (not well-formed, no <domain>, no valid
 * <uuid>/<name>), -E2BIG past TNVE_DOMXML_MAX.  Never reads external entities. */
int tnve_domxml_parse(const char *xml, size_t len, struct tnve_domxml *out, char *err,
                      size_t errlen);

/* Gives each vNIC its VN: the metadata entry for its MAC, else the first matching rule,
 * else none. */
void tnve_domxml_resolve(struct tnve_domxml *d, const struct tnve_map_rule *rules,
                         unsigned n_rules);

/* "none", "metadata", "rule". */
const char *tnve_domxml_vn_source_name(enum tnve_vn_source s);

#endif
