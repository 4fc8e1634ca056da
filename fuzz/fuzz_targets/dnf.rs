#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let (stdout, stderr) = s.split_once('\0').unwrap_or((s, ""));
        for code in [Some(0), Some(1), None] {
            let _ = patchman_helper::parse::dnf::classify_download(code, stdout, stderr);
        }
    }
});
