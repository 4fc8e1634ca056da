#!/usr/bin/python3
"""Checks the rules that matter on a compiled, linked policy (policy.NN).

Called by selinux/check.sh with the policy file built from the reference
policy plus our module. Every decision below is computed by libsepol on the
binary policy (selinux.audit2why.analyze: type enforcement, roles, users,
constraints), the same computation the kernel makes; the rule listings come
from setools. Nothing here reads our .te source.

Exit status 0 when every check passes, 1 otherwise.
"""

import sys

import selinux.audit2why as av
import setools

AGENT = "patchman_agent_t"
HELPER = "patchman_helper_t"

policy_path = sys.argv[1]
policy = setools.SELinuxPolicy(policy_path)
av.init(policy_path)

RESULT = {
    getattr(av, n): n
    for n in ("ALLOW", "DONTAUDIT", "TERULE", "BOOLEAN", "CONSTRAINT", "RBAC", "BOUNDS",
              "NOPOLICY", "BADSCON", "BADTCON", "BADTCLASS", "BADPERM", "BADCOMPUTE")
    if hasattr(av, n)
}
failures = 0


def report(ok, what, detail=""):
    global failures
    if not ok:
        failures += 1
    print("%s %s%s" % ("ok  " if ok else "FAIL", what, (": " + detail) if detail else ""))


def types():
    return {str(t) for t in policy.types()}


TYPES = types()

# A valid context for each type that some role may have, for the subjects.
ROLE_OF = {}
USER_OF = {}
for role in policy.roles():
    for t in role.types():
        ROLE_OF.setdefault(str(t), []).append(str(role))
for user in policy.users():
    for role in user.roles:
        USER_OF.setdefault(str(role), str(user))


def subject(t):
    """A valid context for domain t, preferring system_r, or None."""
    roles = sorted(ROLE_OF.get(t, []), key=lambda r: (r != "system_r", r))
    for r in roles:
        if r in USER_OF:
            return "%s:%s:%s:s0" % ("system_u" if r == "system_r" else USER_OF[r], r, t)
    return None


def obj(t):
    return "system_u:object_r:%s:s0" % t


def decide(scon, tcon, tclass, perms):
    r = av.analyze(scon, tcon, tclass, perms)
    return RESULT.get(r[0], str(r[0])), (r[1] if len(r) > 1 and r[1] else "")


def allowed(scon, tcon, tclass, perms):
    return decide(scon, tcon, tclass, perms)[0] == "ALLOW"


for t in (AGENT, HELPER, "patchman_agent_exec_t", "patchman_helper_exec_t",
          "patchman_helper_var_run_t", "patchman_agent_var_lib_t",
          "patchman_helper_cache_t", "patchman_conf_t", "patchman_helper_var_lib_t",
          "patchman_helper_rescue_t", "patchman_helper_rescue_exec_t"):
    report(t in TYPES, "type %s is in the policy" % t)

agent = subject(AGENT)
helper = subject(HELPER)
report(agent == "system_u:system_r:%s:s0" % AGENT, "the agent runs as system_r", str(agent))
report(helper == "system_u:system_r:%s:s0" % HELPER, "the helper runs as system_r", str(helper))
helper_sock = "system_u:system_r:%s:s0" % HELPER  # the listening socket's label
print()

# --- The socket: the agent, and nobody else --------------------------------
print("## connectto %s (the helper's listening socket)" % HELPER)
result, why = decide(agent, helper_sock, "unix_stream_socket", ["connectto"])
report(result == "ALLOW", "%s may connectto" % AGENT, result)
report(allowed(agent, obj("patchman_helper_var_run_t"), "sock_file", ["write"]),
       "%s may write the socket file" % AGENT)
domains = sorted(str(t) for t in policy.lookup_typeattr("domain").expand())
allowed_by_te = sorted(
    {str(s) for r in setools.TERuleQuery(policy, ruletype=["allow"], tclass=["unix_stream_socket"],
                                          perms=["connectto"], target=HELPER).results()
     for s in (r.source.expand() if hasattr(r.source, "expand") else [r.source])})
print("     domains with a TE allow rule for it: %s" % " ".join(allowed_by_te))
others, no_role, refused = [], [], {}
for d in domains:
    if d == AGENT:
        continue
    scon = subject(d)
    if scon is None:
        no_role.append(d)
        continue
    result, why = decide(scon, helper_sock, "unix_stream_socket", ["connectto"])
    if result == "ALLOW":
        others.append(d)
    else:
        refused.setdefault(result, []).append(d)
