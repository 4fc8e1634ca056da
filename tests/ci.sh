#!/usr/bin/env bash
# The whole test suite, as CI runs it. Needs root on Debian/Ubuntu: it
# installs the system packages the tests use, then runs formatting, lints,
# supply-chain checks, the builds and every test. Nothing is skipped: a
# missing tool or privilege fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "tests/ci.sh must run as root (the tests start the helper and use mount namespaces)" >&2
    exit 1
fi

step "system packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# apt side: dpkg-dev (dpkg-deb), apt-utils (apt-ftparchive), gnupg;
# EL side: dnf, rpm (rpmbuild, rpmsign, rpmkeys), createrepo-c;
# binutils: objdump, for the shipped binaries' GLIBC symbol versions;
# debootstrap: the Debian 11/12/13 root file systems of the release tiers;
# units: systemd (systemd-analyze, systemd-socket-activate);
# systemd tier: systemd-container (systemd-nspawn), procps (pgrep);
# SELinux: the reference policy's devel Makefile, the policy and its
# sources (rpm module), the tools to link and query it.
apt-get install -y -qq --no-install-recommends \
    dpkg-dev apt-utils gnupg util-linux systemd python3 python3-pip coreutils ca-certificates binutils \
    debootstrap systemd-container procps \
    dnf rpm rpm-common createrepo-c \
    selinux-policy-dev selinux-policy-default selinux-policy-src policycoreutils \
    semodule-utils checkpolicy setools selinux-utils python3-selinux make bzip2 zstd \
    >/dev/null

step "cargo-deny"
if ! command -v cargo-deny >/dev/null 2>&1; then
    cargo install --locked cargo-deny
fi

step "Zig and cargo-zigbuild (the shipped binaries' glibc 2.17 floor)"
# cargo-zigbuild runs Zig as `python3 -m ziglang` when no `zig` is on PATH.
# The target x86_64-unknown-linux-gnu is the host's: no `rustup target add`.
# The versions measured with: ziglang 0.17.1, cargo-zigbuild 0.24.1.
if ! python3 -m ziglang version >/dev/null 2>&1; then
    python3 -m pip install ziglang==0.17.1 ||
        python3 -m pip install --break-system-packages ziglang==0.17.1
fi
python3 -m ziglang version
if ! cargo zigbuild --help >/dev/null 2>&1; then
    cargo install --locked cargo-zigbuild --version 0.24.1
fi

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo deny (licenses, bans, sources)"
cargo deny --locked check licenses bans sources

step "cargo deny (advisories)"
# Strict either way: any advisory fails, except those deny.toml ignores with
# their reason. Online first, with a short bound: cargo-deny fetches the
# RustSec database itself. Where GitHub cannot be reached, the snapshot
# beside the checkout (a git bundle of the database, one commit) is cloned
# where cargo-deny 0.20 keeps the default database, unless a copy at least as
# fresh is already there, and the check runs offline against it.
advisory_db="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/advisory-db-3157b0e258782691"
advisory_bundle=../shared/advisory-db.bundle
advisory_db_from_bundle() {
    if [ ! -f "$advisory_bundle" ]; then
        echo "the advisory database is unreachable and $advisory_bundle (the offline snapshot) is missing" >&2
        return 1
    fi
    local parent fresh bundle_date current_date=0
    parent=$(dirname "$advisory_db")
    mkdir -p "$parent"
    fresh=$(mktemp -d "$parent/bundle.XXXXXX")
    git -c init.defaultBranch=main clone -q --branch main "$advisory_bundle" "$fresh/db"
    # cargo-deny's online check fetches from the copy's origin: make that
    # upstream, so "fetched online" never means "fetched from the bundle".
    git -C "$fresh/db" remote set-url origin https://github.com/RustSec/advisory-db
    bundle_date=$(git -C "$fresh/db" log -1 --format=%ct)
    if [ -d "$advisory_db/.git" ]; then
        current_date=$(git -C "$advisory_db" log -1 --format=%ct 2>/dev/null || echo 0)
    fi
    if [ "$current_date" -ge "$bundle_date" ]; then
        echo "advisory database: keeping $advisory_db (committed $(date -u -d "@$current_date" +%F)), not older than the bundle"
    else
        rm -rf "$advisory_db"
        mv "$fresh/db" "$advisory_db"
        echo "advisory database: from the bundle (committed $(date -u -d "@$bundle_date" +%F))"
    fi
    rm -rf "$fresh"
}
online=0
timeout 60 cargo deny --locked check advisories 2>deny-advisories.log || online=$?
if [ "$online" -eq 0 ]; then
    rm -f deny-advisories.log
    echo "advisories ok (database fetched online)"
elif [ "$online" -eq 124 ] || grep -q "failed to fetch advisory database" deny-advisories.log; then
    rm -f deny-advisories.log
    echo "advisory database not fetched online; checking against the offline snapshot"
    advisory_db_from_bundle
    cargo deny --locked --offline check advisories
else
    cat deny-advisories.log >&2
    rm -f deny-advisories.log
    exit 1
fi

step "build (release: the interface; debug: what the tests run)"
cargo build --release --workspace --locked
test -x target/release/patchman-helper
test -x target/release/patchman-agent
cargo build --workspace --locked

step "packages: patchman-client .deb and .rpm, the shipped glibc-2.17 binaries"
# Builds target/x86_64-unknown-linux-gnu/release/patchman-{helper,agent}
# with cargo zigbuild first; the release tiers' tests package those.
time sh deploy/package/build.sh 0.1.0-1 target/packages
ls -l target/packages

step "root file systems of the release tiers (cached outside the checkout)"
# Built once per suite with debootstrap, then reused: see tests/rootfs.sh.
for suite in bullseye bookworm trixie; do
    time bash tests/rootfs.sh "$suite"
done

step "the main job: the sandbox demo (README's first command)"
cargo run --release --locked -p patchman-tests --bin sandbox

step "tests"
# Everything is built first; then the two tiers that mostly wait (a booted
# container's systemd, probation deadlines) run beside the others, each
# test binary still asserting on its own. Both halves must pass.
cargo test --workspace --locked --no-run
waiting_tiers="systemd rollback"
slow_log=target/ci-waiting-tiers.log
(
    args=()
    for t in $waiting_tiers; do args+=(--test "$t"); done
    cargo test --no-fail-fast --locked -p patchman-tests "${args[@]}" -- --test-threads=4
) >"$slow_log" 2>&1 &
slow_pid=$!
others=()
for f in tests/tests/*.rs; do
    t=$(basename "$f" .rs)
    case " $waiting_tiers " in *" $t "*) continue ;; esac
    others+=(--test "$t")
done
rc=0
cargo test --no-fail-fast --workspace --locked --exclude patchman-tests || rc=1
cargo test --no-fail-fast --locked -p patchman-tests --lib --bins "${others[@]}" || rc=1
slow_rc=0
wait "$slow_pid" || slow_rc=$?
echo "--- the waiting tiers ($waiting_tiers), run beside the others:"
cat "$slow_log"
if [ "$rc" -ne 0 ] || [ "$slow_rc" -ne 0 ]; then
    echo "tests failed" >&2
    exit 1
fi

step "systemd units: verify and exposure targets"
bash deploy/check-units.sh

step "SELinux module: build, link with the reference policy, check"
bash selinux/check.sh

step "fuzz smoke run (every target, 10 s each)"
bash fuzz/run.sh 10
