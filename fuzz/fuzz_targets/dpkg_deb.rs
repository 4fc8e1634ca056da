#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use patchman_fuzz::tool_output;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = patchman_helper::parse::dpkg_deb::parse_fields(s);
    }
    // stdout and stderr of `dpkg -i`, separated by a NUL in the input.
    tool_output(
        data,
        &[Some(0), Some(1), Some(2), None],
        |code, stdout, stderr| {
            let _ = patchman_helper::parse::dpkg_deb::classify_install(code, stdout, stderr);
        },
    );
});
