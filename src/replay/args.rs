//! The command line of `netnat replay` (design §3.1) and the parsers of its values.
//!
//! Every NAT setting is an `Option` (or an empty list) here so that a `--config` file can
//! supply what the command line leaves out; [`NatSettings::or`] merges the two, the command
//! line winning. Value parsers are shared with the config file so both accept the same text
//! and give the same errors.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use netnat_engine::{FilteringBehavior, HairpinningMode, PortAllocation, Protocol, StaticMapping};

use super::expect::Ignore;

/// Arguments of `netnat replay`.
#[derive(Debug, clap::Args)]
#[command(
    args_override_self = true,
    about = "Translate a pcap/pcapng capture through the NAT engine, using packet timestamps as the clock",
    after_help = "Examples:\n  \
netnat replay in.pcap -o out.pcap --internal-prefix 10.100.0.0/16 --external-address 203.0.113.1\n  \
netnat replay in.pcapng -o out.pcap --config nat.toml --udp-filtering EndpointIndependentFiltering \\\n      \
--static-mapping tcp:0.0.0.0:8080=10.100.10.11:80 --sessions-json sessions.json\n  \
netnat replay in.pcap -o annotated.pcapng --drops drops.pcapng --config nat.toml   # every packet commented\n  \
netnat replay in.pcap --expect golden.pcap --config nat.toml --ignore ttl,ip-checksum\n\n\
Every setting can also come from --config FILE (TOML, keys are the long flag names with '_' for '-',\n\
e.g. internal_prefix = \"10.100.0.0/16\", external_address = [\"203.0.113.1\"]); flags override the file.\n\n\
pcapng output: each packet carries a comment (Wireshark's packet comment, tshark's frame.comment), e.g.\n  \
verdict: translated; direction: outbound; session: 10.100.0.2:40000 -> 203.0.113.1:1025 -> 198.51.100.7:53 udp;\n  \
in: 10.100.0.2:40000 -> 198.51.100.7:53 udp\n\
(session: internal -> external -> remote); drops say `verdict: dropped; reason: NAME; packet: ...`.\n\n\
Exit status: 0 done (and the output matches --expect), 1 error, 2 bad command line,\n\
3 the output differs from --expect (the differences are printed on stderr)."
)]
pub struct ReplayArgs {
    /// Capture to translate: pcap or pcapng, link type Ethernet, raw IP (101) or IPv4 (228).
    #[arg(value_name = "INPUT")]
    pub input: PathBuf,

    /// TOML file with any of the settings below; command-line flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print no summary at the end.
    #[arg(short, long)]
    pub quiet: bool,

    /// The NAT and output settings.
    #[command(flatten)]
    pub settings: Box<NatSettings>,
}

/// Everything that may come from the command line or the config file.
#[derive(Debug, Default, Clone, PartialEq, Eq, clap::Args)]
pub struct NatSettings {
    /// Where to write the translated capture (link type of INPUT): pcap, or pcapng with a comment
    /// per packet when the name ends in .pcapng (see --format); `-` writes to stdout.
    #[arg(short, long, value_name = "OUTPUT")]
    pub output: Option<PathBuf>,

    /// Format of -o and --drops: pcap, or pcapng (every packet with a comment saying what the NAT
    /// did) [default: pcapng for names ending in .pcapng, pcap otherwise].
    #[arg(long, value_name = "pcap|pcapng")]
    pub format: Option<CaptureFormat>,

    /// Compare the output with this capture (pcap or pcapng) packet by packet and field by field;
    /// exit with status 3 and print the differences when they differ. -o is optional then.
    #[arg(long, value_name = "EXPECTED")]
    pub expect: Option<PathBuf>,

    /// What --expect does not compare, comma-separated: ttl (the outer TTL), ip-checksum (its
    /// value; it must be correct), external-port (ours may differ but must map one to one per
    /// flow), mac (Ethernet addresses), order (packets may move up to 8 places), time.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = super::expect::parse_ignore)]
    pub ignore: Vec<Ignore>,

    /// InternalIPInterfaceAddressPrefix: the subnet behind the NAT, e.g. 10.100.0.0/16.
    #[arg(long, value_name = "PREFIX", value_parser = parse_prefix)]
    pub internal_prefix: Option<Ipv4Net>,

