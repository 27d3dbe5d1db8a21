#!/usr/bin/env bash
# Builds the local base image of the Dockerfile without a registry (for machines that reach no container registry).
#
#   bacalhau-grpc/base:bookworm   a Debian bookworm `debootstrap --variant=minbase` root file system
#                                 (apt, dpkg, bash, coreutils; no Python), `docker import`ed, with
#                                 PATH set and CMD ["bash"]: what `debian:bookworm-slim` would give.
#
# The packages come from the Debian mirror apt uses on this machine (`apt-get indextargets` reads
# sources.list and deb822 .sources files alike), or from $DEBIAN_MIRROR when set. The image's own apt
# sources are this machine's entries for bookworm, bookworm-updates and bookworm-security, so
# `apt-get install` in the Dockerfile gets the same packages the host does. Like the slim images, dpkg
# leaves out documentation, man pages and translations (copyright files stay).
#
# Idempotent: an existing image is left alone (`docker rmi bacalhau-grpc/base:bookworm` to rebuild).
# debootstrap is installed with apt-get when missing. Needs root (or sudo) and a running engine
# (make docker-engine). Takes about a minute.
set -euo pipefail

IMAGE=bacalhau-grpc/base:bookworm
SUITE=bookworm
PATH_ENV=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

say() { echo "base-image: $*"; }
die() {
    echo "base-image: $*" >&2
    exit 1
}

as_root() {
    if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi
}

# "URI SUITE COMPONENT" for every Debian package index apt is configured to fetch.
apt_sources() {
    # shellcheck disable=SC2016 # $(...) are apt's field names, not the shell's
    apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Created-By: Packages' 2> /dev/null |
        sort -u
}

# The mirror apt fetches $SUITE from; else one serving some other Debian release (path .../debian).
debian_mirror() {
    if [[ -n ${DEBIAN_MIRROR:-} ]]; then
        echo "$DEBIAN_MIRROR"
        return
    fi
    local uri suite component fallback=""
    while read -r uri suite component; do
        if [[ $suite == "$SUITE" ]]; then
            echo "${uri%/}"
            return
        fi
        [[ -n $fallback || ${uri%/} != */debian ]] || fallback=${uri%/}
    done < <(apt_sources)
    [[ -n $fallback ]] || die "no Debian mirror in apt's sources (/etc/apt/sources.list, \
/etc/apt/sources.list.d); set DEBIAN_MIRROR=http://<mirror>/debian"
    echo "$fallback"
}

# The image's /etc/apt/sources.list: this machine's entries for the suite, its -updates and -security.
image_sources() {
    local mirror=$1 uri suite component found=""
    while read -r uri suite component; do
        case $suite in
            "$SUITE" | "$SUITE-updates" | "$SUITE-security")
                echo "deb ${uri%/} $suite $component"
                found=1
                ;;
        esac
    done < <(apt_sources)
    [[ -n $found ]] || echo "deb $mirror $SUITE main"
}

ensure_debootstrap() {
    command -v debootstrap > /dev/null && return
    say "installing debootstrap"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
}

slim_dpkg_config() {
    cat << 'EOF'
# As in the slim Debian images: no documentation, man pages or translations (copyright files stay).
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
EOF
}

# Leaves the root file system as an image's: apt caches, logs and device nodes go (the engine mounts
# /dev), and what the exclusions above would not have installed is removed.
tidy_rootfs() {
    local root=$1
    as_root find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    as_root find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    as_root rm -rf "$root"/usr/share/{info,man,groff,linda,lintian,locale}/* \
        "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old "$root"/var/log/* "$root"/dev/* \
        "$root"/etc/machine-id "$root"/etc/hostname "$root"/etc/resolv.conf
}

if docker image inspect "$IMAGE" > /dev/null 2>&1; then
    say "$IMAGE exists"
    exit 0
fi
docker info > /dev/null 2>&1 || die "no Docker engine answers; start one with \`make docker-engine\`"
ensure_debootstrap
mirror=$(debian_mirror)

# Removes the work folder, after unmounting anything debootstrap may have left mounted in it.
cleanup() {
    local mounts
    mapfile -t mounts < <(awk -v dir="$work/" 'index($2, dir) == 1 { print $2 }' /proc/mounts | sort -r)
    ((${#mounts[@]} == 0)) || as_root umount -l "${mounts[@]}" || true
    as_root rm -rf --one-file-system "$work"
}

work=$(mktemp -d "${TMPDIR:-/var/tmp}/bacalhau-grpc-base.XXXXXX")
trap cleanup EXIT
root=$work/rootfs
say "debootstrap --variant=minbase $SUITE from $mirror"
if ! as_root debootstrap --variant=minbase "$SUITE" "$root" "$mirror" > "$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    die "debootstrap failed (the end of its log is above)"
fi
image_sources "$mirror" | as_root tee "$root/etc/apt/sources.list" > /dev/null
slim_dpkg_config | as_root tee "$root/etc/dpkg/dpkg.cfg.d/slim" > /dev/null
tidy_rootfs "$root"

say "importing $IMAGE"
as_root tar -C "$root" --numeric-owner -cf - . |
    docker import \
        --change "ENV PATH=$PATH_ENV" \
        --change 'CMD ["bash"]' \
        --message "Debian $SUITE minbase (debootstrap from $mirror)" \
        - "$IMAGE" > /dev/null
say "built $IMAGE ($(docker image inspect --format '{{.Size}}' "$IMAGE" | numfmt --to=iec) from $mirror)"
