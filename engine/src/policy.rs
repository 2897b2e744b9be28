//! Filtering policies: ordered allow/deny rules over an inbound packet's remote, remote port,
//! protocol and internal host, a fallback behaviour for what no rule matches, and per-host
//! limits on how fast inbound packets may open sessions. A [`Policy`] is plain data (what a
//! policy file says; `NatConfig::filter_policy`); the engine compiles it into a
//! [`FilteringPolicy`] for TCP and one for UDP that share its rate-limit state.
//!
//! What a policy decides, and what it does not:
//! - It is asked exactly where a [`FilteringPolicy`] is: for an inbound TCP or UDP packet that
//!   reaches an existing dynamic mapping from a remote without a live session on it (the
//!   packets RFC 4787 §5 filtering is about). It never creates a mapping: a packet to an
//!   external port nobody holds is `no_mapping` whatever the rules say. Packets of a live
//!   session (the internal host's own flows and their replies) never reach it, so the
//!   established fast path is the same with or without a policy. Static mappings keep their
//!   RemoteExternalIPAddressPrefix; ICMP echo replies are admitted only from the queried
//!   remote and ICMP errors only for a live session, so a rule for ICMP is refused.
//! - Rules are tried in order; the first that matches decides. `allow` admits the packet to
//!   the mapping whatever the fallback says (a pinhole for that remote into the mappings the
//!   internal hosts already have); `deny` refuses it, counted as `policy_denied`. No match:
//!   the fallback behaviour (the policy's, or else the NAT's TcpFilteringBehavior /
//!   UdpFilteringBehavior) decides, counted as `filtered` when it refuses.
//! - Limits apply to every packet the rules or the fallback admit: the first limit whose
//!   internal prefix holds the internal host allows that host `new_inbound_per_second`
//!   admissions per one-second window (a window opens at the first admission after the last
//!   one closed), counted as `policy_rate_limited` beyond. The clock is the packet time the
//!   engine is given, never a wall clock, so a replay decides the same every run. State is
//!   one small entry per internal host with an open window, at most [`MAX_TRACKED_HOSTS`]
//!   per limit; when that many hosts have open windows, a further host is refused until one
//!   closes (the limit fails closed).

use core::fmt;
use std::collections::HashMap;
use std::sync::Arc;

use ipnet::Ipv4Net;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::config::{FilteringBehavior, Protocol};
use crate::filter::{self, FilteringPolicy, InboundContext, Refusal};
use crate::time::{Duration, Instant};

/// Most rules a policy may have (each new inbound session tries them in order).
pub const MAX_RULES: usize = 1024;

/// Most limits a policy may have.
pub const MAX_LIMITS: usize = 64;

/// Most internal hosts one limit tracks at once (a /16 of hosts, about 1.5 MiB at most).
pub const MAX_TRACKED_HOSTS: usize = 1 << 16;

/// The window a limit counts admissions in.
pub const RATE_WINDOW: Duration = Duration::from_secs(1);

/// A filtering policy, as a policy file gives it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// What decides when no rule matches; `None`: the NAT's TcpFilteringBehavior and
    /// UdpFilteringBehavior.
    #[serde(default)]
    pub fallback: Option<FilteringBehavior>,
    /// The rules, tried in order.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// The rate limits; the first whose prefix holds the internal host applies.
    #[serde(default)]
    pub limits: Vec<InboundLimit>,
}

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// Admit the packet to the mapping, whatever the fallback says.
    Allow,
    /// Refuse it (`policy_denied`).
    Deny,
}

impl fmt::Display for RuleAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuleAction::Allow => "allow",
            RuleAction::Deny => "deny",
        })
    }
}

/// An inclusive range of remote ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ports {
    /// The lowest port.
    pub first: u16,
    /// The highest port.
    pub last: u16,
}

impl Ports {
    /// Whether `port` is in the range.
    pub fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

/// One rule: what it matches and what it does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Allow or deny.
    pub action: RuleAction,
    /// The remote's address (0.0.0.0/0: any).
    pub remote: Ipv4Net,
    /// The remote's port; `None`: any.
    #[serde(default)]
    pub remote_ports: Option<Ports>,
    /// TCP or UDP; `None`: both.
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// The internal host the mapping belongs to (0.0.0.0/0: any).
    pub internal: Ipv4Net,
}

