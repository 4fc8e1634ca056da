#!/bin/sh
# Builds the patchman-client packages from this workspace's binaries:
#
#   deploy/package/build.sh [--bin-dir DIR] [--deb | --rpm] [--compress xz|gzip] VERSION OUTDIR
#
#   VERSION   [EPOCH:]UPSTREAM-RELEASE, e.g. 1.7.0-1 (the package version, not
#             the crates'; so the same binaries can be packaged as X and X+1)
#   OUTDIR    where patchman-client_VERSION_ARCH.deb and
#             patchman-client-UPSTREAM-RELEASE.ARCH.rpm are written (created)
#   --bin-dir where patchman-helper and patchman-agent are. Without it the
#             shipped binaries are built first, for a glibc 2.17 symbol floor
#             (EL 7 and newer; see below), into
#             ${CARGO_TARGET_DIR:-<workspace>/target}/x86_64-unknown-linux-gnu/release
#   --deb / --rpm  build only that one (default: both)
#   --compress     payload compression, default xz; gzip is ten times faster
#             for the large unoptimised (debug) binaries the tests package
#
# The shipped binaries: `cargo zigbuild --release --locked --target
# x86_64-unknown-linux-gnu.2.17 -p patchman-helper -p patchman-agent` links
# them with Zig against glibc 2.17's symbol versions, so they start on
# every glibc from EL 7's 2.17 up (Debian 11: 2.31, EL 8: 2.28). Needs
# cargo-zigbuild (`cargo install --locked cargo-zigbuild`) and Zig, which
# cargo-zigbuild finds as `zig` on PATH or as `python3 -m ziglang`
# (`pip install ziglang`). The build then refuses binaries that need a GLIBC
# symbol version above 2.17. `cargo build --release` (development) is not
# affected: it links against the build host's glibc.
#
# Dependencies on glibc: the .deb's `libc6 (>= V)` and the .rpm's
# `libc.so.6(GLIBC_V)` both follow the highest GLIBC_ symbol version the
# binaries reference. rpm derives it from the symbols itself; for the .deb,
# dpkg-shlibdeps's other dependencies are kept, but its libc6 floor is
# replaced by that version, because Debian 12's libc6 symbols file lists
# `sysconf@GLIBC_2.2.5` as 2.34 (2.34's headers added `_SC_` constants an
# older glibc rejects with EINVAL; the constants Rust's std passes are all
# older), which would make the 2.17 binaries ask for libc6 2.34.
#
# How: every file is staged once in a tree; the .deb is that tree plus
# DEBIAN/ (control, conffiles, md5sums, maintainer scripts from deb/) built
# by `dpkg-deb --build --root-owner-group`; the .rpm is `rpmbuild -bb
# patchman-client.spec` copying the same tree. Nothing is compiled here but
# the SELinux module (the reference policy's development Makefile).
# rpmbuild runs with its database, temporary and top directories in a
# private directory, so the build host's rpm state (~/.rpmdb) is untouched.
#
# Needs: dpkg-deb and dpkg-shlibdeps (dpkg-dev), objdump (binutils),
# rpmbuild (rpm), make and /usr/share/selinux/devel/Makefile
# (selinux-policy-dev); without --bin-dir also cargo, cargo-zigbuild and
# Zig. Runs as any user.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
workspace=$(cd "$here/../.." && pwd)

usage() {
    sed -n '3,4p' "$0" | sed 's/^# *//' >&2
    exit 2
}
die() {
    echo "build.sh: $*" >&2
    exit 1
}

bin_dir=
want_deb=yes
want_rpm=yes
compress=xz
while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) [ $# -ge 2 ] || usage; bin_dir=$2; shift 2 ;;
        --bin-dir=*) bin_dir=${1#*=}; shift ;;
        --deb) want_rpm=no; shift ;;
        --rpm) want_deb=no; shift ;;
        --compress) [ $# -ge 2 ] || usage; compress=$2; shift 2 ;;
        --compress=*) compress=${1#*=}; shift ;;
        -h | --help) usage ;;
        --) shift; break ;;
        -*) echo "build.sh: unknown option $1" >&2; usage ;;
        *) break ;;
    esac
done
[ $# -eq 2 ] || usage
version=$1
outdir=$2
# The Rust target of the shipped binaries and their glibc symbol floor
# (tests/src/packages.rs's shipped_bin_dir() expects this directory).
shipped_target=x86_64-unknown-linux-gnu
glibc_floor=2.17
build_shipped=no
if [ -z "$bin_dir" ]; then
    build_shipped=yes
    bin_dir=${CARGO_TARGET_DIR:-$workspace/target}/$shipped_target/release
fi
case "$compress" in
    xz) rpm_payload=w6.xzdio ;;
    gzip) rpm_payload=w6.gzdio ;;
    *) die "--compress must be xz or gzip" ;;
esac