for result, ds in sorted(refused.items()):
    named = [d for d in ds if d in allowed_by_te or d in ("unconfined_t", "user_t", "staff_t", "sysadm_t")]
    print("     refused (%s): %d domains, among them %s" % (result, len(ds), " ".join(named)))
report(not others, "no other domain of %d may connectto (each decided with its own valid context)"
       % (len(domains) - 1), " ".join(others))
if no_role:
    print("     (%d domain types are in no role and cannot run at all)" % len(no_role))
print()

# --- The agent executes no package manager, writes no package state --------
print("## %s" % AGENT)
for t in ("rpm_exec_t", "dpkg_exec_t", "apt_exec_t", "bin_t", "shell_exec_t"):
    if t not in TYPES:
        report(False, "type %s is in the policy" % t)
        continue
    for perm in ("execute", "execute_no_trans"):
        r, _ = decide(agent, obj(t), "file", [perm])
        report(r != "ALLOW", "may not %s %s" % (perm, t), r)
for d in ("rpm_t", "dpkg_t", "apt_t", "rpm_script_t", "dpkg_script_t"):
    r, _ = decide(agent, "system_u:system_r:%s:s0" % d, "process", ["transition"])
    report(r != "ALLOW", "may not transition to %s" % d, r)
state = ("dpkg_var_lib_t", "dpkg_lock_t", "apt_var_lib_t", "apt_var_cache_t", "apt_lock_t",
         "rpm_var_lib_t", "rpm_var_cache_t", "rpm_log_t")
for t in state:
    if t not in TYPES:
        report(False, "type %s is in the policy" % t)
        continue
    bad = [p for p in ("write", "append", "create", "unlink", "rename", "setattr")
           if allowed(agent, obj(t), "file", [p])]
    bad += ["dir:" + p for p in ("write", "add_name", "remove_name")
            if allowed(agent, obj(t), "dir", [p])]
    report(not bad, "may not write %s" % t, " ".join(bad))
r, _ = decide(agent, obj("patchman_helper_cache_t"), "file", ["read"])
report(r != "ALLOW", "may not read the helper's downloads", r)
report(allowed(agent, obj("patchman_agent_var_lib_t"), "file", ["write", "create", "rename"]),
       "may write its state (patchman_agent_var_lib_t)")
report(allowed(agent, obj("patchman_conf_t"), "file", ["read", "open"]),
       "may read patchman_conf_t (patchman.ini, server-group.json)")
# Its switches are root's: it may not change server-group.json or patchman.ini
# in place, replace them by a rename, or add and remove names in /etc/patchman.
bad = [p for p in ("write", "append", "create", "unlink", "rename", "setattr", "link",
                   "relabelfrom", "relabelto")
       if allowed(agent, obj("patchman_conf_t"), "file", [p])]
bad += ["dir:" + p for p in ("write", "add_name", "remove_name", "setattr", "rmdir", "reparent")
        if allowed(agent, obj("patchman_conf_t"), "dir", [p])]
report(not bad, "may not write patchman_conf_t (server-group.json) or /etc/patchman",
       " ".join(bad))
bad = [p for p in ("write", "append", "create", "unlink", "rename")
       if allowed(agent, obj("etc_t"), "file", [p])]
bad += ["dir:" + p for p in ("write", "add_name", "remove_name")
        if allowed(agent, obj("etc_t"), "dir", [p])]
report(not bad, "may not write etc_t (so not place a file in /etc)", " ".join(bad))
# Narrowed: what it does not need to read.
for t, why in (("sysctl_kernel_t", "the kernel sysctls (/proc/sys/kernel)"),
               ("sysctl_t", "/proc/sys"),
               ("shadow_t", "/etc/shadow"),
               ("rpm_var_lib_t", "the rpm database"),
               ("dpkg_var_lib_t", "the dpkg database"),
               ("apt_var_lib_t", "apt's lists"),
               ("user_home_t", "home directories")):
    if t not in TYPES:
        report(False, "type %s is in the policy" % t)
        continue
    r, _ = decide(agent, obj(t), "file", ["read"])
    report(r != "ALLOW", "may not read %s (%s)" % (t, why), r)
# What it needs to read, and only read.
for t, why in (("etc_t", "/etc/machine-id, which has no type of its own"),
               ("system_dbusd_var_lib_t", "/var/lib/dbus/machine-id"),
               ("proc_t", "/proc/self/status")):
    report(allowed(agent, obj(t), "file", ["read", "open"]), "may read %s (%s)" % (t, why))
