//! The control protocol between the cmdlets and the daemon: one JSON object per line.
//!
//! A client writes one [`Request`] line and reads one [`Reply`] line; a connection may carry
//! several exchanges. A line that is not a valid request gets a `BadRequest` error reply and
//! the connection (and the daemon) stay up. Values are already typed here: the cmdlets parse
//! PowerShell's spelling, the daemon checks the values against each other and the state.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use netnat_engine::{FilteringBehavior, HairpinningMode, Protocol};
use serde::{Deserialize, Serialize};

use super::objects::{NetNat, NetNatExternalAddress, NetNatGlobal, NetNatSession, NetNatStaticMapping};

/// Longest request line the daemon reads; longer lines are refused.
pub const MAX_LINE: usize = 64 * 1024;

/// The settable properties of Set-NetNat; `None` leaves a property as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatChanges {
    /// IcmpQueryTimeout, seconds.
    pub icmp_query_timeout: Option<u32>,
    /// TcpEstablishedConnectionTimeout, seconds.
    pub tcp_established_connection_timeout: Option<u32>,
    /// TcpTransientConnectionTimeout, seconds.
    pub tcp_transient_connection_timeout: Option<u32>,
    /// TcpFilteringBehavior.
    pub tcp_filtering_behavior: Option<FilteringBehavior>,
    /// UdpFilteringBehavior.
    pub udp_filtering_behavior: Option<FilteringBehavior>,
    /// UdpIdleSessionTimeout, seconds.
    pub udp_idle_session_timeout: Option<u32>,
    /// UdpInboundRefresh.
    pub udp_inbound_refresh: Option<bool>,
    /// netnat's extension: set (`-FilterPolicyFile`) or remove (`-RemoveFilterPolicy`) the
    /// filter policy. Not sent when unused, so the request reads as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_policy: Option<PolicyChange>,
}

/// A filter policy file as the cmdlet read it, with the user's rights: the daemon never opens
/// a path a client names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySource {
    /// The file, made absolute.
    pub path: String,
    /// Its contents (a policy file's TOML; for a module file, empty).
    pub text: String,
    /// The WASM module the file is or names, read by the cmdlet (`None`: a policy of rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<ModuleSource>,
}

/// A WASM policy module as the cmdlet read it (`src/policy_module.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleSource {
    /// The module's bytes (WASM binary or WAT text), base64.
    pub base64: String,
    /// `deny` or `fallback`: what a failed decision turns into.
    pub on_error: String,
    /// Fuel per decision.
    pub fuel_per_call: u64,
}

/// What Set-NetNat does to the filter policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PolicyChange {
    /// Use this policy (replacing any other).
    Set(PolicySource),
    /// Go back to the plain filtering behaviours.
    Remove,
}

impl NatChanges {
    /// Whether nothing is to change.
    pub fn is_empty(&self) -> bool {
        *self == NatChanges::default()
    }
}

