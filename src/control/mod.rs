//! The control plane shared by the daemon and the cmdlets: the NetNat objects, the
//! line-delimited JSON protocol, the transport (a root-only Unix socket, or on Windows a
//! named pipe for Administrators and SYSTEM), and the client.

// The live NAT runs on Linux and Windows; elsewhere these modules are compiled (and
// type-checked) but not called.
#![cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code, unused_imports))]

pub mod client;
pub mod objects;
#[cfg(any(windows, test))]
pub mod pipe;
pub mod protocol;
pub mod transport;
#[cfg(windows)]
mod transport_windows;

use std::path::PathBuf;

/// Where the daemon listens unless told otherwise.
#[cfg(not(windows))]
pub const DEFAULT_SOCKET: &str = "/run/netnat/netnat.sock";

/// Where the daemon listens unless told otherwise.
#[cfg(windows)]
pub const DEFAULT_SOCKET: &str = pipe::DEFAULT_PIPE;

/// The environment variable that names the socket (the `--socket` option wins over it).
pub const SOCKET_ENV: &str = "NETNAT_SOCKET";

/// The socket path from `--socket`, else `NETNAT_SOCKET`, else the default. On Windows it
/// is a pipe path: a bare name such as `netnat2` means `\\.\pipe\netnat2`.
pub fn socket_path(option: Option<PathBuf>) -> PathBuf {
    let path = option
        .or_else(|| std::env::var_os(SOCKET_ENV).filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    #[cfg(windows)]
    let path = PathBuf::from(pipe::pipe_path(&path.to_string_lossy()));
    path
}
