/* test-nnve-config.c: nnve-daemon's configuration parser and its error messages. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../nnve-daemon/config.h"
#include "sncp-error.h"

static const char good[] = "# sample\n"
                           "[global]\n"
                           "listen = 127.0.0.1:9000, [::1]:9001\n"
                           "cert = /x/n.crt\n"
                           "key = /x/n.key\n"
                           "ca = /x/ca.crt\n"
                           "hold_time = 2m\n"
                           "tag_hold_down = 500ms\n"
                           "max_tsis_per_session = 10\n"
                           "log_level = debug\n"
                           "\n"
                           "[domain rack1]\n"
                           "ports = swp1, swp2\n"
                           "tags = 100-199, 300\n"
                           "reserved = 150\n"
                           "[domain rest]\n"
                           "ports = *\n"
                           "tags = 2000-2100\n"
                           "[hypervisor hv1.example]\n"
                           "port = swp1\n"
                           "vns = 5000, 5001-5010, blue\n"
                           "[hypervisor hv2.example]\n"
                           "port = learn\n"
                           "vns = 6000\n"
                           "max_tsis = 3\n"
                           "max_vns = 2\n"
                           "max_addrs_per_tsi = 4\n"
                           "max_tags = 1\n"
                           "[vn blue]\n"
                           "id = 7000\n";

START_TEST(test_good)
{
    struct nnve_config *c = NULL;
    char err[256] = "";
    ck_assert_int_eq(nnve_config_parse_string(good, "t.conf", &c, err, sizeof err), 0);
    ck_assert_uint_eq(c->n_listen, 2);
    ck_assert_str_eq(c->listen[0].addr, "127.0.0.1");
    ck_assert_uint_eq(c->listen[0].port, 9000);
    ck_assert_str_eq(c->listen[1].addr, "::1");
    ck_assert_uint_eq(c->listen[1].port, 9001);
    ck_assert_uint_eq(c->hold_time_ms, 120000);
    ck_assert_uint_eq(c->tag_hold_down_ms, 500);
    ck_assert_uint_eq(c->keepalive_ms, 10000);
    ck_assert_uint_eq(c->max_tsis_per_session, 10);
    ck_assert_int_eq(c->log_level, 3);
    ck_assert_str_eq(c->backend, "none");
    ck_assert_str_eq(c->control_socket, NNVE_DEFAULT_CTL);
    ck_assert_uint_eq(c->n_domains, 2);
    ck_assert_uint_eq(c->domains[0].n_ranges, 2);
    ck_assert_uint_eq(c->domains[0].reserved[0], 150);
    ck_assert_str_eq(nnve_config_port_domain(c, "swp2")->name, "rack1");
    ck_assert_str_eq(nnve_config_port_domain(c, "swp9")->name, "rest");
    const struct nnve_hv_cfg *h = nnve_config_find_hv(c, "hv1.example");
    ck_assert_ptr_nonnull(h);
    ck_assert_str_eq(h->port, "swp1");
    ck_assert(nnve_config_vn_allowed(h, 5000));
    ck_assert(nnve_config_vn_allowed(h, 5010));
    ck_assert(!nnve_config_vn_allowed(h, 5011));
    /* the name grants the VN it names in the catalogue: its ID */
    ck_assert(nnve_config_vn_allowed(h, 7000));
    ck_assert(!nnve_config_vn_allowed(nnve_config_find_hv(c, "hv2.example"), 7000));
    ck_assert(nnve_config_find_hv(c, "hv2.example")->learn);
    /* limits: globals, and a hypervisor's own keys over them */
    struct nnve_hv_limits l = nnve_config_hv_limits(c, h);
    ck_assert_uint_eq(l.tsis, 10);
    ck_assert_uint_eq(l.vns, 4094);
    ck_assert_uint_eq(l.addrs_per_tsi, 64);
    ck_assert_uint_eq(l.tags, 0);
    l = nnve_config_hv_limits(c, nnve_config_find_hv(c, "hv2.example"));
    ck_assert_uint_eq(l.tsis, 3);
    ck_assert_uint_eq(l.vns, 2);
    ck_assert_uint_eq(l.addrs_per_tsi, 4);
    ck_assert_uint_eq(l.tags, 1);
    ck_assert_ptr_null(nnve_config_find_hv(c, "nobody"));
    ck_assert_uint_eq(nnve_config_find_vn_name(c, "blue")->id, 7000);
    ck_assert_str_eq(nnve_config_find_vn_id(c, 7000)->name, "blue");
    nnve_config_destroy(c);
}
END_TEST

