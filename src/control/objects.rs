//! The NetNat objects as the cmdlets print them: one struct per CIM class, fields named and
//! ordered as PowerShell shows them, serialised with the CIM property names (`-o json`).
//!
//! Layouts: `MSFT_NetNat` and `MSFT_NetNatStaticMapping` follow the Format-List samples in
//! `shared/reference/winnat-semantics.md`; `MSFT_NetNatSession` follows the sample in the
//! seed article; `MSFT_NetNatExternalAddress` and `MSFT_NetNatGlobal` have no published
//! layout, so they use the class property order (id, owner, values, Active). Every block pads
//! its labels to its longest label, as PowerShell's Format-List does.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// The `InternalRoutingDomainId` of everything netnat creates (netnat has no routing domains).
pub const NULL_ROUTING_DOMAIN: &str = "{00000000-0000-0000-0000-000000000000}";

/// An object that Format-List can print.
pub trait ListView {
    /// Label and value of each row, in display order.
    fn rows(&self) -> Vec<(&'static str, String)>;

    /// netnat's own rows, after WinNAT's, shown only with `-o all` (PowerShell's
    /// `Format-List *` shows properties the default view leaves out in the same way).
    fn extension_rows(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

/// `MSFT_NetNat`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetNat {
    /// Name.
    pub name: String,
    /// ExternalIPInterfaceAddressPrefix (empty unless given to New-NetNat).
    #[serde(rename = "ExternalIPInterfaceAddressPrefix")]
    pub external_ip_interface_address_prefix: String,
    /// InternalIPInterfaceAddressPrefix.
    #[serde(rename = "InternalIPInterfaceAddressPrefix")]
    pub internal_ip_interface_address_prefix: String,
    /// IcmpQueryTimeout, seconds.
    pub icmp_query_timeout: u32,
    /// TcpEstablishedConnectionTimeout, seconds.
    pub tcp_established_connection_timeout: u32,
    /// TcpTransientConnectionTimeout, seconds.
    pub tcp_transient_connection_timeout: u32,
    /// TcpFilteringBehavior.
    pub tcp_filtering_behavior: String,
    /// UdpFilteringBehavior.
    pub udp_filtering_behavior: String,
    /// UdpIdleSessionTimeout, seconds.
    pub udp_idle_session_timeout: u32,
    /// UdpInboundRefresh.
    pub udp_inbound_refresh: bool,
    /// Store (always `Local`).
    pub store: String,
    /// Active.
    pub active: bool,
    /// netnat's extension, not a WinNAT property: the filter policy, when one is set. Left
    /// out of the JSON when none is and never in the default list, so WinNAT's layout stays
    /// as it is; `-o all` lists it after WinNAT's rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_policy: Option<FilterPolicyInfo>,
}

/// What Get-NetNat shows of a filter policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FilterPolicyInfo {
    /// The file it was read from.
    pub path: String,
    /// Its fallback behaviour; empty: the NAT's TcpFilteringBehavior / UdpFilteringBehavior.
    pub fallback: String,
    /// How many rules.
    pub rules: usize,
    /// How many rate limits.
    pub limits: usize,
    /// For a WASM module: how it runs (`on_error deny, 100000 fuel per decision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
}

impl std::fmt::Display for FilterPolicyInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(how) = &self.module {
            return write!(f, "{} (WASM module, {how})", self.path);
        }
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        write!(f, "{} ({}, {}", self.path, plural(self.rules, "rule"), plural(self.limits, "limit"))?;
        match self.fallback.as_str() {
            "" => write!(f, ", fallback: the NAT's filtering behaviours)"),
            b => write!(f, ", fallback {b})"),
        }
    }
}

