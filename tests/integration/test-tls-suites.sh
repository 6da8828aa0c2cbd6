#!/bin/bash
# The nNVE's own TLS 1.3 record layer (an established server connection continues without
# OpenSSL's SSL object) with each TLS 1.3 cipher suite OpenSSL offers by default: the
# sncp-tls unit suite (round trips, KeyUpdate either way, refused records, close_notify)
# runs once per suite, OpenSSL restricted to that suite by a configuration file; the suite
# checks that it is the one negotiated.
set -u
: "${SPLITNVE_BUILD:?}"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
status=0
for suite in TLS_AES_256_GCM_SHA384 TLS_AES_128_GCM_SHA256 TLS_CHACHA20_POLY1305_SHA256; do
    printf 'openssl_conf = conf\n[conf]\nssl_conf = ssl\n[ssl]\nsystem_default = suites\n[suites]\nCiphersuites = %s\n' \
        "$suite" >"$T/$suite.cnf"
    if OPENSSL_CONF=$T/$suite.cnf SNCP_TEST_TLS_SUITE=$suite "$SPLITNVE_BUILD/tests/test-tls" >"$T/$suite.log" 2>&1; then
        echo "ok: $suite"
    else
        echo "FAIL: $suite"
        cat "$T/$suite.log"
        status=1
    fi
done
exit $status
