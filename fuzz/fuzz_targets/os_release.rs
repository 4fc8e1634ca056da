#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let os = patchman_helper::os_release::parse_os_release(s);
        let _ = patchman_helper::os_release::family_from_os_release(&os);
        let _ = patchman_helper::os_release::family_from_redhat_release(s);
    }
});
