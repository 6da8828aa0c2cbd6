#!/bin/bash
# Request/response pairs per second through sncp_conn over TCP on 127.0.0.1 with TLS.
# Run by scripts/run-bench.sh (SPLITNVE_BUILD, SPLITNVE_SRC set); figures only.
set -eu
exec "$SPLITNVE_BUILD/bench/conn-tcp" "${CONN_TCP_SECONDS:-2}"
