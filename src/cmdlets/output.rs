//! How cmdlet results are printed: PowerShell's Format-List (default) or JSON (`-o json`).

use std::str::FromStr;

use crate::control::objects::{format_list, format_list_all};
use crate::control::protocol::Output;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// PowerShell's Format-List.
    List,
    /// Format-List with netnat's extension properties after WinNAT's (PowerShell's
    /// `Format-List *`).
    All,
    /// A JSON array of objects with the CIM property names (one object for Get-NetNatGlobal).
    Json,
}

impl FromStr for Format {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "list" | "fl" | "format-list" => Ok(Format::List),
            "all" | "list-all" | "fl*" => Ok(Format::All),
            "json" => Ok(Format::Json),
            _ => anyhow::bail!(
                "unknown output format {s:?}; use -o list (PowerShell Format-List, the default), -o all (with netnat's own properties) or -o json"
            ),
        }
    }
}

/// The text to print for `output`.
pub fn render(output: &Output, format: Format) -> anyhow::Result<String> {
    let json = |v: serde_json::Value| -> anyhow::Result<String> { Ok(serde_json::to_string_pretty(&v)? + "\n") };
    Ok(match (output, format) {
        (Output::Nothing, _) => String::new(),
        (Output::Nats(o), Format::List) => format_list(o),
        (Output::StaticMappings(o), Format::List) => format_list(o),
        (Output::ExternalAddresses(o), Format::List) => format_list(o),
        (Output::Sessions(o), Format::List) => format_list(o),
        (Output::Global(o), Format::List) => format_list(std::slice::from_ref(o)),
        (Output::Nats(o), Format::All) => format_list_all(o),
        (Output::StaticMappings(o), Format::All) => format_list_all(o),
        (Output::ExternalAddresses(o), Format::All) => format_list_all(o),
        (Output::Sessions(o), Format::All) => format_list_all(o),
        (Output::Global(o), Format::All) => format_list_all(std::slice::from_ref(o)),
        (Output::Nats(o), Format::Json) => json(serde_json::to_value(o)?)?,
        (Output::StaticMappings(o), Format::Json) => json(serde_json::to_value(o)?)?,
        (Output::ExternalAddresses(o), Format::Json) => json(serde_json::to_value(o)?)?,
        (Output::Sessions(o), Format::Json) => json(serde_json::to_value(o)?)?,
        (Output::Global(o), Format::Json) => json(serde_json::to_value(o)?)?,
        (Output::Statistics(m), _) => json(serde_json::Value::Object(m.clone()))?,
    })
}