    /// An external address (NetNatExternalAddress) to translate to; repeat for several.
    #[arg(long = "external-address", value_name = "ADDRESS", value_parser = parse_address)]
    pub external_address: Vec<Ipv4Addr>,

    /// PortStart-PortEnd of every external address [default: 1024-65535].
    #[arg(long, value_name = "START-END", value_parser = parse_port_range)]
    pub port_range: Option<PortRange>,

    /// How external ports are chosen: random (seeded, RFC 6056) or preserve (keep the internal
    /// port when free, like Linux) [default: random].
    #[arg(long, value_name = "POLICY")]
    pub port_allocation: Option<PortAllocation>,

    /// UdpIdleSessionTimeout in seconds [default: 120].
    #[arg(long, value_name = "SECONDS", value_parser = parse_timeout)]
    pub udp_idle_timeout: Option<u64>,

    /// TcpEstablishedConnectionTimeout in seconds [default: 1800].
    #[arg(long, value_name = "SECONDS", value_parser = parse_timeout)]
    pub tcp_established_timeout: Option<u64>,

    /// TcpTransientConnectionTimeout in seconds [default: 120].
    #[arg(long, value_name = "SECONDS", value_parser = parse_timeout)]
    pub tcp_transient_timeout: Option<u64>,

    /// IcmpQueryTimeout in seconds [default: 30].
    #[arg(long, value_name = "SECONDS", value_parser = parse_timeout)]
    pub icmp_query_timeout: Option<u64>,

    /// UdpFilteringBehavior: EndpointIndependentFiltering, AddressDependentFiltering or
    /// AddressAndPortDependentFiltering [default: AddressDependentFiltering].
    #[arg(long, value_name = "BEHAVIOR")]
    pub udp_filtering: Option<FilteringBehavior>,

    /// TcpFilteringBehavior, same values [default: AddressDependentFiltering].
    #[arg(long, value_name = "BEHAVIOR")]
    pub tcp_filtering: Option<FilteringBehavior>,

    /// UdpInboundRefresh: whether inbound packets refresh UDP sessions [default: false].
    #[arg(long, value_name = "true|false", value_parser = parse_bool)]
    pub udp_inbound_refresh: Option<bool>,

    /// A static mapping (port forwarding): PROTO:EXTADDR:EXTPORT=INTADDR[:INTPORT][@REMOTE_PREFIX],
    /// e.g. tcp:0.0.0.0:8080=10.100.10.11:80 (0.0.0.0 = every external address; INTPORT defaults
    /// to EXTPORT; REMOTE_PREFIX defaults to 0.0.0.0/0). Repeat for several.
    #[arg(long, value_name = "MAPPING", value_parser = parse_static_mapping)]
    pub static_mapping: Vec<StaticMapping>,

    /// Most sessions the NAT holds at once.
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    pub max_sessions: Option<usize>,

    /// Most sessions one internal host holds at once.
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    pub max_sessions_per_host: Option<usize>,

    /// Seed of the port-choice PRNG (same seed, same ports) [default: 0].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// The NAT's Name, shown as NatName in --sessions-json [default: WinNAT].
    #[arg(long, value_name = "NAME")]
    pub nat_name: Option<String>,

    /// A filtering policy file (TOML: ordered allow/deny rules, a fallback behaviour, per-host
    /// inbound rate limits; see the README's "Custom filtering").
    #[arg(long, value_name = "FILE")]
    pub filter_policy: Option<PathBuf>,

    /// Hairpinning mode (Set-NetNatGlobal): External or Local [default: External].
    #[arg(long, value_name = "MODE")]
    pub hairpinning: Option<HairpinningMode>,

    /// Also write the dropped packets, as they came in, to this capture: pcap, or pcapng with each
    /// packet's drop reason as its comment (see --format).
    #[arg(long, value_name = "FILE")]
    pub drops: Option<PathBuf>,

    /// Write the session table at the end as JSON (Get-NetNatSession's property names).
    #[arg(long, value_name = "FILE")]
    pub sessions_json: Option<PathBuf>,

    /// Add netnat's fields to each --sessions-json row (Get-NetNatSession -Detailed): IdleSeconds,
    /// TimeLeftSeconds and TimeoutSeconds at the capture's last timestamp, TcpState, OpenedDirection.
    #[arg(long)]
    pub sessions_detailed: bool,

