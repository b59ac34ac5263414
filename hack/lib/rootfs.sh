# shellcheck shell=bash
# Debian root filesystems made from Debian's packages with debootstrap (variant minbase), cached as
# tarballs in $FERRY_CACHE named by the hash of their recipe, so that only the first run bootstraps:
# the base of ferry's own image (hack/image) and of the lab's real services (hack/lab services).
# Sourced; the caller defines log and die, and runs as root.

FERRY_CACHE=${FERRY_CACHE:-/var/cache/ferry}
DEBIAN_MIRROR=${FERRY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${FERRY_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
DEBIAN_SUITE=bookworm
# Bumped when make_rootfs changes what goes into a tarball: a new recipe, a new cache file.
ROOTFS_RECIPE=3

# shellcheck source=hack/lib/mounts.sh
. "${BASH_SOURCE[0]%/*}/mounts.sh"

# Unmounts what debootstrap or we left mounted under $1 and removes it without crossing into another
# file system.
remove_rootfs() {
  [ -d "$1" ] || return 0
  unmount_under "$1"
  rm -rf --one-file-system "$1"
}

# `rootfs_recipe_hash PACKAGE...`: names the tarball of a root filesystem with these packages.
rootfs_recipe_hash() {
  printf '%s\n' "$ROOTFS_RECIPE" "$DEBIAN_SUITE" minbase "$@" | sha256sum | cut -c1-12
}

# debootstrap, then the suite's security and point-release updates, then what an image needs not.
make_rootfs() {
  local root=$1 packages
  shift
  packages=$(IFS=,; echo "$*")
  debootstrap --variant=minbase --include="$packages" "$DEBIAN_SUITE" "$root" "$DEBIAN_MIRROR" >"$root.log" 2>&1 \
    || { tail -20 "$root.log" >&2; die "debootstrap failed (the whole log: $root.log)"; }
  cat > "$root/etc/apt/sources.list" <<SOURCES
deb $DEBIAN_MIRROR $DEBIAN_SUITE main
deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main
deb $DEBIAN_SECURITY_MIRROR $DEBIAN_SUITE-security main
SOURCES
  mount -t proc proc "$root/proc"
  chroot "$root" apt-get update -qq
  chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -qq -o Dpkg::Use-Pty=0 >>"$root.log" 2>&1 \
    || { tail -20 "$root.log" >&2; die "apt-get upgrade in the new root failed"; }
  chroot "$root" apt-get clean
  umount "$root/proc"
  # Docker supplies /dev, resolv.conf, hostname and hosts; the host's copies have no place here.
  find "$root/dev" -mindepth 1 -delete 2>/dev/null || true
  : > "$root/etc/resolv.conf"
  : > "$root/etc/hostname"
  # Log files go, their directories stay: services (nginx) open their logs there.
  find "$root/var/log" -type f -delete
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/tmp/* \
    "$root"/usr/share/man "$root"/usr/share/info "$root"/usr/share/locale
  find "$root/usr/share/doc" -type f ! -name copyright -delete
  rm -f "$root.log"
}

# `rootfs_tarball NAME [--rebuild] PACKAGE...`: the cached tarball of a root filesystem with these
# packages (made if missing, or if --rebuild); its path on stdout.
rootfs_tarball() {
  local name=$1 rebuild=false hash tarball root
  shift
  if [ "${1:-}" = --rebuild ]; then rebuild=true; shift; fi
  hash=$(rootfs_recipe_hash "$@")
  tarball=$FERRY_CACHE/$name-$DEBIAN_SUITE-$hash.tar
  if $rebuild; then rm -f "$tarball"; fi
  if [ -s "$tarball" ]; then
    log "root filesystem cached: $tarball"
    echo "$tarball"
    return
  fi
  command -v debootstrap >/dev/null || die "no debootstrap: run hack/setup first"
  mkdir -p "$FERRY_CACHE"
  root=$FERRY_CACHE/rootfs-$name-$DEBIAN_SUITE-$hash
  remove_rootfs "$root"
  trap 'remove_rootfs "'"$root"'"' EXIT
  log "bootstrapping Debian $DEBIAN_SUITE ($*) into $root"
  make_rootfs "$root" "$@"
  # Written under a temporary name and renamed: an interrupted run leaves no half tarball.
  tar --numeric-owner --xattrs -C "$root" -cf "$tarball.part" .
  mv "$tarball.part" "$tarball"
  remove_rootfs "$root"
  trap - EXIT
  log "cached $tarball ($(du -h "$tarball" | cut -f1))"
  echo "$tarball"
}
