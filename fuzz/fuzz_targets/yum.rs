#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use patchman_fuzz::tool_output;

fuzz_target!(|data: &[u8]| {
    tool_output(data, &[Some(0), Some(1), None], |code, stdout, stderr| {
        let _ = patchman_helper::parse::yum::classify_download(code, stdout, stderr);
    });
});
