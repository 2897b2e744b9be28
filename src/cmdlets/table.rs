//! The cmdlets: their parameters (names, positions, types as PowerShell has them) and how
//! bound parameters become a control [`Request`].

use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use netnat_engine::{FilteringBehavior, HairpinningMode, Protocol};

use super::params::{bind, parse_bool, Bound, Param};
use crate::control::objects::NULL_ROUTING_DOMAIN;
use crate::control::protocol::{NatChanges, PolicyChange, PolicySource, Request, MAX_LINE};

/// One cmdlet.
#[derive(Debug)]
pub struct Cmdlet {
    /// Its name, e.g. `New-NetNat`.
    pub name: &'static str,
    /// Its parameters.
    pub params: &'static [Param],
    /// One line of what it does.
    pub synopsis: &'static str,
}

/// A request to send and whether to print what comes back.
#[derive(Debug)]
pub struct Call {
    /// The request.
    pub request: Request,
    /// Print the returned objects (false for Set/Remove without -PassThru).
    pub print: bool,
}

const SET_NAT_PARAMS: &[Param] = &[
    Param::list("Name", "String[]").at(0),
    Param::value("IcmpQueryTimeout", "UInt32"),
    Param::value("TcpEstablishedConnectionTimeout", "UInt32"),
    Param::value("TcpTransientConnectionTimeout", "UInt32"),
    Param::value("TcpFilteringBehavior", "FilteringBehaviorType"),
    Param::value("UdpFilteringBehavior", "FilteringBehaviorType"),
    Param::value("UdpIdleSessionTimeout", "UInt32"),
    Param::value("UdpInboundRefresh", "Boolean"),
    Param::value("FilterPolicyFile", "String"),
    Param::switch("RemoveFilterPolicy"),
    Param::switch("PassThru"),
];