static void expect_error(const char *text, const char *needle)
{
    struct nnve_config *c = NULL;
    char err[256] = "";
    int r = nnve_config_parse_string(text, "t.conf", &c, err, sizeof err);
    ck_assert_msg(r == SNCP_E_CONFIG, "expected failure for: %s", text);
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err, needle) != NULL, "error \"%s\" lacks \"%s\"", err, needle);
}

#define G "[global]\ncert=a\nkey=b\nca=c\n"
#define D "[domain d]\nports=swp1\ntags=10-20\n"

START_TEST(test_errors)
{
    expect_error(G "bogus = 1\n", "t.conf:5: unknown key \"bogus\"");
    expect_error(G "hold_time = 3x\n", "t.conf:5: hold_time: bad duration");
    expect_error(G "listen = 1.2.3.4\n", "t.conf:5: listen: bad address");
    expect_error(G "listen = ::1:80\n", "listen: bad address");
    expect_error(G "listen = 1.2.3.4:99999\n", "bad port");
    expect_error(G "[domain d]\nports=swp1\ntags=10-20, 15-30\n", "t.conf:7: tags: range");
    expect_error(G "[domain d]\nports=swp1\ntags=0-20\n", "t.conf:7: tags: bad range");
    expect_error(G "[domain d]\nports=swp1\ntags=10-4095\n", "bad range");
    expect_error(
        G "[domain d]\nports=swp1 swp2\ntags=5\n",
        "t.conf:6: port name \"swp1 swp2\" contains white space (separate ports with commas)");
    expect_error(G D "[hypervisor h]\nport=swp1 swp2\n",
                 "t.conf:9: port name \"swp1 swp2\" contains white space");
    expect_error(G "[domain d]\nports=swp1\n", "[domain d] has no tags");
    expect_error(G "[domain d]\ntags=5\n", "[domain d] has no ports");
    expect_error(G D "[domain e]\nports=swp1\ntags=5\n",
                 "port swp1 is in [domain d] and [domain e]");
    expect_error(G D "reserved = 30\n", "reserved tag 30 is not in its tags");
    expect_error(G D "[hypervisor h]\nport=swp7\n",
                 "t.conf:9: [hypervisor h]: port swp7 is in no [domain]");
    expect_error(G D "[hypervisor h]\nvns=1\n", "needs port");
    expect_error(G D "[hypervisor h]\nport=swp1\nvns=1-x\n", "t.conf:10: vns: bad VN ID");
    expect_error(G "[vn blue]\nid=99999999\n", "t.conf:6: id: expected a VN ID");
    expect_error(G "[vn blue]\nid=5\n[vn red]\nid=5\n", "same id 5");
    expect_error(G "[weird]\nx=1\n", "t.conf:6: unknown section [weird]");
    expect_error(G "max_sessions = 0\n", "max_sessions: expected a number");
    expect_error(G "max_addrs_per_tsi = 65\n", "max_addrs_per_tsi");
    expect_error("[global]\n", "needs cert, key and ca");
    expect_error(G "this is not ini\n", "t.conf:5:");
    expect_error(G "log_level = loud\n", "log_level");
    /* the catalogue: a granted name must be a [vn] (wherever it is in the file) */
    expect_error(G D "[hypervisor h]\nport=swp1\nvns=5000,\n  red\n[vn blue]\nid=1\n",
                 "t.conf:10: [hypervisor h] vns: VN \"red\" has no [vn red] section");
    expect_error(G D "[hypervisor h]\nport=swp1\nvns=red\n",
                 "t.conf:10: [hypervisor h] vns: VN \"red\"");
    expect_error(G D "[hypervisor h]\nport=swp1\nmax_tsis=0\n", "t.conf:10: max_tsis: expected");
    expect_error(G D "[hypervisor h]\nport=swp1\nmax_addrs_per_tsi=65\n", "t.conf:10:");
    expect_error(G D "[hypervisor h]\nport=swp1\nmax_tags=x\n", "t.conf:10: max_tags");
    expect_error(G D "[hypervisor h]\nport=swp1\nlimit=1\n", "t.conf:10: unknown key");
    expect_error(G "max_vns_per_hypervisor = 0\n", "t.conf:5: max_vns_per_hypervisor");
    expect_error(G "max_tags_per_hypervisor = 4095\n", "t.conf:5: max_tags_per_hypervisor");
}
END_TEST