impl ListView for NetNat {
    fn rows(&self) -> Vec<(&'static str, String)> {
        vec![
            ("Name", self.name.clone()),
            ("ExternalIPInterfaceAddressPrefix", self.external_ip_interface_address_prefix.clone()),
            ("InternalIPInterfaceAddressPrefix", self.internal_ip_interface_address_prefix.clone()),
            ("IcmpQueryTimeout", self.icmp_query_timeout.to_string()),
            ("TcpEstablishedConnectionTimeout", self.tcp_established_connection_timeout.to_string()),
            ("TcpTransientConnectionTimeout", self.tcp_transient_connection_timeout.to_string()),
            ("TcpFilteringBehavior", self.tcp_filtering_behavior.clone()),
            ("UdpFilteringBehavior", self.udp_filtering_behavior.clone()),
            ("UdpIdleSessionTimeout", self.udp_idle_session_timeout.to_string()),
            ("UdpInboundRefresh", ps_bool(self.udp_inbound_refresh)),
            ("Store", self.store.clone()),
            ("Active", ps_bool(self.active)),
        ]
    }

    fn extension_rows(&self) -> Vec<(&'static str, String)> {
        vec![("FilterPolicy", self.filter_policy.as_ref().map(ToString::to_string).unwrap_or_default())]
    }
}

/// `MSFT_NetNatStaticMapping`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetNatStaticMapping {
    /// StaticMappingID.
    #[serde(rename = "StaticMappingID")]
    pub static_mapping_id: u32,
    /// NatName.
    pub nat_name: String,
    /// Protocol (`TCP` or `UDP`).
    pub protocol: String,
    /// RemoteExternalIPAddressPrefix.
    #[serde(rename = "RemoteExternalIPAddressPrefix")]
    pub remote_external_ip_address_prefix: String,
    /// ExternalIPAddress.
    #[serde(rename = "ExternalIPAddress")]
    pub external_ip_address: String,
    /// ExternalPort.
    pub external_port: u16,
    /// InternalIPAddress.
    #[serde(rename = "InternalIPAddress")]
    pub internal_ip_address: String,
    /// InternalPort.
    pub internal_port: u16,
    /// InternalRoutingDomainId.
    pub internal_routing_domain_id: String,
    /// Active.
    pub active: bool,
}

impl ListView for NetNatStaticMapping {
    fn rows(&self) -> Vec<(&'static str, String)> {
        vec![
            ("StaticMappingID", self.static_mapping_id.to_string()),
            ("NatName", self.nat_name.clone()),
            ("Protocol", self.protocol.clone()),
            ("RemoteExternalIPAddressPrefix", self.remote_external_ip_address_prefix.clone()),
            ("ExternalIPAddress", self.external_ip_address.clone()),
            ("ExternalPort", self.external_port.to_string()),
            ("InternalIPAddress", self.internal_ip_address.clone()),
            ("InternalPort", self.internal_port.to_string()),
            ("InternalRoutingDomainId", self.internal_routing_domain_id.clone()),
            ("Active", ps_bool(self.active)),
        ]
    }
}

/// `MSFT_NetNatExternalAddress`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetNatExternalAddress {
    /// ExternalAddressID.
    #[serde(rename = "ExternalAddressID")]
    pub external_address_id: u32,
    /// NatName.
    pub nat_name: String,
    /// IPAddress.
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    /// PortStart.
    pub port_start: u16,
    /// PortEnd.
    pub port_end: u16,
    /// Active.
    pub active: bool,
}

impl ListView for NetNatExternalAddress {
    fn rows(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ExternalAddressID", self.external_address_id.to_string()),
            ("NatName", self.nat_name.clone()),
            ("IPAddress", self.ip_address.clone()),
            ("PortStart", self.port_start.to_string()),
            ("PortEnd", self.port_end.to_string()),
            ("Active", ps_bool(self.active)),
        ]
    }
}

