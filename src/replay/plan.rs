//! Turns the merged settings into what a replay needs: the engine's `NatConfig` and the output
//! paths, checking that the required ones are there and that the settings fit together.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use netnat_engine::config::{ExternalAddress, Limits, Timeouts};
use netnat_engine::{Duration, NatConfig};

use super::args::{CaptureFormat, NatSettings};
use super::expect::Ignore;
use crate::policy_file::FilterPolicySource;
use crate::policy_module::ModulePolicy;

/// The NAT name when none is given, as in the article's `New-NetNat -Name WinNAT`.
pub const DEFAULT_NAT_NAME: &str = "WinNAT";

/// A checked replay: the NAT and where its results go.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The engine's settings.
    pub nat: NatConfig,
    /// The translated capture (`-` is stdout) and its format; `None` only with `--expect`.
    pub output: Option<(PathBuf, CaptureFormat)>,
    /// The dropped packets and their format, if wanted.
    pub drops: Option<(PathBuf, CaptureFormat)>,
    /// The capture to compare the output with, and what not to compare.
    pub expect: Option<(PathBuf, Vec<Ignore>)>,
    /// The session table as JSON, if wanted.
    pub sessions_json: Option<PathBuf>,
    /// With netnat's detail fields (`--sessions-detailed`).
    pub sessions_detailed: bool,
    /// The counters as JSON, if wanted.
    pub stats_json: Option<PathBuf>,
    /// The session events as JSON lines, if wanted.
    pub events: Option<PathBuf>,
    /// Where to send the session events as IPFIX, if anywhere.
    pub ipfix_collector: Option<std::net::SocketAddr>,
    /// A WASM filtering policy module, loaded, for TCP and UDP.
    pub policy_module: Option<Arc<ModulePolicy>>,
}

impl Plan {
    /// Checks `settings` and builds the engine configuration.
    pub fn from_settings(settings: NatSettings) -> anyhow::Result<Plan> {
        if settings.output.is_none() && settings.expect.is_none() {
            bail!(
                "no output file: give -o OUTPUT (or `output = \"...\"` in the --config file); `-o -` writes to stdout \
                 (with --expect EXPECTED, -o is optional)"
            )
        }
        if settings.sessions_detailed && settings.sessions_json.is_none() {
            bail!("--sessions-detailed adds fields to the --sessions-json rows; give --sessions-json FILE too");
        }
        if !settings.ignore.is_empty() && settings.expect.is_none() {
            bail!("--ignore says what --expect does not compare; give --expect EXPECTED too, or leave --ignore out");
        }
        let Some(internal_prefix) = settings.internal_prefix else {
            bail!(
                "no internal prefix: give --internal-prefix PREFIX, the subnet behind the NAT \
                 (InternalIPInterfaceAddressPrefix), e.g. --internal-prefix 10.100.0.0/16"
            )
        };
        if settings.external_address.is_empty() {
            bail!(
                "no external address: give --external-address ADDRESS, the address the NAT translates to \
                 (NetNatExternalAddress), e.g. --external-address 203.0.113.1"
            );
        }
        let defaults = NatConfig::new(DEFAULT_NAT_NAME, internal_prefix, settings.external_address[0]);
        let range = settings.port_range;
        let external_addresses = settings
            .external_address
            .iter()
            .map(|&address| {
                let mut ext = ExternalAddress::new(address);
                if let Some(r) = range {
                    ext.port_start = r.start;
                    ext.port_end = r.end;
                }
                ext
            })
            .collect();
        let secs_or = |v: Option<u64>, default: Duration| v.map(Duration::from_secs).unwrap_or(default);
        let t = defaults.timeouts;
        let timeouts = Timeouts {
            icmp_query: secs_or(settings.icmp_query_timeout, t.icmp_query),
            tcp_established: secs_or(settings.tcp_established_timeout, t.tcp_established),
            tcp_transient: secs_or(settings.tcp_transient_timeout, t.tcp_transient),
            udp_idle: secs_or(settings.udp_idle_timeout, t.udp_idle),
        };
        let limits = Limits {
            max_sessions: settings.max_sessions.unwrap_or(defaults.limits.max_sessions),
            max_sessions_per_host: settings.max_sessions_per_host.unwrap_or(defaults.limits.max_sessions_per_host),
            ..defaults.limits
        };
        let name = settings.nat_name.unwrap_or_else(|| DEFAULT_NAT_NAME.to_owned());
        if name.trim().is_empty() {
            bail!("the NAT name is empty; give --nat-name NAME, e.g. --nat-name WinNAT");
        }
        let (filter_policy, policy_module) = match &settings.filter_policy {
            None => (None, None),
            Some(path) => match crate::policy_file::load_source(path)? {
                FilterPolicySource::Rules(parsed) => {
                    parsed.check_for(internal_prefix)?;
                    (Some(parsed.policy().clone()), None)
                }
                FilterPolicySource::Module(spec) => (None, Some(spec)),
            },
        };
        let nat = NatConfig {
            name,
            filter_policy,
            external_addresses,
            timeouts,
            tcp_filtering: settings.tcp_filtering.unwrap_or(defaults.tcp_filtering),
            udp_filtering: settings.udp_filtering.unwrap_or(defaults.udp_filtering),
            udp_inbound_refresh: settings.udp_inbound_refresh.unwrap_or(defaults.udp_inbound_refresh),
            static_mappings: settings.static_mapping,
            hairpinning: settings.hairpinning.unwrap_or(defaults.hairpinning),
            port_allocation: settings.port_allocation.unwrap_or(defaults.port_allocation),
            limits,
            seed: settings.seed.unwrap_or(defaults.seed),
            session_counters: settings.session_counters,
            ..defaults
        };
        if let Err(e) = nat.validate() {
            bail!("invalid NAT settings: {e}");
        }
        // Loaded here, so a bad module fails before any output is created.
        let policy_module = policy_module
            .map(|spec| ModulePolicy::load(&spec, nat.tcp_filtering, nat.udp_filtering).map(Arc::new))
            .transpose()?;
        let format = settings.format;
        let with_format = |p: PathBuf| {
            let f = CaptureFormat::for_path(&p, format);
            (p, f)
        };
        let plan = Plan {
            nat,
            output: settings.output.map(with_format),
            drops: settings.drops.map(with_format),
            expect: settings.expect.map(|p| (p, settings.ignore)),
            sessions_json: settings.sessions_json,
            sessions_detailed: settings.sessions_detailed,
            stats_json: settings.stats_json,
            events: settings.events,
            ipfix_collector: settings.ipfix_collector,
            policy_module,
        };
        plan.check_distinct_outputs()?;
        Ok(plan)
    }