START_TEST(test_linux)
{
    struct nnve_config *c = NULL;
    char err[256] = "";
    /* defaults without a [linux] section */
    ck_assert_int_eq(nnve_config_parse_string(G "backend = linux\n", "t.conf", &c, err, sizeof err),
                     0);
    ck_assert_str_eq(c->backend, "linux");
    ck_assert_str_eq(c->linux_cfg.bridge, "br0");
    ck_assert_int_eq(c->linux_cfg.vxlan_mode, NNVE_LINUX_VXLAN_EXTERNAL);
    ck_assert_str_eq(c->linux_cfg.vxlan_device, "vxlan0");
    ck_assert_ptr_null(c->linux_cfg.local_ip);
    ck_assert_uint_eq(c->linux_cfg.vxlan_port, 4789);
    ck_assert_str_eq(c->linux_cfg.remote_vteps, "none");
    ck_assert_int_eq(c->linux_cfg.anti_spoofing, NNVE_LINUX_ANTI_SPOOFING_ON);
    ck_assert_uint_eq(c->linux_line, 0);
    struct nnve_config *d = NULL;
    static const char full[] = G "backend = linux\n"
                                 "[linux]\n"
                                 "bridge = swbr\n"
                                 "vxlan_mode = per-vni\n"
                                 "vxlan_device = vx9\n"
                                 "local_ip = 198.51.100.1\n"
                                 "vxlan_port = 8472\n"
                                 "remote_vteps = 198.51.100.2, 198.51.100.3 198.51.100.4\n"
                                 "anti_spoofing = mac\n";
    ck_assert_int_eq(nnve_config_parse_string(full, "t.conf", &d, err, sizeof err), 0);
    ck_assert_str_eq(d->linux_cfg.bridge, "swbr");
    ck_assert_int_eq(d->linux_cfg.vxlan_mode, NNVE_LINUX_VXLAN_PER_VNI);
    ck_assert_str_eq(d->linux_cfg.vxlan_device, "vx9");
    ck_assert_str_eq(d->linux_cfg.local_ip, "198.51.100.1");
    ck_assert_uint_eq(d->linux_cfg.vxlan_port, 8472);
    ck_assert_str_eq(d->linux_cfg.remote_vteps, "198.51.100.2, 198.51.100.3 198.51.100.4");
    ck_assert_int_eq(d->linux_cfg.anti_spoofing, NNVE_LINUX_ANTI_SPOOFING_MAC);
    ck_assert_uint_eq(d->linux_line, 7);
    /* a reload keeps the running [linux] settings: equal/swap */
    ck_assert(!nnve_config_linux_equal(c, d));
    nnve_config_linux_swap(c, d);
    ck_assert_str_eq(c->linux_cfg.bridge, "swbr");
    ck_assert_str_eq(d->linux_cfg.bridge, "br0");
    ck_assert_str_eq(c->linux_cfg.remote_vteps, "198.51.100.2, 198.51.100.3 198.51.100.4");
    nnve_config_destroy(d);
    d = NULL;
    ck_assert_int_eq(nnve_config_parse_string(full, "u.conf", &d, err, sizeof err), 0);
    ck_assert(nnve_config_linux_equal(c, d));
    nnve_config_destroy(c);
    nnve_config_destroy(d);
    ck_assert_int_eq(nnve_config_parse_string(G "[linux]\nanti_spoofing = off\n"
                                                "remote_vteps = 2001:db8::1,2001:db8::2\n",
                                              "t.conf", &c, err, sizeof err),
                     0);
    ck_assert_int_eq(c->linux_cfg.anti_spoofing, NNVE_LINUX_ANTI_SPOOFING_OFF);
    nnve_config_destroy(c);
    /* what FRR 8.4 serves: per-VNI devices with an IPv4 VTEP address; "none" with any mode */
    ck_assert_int_eq(nnve_config_parse_string(G "[linux]\nvxlan_mode = per-vni\n"
                                                "local_ip = 198.51.100.1\nremote_vteps = evpn\n",
                                              "t.conf", &c, err, sizeof err),
                     0);
    ck_assert_str_eq(c->linux_cfg.remote_vteps, "evpn");
    nnve_config_destroy(c);
    ck_assert_int_eq(
        nnve_config_parse_string(G "[linux]\nremote_vteps = none\n", "t.conf", &c, err, sizeof err),
        0);
    ck_assert_str_eq(c->linux_cfg.remote_vteps, "none");
    nnve_config_destroy(c);
}
END_TEST

