#!/usr/bin/env bash
# tests/rootfs.sh SUITE: prints the path of a cached Debian root file system
# for SUITE (bullseye, bookworm, trixie), building it with debootstrap first
# when the cache does not have it.
#
# The cache lives outside the checkout, in /var/cache/patchman-tests/rootfs
# (PATCHMAN_ROOTFS_CACHE overrides), one directory per suite and package
# list: <suite>-<hash of this script's package list>. A tree is built in a
# temporary directory and renamed into place when complete, so an
# interrupted build never leaves a half tree that looks cached. Tests never
# write to it: they run in an overlay over it (tests/src/sandbox).
#
# What each tree holds, beyond minbase:
#   apt, dpkg (minbase)            the apt family's real tools
#   dnf, rpm                       the dnf family's real tools (Debian's build)
#   systemd, systemd-sysv, dbus    PID 1 for the systemd tier (nspawn -b)
#   adduser, procps, python3       what the package scripts and tests call
set -euo pipefail

suite=${1:?usage: tests/rootfs.sh SUITE}
case "$suite" in
bullseye | bookworm | trixie) ;;
*)
    echo "tests/rootfs.sh: unknown suite '$suite' (bullseye, bookworm, trixie)" >&2
    exit 2
    ;;
esac

mirror=${PATCHMAN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${PATCHMAN_ROOTFS_CACHE:-/var/cache/patchman-tests/rootfs}
packages="dnf,rpm,systemd,systemd-sysv,dbus,adduser,procps,python3,libpam-systemd"
# Bump when the tree's preparation below changes.
recipe=2
key=$(printf '%s %s %s' "$packages" "$recipe" "$mirror" | sha256sum | cut -c1-12)
tree="$cache/$suite-$key"

if [ -f "$tree/.patchman-rootfs-complete" ]; then
    echo "$tree"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "tests/rootfs.sh: building a root file system needs root" >&2
    exit 1
fi
command -v debootstrap >/dev/null || {
    echo "tests/rootfs.sh: debootstrap is missing (apt-get install debootstrap)" >&2
    exit 1
}

mkdir -p "$cache"
# One builder per suite at a time; a second caller waits, then finds it.
exec 9>"$cache/.$suite.lock"
flock 9
if [ -f "$tree/.patchman-rootfs-complete" ]; then
    echo "$tree"
    exit 0
fi

tmp=$(mktemp -d "$cache/.build-$suite-XXXXXX")
trap 'rm -rf --one-file-system "$tmp"' EXIT
log="$cache/.$suite.log"
echo "tests/rootfs.sh: building $suite with debootstrap (log: $log)" >&2
if ! debootstrap --variant=minbase --include="$packages" "$suite" "$tmp/root" "$mirror" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "tests/rootfs.sh: debootstrap $suite failed" >&2
    exit 1
fi
root="$tmp/root"
# No network sources inside: tests add their own on 127.0.0.1.
rm -f "$root/etc/apt/sources.list"
rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"*.bin "$root/var/cache/apt/archives/"*.deb
# Debian's dnf.conf sets best=False, which hides a missing dependency; the
# EL default is best=True (see the dnf facts in docs/DESIGN.md).
if [ -f "$root/etc/dnf/dnf.conf" ]; then
    sed -i 's/^best=.*/best=True/' "$root/etc/dnf/dnf.conf"
fi
# A container boots faster and quieter without these.
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
    rm -f "$root/etc/systemd/system/timers.target.wants/$unit"
done
echo "$suite" >"$root/etc/patchman-test-suite"
touch "$root/.patchman-rootfs-complete"
rm -rf --one-file-system "$tree"
mv "$root" "$tree"
echo "$tree"