impl Rule {
    /// Whether the rule matches the packet described by `ctx`.
    pub fn matches(&self, ctx: &InboundContext<'_>) -> bool {
        self.protocol.is_none_or(|p| p == ctx.protocol)
            && self.remote.contains(ctx.remote.ip())
            && self.remote_ports.is_none_or(|p| p.contains(ctx.remote.port()))
            && self.internal.contains(ctx.internal.ip())
    }
}

/// A limit on how many inbound sessions per second the policy admits per internal host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundLimit {
    /// The internal hosts it applies to, each counted on its own.
    pub internal: Ipv4Net,
    /// Admissions per host per [`RATE_WINDOW`].
    pub new_inbound_per_second: u32,
}

/// Which part of a policy a [`PolicyError`] is about, numbered from 1 as in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item {
    /// The `n`-th rule.
    Rule(usize),
    /// The `n`-th limit.
    Limit(usize),
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Rule(n) => write!(f, "rule {n}"),
            Item::Limit(n) => write!(f, "limit {n}"),
        }
    }
}

/// What is wrong with one rule or limit, or with the policy as a whole.
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A rule for ICMP: the engine never asks a policy about ICMP.
    #[error("\"protocol\" = \"icmp\" would never match: the policy judges TCP and UDP only (ICMP echo replies are admitted only from the queried remote, ICMP errors only for a live session); give tcp or udp, or leave \"protocol\" out")]
    IcmpRule,
    /// A port range whose first port is above its last.
    #[error("\"remote_ports\" {first}-{last} is empty; give FIRST-LAST with FIRST <= LAST, e.g. 1-1023")]
    EmptyPorts { first: u16, last: u16 },
    /// A limit of zero per second.
    #[error("\"new_inbound_per_second\" is 0, which refuses every inbound session; give at least 1 (or a deny rule)")]
    ZeroRate,
    /// A rule's or limit's internal prefix outside the NAT's: it could never match.
    #[error("\"internal\" {internal} lies outside the NAT's internal prefix {prefix}, so it would never match; give a host or prefix inside {prefix}")]
    OutsidePrefix { internal: Ipv4Net, prefix: Ipv4Net },
    /// More rules than [`MAX_RULES`].
    #[error("{0} rules; a policy has at most {MAX_RULES} (merge rules into wider prefixes)")]
    TooManyRules(usize),
    /// More limits than [`MAX_LIMITS`].
    #[error("{0} limits; a policy has at most {MAX_LIMITS}")]
    TooManyLimits(usize),
}

impl Problem {
    /// The key of the rule or limit the problem is in (for pointing at its line).
    pub fn key(&self) -> Option<&'static str> {
        match self {
            Problem::IcmpRule => Some("protocol"),
            Problem::EmptyPorts { .. } => Some("remote_ports"),
            Problem::ZeroRate => Some("new_inbound_per_second"),
            Problem::OutsidePrefix { .. } => Some("internal"),
            Problem::TooManyRules(_) | Problem::TooManyLimits(_) => None,
        }
    }
}

/// A policy the engine refuses: which rule or limit (if one) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    /// The rule or limit; `None` for the policy as a whole.
    pub item: Option<Item>,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.item {
            Some(item) => write!(f, "{item}: {}", self.problem),
            None => write!(f, "{}", self.problem),
        }
    }
}

impl std::error::Error for PolicyError {}

impl Policy {
    /// Checks what can be checked without the NAT: counts, protocols, port ranges, rates.
    pub fn check(&self) -> Result<(), PolicyError> {
        let whole = |problem| PolicyError { item: None, problem };
        if self.rules.len() > MAX_RULES {
            return Err(whole(Problem::TooManyRules(self.rules.len())));
        }
        if self.limits.len() > MAX_LIMITS {
            return Err(whole(Problem::TooManyLimits(self.limits.len())));
        }
        for (i, r) in self.rules.iter().enumerate() {
            let err = |problem| PolicyError { item: Some(Item::Rule(i + 1)), problem };
            if r.protocol == Some(Protocol::Icmp) {
                return Err(err(Problem::IcmpRule));
            }
            if let Some(p) = r.remote_ports.filter(|p| p.first > p.last) {
                return Err(err(Problem::EmptyPorts { first: p.first, last: p.last }));
            }
        }
        for (i, l) in self.limits.iter().enumerate() {
            if l.new_inbound_per_second == 0 {
                return Err(PolicyError { item: Some(Item::Limit(i + 1)), problem: Problem::ZeroRate });
            }
        }
        Ok(())
    }