START_TEST(test_transport)
{
    struct nnve_config *c = NULL;
    char err[256] = "";
    /* Default: TCP on the default address, L2 defaults filled in. */
    ck_assert_int_eq(nnve_config_parse_string(G D, "t.conf", &c, err, sizeof err), 0);
    ck_assert_uint_eq(c->transports, NNVE_TRANSPORT_TCP);
    ck_assert_uint_eq(c->n_listen, 1);
    ck_assert_uint_eq(c->n_l2_interfaces, 0);
    ck_assert_uint_eq(c->l2_ethertype, 0x88B5);
    ck_assert_uint_eq(c->l2_discovery_mac[0], 0x03);
    ck_assert_uint_eq(c->l2_discovery_mac[5], 0x01);
    ck_assert_uint_eq(c->l2_max_unauth, 32);
    /* Sessions before HELLO: PROTOCOL.md §9.1's 10 s deadline, small caps, no CRL. */
    ck_assert_uint_eq(c->hello_timeout_ms, 10000);
    ck_assert_uint_eq(c->max_hello_pending, 64);
    ck_assert_uint_eq(c->max_hello_pending_per_source, 8);
    ck_assert_ptr_null(c->crl);
    nnve_config_destroy(c);
    ck_assert_int_eq(nnve_config_parse_string(G "hello_timeout = 2s\nmax_hello_pending = 5\n"
                                                "max_hello_pending_per_source = 2\n"
                                                "crl = /etc/splitnve/crl.pem\n" D,
                                              "t.conf", &c, err, sizeof err),
                     0);
    ck_assert_uint_eq(c->hello_timeout_ms, 2000);
    ck_assert_uint_eq(c->max_hello_pending, 5);
    ck_assert_uint_eq(c->max_hello_pending_per_source, 2);
    ck_assert_str_eq(c->crl, "/etc/splitnve/crl.pem");
    nnve_config_destroy(c);

    /* Both, every L2 key. */
    ck_assert_int_eq(nnve_config_parse_string(G "transport = tcp, l2\n"
                                                "l2_interfaces = swp1, swp9\n"
                                                "l2_ethertype = 0x88b6\n"
                                                "l2_discovery_mac = 03:00:5e:00:00:07\n"
                                                "l2_max_unauthenticated = 5\n" D
                                                "[domain e]\nports = *\ntags = 30\n",
                                              "t.conf", &c, err, sizeof err),
                     0);
    ck_assert_uint_eq(c->transports, NNVE_TRANSPORT_TCP | NNVE_TRANSPORT_L2);
    ck_assert_uint_eq(c->n_listen, 1);
    ck_assert_uint_eq(c->n_l2_interfaces, 2);
    ck_assert_str_eq(c->l2_interfaces[0], "swp1");
    ck_assert_str_eq(c->l2_interfaces[1], "swp9");
    ck_assert_uint_eq(c->l2_ethertype, 0x88b6);
    ck_assert_uint_eq(c->l2_discovery_mac[0], 0x03);
    ck_assert_uint_eq(c->l2_discovery_mac[5], 0x07);
    ck_assert_uint_eq(c->l2_max_unauth, 5);
    nnve_config_destroy(c);

    /* L2 only: no listener. */
    ck_assert_int_eq(nnve_config_parse_string(G "transport = l2\nl2_interfaces = swp1\n" D,
                                              "t.conf", &c, err, sizeof err),
                     0);
    ck_assert_uint_eq(c->transports, NNVE_TRANSPORT_L2);
    ck_assert_uint_eq(c->n_listen, 0);
    ck_assert_uint_eq(c->n_l2_interfaces, 1);
    ck_assert_str_eq(c->l2_interfaces[0], "swp1");
    nnve_config_destroy(c);
}
END_TEST