# [EPOCH:]UPSTREAM-RELEASE, characters both dpkg and rpm accept.
if ! printf '%s\n' "$version" | grep -Eq '^([0-9]+:)?[0-9][A-Za-z0-9.+~]*-[A-Za-z0-9.+~]+$'; then
    die "VERSION must be [EPOCH:]UPSTREAM-RELEASE (e.g. 1.7.0-1), not '$version'"
fi
case "$version" in
    *:*) epoch=${version%%:*}; evr=${version#*:} ;;
    *) epoch=; evr=$version ;;
esac
upstream=${evr%-*}
release=${evr##*-}

missing=
for c in dpkg-deb dpkg-shlibdeps objdump rpmbuild make install md5sum; do
    command -v "$c" >/dev/null 2>&1 || missing="$missing $c"
done
selinux_makefile=/usr/share/selinux/devel/Makefile
[ -f "$selinux_makefile" ] || missing="$missing $selinux_makefile"
[ -z "$missing" ] || die "missing:$missing (apt-get install dpkg-dev binutils rpm make selinux-policy-dev)"

# The highest GLIBC_x.y symbol version the binary $1 references.
glibc_needed() {
    objdump -T "$1" | sed -n 's/.*(GLIBC_\([0-9][0-9.]*\)).*/\1/p' | sort -uV | tail -n 1
}
# True when version $1 <= version $2 (dotted numbers).
version_le() {
    [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" = "$1" ]
}

if [ "$build_shipped" = yes ]; then
    command -v cargo >/dev/null 2>&1 || die "cargo is missing (the shipped binaries are built with cargo zigbuild)"
    cargo zigbuild --help >/dev/null 2>&1 ||
        die "cargo-zigbuild is missing: cargo install --locked cargo-zigbuild (or pass --bin-dir)"
    if ! command -v zig >/dev/null 2>&1 && ! python3 -m ziglang version >/dev/null 2>&1; then
        die "Zig is missing: pip install ziglang (cargo-zigbuild runs it as python3 -m ziglang)"
    fi
    (cd "$workspace" && cargo zigbuild --release --locked --target "$shipped_target.$glibc_floor" \
        -p patchman-helper -p patchman-agent) >&2 || die "cargo zigbuild failed"
fi
for b in patchman-helper patchman-agent; do
    [ -x "$bin_dir/$b" ] || die "no $bin_dir/$b: run 'cargo build --release --workspace' (or pass --bin-dir)"
done
# The glibc the binaries need: what the .deb's libc6 dependency says.
glibc_min=
for b in patchman-helper patchman-agent; do
    if [ "$(head -c 4 "$bin_dir/$b" | od -An -tx1 | tr -d ' \n')" != 7f454c46 ]; then
        # A test's stand-in (a broken release made of a script) under
        # --bin-dir: it sets no glibc floor. What ships is always ELF.
        [ "$build_shipped" = no ] || die "$bin_dir/$b is not an ELF binary"
        echo "build.sh: $bin_dir/$b is not an ELF binary: no glibc floor taken from it" >&2
        continue
    fi
    v=$(glibc_needed "$bin_dir/$b")
    [ -n "$v" ] || die "$bin_dir/$b references no GLIBC symbol version (not a glibc binary?)"
    if [ "$build_shipped" = yes ] && ! version_le "$v" "$glibc_floor"; then
        die "$bin_dir/$b needs GLIBC_$v, above the shipped floor $glibc_floor"
    fi
    if [ -z "$glibc_min" ] || ! version_le "$v" "$glibc_min"; then
        glibc_min=$v
    fi
done

[ -n "$glibc_min" ] || [ "$want_deb" = no ] ||
    die "neither binary in $bin_dir is an ELF binary: no glibc floor for the .deb"
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/patchman-package.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

# --- the SELinux module ---------------------------------------------------------
mkdir "$work/selinux"
cp "$workspace/selinux/patchman.te" "$workspace/selinux/patchman.if" \
    "$workspace/selinux/patchman.fc" "$work/selinux/"
(cd "$work/selinux" && make -f "$selinux_makefile" patchman.pp) >"$work/selinux.log" 2>&1 || {
    cat "$work/selinux.log" >&2
    die "the SELinux module does not build"
}

# --- the staged tree (the package's files) -------------------------------------------
root=$work/root
moduledir=$root/usr/share/selinux/packages/patchman
docdir=$root/usr/share/doc/patchman-client
install -d -m 0755 "$root/usr/sbin" "$root/usr/bin" "$root/usr/lib/systemd/system" \
    "$root/usr/lib/tmpfiles.d" "$root/etc/patchman" "$moduledir" "$docdir"
install -m 0755 "$bin_dir/patchman-helper" "$root/usr/sbin/patchman-helper"
install -m 0755 "$bin_dir/patchman-agent" "$root/usr/bin/patchman-agent"
for u in patchman-helper.socket patchman-helper.service patchman-agent.service \
    patchman-rollback.service patchman-rollback.timer; do
    install -m 0644 "$workspace/deploy/systemd/$u" "$root/usr/lib/systemd/system/$u"
done
install -m 0644 "$workspace/deploy/tmpfiles.d/patchman.conf" "$root/usr/lib/tmpfiles.d/patchman.conf"
install -m 0644 "$here/patchman.ini" "$root/etc/patchman/patchman.ini"
for f in patchman.te patchman.fc patchman.if patchman-connect.cil; do
    install -m 0644 "$workspace/selinux/$f" "$moduledir/$f"
done
install -m 0644 "$work/selinux/patchman.pp" "$moduledir/patchman.pp"
install -m 0644 "$workspace/README.md" "$docdir/README.md"
install -m 0644 "$workspace/docs/rollback.md" "$docdir/rollback.md"
install -m 0644 "$workspace/selinux/README.md" "$docdir/SELinux.md"
cat >"$docdir/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: patchman-client (patchman updater)

Files: *
License: MIT or Apache-2.0
 On Debian systems the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
chmod 0644 "$docdir/copyright"

# --- .deb ---------------------------------------------------------------------------
if [ "$want_deb" = yes ]; then
    arch=$(dpkg --print-architecture)
    debroot=$work/deb
    cp -a "$root" "$debroot"
    install -d -m 0755 "$debroot/DEBIAN"
    # Shared-library dependencies of the binaries, as dh_shlibdeps finds them.
    mkdir -p "$work/shlibs/debian"
    printf 'Source: patchman-client\n\nPackage: patchman-client\nArchitecture: any\n' \
        >"$work/shlibs/debian/control"
    shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O -e"$debroot/usr/sbin/patchman-helper" \
        -e"$debroot/usr/bin/patchman-agent" 2>"$work/shlibdeps.log") || {
        cat "$work/shlibdeps.log" >&2
        die "dpkg-shlibdeps failed"
    }
    shlibs=${shlibs#shlibs:Depends=}
    # libc6's floor from the symbol versions (see the top of this file).
    shlibs=$(printf '%s\n' "$shlibs" | sed "s/libc6 (>= [^)]*)/libc6 (>= $glibc_min)/")
    case "$shlibs" in
        *"libc6 (>= $glibc_min)"*) ;;
        *) die "dpkg-shlibdeps gave no libc6 dependency: $shlibs" ;;
    esac
    size=$(du -sk --exclude=DEBIAN "$debroot" | cut -f1)
    cat >"$debroot/DEBIAN/control" <<EOF