report(allowed(agent, obj("patchman_agent_exec_t"), "file", ["execute", "execute_no_trans"]),
       "may re-execute its own binary")
caps = [str(r) for r in setools.TERuleQuery(policy, ruletype=["allow"], source=AGENT,
                                             tclass=["capability", "cap_userns"]).results()]
report(not caps, "holds no capability", "; ".join(caps))
print()

# --- The helper transitions into the package managers' domains ------------
print("## %s" % HELPER)
for exe, dom in (("rpm_exec_t", "rpm_t"), ("dpkg_exec_t", "dpkg_t"), ("apt_exec_t", "apt_t")):
    rules = [str(r) for r in setools.TERuleQuery(policy, ruletype=["type_transition"], source=HELPER,
                                                  target=exe, tclass=["process"]).results()]
    report(any(str(r.default) == dom for r in setools.TERuleQuery(
        policy, ruletype=["type_transition"], source=HELPER, target=exe, tclass=["process"]).results()),
        "type_transition %s %s:process %s" % (HELPER, exe, dom), "; ".join(rules))
    dcon = "system_u:system_r:%s:s0" % dom
    report(allowed(helper, dcon, "process", ["transition"]),
           "may transition to %s (role system_r allows %s)" % (dom, dom))
    report(allowed(helper, obj(exe), "file", ["execute"]), "may execute %s" % exe)
    report(allowed(dcon, obj(exe), "file", ["entrypoint"]), "%s is the entrypoint of %s" % (exe, dom))
    r, _ = decide(helper, obj(exe), "file", ["execute_no_trans"])
    report(r != "ALLOW", "never runs %s in its own domain" % exe, r)
report(allowed("system_u:system_r:rpm_t:s0", obj("patchman_helper_cache_t"), "file", ["create", "write"]),
       "rpm_t (dnf --downloaddir) may write the private download dir")
report(allowed("system_u:system_r:dpkg_t:s0", obj("patchman_helper_cache_t"), "file", ["read", "open"]),
       "dpkg_t (dpkg -i) may read the private download dir")
report(allowed("system_u:system_r:init_t:s0", helper_sock, "unix_stream_socket",
               ["create", "bind", "listen"]),
       "systemd (init_t) may create the helper's socket (socket activation)")
report(allowed(helper, "system_u:system_r:init_t:s0", "fd", ["use"]), "the helper may use systemd's fd 3")
report(allowed(helper, obj("patchman_helper_var_run_t"), "sock_file", ["create", "unlink"]),
       "the helper may create/remove the socket itself (--socket)")
# Only the helper, of our domains, enters a package manager's domain.
for src in (AGENT,):
    rules = [str(r) for r in setools.TERuleQuery(policy, ruletype=["type_transition"], source=src,
                                                  tclass=["process"]).results()]
    report(not rules, "no type_transition out of %s" % src, "; ".join(rules))

print()

# --- The rollback (docs/rollback.md) ----------------------------------------
print("## the rollback: /var/lib/patchman-helper and the rescue helper")
INIT = "system_u:system_r:init_t:s0"
STATE, RESCUE_DIR, RESCUE = "patchman_helper_var_lib_t", "patchman_helper_rescue_t", "patchman_helper_rescue_exec_t"
FILE_PERMS = ("getattr", "open", "read", "write", "append", "create", "unlink", "rename", "setattr",
              "lock", "ioctl", "map", "execute", "execute_no_trans", "link", "relabelfrom", "relabelto")
DIR_PERMS = ("getattr", "search", "open", "read", "write", "add_name", "remove_name", "create", "rmdir",
             "setattr", "rename", "reparent", "relabelfrom", "relabelto")
for tclass, t, perms in (("dir", STATE, DIR_PERMS), ("file", STATE, FILE_PERMS),
                         ("dir", RESCUE_DIR, DIR_PERMS), ("file", RESCUE, FILE_PERMS)):
    bad = [p for p in perms if allowed(agent, obj(t), tclass, [p])]
    report(not bad, "%s may do nothing to %s %s" % (AGENT, t, tclass), " ".join(bad))
report(allowed(helper, obj("var_lib_t"), "dir", ["search", "write", "add_name"]),
       "the helper may create /var/lib/patchman-helper in /var/lib")
report(allowed(helper, obj(STATE), "dir", ["create", "search", "read", "open", "write", "add_name",
                                           "remove_name", "rmdir", "setattr"]),
       "the helper may manage its state directories (kept/)")
report(allowed(helper, obj(STATE), "file", ["create", "open", "read", "write", "rename", "unlink",
                                            "setattr", "lock", "getattr"]),
       "the helper may manage its state files (probation, history, lock, kept/*)")
