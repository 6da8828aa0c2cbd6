/* test-tnve-domxml.c: Check suite for tnve-agent's domain XML reader, VN metadata, mapping
 * rules and configuration parser (tnve-agent/domxml.c, config.c, vn.c).
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../tnve-agent/config.h"
#include "../../tnve-agent/domxml.h"
#include "sncp-error.h"

static const char DOM_XML[] =
    "<domain type='kvm' id='3'>\n"
    "  <name>web1</name>\n"
    "  <uuid>4d5e6f70-1111-2222-3333-444455556666</uuid>\n"
    "  <metadata>\n"
    "    <splitnve:vnics xmlns:splitnve=\"urn:splitnve:vn:1\">\n"
    "      <splitnve:vnic mac=\"52:54:00:00:00:01\" vn-id=\"5000\" vn-name=\"blue\"/>\n"
    "      <splitnve:vnic mac=\"52:54:00:00:00:09\" vn-name=\"green\"/>\n"
    "      <splitnve:vnic mac=\"zz\" vn-id=\"1\"/>\n"
    "      <splitnve:vnic mac=\"52:54:00:00:00:08\" vn-id=\"99999999\"/>\n"
    "    </splitnve:vnics>\n"
    "    <other:thing xmlns:other=\"urn:example\"><vnic mac=\"52:54:00:00:00:02\" "
    "vn-id=\"7\"/></other:thing>\n"
    "  </metadata>\n"
    "  <devices>\n"
    "    <interface type='bridge'>\n"
    "      <mac address='52:54:00:00:00:01'/>\n"
    "      <source bridge='br0'/>\n"
    "      <target dev='vnet3'/>\n"
    "      <alias name='net0'/>\n"
    "    </interface>\n"
    "    <interface type='network'>\n"
    "      <mac address='52:54:00:00:00:02'/>\n"
    "      <source network='tenant' portgroup='red' bridge='virbr1'/>\n"
    "      <target dev='vnet4'/>\n"
    "    </interface>\n"
    "    <interface type='network'>\n"
    "      <mac address='52:54:00:00:00:03'/>\n"
    "      <source network='tenant'/>\n"
    "    </interface>\n"
    "    <interface type='user'>\n"
    "      <mac address='52:54:00:00:00:04'/>\n"
    "    </interface>\n"
    "    <interface type='network'><source network='nomac'/></interface>\n"
    "    <interface type='bridge'><mac address='01:00:5e:00:00:01'/></interface>\n"
    "    <interface type='bridge'><mac address='00:00:00:00:00:00'/></interface>\n"
    "  </devices>\n"
    "</domain>\n";

START_TEST(test_parse_interfaces)
{
    struct tnve_domxml *x = malloc(sizeof *x);
    char err[256];
    ck_assert_int_eq(tnve_domxml_parse(DOM_XML, strlen(DOM_XML), x, err, sizeof err), 0);
    ck_assert_str_eq(x->name, "web1");
    char u[40];
    sncp_uuid_format(x->uuid, u, sizeof u);
    ck_assert_str_eq(u, "4d5e6f70-1111-2222-3333-444455556666");
    ck_assert_uint_eq(x->n_vnics, 4);
    ck_assert_uint_eq(x->skipped, 3); /* no MAC; a multicast and a zero MAC */
    ck_assert_str_eq(x->vnics[0].type, "bridge");
    ck_assert_str_eq(x->vnics[0].bridge, "br0");
    ck_assert_str_eq(x->vnics[0].target, "vnet3");
    ck_assert_str_eq(x->vnics[0].alias, "net0");
    ck_assert_str_eq(x->vnics[1].network, "tenant");
    ck_assert_str_eq(x->vnics[1].portgroup, "red");
    ck_assert_str_eq(x->vnics[1].bridge, "virbr1");
    ck_assert_str_eq(x->vnics[2].target, "");
    /* metadata: two valid entries, two malformed ones; the foreign namespace is ignored */
    ck_assert_uint_eq(x->n_meta, 2);
    ck_assert_uint_eq(x->bad_meta, 2);
    ck_assert_uint_eq(x->meta[0].vn.id, 5000);
    ck_assert_str_eq(x->meta[0].vn.name, "blue");
    ck_assert_uint_eq(x->meta[1].vn.id, 0);
    ck_assert_str_eq(x->meta[1].vn.name, "green");
    free(x);
}
END_TEST

