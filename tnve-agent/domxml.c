/* domxml.c: domain XML -> vNICs and their VNs (see domxml.h). */
#include "domxml.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "sncp-msg.h"
#include "snv-log.h"

/* Domain XML comes from libvirt clients: its complaints are rate-limited. */
static struct snv_ratelimit bad_mac_rl = SNV_RATELIMIT_INIT(1, 10);

static int is_elem(const xmlNode *n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && !xmlStrcmp(n->name, (const xmlChar *)name);
}

/* Copies attribute `attr` of `n` into dst; "" when absent or too long. */
static void get_attr(const xmlNode *n, const char *attr, char *dst, size_t cap)
{
    dst[0] = '\0';
    xmlChar *v = xmlGetProp(n, (const xmlChar *)attr);
    if (!v)
        return;
    int r = snprintf(dst, cap, "%s", (const char *)v);
    if (r < 0 || (size_t)r >= cap)
        dst[0] = '\0';
    xmlFree(v);
}

static void parse_interface(const xmlNode *ifn, struct tnve_domxml *d)
{
    struct tnve_vnic v;
    memset(&v, 0, sizeof v);
    get_attr(ifn, "type", v.type, sizeof v.type);
    int have_mac = 0;
    for (const xmlNode *c = ifn->children; c; c = c->next) {
        char buf[64];
        if (is_elem(c, "mac")) {
            get_attr(c, "address", buf, sizeof buf);
            have_mac = buf[0] && sncp_mac_parse(buf, v.mac) == 0;
        } else if (is_elem(c, "target")) {
            get_attr(c, "dev", v.target, sizeof v.target);
        } else if (is_elem(c, "alias")) {
            get_attr(c, "name", v.alias, sizeof v.alias);
        } else if (is_elem(c, "source")) {
            get_attr(c, "bridge", v.bridge, sizeof v.bridge);
            get_attr(c, "network", v.network, sizeof v.network);
            get_attr(c, "portgroup", v.portgroup, sizeof v.portgroup);
        }
    }
    const char *why = NULL;
    if (have_mac && sncp_mac_check(v.mac, &why) != 0) {
        /* the nNVE would refuse it (INVALID_VALUE): never sent */
        char m[SNCP_MAC_STRLEN];
        sncp_mac_format(v.mac, m, sizeof m);
        snv_log_rl(&bad_mac_rl, SNV_LOG_WARN, "domxml", "vNIC skipped: %s domain=%s mac=%s", why,
                   d->name, m);
        have_mac = 0;
    }
    if (!have_mac || d->n_vnics >= TNVE_MAX_VNICS) {
        d->skipped++;
        return;
    }
    d->vnics[d->n_vnics++] = v;
}

static int in_ns(const xmlNode *n)
{
    return n->ns && n->ns->href && !xmlStrcmp(n->ns->href, (const xmlChar *)TNVE_DOMXML_NS);
}

static void parse_metadata(const xmlNode *md, struct tnve_domxml *d)
{
    for (const xmlNode *c = md->children; c; c = c->next) {
        if (!is_elem(c, "vnics") || !in_ns(c))
            continue;
        for (const xmlNode *e = c->children; e; e = e->next) {
            if (!is_elem(e, "vnic"))
                continue;
            if (e->ns && !in_ns(e))
                continue;
            struct tnve_domxml_meta m;
            memset(&m, 0, sizeof m);
            char mac[64], id[32], name[128];
            get_attr(e, "mac", mac, sizeof mac);
            get_attr(e, "vn-id", id, sizeof id);
            get_attr(e, "vn-name", name, sizeof name);
            int ok = mac[0] && sncp_mac_parse(mac, m.mac) == 0 && (id[0] || name[0]);
            if (ok && id[0] && tnve_vn_set_id(&m.vn, id))
                ok = 0;
            if (ok && name[0] && tnve_vn_set_name(&m.vn, name))
                ok = 0;
            if (!ok || d->n_meta >= TNVE_MAX_VNICS) {
                d->bad_meta++;
                continue;
            }
            d->meta[d->n_meta++] = m;
        }
    }
}

