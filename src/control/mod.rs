//! The control plane shared by the daemon and the cmdlets: the NetNat objects, the
//! line-delimited JSON protocol, the transport (a root-only Unix socket), and the client.

// The live NAT runs on Linux only for now; elsewhere these modules are compiled (and
// type-checked) but not yet called.
#![cfg_attr(not(target_os = "linux"), allow(dead_code, unused_imports))]

pub mod client;
pub mod objects;
pub mod protocol;
pub mod transport;

use std::path::PathBuf;

/// Where the daemon listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/netnat/netnat.sock";

/// The environment variable that names the socket (the `--socket` option wins over it).
pub const SOCKET_ENV: &str = "NETNAT_SOCKET";

/// The socket path from `--socket`, else `NETNAT_SOCKET`, else the default.
pub fn socket_path(option: Option<PathBuf>) -> PathBuf {
    option
        .or_else(|| std::env::var_os(SOCKET_ENV).filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}
