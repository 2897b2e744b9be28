//! Session events as JSON lines, one object per line, for `netnat replay --events FILE`,
//! `netnat daemon --event-log FILE` and `Get-NetNatSession -Watch`:
//!
//! ```json
//! {"time":"2026-12-03T10:00:01.000000Z","nat":"WinNAT","event":"session_created","protocol":"udp","internal":"10.100.10.11:5000","external":"203.0.113.1:40123","remote":"198.51.100.7:53"}
//! {"time":"2026-12-03T10:02:05.000000Z","nat":"WinNAT","event":"session_deleted","reason":"idle_timeout","protocol":"udp","internal":"10.100.10.11:5000","external":"203.0.113.1:40123","remote":"198.51.100.7:53"}
//! ```
//!
//! `event` is one of `mapping_created`, `mapping_deleted`, `session_created`,
//! `session_deleted`, `ports_exhausted`, `limit_reached`; `reason` says why a mapping or
//! session was deleted (`idle_timeout`, `tcp_closed`, `removed`) or which limit refused a new
//! one (`session_limit`, `host_session_limit`, `inbound_session_limit`). `external` is absent
//! where no mapping was made, `remote` for mapping events. The file also holds its rotation:
//! [`RotatingLog`].

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use netnat_engine::{Event, EventKind, Protocol};
use serde::{Deserialize, Serialize};

/// One event as a JSON line's object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLine {
    /// When, RFC 3339 UTC with microseconds.
    pub time: String,
    /// NatName.
    pub nat: String,
    /// What happened (see the module doc).
    pub event: String,
    /// Why a mapping or session ended, or the limit that refused one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `tcp`, `udp` or `icmp`.
    pub protocol: String,
    /// The internal endpoint, `ADDRESS:PORT` (ICMP: the query identifier as the port).
    pub internal: String,
    /// The mapping's external endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<String>,
    /// The remote endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

impl EventLine {
    /// The line of `event` of NAT `nat`, at `time` (RFC 3339).
    pub fn new(nat: &str, time: String, event: &Event) -> EventLine {
        let (name, reason) = names(event.kind);
        EventLine {
            time,
            nat: nat.to_owned(),
            event: name.to_owned(),
            reason: reason.map(str::to_owned),
            protocol: protocol_name(event.protocol).to_owned(),
            internal: event.internal.to_string(),
            external: event.external.map(|e| e.to_string()),
            remote: event.remote.map(|e| e.to_string()),
        }
    }

    /// As one line of JSON, with its newline.
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).expect("an event line serialises");
        s.push('\n');
        s
    }
}

/// The names of an event kind and its reason.
pub fn names(kind: EventKind) -> (&'static str, Option<&'static str>) {
    match kind {
        EventKind::MappingCreated => ("mapping_created", None),
        EventKind::MappingDeleted(r) => ("mapping_deleted", Some(r.name())),
        EventKind::SessionCreated => ("session_created", None),
        EventKind::SessionDeleted(r) => ("session_deleted", Some(r.name())),
        EventKind::PortsExhausted => ("ports_exhausted", None),
        EventKind::LimitReached(r) => ("limit_reached", Some(r.name())),
    }
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Icmp => "icmp",
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// An append-only log file that rotates by size: when a write would take it past `max_bytes`,
/// `FILE` becomes `FILE.1` (`FILE.1` becomes `FILE.2`, ..., up to `keep` old files; the
/// oldest is deleted) and a new `FILE` starts. Whole lines only: a line is never split across
/// files. Created 0600 (events name internal hosts and whom they talk to).
#[derive(Debug)]
pub struct RotatingLog {
    path: PathBuf,
    file: File,
    len: u64,
    max_bytes: u64,
    keep: u32,
}

impl RotatingLog {
    /// Opens (appends to) `path`.
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> io::Result<RotatingLog> {
        let file = open_append(path)?;
        let len = file.metadata()?.len();
        Ok(RotatingLog { path: path.to_owned(), file, len, max_bytes: max_bytes.max(1), keep })
    }

    /// Appends `line` (rotating first if it would not fit).
    pub fn write_line(&mut self, line: &str) -> io::Result<()> {
        if self.len > 0 && self.len + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line.as_bytes())?;
        self.len += line.len() as u64;
        Ok(())
    }

    /// Pushes what was written to the OS.
    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    /// The `n`-th old file (`FILE.n`).
    pub fn rotated(path: &Path, n: u32) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.sync_all()?;
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                let from = Self::rotated(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, Self::rotated(&self.path, n + 1))?;
                }
            }
            std::fs::rename(&self.path, Self::rotated(&self.path, 1))?;
        }
        self.file = open_append(&self.path)?;
        self.len = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddrV4;

    use netnat_engine::{DropReason, EndReason, Instant};

    use super::*;

    fn event(kind: EventKind) -> Event {
        Event {
            time: Instant::from_secs(1),
            kind,
            protocol: Protocol::Udp,
            internal: "10.100.10.11:5000".parse().unwrap(),
            external: Some("203.0.113.1:40123".parse().unwrap()),
            remote: Some("198.51.100.7:53".parse::<SocketAddrV4>().unwrap()),
        }
    }

    #[test]
    fn lines_name_the_event_its_reason_and_the_three_endpoints() {
        let line = EventLine::new(
            "WinNAT",
            "2026-12-03T10:00:01.000000Z".into(),
            &event(EventKind::SessionDeleted(EndReason::IdleTimeout)),
        );
        assert_eq!(
            line.to_line(),
            "{\"time\":\"2026-12-03T10:00:01.000000Z\",\"nat\":\"WinNAT\",\"event\":\"session_deleted\",\"reason\":\"idle_timeout\",\
             \"protocol\":\"udp\",\"internal\":\"10.100.10.11:5000\",\"external\":\"203.0.113.1:40123\",\"remote\":\"198.51.100.7:53\"}\n"
        );
        let mut e = event(EventKind::LimitReached(DropReason::HostSessionLimit));
        e.external = None;
        let line = EventLine::new("WinNAT", "t".into(), &e);
        assert_eq!((line.event.as_str(), line.reason.as_deref()), ("limit_reached", Some("host_session_limit")));
        assert!(!line.to_line().contains("external"), "no mapping, no external");
        let back: EventLine = serde_json::from_str(&line.to_line()).unwrap();
        assert_eq!(back, line);
    }

    #[test]
    fn the_log_rotates_whole_lines_and_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut log = RotatingLog::open(&path, 100, 2).unwrap();
        let lines: Vec<String> = (0..10).map(|i| format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(20))).collect();
        for l in &lines {
            log.write_line(l).unwrap();
        }
        log.flush().unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let (now, one, two) =
            (read(&path), read(&RotatingLog::rotated(&path, 1)), read(&RotatingLog::rotated(&path, 2)));
        assert!(!RotatingLog::rotated(&path, 3).exists(), "two old files kept");
        for f in [&now, &one, &two] {
            assert!(f.len() as u64 <= 100 && f.ends_with('\n'), "whole lines within the size: {f:?}");
        }
        // The newest lines, in order, with nothing lost inside what is kept.
        let kept: String = [two, one, now].concat();
        assert!(lines.concat().ends_with(&kept), "the kept files are the last lines in order");
        assert!(kept.contains(&lines[9]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // Reopened, it appends.
        let before = std::fs::metadata(&path).unwrap().len();
        RotatingLog::open(&path, 100, 2).unwrap().write_line("{}\n").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), before + 3);
    }
}
