#!/usr/bin/env bash
# Make a runnable busybox image with `docker import`, no registry needed:
# Debian's static /bin/busybox, a /bin link for every applet, PATH=/bin.
# Usage: deploy/busybox-image.sh TAG   (does nothing when TAG already exists)
set -euo pipefail
tag=${1:?usage: busybox-image.sh TAG}
if docker image inspect "$tag" >/dev/null 2>&1; then
    exit 0
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/tmp" "$root/etc"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
tar -C "$root" -cf - . | docker import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' - "$tag" >/dev/null
echo "built $tag from /bin/busybox"
