#!/bin/bash
# Request/response pairs per second through two SNCP sessions in memory, TLS included.
# Run by scripts/run-bench.sh (SPLITNVE_BUILD, SPLITNVE_SRC set); figures only.
set -eu
exec "$SPLITNVE_BUILD/bench/tls-session" "${TLS_SESSION_SECONDS:-2}"
