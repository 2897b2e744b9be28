//! Packet views over byte buffers, one file per header, with in-place rewrites that update
//! checksums incrementally (RFC 1624).
//!
//! Why our own views rather than etherparse/pnet on the hot path: the engine needs exactly
//! five fields and two in-place rewrites with incremental checksum updates; these functions are
//! a few loads and stores with no allocation or re-serialisation. etherparse is the independent
//! parser the tests check our output with.

pub mod checksum;
pub mod icmp;
pub mod ipv4;
pub mod tcp;
pub mod udp;
