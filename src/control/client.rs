//! The cmdlets' side of the control protocol: send one request, read one reply.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use anyhow::Context;

use super::protocol::{Reply, Request};
use super::transport;

#[cfg(not(windows))]
const NOT_RUNNING: &str = "is `netnat daemon` running? Start it (as root) with `netnat daemon`, or point to its socket with --socket PATH or NETNAT_SOCKET";
#[cfg(windows)]
const NOT_RUNNING: &str = "is `netnat daemon` running? Start it with `netnat daemon` in a prompt opened with \"Run as administrator\", or name its pipe with --socket NAME or NETNAT_SOCKET";

#[cfg(not(windows))]
const DENIED: &str = "the control socket is root-only: run the cmdlet as root (or with sudo)";
#[cfg(windows)]
const DENIED: &str = "the control pipe admits only Administrators and SYSTEM: run the cmdlet from a prompt opened with \"Run as administrator\"";

/// Sends `request` to the daemon at `socket` and returns its reply.
pub fn call(socket: &Path, request: &Request) -> anyhow::Result<Reply> {
    let stream = transport::connect(socket).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => NOT_RUNNING,
            std::io::ErrorKind::PermissionDenied => DENIED,
            _ => "check that the daemon is running and the socket path is right",
        };
        anyhow::anyhow!("cannot reach the netnat daemon at {}: {e}; {hint}", socket.display())
    })?;
    exchange(stream, request, &socket.display().to_string())
}

/// Sends a streaming `request` (`Get-NetNatSession -Watch`) and hands every line after the
/// daemon's first reply to `on_line` until the daemon hangs up. A refusal comes back as the
/// first reply, and is returned.
pub fn stream(socket: &Path, request: &Request, mut on_line: impl FnMut(&str)) -> anyhow::Result<Reply> {
    let stream = transport::connect(socket)
        .map_err(|e| anyhow::anyhow!("cannot reach the netnat daemon at {}: {e}; {NOT_RUNNING}", socket.display()))?;
    let mut line = serde_json::to_string(request).context("encoding the request")?;
    line.push('\n');
    let mut stream = stream;
    stream.write_all(line.as_bytes()).and_then(|()| stream.flush()).context("sending the request")?;
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    reader.read_line(&mut first).context("reading the daemon's reply")?;
    let reply: Reply = serde_json::from_str(&first)
        .with_context(|| format!("the daemon's reply is not valid: {}", first.trim_end()))?;
    if matches!(reply, Reply::Error(_)) {
        return Ok(reply);
    }
    for next in reader.lines() {
        let next = next.context("reading the daemon's events")?;
        if !next.is_empty() {
            on_line(&next);
        }
    }
    Ok(reply)
}

/// Writes `request` on `stream` and reads the reply; `socket` names the daemon in errors.
///
/// A daemon that refuses the peer may answer and hang up before the request is written:
/// the write then fails (e.g. "Broken pipe") but the refusal is waiting to be read, so a
/// reply is looked for even then, and shown rather than the write error.
fn exchange(mut stream: impl Read + Write, request: &Request, socket: &str) -> anyhow::Result<Reply> {
    let mut line = serde_json::to_string(request).context("encoding the request")?;
    line.push('\n');
    let sent = stream.write_all(line.as_bytes()).and_then(|()| stream.flush());
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    let read = reader.read_line(&mut answer);
    if !answer.is_empty() {
        return serde_json::from_str(&answer)
            .with_context(|| format!("the daemon's reply is not valid: {}", answer.trim_end()));
    }
    sent.with_context(|| format!("sending the request to {socket}"))?;
    read.with_context(|| format!("reading the daemon's reply on {socket}"))?;
    anyhow::bail!(
        "the netnat daemon at {socket} closed the connection without answering (see its log; only root or, on Windows, elevated Administrators may use it)"
    )
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::control::protocol::{ControlError, ErrorKind, Output};

    const REFUSAL: &str = "permission denied: uid 65534 may not manage the NAT; run the cmdlet as root";

    #[test]
    fn a_refusal_sent_before_the_request_is_shown_although_the_write_fails() {
        let (client, mut daemon) = UnixStream::pair().unwrap();
        let reply = Reply::Error(ControlError::denied(REFUSAL));
        daemon.write_all(format!("{}\n", serde_json::to_string(&reply).unwrap()).as_bytes()).unwrap();
        // The daemon hangs up without reading: the client's write fails with EPIPE.
        drop(daemon);
        let got = exchange(client, &Request::GetNetNatGlobal, "test.sock").unwrap();
        match got {
            Reply::Error(e) => {
                assert_eq!(e.kind, ErrorKind::BadRequest);
                assert_eq!(e.to_string(), REFUSAL);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_failed_write_without_a_reply_reports_the_write() {
        let (client, daemon) = UnixStream::pair().unwrap();
        drop(daemon);
        let err = exchange(client, &Request::GetNetNatGlobal, "test.sock").unwrap_err();
        assert!(format!("{err:#}").starts_with("sending the request to test.sock"), "{err:#}");
    }

    #[test]
    fn a_close_after_the_request_without_a_reply_says_so() {
        let (client, mut daemon) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            let mut line = String::new();
            BufReader::new(&mut daemon).read_line(&mut line).unwrap();
            line
        });
        let err = exchange(client, &Request::GetNetNatGlobal, "test.sock").unwrap_err();
        assert!(err.to_string().contains("closed the connection without answering"), "{err:#}");
        assert_eq!(server.join().unwrap(), "{\"cmdlet\":\"Get-NetNatGlobal\"}\n");
    }

    #[test]
    fn a_normal_exchange_returns_the_reply() {
        let (client, mut daemon) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            let mut line = String::new();
            BufReader::new(&mut daemon).read_line(&mut line).unwrap();
            let reply = Reply::Ok { output: Output::Nothing, warnings: vec![] };
            daemon.write_all(format!("{}\n", serde_json::to_string(&reply).unwrap()).as_bytes()).unwrap();
        });
        let got = exchange(client, &Request::GetNetNatSession { detailed: false, watch: false }, "test.sock").unwrap();
        assert_eq!(got, Reply::Ok { output: Output::Nothing, warnings: vec![] });
        server.join().unwrap();
    }
}