    /// Count packets and bytes per session and direction (PacketsOut, PacketsIn, BytesOut,
    /// BytesIn in --sessions-detailed rows); off by default, as counting writes each session on
    /// every packet.
    #[arg(long)]
    pub session_counters: bool,

    /// Write the NAT's session events as JSON lines, in capture time: mappings and sessions
    /// created and deleted (with the reason: idle_timeout, tcp_closed, removed), ports exhausted,
    /// limits reached.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,

    /// Send the same events as IPFIX (RFC 7011, with RFC 8158's NAT event fields) over UDP to
    /// a collector, e.g. nfdump's `nfcapd -p 4739`, with capture times.
    #[arg(long, value_name = "ADDR:PORT")]
    pub ipfix_collector: Option<std::net::SocketAddr>,

    /// Write the counters at the end as JSON.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
}

impl NatSettings {
    /// These settings, with the gaps filled from `lower` (the config file).
    pub fn or(self, lower: NatSettings) -> NatSettings {
        fn list<T>(upper: Vec<T>, lower: Vec<T>) -> Vec<T> {
            if upper.is_empty() {
                lower
            } else {
                upper
            }
        }
        NatSettings {
            output: self.output.or(lower.output),
            format: self.format.or(lower.format),
            expect: self.expect.or(lower.expect),
            ignore: list(self.ignore, lower.ignore),
            internal_prefix: self.internal_prefix.or(lower.internal_prefix),
            external_address: list(self.external_address, lower.external_address),
            port_range: self.port_range.or(lower.port_range),
            port_allocation: self.port_allocation.or(lower.port_allocation),
            udp_idle_timeout: self.udp_idle_timeout.or(lower.udp_idle_timeout),
            tcp_established_timeout: self.tcp_established_timeout.or(lower.tcp_established_timeout),
            tcp_transient_timeout: self.tcp_transient_timeout.or(lower.tcp_transient_timeout),
            icmp_query_timeout: self.icmp_query_timeout.or(lower.icmp_query_timeout),
            udp_filtering: self.udp_filtering.or(lower.udp_filtering),
            tcp_filtering: self.tcp_filtering.or(lower.tcp_filtering),
            udp_inbound_refresh: self.udp_inbound_refresh.or(lower.udp_inbound_refresh),
            static_mapping: list(self.static_mapping, lower.static_mapping),
            max_sessions: self.max_sessions.or(lower.max_sessions),
            max_sessions_per_host: self.max_sessions_per_host.or(lower.max_sessions_per_host),
            seed: self.seed.or(lower.seed),
            nat_name: self.nat_name.or(lower.nat_name),
            filter_policy: self.filter_policy.or(lower.filter_policy),
            hairpinning: self.hairpinning.or(lower.hairpinning),
            drops: self.drops.or(lower.drops),
            sessions_json: self.sessions_json.or(lower.sessions_json),
            sessions_detailed: self.sessions_detailed || lower.sessions_detailed,
            session_counters: self.session_counters || lower.session_counters,
            stats_json: self.stats_json.or(lower.stats_json),
            events: self.events.or(lower.events),
            ipfix_collector: self.ipfix_collector.or(lower.ipfix_collector),
        }
    }
}

/// The format of a capture netnat writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CaptureFormat {
    /// Classic pcap (microsecond timestamps).
    Pcap,
    /// pcapng, every packet with a comment (`opt_comment`) saying what the NAT did with it.
    Pcapng,
}

impl CaptureFormat {
    /// The format `explicit` names, or else the one `path`'s extension names: `.pcapng`
    /// (any case) is pcapng, anything else (and stdout) pcap.
    pub fn for_path(path: &std::path::Path, explicit: Option<CaptureFormat>) -> CaptureFormat {
        explicit.unwrap_or_else(|| match path.extension().is_some_and(|e| e.eq_ignore_ascii_case("pcapng")) {
            true => CaptureFormat::Pcapng,
            false => CaptureFormat::Pcap,
        })
    }
}

/// `pcap` or `pcapng`, for the config file.
pub fn parse_format(s: &str) -> Result<CaptureFormat, String> {
    <CaptureFormat as clap::ValueEnum>::from_str(s.trim(), true)
        .map_err(|_| format!("{s:?} is not a capture format; give pcap or pcapng"))
}

/// An inclusive external port range (PortStart, PortEnd).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// PortStart.
    pub start: u16,
    /// PortEnd.
    pub end: u16,
}

