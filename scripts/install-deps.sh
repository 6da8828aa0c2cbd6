#!/bin/sh
# Installs the Debian packages splitnve needs to build, test and demo, if any are missing.
# A no-op (one dpkg query) when everything is present.  Needs root to install.
set -eu

PKGS="build-essential pkg-config libvirt-dev libxml2-dev libssl-dev libuv1-dev check
libmnl-dev libnftables-dev nftables libinih-dev libjansson-dev libsqlite3-dev openssl
libvirt-daemon-system libvirt-clients qemu-system-x86 user-mode-linux iproute2 kmod
iputils-ping clang libclang-rt-14-dev llvm jq procps psmisc busybox-static binutils xz-utils
util-linux systemd sqlite3 frr strace"

missing=""
for p in $PKGS; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$st" in
    *"install ok installed"*) ;;
    *) missing="$missing $p" ;;
    esac
done
[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing"
if [ "$(id -u)" != 0 ]; then
    echo "install-deps: not root; install these packages and retry:$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