report(allowed(helper, obj(RESCUE_DIR), "dir", ["create", "search", "read", "open", "write",
                                                "add_name", "remove_name"]),
       "the helper may make and write the rescue directory")
report(allowed(helper, obj(RESCUE), "file", ["create", "open", "write", "setattr", "rename",
                                             "unlink", "getattr", "read"]),
       "the helper may write the rescue copy (temporary name, rename)")
report(allowed(helper, helper, "lnk_file", ["read"]), "the helper may read its /proc/self/exe link")
report(allowed(helper, obj("patchman_helper_exec_t"), "file", ["open", "read"]),
       "the helper may read its running image (patchman_helper_exec_t)")
bad = [p for p in ("write", "append", "create", "unlink", "rename", "setattr")
       if allowed(helper, obj("patchman_helper_exec_t"), "file", [p])]
report(not bad, "the helper may not write the packaged patchman_helper_exec_t", " ".join(bad))
# execute (and map) it holds, as every domain does on its entry points (the
# kernel maps the image into the new process); running it needs
# execute_no_trans or a transition, and it has neither.
r, _ = decide(helper, obj(RESCUE), "file", ["execute_no_trans"])
report(r != "ALLOW", "the helper may not execute_no_trans the rescue copy", r)
rules = [str(r) for r in setools.TERuleQuery(policy, ruletype=["type_transition"], source=HELPER,
                                             target=RESCUE, tclass=["process"]).results()]
report(not rules, "no type_transition %s %s:process" % (HELPER, RESCUE), "; ".join(rules))
# The rules the helper's file creation gets, as the kernel picks them.
for src_t, tclass, name, want in (("var_lib_t", "dir", "patchman-helper", STATE),
                                  (STATE, "dir", "rescue", RESCUE_DIR),
                                  (RESCUE_DIR, "file", None, RESCUE)):
    rules = [r for r in setools.TERuleQuery(policy, ruletype=["type_transition"], source=HELPER,
                                            target=src_t, tclass=[tclass]).results()
             if str(r.default) == want and (getattr(r, "filename", None) or None) == name]
    report(bool(rules), "a %s the helper creates in %s%s is %s" % (
        tclass, src_t, (' named "%s"' % name) if name else " (any name)", want))
# systemd runs the rescue helper in the helper's domain.
rules = [r for r in setools.TERuleQuery(policy, ruletype=["type_transition"], source="init_t",
                                        target=RESCUE, tclass=["process"]).results()]
report(any(str(r.default) == HELPER for r in rules),
       "type_transition init_t %s:process %s" % (RESCUE, HELPER), "; ".join(str(r) for r in rules))
report(allowed(INIT, obj(RESCUE), "file", ["execute", "open", "read"]), "init_t may execute the rescue copy")
report(allowed(INIT, helper, "process", ["transition"]), "init_t may transition to %s" % HELPER)
report(allowed(helper, obj(RESCUE), "file", ["entrypoint"]), "%s is an entry point of %s" % (RESCUE, HELPER))
report(allowed(INIT, obj(STATE), "file", ["getattr"]),
       "init_t may stat the probation record (ConditionPathExists=)")
report(allowed(INIT, obj(STATE), "dir", ["search", "write", "remove_name"])
       and allowed(INIT, obj(STATE), "file", ["unlink"]),
       "init_t may remove the rolled-back marker (ExecStartPost=)")
# Every other domain, each with its own valid context (TE, roles, and the
# constraints of patchman-connect.cil): nobody else executes or writes it.
for perms, who in ((["execute"], ("init_t", HELPER)), (["execute_no_trans"], ("init_t", HELPER)),
                   (["write"], (HELPER,)), (["append"], (HELPER,))):
    others, checked = [], 0
    for d in domains:
        scon = subject(d)
        if scon is None or d in who:
            continue
        checked += 1
        if allowed(scon, obj(RESCUE), "file", perms):
            others.append(d)
    report(not others, "no other domain of %d may %s the rescue copy" % (checked, perms[0]),
           " ".join(others))
for d in ("unconfined_t", "dpkg_t", "dpkg_script_t", "rpm_script_t", "sysadm_t"):
    if d in TYPES:
        r, why = decide(subject(d) or "system_u:system_r:%s:s0" % d, obj(RESCUE), "file", ["execute"])
        print("     %s execute: %s" % (d, r))

print()
print("%s: %d failure(s)" % ("FAIL" if failures else "PASS", failures))
sys.exit(1 if failures else 0)
