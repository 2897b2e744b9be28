//! The control plane: applies the cmdlets' requests to the configuration, persists it and
//! brings the packet path ([`Dataplane`]) in line.
//!
//! Every change goes: copy the state, change the copy, check it (WinNAT's rules, then the
//! engine's), save it atomically, then apply it. A refused or unsaved change leaves both the
//! file and the running NATs as they were.
//!
//! By job: this file dispatches the requests and applies WinNAT's rules to the state;
//! `compile.rs` turns the state into engine templates and WASM modules and puts them in force
//! (check, save, apply); `present.rs` renders what the cmdlets show.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use netnat_engine::{
    ConfigError, ExternalAddress, Limits, NatConfig, Protocol, StaticMapping, Timeouts, UnmatchedInbound,
};

use super::clock::Clock;
use super::dataplane::{Addressing, Dataplane, LiveNat, Template};
use crate::control::objects::{
    FilterPolicyInfo, NetNat, NetNatExternalAddress, NetNatGlobal, NetNatSession, NetNatStaticMapping,
    NULL_ROUTING_DOMAIN,
};
use crate::control::protocol::{
    wildcard_match, ControlError, NatChanges, Output, PolicyChange, PolicySource, Reply, Request,
};
use crate::policy_module::{ModulePolicy, ModuleSpec};
use crate::state::{ExternalAddressRecord, FilterPolicyRecord, NatRecord, State, StateStore, StaticMappingRecord};

/// Called after every applied change with the new state and NATs (installs kernel rules).
pub type ChangeHook = Box<dyn FnMut(&State, &[Arc<LiveNat>]) + Send>;

/// The daemon's configuration and the NATs it runs.
pub struct Service {
    state: State,
    store: Option<StateStore>,
    plane: Arc<Dataplane>,
    clock: Clock,
    engine: EngineSettings,
    host_addresses: Vec<Ipv4Addr>,
    on_change: ChangeHook,
}

/// What every NAT's engine gets from the daemon rather than from the cmdlets.
#[derive(Debug, Clone, Copy)]
pub struct EngineSettings {
    /// Seed of the port choice (NAT i gets a value derived from it).
    pub seed: u64,
    /// Session limits (`netnat daemon --max-sessions/--max-sessions-per-host`).
    pub limits: Limits,
    /// Count packets and bytes per session (`netnat daemon --session-counters`).
    pub session_counters: bool,
    /// The dynamic port range NATs on the host's own addresses share: outside the host's
    /// ephemeral range (`platform::ports`), so a host socket is never shadowed.
    pub host_nat_ports: (u16, u16),
}

impl EngineSettings {
    /// `seed` and `limits`, with the host's NAT port range read from the system.
    pub fn for_host(seed: u64, limits: Limits) -> EngineSettings {
        let ports = crate::platform::ports::nat_range(crate::platform::ports::host_ephemeral_range());
        EngineSettings { seed, limits, host_nat_ports: ports, session_counters: false }
    }
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("state", &self.state).finish_non_exhaustive()
    }
}

type Result<T> = std::result::Result<T, ControlError>;

fn engine_error(e: ConfigError) -> ControlError {
    match e {
        ConfigError::DuplicateStaticMapping { protocol, port } => ControlError::duplicate(format!(
            "{protocol} external port {port} is already mapped; remove the other mapping or choose another ExternalPort"
        )),
        other => ControlError::invalid(capitalise(&other.to_string())),
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect::<String>() + ".",
        None => String::new(),
    }
}

fn not_found(class: &str, property: &str, value: impl std::fmt::Display) -> ControlError {
    ControlError::not_found(format!(
        "No MSFT_{class} objects found with property '{property}' equal to '{value}'. Verify the value of the property and retry."
    ))
}

/// A record a NAT owns and Remove-* selects by id and NAT name (static mappings, external
/// addresses).
trait NatOwned {
    /// The CIM class, for "No MSFT_... objects found" errors.
    const CLASS: &'static str;
    /// The id property's name.
    const ID: &'static str;
    fn id(&self) -> u32;
    fn nat_name(&self) -> &str;
}

