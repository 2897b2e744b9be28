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

/// One `Get-NetNatSession -Watch` event (a JSON line from the daemon) as a readable line:
/// `TIME NAT EVENT [(REASON)] PROTOCOL INTERNAL -> EXTERNAL -> REMOTE`, `-` where an endpoint
/// does not apply. A line that is not an event is shown as it came.
pub fn event_line(json: &str) -> String {
    let Ok(e) = serde_json::from_str::<crate::event_log::EventLine>(json) else {
        return format!("{json}\n");
    };
    let reason = e.reason.map(|r| format!(" ({r})")).unwrap_or_default();
    let dash = || "-".to_owned();
    format!(
        "{} {} {}{reason} {} {} -> {} -> {}\n",
        e.time,
        e.nat,
        e.event,
        e.protocol,
        e.internal,
        e.external.unwrap_or_else(dash),
        e.remote.unwrap_or_else(dash)
    )
}

#[cfg(test)]
mod event_line_tests {
    #[test]
    fn an_event_reads_as_one_line_with_its_reason_and_endpoints() {
        let json = r#"{"time":"2026-12-03T10:00:01.000000Z","nat":"WinNAT","event":"session_deleted","reason":"idle_timeout","protocol":"udp","internal":"10.100.10.11:5000","external":"203.0.113.1:40123","remote":"198.51.100.7:53"}"#;
        assert_eq!(
            super::event_line(json),
            "2026-12-03T10:00:01.000000Z WinNAT session_deleted (idle_timeout) udp 10.100.10.11:5000 -> 203.0.113.1:40123 -> 198.51.100.7:53\n"
        );
        let json = r#"{"time":"t","nat":"WinNAT","event":"mapping_created","protocol":"tcp","internal":"10.100.10.11:6000","external":"203.0.113.1:1025"}"#;
        assert_eq!(
            super::event_line(json),
            "t WinNAT mapping_created tcp 10.100.10.11:6000 -> 203.0.113.1:1025 -> -\n"
        );
        assert_eq!(super::event_line("garbage"), "garbage\n");
    }
}
