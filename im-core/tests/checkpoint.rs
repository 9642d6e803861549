//! The background checkpointer: accepted work orders survive a close and a
//! reopen, and the write-ahead log is copied back and emptied at close.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use im_core::{CoreConfig, ErrorCode, Im};

#[test]
fn background_checkpoint_keeps_every_order_and_empties_the_wal_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("im.db");
    let mut cfg = CoreConfig::new(&db);
    cfg.background_checkpoint = true;
    let im = Im::open(cfg.clone()).unwrap();
    im_core::demo::install_if_empty(&im).unwrap();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let o = im.submit_blocking(
            form(&format!("CK-{i}"), "19601").item(adsl_install(&format!("ck{i}@x"))),
        );
        assert_eq!(o.error_code, ErrorCode::Success, "{o:?}");
        tasks.push(o.task_no.unwrap());
    }
    im.close();
    drop(im);
    let wal = std::fs::metadata(dir.path().join("im.db-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert_eq!(wal, 0, "the WAL is checkpointed and truncated at close");

    let im = Im::open(cfg).unwrap();
    for (i, task) in tasks.iter().enumerate() {
        let o = im.submit_blocking(
            form(&format!("CK-{i}"), "19601").item(adsl_install(&format!("ck{i}@x"))),
        );
        assert_eq!(o.error_code, ErrorCode::DuplicateFlowId);
        assert_eq!(o.task_no.as_ref(), Some(task));
    }
}
