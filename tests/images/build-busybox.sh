#!/usr/bin/env bash
# Builds rtest/busybox:latest, the image the end-to-end tests run, without any registry:
# a rootfs holding Debian's static busybox (sh, httpd, nc, sleep as links), docker-imported.
set -euo pipefail
image="${1:-rtest/busybox:latest}"
if docker image inspect "$image" >/dev/null 2>&1; then
    exit 0
fi
busybox=/bin/busybox  # Debian's busybox-static: no shared libraries needed in the image
[ -x "$busybox" ] || { echo "need $busybox: apt-get install busybox-static" >&2; exit 1; }
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/tmp" "$root/www"
cp "$busybox" "$root/bin/busybox"
for applet in sh httpd nc sleep ls cat echo true false kill wget; do
    ln -s busybox "$root/bin/$applet"
done
echo ok > "$root/www/index.html"
tar -C "$root" -c . | docker import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' - "$image" >/dev/null
echo "built $image"