START_TEST(test_linux_errors)
{
    expect_error(G "[linux]\nbogus = 1\n", "t.conf:6: unknown key \"bogus\" in [linux]");
    expect_error(G "[linux]\nbridge = a-bridge-name-too-long\n",
                 "t.conf:6: bridge: \"a-bridge-name-too-long\" is not a valid interface name");
    expect_error(G "[linux]\nbridge = a/b\n", "t.conf:6: bridge:");
    expect_error(G "[linux]\nvxlan_device = \n", "t.conf:6: vxlan_device:");
    expect_error(G "[linux]\nvxlan_mode = vni\n",
                 "t.conf:6: vxlan_mode: expected external or per-vni");
    expect_error(G "[linux]\nlocal_ip = 198.51.100.300\n", "t.conf:6: local_ip:");
    expect_error(G "[linux]\nvxlan_port = 0\n", "t.conf:6: vxlan_port: expected a UDP port");
    expect_error(G "[linux]\nvxlan_port = 65536\n", "t.conf:6: vxlan_port");
    expect_error(G "[linux]\nremote_vteps = 198.51.100.2, nope\n",
                 "t.conf:6: remote_vteps: \"nope\" is not an IPv4 or IPv6 address");
    expect_error(G "[linux]\nremote_vteps = evpn, 198.51.100.2\n",
                 "t.conf:6: remote_vteps: \"evpn\"");
    expect_error(G "[linux]\nremote_vteps = 198.51.100.2 198.51.100.2\n",
                 "t.conf:6: remote_vteps: 198.51.100.2 is listed twice");
    expect_error(G "[linux]\nremote_vteps =\n", "t.conf:6: remote_vteps: expected");
    expect_error(G "[linux]\nanti_spoofing = yes\n",
                 "t.conf:6: anti_spoofing: expected on, mac or off");
    expect_error(G "[linux]\nvxlan_mode = per-vni\nlocal_ip = 198.51.100.1\n"
                   "remote_vteps = 2001:db8::2\n",
                 "t.conf:6: [linux]: remote VTEP 2001:db8::2 is not of the address family");
    /* remote_vteps = evpn: only what FRR 8.4 can serve, refused at the line that decides */
    expect_error(G "[linux]\nremote_vteps = evpn\n",
                 "t.conf:6: remote_vteps = evpn needs vxlan_mode = per-vni");
    expect_error(G "[linux]\nvxlan_mode = external\nlocal_ip = 198.51.100.1\nremote_vteps = evpn\n",
                 "t.conf:6: remote_vteps = evpn needs vxlan_mode = per-vni (FRR 8.4 maps a VNI "
                 "only from its own VXLAN device; on one external device it sees VNI 0)");
    expect_error(G "[linux]\nvxlan_mode = per-vni\nremote_vteps = evpn\n",
                 "t.conf:7: remote_vteps = evpn needs local_ip");
    expect_error(G "[linux]\nvxlan_mode = per-vni\nremote_vteps = evpn\nlocal_ip = 2001:db8::1\n",
                 "t.conf:7: remote_vteps = evpn needs an IPv4 local_ip (FRR 8.4 has IPv4 VTEPs "
                 "only), got 2001:db8::1");
    expect_error(G "[linux]\nremote_vteps = none, 198.51.100.2\n",
                 "t.conf:6: remote_vteps: \"none\"");
    expect_error(G "backend = fast\n", "backend \"fast\" is not a known dataplane backend (none, "
                                       "linux)");
}
END_TEST