/// One request: a cmdlet with typed parameters. Name lists (`names`, `nat_names`) filter;
/// `None` means all objects. Wildcards `*` and `?` are allowed in names, as in PowerShell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmdlet", deny_unknown_fields)]
pub enum Request {
    /// New-NetNat.
    #[serde(rename = "New-NetNat")]
    NewNetNat {
        /// Name.
        name: String,
        /// InternalIPInterfaceAddressPrefix.
        internal_prefix: Ipv4Net,
        /// ExternalIPInterfaceAddressPrefix.
        #[serde(default)]
        external_prefix: Option<Ipv4Net>,
        /// netnat's extension: a filter policy (`-FilterPolicyFile`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter_policy: Option<PolicySource>,
    },
    /// Get-NetNat.
    #[serde(rename = "Get-NetNat")]
    GetNetNat {
        /// Names to show.
        #[serde(default)]
        names: Option<Vec<String>>,
    },
    /// Set-NetNat.
    #[serde(rename = "Set-NetNat")]
    SetNetNat {
        /// NATs to change.
        #[serde(default)]
        names: Option<Vec<String>>,
        /// What to change.
        changes: NatChanges,
    },
    /// Remove-NetNat.
    #[serde(rename = "Remove-NetNat")]
    RemoveNetNat {
        /// NATs to remove; `None` removes all.
        #[serde(default)]
        names: Option<Vec<String>>,
    },
    /// Get-NetNatSession.
    #[serde(rename = "Get-NetNatSession")]
    GetNetNatSession {
        /// netnat's `-Detailed`: add each session's idle time, time left, timeout, TCP state
        /// and opening direction. Left out of the line when false, so the default request is
        /// WinNAT's `{"cmdlet":"Get-NetNatSession"}` (an older daemon refuses the field rather
        /// than answering without the details).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        detailed: bool,
        /// netnat's `-Watch`: instead of the table, stream the session events from now on,
        /// one JSON line each (`crate::event_log::EventLine`), after a first `Ok` reply, until
        /// the client hangs up. Left out of the line when false, as `detailed`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        watch: bool,
    },
    /// Add-NetNatStaticMapping.
    #[serde(rename = "Add-NetNatStaticMapping")]
    AddNetNatStaticMapping {
        /// NatName.
        nat_name: String,
        /// Protocol.
        protocol: Protocol,
        /// RemoteExternalIPAddressPrefix (default 0.0.0.0/0).
        #[serde(default)]
        remote_prefix: Option<Ipv4Net>,
        /// ExternalIPAddress.
        external_address: Ipv4Addr,
        /// ExternalPort.
        external_port: u16,
        /// InternalIPAddress.
        internal_address: Ipv4Addr,
        /// InternalPort (default ExternalPort).
        #[serde(default)]
        internal_port: Option<u16>,
    },
    /// Get-NetNatStaticMapping.
    #[serde(rename = "Get-NetNatStaticMapping")]
    GetNetNatStaticMapping {
        /// NATs whose mappings to show.
        #[serde(default)]
        nat_names: Option<Vec<String>>,
    },
    /// Remove-NetNatStaticMapping.
    #[serde(rename = "Remove-NetNatStaticMapping")]
    RemoveNetNatStaticMapping {
        /// StaticMappingIDs.
        #[serde(default)]
        ids: Option<Vec<u32>>,
        /// NATs whose mappings to remove.
        #[serde(default)]
        nat_names: Option<Vec<String>>,
    },
    /// Add-NetNatExternalAddress.
    #[serde(rename = "Add-NetNatExternalAddress")]
    AddNetNatExternalAddress {
        /// NatName.
        nat_name: String,
        /// IPAddress.
        address: Ipv4Addr,
        /// PortStart (default 1024).
        #[serde(default)]
        port_start: Option<u16>,
        /// PortEnd (default 65535).
        #[serde(default)]
        port_end: Option<u16>,
    },
    /// Get-NetNatExternalAddress.
    #[serde(rename = "Get-NetNatExternalAddress")]
    GetNetNatExternalAddress {
        /// NATs whose addresses to show.
        #[serde(default)]
        nat_names: Option<Vec<String>>,
    },
    /// Remove-NetNatExternalAddress.
    #[serde(rename = "Remove-NetNatExternalAddress")]
    RemoveNetNatExternalAddress {
        /// ExternalAddressIDs.
        #[serde(default)]
        ids: Option<Vec<u32>>,
        /// NATs whose addresses to remove.
        #[serde(default)]
        nat_names: Option<Vec<String>>,
    },
    /// Get-NetNatGlobal.
    #[serde(rename = "Get-NetNatGlobal")]
    GetNetNatGlobal,
    /// Set-NetNatGlobal.
    #[serde(rename = "Set-NetNatGlobal")]
    SetNetNatGlobal {
        /// InterRoutingDomainHairpinningMode.
        hairpinning_mode: HairpinningMode,
    },
    /// netnat's own: counters of every NAT, for scripts and tests (`netnat Get-NetNatStatistics`).
    #[serde(rename = "Get-NetNatStatistics")]
    GetNetNatStatistics,
}

