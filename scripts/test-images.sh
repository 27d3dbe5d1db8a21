#!/usr/bin/env bash
# Builds the tests' Docker image without a registry (for machines that reach no container registry).
#
#   bacalhau-grpc/busybox:test   Debian's static busybox as /bin/busybox, every applet it has as a
#                                symlink in /bin (sh, cat, echo, ls, sha256sum, sleep, head, dd, ...),
#                                /tmp, and a root and a nobody user. ENTRYPOINT ["sh", "-c"] with
#                                CMD ["echo image default"]: a job with no entrypoint prints
#                                "image default"; a job's entrypoint replaces both.
#
# The image is a `docker import` of a tarball made here, labelled with the hash of its content (the
# busybox binary and this script); an image with the same label is left alone (idempotent).
# busybox-static is installed with apt-get when missing. Needs a running engine (make docker-engine).
set -euo pipefail

IMAGE=${TEST_IMAGE:-bacalhau-grpc/busybox:test}
BUSYBOX=/bin/busybox
LABEL=bacalhau-grpc.content

say() { echo "test-images: $*"; }

as_root() {
    if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi
}

ensure_static_busybox() {
    if [[ $(dpkg-query -W -f='${Status}' busybox-static 2> /dev/null) != "install ok installed" ]]; then
        say "installing Debian's busybox-static"
        as_root apt-get update -q
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static
    fi
}

content_hash() {
    cat "$BUSYBOX" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16
}

current_label() {
    docker image inspect --format "{{index .Config.Labels \"$LABEL\"}}" "$IMAGE" 2> /dev/null || true
}

make_rootfs() {
    local root=$1
    mkdir -p "$root/bin" "$root/etc" "$root/root" "$root/tmp"
    chmod 1777 "$root/tmp"
    cp "$BUSYBOX" "$root/bin/busybox"
    local applet
    for applet in $("$BUSYBOX" --list); do
        [[ $applet == busybox ]] || ln -s busybox "$root/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
}

build_image() {
    local hash=$1 work
    work=$(mktemp -d)
    trap 'rm -rf "$work"' RETURN
    make_rootfs "$work/rootfs"
    tar -C "$work/rootfs" --numeric-owner --owner=0 --group=0 -cf "$work/rootfs.tar" .
    docker import \
        --change 'ENV PATH=/bin' \
        --change 'ENTRYPOINT ["sh", "-c"]' \
        --change 'CMD ["echo image default"]' \
        --change "LABEL $LABEL=$hash" \
        --message "bacalhau-grpc test image (busybox $("$BUSYBOX" | head -n1 | cut -d' ' -f2))" \
        "$work/rootfs.tar" "$IMAGE" > /dev/null
}

ensure_static_busybox
hash=$(content_hash)
if [[ $(current_label) == "$hash" ]]; then
    say "$IMAGE is up to date ($LABEL=$hash)"
    exit 0
fi
build_image "$hash"
say "built $IMAGE ($LABEL=$hash)"