Package: patchman-client
Version: $version
Architecture: $arch
Maintainer: patchman maintainers <maintainers@patchman.example>
Installed-Size: $size
Depends: $shlibs, adduser
Section: admin
Priority: optional
Homepage: https://patchman.example/
Description: patchman updater: privilege-separated automatic updates
 Two processes keep patchman-client (and patchman-client-realtime, where it
 is installed) up to date. patchman-agent runs as the unprivileged system
 user patchman and decides when to update; patchman-helper runs as root, is
 started by its socket (patchman-helper.socket), and answers a few fixed
 requests from that user only, running the fixed apt/dpkg command lines of
 the update procedure.
 .
 Ships both binaries, their systemd units, a default
 /etc/patchman/patchman.ini and the SELinux module patchman (loaded where
 SELinux is enabled).
EOF
    echo /etc/patchman/patchman.ini >"$debroot/DEBIAN/conffiles"
    (cd "$debroot" && find . -path ./DEBIAN -prune -o -type f ! -path './etc/*' -print |
        sed 's|^\./||' | LC_ALL=C sort | xargs md5sum) >"$debroot/DEBIAN/md5sums"
    for s in preinst postinst prerm postrm; do
        install -m 0755 "$here/deb/$s" "$debroot/DEBIAN/$s"
    done
    chmod 0644 "$debroot/DEBIAN/control" "$debroot/DEBIAN/conffiles" "$debroot/DEBIAN/md5sums"
    deb=$outdir/patchman-client_${evr}_$arch.deb
    dpkg-deb --root-owner-group -Z"$compress" --build "$debroot" "$deb" >/dev/null
    echo "$deb"
fi

# --- .rpm ---------------------------------------------------------------------------
if [ "$want_rpm" = yes ]; then
    top=$work/rpm
    mkdir -p "$top/db" "$top/tmp" "$top/top" "$top/out" "$top/buildroot"
    set -- --define "_dbpath $top/db" --define "_tmppath $top/tmp" \
        --define "_topdir $top/top" --define "_rpmdir $top/out" \
        --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
        --define "_binary_payload $rpm_payload" \
        --define "stage $root" --define "pkg_version $upstream" \
        --define "pkg_release $release"
    if [ -n "$epoch" ]; then
        set -- "$@" --define "pkg_epoch $epoch"
    fi
    LC_ALL=C rpmbuild "$@" --quiet -bb "$here/patchman-client.spec" </dev/null \
        >"$work/rpmbuild.log" 2>&1 || {
        cat "$work/rpmbuild.log" >&2
        die "rpmbuild failed"
    }
    for f in "$top"/out/*.rpm; do
        [ -f "$f" ] || die "rpmbuild wrote no .rpm"
        mv "$f" "$outdir/"
        echo "$outdir/$(basename "$f")"
    done
fi