/// `10.100.0.0/16`; host bits are cleared (`10.100.1.1/16` means `10.100.0.0/16`).
pub fn parse_prefix(s: &str) -> Result<Ipv4Net, String> {
    let s = s.trim();
    if !s.contains('/') {
        return Err(format!(
            "{s:?} is not a prefix: give ADDRESS/LENGTH, e.g. 10.100.0.0/16 (a single host is ADDRESS/32)"
        ));
    }
    s.parse::<Ipv4Net>()
        .map(|net| net.trunc())
        .map_err(|_| format!("{s:?} is not an IPv4 prefix: give ADDRESS/LENGTH with LENGTH 0-32, e.g. 10.100.0.0/16"))
}

/// A prefix, or a single address meaning ADDRESS/32 (for a static mapping's remote prefix).
fn parse_prefix_or_address(s: &str) -> Result<Ipv4Net, String> {
    match s.parse::<Ipv4Addr>() {
        Ok(addr) => Ok(Ipv4Net::from(addr)),
        Err(_) => parse_prefix(s),
    }
}

/// A dotted-quad IPv4 address.
pub fn parse_address(s: &str) -> Result<Ipv4Addr, String> {
    s.trim().parse().map_err(|_| format!("{s:?} is not an IPv4 address: give a dotted quad such as 203.0.113.1"))
}

/// `1024-65535`, or a single port `5000` meaning `5000-5000`.
pub fn parse_port_range(s: &str) -> Result<PortRange, String> {
    let hint = "give START-END with 1 <= START <= END <= 65535, e.g. 1024-65535";
    let (start, end) = s.trim().split_once('-').unwrap_or((s.trim(), s.trim()));
    let port = |p: &str| p.trim().parse::<u16>().ok().filter(|p| *p != 0);
    match (port(start), port(end)) {
        (Some(start), Some(end)) if start <= end => Ok(PortRange { start, end }),
        (Some(start), Some(end)) => Err(format!("port range {start}-{end} is empty; {hint}")),
        _ => Err(format!("{s:?} is not a port range; {hint}")),
    }
}

/// A timeout in whole seconds, at least 1.
pub fn parse_timeout(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err("a timeout of 0 seconds would expire every session at once; give at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a number of seconds; give a whole number such as 120")),
    }
}

/// A session limit, at least 1.
pub fn parse_limit(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("a limit of 0 would admit no session at all; give at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a count; give a whole number such as 65536")),
    }
}

/// `true` or `false` (also PowerShell's `$true` / `$false`).
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "$true" => Ok(true),
        "false" | "$false" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean; give true or false")),
    }
}

