//! Inbound filtering (RFC 4787 §5, RFC 5382 §4.3) as a trait, so users can plug in their own
//! policy. The engine asks the policy once per inbound packet that reaches an existing
//! dynamic mapping from a remote without a live session on it; static mappings are governed
//! by their RemoteExternalIPAddressPrefix instead. Policy files are compiled into this trait
//! by [`crate::policy`].

use core::fmt::Debug;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::config::{FilteringBehavior, Protocol, Timeouts};
use crate::table::{Session, Sessions};
use crate::time::Instant;
use crate::verdict::DropReason;

/// What a filtering policy sees of an inbound packet and the mapping it is addressed to.
#[derive(Debug)]
pub struct InboundContext<'a> {
    /// The time of the packet.
    pub now: Instant,
    /// TCP or UDP (ICMP echo replies are always address-dependent).
    pub protocol: Protocol,
    /// The remote endpoint that sent the packet.
    pub remote: SocketAddrV4,
    /// The internal endpoint the mapping belongs to.
    pub internal: SocketAddrV4,
    /// The mapping's external endpoint (the packet's destination).
    pub external: SocketAddrV4,
    /// Whether the packet would open a new session (the remote has no live session yet);
    /// TCP policies may want to look at SYN too, so the flags are given.
    pub new_session: bool,
    /// TCP flags of the packet (0 for UDP).
    pub tcp_flags: u8,
    /// The mapping's sessions, asked about the remotes the internal endpoint has sent to.
    pub(crate) contacted: Contacted<'a>,
}

impl InboundContext<'_> {
    /// Whether the internal endpoint has sent to this address (any port) in a live session.
    /// Costs the sessions with remotes at that address, not a walk of the mapping.
    pub fn has_sent_to_address(&self, address: Ipv4Addr) -> bool {
        let c = &self.contacted;
        c.sessions.at_address(address.into()).any(|s| c.counts(s))
    }

    /// Whether the internal endpoint has sent to exactly this (address, port) in a live session.
    pub fn has_sent_to_endpoint(&self, endpoint: SocketAddrV4) -> bool {
        let c = &self.contacted;
        c.sessions.find((*endpoint.ip()).into(), endpoint.port()).is_some_and(|s| c.counts(s))
    }

    /// The remote endpoints the internal endpoint has live outbound sessions with. A walk of
    /// the mapping's sessions (up to the per-host cap): a policy that calls it on every
    /// packet lets one outside sender make every packet cost that walk.
    pub fn contacted(&self) -> impl Iterator<Item = SocketAddrV4> + '_ {
        let c = &self.contacted;
        c.sessions.iter().filter(|s| c.counts(s)).map(|s| SocketAddrV4::new(s.remote_addr.into(), s.remote_port))
    }
}

/// What a filtering policy sees of an outbound packet that would create a mapping (an
/// internal endpoint's first packet, TCP or UDP).
#[derive(Clone, Copy, Debug)]
pub struct OutboundContext {
    /// The time of the packet.
    pub now: Instant,
    /// TCP or UDP (ICMP queries are not asked about).
    pub protocol: Protocol,
    /// The internal endpoint that would get a mapping.
    pub internal: SocketAddrV4,
    /// The remote it sends to.
    pub remote: SocketAddrV4,
    /// TCP flags of the packet (0 for UDP).
    pub tcp_flags: u8,
}

/// The sessions of the mapping an inbound packet is addressed to, with what tells a live
/// outbound one (the internal endpoint sent on it, and it has not expired).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Contacted<'a> {
    pub(crate) sessions: &'a Sessions,
    pub(crate) protocol: Protocol,
    pub(crate) now: Instant,
    pub(crate) timeouts: Timeouts,
}

impl Contacted<'_> {
    fn counts(&self, s: &Session) -> bool {
        s.outbound_seen() && s.is_alive(self.protocol, self.now, &self.timeouts)
    }

    /// A mapping that has sent to `remotes` (at time zero), for tests of policies.
    #[cfg(test)]
    pub(crate) fn sent_to(remotes: &[SocketAddrV4]) -> Contacted<'static> {
        let mut sessions = Sessions::empty();
        let h = ahash::RandomState::with_seeds(1, 2, 3, 4);
        for r in remotes {
            sessions.insert(Session::new((*r.ip()).into(), r.port(), true, Instant::ZERO), &h);
        }
        Contacted {
            sessions: Box::leak(Box::new(sessions)),
            protocol: Protocol::Udp,
            now: Instant::ZERO,
            timeouts: Timeouts::default(),
        }
    }
}

