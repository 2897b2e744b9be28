//! The cmdlets' side of the control protocol: send one request, read one reply.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::Context;

use super::protocol::{Reply, Request};
use super::transport;

#[cfg(not(windows))]
const NOT_RUNNING: &str = "is `netnat daemon` running? Start it (as root) with `netnat daemon`, or point to its socket with --socket PATH or NETNAT_SOCKET";
#[cfg(windows)]
const NOT_RUNNING: &str = "is `netnat daemon` running? Start it with `netnat daemon` in a prompt opened with \"Run as administrator\", or name its pipe with --socket NAME or NETNAT_SOCKET";

#[cfg(not(windows))]
const DENIED: &str = "the control socket is root-only: run the cmdlet as root (sudo)";
#[cfg(windows)]
const DENIED: &str = "the control pipe admits only Administrators and SYSTEM: run the cmdlet from a prompt opened with \"Run as administrator\"";

/// Sends `request` to the daemon at `socket` and returns its reply.
pub fn call(socket: &Path, request: &Request) -> anyhow::Result<Reply> {
    let mut stream = transport::connect(socket).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => NOT_RUNNING,
            std::io::ErrorKind::PermissionDenied => DENIED,
            _ => "check that the daemon is running and the socket path is right",
        };
        anyhow::anyhow!("cannot reach the netnat daemon at {}: {e}; {hint}", socket.display())
    })?;
    let mut line = serde_json::to_string(request).context("encoding the request")?;
    line.push('\n');
    stream.write_all(line.as_bytes()).with_context(|| format!("sending the request to {}", socket.display()))?;
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    reader.read_line(&mut answer).with_context(|| format!("reading the daemon's reply on {}", socket.display()))?;
    if answer.is_empty() {
        anyhow::bail!(
            "the netnat daemon at {} closed the connection without answering (see its log; only root or, on Windows, elevated Administrators may use it)",
            socket.display()
        );
    }
    serde_json::from_str(&answer).with_context(|| format!("the daemon's reply is not valid: {}", answer.trim_end()))
}