    /// [`Policy::check`], and that every rule and limit can match a host of `internal_prefix`.
    pub fn check_for(&self, internal_prefix: Ipv4Net) -> Result<(), PolicyError> {
        self.check()?;
        let prefix = internal_prefix.trunc();
        let overlaps = |net: Ipv4Net| net.contains(&prefix.network()) || prefix.contains(&net.network());
        let internals = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (Item::Rule(i + 1), r.internal))
            .chain(self.limits.iter().enumerate().map(|(i, l)| (Item::Limit(i + 1), l.internal)));
        for (item, internal) in internals {
            if !overlaps(internal) {
                return Err(PolicyError { item: Some(item), problem: Problem::OutsidePrefix { internal, prefix } });
            }
        }
        Ok(())
    }

    /// The first rule that matches `ctx`, with its number (from 1).
    pub fn first_match(&self, ctx: &InboundContext<'_>) -> Option<(usize, &Rule)> {
        self.rules.iter().enumerate().find(|(_, r)| r.matches(ctx)).map(|(i, r)| (i + 1, r))
    }
}

/// One internal host's open window.
#[derive(Clone, Copy, Debug)]
struct Window {
    opened: Instant,
    admitted: u32,
}

/// The open windows of one limit.
#[derive(Debug)]
struct Windows {
    hosts: HashMap<u32, Window, ahash::RandomState>,
    /// While the map is full: no window closes before this, so a further host is refused
    /// without looking (a sweep per packet would cost O(hosts)).
    full_until: Option<Instant>,
}

impl Windows {
    fn new() -> Windows {
        // Fixed seeds: the engine draws no OS entropy. What the map holds never depends on
        // the hasher, only how fast it is.
        Windows { hosts: HashMap::with_hasher(ahash::RandomState::with_seeds(1, 2, 3, 4)), full_until: None }
    }

    /// Counts one admission for `host` at `now`; false when its window is used up.
    fn take(&mut self, host: u32, now: Instant, per_window: u32, capacity: usize) -> bool {
        let closed = |w: &Window| now.saturating_duration_since(w.opened) >= RATE_WINDOW;
        if let Some(w) = self.hosts.get_mut(&host) {
            if closed(w) {
                *w = Window { opened: now, admitted: 1 };
                return true;
            }
            if w.admitted < per_window {
                w.admitted += 1;
                return true;
            }
            return false;
        }
        if self.hosts.len() >= capacity {
            if self.full_until.is_some_and(|t| now < t) {
                return false;
            }
            self.hosts.retain(|_, w| !closed(w));
            if self.hosts.len() >= capacity {
                self.full_until = self.hosts.values().map(|w| w.opened + RATE_WINDOW).min();
                return false;
            }
            self.full_until = None;
        }
        self.hosts.insert(host, Window { opened: now, admitted: 1 });
        true
    }
}

/// A policy with its rate-limit state, shared by the TCP and UDP filters of one NAT and kept
/// across reconfigurations that leave the policy as it was.
#[derive(Debug)]
pub(crate) struct Compiled {
    policy: Policy,
    windows: Vec<Mutex<Windows>>,
    capacity: usize,
}

impl Compiled {
    pub(crate) fn new(policy: Policy) -> Compiled {
        Compiled::with_capacity(policy, MAX_TRACKED_HOSTS)
    }

    fn with_capacity(policy: Policy, capacity: usize) -> Compiled {
        let windows = policy.limits.iter().map(|_| Mutex::new(Windows::new())).collect();
        Compiled { policy, windows, capacity }
    }

    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The filter for one protocol: this policy, falling back to `configured` unless the
    /// policy names its own fallback.
    pub(crate) fn filter(self: &Arc<Self>, configured: FilteringBehavior) -> Arc<dyn FilteringPolicy> {
        let behavior = self.policy.fallback.unwrap_or(configured);
        Arc::new(PolicyFilter { compiled: Arc::clone(self), fallback: filter::builtin(behavior) })
    }

    fn within_limit(&self, ctx: &InboundContext<'_>) -> bool {
        let host = *ctx.internal.ip();
        let Some((i, limit)) = self.policy.limits.iter().enumerate().find(|(_, l)| l.internal.contains(&host)) else {
            return true;
        };
        // `windows` has one entry per limit (built from the same list).
        self.windows
            .get(i)
            .is_some_and(|w| w.lock().take(u32::from(host), ctx.now, limit.new_inbound_per_second, self.capacity))
    }
}

