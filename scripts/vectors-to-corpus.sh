#!/bin/bash
# Regenerates the libFuzzer seed corpora from proto/vectors/ (valid and malformed):
#   tests/fuzz/corpus/msg/<kind>-<vector>     the message bytes
#   tests/fuzz/corpus/frame/<kind>-<vector>   4 chunk-size bytes, then the message bytes;
#   tests/fuzz/corpus/frame/stream-valid      all valid vectors back to back
# Usage: scripts/vectors-to-corpus.sh   (run from anywhere; rewrites both directories)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
msg=$top/tests/fuzz/corpus/msg
frame=$top/tests/fuzz/corpus/frame
mkdir -p "$msg" "$frame"
rm -f "$msg"/* "$frame"/*

vec_bytes() { # FILE -> raw bytes on stdout
    sed -n 's/^hex: *//p' "$1" | tr -d ' \n' | xxd -r -p
}

: >"$frame/stream-valid.tmp"
for kind in valid malformed; do
    for v in "$top"/proto/vectors/$kind/*.vec; do
        name=$kind-$(basename "$v" .vec)
        vec_bytes "$v" >"$msg/$name"
        { printf '\x03\x11\x01\x00'; vec_bytes "$v"; } >"$frame/$name"
        [ "$kind" = valid ] && vec_bytes "$v" >>"$frame/stream-valid.tmp"
    done
done
{ printf '\x05\x01\x40\x02'; cat "$frame/stream-valid.tmp"; } >"$frame/stream-valid"
rm -f "$frame/stream-valid.tmp"
echo "corpus: $(ls "$msg" | wc -l) msg seeds, $(ls "$frame" | wc -l) frame seeds"
