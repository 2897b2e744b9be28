//! `--config FILE`: the replay settings as TOML.
//!
//! Keys are the long flag names with `_` for `-` (`internal_prefix`, `external_address`,
//! `static_mapping`, ...). Values are the flags' text (`udp_filtering =
//! "EndpointIndependentFiltering"`, `port_range = "1024-65535"`), except that timeouts,
//! limits and the seed are TOML integers and `udp_inbound_refresh` is a TOML boolean.
//! `external_address` and `static_mapping` take a list (or a single string). Relative paths
//! (`output`, `drops`, `expect`, `sessions_json`, `stats_json`, `events`, `filter_policy`) are relative
//! to the file's directory. `ignore` takes a list (or one comma-separated string) of
//! `--ignore` items.
//! An unknown key is an error, so a misspelt setting is never silently ignored.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};
use serde::Deserialize;

use super::args::{self, NatSettings};

/// One string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The file as written; values are checked afterwards with the command line's parsers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    output: Option<PathBuf>,
    format: Option<String>,
    expect: Option<PathBuf>,
    ignore: Option<OneOrMany>,
    internal_prefix: Option<String>,
    external_address: Option<OneOrMany>,
    port_range: Option<String>,
    port_allocation: Option<String>,
    udp_idle_timeout: Option<u64>,
    tcp_established_timeout: Option<u64>,
    tcp_transient_timeout: Option<u64>,
    icmp_query_timeout: Option<u64>,
    udp_filtering: Option<String>,
    tcp_filtering: Option<String>,
    udp_inbound_refresh: Option<bool>,
    static_mapping: Option<OneOrMany>,
    max_sessions: Option<u64>,
    max_sessions_per_host: Option<u64>,
    seed: Option<u64>,
    nat_name: Option<String>,
    hairpinning: Option<String>,
    filter_policy: Option<PathBuf>,
    drops: Option<PathBuf>,
    sessions_json: Option<PathBuf>,
    sessions_detailed: Option<bool>,
    session_counters: Option<bool>,
    stats_json: Option<PathBuf>,
    events: Option<PathBuf>,
    ipfix_collector: Option<std::net::SocketAddr>,
}

/// Reads and checks the config file at `path`.
pub fn load(path: &Path) -> anyhow::Result<NatSettings> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!("cannot read config file {}; check the path given to --config and that it is readable", path.display())
    })?;
    parse(&text, path)
}

/// Parses `text`, the contents of the config file `path` (named in errors).
pub fn parse(text: &str, path: &Path) -> anyhow::Result<NatSettings> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        anyhow!(
            "config file {}: {}\n(keys are the long flag names with '_' for '-'; see `netnat replay --help`)",
            path.display(),
            e.to_string().trim_end()
        )
    })?;
    let base = path.parent().unwrap_or(Path::new(""));
    let key = |name: &str, e: String| key_error(path, name, e);
    let seconds = |name: &str, v: Option<u64>| checked(path, name, v.map(|n| n.to_string()), args::parse_timeout);
    let limit = |name: &str, v: Option<u64>| checked(path, name, v.map(|n| n.to_string()), args::parse_limit);
    let relative =
        |p: Option<PathBuf>| p.map(|p| if p.is_relative() && p != Path::new("-") { base.join(p) } else { p });

    let external_address = raw
        .external_address
        .map(OneOrMany::into_vec)
        .unwrap_or_default()
        .iter()
        .map(|a| args::parse_address(a).map_err(|e| key("external_address", e)))
        .collect::<anyhow::Result<_>>()?;
    let static_mapping = raw
        .static_mapping
        .map(OneOrMany::into_vec)
        .unwrap_or_default()
        .iter()
        .map(|m| args::parse_static_mapping(m).map_err(|e| key("static_mapping", e)))
        .collect::<anyhow::Result<_>>()?;
    let ignore = raw
        .ignore
        .map(OneOrMany::into_vec)
        .unwrap_or_default()
        .iter()
        .flat_map(|items| items.split(','))
        .map(|i| super::expect::parse_ignore(i).map_err(|e| key("ignore", e)))
        .collect::<anyhow::Result<_>>()?;
    if raw.nat_name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return Err(key("nat_name", "the name is empty; give a name such as WinNAT".into()));
    }

    Ok(NatSettings {
        output: relative(raw.output),
        format: checked(path, "format", raw.format, args::parse_format)?,
        expect: relative(raw.expect),
        ignore,
        internal_prefix: checked(path, "internal_prefix", raw.internal_prefix, args::parse_prefix)?,
        external_address,
        port_range: checked(path, "port_range", raw.port_range, args::parse_port_range)?,
        port_allocation: named(path, "port_allocation", raw.port_allocation)?,
        udp_idle_timeout: seconds("udp_idle_timeout", raw.udp_idle_timeout)?,
        tcp_established_timeout: seconds("tcp_established_timeout", raw.tcp_established_timeout)?,
        tcp_transient_timeout: seconds("tcp_transient_timeout", raw.tcp_transient_timeout)?,
        icmp_query_timeout: seconds("icmp_query_timeout", raw.icmp_query_timeout)?,
        udp_filtering: named(path, "udp_filtering", raw.udp_filtering)?,
        tcp_filtering: named(path, "tcp_filtering", raw.tcp_filtering)?,
        udp_inbound_refresh: raw.udp_inbound_refresh,
        static_mapping,
        max_sessions: limit("max_sessions", raw.max_sessions)?,
        max_sessions_per_host: limit("max_sessions_per_host", raw.max_sessions_per_host)?,
        seed: raw.seed,
        nat_name: raw.nat_name,
        hairpinning: named(path, "hairpinning", raw.hairpinning)?,
        filter_policy: relative(raw.filter_policy),
        drops: relative(raw.drops),
        sessions_json: relative(raw.sessions_json),
        sessions_detailed: raw.sessions_detailed.unwrap_or(false),
        session_counters: raw.session_counters.unwrap_or(false),
        stats_json: relative(raw.stats_json),
        events: relative(raw.events),
        ipfix_collector: raw.ipfix_collector,
    })
}