/// A compiled policy for one protocol.
#[derive(Debug)]
struct PolicyFilter {
    compiled: Arc<Compiled>,
    fallback: Arc<dyn FilteringPolicy>,
}

impl FilteringPolicy for PolicyFilter {
    fn admit(&self, ctx: &InboundContext<'_>) -> bool {
        self.check(ctx).is_ok()
    }

    fn check(&self, ctx: &InboundContext<'_>) -> Result<(), Refusal> {
        match self.compiled.policy.first_match(ctx).map(|(_, r)| r.action) {
            Some(RuleAction::Deny) => return Err(Refusal::Denied),
            Some(RuleAction::Allow) => {}
            None => self.fallback.check(ctx)?,
        }
        if self.compiled.within_limit(ctx) {
            Ok(())
        } else {
            Err(Refusal::RateLimited)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use proptest::prelude::*;

    use super::*;

    fn any_net() -> Ipv4Net {
        Ipv4Net::default()
    }

    fn rule(action: RuleAction, remote: &str) -> Rule {
        Rule { action, remote: remote.parse().unwrap(), remote_ports: None, protocol: None, internal: any_net() }
    }

    fn ctx<'a>(
        now: Instant,
        protocol: Protocol,
        remote: &str,
        internal: &str,
        contacted: &'a [SocketAddrV4],
    ) -> InboundContext<'a> {
        InboundContext {
            now,
            protocol,
            remote: remote.parse().unwrap(),
            internal: internal.parse().unwrap(),
            external: "203.0.113.1:40000".parse().unwrap(),
            new_session: true,
            tcp_flags: 0,
            contacted: crate::filter::Contacted::sent_to(contacted),
        }
    }

    fn filter(policy: Policy, configured: FilteringBehavior) -> Arc<dyn FilteringPolicy> {
        Arc::new(Compiled::new(policy)).filter(configured)
    }

    #[test]
    fn first_match_wins_and_no_match_falls_back() {
        let policy = Policy {
            fallback: Some(FilteringBehavior::AddressDependent),
            rules: vec![
                rule(RuleAction::Allow, "198.51.100.7/32"),
                rule(RuleAction::Deny, "198.51.100.0/24"),
                rule(RuleAction::Allow, "198.51.100.0/24"),
            ],
            limits: vec![],
        };
        let f = filter(policy, FilteringBehavior::EndpointIndependent);
        let none = [];
        let t = Instant::from_secs(5);
        // Rule 1 before rule 2: allowed though nobody contacted it.
        assert_eq!(f.check(&ctx(t, Protocol::Udp, "198.51.100.7:9", "10.100.0.5:5000", &none)), Ok(()));
        // Rule 2 before rule 3: denied.
        assert_eq!(f.check(&ctx(t, Protocol::Udp, "198.51.100.8:9", "10.100.0.5:5000", &none)), Err(Refusal::Denied));
        // No rule: the policy's fallback (ADF), not the configured EIF.
        assert_eq!(f.check(&ctx(t, Protocol::Udp, "203.0.113.9:9", "10.100.0.5:5000", &none)), Err(Refusal::Filtered));
        let sent = ["203.0.113.9:53".parse().unwrap()];
        assert_eq!(f.check(&ctx(t, Protocol::Udp, "203.0.113.9:9", "10.100.0.5:5000", &sent)), Ok(()));
    }

    #[test]
    fn no_fallback_means_the_nats_behaviour_per_protocol() {
        let compiled = Arc::new(Compiled::new(Policy::default()));
        let eif = compiled.filter(FilteringBehavior::EndpointIndependent);
        let apdf = compiled.filter(FilteringBehavior::AddressAndPortDependent);
        let c = ctx(Instant::ZERO, Protocol::Tcp, "198.51.100.1:80", "10.100.0.5:5000", &[]);
        assert_eq!(eif.check(&c), Ok(()));
        assert_eq!(apdf.check(&c), Err(Refusal::Filtered));
    }

