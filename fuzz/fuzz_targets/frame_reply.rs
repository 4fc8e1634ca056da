#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use patchman_helper::patchman_shared;

fuzz_target!(|data: &[u8]| patchman_fuzz::frame::<patchman_shared::Reply>(data));