/// What a request produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "objects")]
pub enum Output {
    /// Nothing (Set-* without -PassThru).
    Nothing,
    /// NetNat objects.
    Nats(Vec<NetNat>),
    /// NetNatStaticMapping objects.
    StaticMappings(Vec<NetNatStaticMapping>),
    /// NetNatExternalAddress objects.
    ExternalAddresses(Vec<NetNatExternalAddress>),
    /// NetNatSession objects.
    Sessions(Vec<NetNatSession>),
    /// The NetNatGlobal object.
    Global(NetNatGlobal),
    /// Counters per NAT name (the engine's stats, as JSON) and, on Linux, the kernel's
    /// NFQUEUE counters (under `nfqueue`, in the same `[{"stats": ...}]` shape).
    Statistics(serde_json::Map<String, serde_json::Value>),
}

/// How a refusal because of who the peer is begins (see [`ControlError::denied`]).
pub const PERMISSION_DENIED: &str = "permission denied";

/// The kind of a refused request; the first three carry WinNAT's own wording.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// Win32 ERROR_INVALID_PARAMETER (87).
    InvalidParameter,
    /// Win32 ERROR_DUP_NAME (52).
    DuplicateName,
    /// CIM "no objects found".
    NotFound,
    /// A line that is not a valid request.
    BadRequest,
    /// The daemon failed to do what was asked (e.g. could not save its state).
    Internal,
}

/// A refused request: the kind and a message saying what is wrong and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{}", self.render())]
pub struct ControlError {
    /// The kind.
    pub kind: ErrorKind,
    /// What is wrong and how to fix it.
    pub detail: String,
}

impl ControlError {
    /// The parameter is incorrect: `detail` says which and how to fix it.
    pub fn invalid(detail: impl Into<String>) -> Self {
        ControlError { kind: ErrorKind::InvalidParameter, detail: detail.into() }
    }

    /// A duplicate name exists on the network: `detail` says which.
    pub fn duplicate(detail: impl Into<String>) -> Self {
        ControlError { kind: ErrorKind::DuplicateName, detail: detail.into() }
    }

    /// No objects found; `detail` is the whole CIM message.
    pub fn not_found(detail: impl Into<String>) -> Self {
        ControlError { kind: ErrorKind::NotFound, detail: detail.into() }
    }

    /// A malformed request.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        ControlError { kind: ErrorKind::BadRequest, detail: detail.into() }
    }

    /// The peer may not use the daemon; `detail` starts with [`PERMISSION_DENIED`] and says
    /// how to get access. On the wire it is a `BadRequest` (the kind clients have always
    /// received for it), but it is not rendered as a malformed request.
    pub fn denied(detail: impl Into<String>) -> Self {
        let detail = detail.into();
        let detail =
            if detail.starts_with(PERMISSION_DENIED) { detail } else { format!("{PERMISSION_DENIED}: {detail}") };
        ControlError { kind: ErrorKind::BadRequest, detail }
    }

    /// The daemon failed.
    pub fn internal(detail: impl Into<String>) -> Self {
        ControlError { kind: ErrorKind::Internal, detail: detail.into() }
    }

    /// WinNAT's sentence for the kind followed by the detail.
    pub fn render(&self) -> String {
        match self.kind {
            ErrorKind::InvalidParameter => format!("The parameter is incorrect. {}", self.detail),
            ErrorKind::DuplicateName => {
                format!("You were not connected because a duplicate name exists on the network. {}", self.detail)
            }
            ErrorKind::NotFound | ErrorKind::Internal => self.detail.clone(),
            ErrorKind::BadRequest if self.detail.starts_with(PERMISSION_DENIED) => self.detail.clone(),
            ErrorKind::BadRequest => format!("malformed control request: {}", self.detail),
        }
    }
}

