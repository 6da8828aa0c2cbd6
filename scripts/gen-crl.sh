#!/bin/bash
# gen-crl.sh: a CRL from the test CA of scripts/gen-pki.sh (openssl CLI only).
#
#   scripts/gen-crl.sh [--ca BASENAME] PKIDIR OUTFILE [NAME]...
#
# Writes OUTFILE (PEM), a CRL signed by PKIDIR/ca.key (--ca other-ca: PKIDIR/other-ca.key)
# that revokes PKIDIR/NAME.crt for each NAME (none: an empty CRL), valid for one day.  The file is replaced
# atomically, so a daemon re-reading it on SIGHUP never sees half of it.  Quiet unless
# something fails.
set -euo pipefail

ca=ca
if [ "${1:-}" = --ca ] && [ $# -ge 2 ]; then
    ca=$2
    shift 2
fi
[ $# -ge 2 ] || { echo "usage: $0 [--ca BASENAME] PKIDIR OUTFILE [NAME]..." >&2; exit 2; }
pki=$1 outfile=$2
shift 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log=$work/openssl.log

run() {
    if ! "$@" >>"$log" 2>&1; then
        echo "$0: failed: $*" >&2
        cat "$log" >&2
        exit 1
    fi
}

: >"$work/index.txt"
revoked_at=$(date -u -d '-1 minute' '+%y%m%d%H%M%SZ')
for n in "$@"; do
    crt=$pki/$n.crt
    [ -s "$crt" ] || { echo "$0: no certificate $crt" >&2; exit 1; }
    serial=$(openssl x509 -in "$crt" -noout -serial | sed 's/^serial=//')
    subject=$(openssl x509 -in "$crt" -noout -subject -nameopt compat | sed 's/^subject=//')
    expires=$(date -u -d "$(openssl x509 -in "$crt" -noout -enddate | sed 's/^notAfter=//')" \
        '+%y%m%d%H%M%SZ')
    printf 'R\t%s\t%s\t%s\tunknown\t%s\n' "$expires" "$revoked_at" "$serial" "$subject" \
        >>"$work/index.txt"
done
cat >"$work/ca.cnf" <<CNF
[ ca ]
default_ca = test_ca
[ test_ca ]
database = $work/index.txt
certificate = $pki/$ca.crt
private_key = $pki/$ca.key
default_md = sha256
default_crl_days = 1
crlnumber = $work/crlnumber
CNF
echo 01 >"$work/crlnumber"
run openssl ca -batch -config "$work/ca.cnf" -gencrl -out "$work/crl.pem"
mv -f "$work/crl.pem" "$outfile.tmp.$$"
mv -f "$outfile.tmp.$$" "$outfile"