fn key_error(path: &Path, name: &str, e: String) -> anyhow::Error {
    anyhow!("config file {}: key `{name}`: {e}", path.display())
}

/// A value checked by one of the command line's parsers.
fn checked<T>(
    path: &Path,
    name: &str,
    v: Option<String>,
    parse: fn(&str) -> Result<T, String>,
) -> anyhow::Result<Option<T>> {
    v.map(|v| parse(&v).map_err(|e| key_error(path, name, e))).transpose()
}

/// A value spelled as the engine's `FromStr` expects (filtering behaviours, policies, modes).
fn named<T>(path: &Path, name: &str, v: Option<String>) -> anyhow::Result<Option<T>>
where
    T: std::str::FromStr<Err = netnat_engine::ConfigError>,
{
    v.map(|v| v.parse().map_err(|e: netnat_engine::ConfigError| key_error(path, name, e.to_string()))).transpose()
}

#[cfg(test)]
mod tests {
    use netnat_engine::{FilteringBehavior, PortAllocation};

    use super::*;

    fn parse_at(text: &str) -> anyhow::Result<NatSettings> {
        parse(text, Path::new("/etc/netnat/nat.toml"))
    }

    #[test]
    fn every_kind_of_value_parses() {
        let s = parse_at(
            r#"
            output = "out.pcap"
            internal_prefix = "10.100.0.0/16"
            external_address = ["203.0.113.1", "203.0.113.2"]
            port_range = "2000-3000"
            port_allocation = "preserve"
            udp_idle_timeout = 60
            udp_filtering = "EndpointIndependentFiltering"
            udp_inbound_refresh = true
            static_mapping = "tcp:0.0.0.0:8080=10.100.10.11:80"
            max_sessions = 10
            seed = 42
            stats_json = "/tmp/stats.json"
            filter_policy = "policy.toml"
            format = "PcapNG"
            expect = "golden.pcap"
            ignore = ["ttl,ip-checksum", "external-port"]
            "#,
        )
        .unwrap();
        assert_eq!(s.format, Some(args::CaptureFormat::Pcapng));
        assert_eq!(s.expect, Some(PathBuf::from("/etc/netnat/golden.pcap")));
        use super::super::expect::Ignore;
        assert_eq!(s.ignore, [Ignore::Ttl, Ignore::IpChecksum, Ignore::ExternalPort]);
        assert!(parse_at("ignore = \"ttl,colour\"").unwrap_err().to_string().contains("`ignore`"));
        assert!(parse_at("format = \"pcap2\"").unwrap_err().to_string().contains("pcap or pcapng"));
        assert_eq!(s.output, Some(PathBuf::from("/etc/netnat/out.pcap")), "relative to the file");
        assert_eq!(s.stats_json, Some(PathBuf::from("/tmp/stats.json")));
        assert_eq!(s.filter_policy, Some(PathBuf::from("/etc/netnat/policy.toml")), "relative to the file");
        assert_eq!(s.external_address.len(), 2);
        assert_eq!(s.port_range.map(|r| (r.start, r.end)), Some((2000, 3000)));
        assert_eq!(s.port_allocation, Some(PortAllocation::Preserve));
        assert_eq!(s.udp_idle_timeout, Some(60));
        assert_eq!(s.udp_filtering, Some(FilteringBehavior::EndpointIndependent));
        assert_eq!(s.udp_inbound_refresh, Some(true));
        assert_eq!(s.static_mapping.len(), 1);
        assert_eq!(s.max_sessions, Some(10));
        assert_eq!(s.seed, Some(42));
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let err = format!("{:#}", parse_at("internal_prefx = \"10.0.0.0/8\"").unwrap_err());
        assert!(err.contains("/etc/netnat/nat.toml") && err.contains("internal_prefx"), "{err}");
        let err = format!("{:#}", parse_at("internal_prefix = \"10.0.0.0/40\"").unwrap_err());
        assert!(err.contains("key `internal_prefix`") && err.contains("10.0.0.0/40"), "{err}");
        let err = format!("{:#}", parse_at("udp_filtering = \"open\"").unwrap_err());
        assert!(err.contains("key `udp_filtering`") && err.contains("EndpointIndependentFiltering"), "{err}");
        let err = format!("{:#}", parse_at("udp_idle_timeout = \"long\"").unwrap_err());
        assert!(err.contains("udp_idle_timeout"), "{err}");
        let err = format!("{:#}", parse_at("udp_idle_timeout = 0").unwrap_err());
        assert!(err.contains("at least 1"), "{err}");
        let err = format!("{:#}", parse_at("this is not toml").unwrap_err());
        assert!(err.contains("/etc/netnat/nat.toml"), "{err}");
    }
}
