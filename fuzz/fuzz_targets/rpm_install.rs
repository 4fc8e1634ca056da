#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use patchman_fuzz::tool_output;

// stdout and stderr of `rpm -U`, separated by a NUL in the input.
fuzz_target!(|data: &[u8]| {
    tool_output(
        data,
        &[Some(0), Some(1), Some(2), None],
        |code, stdout, stderr| {
            let _ = patchman_helper::parse::rpm_install::classify_install(code, stdout, stderr);
        },
    );
});
