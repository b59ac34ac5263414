# shellcheck shell=bash
# Unmounting what daemons, containers and debootstrap leave mounted. Sourced.

# Unmounts whatever is mounted under $1, deepest first (lazily where busy).
unmount_under() {
  local dir=$1 target
  awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r target; do
    umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null || true
  done
}