/// Every cmdlet.
pub const CMDLETS: &[Cmdlet] = &[
    Cmdlet {
        name: "New-NetNat",
        params: &[
            Param::value("Name", "String").at(0),
            Param::value("InternalIPInterfaceAddressPrefix", "String"),
            Param::value("ExternalIPInterfaceAddressPrefix", "String"),
            Param::value("InternalRoutingDomainId", "String"),
            Param::value("FilterPolicyFile", "String"),
        ],
        synopsis:
            "Creates a NAT object that translates the internal prefix to the host's (or its external) addresses. \
                   netnat's -FilterPolicyFile gives it a filtering policy (TOML rules; see the README).",
    },
    Cmdlet { name: "Get-NetNat", params: &[Param::list("Name", "String[]").at(0)], synopsis: "Gets NAT objects." },
    Cmdlet {
        name: "Set-NetNat",
        params: SET_NAT_PARAMS,
        synopsis: "Modifies the timeouts, filtering behaviours and UDP inbound refresh of NAT objects; netnat's \
                   -FilterPolicyFile sets a filtering policy (read now, kept in the daemon's state), \
                   -RemoveFilterPolicy removes it.",
    },
    Cmdlet {
        name: "Remove-NetNat",
        params: &[Param::list("Name", "String[]").at(0), Param::switch("PassThru")],
        synopsis: "Removes NAT objects (all of them without -Name) and drops their connections.",
    },
    Cmdlet {
        name: "Get-NetNatSession",
        params: &[Param::switch("Detailed"), Param::switch("Watch")],
        synopsis: "Gets all active NAT sessions. netnat's -Detailed adds each session's IdleSeconds, \
                   TimeLeftSeconds, TimeoutSeconds, TcpState and OpenedDirection after WinNAT's properties; \
                   netnat's -Watch instead prints each session event as it happens (mappings and sessions \
                   created and deleted, limits reached), one line each (-o json: JSON lines), until Ctrl+C.",
    },
    Cmdlet {
        name: "Add-NetNatStaticMapping",
        params: &[
            Param::value("NatName", "String").at(0),
            Param::value("Protocol", "Protocol"),
            Param::value("ExternalIPAddress", "String"),
            Param::value("ExternalPort", "UInt16"),
            Param::value("InternalIPAddress", "String"),
            Param::value("InternalPort", "UInt16"),
            Param::value("RemoteExternalIPAddressPrefix", "String"),
            Param::value("InternalRoutingDomainId", "String"),
        ],
        synopsis: "Adds a static mapping (port forwarding) to a NAT.",
    },
    Cmdlet {
        name: "Get-NetNatStaticMapping",
        params: &[Param::list("NatName", "String[]").at(0)],
        synopsis: "Gets static mappings.",
    },
    Cmdlet {
        name: "Remove-NetNatStaticMapping",
        params: &[
            Param::list("NatName", "String[]").at(0),
            Param::list("StaticMappingID", "UInt32[]"),
            Param::switch("PassThru"),
        ],
        synopsis: "Removes static mappings (all of them without arguments).",
    },
    Cmdlet {
        name: "Add-NetNatExternalAddress",
        params: &[
            Param::value("NatName", "String").at(0),
            Param::value("IPAddress", "String"),
            Param::value("PortStart", "UInt16"),
            Param::value("PortEnd", "UInt16"),
        ],
        synopsis: "Adds an external address (and its dynamic port range) to a NAT.",
    },
    Cmdlet {
        name: "Get-NetNatExternalAddress",
        params: &[Param::list("NatName", "String[]").at(0)],
        synopsis: "Gets external addresses.",
    },
    Cmdlet {
        name: "Remove-NetNatExternalAddress",
        params: &[
            Param::list("NatName", "String[]").at(0),
            Param::list("ExternalAddressID", "UInt32[]"),
            Param::switch("PassThru"),
        ],
        synopsis: "Removes external addresses (all of them without arguments).",
    },
    Cmdlet { name: "Get-NetNatGlobal", params: &[], synopsis: "Gets the global NAT settings." },
    Cmdlet {
        name: "Set-NetNatGlobal",
        params: &[Param::value("InterRoutingDomainHairpinningMode", "HairpinningMode"), Param::switch("PassThru")],
        synopsis: "Sets the global hairpinning mode (Local or External).",
    },
    Cmdlet {
        name: "Get-NetNatStatistics",
        params: &[],
        synopsis: "netnat's own: per-NAT counters (translated, dropped by reason, sessions) and, under \"nfqueue\", \
                   per queue the kernel's drops (queue full, socket full) and the daemon's capture counters \
                   (received, GSO super-packets, checksums completed, refused), as JSON.",
    },
];

/// The cmdlet called `name` (case-insensitive).
pub fn find(name: &str) -> Option<&'static Cmdlet> {
    CMDLETS.iter().find(|c| c.name.eq_ignore_ascii_case(name))
}

/// The help text of a cmdlet.
pub fn usage(c: &Cmdlet) -> String {
    let mut s = format!("{}\n    {}\n\nSYNTAX\n    netnat {}", c.name, c.synopsis, c.name);
    for p in c.params {
        let shape = match p.kind {
            super::params::Kind::Switch => format!("[-{}]", p.name),
            _ if p.position.is_some() => format!("[[-{}] <{}>]", p.name, p.type_name),
            _ => format!("[-{} <{}>]", p.name, p.type_name),
        };
        s.push(' ');
        s.push_str(&shape);
    }
    s.push_str(" [-o json|list|all] [--socket PATH]\n");
    s
}

fn required<'b>(b: &'b Bound, name: &str, what: &str) -> Result<&'b str, String> {
    b.one(name).ok_or_else(|| format!("Missing mandatory parameter -{name}: {what}."))
}

fn parse<T: FromStr>(name: &str, v: &str, what: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("Cannot process argument on parameter '{name}': '{v}' is not {what}."))
}

fn opt<T: FromStr>(b: &Bound, name: &str, what: &str) -> Result<Option<T>, String> {
    b.one(name).map(|v| parse(name, v, what)).transpose()
}

fn prefix(name: &str, v: &str) -> Result<Ipv4Net, String> {
    parse(name, v, "an IPv4 prefix such as 10.100.0.0/16")
}

