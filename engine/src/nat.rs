//! The engine: one NAT (one NetNat object) and its translation table.

use std::sync::Arc;

use crate::config::{ConfigError, NatConfig, Protocol};
use crate::filter::FilteringPolicy;
use crate::session::SessionInfo;
use crate::stats::Stats;
use crate::time::Instant;
use crate::verdict::{Direction, Verdict};

/// A fragment the engine held back (it came before its first fragment) and now releases,
/// translated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleasedPacket {
    /// How it crossed the NAT.
    pub direction: Direction,
    /// When it was handed to `handle_packet`.
    pub received: Instant,
    /// The translated packet.
    pub packet: Vec<u8>,
}

/// One NAT. Shared by reference between worker threads (`&self` everywhere; the table is
/// lock-sharded).
///
/// Call order: `handle_packet` for every IPv4 packet, then drain `poll_released`; call
/// `handle_timeout(now)` whenever `poll_timeout()` has passed. `now` must never go backwards.
#[derive(Debug)]
pub struct Nat {
    _todo: (),
}

impl Nat {
    /// A NAT with the given settings.
    pub fn new(config: NatConfig) -> Result<Nat, ConfigError> {
        config.validate()?;
        todo!()
    }

    /// Translates `packet` (an IPv4 packet, no link header) in place.
    pub fn handle_packet(&self, now: Instant, packet: &mut [u8]) -> Verdict {
        let _ = (now, packet);
        todo!()
    }

    /// The next held fragment that can now be sent, if any.
    pub fn poll_released(&self) -> Option<ReleasedPacket> {
        todo!()
    }

    /// Expires idle sessions and stale fragments.
    pub fn handle_timeout(&self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    /// The session table, one row per session (Get-NetNatSession).
    pub fn sessions(&self) -> Vec<SessionInfo> {
        todo!()
    }

    /// Number of live sessions.
    pub fn session_count(&self) -> usize {
        todo!()
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        todo!()
    }

    /// The settings in force.
    pub fn config(&self) -> Arc<NatConfig> {
        todo!()
    }

    /// Replaces the settings (Set-NetNat, Add/Remove-NetNatStaticMapping,
    /// Add/Remove-NetNatExternalAddress). Sessions survive unless their external address was
    /// removed or a new static mapping claims their external port.
    pub fn reconfigure(&self, config: NatConfig) -> Result<(), ConfigError> {
        let _ = config;
        todo!()
    }

    /// Replaces the filtering policy of TCP or UDP with a custom one; `None` goes back to the
    /// configured behaviour.
    pub fn set_filtering_policy(&self, protocol: Protocol, policy: Option<Arc<dyn FilteringPolicy>>) {
        let _ = (protocol, policy);
        todo!()
    }

    /// Drops every session (Remove-NetNat drops the NAT's connections).
    pub fn clear_sessions(&self) {
        todo!()
    }
}