impl NatOwned for StaticMappingRecord {
    const CLASS: &'static str = "NetNatStaticMapping";
    const ID: &'static str = "StaticMappingID";
    fn id(&self) -> u32 {
        self.id
    }
    fn nat_name(&self) -> &str {
        &self.nat_name
    }
}

impl NatOwned for ExternalAddressRecord {
    const CLASS: &'static str = "NetNatExternalAddress";
    const ID: &'static str = "ExternalAddressID";
    fn id(&self) -> u32 {
        self.id
    }
    fn nat_name(&self) -> &str {
        &self.nat_name
    }
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?'])
}

/// The names in `all` selected by `patterns` (all when `None`); a pattern without wildcards
/// that selects nothing is an error, as in PowerShell.
fn select<'a>(
    all: impl Iterator<Item = &'a str> + Clone,
    patterns: &Option<Vec<String>>,
    class: &str,
    property: &str,
) -> Result<HashSet<String>> {
    let Some(patterns) = patterns else { return Ok(all.map(|n| n.to_ascii_lowercase()).collect()) };
    let mut out = HashSet::new();
    for p in patterns {
        let hits: Vec<&str> = all.clone().filter(|n| wildcard_match(p, n)).collect();
        if hits.is_empty() && !has_wildcard(p) {
            return Err(not_found(class, property, p));
        }
        out.extend(hits.into_iter().map(|n| n.to_ascii_lowercase()));
    }
    Ok(out)
}

fn policy_record(source: PolicySource) -> FilterPolicyRecord {
    FilterPolicyRecord { path: source.path, text: source.text, module: source.module }
}

impl Service {
    /// A service over `state` (already loaded), saving to `store` when given.
    pub fn new(
        state: State,
        store: Option<StateStore>,
        plane: Arc<Dataplane>,
        clock: Clock,
        engine: EngineSettings,
        host_addresses: Vec<Ipv4Addr>,
        on_change: ChangeHook,
    ) -> anyhow::Result<Self> {
        let mut service = Service { state, store, plane, clock, engine, host_addresses, on_change };
        let templates = service.templates(&service.state).map_err(|e| anyhow::anyhow!("{e}"))?;
        service.sync(templates).map_err(|e| anyhow::anyhow!("the saved configuration cannot run: {e}"))?;
        Ok(service)
    }

    /// The configuration in force.
    #[cfg(test)]
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Answers one request.
    pub fn handle(&mut self, request: Request) -> Reply {
        let mut warnings = Vec::new();
        match self.dispatch(request, &mut warnings) {
            Ok(output) => Reply::Ok { output, warnings },
            Err(e) => Reply::Error(e),
        }
    }

    /// The host's addresses changed: rebuild the NATs that use them.
    pub fn set_host_addresses(&mut self, addresses: Vec<Ipv4Addr>) {
        if addresses == self.host_addresses {
            return;
        }
        self.host_addresses = addresses;
        let others = self.prefixes(&self.state);
        for nat in self.plane.nats().iter() {
            if let Err(e) = nat.rebuild(&self.host_addresses, &others) {
                tracing::warn!(nat = %nat.name, "cannot follow the host's address change: {e}");
            }
        }
        let nats = self.plane.nats();
        (self.on_change)(&self.state, &nats);
    }

