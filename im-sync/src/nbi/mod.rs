//! The Matrix/eMatrix northbound interface (NBI).