START_TEST(test_transport_errors)
{
    expect_error(G "transport = udp\n" D, "t.conf:5: transport: expected tcp, l2 or both");
    expect_error(G "transport = ,\n" D, "t.conf:5: transport: expected");
    expect_error(G "transport = l2\n" D, "transport = l2 needs l2_interfaces");
    expect_error(G "l2_interfaces = swp1\n" D,
                 "t.conf:5: l2_interfaces is set but transport has no l2");
    expect_error(G "transport = l2\nlisten = 127.0.0.1:1\nl2_interfaces = swp1\n" D,
                 "t.conf:6: listen is set but transport has no tcp");
    expect_error(G "transport = l2\nl2_interfaces = swp1, swp2\n" D,
                 "t.conf:6: l2_interfaces: swp2 is in no [domain]");
    expect_error(G "transport = l2\nl2_interfaces = swp1, swp1\n" D,
                 "t.conf:6: l2_interfaces: swp1 is listed twice");
    expect_error(G "transport = l2\nl2_interfaces = a-name-too-long-for-linux\n" D,
                 "t.conf:6: l2_interfaces: \"a-name-too-long-for-linux\" is not an interface");
    expect_error(G "transport = l2\nl2_interfaces = ,\n" D, "t.conf:6: l2_interfaces: expected");
    expect_error(G "l2_ethertype = 0x8100\n", "t.conf:5: l2_ethertype: expected an EtherType");
    expect_error(G "l2_max_unauthenticated = 0\n", "t.conf:5: l2_max_unauthenticated: expected");
    expect_error(G "l2_max_unauthenticated = 65536\n", "l2_max_unauthenticated: expected");
    expect_error(G "l2_max_unauthenticated = many\n", "l2_max_unauthenticated: expected");
    expect_error(G "l2_ethertype = 1500\n", "l2_ethertype: expected");
    expect_error(G "l2_ethertype = 0x10000\n", "l2_ethertype: expected");
    expect_error(G "l2_ethertype = x88b5\n", "l2_ethertype: expected");
    expect_error(G "l2_discovery_mac = 02:00:00:00:00:01\n",
                 "t.conf:5: l2_discovery_mac: expected a group MAC");
    expect_error(G "l2_discovery_mac = 01:80:c2:00:00:0e\n", "l2_discovery_mac: expected");
    expect_error(G "l2_discovery_mac = 01:80:c2:00:00:21\n", "l2_discovery_mac: expected");
    expect_error(G "l2_discovery_mac = 01:00:5e:00:00:fb\n", "l2_discovery_mac: expected");
    expect_error(G "l2_discovery_mac = 33:33:00:00:00:01\n", "l2_discovery_mac: expected");
    expect_error(G "l2_discovery_mac = 01:1b:19:00:00:00\n", "l2_discovery_mac: expected");
    expect_error(G "l2_discovery_mac = 03:00:00:00:00:01\n", "l2_discovery_mac: expected");
    expect_error(G "l2_discovery_mac = ff:ff:ff:ff:ff:ff\n", "l2_discovery_mac: expected");
    expect_error(G "l2_discovery_mac = 03:53:4e\n", "l2_discovery_mac: expected");
}
END_TEST

