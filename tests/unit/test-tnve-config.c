/* test-tnve-config.c: Check suite for tnve-agent's transport configuration
 * (tnve-agent/config.c): `transport = tcp | l2` and the L2 keys, their defaults, their
 * FILE:LINE errors, and the checks across keys in tnve_config_validate().
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../tnve-agent/config.h"
#include "sncp-error.h"

static const char CERTS[] = "cert = /c\nkey = /k\nca = /ca\n";

/* Writes text to a fresh temporary file; returns its path (static buffer). */
static const char *write_tmp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/tnve-config-test.XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Loads text over the defaults into *c; returns the load result, err filled. */
static int load(struct tnve_config *c, const char *text, char *err, size_t errlen)
{
    tnve_config_defaults(c);
    const char *p = write_tmp(text);
    err[0] = '\0';
    int rc = tnve_config_load(p, c, err, errlen);
    unlink(p);
    return rc;
}

START_TEST(test_defaults)
{
    struct tnve_config *c = malloc(sizeof *c);
    tnve_config_defaults(c);
    ck_assert_int_eq(c->transport, TNVE_TRANSPORT_TCP);
    ck_assert_str_eq(tnve_transport_name(c->transport), "tcp");
    ck_assert_uint_eq(c->l2_ethertype, 0x88B5);
    static const uint8_t group[6] = {0x03, 0x53, 0x4e, 0x43, 0x50, 0x01};
    ck_assert_mem_eq(c->l2_discovery_mac, group, 6);
    ck_assert_int_eq(c->nnve_mac_set, 0);
    ck_assert_uint_eq(c->l2_vlan, 0);
    ck_assert_uint_eq(c->connect_timeout_ms, 15000);
    ck_assert_uint_eq(c->hello_timeout_ms, 4000);
    ck_assert_str_eq(tnve_config_l2_interface(c), "");
    free(c);
}
END_TEST