    fn dispatch(&mut self, request: Request, warnings: &mut Vec<String>) -> Result<Output> {
        match request {
            Request::NewNetNat { name, internal_prefix, external_prefix, filter_policy } => {
                self.new_nat(name, internal_prefix, external_prefix, filter_policy)
            }
            Request::GetNetNat { names } => {
                let chosen = select(self.state.nats.iter().map(|n| n.name.as_str()), &names, "NetNat", "Name")?;
                Ok(Output::Nats(self.nat_objects(&chosen)))
            }
            Request::SetNetNat { names, changes } => self.set_nat(names, changes),
            Request::RemoveNetNat { names } => self.remove_nats(names),
            Request::GetNetNatSession { detailed, watch: false } => Ok(Output::Sessions(self.sessions(detailed))),
            // Served by the control server, which streams (`server::watch`).
            Request::GetNetNatSession { watch: true, .. } => Ok(Output::Nothing),
            Request::AddNetNatStaticMapping {
                nat_name,
                protocol,
                remote_prefix,
                external_address,
                external_port,
                internal_address,
                internal_port,
            } => self.add_static_mapping(StaticMappingRecord {
                id: self.state.next_static_mapping_id,
                nat_name,
                protocol,
                remote_prefix: remote_prefix.unwrap_or_default(),
                external_address,
                external_port,
                internal_address,
                internal_port: internal_port.unwrap_or(external_port),
            }),
            Request::GetNetNatStaticMapping { nat_names } => {
                let chosen = select(
                    self.state.nats.iter().map(|n| n.name.as_str()),
                    &nat_names,
                    "NetNatStaticMapping",
                    "NatName",
                )?;
                Ok(Output::StaticMappings(
                    self.state
                        .static_mappings
                        .iter()
                        .filter(|m| chosen.contains(&m.nat_name.to_ascii_lowercase()))
                        .map(mapping_object)
                        .collect(),
                ))
            }
            Request::RemoveNetNatStaticMapping { ids, nat_names } => self.remove_static_mappings(ids, nat_names),
            Request::AddNetNatExternalAddress { nat_name, address, port_start, port_end } => {
                self.add_external_address(nat_name, address, port_start, port_end, warnings)
            }
            Request::GetNetNatExternalAddress { nat_names } => {
                let chosen = select(
                    self.state.nats.iter().map(|n| n.name.as_str()),
                    &nat_names,
                    "NetNatExternalAddress",
                    "NatName",
                )?;
                Ok(Output::ExternalAddresses(
                    self.state
                        .external_addresses
                        .iter()
                        .filter(|a| chosen.contains(&a.nat_name.to_ascii_lowercase()))
                        .map(address_object)
                        .collect(),
                ))
            }
            Request::RemoveNetNatExternalAddress { ids, nat_names } => self.remove_external_addresses(ids, nat_names),
            Request::GetNetNatGlobal => Ok(Output::Global(self.global())),
            Request::SetNetNatGlobal { hairpinning_mode } => {
                let mut next = self.state.clone();
                next.hairpinning_mode = hairpinning_mode;
                self.commit(next)?;
                Ok(Output::Global(self.global()))
            }
            Request::GetNetNatStatistics => Ok(Output::Statistics(self.statistics())),
        }
    }