    /// Two outputs on one path would overwrite each other.
    fn check_distinct_outputs(&self) -> anyhow::Result<()> {
        let named = [
            ("-o", self.output.as_ref().map(|(p, _)| p)),
            ("--drops", self.drops.as_ref().map(|(p, _)| p)),
            ("--expect", self.expect.as_ref().map(|(p, _)| p)),
            ("--sessions-json", self.sessions_json.as_ref()),
            ("--stats-json", self.stats_json.as_ref()),
            ("--events", self.events.as_ref()),
        ];
        for (i, (flag, path)) in named.iter().enumerate() {
            let Some(path) = path else { continue };
            // Standard output may be shared (e.g. `--sessions-json /dev/stdout --stats-json -`).
            if path.as_os_str() == "-" || path.starts_with("/dev") {
                continue;
            }
            if let Some((other, _)) = named[..i].iter().find(|(_, p)| *p == Some(*path)) {
                bail!("{other} and {flag} both name {}; give them different files", path.display());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn minimal() -> NatSettings {
        NatSettings {
            output: Some("out.pcap".into()),
            internal_prefix: Some("10.100.0.0/16".parse().unwrap()),
            external_address: vec![Ipv4Addr::new(203, 0, 113, 1)],
            ..NatSettings::default()
        }
    }

    #[test]
    fn defaults_are_winnats_and_flags_apply() {
        let plan = Plan::from_settings(minimal()).unwrap();
        assert_eq!(plan.nat, NatConfig::new("WinNAT", "10.100.0.0/16".parse().unwrap(), Ipv4Addr::new(203, 0, 113, 1)));

        let mut s = minimal();
        s.external_address.push(Ipv4Addr::new(203, 0, 113, 2));
        s.port_range = Some(super::super::args::PortRange { start: 2000, end: 2999 });
        s.udp_idle_timeout = Some(5);
        s.seed = Some(3);
        let plan = Plan::from_settings(s).unwrap();
        assert!(plan.nat.external_addresses.iter().all(|e| (e.port_start, e.port_end) == (2000, 2999)));
        assert_eq!(plan.nat.external_addresses.len(), 2);
        assert_eq!(plan.nat.timeouts.udp_idle, Duration::from_secs(5));
        assert_eq!(plan.nat.timeouts.tcp_established, Duration::from_secs(1800));
        assert_eq!(plan.nat.seed, 3);
    }

    #[test]
    fn missing_and_conflicting_settings_say_how_to_fix() {
        for (mutate, expect) in [
            (Box::new(|s: &mut NatSettings| s.output = None) as Box<dyn Fn(&mut NatSettings)>, "-o OUTPUT"),
            (Box::new(|s: &mut NatSettings| s.internal_prefix = None), "--internal-prefix"),
            (Box::new(|s: &mut NatSettings| s.external_address.clear()), "--external-address"),
            (Box::new(|s: &mut NatSettings| s.external_address = vec![Ipv4Addr::new(10, 100, 0, 1)]), "inside"),
            (Box::new(|s: &mut NatSettings| s.stats_json = Some("out.pcap".into())), "different files"),
        ] {
            let mut s = minimal();
            mutate(&mut s);
            let err = Plan::from_settings(s).unwrap_err().to_string();
            assert!(err.contains(expect), "expected {expect:?} in: {err}");
        }
    }
}
