//! Filtering policy files: the TOML format, its parser, and errors that point at the file,
//! line and rule. The engine's [`Policy`] is what a file compiles to; what it decides is
//! documented there (`netnat_engine::policy`).
//!
//! ```toml
//! fallback = "AddressDependentFiltering"  # optional; default: the NAT's Tcp/UdpFilteringBehavior
//!
//! [[rule]]                     # tried in order, the first that matches decides
//! action = "deny"              # allow | deny
//! remote = "198.51.100.0/24"   # optional, a prefix or one address; default any
//! remote_ports = "1-1023"      # optional, FIRST-LAST, one port, or an integer
//! protocol = "udp"             # optional, tcp | udp; default both
//! internal = "10.100.0.5/32"   # optional internal host or prefix; default any
//!
//! [[limit]]                    # the first whose prefix holds the internal host applies
//! internal = "10.100.0.0/16"   # optional; default any
//! new_inbound_per_second = 10  # per internal host
//! ```
//!
//! Or, instead of rules, limits and fallback, a WASM policy module (`src/policy_module.rs`):
//!
//! ```toml
//! [module]
//! path = "allowlist-rate.wat"  # .wasm or .wat, relative to this file
//! on_error = "fallback"        # optional: deny (default) | fallback
//! fuel_per_call = 100000       # optional: the budget of one decision
//! ```
//!
//! Unknown keys are errors (a misspelt key is never silently ignored). Errors read
//! `policy.toml:7: rule 2: "remote" is not an IPv4 prefix: "198.51.100.0/33" ...`: the file
//! as it was named, the line (and the column where the TOML parser gives one), the rule or
//! limit, what is wrong and what to write instead.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;
use netnat_engine::policy::{InboundLimit, Item, Policy, PolicyError, Ports, Rule, RuleAction};
use netnat_engine::{FilteringBehavior, Protocol};
use serde::de::IgnoredAny;
use serde::Deserialize;
use toml::Spanned;

use crate::policy_module::{OnError, DEFAULT_FUEL_PER_CALL};

/// Largest policy file accepted: the cmdlets send it in one control request line (64 KiB,
/// with JSON's escaping), and 32 KiB holds several hundred rules.
pub const MAX_FILE_BYTES: u64 = 32 * 1024;

/// A policy file that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyFileError {
    /// The file, as it was named.
    pub file: String,
    /// 1-based line, when the problem has one.
    pub line: Option<usize>,
    /// 1-based column, where the TOML parser gives one.
    pub column: Option<usize>,
    /// The rule or limit.
    pub item: Option<Item>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for PolicyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if let Some(item) = self.item {
            write!(f, ": {item}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for PolicyFileError {}

/// Where each rule's and limit's keys are, for pointing at them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ItemLines {
    /// The `[[rule]]` / `[[limit]]` header.
    header: usize,
    keys: Vec<(&'static str, usize)>,
}

impl ItemLines {
    fn of(&self, key: Option<&str>) -> usize {
        key.and_then(|k| self.keys.iter().find(|(name, _)| *name == k)).map_or(self.header, |(_, line)| *line)
    }
}

/// A parsed policy file: the policy and where its parts are in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    file: String,
    policy: Policy,
    module: Option<ModuleRef>,
    rules: Vec<ItemLines>,
    limits: Vec<ItemLines>,
}

/// A policy file's `[module]`: which module to run, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleRef {
    /// As written: relative paths are relative to the policy file.
    pub path: std::path::PathBuf,
    /// What a failed decision turns into.
    pub on_error: OnError,
    /// Fuel per decision.
    pub fuel_per_call: u64,
}

impl Parsed {
    /// The policy (empty when the file names a module).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The module the file names, if it names one instead of rules.
    pub fn module(&self) -> Option<&ModuleRef> {
        self.module.as_ref()
    }

    /// Checks the policy against the NAT it is for: every rule and limit must be able to
    /// match a host of `internal_prefix`. The error points at the offending line.
    pub fn check_for(&self, internal_prefix: Ipv4Net) -> Result<(), PolicyFileError> {
        self.policy.check_for(internal_prefix).map_err(|e| self.locate(e))
    }

    /// An engine error about this policy, with the file and line of the part it names.
    pub fn locate(&self, e: PolicyError) -> PolicyFileError {
        let key = e.problem.key();
        let line = match e.item {
            Some(Item::Rule(n)) => self.rules.get(n - 1).map(|l| l.of(key)),
            Some(Item::Limit(n)) => self.limits.get(n - 1).map(|l| l.of(key)),
            None => None,
        };
        PolicyFileError { file: self.file.clone(), line, column: None, item: e.item, message: e.problem.to_string() }
    }
}