fn filtering(b: &Bound, name: &str) -> Result<Option<FilteringBehavior>, String> {
    b.one(name)
        .map(|v| {
            v.parse::<FilteringBehavior>().map_err(|_| {
                format!("Cannot process argument on parameter '{name}': '{v}' is not EndpointIndependentFiltering or AddressDependentFiltering (netnat also accepts AddressAndPortDependentFiltering).")
            })
        })
        .transpose()
}

fn routing_domain(b: &Bound) -> Result<(), String> {
    match b.one("InternalRoutingDomainId") {
        Some(v) if v != NULL_ROUTING_DOMAIN && v.trim_matches(['{', '}']) != &NULL_ROUTING_DOMAIN[1..37] => {
            Err(format!(
            "InternalRoutingDomainId {v}: netnat has no routing domains; leave it out (or give {NULL_ROUTING_DOMAIN})."
        ))
        }
        _ => Ok(()),
    }
}

/// Binds `args` for `c` and builds its request.
pub fn build(c: &Cmdlet, args: &[String]) -> Result<Call, String> {
    if c.name == "Set-NetNat" {
        for a in args {
            let n =
                a.trim_start_matches('-').split([':', '=']).next().unwrap_or("").to_ascii_lowercase().replace('-', "");
            if let Some(p) =
                ["InternalIPInterfaceAddressPrefix", "ExternalIPInterfaceAddressPrefix", "InternalRoutingDomainId"]
                    .iter()
                    .find(|p| p.to_ascii_lowercase() == n && a.starts_with('-'))
            {
                return Err(format!(
                    "-{p} cannot be changed: the prefixes and the name are set by New-NetNat only. Remove the NAT (Remove-NetNat -Name NAME) and create it again with New-NetNat. Set-NetNat changes: -IcmpQueryTimeout, -TcpEstablishedConnectionTimeout, -TcpTransientConnectionTimeout, -TcpFilteringBehavior, -UdpFilteringBehavior, -UdpIdleSessionTimeout, -UdpInboundRefresh (and netnat's -FilterPolicyFile, -RemoveFilterPolicy)."
                ));
            }
        }
    }
    let b = bind(c.name, c.params, args)?;
    let print_if_passthru = b.switch("PassThru")?;
    let call = |request, print| Ok(Call { request, print });
    match c.name {
        "New-NetNat" => {
            routing_domain(&b)?;
            let name = required(&b, "Name", "the name of the NAT, e.g. -Name WinNAT")?.to_owned();
            let internal = required(
                &b,
                "InternalIPInterfaceAddressPrefix",
                "the internal subnet to translate, e.g. -InternalIPInterfaceAddressPrefix 10.100.0.0/16",
            )?;
            let internal_prefix = prefix("InternalIPInterfaceAddressPrefix", internal)?;
            let external_prefix = b
                .one("ExternalIPInterfaceAddressPrefix")
                .map(|v| prefix("ExternalIPInterfaceAddressPrefix", v))
                .transpose()?;
            let filter_policy = b.one("FilterPolicyFile").map(read_policy).transpose()?;
            checked_size(Request::NewNetNat { name, internal_prefix, external_prefix, filter_policy }, true)
        }
        "Get-NetNat" => call(Request::GetNetNat { names: b.many("Name") }, true),
        "Set-NetNat" => {
            let secs = "a number of seconds (0-4294967295)";
            let changes = NatChanges {
                icmp_query_timeout: opt(&b, "IcmpQueryTimeout", secs)?,
                tcp_established_connection_timeout: opt(&b, "TcpEstablishedConnectionTimeout", secs)?,
                tcp_transient_connection_timeout: opt(&b, "TcpTransientConnectionTimeout", secs)?,
                tcp_filtering_behavior: filtering(&b, "TcpFilteringBehavior")?,
                udp_filtering_behavior: filtering(&b, "UdpFilteringBehavior")?,
                udp_idle_session_timeout: opt(&b, "UdpIdleSessionTimeout", secs)?,
                udp_inbound_refresh: b
                    .one("UdpInboundRefresh")
                    .map(|v| parse_bool("UdpInboundRefresh", v))
                    .transpose()?,
                filter_policy: match (b.one("FilterPolicyFile"), b.switch("RemoveFilterPolicy")?) {
                    (Some(_), true) => {
                        return Err(
                            "-FilterPolicyFile and -RemoveFilterPolicy contradict each other; give one of them.".into(),
                        )
                    }
                    (Some(path), false) => Some(PolicyChange::Set(read_policy(path)?)),
                    (None, true) => Some(PolicyChange::Remove),
                    (None, false) => None,
                },
            };
            checked_size(Request::SetNetNat { names: b.many("Name"), changes }, print_if_passthru)
        }
        "Remove-NetNat" => call(Request::RemoveNetNat { names: b.many("Name") }, print_if_passthru),
        "Get-NetNatSession" => {
            let (detailed, watch) = (b.switch("Detailed")?, b.switch("Watch")?);
            if detailed && watch {
                return Err("-Detailed describes the table and -Watch streams events instead; give one of them.".into());
            }
            call(Request::GetNetNatSession { detailed, watch }, true)
        }
        "Add-NetNatStaticMapping" => {
            routing_domain(&b)?;
            let nat_name = required(&b, "NatName", "the NAT to add the mapping to, e.g. -NatName WinNAT")?.to_owned();
            let protocol: Protocol = parse("Protocol", required(&b, "Protocol", "TCP or UDP")?, "TCP or UDP")?;
            let addr = "an IPv4 address such as 0.0.0.0";
            let external_address: Ipv4Addr = parse(
                "ExternalIPAddress",
                required(&b, "ExternalIPAddress", "the external address, 0.0.0.0 for any address of the host")?,
                addr,
            )?;
            let port = "a port number (1-65535)";
            let external_port: u16 = parse(
                "ExternalPort",
                required(&b, "ExternalPort", "the external port, e.g. -ExternalPort 8080")?,
                port,
            )?;
            let internal_address: Ipv4Addr = parse(
                "InternalIPAddress",
                required(&b, "InternalIPAddress", "the internal host, e.g. -InternalIPAddress 10.100.10.11")?,
                addr,
            )?;
            let internal_port = opt(&b, "InternalPort", port)?;
            let remote_prefix = b
                .one("RemoteExternalIPAddressPrefix")
                .map(|v| prefix("RemoteExternalIPAddressPrefix", v))
                .transpose()?;
            call(
                Request::AddNetNatStaticMapping {
                    nat_name,
                    protocol,
                    remote_prefix,
                    external_address,
                    external_port,
                    internal_address,
                    internal_port,
                },
                true,
            )
        }
        "Get-NetNatStaticMapping" => call(Request::GetNetNatStaticMapping { nat_names: b.many("NatName") }, true),
        "Remove-NetNatStaticMapping" => {
            let ids = ids(&b, "StaticMappingID")?;
            call(Request::RemoveNetNatStaticMapping { ids, nat_names: b.many("NatName") }, print_if_passthru)
        }
        "Add-NetNatExternalAddress" => {
            let nat_name = required(&b, "NatName", "the NAT, e.g. -NatName WinNAT")?.to_owned();
            let address = parse(
                "IPAddress",
                required(&b, "IPAddress", "the external address, e.g. -IPAddress 203.0.113.1")?,
                "an IPv4 address",
            )?;
            let port = "a port number (1-65535)";
            call(
                Request::AddNetNatExternalAddress {
                    nat_name,
                    address,
                    port_start: opt(&b, "PortStart", port)?,
                    port_end: opt(&b, "PortEnd", port)?,
                },
                true,
            )
        }
        "Get-NetNatExternalAddress" => call(Request::GetNetNatExternalAddress { nat_names: b.many("NatName") }, true),
        "Remove-NetNatExternalAddress" => {
            let ids = ids(&b, "ExternalAddressID")?;
            call(Request::RemoveNetNatExternalAddress { ids, nat_names: b.many("NatName") }, print_if_passthru)
        }
        "Get-NetNatGlobal" => call(Request::GetNetNatGlobal, true),
        "Set-NetNatGlobal" => {
            let v = required(&b, "InterRoutingDomainHairpinningMode", "Local or External")?;
            let hairpinning_mode: HairpinningMode = parse("InterRoutingDomainHairpinningMode", v, "Local or External")?;
            call(Request::SetNetNatGlobal { hairpinning_mode }, print_if_passthru)
        }
        "Get-NetNatStatistics" => call(Request::GetNetNatStatistics, true),
        other => Err(format!("{other} is not implemented")),
    }
}