/// `MSFT_NetNatSession`: one session row, the one type for every output that lists
/// sessions (`Get-NetNatSession` over the control protocol, `netnat replay --sessions`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetNatSession {
    /// NatName.
    pub nat_name: String,
    /// InternalRoutingDomainId: WinNAT's property, which the daemon shows; replay has no
    /// routing domains and leaves it out (`None`: no key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_routing_domain_id: Option<String>,
    /// CreationTime: local time `yyyy/MM/dd HH:mm:ss` as in the seed article from the daemon;
    /// capture time `YYYY-MM-DDTHH:MM:SS.ffffffZ` from replay.
    pub creation_time: String,
    /// Protocol, the IP protocol number (1 ICMP, 6 TCP, 17 UDP).
    pub protocol: u8,
    /// InternalSourceAddress.
    pub internal_source_address: Ipv4Addr,
    /// InternalSourcePort (ICMP identifier for ICMP).
    pub internal_source_port: u16,
    /// InternalDestinationAddress.
    pub internal_destination_address: Ipv4Addr,
    /// InternalDestinationPort.
    pub internal_destination_port: u16,
    /// ExternalSourceAddress.
    pub external_source_address: Ipv4Addr,
    /// ExternalSourcePort.
    pub external_source_port: u16,
    /// ExternalDestinationAddress.
    pub external_destination_address: Ipv4Addr,
    /// ExternalDestinationPort.
    pub external_destination_port: u16,
    /// netnat's extension (`Get-NetNatSession -Detailed`, `replay --sessions-detailed`),
    /// after WinNAT's properties; absent (no keys, no rows) otherwise, so the default output
    /// stays WinNAT's.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<SessionDetail>,
}

impl NetNatSession {
    /// The row of the engine's session `s`, its creation time already formatted by the
    /// caller's clock, with netnat's detail at `detailed_at` when given.
    pub fn of(
        s: &netnat_engine::SessionInfo,
        creation_time: String,
        internal_routing_domain_id: Option<String>,
        detailed_at: Option<netnat_engine::Instant>,
    ) -> NetNatSession {
        NetNatSession {
            nat_name: s.nat_name.clone(),
            internal_routing_domain_id,
            creation_time,
            protocol: s.protocol,
            internal_source_address: s.internal_source_address,
            internal_source_port: s.internal_source_port,
            internal_destination_address: s.internal_destination_address,
            internal_destination_port: s.internal_destination_port,
            external_source_address: s.external_source_address,
            external_source_port: s.external_source_port,
            external_destination_address: s.external_destination_address,
            external_destination_port: s.external_destination_port,
            detail: detailed_at.map(|now| SessionDetail::of(s, now)),
        }
    }
}

/// What netnat adds to a session row on request (`Get-NetNatSession -Detailed`, `netnat
/// replay --sessions-detailed`): read from the engine's session table, which keeps a
/// session's last packet time and TCP state for its timers, and its packets and bytes each
/// way when the NAT counts them (`--session-counters`: off by default, as counting writes
/// the session on every packet of the fast path).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SessionDetail {
    /// Seconds since a packet last restarted its idle timer (millisecond resolution).
    pub idle_seconds: f64,
    /// Seconds until it expires if no packet comes; 0 once expired (an expired session is
    /// listed until the sweep removes it).
    pub time_left_seconds: f64,
    /// The idle timeout in force for it: UdpIdleSessionTimeout, IcmpQueryTimeout, or for TCP
    /// TcpEstablishedConnectionTimeout or TcpTransientConnectionTimeout by its state.
    pub timeout_seconds: u64,
    /// TCP only: `Opening` (no completed handshake seen), `Established`, `Closing` (FIN one
    /// way), `Closed` (FIN both ways), `Reset`; `null` for UDP and ICMP.
    pub tcp_state: Option<String>,
    /// `Outbound` (the internal host's first packet opened it) or `Inbound` (a remote's, through
    /// a static mapping or a mapping the filtering admitted it to).
    pub opened_direction: String,
    /// Packets from the internal host (with `--session-counters`; absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets_out: Option<u64>,
    /// Packets to the internal host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets_in: Option<u64>,
    /// Bytes (IPv4 total length) from the internal host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    /// Bytes to the internal host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
}

