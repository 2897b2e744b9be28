//! The settings of one NAT: the NetNat object's properties, its external addresses, its static
//! mappings, the global hairpinning mode, and what netnat adds (port allocation policy,
//! session limits, seed).
//!
//! Defaults are WinNAT's as observed on real hosts (see `shared/reference/winnat-semantics.md`):
//! ICMP query 30 s, TCP established 1800 s, TCP transient 120 s, UDP idle 120 s,
//! AddressDependentFiltering for TCP and UDP, UdpInboundRefresh false.

use core::fmt;
use core::str::FromStr;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::policy::{Policy, PolicyError};
use crate::time::Duration;

/// An IP protocol the NAT translates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    /// ICMP (echo queries; errors are translated through the session they embed).
    Icmp,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Icmp => 1,
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    /// The protocol with IP protocol number `n`, if the NAT translates it.
    pub const fn from_number(n: u8) -> Option<Protocol> {
        match n {
            1 => Some(Protocol::Icmp),
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Icmp => "ICMP",
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        })
    }
}

impl FromStr for Protocol {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" | "6" => Ok(Protocol::Tcp),
            "udp" | "17" => Ok(Protocol::Udp),
            "icmp" | "1" => Ok(Protocol::Icmp),
            _ => Err(ConfigError::UnknownProtocol(s.to_owned())),
        }
    }
}

/// Which remotes may send inbound packets through an existing mapping (RFC 4787 §5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FilteringBehavior {
    /// Any remote may send to the mapping.
    #[serde(rename = "EndpointIndependentFiltering")]
    EndpointIndependent,
    /// Only remotes whose address the internal endpoint has sent to (WinNAT's effective default).
    #[default]
    #[serde(rename = "AddressDependentFiltering")]
    AddressDependent,
    /// Only remote (address, port) pairs the internal endpoint has sent to (netnat's addition).
    #[serde(rename = "AddressAndPortDependentFiltering")]
    AddressAndPortDependent,
}

impl FilteringBehavior {
    /// WinNAT's spelling, e.g. `AddressDependentFiltering`.
    pub const fn winnat_name(self) -> &'static str {
        match self {
            FilteringBehavior::EndpointIndependent => "EndpointIndependentFiltering",
            FilteringBehavior::AddressDependent => "AddressDependentFiltering",
            FilteringBehavior::AddressAndPortDependent => "AddressAndPortDependentFiltering",
        }
    }
}

impl fmt::Display for FilteringBehavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.winnat_name())
    }
}

impl FromStr for FilteringBehavior {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let lower = s.to_ascii_lowercase();
        let lower = lower.strip_suffix("filtering").unwrap_or(&lower);
        match lower.trim_end_matches(['-', '_']) {
            "endpointindependent" | "eif" | "endpoint-independent" => Ok(FilteringBehavior::EndpointIndependent),
            "addressdependent" | "adf" | "address-dependent" => Ok(FilteringBehavior::AddressDependent),
            "addressandportdependent" | "apdf" | "address-and-port-dependent" => {
                Ok(FilteringBehavior::AddressAndPortDependent)
            }
            _ => Err(ConfigError::UnknownFilteringBehavior(s.to_owned())),
        }
    }
}

/// How a new mapping's external port (or ICMP identifier) is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortAllocation {
    /// A seeded pseudo-random port from the range (RFC 6056).
    #[default]
    Random,
    /// The internal port when it is free and inside the range, otherwise random: the Linux
    /// kernel's behaviour.
    Preserve,
}

impl FromStr for PortAllocation {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s.to_ascii_lowercase().as_str() {
            "random" => Ok(PortAllocation::Random),
            "preserve" => Ok(PortAllocation::Preserve),
            _ => Err(ConfigError::UnknownPortAllocation(s.to_owned())),
        }
    }
}

impl fmt::Display for PortAllocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortAllocation::Random => "random",
            PortAllocation::Preserve => "preserve",
        })
    }
}

