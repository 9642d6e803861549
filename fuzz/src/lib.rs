//! Fuzz harnesses of IM's wire code (see `docs/fuzzing.md`). The modules
//! are plain Rust shared with the proptest properties of the workspace.

pub mod nbi;
pub mod soap;
