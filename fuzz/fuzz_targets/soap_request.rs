//! Bytes and a `Content-Type` (chosen by the first byte) through the SOAP
//! request path up to the core's writer: a Fault, an error code or a call
//! ready to submit — never a panic — and every answer written as plain
//! ASCII and read back as written.
#![no_main]

use im_fuzz::soap::{CONTENT_TYPES, check_request, test_secrets};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static SECRETS: OnceLock<im_core::secrets::Secrets> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some((&choice, body)) = data.split_first() else {
        return;
    };
    let ct = CONTENT_TYPES[usize::from(choice) % CONTENT_TYPES.len()];
    let secrets = SECRETS.get_or_init(test_secrets);
    if let Err(e) = check_request(body, ct, &im_soap::Limits::default(), secrets) {
        panic!("{e}");
    }
});