/// What becomes of an inbound packet to an external address that belongs to no mapping (no
/// session, no static mapping), and of an inbound ICMP error that matches no session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnmatchedInbound {
    /// Dropped and counted (`no_mapping`, `icmp_error_no_session`): the external address is
    /// the NAT's alone, as in `netnat replay`.
    #[default]
    Drop,
    /// Not the NAT's: [`Verdict::Pass`](crate::Verdict::Pass), uncounted as a drop. The live
    /// daemon's external addresses are the host's own addresses too (as WinNAT's are), so
    /// such a packet is a reply to the host's own connection or a request to a host service.
    Host,
}

/// `Set-NetNatGlobal -InterRoutingDomainHairpinningMode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HairpinningMode {
    /// Hairpinned packets carry the sender's external mapping as source (RFC 4787 REQ-9a).
    #[default]
    External,
    /// Hairpinned packets keep the sender's internal source: routed within the subnet.
    Local,
}

impl FromStr for HairpinningMode {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s.to_ascii_lowercase().as_str() {
            "external" => Ok(HairpinningMode::External),
            "local" => Ok(HairpinningMode::Local),
            _ => Err(ConfigError::UnknownHairpinningMode(s.to_owned())),
        }
    }
}

impl fmt::Display for HairpinningMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HairpinningMode::External => "External",
            HairpinningMode::Local => "Local",
        })
    }
}

/// Idle timeouts, WinNAT's defaults. A session lives while idle for no longer than its
/// timeout; idle time is measured from the last packet that moved the session's timer, which
/// moves in steps of 1 ms (so packets of an established flow write nothing shared), so a
/// session may expire up to 1 ms early.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    /// IcmpQueryTimeout (30 s).
    pub icmp_query: Duration,
    /// TcpEstablishedConnectionTimeout (1800 s).
    pub tcp_established: Duration,
    /// TcpTransientConnectionTimeout (120 s): before the handshake completes and after FIN
    /// both ways or an RST.
    pub tcp_transient: Duration,
    /// UdpIdleSessionTimeout (120 s).
    pub udp_idle: Duration,
}

/// WinNAT's IcmpQueryTimeout default.
pub const ICMP_QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// WinNAT's TcpEstablishedConnectionTimeout default.
pub const TCP_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(1800);
/// WinNAT's TcpTransientConnectionTimeout default.
pub const TCP_TRANSIENT_TIMEOUT: Duration = Duration::from_secs(120);
/// WinNAT's UdpIdleSessionTimeout default.
pub const UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            icmp_query: ICMP_QUERY_TIMEOUT,
            tcp_established: TCP_ESTABLISHED_TIMEOUT,
            tcp_transient: TCP_TRANSIENT_TIMEOUT,
            udp_idle: UDP_IDLE_TIMEOUT,
        }
    }
}

/// A NetNatExternalAddress: an address the NAT translates to, with its dynamic port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExternalAddress {
    /// IPAddress.
    pub address: Ipv4Addr,
    /// PortStart (default 1024).
    pub port_start: u16,
    /// PortEnd (default 65535).
    pub port_end: u16,
}

/// Default PortStart of an external address.
pub const DEFAULT_PORT_START: u16 = 1024;
/// Default PortEnd of an external address.
pub const DEFAULT_PORT_END: u16 = 65535;

impl ExternalAddress {
    /// An external address with the default port range 1024–65535.
    pub const fn new(address: Ipv4Addr) -> Self {
        ExternalAddress { address, port_start: DEFAULT_PORT_START, port_end: DEFAULT_PORT_END }
    }
}

/// A NetNatStaticMapping: inbound port forwarding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StaticMapping {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// ExternalIPAddress; 0.0.0.0 means every external address of the NAT.
    pub external_address: Ipv4Addr,
    /// ExternalPort.
    pub external_port: u16,
    /// InternalIPAddress.
    pub internal_address: Ipv4Addr,
    /// InternalPort (defaults to ExternalPort where the user gives none).
    pub internal_port: u16,
    /// RemoteExternalIPAddressPrefix: remotes allowed to use the mapping (default 0.0.0.0/0).
    pub remote_prefix: Ipv4Net,
}