/// Reads and checks a policy file here, with the user's rights, so a bad file is refused with
/// its line before anything is sent; the daemon checks the text again against the NAT.
fn read_policy(path: &str) -> Result<PolicySource, String> {
    let given = std::path::Path::new(path);
    let absolute = std::path::absolute(given).unwrap_or_else(|_| given.to_path_buf()).display().to_string();
    let source = crate::policy_file::load_source(given).map_err(|e| e.to_string())?;
    match source {
        crate::policy_file::FilterPolicySource::Rules(_) => {
            let (_, text) = crate::policy_file::load(given).map_err(|e| e.to_string())?;
            Ok(PolicySource { path: absolute, text, module: None })
        }
        crate::policy_file::FilterPolicySource::Module(spec) => {
            // Loaded here too, so a module that cannot run is refused before anything is sent.
            let any = netnat_engine::FilteringBehavior::AddressDependent;
            crate::policy_module::ModulePolicy::load(&spec, any, any).map_err(|e| e.to_string())?;
            Ok(PolicySource { path: absolute, text: String::new(), module: Some(spec.to_source()) })
        }
    }
}

/// A request that carries a policy file must fit in one control line.
fn checked_size(request: Request, print: bool) -> Result<Call, String> {
    let len = serde_json::to_string(&request).map(|s| s.len() + 1).unwrap_or(0);
    if len > MAX_LINE {
        return Err(format!(
            "the request with this filter policy is {len} bytes, more than the control line's {MAX_LINE}; shorten the file (comments count too)."
        ));
    }
    Ok(Call { request, print })
}

