#!/bin/sh
# Builds the patchman SELinux module and checks the rules that matter on a
# real linked policy. Exits non-zero on any failure.
#
#   1. make -f /usr/share/selinux/devel/Makefile patchman.pp   (the
#      reference policy's development Makefile, as the outside check does);
#   2. rpm.pp from the reference policy source: Debian's policy has no rpm
#      module (no rpm_t, rpm_exec_t), built from the same refpolicy release
#      with the same Makefile, so the EL rules are checked too;
#   3. a private policy store in a temporary root (semodule -p ROOT -n):
#      every module Debian ships (selinux-policy-default), rpm.pp,
#      patchman.pp and patchman-connect.cil, linked and expanded into a
#      kernel policy ROOT/etc/selinux/default/policy/policy.NN. The host's
#      SELinux store and state are not touched; SELinux need not be enabled;
#   4. checks on that binary policy: sesearch listings, file contexts
#      (matchpathcon -f), and selinux/check-policy.py, which asks libsepol
#      for the access decision (TE + RBAC + constraints) of each case.
#
# Runs as root (semodule insists) on Debian 12. Needs the packages:
#   selinux-policy-dev selinux-policy-default selinux-policy-src
#   policycoreutils semodule-utils checkpolicy setools selinux-utils
#   python3-selinux make bzip2 zstd
set -eu

here=$(cd "$(dirname "$0")" && pwd)
devel=/usr/share/selinux/devel/Makefile
modules=/usr/share/selinux/default
refsrc=/usr/src/selinux-policy-src.tar.zst
py=/usr/bin/python3

missing=
for f in "$devel" "$refsrc" "$modules/base.pp.bz2"; do
    [ -e "$f" ] || missing="$missing $f"
done
for c in make checkmodule semodule sesearch matchpathcon bunzip2 zstd tar; do
    command -v "$c" >/dev/null 2>&1 || missing="$missing $c"
done
"$py" -c 'import setools, selinux.audit2why' 2>/dev/null || missing="$missing python3:setools,selinux.audit2why"
if [ -n "$missing" ]; then
    echo "selinux/check.sh: missing:$missing" >&2
    echo "  apt-get install selinux-policy-dev selinux-policy-default selinux-policy-src policycoreutils semodule-utils checkpolicy setools selinux-utils python3-selinux make bzip2 zstd" >&2
    exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/patchman-selinux.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
fail=0

# --- 1. our module ---------------------------------------------------------------
echo "== make -f $devel patchman.pp"
mkdir "$work/patchman"
cp "$here/patchman.te" "$here/patchman.if" "$here/patchman.fc" "$work/patchman/"
if ! (cd "$work/patchman" && make -f "$devel" patchman.pp) >"$work/make.log" 2>&1; then
    cat "$work/make.log"
    echo "FAIL patchman.pp does not build"
    exit 1
fi
cat "$work/make.log"
echo "ok   patchman.pp built ($(wc -c <"$work/patchman/patchman.pp") bytes)"

# --- 2. rpm.pp from the reference policy source -------------------------------------
mkdir "$work/rpm"
tar -I zstd -xf "$refsrc" -C "$work/rpm" --strip-components=4 \
    selinux-policy-src/policy/modules/admin/rpm.te \
    selinux-policy-src/policy/modules/admin/rpm.fc
(cd "$work/rpm" && make -f "$devel" rpm.pp) >"$work/rpm.log" 2>&1 || {
    cat "$work/rpm.log"
    echo "FAIL rpm.pp (reference policy source) does not build"
    exit 1
}