/// The answer to one request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Done.
    Ok {
        /// What it produced.
        output: Output,
        /// Things the user should know (printed to stderr by the cmdlets).
        #[serde(default)]
        warnings: Vec<String>,
    },
    /// Refused.
    Error(ControlError),
}

/// PowerShell-style wildcard match (`*` any run, `?` one character, anything else itself,
/// ASCII letters case-insensitive; no `[...]` sets), in O(pattern × name) time at worst.
///
/// Greedy, remembering only the last `*` seen: on a mismatch the last `*` takes one more
/// character and matching resumes after it. Earlier stars never need revisiting, because
/// whatever they matched, the last one can absorb instead. A naive recursive matcher is
/// exponential on `*a*a*…*b`, and this runs under the daemon's service lock.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // After the last `*`: where in the pattern to resume, and where its run ends in the name.
    let mut star: Option<(usize, usize)> = None;
    while let Some(&c) = n.get(ni) {
        match p.get(pi) {
            Some('*') => {
                pi += 1;
                star = Some((pi, ni));
            }
            Some(&q) if q == '?' || q.eq_ignore_ascii_case(&c) => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((resume, end)) => {
                    star = Some((resume, end + 1));
                    pi = resume;
                    ni = end + 1;
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&q| q == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_through_json_lines() {
        let reqs = vec![
            Request::NewNetNat {
                name: "WinNAT".into(),
                internal_prefix: "10.100.0.0/16".parse().unwrap(),
                external_prefix: None,
                filter_policy: None,
            },
            Request::NewNetNat {
                name: "WinNAT".into(),
                internal_prefix: "10.100.0.0/16".parse().unwrap(),
                external_prefix: None,
                filter_policy: Some(PolicySource {
                    path: "/p.toml".into(),
                    text: "[[rule]]\naction = \"deny\"\n".into(),
                    module: None,
                }),
            },
            Request::SetNetNat {
                names: None,
                changes: NatChanges { filter_policy: Some(PolicyChange::Remove), ..NatChanges::default() },
            },
            Request::GetNetNatSession { detailed: false, watch: false },
            Request::GetNetNatSession { detailed: true, watch: false },
            Request::GetNetNatSession { detailed: false, watch: true },
            Request::SetNetNat {
                names: Some(vec!["WinNAT".into()]),
                changes: NatChanges {
                    udp_filtering_behavior: Some(FilteringBehavior::EndpointIndependent),
                    ..Default::default()
                },
            },
        ];
        for r in reqs {
            let line = serde_json::to_string(&r).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        }
        let s = serde_json::to_string(&Request::GetNetNatSession { detailed: false, watch: false }).unwrap();
        assert_eq!(s, r#"{"cmdlet":"Get-NetNatSession"}"#);
        let s = serde_json::to_string(&Request::GetNetNatSession { detailed: true, watch: false }).unwrap();
        assert_eq!(s, r#"{"cmdlet":"Get-NetNatSession","detailed":true}"#);
    }

    #[test]
    fn unknown_fields_and_cmdlets_are_refused() {
        assert!(serde_json::from_str::<Request>(r#"{"cmdlet":"Get-NetNat","bogus":1}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"cmdlet":"Format-C"}"#).is_err());
    }

    #[test]
    fn errors_carry_winnat_wording() {
        let e = ControlError::invalid("prefix overlaps");
        assert_eq!(e.to_string(), "The parameter is incorrect. prefix overlaps");
        let e = ControlError::duplicate("TCP port 8080 is taken");
        assert!(e.to_string().starts_with("You were not connected because a duplicate name exists on the network."));
    }

    #[test]
    fn a_refusal_is_not_called_a_malformed_request() {
        let e = ControlError::denied("permission denied: uid 1000 may not manage the NAT; run the cmdlet as root");
        assert_eq!(e.kind, ErrorKind::BadRequest, "the wire kind clients know");
        assert_eq!(e.to_string(), "permission denied: uid 1000 may not manage the NAT; run the cmdlet as root");
        let e = ControlError::denied("only root may manage the NAT");
        assert_eq!(e.to_string(), "permission denied: only root may manage the NAT");
        // It survives the wire: the client renders what the daemon meant.
        let line = serde_json::to_string(&Reply::Error(e.clone())).unwrap();
        assert_eq!(serde_json::from_str::<Reply>(&line).unwrap(), Reply::Error(e));
        let e = ControlError::bad_request("empty line");
        assert_eq!(e.to_string(), "malformed control request: empty line");
    }

    #[test]
    fn wildcards_match_like_powershell() {
        assert!(wildcard_match("win*", "WinNAT"));
        assert!(wildcard_match("W?nNAT", "WinNAT"));
        assert!(wildcard_match("WinNAT", "winnat"));
        assert!(!wildcard_match("Win", "WinNAT"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("*", "WinNAT"));
        assert!(wildcard_match("**nat", "WinNAT"));
        assert!(wildcard_match("w*n*t", "WinNAT"));
        assert!(!wildcard_match("w*n*x", "WinNAT"));
        assert!(!wildcard_match("?", ""));
        assert!(!wildcard_match("", "a"));
        assert!(wildcard_match("", ""));
        assert!(wildcard_match("WinNAT?", "WinNAT2"));
        assert!(!wildcard_match("WinNAT?", "WinNAT"));
        // `[` is an ordinary character, as it always was here.
        assert!(wildcard_match("nat[1]", "NAT[1]"));
        assert!(!wildcard_match("nat[12]", "nat1"));
        // Only ASCII letters fold case; anything else must be equal.
        assert!(wildcard_match("ÉCOLE*", "École normale"));
        assert!(!wildcard_match("é", "É"));
        assert!(wildcard_match("é?", "éX"));
    }

    /// The exponential matcher this replaced: the specification of the semantics.
    fn reference(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| reference(rest, &n[i..])),
            Some(('?', rest)) => !n.is_empty() && reference(rest, &n[1..]),
            Some((c, rest)) => n.first().is_some_and(|m| m.eq_ignore_ascii_case(c)) && reference(rest, &n[1..]),
        }
    }

    /// Every string over `alphabet` of length up to `max`.
    fn strings(alphabet: &[char], max: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..max {
            last = last.iter().flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}"))).collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn wildcards_agree_with_the_naive_matcher_on_every_short_input() {
        let patterns = strings(&['*', '?', 'a', 'B'], 5);
        let names = strings(&['a', 'b', 'A'], 5);
        let mut matched = 0;
        for p in &patterns {
            let pc: Vec<char> = p.chars().collect();
            for n in &names {
                let nc: Vec<char> = n.chars().collect();
                let want = reference(&pc, &nc);
                assert_eq!(wildcard_match(p, n), want, "pattern {p:?} against {n:?}");
                matched += usize::from(want);
            }
        }
        // Both outcomes were exercised in quantity.
        assert!(matched > 10_000 && matched < patterns.len() * names.len() / 2, "{matched}");
    }

    #[test]
    fn a_pathological_pattern_is_decided_without_backtracking_blow_up() {
        // The naive matcher tries every way to place 25 'a's among 60 (C(60, 25) ≈ 5e16).
        let name = "a".repeat(60);
        let never = format!("{}*b", "*a".repeat(25));
        assert!(!wildcard_match(&never, &name));
        let long = "a".repeat(10_000);
        assert!(!wildcard_match(&format!("{}*b", "*a".repeat(1000)), &long));
        assert!(wildcard_match(&format!("{}*", "*a".repeat(1000)), &long));
        assert!(wildcard_match(&format!("{}a", "*?".repeat(1000)), &long));
        assert!(!wildcard_match(&"*a".repeat(10_001), &long));
    }
}