impl StaticMapping {
    /// Whether this mapping owns `port` of `protocol` on external address `address`.
    pub fn owns(&self, protocol: Protocol, address: Ipv4Addr, port: u16) -> bool {
        self.protocol == protocol
            && self.external_port == port
            && (self.external_address.is_unspecified() || self.external_address == address)
    }
}

/// Session limits; all count NetNatSession rows (one per internal endpoint and remote).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Most sessions the NAT holds at once.
    pub max_sessions: usize,
    /// Most sessions one internal host holds at once, so one VM cannot exhaust the ports of
    /// all others (default [`DEFAULT_MAX_SESSIONS_PER_HOST`]).
    pub max_sessions_per_host: usize,
    /// Most sessions that inbound packets may open on one dynamic mapping (remotes the
    /// filtering admits without a session: other ports of a contacted address under
    /// address-dependent filtering, anyone under endpoint-independent filtering), so a remote
    /// cannot spend its victim's per-host quota. Static mappings (servers) are bounded by the
    /// per-host cap only. Default [`DEFAULT_MAX_INBOUND_SESSIONS_PER_MAPPING`].
    #[serde(default = "default_max_inbound_sessions_per_mapping")]
    pub max_inbound_sessions_per_mapping: usize,
    /// Most sessions that inbound packets may open on all the dynamic mappings of one internal
    /// host together (the same sessions as the per-mapping cap counts), so remotes cannot
    /// spend a host's quota through its many mappings (40 open ports under
    /// endpoint-independent filtering would otherwise let them take all 8192) and the host
    /// keeps the rest for its own flows. `None`: half of `max_sessions_per_host`
    /// ([`Limits::inbound_sessions_per_host`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_inbound_sessions_per_host: Option<usize>,
}

impl Limits {
    /// The cap on a host's inbound-opened sessions: `max_inbound_sessions_per_host`, else
    /// half the per-host cap (at least one).
    pub fn inbound_sessions_per_host(&self) -> usize {
        self.max_inbound_sessions_per_host.unwrap_or((self.max_sessions_per_host / 2).max(1))
    }
}

/// Default of [`Limits::max_sessions`].
pub const DEFAULT_MAX_SESSIONS: usize = 1 << 20;

/// Default of [`Limits::max_sessions_per_host`]: 8192, an eighth of the 64 512 ports of one
/// external address and protocol, so no host alone can take an address's port range (the
/// old default, 65 536, exceeded it), yet far above what a busy client holds (a browser keeps
/// hundreds of flows, a build VM fetching in parallel a few thousand). WinNAT's own limit is
/// not documented.
pub const DEFAULT_MAX_SESSIONS_PER_HOST: usize = 8192;

/// Default of [`Limits::max_inbound_sessions_per_mapping`]: 256, room for a peer-to-peer
/// port that many remotes contact first, and at most 1/32 of a host's default quota per
/// mapping.
pub const DEFAULT_MAX_INBOUND_SESSIONS_PER_MAPPING: usize = 256;

fn default_max_inbound_sessions_per_mapping() -> usize {
    DEFAULT_MAX_INBOUND_SESSIONS_PER_MAPPING
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_sessions_per_host: DEFAULT_MAX_SESSIONS_PER_HOST,
            max_inbound_sessions_per_mapping: DEFAULT_MAX_INBOUND_SESSIONS_PER_MAPPING,
            max_inbound_sessions_per_host: None,
        }
    }
}

