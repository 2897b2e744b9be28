//! Session events: mappings and sessions created and deleted, and the limits that refused a
//! new one, as values the caller drains ([`crate::Nat::drain_events`]), like released
//! fragments: the engine does no I/O. They are what a NAT log needs for abuse tracing (RFC
//! 6888 REQ-12) and what IPFIX NAT logging carries (RFC 8158).
//!
//! Off unless asked for ([`crate::Nat::set_events`]); on, they are made only where a
//! mapping or session is created or deleted or a limit refuses one (the slow paths and the
//! sweep): an established packet never makes one. The queue is bounded
//! ([`MAX_QUEUED_EVENTS`]); events beyond it are counted as lost, never block the packet.

use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::config::Protocol;
use crate::time::Instant;
use crate::verdict::DropReason;

/// Events held at most between two drains.
pub const MAX_QUEUED_EVENTS: usize = 1 << 16;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A mapping (internal endpoint -> external endpoint; RFC 8158's NAT44 BIB entry) was
    /// created, with its first session.
    MappingCreated,
    /// A mapping was deleted (its last session went, or the NAT was reconfigured or removed).
    MappingDeleted(EndReason),
    /// A session (one remote of a mapping; a Get-NetNatSession row) was created.
    SessionCreated,
    /// A session was deleted.
    SessionDeleted(EndReason),
    /// A new mapping found no free external port (`ports_exhausted`).
    PortsExhausted,
    /// A limit refused a new session (`session_limit`, `host_session_limit`,
    /// `inbound_session_limit`).
    LimitReached(DropReason),
}

/// Why a session or mapping ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// Idle beyond its timeout (UDP, ICMP, TCP established or transient).
    IdleTimeout,
    /// A TCP session closed by FIN or RST, whose transient timer then ran out.
    TcpClosed,
    /// Removed by a change of the NAT's configuration, or with the NAT (Remove-NetNat).
    Removed,
}

impl EndReason {
    /// The reason's name in event logs.
    pub fn name(self) -> &'static str {
        match self {
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::TcpClosed => "tcp_closed",
            EndReason::Removed => "removed",
        }
    }
}

/// One event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    /// When: the packet's time, or the `handle_timeout` time for expiries (so up to one
    /// sweep step after the session's last packet plus its timeout).
    pub time: Instant,
    /// What happened.
    pub kind: EventKind,
    /// TCP, UDP or ICMP.
    pub protocol: Protocol,
    /// The internal endpoint (ICMP: the query identifier as the port).
    pub internal: SocketAddrV4,
    /// The mapping's external endpoint; `None` when no mapping was made (ports exhausted, a
    /// limit before the mapping existed).
    pub external: Option<SocketAddrV4>,
    /// The remote endpoint; `None` for mapping events.
    pub remote: Option<SocketAddrV4>,
}

/// The bounded queue events wait in until drained.
#[derive(Debug, Default)]
pub(crate) struct EventQueue {
    enabled: AtomicBool,
    queue: Mutex<Vec<Event>>,
    lost: AtomicU64,
    /// The latest time an event or a timer call carried (microseconds): the time of events
    /// from calls that take none (reconfiguration, clearing the sessions).
    latest: AtomicU64,
}

impl EventQueue {
    pub(crate) fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Queues the event `make` builds, if events are on (`make` runs only then).
    #[inline]
    pub(crate) fn emit(&self, make: impl FnOnce() -> Event) {
        if self.enabled() {
            self.push(make());
        }
    }

    /// Notes the time of a timer call (for `latest`), if events are on.
    pub(crate) fn advance(&self, now: Instant) {
        if self.enabled() {
            self.latest.fetch_max(now.as_micros(), Ordering::Relaxed);
        }
    }

    /// The latest time seen (see `latest`).
    pub(crate) fn latest(&self) -> Instant {
        Instant::from_micros(self.latest.load(Ordering::Relaxed))
    }

    #[cold]
    fn push(&self, e: Event) {
        self.latest.fetch_max(e.time.as_micros(), Ordering::Relaxed);
        let mut q = self.queue.lock();
        if q.len() < MAX_QUEUED_EVENTS {
            q.push(e);
        } else {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn drain(&self, into: &mut Vec<Event>) {
        into.append(&mut self.queue.lock());
    }

    pub(crate) fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}