int tnve_domxml_parse(const char *xml, size_t len, struct tnve_domxml *out, char *err,
                      size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (len > TNVE_DOMXML_MAX) {
        snprintf(err, errlen, "domain XML too large (%zu bytes)", len);
        return -E2BIG;
    }
    xmlDoc *doc = xmlReadMemory(xml, (int)len, "domain.xml", NULL,
                                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (!doc) {
        const xmlError *e = xmlGetLastError();
        snprintf(err, errlen, "domain XML not well-formed: %s",
                 e && e->message ? e->message : "parse error");
        /* libxml2 messages end with a newline */
        size_t n = strlen(err);
        if (n && err[n - 1] == '\n')
            err[n - 1] = '\0';
        return -EINVAL;
    }
    int rc = 0;
    const xmlNode *root = xmlDocGetRootElement(doc);
    if (!root || !is_elem(root, "domain")) {
        snprintf(err, errlen, "no <domain> element");
        rc = -EINVAL;
        goto out;
    }
    int have_uuid = 0;
    for (const xmlNode *c = root->children; c; c = c->next) {
        if (is_elem(c, "name")) {
            xmlChar *t = xmlNodeGetContent(c);
            if (t) {
                int r = snprintf(out->name, sizeof out->name, "%s", (const char *)t);
                if (r < 0 || (size_t)r >= sizeof out->name)
                    out->name[0] = '\0';
                xmlFree(t);
            }
        } else if (is_elem(c, "uuid")) {
            xmlChar *t = xmlNodeGetContent(c);
            if (t) {
                have_uuid = sncp_uuid_parse((const char *)t, out->uuid) == 0;
                xmlFree(t);
            }
        } else if (is_elem(c, "metadata")) {
            parse_metadata(c, out);
        } else if (is_elem(c, "devices")) {
            for (const xmlNode *dv = c->children; dv; dv = dv->next)
                if (is_elem(dv, "interface"))
                    parse_interface(dv, out);
        }
    }
    if (!have_uuid || !out->name[0]) {
        snprintf(err, errlen, "domain XML lacks a valid <%s>", have_uuid ? "name" : "uuid");
        rc = -EINVAL;
    }
out:
    xmlFreeDoc(doc);
    return rc;
}

static int rule_matches(const struct tnve_map_rule *r, const struct tnve_vnic *v)
{
    if (r->network[0] && strcmp(r->network, v->network))
        return 0;
    if (r->portgroup[0] && strcmp(r->portgroup, v->portgroup))
        return 0;
    if (r->bridge[0] && strcmp(r->bridge, v->bridge))
        return 0;
    return r->network[0] || r->portgroup[0] || r->bridge[0];
}

void tnve_domxml_resolve(struct tnve_domxml *d, const struct tnve_map_rule *rules,
                         unsigned n_rules)
{
    for (unsigned i = 0; i < d->n_vnics; i++) {
        struct tnve_vnic *v = &d->vnics[i];
        memset(&v->vn, 0, sizeof v->vn);
        v->vn_source = TNVE_VN_SOURCE_NONE;
        v->vn_rule[0] = '\0';
        for (unsigned m = 0; m < d->n_meta; m++) {
            if (!memcmp(d->meta[m].mac, v->mac, 6)) {
                v->vn = d->meta[m].vn;
                v->vn_source = TNVE_VN_SOURCE_METADATA;
                break;
            }
        }
        if (v->vn_source != TNVE_VN_SOURCE_NONE)
            continue;
        for (unsigned r = 0; r < n_rules; r++) {
            if (rule_matches(&rules[r], v)) {
                v->vn = rules[r].vn;
                v->vn_source = TNVE_VN_SOURCE_RULE;
                snprintf(v->vn_rule, sizeof v->vn_rule, "%s", rules[r].name);
                break;
            }
        }
    }
}

const char *tnve_domxml_vn_source_name(enum tnve_vn_source s)
{
    switch (s) {
    case TNVE_VN_SOURCE_METADATA:
        return "metadata";
    case TNVE_VN_SOURCE_RULE:
        return "rule";
    case TNVE_VN_SOURCE_NONE:
        break;
    }
    return "none";
}