/// Everything the engine needs to run one NAT.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatConfig {
    /// Name (e.g. `WinNAT`).
    pub name: String,
    /// InternalIPInterfaceAddressPrefix: the subnet whose outbound traffic is translated.
    pub internal_prefix: Ipv4Net,
    /// ExternalIPInterfaceAddressPrefix (informational in WinNAT; empty by default).
    #[serde(default)]
    pub external_prefix: Option<Ipv4Net>,
    /// The NetNatExternalAddress objects: at least one to translate anything.
    pub external_addresses: Vec<ExternalAddress>,
    /// Idle timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// TcpFilteringBehavior.
    #[serde(default)]
    pub tcp_filtering: FilteringBehavior,
    /// UdpFilteringBehavior.
    #[serde(default)]
    pub udp_filtering: FilteringBehavior,
    /// UdpInboundRefresh: inbound packets refresh UDP sessions too.
    #[serde(default)]
    pub udp_inbound_refresh: bool,
    /// The NetNatStaticMapping objects.
    #[serde(default)]
    pub static_mappings: Vec<StaticMapping>,
    /// The global hairpinning mode.
    #[serde(default)]
    pub hairpinning: HairpinningMode,
    /// Port allocation policy.
    #[serde(default)]
    pub port_allocation: PortAllocation,
    /// Session limits.
    #[serde(default)]
    pub limits: Limits,
    /// Seed of the port-choice PRNG.
    #[serde(default)]
    pub seed: u64,
    /// Inbound packets that belong to no mapping: dropped, or the host's.
    #[serde(default)]
    pub unmatched_inbound: UnmatchedInbound,
    /// A filtering policy (rules, fallback, rate limits; [`crate::policy`]) in place of the
    /// plain TcpFilteringBehavior and UdpFilteringBehavior; `None`: those alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_policy: Option<Policy>,
    /// Count packets and bytes per session and direction (netnat's `-Detailed` rows,
    /// [`crate::SessionInfo::counters`]). Off by default: counting writes each session on
    /// every packet, which the established fast path otherwise never does; off, it costs that
    /// path one test of a pointer it already has in cache. Applies to sessions created after
    /// it is turned on.
    #[serde(default)]
    pub session_counters: bool,
}

impl NatConfig {
    /// A NAT with WinNAT's defaults, translating `internal_prefix` to `external_address`.
    pub fn new(name: impl Into<String>, internal_prefix: Ipv4Net, external_address: Ipv4Addr) -> Self {
        NatConfig {
            name: name.into(),
            internal_prefix,
            external_prefix: None,
            external_addresses: vec![ExternalAddress::new(external_address)],
            timeouts: Timeouts::default(),
            tcp_filtering: FilteringBehavior::default(),
            udp_filtering: FilteringBehavior::default(),
            udp_inbound_refresh: false,
            static_mappings: Vec::new(),
            hairpinning: HairpinningMode::default(),
            port_allocation: PortAllocation::default(),
            limits: Limits::default(),
            seed: 0,
            unmatched_inbound: UnmatchedInbound::default(),
            filter_policy: None,
            session_counters: false,
        }
    }