/// What `--filter-policy FILE` names: a policy file of rules, or a WASM module (a `.wasm` or
/// `.wat` file, or a policy file whose `[module]` names one).
#[derive(Debug)]
pub enum FilterPolicySource {
    /// Rules, limits and a fallback, for the engine.
    Rules(Parsed),
    /// A module, to load with `ModulePolicy::load`.
    Module(crate::policy_module::ModuleSpec),
}

/// Reads `--filter-policy FILE`: a module by its extension, else a policy file (which may
/// name a module, relative to itself).
pub fn load_source(path: &Path) -> anyhow::Result<FilterPolicySource> {
    use crate::policy_module::ModuleSpec;
    if ModuleSpec::is_module_path(path) {
        return Ok(FilterPolicySource::Module(ModuleSpec::read(path, OnError::default(), DEFAULT_FUEL_PER_CALL)?));
    }
    let (parsed, _) = load(path)?;
    Ok(match parsed.module() {
        None => FilterPolicySource::Rules(parsed),
        Some(m) => {
            let module_path = path.parent().unwrap_or(Path::new(".")).join(&m.path);
            FilterPolicySource::Module(ModuleSpec::read(&module_path, m.on_error, m.fuel_per_call)?)
        }
    })
}

/// Reads and parses the policy file at `path`.
pub fn load(path: &Path) -> Result<(Parsed, String), PolicyFileError> {
    let file = path.display().to_string();
    let fail = |message: String| PolicyFileError { file: file.clone(), line: None, column: None, item: None, message };
    let len = std::fs::metadata(path)
        .map_err(|e| fail(format!("cannot read the filter policy file: {e}; check the path and that it is readable")))?
        .len();
    if len > MAX_FILE_BYTES {
        return Err(fail(format!(
            "the file has {len} bytes; a filter policy has at most {MAX_FILE_BYTES} (merge rules into wider prefixes)"
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail(format!("cannot read the filter policy file: {e}; it must be UTF-8 TOML text")))?;
    let parsed = parse(&text, &file)?;
    Ok((parsed, text))
}

/// The file as written; values are checked afterwards so errors can name the rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    fallback: Option<Spanned<String>>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    limit: Vec<Spanned<RawLimit>>,
    module: Option<Spanned<RawModule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModule {
    path: Spanned<String>,
    on_error: Option<Spanned<String>>,
    fuel_per_call: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    action: Spanned<String>,
    remote: Option<Spanned<String>>,
    remote_ports: Option<Spanned<PortsText>>,
    protocol: Option<Spanned<String>>,
    internal: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    internal: Option<Spanned<String>>,
    new_inbound_per_second: Spanned<i64>,
}

/// `remote_ports`: a string (`"1-1023"`, `"53"`) or an integer (`53`).
#[derive(Debug)]
struct PortsText(String);

impl<'de> Deserialize<'de> for PortsText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = PortsText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port range such as \"1-1023\", or a port")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PortsText, E> {
                Ok(PortsText(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PortsText, E> {
                Ok(PortsText(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PortsText, E> {
                Ok(PortsText(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Only where the rules and limits start, to name the one a TOML error is in.
#[derive(Debug, Deserialize)]
struct Outline {
    #[serde(default)]
    rule: Vec<Spanned<IgnoredAny>>,
    #[serde(default)]
    limit: Vec<Spanned<IgnoredAny>>,
}

/// 1-based line and column of byte `offset` of `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The rule or limit whose header is the last one at or before `offset`.
fn item_at(text: &str, offset: usize) -> Option<Item> {
    let outline: Outline = toml::from_str(text).ok()?;
    let rules = outline.rule.iter().enumerate().map(|(i, r)| (r.span().start, Item::Rule(i + 1)));
    let limits = outline.limit.iter().enumerate().map(|(i, l)| (l.span().start, Item::Limit(i + 1)));
    rules.chain(limits).filter(|(start, _)| *start <= offset).max_by_key(|(start, _)| *start).map(|(_, item)| item)
}

/// Parses `text`, the contents of the policy file `file` (named in errors).
pub fn parse(text: &str, file: &str) -> Result<Parsed, PolicyFileError> {
    let raw: RawPolicy = toml::from_str(text).map_err(|e| {
        let at = e.span().map(|s| s.start);
        let (line, column) = at.map(|o| position(text, o)).unzip();
        PolicyFileError {
            file: file.to_owned(),
            line,
            column,
            item: at.and_then(|o| item_at(text, o)),
            message: toml_message(e.message()),
        }
    })?;
    let line_of = |s: std::ops::Range<usize>| position(text, s.start).0;
    let fail = |item: Option<Item>, span: std::ops::Range<usize>, message: String| PolicyFileError {
        file: file.to_owned(),
        line: Some(line_of(span)),
        column: None,
        item,
        message,
    };

    let fallback = match raw.fallback {
        None => None,
        Some(f) => Some(f.get_ref().parse::<FilteringBehavior>().map_err(|_| {
            fail(
                None,
                f.span(),
                format!(
                    "\"fallback\" is not a filtering behaviour: {:?}; give EndpointIndependentFiltering, AddressDependentFiltering or AddressAndPortDependentFiltering",
                    f.get_ref()
                ),
            )
        })?),
    };

    let mut rules = Vec::with_capacity(raw.rule.len());
    let mut rule_lines = Vec::with_capacity(raw.rule.len());
    for (i, spanned) in raw.rule.iter().enumerate() {
        let item = Some(Item::Rule(i + 1));
        let r = spanned.get_ref();
        let mut lines = ItemLines { header: line_of(spanned.span()), keys: Vec::new() };
        let action = match r.action.get_ref().to_ascii_lowercase().as_str() {
            "allow" => RuleAction::Allow,
            "deny" => RuleAction::Deny,
            other => {
                return Err(fail(item, r.action.span(), format!("\"action\" must be allow or deny, not {other:?}")))
            }
        };
        lines.keys.push(("action", line_of(r.action.span())));
        let remote = prefix_or_any("remote", r.remote.as_ref()).map_err(|(s, m)| fail(item, s, m))?;
        let internal = prefix_or_any("internal", r.internal.as_ref()).map_err(|(s, m)| fail(item, s, m))?;
        let remote_ports = match &r.remote_ports {
            None => None,
            Some(p) => Some(ports(&p.get_ref().0).map_err(|m| fail(item, p.span(), m))?),
        };
        let protocol = match &r.protocol {
            None => None,
            Some(p) => Some(p.get_ref().parse::<Protocol>().map_err(|_| {
                fail(item, p.span(), format!("\"protocol\" must be tcp or udp, not {:?}", p.get_ref()))
            })?),
        };
        for (key, span) in [
            ("remote", r.remote.as_ref().map(Spanned::span)),
            ("internal", r.internal.as_ref().map(Spanned::span)),
            ("remote_ports", r.remote_ports.as_ref().map(Spanned::span)),
            ("protocol", r.protocol.as_ref().map(Spanned::span)),
        ] {
            if let Some(span) = span {
                lines.keys.push((key, line_of(span)));
            }
        }
        rules.push(Rule { action, remote, remote_ports, protocol, internal });
        rule_lines.push(lines);
    }

    let mut limits = Vec::with_capacity(raw.limit.len());
    let mut limit_lines = Vec::with_capacity(raw.limit.len());
    for (i, spanned) in raw.limit.iter().enumerate() {
        let item = Some(Item::Limit(i + 1));
        let l = spanned.get_ref();
        let mut lines = ItemLines { header: line_of(spanned.span()), keys: Vec::new() };
        let internal = prefix_or_any("internal", l.internal.as_ref()).map_err(|(s, m)| fail(item, s, m))?;
        let rate = l.new_inbound_per_second.get_ref();
        let new_inbound_per_second = u32::try_from(*rate).map_err(|_| {
            fail(
                item,
                l.new_inbound_per_second.span(),
                format!("\"new_inbound_per_second\" is not a count: {rate}; give a whole number of sessions, e.g. 10"),
            )
        })?;
        lines.keys.push(("new_inbound_per_second", line_of(l.new_inbound_per_second.span())));
        if let Some(p) = &l.internal {
            lines.keys.push(("internal", line_of(p.span())));
        }
        limits.push(InboundLimit { internal, new_inbound_per_second });
        limit_lines.push(lines);
    }

    let module = match &raw.module {
        None => None,
        Some(m) => {
            if fallback.is_some() || !rules.is_empty() || !limits.is_empty() {
                return Err(fail(
                    None,
                    m.span(),
                    "[module] and rules, limits or fallback in one file: the module decides alone (its answer 0 \
                     falls back to the NAT's filtering behaviour); keep one of them"
                        .to_owned(),
                ));
            }
            let m = m.get_ref();
            let on_error = match &m.on_error {
                None => OnError::default(),
                Some(o) => o.get_ref().parse().map_err(|msg| fail(None, o.span(), msg))?,
            };
            let fuel_per_call = match &m.fuel_per_call {
                None => DEFAULT_FUEL_PER_CALL,
                Some(f) => u64::try_from(*f.get_ref()).ok().filter(|&n| n > 0).ok_or_else(|| {
                    fail(
                        None,
                        f.span(),
                        format!(
                            "\"fuel_per_call\" is {}; give a positive budget, e.g. {DEFAULT_FUEL_PER_CALL}",
                            f.get_ref()
                        ),
                    )
                })?,
            };
            Some(ModuleRef { path: m.path.get_ref().into(), on_error, fuel_per_call })
        }
    };
    let parsed = Parsed {
        file: file.to_owned(),
        policy: Policy { fallback, rules, limits },
        module,
        rules: rule_lines,
        limits: limit_lines,
    };
    parsed.policy.check().map_err(|e| parsed.locate(e))?;
    Ok(parsed)
}

/// The TOML parser's message, with a hint where the key is the problem.
fn toml_message(message: &str) -> String {
    let message = message.trim_end();
    if message.starts_with("unknown field") {
        format!(
            "{message} (a rule has action, remote, remote_ports, protocol, internal; a limit has internal, new_inbound_per_second)"
        )
    } else {
        message.to_owned()
    }
}

/// An optional prefix-valued key: a prefix (host bits cleared) or one address; absent: any.
fn prefix_or_any(key: &str, value: Option<&Spanned<String>>) -> Result<Ipv4Net, (std::ops::Range<usize>, String)> {
    let Some(v) = value else { return Ok(Ipv4Net::default()) };
    let s = v.get_ref().trim();
    if let Ok(addr) = s.parse::<Ipv4Addr>() {
        return Ok(Ipv4Net::from(addr));
    }
    s.parse::<Ipv4Net>().map(|n| n.trunc()).map_err(|_| {
        (
            v.span(),
            format!(
                "{key:?} is not an IPv4 prefix: {:?}; give ADDRESS/LENGTH with LENGTH 0-32 (e.g. 198.51.100.0/24) or one address",
                v.get_ref()
            ),
        )
    })
}

/// `1-1023` or `53`.
fn ports(s: &str) -> Result<Ports, String> {
    let (first, last) = s.trim().split_once('-').unwrap_or((s.trim(), s.trim()));
    match (first.trim().parse::<u16>(), last.trim().parse::<u16>()) {
        (Ok(first), Ok(last)) => Ok(Ports { first, last }),
        _ => Err(format!(
            "\"remote_ports\" is not a port range: {s:?}; give FIRST-LAST with ports 0-65535 (e.g. \"1-1023\") or one port"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
fallback = "AddressDependentFiltering"   # one of the three WinNAT behaviours

[[rule]]
action = "deny"
remote = "198.51.100.0/24"
remote_ports = "1-1023"
protocol = "udp"
internal = "10.100.0.5/32"

[[rule]]
action = "allow"
remote = "203.0.113.10"
remote_ports = 3478

[[limit]]
internal = "10.100.0.0/16"
new_inbound_per_second = 10
"#;

    fn err(text: &str) -> String {
        parse(text, "policy.toml").unwrap_err().to_string()
    }

    #[test]
    fn the_documented_example_parses() {
        let p = parse(EXAMPLE, "policy.toml").unwrap();
        let policy = p.policy();
        assert_eq!(policy.fallback, Some(FilteringBehavior::AddressDependent));
        assert_eq!(policy.rules.len(), 2);
        let r = &policy.rules[0];
        assert_eq!(r.action, RuleAction::Deny);
        assert_eq!(r.remote, "198.51.100.0/24".parse::<Ipv4Net>().unwrap());
        assert_eq!(r.remote_ports, Some(Ports { first: 1, last: 1023 }));
        assert_eq!(r.protocol, Some(Protocol::Udp));
        assert_eq!(r.internal, "10.100.0.5/32".parse::<Ipv4Net>().unwrap());
        let r = &policy.rules[1];
        assert_eq!(r.remote, "203.0.113.10/32".parse::<Ipv4Net>().unwrap(), "one address is a /32");
        assert_eq!(r.remote_ports, Some(Ports { first: 3478, last: 3478 }), "an integer is one port");
        assert_eq!((r.protocol, r.internal), (None, Ipv4Net::default()), "absent: any");
        assert_eq!(
            policy.limits,
            vec![InboundLimit { internal: "10.100.0.0/16".parse().unwrap(), new_inbound_per_second: 10 }]
        );
        assert_eq!(parse("", "empty.toml").unwrap().policy(), &Policy::default(), "an empty file is no rules");
    }

    #[test]
    fn value_errors_name_the_file_line_and_rule() {
        let bad = EXAMPLE.replace("remote = \"203.0.113.10\"", "remote = \"198.51.100.0/33\"");
        assert_eq!(
            err(&bad),
            "policy.toml:13: rule 2: \"remote\" is not an IPv4 prefix: \"198.51.100.0/33\"; give ADDRESS/LENGTH with LENGTH 0-32 (e.g. 198.51.100.0/24) or one address"
        );
        let e = err(&EXAMPLE.replace("\"deny\"", "\"drop\""));
        assert!(e.starts_with("policy.toml:5: rule 1: \"action\" must be allow or deny"), "{e}");
        let e = err(&EXAMPLE.replace("\"1-1023\"", "\"1023-1\""));
        assert!(e.starts_with("policy.toml:7: rule 1: \"remote_ports\" 1023-1 is empty"), "{e}");
        let e = err(&EXAMPLE.replace("\"1-1023\"", "\"http\""));
        assert!(e.starts_with("policy.toml:7: rule 1: \"remote_ports\" is not a port range"), "{e}");
        let e = err(&EXAMPLE.replace("\"udp\"", "\"icmp\""));
        assert!(e.starts_with("policy.toml:8: rule 1: \"protocol\" = \"icmp\" would never match"), "{e}");
        let e = err(&EXAMPLE.replace("\"udp\"", "\"sctp\""));
        assert!(e.starts_with("policy.toml:8: rule 1: \"protocol\" must be tcp or udp"), "{e}");
        let e = err(&EXAMPLE.replace("= 10\n", "= 0\n"));
        assert!(e.starts_with("policy.toml:18: limit 1: \"new_inbound_per_second\" is 0"), "{e}");
        let e = err(&EXAMPLE.replace("= 10\n", "= -1\n"));
        assert!(e.starts_with("policy.toml:18: limit 1: \"new_inbound_per_second\" is not a count"), "{e}");
        let e = err(&EXAMPLE.replace("\"AddressDependentFiltering\"", "\"open\""));
        assert!(e.starts_with("policy.toml:2: \"fallback\" is not a filtering behaviour"), "{e}");
    }

    #[test]
    fn toml_errors_give_line_column_and_rule() {
        // Unknown key in the second rule.
        let e = err(&EXAMPLE.replace("remote_ports = 3478", "remote_port = 3478"));
        assert!(e.starts_with("policy.toml:14:1: rule 2: unknown field `remote_port`"), "{e}");
        assert!(e.contains("a rule has action, remote, remote_ports"), "{e}");
        // Unknown top-level key.
        let e = err("fallbak = \"x\"\n");
        assert!(e.starts_with("policy.toml:1:1: unknown field `fallbak`"), "{e}");
        // Missing action: the rule's header.
        let e = err("[[rule]]\nremote = \"198.51.100.0/24\"\n");
        assert!(e.starts_with("policy.toml:1:1: rule 1: missing field `action`"), "{e}");
        // A wrong type in the limit.
        let e = err(&EXAMPLE.replace("= 10\n", "= \"ten\"\n"));
        assert!(e.starts_with("policy.toml:18:26: limit 1: invalid type"), "{e}");
        // Not TOML at all.
        let e = err("[[rule]\naction = \"deny\"\n");
        assert!(e.starts_with("policy.toml:1:"), "{e}");
    }

    #[test]
    fn checks_against_the_nat_point_at_the_line() {
        let p = parse(EXAMPLE, "policy.toml").unwrap();
        assert_eq!(p.check_for("10.100.0.0/16".parse().unwrap()), Ok(()));
        let e = p.check_for("10.200.0.0/16".parse().unwrap()).unwrap_err().to_string();
        assert!(e.starts_with("policy.toml:9: rule 1: \"internal\" 10.100.0.5/32 lies outside"), "{e}");
        // Rule 2 has no internal (any): it matches every NAT; the limit is next.
        let p = parse(&EXAMPLE.replace("internal = \"10.100.0.5/32\"\n", ""), "policy.toml").unwrap();
        let e = p.check_for("10.200.0.0/16".parse().unwrap()).unwrap_err().to_string();
        assert!(e.starts_with("policy.toml:16: limit 1: \"internal\" 10.100.0.0/16"), "{e}");
    }

    #[test]
    fn files_are_read_with_a_size_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, EXAMPLE).unwrap();
        let (parsed, text) = load(&path).unwrap();
        assert_eq!(text, EXAMPLE);
        assert_eq!(parsed.policy().rules.len(), 2);
        std::fs::write(&path, "#".repeat(MAX_FILE_BYTES as usize + 1)).unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("at most"));
        let e = load(&dir.path().join("missing.toml")).unwrap_err().to_string();
        assert!(e.contains("missing.toml: cannot read"), "{e}");
    }
}