    #[test]
    fn every_condition_of_a_rule_must_hold() {
        let r = Rule {
            action: RuleAction::Deny,
            remote: "198.51.100.0/24".parse().unwrap(),
            remote_ports: Some(Ports { first: 1, last: 1023 }),
            protocol: Some(Protocol::Udp),
            internal: "10.100.0.5/32".parse().unwrap(),
        };
        let m = |proto, remote, internal| r.matches(&ctx(Instant::ZERO, proto, remote, internal, &[]));
        assert!(m(Protocol::Udp, "198.51.100.9:53", "10.100.0.5:1"));
        assert!(m(Protocol::Udp, "198.51.100.9:1023", "10.100.0.5:1"));
        assert!(!m(Protocol::Udp, "198.51.100.9:1024", "10.100.0.5:1"), "port");
        assert!(!m(Protocol::Tcp, "198.51.100.9:53", "10.100.0.5:1"), "protocol");
        assert!(!m(Protocol::Udp, "198.51.101.9:53", "10.100.0.5:1"), "remote");
        assert!(!m(Protocol::Udp, "198.51.100.9:53", "10.100.0.6:1"), "internal");
    }

    #[test]
    fn rate_limit_counts_by_packet_time_per_host() {
        let policy = Policy {
            fallback: Some(FilteringBehavior::EndpointIndependent),
            rules: vec![],
            limits: vec![InboundLimit { internal: "10.100.0.0/16".parse().unwrap(), new_inbound_per_second: 3 }],
        };
        let f = filter(policy, FilteringBehavior::AddressDependent);
        let at = |ms, host| f.check(&ctx(Instant::from_millis(ms), Protocol::Udp, "198.51.100.1:9", host, &[]));
        let a = "10.100.0.5:5000";
        let b = "10.100.0.6:5000";
        for ms in [1000, 1100, 1999] {
            assert_eq!(at(ms, a), Ok(()), "{ms}");
        }
        assert_eq!(at(1999, a), Err(Refusal::RateLimited), "fourth in the window");
        assert_eq!(at(1999, b), Ok(()), "another host has its own window");
        assert_eq!(at(2000, a), Ok(()), "a new window one second after the first admission");
        // Hosts outside every limit are not limited.
        let outside = Policy {
            limits: vec![InboundLimit { internal: "10.100.1.0/24".parse().unwrap(), new_inbound_per_second: 1 }],
            ..Policy::default()
        };
        let f = filter(outside, FilteringBehavior::EndpointIndependent);
        for _ in 0..10 {
            assert_eq!(f.check(&ctx(Instant::ZERO, Protocol::Udp, "198.51.100.1:9", a, &[])), Ok(()));
        }
    }

    #[test]
    fn denied_packets_spend_no_budget_and_allow_rules_are_limited_too() {
        let policy = Policy {
            fallback: None,
            rules: vec![rule(RuleAction::Deny, "203.0.113.0/24"), rule(RuleAction::Allow, "0.0.0.0/0")],
            limits: vec![InboundLimit { internal: any_net(), new_inbound_per_second: 1 }],
        };
        let f = filter(policy, FilteringBehavior::AddressDependent);
        let at = |remote| f.check(&ctx(Instant::ZERO, Protocol::Tcp, remote, "10.100.0.5:1", &[]));
        assert_eq!(at("203.0.113.7:1"), Err(Refusal::Denied));
        assert_eq!(at("198.51.100.1:1"), Ok(()));
        assert_eq!(at("198.51.100.2:1"), Err(Refusal::RateLimited));
    }

    #[test]
    fn the_host_table_is_bounded_and_fails_closed_when_full() {
        let policy = Policy {
            fallback: Some(FilteringBehavior::EndpointIndependent),
            rules: vec![],
            limits: vec![InboundLimit { internal: any_net(), new_inbound_per_second: 100 }],
        };
        let compiled = Arc::new(Compiled::with_capacity(policy, 4));
        let f = compiled.filter(FilteringBehavior::EndpointIndependent);
        let at = |ms, host: u8| {
            let internal = format!("10.100.0.{host}:1");
            f.check(&ctx(Instant::from_millis(ms), Protocol::Udp, "198.51.100.1:9", &internal, &[]))
        };
        for h in 1..=4 {
            assert_eq!(at(100 * u64::from(h), h), Ok(()));
        }
        assert_eq!(at(900, 5), Err(Refusal::RateLimited), "full: a fifth host is refused");
        assert_eq!(at(900, 1), Ok(()), "hosts already tracked carry on");
        // Host 1's window (opened at 100 ms) closes at 1100 ms: room for host 5.
        assert_eq!(at(1100, 5), Ok(()));
        assert!(compiled.windows[0].lock().hosts.len() <= 4);
    }