    /// Checks the settings against each other; `Nat::new` and `Nat::reconfigure` call this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for ext in &self.external_addresses {
            if ext.port_start > ext.port_end {
                return Err(ConfigError::EmptyPortRange {
                    address: ext.address,
                    start: ext.port_start,
                    end: ext.port_end,
                });
            }
            if self.internal_prefix.contains(&ext.address) {
                return Err(ConfigError::ExternalAddressInsideInternalPrefix {
                    address: ext.address,
                    prefix: self.internal_prefix,
                });
            }
        }
        for (i, ext) in self.external_addresses.iter().enumerate() {
            if self.external_addresses[..i].iter().any(|e| e.address == ext.address) {
                return Err(ConfigError::DuplicateExternalAddress(ext.address));
            }
        }
        for (i, m) in self.static_mappings.iter().enumerate() {
            if m.protocol == Protocol::Icmp {
                return Err(ConfigError::StaticMappingProtocol);
            }
            if !self.internal_prefix.contains(&m.internal_address) {
                return Err(ConfigError::StaticMappingOutsidePrefix {
                    address: m.internal_address,
                    prefix: self.internal_prefix,
                });
            }
            if !m.external_address.is_unspecified()
                && !self.external_addresses.iter().any(|e| e.address == m.external_address)
            {
                return Err(ConfigError::StaticMappingUnknownAddress(m.external_address));
            }
            let clash = self.static_mappings[..i].iter().any(|o| {
                o.protocol == m.protocol
                    && o.external_port == m.external_port
                    && (o.external_address.is_unspecified()
                        || m.external_address.is_unspecified()
                        || o.external_address == m.external_address)
            });
            if clash {
                return Err(ConfigError::DuplicateStaticMapping { protocol: m.protocol, port: m.external_port });
            }
        }
        let l = &self.limits;
        if l.max_sessions == 0
            || l.max_sessions_per_host == 0
            || l.max_inbound_sessions_per_mapping == 0
            || l.max_inbound_sessions_per_host == Some(0)
        {
            return Err(ConfigError::ZeroLimit);
        }
        if let Some(policy) = &self.filter_policy {
            policy.check_for(self.internal_prefix)?;
        }
        Ok(())
    }
}

