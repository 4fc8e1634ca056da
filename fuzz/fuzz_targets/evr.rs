#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use patchman_helper::patchman_shared;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(e) = patchman_shared::Evr::parse(s) {
            // What parses must print back to something that parses the same.
            assert_eq!(patchman_shared::Evr::parse(&e.to_string()).as_ref(), Ok(&e));
            let _ = patchman_shared::version::deb::compare(&e, &e);
        }
    }
});
