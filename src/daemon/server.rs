//! The control socket: accepts clients, reads request lines, answers each with a reply line.
//!
//! Only root (or the daemon's own user) may talk to it: the socket is mode 0600 and the
//! peer's uid is checked (SO_PEERCRED). On Windows only elevated Administrators and SYSTEM:
//! the pipe's DACL, then the client's token (see `control::pipe`). A malformed line is answered with a `BadRequest`
//! error; the connection and the daemon stay up.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Arc;

use parking_lot::Mutex;

use super::events::EventHub;
use super::service::Service;
use crate::control::protocol::{ControlError, Reply, Request, MAX_LINE};
use crate::control::transport::{self, Listener, Peer};

/// How long a refused peer may take to send its request line before the daemon hangs up.
#[cfg(unix)]
const REFUSED_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves clients forever (one thread per client); `-Watch` clients get `events`' lines.
pub fn serve(listener: Listener, service: Arc<Mutex<Service>>, events: Arc<EventHub>) {
    let own = transport::own_uid();
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                // A refused peer must not hold a thread for long (see `refuse`).
                #[cfg(unix)]
                if !peer.is_allowed(own) {
                    if let Err(e) = stream.set_read_timeout(Some(REFUSED_READ_TIMEOUT)) {
                        tracing::debug!("cannot bound a refused client's read: {e}");
                    }
                }
                let (service, events) = (Arc::clone(&service), Arc::clone(&events));
                let spawned = std::thread::Builder::new()
                    .name("netnat-control".into())
                    .spawn(move || serve_client(stream, peer, own, &service, &events));
                if let Err(e) = spawned {
                    tracing::warn!("cannot start a control thread: {e}");
                }
            }
            Err(e) => {
                tracing::warn!("control socket accept failed: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}

fn serve_client<S: Read + Write>(stream: S, peer: Peer, own: Option<u32>, service: &Mutex<Service>, events: &EventHub) {
    let mut reader = BufReader::new(stream);
    if !peer.is_allowed(own) {
        refuse(&mut reader, &peer);
        return;
    }
    loop {
        let mut line = Vec::new();
        match reader.by_ref().take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!("control client read error: {e}");
                return;
            }
        }
        if line.len() > MAX_LINE {
            let reply = Reply::Error(ControlError::bad_request(format!("request longer than {MAX_LINE} bytes")));
            let _ = write_reply(reader.get_mut(), &reply);
            return;
        }
        if is_watch(&line) {
            watch(reader.get_mut(), events);
            return;
        }
        let reply = answer(&line, service);
        if write_reply(reader.get_mut(), &reply).is_err() {
            return;
        }
    }
}

/// Whether a request line is `Get-NetNatSession -Watch`.
fn is_watch(line: &[u8]) -> bool {
    matches!(serde_json::from_slice::<Request>(line), Ok(Request::GetNetNatSession { watch: true, .. }))
}

