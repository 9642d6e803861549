//! Shared helpers of the im-core integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use im_core::{CoreConfig, Form, FormItem, Im, Outcome};
use std::path::PathBuf;

/// A core on a fresh SQLite file in a temporary directory, with the demo inventory.
pub struct TestIm {
    pub im: Im,
    pub dir: tempfile::TempDir,
}

impl TestIm {
    pub fn new() -> TestIm {
        let dir = tempfile::tempdir().unwrap();
        let im = Im::open(CoreConfig::new(dir.path().join("im.db"))).unwrap();
        assert!(im_core::demo::install_if_empty(&im).unwrap());
        TestIm { im, dir }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("im.db")
    }

    pub fn submit(&self, form: Form) -> Outcome {
        self.im.submit_blocking(form)
    }

    /// Opens the database read-only for assertions.
    pub fn sql(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(self.db_path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.sql().query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

/// A form with the demo OM credentials, a flowId and a popid.
pub fn form(flow: &str, popid: &str) -> Form {
    Form::default()
        .field("authusername", im_core::demo::DEMO_OM_USER)
        .field("authpassword", im_core::demo::DEMO_OM_PASSWORD)
        .field("flowId", flow)
        .field("popid", popid)
}

/// An item with opertype, coverType, serviceType and UserName.
pub fn item(op: &str, cover: &str, service: &str, user: &str) -> FormItem {
    FormItem::default()
        .field("opertype", op)
        .field("coverType", cover)
        .field("serviceType", service)
        .field("UserName", user)
}

/// An ADSL Install at EX01 (popid 19601), port auto-picked.
pub fn adsl_install(user: &str) -> FormItem {
    item("Install", "ADSL", "ADSL", user)
        .field("AccountNumber", format!("ACC-{user}"))
        .field("CustomerName", "Ahmed Hassan")
        .field("Password", "pppoe-secret-1")
        .attr("ExchangeID", "EX01")
        .attr("Speed", "16M")
}

/// An FTTH Install for compound CP01 (popid 19601).
pub fn ftth_install(user: &str, ont: &str) -> FormItem {
    item("Install", "FTTH", "FTTH", user)
        .field("AccountNumber", format!("ACC-{user}"))
        .field("CustomerName", "Mona")
        .attr("CompoundId", "CP01")
        .attr("ONTSN", ont)
        .attr("Speed", "100M")
}
