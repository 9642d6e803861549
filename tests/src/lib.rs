//! End-to-end tests across IM's crates live in `tests/tests/`; this library
//! is empty.
