//! Packet views over byte buffers, one file per header, with in-place rewrites that update
//! checksums incrementally (RFC 1624).
//!
//! Panic contract: once a view's `new_checked` succeeds, no accessor panics.

pub mod checksum;
pub mod ipv4;