    #[test]
    fn checks_name_the_rule_or_limit() {
        let mut p = Policy { rules: vec![rule(RuleAction::Deny, "198.51.100.0/24")], ..Policy::default() };
        p.rules.push(Rule { protocol: Some(Protocol::Icmp), ..rule(RuleAction::Deny, "0.0.0.0/0") });
        let e = p.check().unwrap_err();
        assert_eq!(e.item, Some(Item::Rule(2)));
        assert!(e.to_string().starts_with("rule 2: \"protocol\""), "{e}");
        p.rules.pop();
        p.rules[0].internal = "10.200.0.0/16".parse().unwrap();
        let e = p.check_for("10.100.0.0/16".parse().unwrap()).unwrap_err();
        assert_eq!(e.problem.key(), Some("internal"));
        assert!(e.to_string().contains("outside the NAT's internal prefix 10.100.0.0/16"), "{e}");
        p.rules[0].internal = "10.0.0.0/8".parse().unwrap();
        assert_eq!(p.check_for("10.100.0.0/16".parse().unwrap()), Ok(()), "a wider prefix overlaps");
        p.limits.push(InboundLimit { internal: any_net(), new_inbound_per_second: 0 });
        assert_eq!(p.check().unwrap_err().item, Some(Item::Limit(1)));
    }

    proptest! {
        /// The decision is the first matching rule's, or the fallback's; never anything else.
        #[test]
        fn decision_is_the_first_matching_rule_or_the_fallback(
            rules in proptest::collection::vec((any::<bool>(), 0u8..4, 0u8..=2), 0..6),
            remote_octet in 0u8..4,
            udp in any::<bool>(),
        ) {
            let protocol = if udp { Protocol::Udp } else { Protocol::Tcp };
            let rules: Vec<Rule> = rules
                .iter()
                .map(|&(allow, octet, proto)| Rule {
                    action: if allow { RuleAction::Allow } else { RuleAction::Deny },
                    remote: Ipv4Net::new(Ipv4Addr::new(198, 51, 100, octet), 32).unwrap(),
                    remote_ports: None,
                    protocol: [None, Some(Protocol::Tcp), Some(Protocol::Udp)][usize::from(proto)],
                    internal: any_net(),
                })
                .collect();
            let policy = Policy { fallback: Some(FilteringBehavior::AddressDependent), rules: rules.clone(), limits: vec![] };
            let f = filter(policy, FilteringBehavior::EndpointIndependent);
            let remote = format!("198.51.100.{remote_octet}:7");
            let c = ctx(Instant::ZERO, protocol, &remote, "10.100.0.5:5000", &[]);
            let expected = match rules.iter().find(|r| r.matches(&c)).map(|r| r.action) {
                Some(RuleAction::Allow) => Ok(()),
                Some(RuleAction::Deny) => Err(Refusal::Denied),
                None => Err(Refusal::Filtered), // ADF, nobody contacted
            };
            prop_assert_eq!(f.check(&c), expected);
        }

        /// The limit against a model of fixed windows: a window opens at the first admission
        /// after the last one closed and admits `per_second` in its second; the filter agrees
        /// with the model on every packet, so no window ever admits more.
        #[test]
        fn rate_limit_matches_a_fixed_window_model(
            steps in proptest::collection::vec((0u64..700, 0u8..3), 1..80),
            per_second in 1u32..5,
        ) {
            let policy = Policy {
                fallback: Some(FilteringBehavior::EndpointIndependent),
                rules: vec![],
                limits: vec![InboundLimit { internal: any_net(), new_inbound_per_second: per_second }],
            };
            let f = filter(policy, FilteringBehavior::EndpointIndependent);
            let mut model: HashMap<u8, (u64, u32)> = HashMap::new();
            let mut now = 0u64;
            for (gap, host) in steps {
                now += gap;
                let internal = format!("10.100.0.{host}:1");
                let c = ctx(Instant::from_millis(now), Protocol::Udp, "198.51.100.1:9", &internal, &[]);
                let expected = match model.get_mut(&host) {
                    Some((opened, n)) if now - *opened < 1000 => {
                        if *n < per_second { *n += 1; true } else { false }
                    }
                    _ => { model.insert(host, (now, 1)); true }
                };
                prop_assert_eq!(f.check(&c).is_ok(), expected, "host {} at {} ms", host, now);
            }
        }
    }
}