START_TEST(test_l2_keys)
{
    struct tnve_config *c = malloc(sizeof *c);
    char err[512], text[1024];
    snprintf(text, sizeof text,
             "%stransport = l2\nl2_interface = eth1\nnnve_mac = 02:00:00:00:00:01\n"
             "l2_vlan = 4094\nl2_ethertype = 0x88B6\nl2_discovery_mac = 03:53:4e:43:50:07\n"
             "nnve_name = tor1\nconnect_timeout = 3s\nuplink = bond0\nnnve_identity = tor1\n"
             "hello_timeout = 1500ms\n",
             CERTS);
    ck_assert_msg(load(c, text, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(tnve_config_validate(c, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(c->transport, TNVE_TRANSPORT_L2);
    ck_assert_str_eq(tnve_transport_name(c->transport), "l2");
    ck_assert_str_eq(tnve_config_l2_interface(c), "eth1"); /* not the uplink */
    ck_assert_int_eq(c->nnve_mac_set, 1);
    static const uint8_t mac[6] = {2, 0, 0, 0, 0, 1}, group[6] = {3, 0x53, 0x4e, 0x43, 0x50, 7};
    ck_assert_mem_eq(c->nnve_mac, mac, 6);
    ck_assert_mem_eq(c->l2_discovery_mac, group, 6);
    ck_assert_uint_eq(c->l2_vlan, 4094);
    ck_assert_uint_eq(c->l2_ethertype, 0x88B6);
    ck_assert_str_eq(c->nnve_name, "tor1");
    ck_assert_uint_eq(c->connect_timeout_ms, 3000);
    ck_assert_uint_eq(c->hello_timeout_ms, 1500);

    /* decimal EtherType; the interface defaults to the uplink; no nnve_mac: discovery */
    snprintf(text, sizeof text,
             "%s[agent]\ntransport = l2\nuplink = bond0\nl2_ethertype = 35000\n"
             "nnve_identity = tor1\n",
             CERTS);
    ck_assert_msg(load(c, text, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(tnve_config_validate(c, err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(tnve_config_l2_interface(c), "bond0");
    ck_assert_int_eq(c->nnve_mac_set, 0);
    ck_assert_uint_eq(c->l2_ethertype, 35000);

    /* tcp stays the default and needs nnve_address */
    snprintf(text, sizeof text, "%snnve_address = 192.0.2.1\nnnve_identity = tor1\n", CERTS);
    ck_assert_msg(load(c, text, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(tnve_config_validate(c, err, sizeof err), 0);
    ck_assert_int_eq(c->transport, TNVE_TRANSPORT_TCP);
    free(c);
}
END_TEST

/* Every bad value is refused with FILE:LINE naming the key's line. */
START_TEST(test_bad_values)
{
    static const char *const bad[] = {
        "transport = udp\n",
        "transport = L2\n",
        "l2_interface =\n",
        "l2_interface = a-name-too-long-for-linux\n",
        "l2_interface = eth0/1\n",
        "uplink = eth 0\n",
        "bridge = ..\n",
        "nnve_mac = 02:00:00:00:00\n",
        "nnve_mac = 03:00:00:00:00:01\n",         /* a group address is not an nNVE */
        "l2_discovery_mac = 02:00:00:00:00:01\n", /* discovery needs a group address */
        "l2_discovery_mac = 01:80:c2:00:00:0e\n", /* 802.1Q reserved: bridges keep it */
        "l2_discovery_mac = 01:00:5e:00:00:01\n", /* IPv4 multicast */
        "l2_discovery_mac = ff:ff:ff:ff:ff:ff\n",
        "l2_vlan = 4095\n",
        "l2_vlan = -1\n",
        "l2_vlan = ten\n",
        "l2_ethertype = 0x05ff\n",
        "l2_ethertype = 0x8100\n",
        "l2_ethertype = 0x88a8\n",
        "l2_ethertype = 0x9100\n",
        "l2_ethertype = 0x10000\n",
        "nnve_name = 0123456789012345678901234567890123456789012345678901234567890123456789\n",
        "connect_timeout = 50ms\n",
        "hello_timeout = 50ms\n",
        "hello_timeout = soon\n",
    };
    struct tnve_config *c = malloc(sizeof *c);
    char err[512], text[512], expect[128];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        /* the bad line is line 3, after a comment and the transport */
        snprintf(text, sizeof text, "# agent\n%s\n%s",
                 strncmp(bad[i], "transport", 9) ? "transport = l2" : "# -", bad[i]);
        tnve_config_defaults(c);
        const char *p = write_tmp(text);
        err[0] = '\0';
        ck_assert_msg(tnve_config_load(p, c, err, sizeof err) == SNCP_E_CONFIG, "accepted: %s",
                      bad[i]);
        snprintf(expect, sizeof expect, "%s:3: bad value for", p);
        ck_assert_msg(strstr(err, expect) != NULL, "%s -> %s", bad[i], err);
        unlink(p);
    }
    free(c);
}
END_TEST

/* Keys of one transport in a configuration of the other are refused by validate. */
START_TEST(test_validate_across_keys)
{
    static const struct {
        const char *text, *reason;
    } cases[] = {
        {"transport = l2\n", "needs 'l2_interface' (or 'uplink')"},
        {"transport = l2\nl2_interface = eth0\n", "'nnve_identity' is required"},
        /* the switch is authenticated over TCP too */
        {"nnve_address = 192.0.2.1\n", "'nnve_identity' is required"},
        {"transport = l2\nl2_interface = eth0\nnnve_address = 192.0.2.1\n",
         "'nnve_address' needs transport = tcp"},
        {"nnve_address = 192.0.2.1\nl2_interface = eth0\n", "'l2_interface' needs transport = l2"},
        {"nnve_address = 192.0.2.1\nnnve_mac = 02:00:00:00:00:01\n",
         "'nnve_mac' needs transport = l2"},
        {"nnve_address = 192.0.2.1\nl2_vlan = 10\n", "'l2_vlan' needs transport = l2"},
        {"nnve_address = 192.0.2.1\nnnve_name = tor1\n", "'nnve_name' needs transport = l2"},
        {"transport = tcp\n", "'nnve_address' is required"},
    };
    struct tnve_config *c = malloc(sizeof *c);
    char err[512], text[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(text, sizeof text, "%s%s", CERTS, cases[i].text);
        ck_assert_msg(load(c, text, err, sizeof err) == 0, "%s", err);
        err[0] = '\0';
        ck_assert_int_eq(tnve_config_validate(c, err, sizeof err), SNCP_E_CONFIG);
        ck_assert_msg(strstr(err, cases[i].reason) != NULL, "case %zu: %s", i, err);
    }
    /* certificates come first, whatever the transport */
    ck_assert_int_eq(load(c, "transport = l2\nl2_interface = eth0\n", err, sizeof err), 0);
    ck_assert_int_eq(tnve_config_validate(c, err, sizeof err), SNCP_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, "'cert' is required"));
    free(c);
}
END_TEST

/* A line longer than the INI parser's buffer, a repeated key or a repeated section is an
 * error with FILE:LINE; an indented line continues the value before it. */
START_TEST(test_strict_lines)
{
    struct tnve_config *c = malloc(sizeof *c);
    char err[512], text[1024], big[300];
    memset(big, 'a', sizeof big);
    snprintf(text, sizeof text, "%sstate_dir = /%.250s\n", CERTS, big);
    ck_assert_int_eq(load(c, text, err, sizeof err), SNCP_E_CONFIG);
    ck_assert_msg(strstr(err, ":4: line longer than 198 bytes") != NULL, "%s", err);

    snprintf(text, sizeof text, "%stransport = tcp\ntransport = l2\n", CERTS);
    ck_assert_int_eq(load(c, text, err, sizeof err), SNCP_E_CONFIG);
    ck_assert_msg(strstr(err, ":5: key \"transport\" repeated (first at line 4)") != NULL, "%s",
                  err);

    snprintf(text, sizeof text,
             "%s[map a]\nnetwork = n1\nvn_id = 5000\n[map b]\nnetwork = n2\nvn_id = 5001\n"
             "[map a]\nbridge = br0\n",
             CERTS);
    ck_assert_int_eq(load(c, text, err, sizeof err), SNCP_E_CONFIG);
    ck_assert_msg(strstr(err, ":10: section [map a] repeated (first at line 4)") != NULL, "%s",
                  err);
    snprintf(text, sizeof text, "%s[map a]\nnetwork = n1\nvn_id = 1\nvn_id = 2\n", CERTS);
    ck_assert_int_eq(load(c, text, err, sizeof err), SNCP_E_CONFIG);
    ck_assert_msg(strstr(err, ":7: key \"vn_id\" repeated in [map a] (first at line 6)") != NULL,
                  "%s", err);

    /* the top of the file and [agent] are one section */
    snprintf(text, sizeof text, "%sretry_min = 1s\n[agent]\nretry_min = 2s\n", CERTS);
    ck_assert_int_eq(load(c, text, err, sizeof err), SNCP_E_CONFIG);
    ck_assert_msg(strstr(err, ":6: key \"retry_min\" repeated (at the top and in [agent])"), "%s",
                  err);

    snprintf(text, sizeof text, "%s[map a]\nnetwork =\n    n1\nvn_id = 5000\n", CERTS);
    ck_assert_msg(load(c, text, err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(c->rules[0].network, "n1");
    free(c);
}
END_TEST

/* [nnve NAME] sections: a list of nNVEs in file order; single-nNVE keys make a list of one
 * named "nnve"; mixing both, a duplicate name or identity, an unknown key: refused. */
START_TEST(test_nnve_sections)
{
    struct tnve_config *c = malloc(sizeof *c);
    char err[512];
    char text[2048];
    snprintf(text, sizeof text, "%snnve_address = 192.0.2.1\nnnve_identity = nnve1\n", CERTS);
    ck_assert_int_eq(load(c, text, err, sizeof err), 0);
    ck_assert_uint_eq(c->n_nnves, 1);
    ck_assert_str_eq(c->nnves[0].name, "nnve");
    ck_assert_str_eq(c->nnves[0].nnve_address, "192.0.2.1");
    ck_assert_str_eq(c->nnves[0].nnve_identity, "nnve1");
    ck_assert_uint_eq(c->nnves[0].nnve_port, 8394);
    ck_assert_int_eq(tnve_config_validate(c, err, sizeof err), 0);

    snprintf(text, sizeof text,
             "%smode = active-active\n[nnve sw1]\nnnve_address = 192.0.2.1\nnnve_port = 9000\n"
             "nnve_identity = nnve1\n[nnve sw2]\ntransport = l2\nl2_interface = eth1\n"
             "nnve_identity = nnve2\n",
             CERTS);
    ck_assert_int_eq(load(c, text, err, sizeof err), 0);
    ck_assert_uint_eq(c->n_nnves, 2);
    ck_assert_str_eq(c->nnves[0].name, "sw1");
    ck_assert_uint_eq(c->nnves[0].nnve_port, 9000);
    ck_assert_str_eq(c->nnves[1].name, "sw2");
    ck_assert_int_eq(c->nnves[1].transport, TNVE_TRANSPORT_L2);
    ck_assert_uint_eq(c->nnves[1].l2_ethertype, 0x88B5);
    ck_assert_int_eq(c->mode, TNVE_MODE_ACTIVE_ACTIVE);
    ck_assert_int_eq(tnve_config_validate(c, err, sizeof err), 0);

    /* single-nNVE keys before or after the sections */
    snprintf(text, sizeof text, "%snnve_identity = x\n[nnve sw1]\nnnve_address = a\n", CERTS);
    ck_assert_int_eq(load(c, text, err, sizeof err), SNCP_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, ":6: [nnve sw1] after single-nNVE keys"));
    snprintf(text, sizeof text, "%s[nnve sw1]\nnnve_address = a\n[agent]\nnnve_port = 1\n", CERTS);
    ck_assert_int_eq(load(c, text, err, sizeof err), SNCP_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, ":7: 'nnve_port' is a single-nNVE key"));
    /* a key that is not an nNVE's */
    snprintf(text, sizeof text, "%s[nnve sw1]\ncert = /x\n", CERTS);
    ck_assert_int_eq(load(c, text, err, sizeof err), SNCP_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, ":5: unknown key 'cert' in [nnve sw1]"));
    /* the same name twice, the same identity twice, an identity missing */
    snprintf(text, sizeof text, "%s[nnve sw1]\nnnve_address = a\n[nnve sw1]\nnnve_port = 2\n",
             CERTS);
    ck_assert_int_eq(load(c, text, err, sizeof err), SNCP_E_CONFIG);
    snprintf(text, sizeof text,
             "%s[nnve sw1]\nnnve_address = a\nnnve_identity = n\n[nnve sw2]\n"
             "nnve_address = b\nnnve_identity = n\n",
             CERTS);
    ck_assert_int_eq(load(c, text, err, sizeof err), 0);
    ck_assert_int_eq(tnve_config_validate(c, err, sizeof err), SNCP_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, "same nnve_identity"));
    snprintf(text, sizeof text, "%s[nnve sw1]\nnnve_address = a\n", CERTS);
    ck_assert_int_eq(load(c, text, err, sizeof err), SNCP_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, ":4: [nnve sw1]: configuration key 'nnve_identity'"));
    /* a section without keys, alone, after the single-nNVE keys, or among others */
    snprintf(text, sizeof text, "%s[nnve sw1]\n", CERTS);
    ck_assert_int_eq(load(c, text, err, sizeof err), SNCP_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, ":4: [nnve sw1] has no keys"));
    snprintf(text, sizeof text, "%snnve_address = a\nnnve_identity = n\n\n[nnve  sw1]\n", CERTS);
    ck_assert_int_eq(load(c, text, err, sizeof err), SNCP_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, ":7: [nnve sw1] has no keys"));
    snprintf(text, sizeof text,
             "%s[nnve sw1]\nnnve_address = a\nnnve_identity = n\n[nnve sw2]\n; none\n"
             "[agent]\nretry_min = 1s\n",
             CERTS);
    ck_assert_int_eq(load(c, text, err, sizeof err), SNCP_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, ":7: [nnve sw2] has no keys"));
    /* a value continued on an indented line that reads like a section header: no section */
    snprintf(text, sizeof text, "%s[nnve sw1]\nnnve_address = a\nnnve_identity = n\n  [nnve sw2]\n",
             CERTS);
    ck_assert_int_eq(load(c, text, err, sizeof err), 0);
    ck_assert_str_eq(c->nnves[0].nnve_identity, "n [nnve sw2]");
    /* five nNVEs */
    text[0] = '\0';
    snprintf(text, sizeof text, "%s", CERTS);
    for (int i = 0; i < 5; i++) {
        size_t used = strlen(text);
        snprintf(text + used, sizeof text - used, "[nnve s%d]\nnnve_address = a%d\n", i, i);
    }
    ck_assert_int_eq(load(c, text, err, sizeof err), SNCP_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, ":13: too many [nnve] sections"));
    free(c);
}
END_TEST

/* [nnve NAME] uplink = IFNAME: in every section or none, one link per nNVE, a valid name. */
START_TEST(test_nnve_uplinks)
{
    struct tnve_config *c = malloc(sizeof *c);
    char err[512];
    char text[2048];
    static const char two[] = "[nnve sw1]\nnnve_address = a\nnnve_identity = n1\n%s"
                              "[nnve sw2]\nnnve_address = b\nnnve_identity = n2\n%s";
    char fmt[512];
    snprintf(fmt, sizeof fmt, "%%s%s", two);
    snprintf(text, sizeof text, fmt, CERTS, "uplink = e1\n", "uplink = e2\n");
    ck_assert_int_eq(load(c, text, err, sizeof err), 0);
    ck_assert_str_eq(c->nnves[0].uplink, "e1");
    ck_assert_str_eq(c->nnves[1].uplink, "e2");
    ck_assert_str_eq(c->uplink, "");
    ck_assert_int_eq(tnve_config_validate(c, err, sizeof err), 0);
    /* neither: today's behaviour */
    snprintf(text, sizeof text, fmt, CERTS, "", "");
    ck_assert_int_eq(load(c, text, err, sizeof err), 0);
    ck_assert_str_eq(c->nnves[0].uplink, "");
    /* one only */
    snprintf(text, sizeof text, fmt, CERTS, "", "uplink = e2\n");
    ck_assert_int_eq(load(c, text, err, sizeof err), SNCP_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, "[nnve sw1] has no 'uplink' but [nnve sw2] has one"));
    /* the same link for both, twice in one section, a bad name */
    snprintf(text, sizeof text, fmt, CERTS, "uplink = e1\n", "uplink = e1\n");
    ck_assert_int_eq(load(c, text, err, sizeof err), SNCP_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, ":11: uplink e1 given to [nnve sw1] and [nnve sw2]"));
    snprintf(text, sizeof text, fmt, CERTS, "uplink = e1\nuplink = e3\n", "uplink = e2\n");
    ck_assert_int_eq(load(c, text, err, sizeof err), SNCP_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, ":8: "));
    snprintf(text, sizeof text, fmt, CERTS, "uplink = a/b\n", "uplink = e2\n");
    ck_assert_int_eq(load(c, text, err, sizeof err), SNCP_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, ":7: bad interface name for 'uplink': 'a/b'"));
    snprintf(text, sizeof text, fmt, CERTS, "uplink = 0123456789abcdefg\n", "uplink = e2\n");
    ck_assert_int_eq(load(c, text, err, sizeof err), SNCP_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, ":7: bad interface name"));
    /* the top-level uplink stays the dataplane's */
    snprintf(text, sizeof text, "%suplink = bond0\n", CERTS);
    size_t used = strlen(text);
    snprintf(text + used, sizeof text - used, two, "uplink = e1\n", "uplink = e2\n");
    ck_assert_int_eq(load(c, text, err, sizeof err), 0);
    ck_assert_str_eq(c->uplink, "bond0");
    ck_assert_str_eq(c->nnves[1].uplink, "e2");
    free(c);
}
END_TEST

