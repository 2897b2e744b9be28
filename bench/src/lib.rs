//! Shared helpers for the netnat benches.
