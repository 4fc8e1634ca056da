#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let (stdout, stderr) = s.split_once('\0').unwrap_or((s, ""));
        let _ = patchman_helper::parse::rpmkeys::nokey_ids(s);
        for code in [Some(0), Some(1), None] {
            let _ =
                patchman_helper::parse::rpmkeys::parse_checksig("/x/p.rpm", code, stdout, stderr);
        }
    }
});