impl SessionDetail {
    /// The detail of `s` at `now` (on the engine's clock).
    pub fn of(s: &netnat_engine::SessionInfo, now: netnat_engine::Instant) -> SessionDetail {
        // Milliseconds, the idle time rounded and the time left derived from it, so the two
        // add up to the timeout exactly (the idle timer itself is up to 1 ms stale).
        let idle_ms = (s.idle(now).as_micros() + 500) / 1000;
        let timeout_ms = s.timeout.as_millis();
        SessionDetail {
            idle_seconds: idle_ms as f64 / 1000.0,
            time_left_seconds: timeout_ms.saturating_sub(idle_ms) as f64 / 1000.0,
            timeout_seconds: s.timeout.as_secs(),
            tcp_state: s.tcp_state.map(|t| t.name().to_owned()),
            opened_direction: if s.opened_inbound { "Inbound" } else { "Outbound" }.to_owned(),
            packets_out: s.counters.map(|c| c.packets_out),
            packets_in: s.counters.map(|c| c.packets_in),
            bytes_out: s.counters.map(|c| c.bytes_out),
            bytes_in: s.counters.map(|c| c.bytes_in),
        }
    }

    /// Its Format-List rows.
    fn rows(&self) -> Vec<(&'static str, String)> {
        vec![
            ("IdleSeconds", self.idle_seconds.to_string()),
            ("TimeLeftSeconds", self.time_left_seconds.to_string()),
            ("TimeoutSeconds", self.timeout_seconds.to_string()),
            ("TcpState", self.tcp_state.clone().unwrap_or_default()),
            ("OpenedDirection", self.opened_direction.clone()),
        ]
        .into_iter()
        .chain(
            [
                ("PacketsOut", self.packets_out),
                ("PacketsIn", self.packets_in),
                ("BytesOut", self.bytes_out),
                ("BytesIn", self.bytes_in),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v.to_string()))),
        )
        .collect()
    }
}

impl ListView for NetNatSession {
    fn rows(&self) -> Vec<(&'static str, String)> {
        let routing_domain = self.internal_routing_domain_id.iter().map(|d| ("InternalRoutingDomainId", d.clone()));
        [("NatName", self.nat_name.clone())]
            .into_iter()
            .chain(routing_domain)
            .chain([
                ("CreationTime", self.creation_time.clone()),
                ("Protocol", self.protocol.to_string()),
                ("InternalSourceAddress", self.internal_source_address.to_string()),
                ("InternalSourcePort", self.internal_source_port.to_string()),
                ("InternalDestinationAddress", self.internal_destination_address.to_string()),
                ("InternalDestinationPort", self.internal_destination_port.to_string()),
                ("ExternalSourceAddress", self.external_source_address.to_string()),
                ("ExternalSourcePort", self.external_source_port.to_string()),
                ("ExternalDestinationAddress", self.external_destination_address.to_string()),
                ("ExternalDestinationPort", self.external_destination_port.to_string()),
            ])
            .chain(self.detail.iter().flat_map(SessionDetail::rows))
            .collect()
    }
}

/// `MSFT_NetNatGlobal`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetNatGlobal {
    /// InterRoutingDomainHairpinningMode (`External` or `Local`).
    pub inter_routing_domain_hairpinning_mode: String,
}

impl ListView for NetNatGlobal {
    fn rows(&self) -> Vec<(&'static str, String)> {
        vec![("InterRoutingDomainHairpinningMode", self.inter_routing_domain_hairpinning_mode.clone())]
    }
}

/// PowerShell's spelling of a boolean.
pub fn ps_bool(b: bool) -> String {
    if b { "True" } else { "False" }.to_owned()
}

/// Renders objects the way PowerShell's Format-List prints them: a blank line, then each
/// object's rows (labels padded to the longest label of the block, then ` : `, then the
/// value; no trailing blank for an empty value) followed by a blank line, and one more blank
/// line at the end. Nothing at all for no objects.
pub fn format_list<T: ListView>(objects: &[T]) -> String {
    format_list_with(objects, false)
}

/// [`format_list`] with netnat's extension rows after WinNAT's (`-o all`).
pub fn format_list_all<T: ListView>(objects: &[T]) -> String {
    format_list_with(objects, true)
}