START_TEST(test_resolve_metadata_and_rules)
{
    struct tnve_domxml *x = malloc(sizeof *x);
    char err[256];
    ck_assert_int_eq(tnve_domxml_parse(DOM_XML, strlen(DOM_XML), x, err, sizeof err), 0);
    struct tnve_map_rule rules[3];
    memset(rules, 0, sizeof rules);
    snprintf(rules[0].name, sizeof rules[0].name, "red");
    snprintf(rules[0].network, sizeof rules[0].network, "tenant");
    snprintf(rules[0].portgroup, sizeof rules[0].portgroup, "red");
    rules[0].vn.id = 6000;
    snprintf(rules[1].name, sizeof rules[1].name, "tenant");
    snprintf(rules[1].network, sizeof rules[1].network, "tenant");
    snprintf(rules[1].vn.name, sizeof rules[1].vn.name, "tenant-vn");
    snprintf(rules[2].name, sizeof rules[2].name, "br0");
    snprintf(rules[2].bridge, sizeof rules[2].bridge, "br0");
    rules[2].vn.id = 1;
    tnve_domxml_resolve(x, rules, 3);
    /* metadata wins over the bridge rule */
    ck_assert_int_eq(x->vnics[0].vn_source, TNVE_VN_SOURCE_METADATA);
    ck_assert_uint_eq(x->vnics[0].vn.id, 5000);
    /* the more specific rule first in file order */
    ck_assert_int_eq(x->vnics[1].vn_source, TNVE_VN_SOURCE_RULE);
    ck_assert_uint_eq(x->vnics[1].vn.id, 6000);
    ck_assert_str_eq(x->vnics[1].vn_rule, "red");
    ck_assert_str_eq(x->vnics[2].vn.name, "tenant-vn");
    ck_assert_int_eq(x->vnics[3].vn_source, TNVE_VN_SOURCE_NONE);
    ck_assert(!tnve_vn_is_set(&x->vnics[3].vn));
    /* no rules: only metadata */
    tnve_domxml_resolve(x, NULL, 0);
    ck_assert_int_eq(x->vnics[1].vn_source, TNVE_VN_SOURCE_NONE);
    ck_assert_uint_eq(x->vnics[0].vn.id, 5000);
    free(x);
}
END_TEST

#define XXE_DOC                                                                             \
    ("<!DOCTYPE d [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><domain><name>&x;</name>"     \
     "<uuid>4d5e6f70-1111-2222-3333-444455556666</uuid></domain>")

START_TEST(test_parse_errors)
{
    struct tnve_domxml *x = malloc(sizeof *x);
    char err[256];
    const char *bad[] = {
        "",
        "<domain>",
        "<notdomain><name>a</name><uuid>4d5e6f70-1111-2222-3333-444455556666</uuid></notdomain>",
        "<domain><name>a</name></domain>",
        "<domain><uuid>4d5e6f70-1111-2222-3333-444455556666</uuid></domain>",
        "<domain><name>a</name><uuid>not-a-uuid</uuid></domain>",
        XXE_DOC,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        ck_assert_int_eq(tnve_domxml_parse(bad[i], strlen(bad[i]), x, err, sizeof err), -EINVAL);
        ck_assert_uint_gt(strlen(err), 0);
    }
    /* truncated at every byte never crashes */
    size_t len = strlen(DOM_XML);
    for (size_t n = 0; n < len; n += 7)
        tnve_domxml_parse(DOM_XML, n, x, err, sizeof err);
    free(x);
}
END_TEST

START_TEST(test_vn_text)
{
    struct tnve_vn a, b;
    ck_assert_int_eq(tnve_vn_parse("5000", &a), 0);
    ck_assert_uint_eq(a.id, 5000);
    ck_assert_int_eq(tnve_vn_parse("blue", &b), 0);
    ck_assert_str_eq(b.name, "blue");
    ck_assert(!tnve_vn_equal(&a, &b));
    ck_assert_int_eq(tnve_vn_parse("16777216", &a), -EINVAL);
    ck_assert_int_eq(tnve_vn_parse("0", &a), -EINVAL);
    ck_assert_int_eq(tnve_vn_parse("", &a), -EINVAL);
    char longname[80];
    memset(longname, 'x', 70);
    longname[70] = '\0';
    ck_assert_int_eq(tnve_vn_parse(longname, &a), -EINVAL);
    struct tnve_vn c = {5000, "blue"}, d = {5000, ""}, e = {0, "blue"};
    ck_assert(!tnve_vn_equal(&c, &d));
    ck_assert(!tnve_vn_equal(&d, &e));
    ck_assert(tnve_vn_equal(&c, &c));
    /* The catalogue entry 5000/blue is designated by 5000, blue and 5000/blue only. */
    struct tnve_vn f = {5000, "red"}, g = {5001, ""}, z = {0, ""};
    ck_assert(tnve_vn_designates(&c, &c));
    ck_assert(tnve_vn_designates(&c, &d));
    ck_assert(tnve_vn_designates(&c, &e));
    ck_assert(!tnve_vn_designates(&c, &f));
    ck_assert(!tnve_vn_designates(&c, &g));
    ck_assert(!tnve_vn_designates(&c, &z));
    ck_assert(!tnve_vn_designates(&d, &e));
    char buf[TNVE_VN_STRLEN];
    tnve_vn_format(&c, buf, sizeof buf);
    ck_assert_str_eq(buf, "5000/blue");
}
END_TEST

