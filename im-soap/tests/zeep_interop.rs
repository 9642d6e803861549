//! Interop with a real third-party SOAP client: Python zeep reads the
//! WSDL and calls the service (an accepted call, then a duplicate).
//!
//! Needs `IM_PYTHON` pointing at a Python with zeep installed (`.ci/run`
//! creates one). Without it the test fails under CI (`CI` set) and is
//! skipped with a message otherwise.

mod common;

use std::process::Command;

#[test]
fn zeep_reads_the_wsdl_and_calls_the_service() {
    let Some(python) = std::env::var_os("IM_PYTHON") else {
        if std::env::var_os("CI").is_some() {
            panic!("IM_PYTHON is not set: CI must provide a Python with zeep installed");
        }
        eprintln!("skipped: IM_PYTHON not set (point it at a Python with zeep installed)");
        return;
    };
    let server = common::TestServer::start(|_| {});
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/zeep_interop.py");
    let wsdl = format!("{}?wsdl", server.url());
    let out = Command::new(&python)
        .arg(script)
        .arg(&wsdl)
        .output()
        .expect("run the zeep script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "zeep interop failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("zeep interop: OK"), "{stdout}\n{stderr}");
    assert!(stdout.contains("errorCode=-1003"), "{stdout}");
    assert!(stdout.contains("duplicateContent=SAME"), "{stdout}");
}