    fn find_nat<'s>(state: &'s State, name: &str) -> Result<&'s NatRecord> {
        state.nats.iter().find(|n| n.name.eq_ignore_ascii_case(name)).ok_or_else(|| not_found("NetNat", "Name", name))
    }

    fn new_nat(
        &mut self,
        name: String,
        internal_prefix: Ipv4Net,
        external_prefix: Option<Ipv4Net>,
        filter_policy: Option<PolicySource>,
    ) -> Result<Output> {
        if name.trim().is_empty() {
            return Err(ControlError::invalid("Name is empty; give the NAT a name, e.g. -Name WinNAT."));
        }
        if let Some(other) = self.state.nats.iter().find(|n| n.name.eq_ignore_ascii_case(&name)) {
            return Err(ControlError::duplicate(format!(
                "A NAT named '{}' already exists; choose another -Name, or remove it first with Remove-NetNat -Name {}.",
                other.name, other.name
            )));
        }
        if internal_prefix.prefix_len() == 0 {
            return Err(ControlError::invalid(
                "InternalIPInterfaceAddressPrefix 0.0.0.0/0 would translate every address; give the internal subnet, e.g. 10.100.0.0/16.",
            ));
        }
        for other in &self.state.nats {
            if overlaps(other.internal_prefix, internal_prefix) {
                return Err(ControlError::invalid(format!(
                    "InternalIPInterfaceAddressPrefix {internal_prefix} overlaps {} of NAT '{}'. Internal prefixes of different NATs must not overlap: choose a prefix outside {}, or remove that NAT with Remove-NetNat -Name {}.",
                    other.internal_prefix, other.name, other.internal_prefix, other.name
                )));
            }
        }
        if let Some(ext) = external_prefix {
            if overlaps(ext, internal_prefix) {
                return Err(ControlError::invalid(format!(
                    "ExternalIPInterfaceAddressPrefix {ext} overlaps InternalIPInterfaceAddressPrefix {internal_prefix}; the internal and external networks must be disjoint."
                )));
            }
        }
        let mut next = self.state.clone();
        let mut record = NatRecord::new(name.clone(), internal_prefix, external_prefix);
        record.filter_policy = filter_policy.map(policy_record);
        next.nats.push(record);
        self.commit(next)?;
        let chosen = [name.to_ascii_lowercase()].into_iter().collect();
        Ok(Output::Nats(self.nat_objects(&chosen)))
    }

    fn set_nat(&mut self, names: Option<Vec<String>>, changes: NatChanges) -> Result<Output> {
        if changes.is_empty() {
            return Err(ControlError::invalid(
                "Set-NetNat changes nothing: give at least one of -IcmpQueryTimeout, -TcpEstablishedConnectionTimeout, -TcpTransientConnectionTimeout, -TcpFilteringBehavior, -UdpFilteringBehavior, -UdpIdleSessionTimeout, -UdpInboundRefresh (or netnat's -FilterPolicyFile, -RemoveFilterPolicy).",
            ));
        }
        for (label, v) in [
            ("IcmpQueryTimeout", changes.icmp_query_timeout),
            ("TcpEstablishedConnectionTimeout", changes.tcp_established_connection_timeout),
            ("TcpTransientConnectionTimeout", changes.tcp_transient_connection_timeout),
            ("UdpIdleSessionTimeout", changes.udp_idle_session_timeout),
        ] {
            if v == Some(0) {
                return Err(ControlError::invalid(format!(
                    "{label} is 0; timeouts are seconds of idle time and must be at least 1."
                )));
            }
        }
        let chosen = select(self.state.nats.iter().map(|n| n.name.as_str()), &names, "NetNat", "Name")?;
        let mut next = self.state.clone();
        for nat in next.nats.iter_mut().filter(|n| chosen.contains(&n.name.to_ascii_lowercase())) {
            let c = &changes;
            nat.icmp_query_timeout = c.icmp_query_timeout.unwrap_or(nat.icmp_query_timeout);
            nat.tcp_established_connection_timeout =
                c.tcp_established_connection_timeout.unwrap_or(nat.tcp_established_connection_timeout);
            nat.tcp_transient_connection_timeout =
                c.tcp_transient_connection_timeout.unwrap_or(nat.tcp_transient_connection_timeout);
            nat.tcp_filtering_behavior = c.tcp_filtering_behavior.unwrap_or(nat.tcp_filtering_behavior);
            nat.udp_filtering_behavior = c.udp_filtering_behavior.unwrap_or(nat.udp_filtering_behavior);
            nat.udp_idle_session_timeout = c.udp_idle_session_timeout.unwrap_or(nat.udp_idle_session_timeout);
            nat.udp_inbound_refresh = c.udp_inbound_refresh.unwrap_or(nat.udp_inbound_refresh);
            match &c.filter_policy {
                Some(PolicyChange::Set(source)) => nat.filter_policy = Some(policy_record(source.clone())),
                Some(PolicyChange::Remove) => nat.filter_policy = None,
                None => {}
            }
        }
        self.commit(next)?;
        Ok(Output::Nats(self.nat_objects(&chosen)))
    }

    fn remove_nats(&mut self, names: Option<Vec<String>>) -> Result<Output> {
        let chosen = select(self.state.nats.iter().map(|n| n.name.as_str()), &names, "NetNat", "Name")?;
        let removed = self.nat_objects(&chosen);
        let mut next = self.state.clone();
        let keep = |n: &str| !chosen.contains(&n.to_ascii_lowercase());
        next.nats.retain(|n| keep(&n.name));
        next.static_mappings.retain(|m| keep(&m.nat_name));
        next.external_addresses.retain(|a| keep(&a.nat_name));
        self.commit(next)?;
        Ok(Output::Nats(removed))
    }

    fn add_static_mapping(&mut self, m: StaticMappingRecord) -> Result<Output> {
        let nat = Self::find_nat(&self.state, &m.nat_name)?.clone();
        if m.protocol == Protocol::Icmp {
            return Err(ControlError::invalid("Protocol must be TCP or UDP for a static mapping."));
        }
        if m.external_port == 0 || m.internal_port == 0 {
            return Err(ControlError::invalid("ExternalPort and InternalPort must be between 1 and 65535."));
        }
        if !nat.internal_prefix.contains(&m.internal_address) {
            return Err(ControlError::invalid(format!(
                "InternalIPAddress {} is outside NAT '{}''s InternalIPInterfaceAddressPrefix {}; map to an address inside it.",
                m.internal_address, nat.name, nat.internal_prefix
            )));
        }
        for o in &self.state.static_mappings {
            let same_address = o.external_address.is_unspecified()
                || m.external_address.is_unspecified()
                || o.external_address == m.external_address;
            if o.protocol == m.protocol && o.external_port == m.external_port && same_address {
                return Err(ControlError::duplicate(format!(
                    "{} port {} on {} is already mapped by StaticMappingID {} of NAT '{}' (to {}:{}); remove it with Remove-NetNatStaticMapping -StaticMappingID {}, or choose another ExternalPort.",
                    m.protocol, m.external_port, o.external_address, o.id, o.nat_name, o.internal_address, o.internal_port, o.id
                )));
            }
        }
        let explicit = self.state.external_addresses.iter().any(|a| a.nat_name.eq_ignore_ascii_case(&nat.name));
        if !m.external_address.is_unspecified() && !explicit && !self.host_addresses.contains(&m.external_address) {
            return Err(ControlError::invalid(format!(
                "ExternalIPAddress {} is not an address of this host, and NAT '{}' has no NetNatExternalAddress; use 0.0.0.0 (any host address), an address from `ip -4 addr`, or add it first with Add-NetNatExternalAddress.",
                m.external_address, nat.name
            )));
        }
        let mut m = m;
        m.nat_name = nat.name.clone();
        let mut next = self.state.clone();
        next.next_static_mapping_id = m.id.wrapping_add(1);
        next.static_mappings.push(m.clone());
        self.commit(next)?;
        Ok(Output::StaticMappings(vec![mapping_object(&m)]))
    }

    /// Which `records` a Remove-* with these ids and NAT names removes (all when neither is
    /// given); an id or NAT name that matches nothing is WinNAT's "not found" error.
    fn removal_filter<T: NatOwned>(
        &self,
        records: &[T],
        ids: Option<Vec<u32>>,
        nat_names: Option<Vec<String>>,
    ) -> Result<impl Fn(&T) -> bool> {
        let chosen = select(self.state.nats.iter().map(|n| n.name.as_str()), &nat_names, T::CLASS, "NatName")?;
        if let Some(ids) = &ids {
            if let Some(id) = ids.iter().find(|id| !records.iter().any(|r| r.id() == **id)) {
                return Err(not_found(T::CLASS, T::ID, id));
            }
        }
        Ok(move |r: &T| {
            chosen.contains(&r.nat_name().to_ascii_lowercase()) && ids.as_ref().is_none_or(|ids| ids.contains(&r.id()))
        })
    }

    fn remove_static_mappings(&mut self, ids: Option<Vec<u32>>, nat_names: Option<Vec<String>>) -> Result<Output> {
        let hit = self.removal_filter(&self.state.static_mappings, ids, nat_names)?;
        let removed: Vec<_> = self.state.static_mappings.iter().filter(|m| hit(m)).map(mapping_object).collect();
        let mut next = self.state.clone();
        next.static_mappings.retain(|m| !hit(m));
        self.commit(next)?;
        Ok(Output::StaticMappings(removed))
    }

    fn add_external_address(
        &mut self,
        nat_name: String,
        address: Ipv4Addr,
        port_start: Option<u16>,
        port_end: Option<u16>,
        warnings: &mut Vec<String>,
    ) -> Result<Output> {
        let nat = Self::find_nat(&self.state, &nat_name)?.clone();
        // On one of the host's own addresses the default range leaves the host's ephemeral
        // ports alone (`platform::ports`); elsewhere it is WinNAT's 1024-65535.
        let (first, last) = if self.host_addresses.contains(&address) {
            self.engine.host_nat_ports
        } else {
            (crate::platform::ports::FIRST, crate::platform::ports::LAST)
        };
        let (start, end) = (port_start.unwrap_or(first), port_end.unwrap_or(last));
        if start == 0 || start > end {
            return Err(ControlError::invalid(format!(
                "PortStart {start} and PortEnd {end} do not make a port range; give 1 <= PortStart <= PortEnd <= 65535, e.g. -PortStart 10000 -PortEnd 19999."
            )));
        }
        if nat.internal_prefix.contains(&address) {
            return Err(ControlError::invalid(format!(
                "IPAddress {address} lies inside the internal prefix {} of NAT '{}'; an external address must be outside it.",
                nat.internal_prefix, nat.name
            )));
        }
        for o in &self.state.external_addresses {
            if o.address != address {
                continue;
            }
            if o.nat_name.eq_ignore_ascii_case(&nat.name) {
                return Err(ControlError::duplicate(format!(
                    "{address} is already ExternalAddressID {} of NAT '{}'; remove it first with Remove-NetNatExternalAddress -ExternalAddressID {} to change its ports.",
                    o.id, o.nat_name, o.id
                )));
            }
            if start <= o.port_end && o.port_start <= end {
                return Err(ControlError::invalid(format!(
                    "Ports {start}-{end} on {address} overlap ports {}-{} that NAT '{}' uses on the same address; give disjoint ranges with -PortStart/-PortEnd.",
                    o.port_start, o.port_end, o.nat_name
                )));
            }
        }
        if !self.host_addresses.contains(&address) && !crate::platform::addrs::is_local(address) {
            warnings.push(format!(
                "{address} is not an address of this host: replies to it will not reach netnat until it is (e.g. `ip addr add {address}/24 dev <external interface>`)."
            ));
        }
        let first = !self.state.external_addresses.iter().any(|a| a.nat_name.eq_ignore_ascii_case(&nat.name));
        if first
            && !self.plane.nats().iter().all(|n| !n.name.eq_ignore_ascii_case(&nat.name) || n.sessions().is_empty())
        {
            warnings.push(format!(
                "NAT '{}' now translates to its external addresses instead of the host's; its existing sessions were dropped.",
                nat.name
            ));
        }
        let record = ExternalAddressRecord {
            id: self.state.next_external_address_id,
            nat_name: nat.name.clone(),
            address,
            port_start: start,
            port_end: end,
        };
        let mut next = self.state.clone();
        next.next_external_address_id = record.id.wrapping_add(1);
        next.external_addresses.push(record.clone());
        self.commit(next)?;
        Ok(Output::ExternalAddresses(vec![address_object(&record)]))
    }

    fn remove_external_addresses(&mut self, ids: Option<Vec<u32>>, nat_names: Option<Vec<String>>) -> Result<Output> {
        let hit = self.removal_filter(&self.state.external_addresses, ids, nat_names)?;
        let removed: Vec<_> = self.state.external_addresses.iter().filter(|a| hit(a)).map(address_object).collect();
        let mut next = self.state.clone();
        next.external_addresses.retain(|a| !hit(a));
        self.commit(next)?;
        Ok(Output::ExternalAddresses(removed))
    }
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

mod compile;
mod present;

use present::{address_object, mapping_object};

#[cfg(test)]
mod tests;
