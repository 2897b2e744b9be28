//! `--sessions-json`: the session table as `Get-NetNatSession | ConvertTo-Json` would give it,
//! with the NetNatSession property names, Protocol as the IP protocol number and CreationTime
//! as an RFC 3339 UTC time with microseconds (the pcap timestamp of the session's first packet).
//! The rows are the daemon's [`NetNatSession`], without InternalRoutingDomainId.
//! With `--sessions-detailed` each row also has netnat's `SessionDetail` fields, the same as
//! `Get-NetNatSession -Detailed`, at the capture's last timestamp.

use netnat_engine::{Instant, SessionInfo};

use crate::control::objects::NetNatSession;

/// The rows of `sessions`, oldest first (ties broken by the other fields), so the file is the
/// same for the same input whatever order the engine's shards return; with netnat's detail at
/// `detailed_at` when given.
pub fn rows(sessions: &[SessionInfo], detailed_at: Option<Instant>) -> Vec<NetNatSession> {
    let mut sorted: Vec<&SessionInfo> = sessions.iter().collect();
    sorted.sort_by_key(|s| {
        (
            s.creation_time,
            s.protocol,
            s.internal_source_address,
            s.internal_source_port,
            s.internal_destination_address,
            s.internal_destination_port,
        )
    });
    // No routing domains in a capture: no InternalRoutingDomainId key.
    sorted
        .into_iter()
        .map(|s| NetNatSession::of(s, rfc3339_micros(s.creation_time.as_micros()), None, detailed_at))
        .collect()
}

/// `micros` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn rfc3339_micros(micros: u64) -> String {
    let secs = micros / 1_000_000;
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60,
        micros % 1_000_000
    )
}

/// The proleptic Gregorian (year, month, day) of `days` after 1970-01-01 (H. Hinnant's
/// `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use netnat_engine::Instant;

    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        // 2000-02-29 (leap day) 12:34:56.000007
        assert_eq!(rfc3339_micros(951_827_696_000_007), "2000-02-29T12:34:56.000007Z");
        // 2026-11-27 10:04:27.333630, the kernel sample's first packet
        assert_eq!(rfc3339_micros(1_795_773_867_333_630), "2026-11-27T10:04:27.333630Z");
        assert_eq!(rfc3339_micros(4_107_542_399_999_999), "2100-02-28T23:59:59.999999Z");
    }

    #[test]
    fn rows_use_netnatsession_names_and_sort_by_creation() {
        let session = |t: u64, port: u16| SessionInfo {
            nat_name: "WinNAT".into(),
            protocol: 17,
            creation_time: Instant::from_micros(t),
            internal_source_address: Ipv4Addr::new(10, 100, 10, 11),
            internal_source_port: port,
            internal_destination_address: Ipv4Addr::new(203, 0, 113, 10),
            internal_destination_port: 53,
            external_source_address: Ipv4Addr::new(203, 0, 113, 1),
            external_source_port: port,
            external_destination_address: Ipv4Addr::new(203, 0, 113, 10),
            external_destination_port: 53,
            last_seen: Instant::from_micros(t),
            timeout: netnat_engine::Duration::from_secs(120),
            tcp_state: None,
            opened_inbound: false,
            counters: None,
        };
        let rows = rows(&[session(2_000_000, 2), session(1_000_000, 1)], None);
        assert_eq!(rows[0].internal_source_port, 1);
        let json = serde_json::to_value(&rows[0]).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = vec![
            "NatName",
            "Protocol",
            "CreationTime",
            "InternalSourceAddress",
            "InternalSourcePort",
            "InternalDestinationAddress",
            "InternalDestinationPort",
            "ExternalSourceAddress",
            "ExternalSourcePort",
            "ExternalDestinationAddress",
            "ExternalDestinationPort",
        ];
        expected.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(json["InternalSourceAddress"], "10.100.10.11");
        assert_eq!(json["CreationTime"], "1970-01-01T00:00:01.000000Z");
    }

    #[test]
    fn detailed_rows_add_netnat_fields_at_the_given_time() {
        let tcp = SessionInfo {
            nat_name: "WinNAT".into(),
            protocol: 6,
            creation_time: Instant::from_secs(10),
            internal_source_address: Ipv4Addr::new(10, 100, 10, 11),
            internal_source_port: 40000,
            internal_destination_address: Ipv4Addr::new(203, 0, 113, 10),
            internal_destination_port: 80,
            external_source_address: Ipv4Addr::new(203, 0, 113, 1),
            external_source_port: 40000,
            external_destination_address: Ipv4Addr::new(203, 0, 113, 10),
            external_destination_port: 80,
            last_seen: Instant::from_millis(12_250),
            timeout: netnat_engine::Duration::from_secs(1800),
            tcp_state: Some(netnat_engine::TcpState::Established),
            opened_inbound: true,
            counters: None,
        };
        let rows = rows(std::slice::from_ref(&tcp), Some(Instant::from_secs(20)));
        let json = serde_json::to_value(&rows[0]).unwrap();
        assert_eq!(json["IdleSeconds"], 7.75);
        assert_eq!(json["TimeLeftSeconds"], 1792.25);
        assert_eq!(json["TimeoutSeconds"], 1800);
        assert_eq!(json["TcpState"], "Established");
        assert_eq!(json["OpenedDirection"], "Inbound");
        assert_eq!(json.as_object().unwrap().len(), 11 + 5);
    }
}