/// Streams every event line from now on to a `-Watch` client, after an `Ok` reply, until
/// it hangs up (the next write fails). Between events a keep-alive check every few seconds
/// notices a client that went away.
fn watch(stream: &mut impl Write, events: &EventHub) {
    tracing::info!("control request: Get-NetNatSession -Watch");
    let lines = events.subscribe();
    if write_reply(stream, &Reply::Ok { output: crate::control::protocol::Output::Nothing, warnings: vec![] }).is_err()
    {
        return;
    }
    loop {
        match lines.recv_timeout(std::time::Duration::from_secs(5)) {
            Ok(line) => {
                if stream.write_all(line.as_bytes()).and_then(|()| stream.flush()).is_err() {
                    return;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                // An empty line: clients skip it; a closed connection fails the write.
                if stream.write_all(b"\n").and_then(|()| stream.flush()).is_err() {
                    return;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Tells a refused peer why, then reads (and drops) its request line before closing.
///
/// The refusal goes first, so a client that reads before it writes gets it at once. The
/// request is read because closing before it arrives fails the client's write (EPIPE) and
/// it would never see the refusal waiting in its socket. The read is bounded in length
/// here and in time by `REFUSED_READ_TIMEOUT` (set in [`serve`], Unix; on Windows the
/// pipe's DACL already keeps such peers out).
fn refuse<S: Read + Write>(reader: &mut BufReader<S>, peer: &Peer) {
    let reply = Reply::Error(ControlError::denied(refusal(peer)));
    if write_reply(reader.get_mut(), &reply).is_err() {
        return;
    }
    let mut line = Vec::new();
    let _ = reader.by_ref().take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line);
}

/// What a refused peer is told: who it is and how to get in.
fn refusal(peer: &Peer) -> String {
    let mut text = peer.refusal();
    if peer.uid.is_some() {
        text.push_str(" (or with sudo)");
    }
    text
}

/// The reply to one request line.
pub fn answer(line: &[u8], service: &Mutex<Service>) -> Reply {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if text.is_empty() {
        return Reply::Error(ControlError::bad_request("empty line; send one JSON request per line"));
    }
    match serde_json::from_str::<Request>(text) {
        Ok(request) => {
            tracing::info!(?request, "control request");
            service.lock().handle(request)
        }
        Err(e) => Reply::Error(ControlError::bad_request(format!(
            "{e}; expected one JSON object per line such as {{\"cmdlet\":\"Get-NetNat\"}}"
        ))),
    }
}

fn write_reply(stream: &mut impl Write, reply: &Reply) -> std::io::Result<()> {
    let mut text = serde_json::to_string(reply).map_err(std::io::Error::other)?;
    text.push('\n');
    stream.write_all(text.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::clock::Clock;
    use crate::daemon::dataplane::Dataplane;
    use crate::state::State;

    fn service() -> Mutex<Service> {
        Mutex::new(
            Service::new(
                State::default(),
                None,
                Arc::new(Dataplane::new()),
                Clock::start(),
                crate::daemon::service::EngineSettings {
                    seed: 1,
                    limits: netnat_engine::Limits::default(),
                    host_nat_ports: (1024, 65535),
                    session_counters: false,
                },
                vec![],
                Box::new(|_, _| {}),
            )
            .unwrap(),
        )
    }

    #[cfg(unix)]
    #[test]
    fn a_refused_peer_is_told_why_first_and_its_request_is_read_before_the_close() {
        use std::os::unix::net::UnixStream;

        let (client, daemon) = UnixStream::pair().unwrap();
        let nobody = Peer { uid: Some(65534), administrator: false };
        let server =
            std::thread::spawn(move || serve_client(daemon, nobody, Some(0), &service(), &EventHub::default()));
        let mut reader = BufReader::new(client);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let Reply::Error(e) = serde_json::from_str::<Reply>(&line).unwrap() else { panic!("{line}") };
        let text = e.to_string();
        assert!(text.starts_with("permission denied: uid 65534") && text.contains("as root (or with sudo)"), "{text}");
        assert!(!text.contains("malformed"), "{text}");
        // The daemon waits for the request, so the client's write cannot meet a closed socket.
        assert!(!server.is_finished(), "the daemon hung up before the request came");
        reader.get_mut().write_all(b"{\"cmdlet\":\"Remove-NetNat\"}\n").unwrap();
        server.join().unwrap();
        // Nothing but the refusal: the request was not served.
        let mut rest = String::new();
        assert_eq!(reader.read_to_string(&mut rest).unwrap(), 0, "{rest}");
    }

    #[test]
    fn malformed_lines_get_an_error_reply() {
        let service = service();
        for bad in [&b"not json"[..], b"{\"cmdlet\":\"Nope\"}", b"", b"{\"cmdlet\":\"Get-NetNat\",\"x\":1}"] {
            match answer(bad, &service) {
                Reply::Error(e) => assert!(e.to_string().starts_with("malformed control request"), "{e}"),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(answer(br#"{"cmdlet":"Get-NetNat"}"#, &service), Reply::Ok { .. }));
    }
}
