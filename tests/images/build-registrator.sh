#!/usr/bin/env bash
# Builds the registrator image from this checkout as a user does (`docker build -t registrator .`
# in the checkout), without any image registry.
#
# The Dockerfile stays standard (its default base is a public python image). Here no registry can
# be pulled from, so the base is made locally once and cached: a debootstrap'd Debian bookworm
# (python3 3.11, python3-venv) with this host's CA bundle and an /etc/pip.conf naming it, so pip
# inside the build trusts the same TLS as the host does and reaches PyPI through the host's
# network. Later runs reuse it and only rebuild the image (Docker's layer cache makes that quick
# when nothing changed).
#
#   bash tests/images/build-registrator.sh [IMAGE]     # default registrator:test
#   REGISTRATOR_BASE_IMAGE=...  the base to build on (default rtest/python-base:bookworm)
set -euo pipefail
cd "$(dirname "$0")/../.."
image="${1:-registrator:test}"
base="${REGISTRATOR_BASE_IMAGE:-rtest/python-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

make_base() {
    command -v debootstrap >/dev/null || { echo "need debootstrap: apt-get install debootstrap" >&2; exit 1; }
    root="$(mktemp -d /tmp/registrator-base.XXXXXX)"
    log="$root.log"
    # debootstrap mounts /proc and /sys inside the target: unmount, never delete through a mount.
    remove_root() {
        { findmnt -rn -o TARGET | grep "^$root/" | sort -r | xargs -r -n1 umount -l; } || true
        rm -rf --one-file-system "$root" "$log"
    }
    trap remove_root EXIT
    echo "debootstrap bookworm into $root (about a minute)"
    if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$root" "$mirror" >"$log" 2>&1; then
        tail -40 "$log" >&2
        exit 1
    fi
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$root/etc/pip.conf"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | docker import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'CMD ["/bin/bash"]' - "$base" >/dev/null
    echo "built base image $base"
    remove_root
    trap - EXIT
}

if ! docker image inspect "$base" >/dev/null 2>&1; then
    make_base
fi

docker build --network=host --build-arg BASE_IMAGE="$base" -t "$image" .
