#!/bin/bash
# gen-pki.sh: a throwaway PKI for tests and the demo (openssl CLI only).
#
#   scripts/gen-pki.sh [--expired NAME]... [--other-ca NAME]... OUTDIR NAME...
#
# Writes OUTDIR/ca.crt + ca.key (a test CA) and, for each NAME, NAME.crt + NAME.key: EC P-256,
# CN=NAME, SAN DNS:NAME, EKU serverAuth+clientAuth, valid for one day from now.
#   --expired NAME   NAME's certificate expired yesterday (signed by the test CA)
#   --other-ca NAME  NAME's certificate is signed by a second, unrelated CA (OUTDIR/other-ca.crt)
# A NAME given only through an option is generated too.  Re-running is safe: the CAs are kept
# while they are valid for another hour, the named certificates are re-issued.  Quiet unless
# something fails.
set -euo pipefail

usage() {
    echo "usage: $0 [--expired NAME]... [--other-ca NAME]... OUTDIR NAME..." >&2
    exit 2
}

declare -A expired=() other=()
names=()
while [ $# -gt 0 ]; do
    case $1 in
    --expired) [ $# -ge 2 ] || usage; expired[$2]=1; names+=("$2"); shift 2 ;;
    --other-ca) [ $# -ge 2 ] || usage; other[$2]=1; names+=("$2"); shift 2 ;;
    -h | --help) usage ;;
    --) shift; break ;;
    -*) echo "$0: unknown option $1" >&2; usage ;;
    *) break ;;
    esac
done
[ $# -ge 1 ] || usage
out=$1
shift
names+=("$@")
[ ${#names[@]} -gt 0 ] || usage

for n in "${names[@]}"; do
    if ! [[ $n =~ ^[A-Za-z0-9]([A-Za-z0-9.-]{0,62})$ ]]; then
        echo "$0: '$n' is not a usable DNS name" >&2
        exit 2
    fi
done

mkdir -p "$out"
work=$(mktemp -d -p "$out")
trap 'rm -rf "$work"' EXIT
log=$work/openssl.log

run() {
    if ! "$@" >>"$log" 2>&1; then
        echo "$0: failed: $*" >&2
        cat "$log" >&2
        exit 1
    fi
}

# make_ca BASENAME SUBJECT_CN: keeps an existing CA that is valid for at least another hour.
make_ca() {
    local base=$1 cn=$2
    if [ -s "$out/$base.crt" ] && [ -s "$out/$base.key" ] &&
        openssl x509 -in "$out/$base.crt" -noout -checkend 3600 >/dev/null 2>&1; then
        return 0
    fi
    run openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$work/$base.key" -out "$work/$base.crt" -days 2 -sha256 -subj "/CN=$cn" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash"
    chmod 600 "$work/$base.key"
    mv -f "$work/$base.key" "$out/$base.key"
    mv -f "$work/$base.crt" "$out/$base.crt"
}

# ca_sign CA_BASENAME NAME STARTDATE ENDDATE: issues NAME.crt with explicit validity dates.
ca_sign() {
    local ca=$1 n=$2 start=$3 end=$4 db=$work/db-$1
    mkdir -p "$db/new"
    : >"$db/index.txt"
    echo "unique_subject = no" >"$db/index.txt.attr"
    cat >"$work/ca-$n.cnf" <<EOF
[ ca ]
default_ca = test_ca
[ test_ca ]
dir = $db
database = $db/index.txt
new_certs_dir = $db/new
certificate = $out/$ca.crt
private_key = $out/$ca.key
rand_serial = yes
default_md = sha256
policy = policy_any
copy_extensions = none
x509_extensions = leaf_ext
[ policy_any ]
commonName = supplied
[ leaf_ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyAgreement
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:$n
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    run openssl ca -batch -notext -config "$work/ca-$n.cnf" -in "$work/$n.csr" \
        -out "$work/$n.crt" -startdate "$start" -enddate "$end"
}

make_ca ca "splitnve test CA"
if [ ${#other[@]} -gt 0 ]; then
    make_ca other-ca "splitnve other test CA"
fi

fmt='+%Y%m%d%H%M%SZ'
now_start=$(date -u -d '-5 minutes' "$fmt")
now_end=$(date -u -d '+1 day' "$fmt")
old_start=$(date -u -d '-3 days' "$fmt")
old_end=$(date -u -d '-1 day' "$fmt")

declare -A done_names=()
for n in "${names[@]}"; do
    [ -z "${done_names[$n]:-}" ] || continue
    done_names[$n]=1
    run openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$work/$n.key" -out "$work/$n.csr" -subj "/CN=$n"
    ca=ca
    [ -z "${other[$n]:-}" ] || ca=other-ca
    if [ -n "${expired[$n]:-}" ]; then
        ca_sign "$ca" "$n" "$old_start" "$old_end"
    else
        ca_sign "$ca" "$n" "$now_start" "$now_end"
    fi
    chmod 600 "$work/$n.key"
    mv -f "$work/$n.key" "$out/$n.key"
    mv -f "$work/$n.crt" "$out/$n.crt"
done
