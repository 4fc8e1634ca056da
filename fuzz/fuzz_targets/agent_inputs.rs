#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;

// What the agent reads from files others may write: the portal's
// server-group.json, its own state.json (after a crash), patchman.ini.
fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = patchman_agent::policy::parse_server_group(s);
        let _ = patchman_agent::state::State::parse(s);
        let _ = patchman_agent::config::parse(s);
    }
});