/// Why a filtering policy refused an inbound packet; each is counted under its own
/// [`DropReason`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The filtering behaviour does not admit this remote ([`DropReason::Filtered`]).
    Filtered,
    /// A deny rule of the policy matched ([`DropReason::PolicyDenied`]).
    Denied,
    /// The internal host used up its inbound rate ([`DropReason::PolicyRateLimited`]).
    RateLimited,
    /// The policy could not decide and refuses then ([`DropReason::PolicyFailed`]).
    Failed,
}

impl From<Refusal> for DropReason {
    fn from(r: Refusal) -> DropReason {
        match r {
            Refusal::Filtered => DropReason::Filtered,
            Refusal::Denied => DropReason::PolicyDenied,
            Refusal::RateLimited => DropReason::PolicyRateLimited,
            Refusal::Failed => DropReason::PolicyFailed,
        }
    }
}

/// Decides which inbound packets may pass through an existing mapping. Implementations must be
/// deterministic functions of the context and their own state (the engine is replayable), and
/// cheap: they run on the packet path, with the mapping's table shard locked, so they must
/// not call back into the [`crate::Nat`] that asks them (that would wait for itself).
/// Reading or driving another `Nat` from a policy is fine.
pub trait FilteringPolicy: Send + Sync + Debug {
    /// Whether the inbound packet described by `ctx` may pass.
    fn admit(&self, ctx: &InboundContext<'_>) -> bool;

    /// The same decision with the reason of a refusal; the engine calls this (once per
    /// packet it judges). The default refuses as [`Refusal::Filtered`] what `admit` refuses.
    fn check(&self, ctx: &InboundContext<'_>) -> Result<(), Refusal> {
        if self.admit(ctx) {
            Ok(())
        } else {
            Err(Refusal::Filtered)
        }
    }

    /// Whether an internal endpoint may get a new mapping (its first packet out; the engine
    /// asks once per mapping, before choosing a port). A refusal drops the packet, counted
    /// by its reason (`policy_denied`, ...). The default, WinNAT's behaviour, allows.
    fn new_mapping(&self, _ctx: &OutboundContext) -> Result<(), Refusal> {
        Ok(())
    }
}

/// EndpointIndependentFiltering: any remote may send to an existing mapping.
#[derive(Clone, Copy, Debug, Default)]
pub struct EndpointIndependent;

impl FilteringPolicy for EndpointIndependent {
    fn admit(&self, _ctx: &InboundContext<'_>) -> bool {
        true
    }
}

/// AddressDependentFiltering: remotes whose address the internal endpoint has sent to.
#[derive(Clone, Copy, Debug, Default)]
pub struct AddressDependent;

impl FilteringPolicy for AddressDependent {
    fn admit(&self, ctx: &InboundContext<'_>) -> bool {
        ctx.has_sent_to_address(*ctx.remote.ip())
    }
}

/// AddressAndPortDependentFiltering: remote (address, port) pairs the internal endpoint has
/// sent to.
#[derive(Clone, Copy, Debug, Default)]
pub struct AddressAndPortDependent;

impl FilteringPolicy for AddressAndPortDependent {
    fn admit(&self, ctx: &InboundContext<'_>) -> bool {
        ctx.has_sent_to_endpoint(ctx.remote)
    }
}

/// The built-in policy for a configured behaviour.
pub fn builtin(behavior: FilteringBehavior) -> std::sync::Arc<dyn FilteringPolicy> {
    match behavior {
        FilteringBehavior::EndpointIndependent => std::sync::Arc::new(EndpointIndependent),
        FilteringBehavior::AddressDependent => std::sync::Arc::new(AddressDependent),
        FilteringBehavior::AddressAndPortDependent => std::sync::Arc::new(AddressAndPortDependent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(contacted: &[SocketAddrV4], remote: SocketAddrV4) -> InboundContext<'_> {
        InboundContext {
            now: Instant::ZERO,
            protocol: Protocol::Udp,
            remote,
            internal: "10.100.10.11:5000".parse().unwrap(),
            external: "203.0.113.1:40000".parse().unwrap(),
            new_session: true,
            tcp_flags: 0,
            contacted: Contacted::sent_to(contacted),
        }
    }

    #[test]
    fn builtins_follow_rfc4787_definitions() {
        let sent = ["198.51.100.7:53".parse().unwrap()];
        let same = "198.51.100.7:53".parse().unwrap();
        let other_port = "198.51.100.7:54".parse().unwrap();
        let other_addr = "198.51.100.8:53".parse().unwrap();
        for (remote, eif, adf, apdf) in
            [(same, true, true, true), (other_port, true, true, false), (other_addr, true, false, false)]
        {
            let c = ctx(&sent, remote);
            assert_eq!(EndpointIndependent.admit(&c), eif, "{remote}");
            assert_eq!(AddressDependent.admit(&c), adf, "{remote}");
            assert_eq!(AddressAndPortDependent.admit(&c), apdf, "{remote}");
        }
    }
}