static char *write_tmp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/tnve-cfg-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

START_TEST(test_config)
{
    struct tnve_config *c = malloc(sizeof *c);
    char err[512];
    tnve_config_defaults(c);
    ck_assert_str_eq(c->libvirt_uri, "qemu:///system");
    ck_assert_uint_eq(c->nnve_port, 8394);
    ck_assert_int_eq(tnve_config_validate(c, err, sizeof err), SNCP_E_CONFIG);
    char *p = write_tmp("# sample\n"
                        "libvirt_uri = test:///default\n"
                        "nnve_address = 192.0.2.1\n"
                        "nnve_port = 9000\n"
                        "cert = /c\nkey = /k\nca = /ca\n"
                        "nnve_identity = nnve1\n"
                        "associate_on_define = yes\n"
                        "hook_timeout = 2500ms\n"
                        "retry_min = 1\nretry_max = 2m\n"
                        "[map blue]\nnetwork = tenant\nvn_id = 5000\nvn_name = blue\n"
                        "[map red]\nbridge = br1\nportgroup = red\nvn_name = red\n");
    ck_assert_int_eq(tnve_config_load(p, c, err, sizeof err), 0);
    unlink(p);
    ck_assert_int_eq(tnve_config_validate(c, err, sizeof err), 0);
    ck_assert_str_eq(c->libvirt_uri, "test:///default");
    ck_assert_uint_eq(c->nnve_port, 9000);
    ck_assert_int_eq(c->associate_on_define, 1);
    ck_assert_uint_eq(c->hook_timeout_ms, 2500);
    ck_assert_uint_eq(c->retry_min_ms, 1000);
    ck_assert_uint_eq(c->retry_max_ms, 120000);
    ck_assert_uint_eq(c->n_rules, 2);
    ck_assert_str_eq(c->rules[0].name, "blue");
    ck_assert_uint_eq(c->rules[0].vn.id, 5000);
    ck_assert_str_eq(c->rules[1].bridge, "br1");
    ck_assert_str_eq(c->rules[1].vn.name, "red");

    const char *bad[] = {
        "nnve_port = 70000\n",
        "bogus = 1\n",
        "[wrong]\nx = 1\n",
        "[map a]\nnetwork = n\n",
        "[map a]\nvn_id = 5\n",
        "[map a]\nnetwork = n\nvn_id = 0\n",
        "hook_timeout = 5parsecs\n",
        "retry_min = 10s\nretry_max = 1s\n",
        "dataplane = ovs\n",
        "associate_on_define = maybe\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tnve_config_defaults(c);
        p = write_tmp(bad[i]);
        err[0] = '\0';
        ck_assert_int_eq(tnve_config_load(p, c, err, sizeof err), SNCP_E_CONFIG);
        ck_assert_ptr_nonnull(strstr(err, p));
        unlink(p);
    }
    ck_assert_int_eq(tnve_config_load("/nonexistent/tnve.conf", c, err, sizeof err), -ENOENT);
    uint32_t ms;
    ck_assert_int_eq(tnve_config_parse_duration("30s", &ms), 0);
    ck_assert_uint_eq(ms, 30000);
    ck_assert_int_eq(tnve_config_parse_duration("2m", &ms), 0);
    ck_assert_uint_eq(ms, 120000);
    ck_assert_int_eq(tnve_config_parse_duration("7", &ms), 0);
    ck_assert_uint_eq(ms, 7000);
    ck_assert_int_eq(tnve_config_parse_duration("-1", &ms), -EINVAL);
    ck_assert_int_eq(tnve_config_parse_duration("99999999999h", &ms), -EINVAL);
    free(c);
}
END_TEST

START_TEST(test_sample_config_parses)
{
    struct tnve_config *c = malloc(sizeof *c);
    char err[512];
    tnve_config_defaults(c);
    ck_assert_msg(tnve_config_load(SRCDIR "/etc/tnve-agent.conf", c, err, sizeof err) == 0, "%s",
                  err);
    ck_assert_int_eq(tnve_config_validate(c, err, sizeof err), 0);
    free(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("tnve-domxml");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_parse_interfaces);
    tcase_add_test(tc, test_resolve_metadata_and_rules);
    tcase_add_test(tc, test_parse_errors);
    tcase_add_test(tc, test_vn_text);
    tcase_add_test(tc, test_config);
    tcase_add_test(tc, test_sample_config_parses);
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
