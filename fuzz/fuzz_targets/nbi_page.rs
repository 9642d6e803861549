//! Bytes through the NBI page parser (default and tight limits): a page or
//! an error, never a panic; rows read are written back by the simulators'
//! writer and read back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = im_fuzz::nbi::check_page(data) {
        panic!("{e}");
    }
});
