//! The session snapshot: one row per session with exactly the NetNatSession properties.

use std::net::Ipv4Addr;

use crate::time::Instant;

/// One active session, as `Get-NetNatSession` shows it. For outbound-initiated sessions the
/// internal destination equals the external destination (the remote); for hairpinned ones the
/// internal destination is the other internal host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// NatName.
    pub nat_name: String,
    /// Protocol, as the IP protocol number (1 ICMP, 6 TCP, 17 UDP).
    pub protocol: u8,
    /// CreationTime, on the caller's clock.
    pub creation_time: Instant,
    /// InternalSourceAddress.
    pub internal_source_address: Ipv4Addr,
    /// InternalSourcePort (the ICMP identifier for ICMP).
    pub internal_source_port: u16,
    /// InternalDestinationAddress.
    pub internal_destination_address: Ipv4Addr,
    /// InternalDestinationPort.
    pub internal_destination_port: u16,
    /// ExternalSourceAddress: the address the remote sees.
    pub external_source_address: Ipv4Addr,
    /// ExternalSourcePort (the translated ICMP identifier for ICMP).
    pub external_source_port: u16,
    /// ExternalDestinationAddress.
    pub external_destination_address: Ipv4Addr,
    /// ExternalDestinationPort.
    pub external_destination_port: u16,
}
