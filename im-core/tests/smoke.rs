//! Smoke test: one ADSL Install and its duplicate through the public API.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;

#[test]
fn adsl_install_smoke() {
    let t = TestIm::new();
    let o = t.submit(form("F1", "19601").item(adsl_install("u1@x")));
    assert_eq!(o.error_code, im_core::ErrorCode::Success, "{o:?}");
    assert_eq!(o.items[0].port, "EX01-D1/0/1/0");
    let o2 = t.submit(form("F1", "19601").item(adsl_install("u1@x")));
    assert_eq!(o2.error_code.code(), -1003, "{o2:?}");
    println!("{o:?}");
}
