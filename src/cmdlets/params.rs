//! PowerShell-style parameter binding for the cmdlets.
//!
//! Accepts what PowerShell accepts, as far as it makes sense from a Unix shell:
//! - names case-insensitive, with `-` or `--`, in PowerShell spelling (`-NatName`) or with
//!   dashes/underscores (`--nat-name`); any unambiguous prefix (`-Int` for
//!   `-InternalIPInterfaceAddressPrefix`);
//! - values as the next argument or attached with `:` or `=` (`-PassThru:$false`);
//! - positional values where PowerShell has positions (`Get-NetNat WinNAT`);
//! - lists separated by commas (`-Name a,b` or `-Name a, b`);
//! - booleans as `$True`, `True`, `true`, `1` (and the false forms).

use std::collections::HashMap;

/// What a parameter takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One value.
    Value,
    /// A comma-separated list.
    List,
    /// A switch: present = true; a value only when attached (`-PassThru:$false`).
    Switch,
}

/// One parameter of a cmdlet.
#[derive(Clone, Copy, Debug)]
pub struct Param {
    /// PowerShell name.
    pub name: &'static str,
    /// What it takes.
    pub kind: Kind,
    /// Position for positional binding.
    pub position: Option<usize>,
    /// PowerShell type name, for messages and help.
    pub type_name: &'static str,
}

impl Param {
    /// A single-value parameter.
    pub const fn value(name: &'static str, type_name: &'static str) -> Self {
        Param { name, kind: Kind::Value, position: None, type_name }
    }

    /// A list parameter.
    pub const fn list(name: &'static str, type_name: &'static str) -> Self {
        Param { name, kind: Kind::List, position: None, type_name }
    }

    /// A switch.
    pub const fn switch(name: &'static str) -> Self {
        Param { name, kind: Kind::Switch, position: None, type_name: "SwitchParameter" }
    }

    /// The same parameter at position `p`.
    pub const fn at(self, p: usize) -> Self {
        Param { position: Some(p), ..self }
    }
}

/// Common CIM parameters that netnat accepts and ignores.
const IGNORED: &[&str] = &["Confirm", "Verbose", "Debug"];
/// Common CIM parameters that make no sense for a local daemon.
const UNSUPPORTED: &[&str] = &["CimSession", "ThrottleLimit", "AsJob", "InputObject", "WhatIf"];

/// Bound values by parameter name.
#[derive(Debug, Default)]
pub struct Bound {
    values: HashMap<&'static str, Vec<String>>,
}

impl Bound {
    /// Whether `name` was given.
    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// The single value of `name`.
    pub fn one(&self, name: &str) -> Option<&str> {
        self.values.get(name).and_then(|v| v.first()).map(String::as_str)
    }

    /// All values of `name`.
    pub fn many(&self, name: &str) -> Option<Vec<String>> {
        self.values.get(name).cloned()
    }

    /// A switch's state.
    pub fn switch(&self, name: &str) -> Result<bool, String> {
        match self.one(name) {
            None => Ok(false),
            Some(v) => parse_bool(name, v),
        }
    }
}

fn normalise(s: &str) -> String {
    s.chars().filter(|c| *c != '-' && *c != '_').flat_map(char::to_lowercase).collect()
}

/// Parses a PowerShell boolean.
pub fn parse_bool(name: &str, v: &str) -> Result<bool, String> {
    match v.trim_start_matches('$').to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!(
            "Cannot process argument transformation on parameter '{name}': '{v}' is not a boolean; use True or False ($True/$False; in a Unix shell quote them: '$True')."
        )),
    }
}