/// A configuration the engine refuses, with what is wrong and how to fix it. (Variant fields
/// are the offending values named in the message.)
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// PortStart above PortEnd.
    #[error(
        "external address {address}: port range {start}-{end} is empty; give PortStart <= PortEnd, e.g. 1024-65535"
    )]
    EmptyPortRange { address: Ipv4Addr, start: u16, end: u16 },
    /// An external address inside the internal prefix.
    #[error("external address {address} lies inside the internal prefix {prefix}; use an address outside it")]
    ExternalAddressInsideInternalPrefix { address: Ipv4Addr, prefix: Ipv4Net },
    /// The same external address twice.
    #[error("external address {0} is given twice; remove the duplicate")]
    DuplicateExternalAddress(Ipv4Addr),
    /// A static mapping for ICMP.
    #[error("a static mapping must be TCP or UDP")]
    StaticMappingProtocol,
    /// A static mapping whose internal address is outside the internal prefix.
    #[error("static mapping to {address} is outside the internal prefix {prefix}; map to an address inside it")]
    StaticMappingOutsidePrefix { address: Ipv4Addr, prefix: Ipv4Net },
    /// A static mapping on an external address the NAT does not have.
    #[error("static mapping on {0}, which is not an external address of this NAT; add the address first or use 0.0.0.0 (any)")]
    StaticMappingUnknownAddress(Ipv4Addr),
    /// Two static mappings on one external port.
    #[error("a duplicate name exists on the network: {protocol} external port {port} is already mapped; remove the other mapping or choose another port")]
    DuplicateStaticMapping { protocol: Protocol, port: u16 },
    /// A session limit of zero.
    #[error("session limits must be at least 1")]
    ZeroLimit,
    /// A filtering policy with a rule or limit the engine refuses.
    #[error("filter policy: {0}")]
    FilterPolicy(#[from] PolicyError),
    /// An unknown protocol name.
    #[error("unknown protocol {0:?}; use TCP or UDP (or ICMP where allowed)")]
    UnknownProtocol(String),
    /// An unknown filtering behaviour name.
    #[error("unknown filtering behavior {0:?}; use EndpointIndependentFiltering, AddressDependentFiltering or AddressAndPortDependentFiltering")]
    UnknownFilteringBehavior(String),
    /// An unknown port allocation policy.
    #[error("unknown port allocation {0:?}; use random or preserve")]
    UnknownPortAllocation(String),
    /// An unknown hairpinning mode.
    #[error("unknown hairpinning mode {0:?}; use External or Local")]
    UnknownHairpinningMode(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> NatConfig {
        NatConfig::new("WinNAT", "10.100.0.0/16".parse().unwrap(), Ipv4Addr::new(203, 0, 113, 1))
    }

    #[test]
    fn defaults_are_winnat_defaults() {
        let c = base();
        assert_eq!(c.timeouts.icmp_query, Duration::from_secs(30));
        assert_eq!(c.timeouts.tcp_established, Duration::from_secs(1800));
        assert_eq!(c.timeouts.tcp_transient, Duration::from_secs(120));
        assert_eq!(c.timeouts.udp_idle, Duration::from_secs(120));
        assert_eq!(c.udp_filtering, FilteringBehavior::AddressDependent);
        assert_eq!(c.tcp_filtering, FilteringBehavior::AddressDependent);
        assert!(!c.udp_inbound_refresh);
        assert_eq!(c.external_addresses[0].port_start, 1024);
        assert_eq!(c.external_addresses[0].port_end, 65535);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn default_limits_leave_room_below_one_address_port_range() {
        let ports = usize::from(DEFAULT_PORT_END - DEFAULT_PORT_START) + 1;
        let l = Limits::default();
        assert!(l.max_sessions_per_host * 4 <= ports, "{} per host against {ports} ports", l.max_sessions_per_host);
        assert!(l.max_inbound_sessions_per_mapping * 16 <= l.max_sessions_per_host);
        // Configurations written before the inbound cap existed still parse, with its default.
        let old: Limits = serde_json::from_str(r#"{"max_sessions": 10, "max_sessions_per_host": 5}"#).unwrap();
        assert_eq!(old.max_inbound_sessions_per_mapping, DEFAULT_MAX_INBOUND_SESSIONS_PER_MAPPING);
        assert_eq!(old.inbound_sessions_per_host(), 2);
        assert_eq!(l.inbound_sessions_per_host(), DEFAULT_MAX_SESSIONS_PER_HOST / 2);
    }

    #[test]
    fn filtering_names_parse_in_winnat_and_short_spelling() {
        for b in [
            FilteringBehavior::EndpointIndependent,
            FilteringBehavior::AddressDependent,
            FilteringBehavior::AddressAndPortDependent,
        ] {
            assert_eq!(b.winnat_name().parse::<FilteringBehavior>(), Ok(b));
            assert_eq!(b.winnat_name().to_uppercase().parse::<FilteringBehavior>(), Ok(b));
        }
        assert_eq!("eif".parse::<FilteringBehavior>(), Ok(FilteringBehavior::EndpointIndependent));
        assert!("open".parse::<FilteringBehavior>().is_err());
    }

    #[test]
    fn validation_rejects_conflicts() {
        let mut c = base();
        c.external_addresses[0].port_start = 2000;
        c.external_addresses[0].port_end = 1000;
        assert!(matches!(c.validate(), Err(ConfigError::EmptyPortRange { .. })));

        let mut c = base();
        let m = StaticMapping {
            protocol: Protocol::Tcp,
            external_address: Ipv4Addr::UNSPECIFIED,
            external_port: 8080,
            internal_address: Ipv4Addr::new(10, 100, 10, 11),
            internal_port: 80,
            remote_prefix: "0.0.0.0/0".parse().unwrap(),
        };
        c.static_mappings = vec![m, StaticMapping { external_address: Ipv4Addr::new(203, 0, 113, 1), ..m }];
        let err = c.validate().unwrap_err();
        assert!(err.to_string().contains("duplicate name exists on the network"), "{err}");

        let mut c = base();
        c.static_mappings = vec![StaticMapping { internal_address: Ipv4Addr::new(192, 0, 2, 1), ..m }];
        assert!(matches!(c.validate(), Err(ConfigError::StaticMappingOutsidePrefix { .. })));

        let mut c = base();
        c.external_addresses.push(ExternalAddress::new(Ipv4Addr::new(10, 100, 0, 1)));
        assert!(matches!(c.validate(), Err(ConfigError::ExternalAddressInsideInternalPrefix { .. })));
    }
}