START_TEST(test_duration)
{
    uint32_t ms;
    ck_assert_int_eq(nnve_config_parse_duration("30", &ms), 0);
    ck_assert_uint_eq(ms, 30000);
    ck_assert_int_eq(nnve_config_parse_duration("30s", &ms), 0);
    ck_assert_uint_eq(ms, 30000);
    ck_assert_int_eq(nnve_config_parse_duration("250ms", &ms), 0);
    ck_assert_uint_eq(ms, 250);
    ck_assert_int_eq(nnve_config_parse_duration("2m", &ms), 0);
    ck_assert_uint_eq(ms, 120000);
    ck_assert_int_eq(nnve_config_parse_duration("1h", &ms), 0);
    ck_assert_uint_eq(ms, 3600000);
    ck_assert_int_ne(nnve_config_parse_duration("", &ms), 0);
    ck_assert_int_ne(nnve_config_parse_duration("-1", &ms), 0);
    ck_assert_int_ne(nnve_config_parse_duration("5d", &ms), 0);
    ck_assert_int_ne(nnve_config_parse_duration("99999999999", &ms), 0);
}
END_TEST

/* A line longer than the INI parser's buffer, a repeated key or a repeated section is an
 * error at its line; nothing is split or silently overridden.  An indented line continues
 * the value before it. */
START_TEST(test_strict_lines)
{
    char text[1024], want[128], big[400];
    /* inih's buffer holds 198 bytes and the newline: a comment of that length passes. */
    memset(big, 'x', sizeof big);
    snprintf(text, sizeof text, G "#%.197s\n" D, big);
    struct nnve_config *c = NULL;
    char err[256] = "";
    ck_assert_msg(nnve_config_parse_string(text, "t.conf", &c, err, sizeof err) == 0, "%s", err);
    nnve_config_destroy(c);
    snprintf(text, sizeof text, G "#%.198s\n" D, big);
    expect_error(text, "t.conf:5: line longer than 198 bytes");
    /* Split, the tail of this value would have become a line "swp9" of its own. */
    snprintf(text, sizeof text, G D "[hypervisor hv1]\nport = swp1\nvns = 1,%.190s swp9\n", big);
    expect_error(text, "t.conf:10: line longer than 198 bytes");

    expect_error(G "hold_time = 1s\nhold_time = 2s\n" D,
                 "t.conf:6: key \"hold_time\" repeated in [global] (first at line 5)");
    expect_error(G D "[hypervisor hv1]\nport = swp1\nport = swp2\n",
                 "t.conf:10: key \"port\" repeated in [hypervisor hv1] (first at line 9)");
    /* The same section twice (blanks do not make it another one) would merge. */
    expect_error(G D "[hypervisor hv1]\nport = swp1\n[domain  d]\nports = swp2\n",
                 "t.conf:10: section [domain d] repeated (first at line 5)");
    expect_error(G D "[hypervisor hv1]\nport = swp1\n[hypervisor hv1]\nvns = 7\n",
                 "t.conf:10: section [hypervisor hv1] repeated (first at line 8)");
    expect_error(G D "[global]\nnode_id = x\n", "t.conf:8: section [global] repeated");

    /* Continuation lines: one value, its errors at the key's line. */
    ck_assert_msg(nnve_config_parse_string(G "[domain d]\nports = swp1,\n  swp2, ; two\n"
                                             "\tswp3\ntags=10-20\n",
                                           "t.conf", &c, err, sizeof err) == 0,
                  "%s", err);
    ck_assert_uint_eq(c->domains[0].n_ports, 3);
    ck_assert_str_eq(c->domains[0].ports[2], "swp3");
    nnve_config_destroy(c);

    /* From a file too. */
    char path[] = "/tmp/nnve-config-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, G D "[hypervisor hv1]\nport = swp1\nvns = 1,%.300s\n", big);
    fclose(f);
    ck_assert_int_eq(nnve_config_load(path, &c, err, sizeof err), SNCP_E_CONFIG);
    snprintf(want, sizeof want, "%s:10: line longer than 198 bytes", path);
    ck_assert_msg(strstr(err, want) != NULL, "got %s", err);
    unlink(path);
}
END_TEST