fn ids(b: &Bound, name: &str) -> Result<Option<Vec<u32>>, String> {
    b.many(name).map(|v| v.iter().map(|s| parse(name, s, "an ID number")).collect()).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_line(line: &str) -> Result<Call, String> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        build(find(&args[0]).unwrap(), &args[1..])
    }

    #[test]
    fn the_articles_commands_build_requests() {
        let c = build_line("New-NetNat -Name WinNAT -InternalIPInterfaceAddressPrefix 10.100.0.0/16").unwrap();
        assert!(matches!(c.request, Request::NewNetNat { ref name, .. } if name == "WinNAT"));
        assert!(c.print);
        let c = build_line(
            "Add-NetNatStaticMapping -NatName WinNAT -Protocol TCP -ExternalIPAddress 0.0.0.0 -ExternalPort 8080 -InternalIPAddress 10.100.10.11 -InternalPort 80",
        )
        .unwrap();
        assert!(matches!(
            c.request,
            Request::AddNetNatStaticMapping { external_port: 8080, internal_port: Some(80), .. }
        ));
        assert!(matches!(build_line("Get-NetNat WinNAT").unwrap().request, Request::GetNetNat { names: Some(_) }));
        assert!(matches!(build_line("Remove-NetNat").unwrap().request, Request::RemoveNetNat { names: None }));
        assert!(!build_line("Remove-NetNat").unwrap().print);
    }

    #[test]
    fn get_session_takes_netnats_detailed_switch() {
        let r = |line| build_line(line).unwrap().request;
        assert_eq!(r("Get-NetNatSession"), Request::GetNetNatSession { detailed: false, watch: false });
        assert_eq!(r("Get-NetNatSession -Detailed"), Request::GetNetNatSession { detailed: true, watch: false });
        assert_eq!(r("Get-NetNatSession --detailed"), Request::GetNetNatSession { detailed: true, watch: false });
        assert_eq!(r("Get-NetNatSession -Watch"), Request::GetNetNatSession { detailed: false, watch: true });
    }

    #[test]
    fn set_netnat_refuses_create_only_properties() {
        let e = build_line("Set-NetNat -Name WinNAT -InternalIPInterfaceAddressPrefix 10.0.0.0/8").err().unwrap();
        assert!(e.contains("cannot be changed") && e.contains("-UdpIdleSessionTimeout"), "{e}");
        let c = build_line(
            "Set-NetNat -Name WinNAT -UdpFilteringBehavior EndpointIndependentFiltering -UdpInboundRefresh $True",
        )
        .unwrap();
        match c.request {
            Request::SetNetNat { changes, .. } => {
                assert_eq!(changes.udp_filtering_behavior, Some(FilteringBehavior::EndpointIndependent));
                assert_eq!(changes.udp_inbound_refresh, Some(true));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_and_bad_values_say_what_to_give() {
        let e = build_line("New-NetNat -Name WinNAT").err().unwrap();
        assert!(e.contains("-InternalIPInterfaceAddressPrefix"), "{e}");
        let e = build_line("New-NetNat -Name WinNAT -InternalIPInterfaceAddressPrefix 10.100.0.0").err().unwrap();
        assert!(e.contains("IPv4 prefix"), "{e}");
        let e = build_line("Set-NetNatGlobal").err().unwrap();
        assert!(e.contains("InterRoutingDomainHairpinningMode"), "{e}");
    }

    #[test]
    fn filter_policy_files_are_read_and_checked_by_the_cmdlet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        let file = path.display().to_string();
        // Arguments as a list: a temporary path may hold spaces (Windows).
        let build_args = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            build(find(&args[0]).unwrap(), &args[1..])
        };
        std::fs::write(&path, "[[rule]]\naction = \"deny\"\nremote = \"198.51.100.0/24\"\n").unwrap();
        let c = build_args(&["Set-NetNat", "-Name", "WinNAT", "-FilterPolicyFile", &file]).unwrap();
        let Request::SetNetNat { changes, .. } = c.request else { panic!() };
        let Some(PolicyChange::Set(source)) = changes.filter_policy else { panic!("{changes:?}") };
        assert_eq!(source.path, file);
        assert!(source.text.contains("198.51.100.0/24"), "the text travels, not only the path");
        let c = build_args(&[
            "New-NetNat",
            "WinNAT",
            "-InternalIPInterfaceAddressPrefix",
            "10.100.0.0/16",
            "-FilterPolicyFile",
            &file,
        ])
        .unwrap();
        assert!(matches!(c.request, Request::NewNetNat { filter_policy: Some(_), .. }));
        let c = build_line("Set-NetNat -Name WinNAT -RemoveFilterPolicy").unwrap();
        assert!(matches!(
            c.request,
            Request::SetNetNat { changes: NatChanges { filter_policy: Some(PolicyChange::Remove), .. }, .. }
        ));

        std::fs::write(&path, "[[rule]]\naction = \"deny\"\nremote = \"198.51.100.0/33\"\n").unwrap();
        let e = build_args(&["Set-NetNat", "-Name", "WinNAT", "-FilterPolicyFile", &file]).err().unwrap();
        assert!(e.starts_with(&format!("{file}:3: rule 1: \"remote\" is not an IPv4 prefix")), "{e}");
        let e = build_args(&["Set-NetNat", "-FilterPolicyFile", &file, "-RemoveFilterPolicy"]).err().unwrap();
        assert!(e.contains("contradict"), "{e}");
        let e = build_line("Set-NetNat -FilterPolicyFile /nonexistent/policy.toml").err().unwrap();
        assert!(e.starts_with("/nonexistent/policy.toml: cannot read"), "{e}");
    }

    #[test]
    fn usage_lists_parameters() {
        let u = usage(find("get-netnat").unwrap());
        assert!(u.contains("[[-Name] <String[]>]"), "{u}");
    }
}