# --- 3. a private store, and the linked policy ---------------------------------------
root=$work/root
mkdir -p "$root/etc/selinux/default" "$root/var/lib/selinux" "$work/mods"
printf 'SELINUX=permissive\nSELINUXTYPE=default\n' >"$root/etc/selinux/config"
cp /etc/selinux/semanage.conf "$root/etc/selinux/" 2>/dev/null || true
for m in "$modules"/*.pp.bz2; do
    bunzip2 -c "$m" >"$work/mods/$(basename "$m" .bz2)"
done
echo "== semodule -p <temp root> -s default -n -i <$(ls "$work/mods" | wc -l) Debian modules> rpm.pp patchman.pp patchman-connect.cil"
if ! semodule -p "$root" -s default -n -i "$work"/mods/*.pp "$work/rpm/rpm.pp" \
    "$work/patchman/patchman.pp" "$here/patchman-connect.cil" >"$work/semodule.log" 2>&1; then
    cat "$work/semodule.log"
    echo "FAIL the policy with patchman does not link"
    exit 1
fi
# (libsemanage mentions users of other modules' home dirs, e.g. sddm: noise.)
grep -v 'not in password file' "$work/semodule.log" || true
policy=$(ls "$root"/etc/selinux/default/policy/policy.* | head -n 1)
echo "ok   linked: $(basename "$policy"), $(semodule -p "$root" -s default -l | wc -l) modules"

# --- 4. checks ------------------------------------------------------------------------
# expect_transitions LISTING RULE...: each RULE, "<source> <target>:<class>
# <new type>[ <file name>];", is a line "type_transition RULE" of LISTING
# (what sesearch -T printed).
expect_transitions() {
    listing=$1
    shift
    for rule in "$@"; do
        if echo "$listing" | grep -q "^type_transition $rule"; then
            echo "ok   type_transition $rule"
        else
            echo "FAIL no type_transition $rule"
            fail=1
        fi
    done
}

echo
echo "== sesearch on the linked policy"
echo "-- allow * patchman_helper_t:unix_stream_socket connectto (TE rules; the constraint is applied below)"
sesearch -A -t patchman_helper_t -c unix_stream_socket -p connectto "$policy"
echo "-- type_transition patchman_helper_t *:process"
out=$(sesearch -T -s patchman_helper_t -c process "$policy")
echo "$out"
expect_transitions "$out" \
    'patchman_helper_t rpm_exec_t:process rpm_t;' \
    'patchman_helper_t dpkg_exec_t:process dpkg_t;' \
    'patchman_helper_t apt_exec_t:process apt_t;'
echo "-- type_transition init_t patchman_helper_rescue_exec_t:process (patchman-rollback.service)"
out=$(sesearch -T -s init_t -t patchman_helper_rescue_exec_t -c process "$policy")
echo "$out"
expect_transitions "$out" 'init_t patchman_helper_rescue_exec_t:process patchman_helper_t;'
echo "-- type_transition patchman_helper_t *:{dir,file} in its state directory"
out=$(for t in var_lib_t patchman_helper_var_lib_t patchman_helper_rescue_t; do
    sesearch -T -s patchman_helper_t -t "$t" "$policy"
done)
echo "$out"
expect_transitions "$out" \
    'patchman_helper_t var_lib_t:dir patchman_helper_var_lib_t patchman-helper;' \
    'patchman_helper_t patchman_helper_var_lib_t:dir patchman_helper_rescue_t rescue;' \
    'patchman_helper_t patchman_helper_rescue_t:file patchman_helper_rescue_exec_t;'
echo "-- allow patchman_agent_t *:file execute"
out=$(sesearch -A -s patchman_agent_t -c file -p execute "$policy")
echo "$out"
if echo "$out" | grep -Eq ' (rpm_exec_t|dpkg_exec_t|apt_exec_t|bin_t|shell_exec_t|exec_type):'; then
    echo "FAIL the agent may execute a package manager or a program"
    fail=1
else
    echo "ok   the agent executes only its own binary (and the loader and libraries)"
fi
echo "-- type_transition patchman_agent_t *:process"
out=$(sesearch -T -s patchman_agent_t -c process "$policy")
if [ -n "$out" ]; then
    echo "$out"
    echo "FAIL the agent has a domain transition"
    fail=1
else
    echo "ok   none"
fi

echo
echo "== file contexts (matchpathcon -f <linked file_contexts>)"
fc=$root/etc/selinux/default/contexts/files/file_contexts
for want in \
    /usr/bin/patchman-agent=patchman_agent_exec_t \
    /usr/sbin/patchman-helper=patchman_helper_exec_t \
    /etc/patchman/patchman.ini=patchman_conf_t \
    /etc/patchman/server-group.json=patchman_conf_t \
    /var/lib/patchman/state.json=patchman_agent_var_lib_t \
    /var/cache/patchman-helper/run-1-0=patchman_helper_cache_t \
    /var/lib/patchman-helper=patchman_helper_var_lib_t \
    /var/lib/patchman-helper/probation=patchman_helper_var_lib_t \
    /var/lib/patchman-helper/lock=patchman_helper_var_lib_t \
    /var/lib/patchman-helper/kept/manifest.json=patchman_helper_var_lib_t \
    /var/lib/patchman-helper/rescue=patchman_helper_rescue_t \
    /var/lib/patchman-helper/rescue/patchman-helper=patchman_helper_rescue_exec_t \
    /var/lib/patchman-helper/rescue/.patchman-helper.tmp-1=patchman_helper_rescue_exec_t \
    /run/patchman=patchman_helper_var_run_t \
    /run/patchman/helper.sock=patchman_helper_var_run_t; do
    path=${want%%=*}
    got=$(matchpathcon -f "$fc" "$path" | awk '{ print $2 }' | cut -d: -f3)
    if [ "$got" = "${want#*=}" ]; then
        echo "ok   $path $got"
    else
        echo "FAIL $path is $got, want ${want#*=}"
        fail=1
    fi
done

echo
echo "== access decisions computed by libsepol on $(basename "$policy") (check-policy.py)"
"$py" "$here/check-policy.py" "$policy" 2>"$work/py.err" || fail=1
# libsepol prints a line for each context it refuses to build: noise.
grep -v '^libsepol\.' "$work/py.err" >&2 || true

echo
if [ "$fail" -eq 0 ]; then
    echo "selinux/check.sh: PASS"
else
    echo "selinux/check.sh: FAIL"
fi
exit "$fail"