/// `PROTO:EXTADDR:EXTPORT=INTADDR[:INTPORT][@REMOTE_PREFIX]`.
pub fn parse_static_mapping(s: &str) -> Result<StaticMapping, String> {
    let form = "write PROTO:EXTADDR:EXTPORT=INTADDR[:INTPORT][@REMOTE_PREFIX], e.g. tcp:0.0.0.0:8080=10.100.10.11:80";
    let bad = |what: String| format!("static mapping {s:?}: {what}; {form}");
    let (external, internal) =
        s.trim().split_once('=').ok_or_else(|| bad("no '=' between the external and internal side".into()))?;
    let mut ext = external.split(':');
    let (Some(proto), Some(ext_addr), Some(ext_port), None) = (ext.next(), ext.next(), ext.next(), ext.next()) else {
        return Err(bad(format!("the external side {external:?} is not PROTO:EXTADDR:EXTPORT")));
    };
    let protocol: Protocol = proto.parse().map_err(|_| bad(format!("unknown protocol {proto:?}, use tcp or udp")))?;
    if protocol == Protocol::Icmp {
        return Err(bad("a static mapping is for tcp or udp, not icmp".into()));
    }
    let external_address = parse_address(ext_addr).map_err(bad)?;
    let port = |p: &str, which: &str| {
        p.trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad(format!("{which} {p:?} is not a port 1-65535")))
    };
    let external_port = port(ext_port, "external port")?;
    let (internal, remote) = match internal.split_once('@') {
        Some((internal, remote)) => (internal, Some(remote)),
        None => (internal, None),
    };
    let (int_addr, int_port) = match internal.split_once(':') {
        Some((addr, p)) => (addr, Some(p)),
        None => (internal, None),
    };
    let internal_address = parse_address(int_addr).map_err(bad)?;
    let internal_port = int_port.map(|p| port(p, "internal port")).transpose()?.unwrap_or(external_port);
    let remote_prefix = match remote {
        Some(r) => parse_prefix_or_address(r).map_err(bad)?,
        None => Ipv4Net::default(),
    };
    Ok(StaticMapping { protocol, external_address, external_port, internal_address, internal_port, remote_prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_mapping_forms() {
        let m = parse_static_mapping("tcp:0.0.0.0:8080=10.100.10.11:80").unwrap();
        assert_eq!(m.protocol, Protocol::Tcp);
        assert!(m.external_address.is_unspecified());
        assert_eq!((m.external_port, m.internal_port), (8080, 80));
        assert_eq!(m.internal_address, Ipv4Addr::new(10, 100, 10, 11));
        assert_eq!(m.remote_prefix, "0.0.0.0/0".parse::<Ipv4Net>().unwrap());

        let m = parse_static_mapping("UDP:203.0.113.1:5000=10.100.10.12@198.51.100.0/24").unwrap();
        assert_eq!((m.protocol, m.external_port, m.internal_port), (Protocol::Udp, 5000, 5000));
        assert_eq!(m.remote_prefix, "198.51.100.0/24".parse::<Ipv4Net>().unwrap());

        let m = parse_static_mapping("udp:0.0.0.0:53=10.100.0.2:5353@198.51.100.7").unwrap();
        assert_eq!(m.remote_prefix, "198.51.100.7/32".parse::<Ipv4Net>().unwrap());
        assert_eq!(m.internal_port, 5353);

        for bad in [
            "tcp:0.0.0.0:8080",
            "icmp:0.0.0.0:1=10.100.0.1",
            "sctp:0.0.0.0:1=10.100.0.1",
            "tcp:0.0.0.0:0=10.100.0.1",
            "tcp:0.0.0.0:80:1=10.100.0.1",
            "tcp:0.0.0.0:80=10.100.0.1:99999",
            "tcp:0.0.0.0:80=10.100.0.1@10.0.0.0/40",
            "tcp:host:80=10.100.0.1",
        ] {
            let err = parse_static_mapping(bad).unwrap_err();
            assert!(err.contains(bad) && err.contains("e.g."), "{bad}: {err}");
        }
    }

    #[test]
    fn ranges_prefixes_and_numbers() {
        assert_eq!(parse_port_range("1024-65535"), Ok(PortRange { start: 1024, end: 65535 }));
        assert_eq!(parse_port_range("5000"), Ok(PortRange { start: 5000, end: 5000 }));
        assert!(parse_port_range("2000-1000").unwrap_err().contains("empty"));
        assert!(parse_port_range("0-10").is_err());
        assert!(parse_port_range("1-70000").is_err());
        assert_eq!(parse_prefix("10.100.1.1/16").unwrap().to_string(), "10.100.0.0/16");
        assert!(parse_prefix("10.100.0.0").unwrap_err().contains("ADDRESS/LENGTH"));
        assert!(parse_prefix("10.100.0.0/33").is_err());
        assert!(parse_timeout("0").is_err());
        assert_eq!(parse_timeout("30"), Ok(30));
        assert!(parse_limit("0").is_err());
        assert_eq!(parse_bool("$True"), Ok(true));
        assert!(parse_bool("yes").is_err());
    }

    #[test]
    fn command_line_wins_and_lists_replace_whole() {
        let file = NatSettings {
            internal_prefix: Some("10.100.0.0/16".parse().unwrap()),
            external_address: vec![Ipv4Addr::new(203, 0, 113, 1), Ipv4Addr::new(203, 0, 113, 2)],
            seed: Some(7),
            ..NatSettings::default()
        };
        let cli = NatSettings {
            external_address: vec![Ipv4Addr::new(198, 51, 100, 1)],
            seed: Some(9),
            ..NatSettings::default()
        };
        let merged = cli.or(file);
        assert_eq!(merged.external_address, vec![Ipv4Addr::new(198, 51, 100, 1)]);
        assert_eq!(merged.seed, Some(9));
        assert_eq!(merged.internal_prefix, Some("10.100.0.0/16".parse().unwrap()));
    }
}