fn format_list_with<T: ListView>(objects: &[T], extensions: bool) -> String {
    if objects.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n");
    for object in objects {
        let mut rows = object.rows();
        if extensions {
            rows.extend(object.extension_rows());
        }
        let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
        for (label, value) in rows {
            let line = format!("{label:<width$} : {value}");
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out.push('\n');
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn winnat() -> NetNat {
        NetNat {
            name: "ContainerNat".into(),
            external_ip_interface_address_prefix: String::new(),
            internal_ip_interface_address_prefix: "172.16.0.0/12".into(),
            icmp_query_timeout: 30,
            tcp_established_connection_timeout: 1800,
            tcp_transient_connection_timeout: 120,
            tcp_filtering_behavior: "AddressDependentFiltering".into(),
            udp_filtering_behavior: "AddressDependentFiltering".into(),
            udp_idle_session_timeout: 120,
            udp_inbound_refresh: false,
            store: "Local".into(),
            active: true,
            filter_policy: None,
        }
    }

    #[test]
    fn the_filter_policy_is_an_extension_outside_winnats_layout() {
        let mut nat = winnat();
        nat.filter_policy = Some(FilterPolicyInfo {
            path: "/etc/netnat/policy.toml".into(),
            fallback: String::new(),
            rules: 2,
            limits: 1,
            module: None,
        });
        assert_eq!(format_list(std::slice::from_ref(&nat)), format_list(&[winnat()]), "the default list is WinNAT's");
        let all = format_list_all(std::slice::from_ref(&nat));
        assert!(
            all.contains("Active                           : True\nFilterPolicy                     : /etc/netnat/policy.toml (2 rules, 1 limit, fallback: the NAT's filtering behaviours)\n"),
            "{all}"
        );
        let json = serde_json::to_value(&nat).unwrap();
        assert_eq!(json["FilterPolicy"]["Rules"], 2);
        assert!(serde_json::to_value(winnat()).unwrap().get("FilterPolicy").is_none(), "no key without a policy");
        let back: NetNat = serde_json::from_value(json).unwrap();
        assert_eq!(back, nat);
    }

    #[test]
    fn get_netnat_matches_the_published_sample_byte_for_byte() {
        let expected = "
Name                             : ContainerNat
ExternalIPInterfaceAddressPrefix :
InternalIPInterfaceAddressPrefix : 172.16.0.0/12
IcmpQueryTimeout                 : 30
TcpEstablishedConnectionTimeout  : 1800
TcpTransientConnectionTimeout    : 120
TcpFilteringBehavior             : AddressDependentFiltering
UdpFilteringBehavior             : AddressDependentFiltering
UdpIdleSessionTimeout            : 120
UdpInboundRefresh                : False
Store                            : Local
Active                           : True


";
        assert_eq!(format_list(&[winnat()]), expected);
    }

    #[test]
    fn static_mapping_matches_the_published_sample() {
        let m = NetNatStaticMapping {
            static_mapping_id: 1,
            nat_name: "ContainerNat".into(),
            protocol: "TCP".into(),
            remote_external_ip_address_prefix: "0.0.0.0/0".into(),
            external_ip_address: "0.0.0.0".into(),
            external_port: 80,
            internal_ip_address: "172.16.0.2".into(),
            internal_port: 80,
            internal_routing_domain_id: NULL_ROUTING_DOMAIN.into(),
            active: true,
        };
        let expected = "
StaticMappingID               : 1
NatName                       : ContainerNat
Protocol                      : TCP
RemoteExternalIPAddressPrefix : 0.0.0.0/0
ExternalIPAddress             : 0.0.0.0
ExternalPort                  : 80
InternalIPAddress             : 172.16.0.2
InternalPort                  : 80
InternalRoutingDomainId       : {00000000-0000-0000-0000-000000000000}
Active                        : True


";
        assert_eq!(format_list(&[m]), expected);
    }

    #[test]
    fn several_objects_are_separated_by_one_blank_line_and_none_print_nothing() {
        let two = format_list(&[winnat(), winnat()]);
        assert!(two.contains("Active                           : True\n\nName"));
        assert!(two.ends_with("True\n\n\n"));
        assert_eq!(format_list::<NetNat>(&[]), "");
    }

    fn session(detail: Option<SessionDetail>) -> NetNatSession {
        NetNatSession {
            nat_name: "WinNAT".into(),
            internal_routing_domain_id: Some(NULL_ROUTING_DOMAIN.into()),
            creation_time: "2026/11/27 10:04:27".into(),
            protocol: 17,
            internal_source_address: Ipv4Addr::new(10, 100, 10, 11),
            internal_source_port: 5000,
            internal_destination_address: Ipv4Addr::new(203, 0, 113, 10),
            internal_destination_port: 53,
            external_source_address: Ipv4Addr::new(203, 0, 113, 1),
            external_source_port: 5000,
            external_destination_address: Ipv4Addr::new(203, 0, 113, 10),
            external_destination_port: 53,
            detail,
        }
    }

    /// Without -Detailed the rows and the JSON are WinNAT's; with it, five rows follow and the
    /// JSON has five more keys, which read back.
    #[test]
    fn session_detail_is_only_there_when_asked_for() {
        let plain = format_list(&[session(None)]);
        assert!(plain.ends_with("ExternalDestinationPort    : 53\n\n\n"), "{plain}");
        assert_eq!(format_list_all(&[session(None)]), plain);
        let json = serde_json::to_value(session(None)).unwrap();
        assert_eq!(json.as_object().unwrap().len(), 12);
        let detail = SessionDetail {
            idle_seconds: 3.5,
            time_left_seconds: 116.5,
            timeout_seconds: 120,
            tcp_state: None,
            opened_direction: "Outbound".into(),
            packets_out: None,
            packets_in: None,
            bytes_out: None,
            bytes_in: None,
        };
        let detailed = format_list(&[session(Some(detail.clone()))]);
        assert!(
            detailed.ends_with(
                "ExternalDestinationPort    : 53\nIdleSeconds                : 3.5\nTimeLeftSeconds            : 116.5\n\
                 TimeoutSeconds             : 120\nTcpState                   :\nOpenedDirection            : Outbound\n\n\n"
            ),
            "{detailed}"
        );
        let json = serde_json::to_value(session(Some(detail))).unwrap();
        assert_eq!((json["IdleSeconds"].as_f64(), json["TcpState"].is_null()), (Some(3.5), true));
        let back: NetNatSession = serde_json::from_value(json).unwrap();
        assert_eq!(back.detail.map(|d| d.timeout_seconds), Some(120));
        let back: NetNatSession = serde_json::from_value(serde_json::to_value(session(None)).unwrap()).unwrap();
        assert_eq!(back.detail, None);
        // Counted sessions (--session-counters) add four rows.
        let counted = SessionDetail {
            idle_seconds: 0.0,
            time_left_seconds: 120.0,
            timeout_seconds: 120,
            tcp_state: None,
            opened_direction: "Outbound".into(),
            packets_out: Some(3),
            packets_in: Some(2),
            bytes_out: Some(300),
            bytes_in: Some(1500),
        };
        let list = format_list(&[session(Some(counted))]);
        assert!(
            list.ends_with(
                "OpenedDirection            : Outbound\nPacketsOut                 : 3\nPacketsIn                  : 2\n\
                 BytesOut                   : 300\nBytesIn                    : 1500\n\n\n"
            ),
            "{list}"
        );
    }

    #[test]
    fn json_uses_the_cim_property_names() {
        let v = serde_json::to_value(winnat()).unwrap();
        assert_eq!(v["InternalIPInterfaceAddressPrefix"], "172.16.0.0/12");
        assert_eq!(v["UdpInboundRefresh"], false);
        let g =
            serde_json::to_value(NetNatGlobal { inter_routing_domain_hairpinning_mode: "External".into() }).unwrap();
        assert_eq!(g["InterRoutingDomainHairpinningMode"], "External");
    }
}