/// Binds `args` (the arguments after the cmdlet name) to `params`.
pub fn bind(cmdlet: &str, params: &[Param], args: &[String]) -> Result<Bound, String> {
    let mut bound = Bound::default();
    let mut i = 0;
    let mut next_position = 0;
    let valid = || {
        let names: Vec<String> = params.iter().map(|p| format!("-{}", p.name)).collect();
        if names.is_empty() {
            format!("{cmdlet} takes no parameters (besides -o json and --socket PATH).")
        } else {
            format!("Valid parameters of {cmdlet}: {}.", names.join(", "))
        }
    };
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let is_name = arg.starts_with('-') && arg.len() > 1 && !arg[1..].starts_with(|c: char| c.is_ascii_digit());
        if !is_name {
            let Some(p) = params.iter().find(|p| p.position == Some(next_position)) else {
                return Err(format!(
                    "A positional parameter cannot be found that accepts argument '{arg}'. {}",
                    valid()
                ));
            };
            next_position += 1;
            let mut raw = arg.clone();
            if p.kind == Kind::List {
                while raw.ends_with(',') && i < args.len() {
                    raw.push_str(&args[i]);
                    i += 1;
                }
            }
            store(&mut bound, p, &raw)?;
            continue;
        }
        let body = arg.trim_start_matches('-');
        let (name, attached) = match body.find([':', '=']) {
            Some(at) => (&body[..at], Some(body[at + 1..].to_owned())),
            None => (body, None),
        };
        let key = normalise(name);
        let exact: Vec<&Param> = params.iter().filter(|p| normalise(p.name) == key).collect();
        let matches: Vec<&Param> = if exact.is_empty() {
            params.iter().filter(|p| normalise(p.name).starts_with(&key)).collect()
        } else {
            exact
        };
        let param = match matches.as_slice() {
            [one] => *one,
            [] => {
                if IGNORED.iter().any(|n| normalise(n) == key) {
                    continue;
                }
                if let Some(n) = UNSUPPORTED.iter().find(|n| normalise(n) == key) {
                    return Err(format!(
                        "-{n} is not supported by netnat (it manages the NAT of this host, and has no pipeline). {}",
                        valid()
                    ));
                }
                return Err(format!("A parameter cannot be found that matches parameter name '{name}'. {}", valid()));
            }
            many => {
                let names: Vec<&str> = many.iter().map(|p| p.name).collect();
                return Err(format!(
                    "Parameter cannot be processed because the parameter name '{name}' is ambiguous. Possible matches include: -{}.",
                    names.join(", -")
                ));
            }
        };
        if bound.has(param.name) {
            return Err(format!(
                "Cannot bind parameter because parameter '{}' is specified more than once; give it once (a list as a,b).",
                param.name
            ));
        }
        let value = match (param.kind, attached) {
            (Kind::Switch, None) => "true".to_owned(),
            (_, Some(v)) => v,
            (_, None) => {
                let missing = i >= args.len() || {
                    let n = &args[i];
                    n.starts_with('-') && n.len() > 1 && !n[1..].starts_with(|c: char| c.is_ascii_digit())
                };
                if missing {
                    return Err(format!(
                        "Missing an argument for parameter '{}'. Specify a parameter of type '{}' and try again.{}",
                        param.name,
                        param.type_name,
                        if param.type_name == "Boolean" {
                            " (In a Unix shell an unquoted $True expands to nothing: write True or '$True'.)"
                        } else {
                            ""
                        }
                    ));
                }
                i += 1;
                let mut raw = args[i - 1].clone();
                if param.kind == Kind::List {
                    while raw.ends_with(',') && i < args.len() {
                        raw.push_str(&args[i]);
                        i += 1;
                    }
                }
                raw
            }
        };
        store(&mut bound, param, &value)?;
    }
    Ok(bound)
}

fn store(bound: &mut Bound, p: &Param, raw: &str) -> Result<(), String> {
    let values: Vec<String> = match p.kind {
        Kind::List => raw.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(),
        Kind::Value | Kind::Switch => vec![raw.trim().to_owned()],
    };
    if values.is_empty() || values.iter().all(|v| v.is_empty()) && p.kind != Kind::Switch {
        return Err(format!(
            "Cannot validate argument on parameter '{}'. The argument is null or empty. Provide an argument that is not null or empty, and then try the command again.",
            p.name
        ));
    }
    bound.values.insert(p.name, values);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: &[Param] = &[
        Param::list("Name", "String[]").at(0),
        Param::value("InternalIPInterfaceAddressPrefix", "String"),
        Param::value("ExternalIPInterfaceAddressPrefix", "String"),
        Param::value("UdpInboundRefresh", "Boolean"),
        Param::switch("PassThru"),
    ];

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn powershell_and_gnu_spellings_bind_the_same() {
        for line in [
            "-Name WinNAT -InternalIPInterfaceAddressPrefix 10.100.0.0/16",
            "--name WinNAT --internal-ip-interface-address-prefix 10.100.0.0/16",
            "-name:WinNAT -internalipinterfaceaddressprefix=10.100.0.0/16",
            "WinNAT -Int 10.100.0.0/16",
        ] {
            let b = bind("New-NetNat", PARAMS, &args(line)).unwrap();
            assert_eq!(b.one("Name"), Some("WinNAT"), "{line}");
            assert_eq!(b.one("InternalIPInterfaceAddressPrefix"), Some("10.100.0.0/16"), "{line}");
        }
    }

    #[test]
    fn lists_switches_and_booleans() {
        let b = bind("Get-NetNat", PARAMS, &args("-Name a, b -PassThru -UdpInboundRefresh $True")).unwrap();
        assert_eq!(b.many("Name").unwrap(), vec!["a", "b"]);
        assert!(b.switch("PassThru").unwrap());
        assert!(parse_bool("x", b.one("UdpInboundRefresh").unwrap()).unwrap());
        let b = bind("Get-NetNat", PARAMS, &args("-PassThru:$false -Confirm:$false")).unwrap();
        assert!(!b.switch("PassThru").unwrap());
    }

    #[test]
    fn errors_name_the_problem_and_the_valid_parameters() {
        let e = bind("New-NetNat", PARAMS, &args("-Bogus 1")).unwrap_err();
        assert!(e.contains("'Bogus'") && e.contains("-InternalIPInterfaceAddressPrefix"), "{e}");
        let ports = [Param::value("PortStart", "UInt16"), Param::value("PortEnd", "UInt16")];
        let e = bind("Add-NetNatExternalAddress", &ports, &args("-Port 1")).unwrap_err();
        assert!(e.contains("ambiguous"), "{e}");
        let e = bind("New-NetNat", PARAMS, &args("-UdpInboundRefresh -PassThru")).unwrap_err();
        assert!(e.contains("Missing an argument") && e.contains("'$True'"), "{e}");
        let e = bind("New-NetNat", PARAMS, &args("a b")).unwrap_err();
        assert!(e.contains("positional"), "{e}");
        let e = bind("New-NetNat", PARAMS, &args("-Name a -Name b")).unwrap_err();
        assert!(e.contains("more than once"), "{e}");
        let e = bind("New-NetNat", PARAMS, &args("-CimSession srv")).unwrap_err();
        assert!(e.contains("not supported"), "{e}");
    }
}
