#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use patchman_fuzz::tool_output;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = patchman_helper::parse::rpmkeys::nokey_ids(s);
    }
    tool_output(data, &[Some(0), Some(1), None], |code, stdout, stderr| {
        let _ = patchman_helper::parse::rpmkeys::parse_checksig("/x/p.rpm", code, stdout, stderr);
    });
});