/* mode per host and per VN ([map] mode), looked up by ID, name or both. */
START_TEST(test_vn_modes)
{
    struct tnve_config *c = malloc(sizeof *c);
    char err[512];
    char text[1024];
    snprintf(text, sizeof text,
             "%s[map a]\nnetwork = n1\nvn_id = 5000\nmode = active-active\n"
             "[map b]\nnetwork = n2\nvn_name = red\n",
             CERTS);
    ck_assert_int_eq(load(c, text, err, sizeof err), 0);
    ck_assert_int_eq(c->mode, TNVE_MODE_UNSET);
    struct tnve_vn blue = {5000, "blue"}, red = {5001, "red"}, by_id = {5000, ""},
                   by_name = {0, "blue"};
    ck_assert_int_eq(tnve_config_vn_mode(c, &blue), TNVE_MODE_ACTIVE_ACTIVE);
    ck_assert_int_eq(tnve_config_vn_mode(c, &by_id), TNVE_MODE_ACTIVE_ACTIVE);
    ck_assert_int_eq(tnve_config_vn_mode(c, &by_name), TNVE_MODE_ACTIVE_STANDBY);
    ck_assert_int_eq(tnve_config_vn_mode(c, &red), TNVE_MODE_ACTIVE_STANDBY);
    ck_assert_str_eq(tnve_mode_name(TNVE_MODE_ACTIVE_ACTIVE), "active-active");
    ck_assert_str_eq(tnve_mode_name(TNVE_MODE_UNSET), "active-standby");
    /* two rules giving one VN two modes */
    snprintf(text, sizeof text,
             "%s[map a]\nnetwork = n1\nvn_id = 5000\nmode = active-active\n"
             "[map b]\nnetwork = n2\nvn_id = 5000\nvn_name = blue\nmode = active-standby\n",
             CERTS);
    ck_assert_int_eq(load(c, text, err, sizeof err), SNCP_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, "[map a] and [map b] give one VN two modes"));
    snprintf(text, sizeof text, "%smode = both\n", CERTS);
    ck_assert_int_eq(load(c, text, err, sizeof err), SNCP_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, ":4: bad value for 'mode'"));
    free(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("tnve-config");
    TCase *tc = tcase_create("transport");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_l2_keys);
    tcase_add_test(tc, test_bad_values);
    tcase_add_test(tc, test_validate_across_keys);
    tcase_add_test(tc, test_strict_lines);
    tcase_add_test(tc, test_nnve_sections);
    tcase_add_test(tc, test_nnve_uplinks);
    tcase_add_test(tc, test_vn_modes);
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