START_TEST(test_file)
{
    char path[64] = "/tmp/nnve-config-";
    size_t n = strlen(path);
    memset(path + n, 'X', 6); /* mkstemp's template */
    path[n + 6] = '\0';
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "w");
    fputs(good, f);
    fputs("[hypervisor hv3]\nport = swp1\nfoo = bar\n", f);
    fclose(f);
    struct nnve_config *c = NULL;
    char err[256] = "";
    ck_assert_int_eq(nnve_config_load(path, &c, err, sizeof err), SNCP_E_CONFIG);
    char want[300];
    snprintf(want, sizeof want, "%s:33: unknown key \"foo\"", path);
    ck_assert_msg(strstr(err, want) != NULL, "got %s", err);
    unlink(path);
    ck_assert_int_lt(nnve_config_load("/nonexistent/x.conf", &c, err, sizeof err), 0);
    ck_assert(strstr(err, "/nonexistent/x.conf") != NULL);
}
END_TEST

/* [pair]: the ToR pair keys, and the errors with file and line. */
START_TEST(test_pair)
{
    struct nnve_config *c = NULL;
    char err[256] = "";
    ck_assert_int_eq(nnve_config_parse_string(G D "[pair]\ndomain=d\nrole=follower\n"
                                                  "peer_identity=tor1\npeer=[2001:db8::1]:8395\n"
                                                  "retry=250ms\n",
                                              "t.conf", &c, err, sizeof err),
                     0);
    ck_assert_str_eq(c->pair.domain, "d");
    ck_assert_int_eq(c->pair.role, 1);
    ck_assert_str_eq(c->pair.peer_identity, "tor1");
    ck_assert_str_eq(c->pair.peer_host, "2001:db8::1");
    ck_assert_uint_eq(c->pair.peer_port, 8395);
    ck_assert_uint_eq(c->pair.retry_ms, 250);
    ck_assert_uint_eq(c->pair.line, 9);
    nnve_config_destroy(c);
    ck_assert_int_eq(nnve_config_parse_string(G D "[pair]\ndomain=d\nrole=allocator\n"
                                                  "peer_identity=tor2\nlisten=127.0.0.1:0\n",
                                              "t.conf", &c, err, sizeof err),
                     0);
    ck_assert_int_eq(c->pair.role, 0);
    ck_assert(c->pair.has_listen);
    nnve_config_destroy(c);
    expect_error(G D "[pair]\nrole=boss\n", "t.conf:9: role: expected allocator or follower");
    expect_error(G D "[pair]\nfoo=1\n", "t.conf:9: unknown key \"foo\" in [pair]");
    expect_error(G D "[pair]\ndomain=d\nrole=allocator\n", "t.conf:9: [pair] needs domain");
    expect_error(G D "[pair]\ndomain=x\nrole=allocator\npeer_identity=p\nlisten=1.2.3.4:1\n",
                 "t.conf:9: [pair] domain x is not a [domain]");
    expect_error(G D "[pair]\ndomain=d\nrole=allocator\npeer_identity=p\n",
                 "role = allocator needs listen");
    expect_error(G D "[pair]\ndomain=d\nrole=follower\npeer_identity=p\n",
                 "role = follower needs peer");
    expect_error(G D "[pair]\npeer=tor1\n", "t.conf:9: peer: bad address");
    expect_error(G D "[pair]\npeer=tor1:0\n", "t.conf:9: peer: port 0");
    expect_error(G D "[pair]\nretry=1ms\n", "t.conf:9: retry: bad duration");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nnve-config");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_good);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_pair);
    tcase_add_test(tc, test_linux);
    tcase_add_test(tc, test_linux_errors);
    tcase_add_test(tc, test_transport);
    tcase_add_test(tc, test_transport_errors);
    tcase_add_test(tc, test_duration);
    tcase_add_test(tc, test_file);
    tcase_add_test(tc, test_strict_lines);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
