#!/bin/sh
# Checks the systemd units in deploy/systemd/:
#   1. systemd-analyze verify is clean: exit 0 and not one line of output
#      (verify exits 0 on unknown keys and unparsable values, it only prints
#      them, so any output is a failure here);
#   2. systemd-analyze security --offline=true: overall exposure of
#      patchman-agent.service <= 0.5 and of patchman-helper.service <= 4.5.
# Exits non-zero if either fails.
#
# Needs only the systemd package (systemd-analyze; tested with systemd 252 on
# Debian 12), coreutils, sed and awk. Runs as any user, needs no running
# systemd (not PID 1 is fine), changes nothing outside a temporary directory.
#
# Why a temporary root for verify: verify refuses a unit whose Exec*= binary
# does not exist ("Command /usr/sbin/patchman-helper is not executable"),
# and the binaries are not installed where CI runs. --root=DIR makes verify
# resolve both the executables and every unit ours refer to (sysinit.target,
# sockets.target, ...) inside DIR; so DIR gets a copy of the host's
# /usr/lib/systemd/system, our units, and stub executables at the paths the
# units name. --man=no: Documentation= is not checked against man pages
# (CI images carry none).
#
# Usage: deploy/check-units.sh [UNIT_DIR]   (default: deploy/systemd beside
# this script)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
units=${1:-$here/systemd}
agent_max=0.5
helper_max=4.5

command -v systemd-analyze >/dev/null 2>&1 || {
    echo "check-units: systemd-analyze not found (package systemd)" >&2
    exit 2
}
ours="patchman-helper.socket patchman-helper.service patchman-agent.service
    patchman-rollback.service patchman-rollback.timer"
for u in $ours; do
    [ -f "$units/$u" ] || { echo "check-units: missing $units/$u" >&2; exit 2; }
done

root=$(mktemp -d "${TMPDIR:-/tmp}/check-units.XXXXXX")
trap 'rm -rf "$root"' EXIT INT TERM
fail=0

# --- 1. verify -----------------------------------------------------------------
sysunits=/usr/lib/systemd/system
[ -d "$sysunits" ] || sysunits=/lib/systemd/system
mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system"
cp -a "$sysunits" "$root/usr/lib/systemd/system"
ln -s usr/bin "$root/bin"
ln -s usr/sbin "$root/sbin"
for u in $ours; do cp "$units/$u" "$root/usr/lib/systemd/system/"; done
# A stub at every absolute path an Exec*= line of our units names (the
# leading -@:+! prefixes stripped); /bin and /sbin are links into /usr.
(cd "$units" && sed -n 's/^Exec[A-Za-z]*=[-@:+!]*\(\/[^ ]*\).*/\1/p' $ours) | sort -u | while read -r exe; do
    case $exe in
        /bin/* | /sbin/*) exe=/usr$exe ;;
    esac
    mkdir -p "$root$(dirname "$exe")"
    [ -e "$root$exe" ] || printf '#!/bin/sh\nexit 0\n' >"$root$exe"
    chmod 0755 "$root$exe"
done

echo "== systemd-analyze verify --man=no --root=<temp root> (systemd $(systemd-analyze --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p'))"
out=$(cd "$root/usr/lib/systemd/system" && systemd-analyze verify --man=no --root="$root" \
    $(for u in $ours; do echo "$root/usr/lib/systemd/system/$u"; done) 2>&1) && rc=0 || rc=$?
if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
    printf '%s\n' "$out" | sed "s|$root||g"
    echo "FAIL verify (exit $rc, output above)"
    fail=1
else
    echo "ok   verify: clean (exit 0, no output)"
fi

# --- 2. exposure -----------------------------------------------------------------
# Prints the overall exposure of a unit file, e.g. 0.3.
exposure() {
    systemd-analyze security --offline=true --no-pager "$1" 2>&1 |
        sed -n 's/.*Overall exposure level for [^:]*: \([0-9][0-9.]*\).*/\1/p'
}

check_exposure() { # unit max
    score=$(exposure "$units/$1")
    if [ -z "$score" ]; then
        systemd-analyze security --offline=true --no-pager "$units/$1" 2>&1 | tail -n 20
        echo "FAIL $1: no exposure level in systemd-analyze's output"
        fail=1
    elif awk -v s="$score" -v m="$2" 'BEGIN { exit !(s + 0 <= m + 0) }'; then
        echo "ok   $1: exposure $score (target <= $2)"
    else
        systemd-analyze security --offline=true --no-pager "$units/$1" 2>&1 | grep '✗' || true
        echo "FAIL $1: exposure $score, target <= $2"
        fail=1
    fi
}

echo "== systemd-analyze security --offline=true"
check_exposure patchman-agent.service "$agent_max"
check_exposure patchman-helper.service "$helper_max"

exit "$fail"
