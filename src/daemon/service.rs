//! The control plane: applies the cmdlets' requests to the configuration, persists it and
//! brings the packet path ([`Dataplane`]) in line.
//!
//! Every change goes: copy the state, change the copy, check it (WinNAT's rules, then the
//! engine's), save it atomically, then apply it. A refused or unsaved change leaves both the
//! file and the running NATs as they were.

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
    FilterPolicyInfo, NetNat, NetNatExternalAddress, NetNatGlobal, NetNatSession, NetNatStaticMapping, SessionDetail,
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

/// One NAT of a change about to be applied ([`Service::plan`]).
enum Planned {
    /// Built for the change (with its module); not running yet.
    New(Arc<LiveNat>),
    /// Running; gets this template (boxed: a template with a filter policy is large) and
    /// module.
    Change(Arc<LiveNat>, Box<Template>, Option<Arc<ModulePolicy>>),
}

/// One NAT's engine settings compiled from the state: its template and its WASM policy
/// module, if it has one (which the template cannot carry).
struct Compiled {
    name: String,
    template: Template,
    module: Option<Arc<ModulePolicy>>,
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

/// A NAT's filter policy, ready to run: rules for the engine's configuration, or a loaded
/// WASM module (one instance per NAT, shared by its engines).
enum CompiledPolicy {
    Rules(netnat_engine::policy::Policy),
    Module(Arc<ModulePolicy>),
}

/// The saved policy of `rec`, parsed and checked against its internal prefix, or its module
/// loaded. The text (or module) is compiled again on every change and at start-up (it is
/// small), with the code the cmdlet used, so what runs is what the cmdlet checked; errors
/// name the file and line. A module is loaded afresh each time: its state starts over when
/// the NAT's configuration changes or the daemon restarts.
fn compile_policy(rec: &NatRecord, p: &FilterPolicyRecord) -> Result<CompiledPolicy> {
    let refuse = |e: String| ControlError::invalid(format!("Filter policy of NAT '{}': {e}.", rec.name));
    if let Some(source) = &p.module {
        let spec = ModuleSpec::from_source(&p.path, source).map_err(|e| refuse(e.to_string()))?;
        let module = ModulePolicy::load(&spec, rec.tcp_filtering_behavior, rec.udp_filtering_behavior)
            .map_err(|e| refuse(e.to_string()))?;
        return Ok(CompiledPolicy::Module(Arc::new(module)));
    }
    let parsed = crate::policy_file::parse(&p.text, &p.path).map_err(|e| refuse(e.to_string()))?;
    if parsed.module().is_some() {
        return Err(refuse(format!(
            "{}: a policy file with [module] is read by the cmdlet, which sends the module; run Set-NetNat -FilterPolicyFile again with this netnat",
            p.path
        )));
    }
    parsed.check_for(rec.internal_prefix.trunc()).map_err(|e| refuse(e.to_string()))?;
    Ok(CompiledPolicy::Rules(parsed.policy().clone()))
}

fn policy_info(p: &FilterPolicyRecord) -> FilterPolicyInfo {
    if let Some(m) = &p.module {
        return FilterPolicyInfo {
            path: p.path.clone(),
            fallback: String::new(),
            rules: 0,
            limits: 0,
            module: Some(format!("on_error {}, {} fuel per decision", m.on_error, m.fuel_per_call)),
        };
    }
    let parsed = crate::policy_file::parse(&p.text, &p.path).ok();
    let policy = parsed.as_ref().map(|x| x.policy());
    FilterPolicyInfo {
        path: p.path.clone(),
        fallback: policy.and_then(|p| p.fallback).map(|b| b.winnat_name().to_owned()).unwrap_or_default(),
        rules: policy.map_or(0, |p| p.rules.len()),
        limits: policy.map_or(0, |p| p.limits.len()),
        module: None,
    }
}

fn secs(s: u32) -> netnat_engine::Duration {
    netnat_engine::Duration::from_secs(u64::from(s))
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

    fn global(&self) -> NetNatGlobal {
        NetNatGlobal { inter_routing_domain_hairpinning_mode: self.state.hairpinning_mode.to_string() }
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

    fn prefixes(&self, state: &State) -> Vec<Ipv4Net> {
        state.nats.iter().map(|n| n.internal_prefix.trunc()).collect()
    }

    /// The engine templates of every NAT of `state`, checked.
    fn templates(&self, state: &State) -> Result<Vec<Compiled>> {
        let implicit: Vec<&str> = state
            .nats
            .iter()
            .filter(|n| !state.external_addresses.iter().any(|a| a.nat_name.eq_ignore_ascii_case(&n.name)))
            .map(|n| n.name.as_str())
            .collect();
        let mut out = Vec::new();
        for (i, rec) in state.nats.iter().enumerate() {
            let explicit: Vec<ExternalAddress> = state
                .external_addresses
                .iter()
                .filter(|a| a.nat_name.eq_ignore_ascii_case(&rec.name))
                .map(|a| ExternalAddress { address: a.address, port_start: a.port_start, port_end: a.port_end })
                .collect();
            let addressing = match implicit.iter().position(|n| *n == rec.name) {
                None => Addressing::Explicit,
                Some(k) => Addressing::Implicit { ports: port_slice(self.engine.host_nat_ports, k, implicit.len()) },
            };
            let (filter_policy, module) =
                match rec.filter_policy.as_ref().map(|p| compile_policy(rec, p)).transpose()? {
                    None => (None, None),
                    Some(CompiledPolicy::Rules(policy)) => (Some(policy), None),
                    Some(CompiledPolicy::Module(module)) => (None, Some(module)),
                };
            let config = NatConfig {
                name: rec.name.clone(),
                filter_policy,
                internal_prefix: rec.internal_prefix.trunc(),
                external_prefix: rec.external_prefix,
                external_addresses: explicit,
                timeouts: Timeouts {
                    icmp_query: secs(rec.icmp_query_timeout),
                    tcp_established: secs(rec.tcp_established_connection_timeout),
                    tcp_transient: secs(rec.tcp_transient_connection_timeout),
                    udp_idle: secs(rec.udp_idle_session_timeout),
                },
                tcp_filtering: rec.tcp_filtering_behavior,
                udp_filtering: rec.udp_filtering_behavior,
                udp_inbound_refresh: rec.udp_inbound_refresh,
                static_mappings: state
                    .static_mappings
                    .iter()
                    .filter(|m| m.nat_name.eq_ignore_ascii_case(&rec.name))
                    .map(|m| StaticMapping {
                        protocol: m.protocol,
                        external_address: m.external_address,
                        external_port: m.external_port,
                        internal_address: m.internal_address,
                        internal_port: m.internal_port,
                        remote_prefix: m.remote_prefix,
                    })
                    .collect(),
                hairpinning: state.hairpinning_mode,
                limits: self.engine.limits,
                session_counters: self.engine.session_counters,
                seed: self.engine.seed.wrapping_add(i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d),
                // The external addresses are the host's too: what no mapping claims is the host's.
                unmatched_inbound: UnmatchedInbound::Host,
                ..NatConfig::new(rec.name.clone(), rec.internal_prefix.trunc(), Ipv4Addr::UNSPECIFIED)
            };
            let template = Template { config, addressing };
            template.validate(&self.host_addresses).map_err(engine_error)?;
            out.push(Compiled { name: rec.name.clone(), template, module });
        }
        Ok(out)
    }

    /// Checks `next`, saves it, applies it. Everything that can refuse the change runs before
    /// the save (the templates are checked as the engines check them, new NATs are built but
    /// not yet running), so a refused change leaves the state file and the running NATs as
    /// they were.
    fn commit(&mut self, next: State) -> Result<()> {
        let templates = self.templates(&next)?;
        let plan = self.plan(&next, templates)?;
        if let Some(store) = &self.store {
            store.save(&next).map_err(|e| ControlError::internal(format!("the change was not made: {e}")))?;
        }
        self.state = next;
        self.apply(plan)
    }

    /// Brings the running NATs in line with `templates` (start-up: nothing to save).
    fn sync(&mut self, templates: Vec<Compiled>) -> Result<()> {
        let state = self.state.clone();
        let plan = self.plan(&state, templates)?;
        self.apply(plan)
    }

    /// What applying `templates` (those of `state`) does to each NAT, prepared without
    /// touching the running ones: a NAT new to the dataplane is built here; one that runs
    /// keeps running and gets its template in [`Service::apply`] (its engines' checks are the
    /// ones `templates` passed).
    fn plan(&self, state: &State, templates: Vec<Compiled>) -> Result<Vec<Planned>> {
        let current = self.plane.nats();
        let others = self.prefixes(state);
        templates
            .into_iter()
            .map(|Compiled { name, template, module }| match current.iter().find(|n| n.name == name) {
                Some(live) => Ok(Planned::Change(Arc::clone(live), Box::new(template), module)),
                None => LiveNat::new(name, template, &self.host_addresses, &others)
                    .map(|live| {
                        live.set_policy_module(module);
                        Planned::New(Arc::new(live))
                    })
                    .map_err(engine_error),
            })
            .collect()
    }

    /// Puts `plan` in force: the NATs it names run, the others stop (their sessions are
    /// dropped). A NAT whose new template its engines still refuse keeps running as it was
    /// (not expected after `plan`; reported).
    fn apply(&mut self, plan: Vec<Planned>) -> Result<()> {
        let current = self.plane.nats();
        let others = self.prefixes(&self.state);
        let mut next = Vec::new();
        let mut failure = None;
        for planned in plan {
            match planned {
                Planned::New(live) => next.push(live),
                Planned::Change(live, template, module) => {
                    match live.set_template(*template, &self.host_addresses, &others) {
                        Ok(()) => live.set_policy_module(module),
                        Err(e) => {
                            tracing::error!(nat = %live.name, "a checked change was refused by the engine: {e}");
                            failure = Some(engine_error(e));
                        }
                    }
                    next.push(live);
                }
            }
        }
        for gone in current.iter().filter(|c| !next.iter().any(|n| Arc::ptr_eq(n, c))) {
            gone.clear_sessions();
        }
        self.plane.set_nats(next);
        let nats = self.plane.nats();
        (self.on_change)(&self.state, &nats);
        match failure {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    fn nat_objects(&self, chosen: &HashSet<String>) -> Vec<NetNat> {
        self.state
            .nats
            .iter()
            .filter(|n| chosen.contains(&n.name.to_ascii_lowercase()))
            .map(|n| NetNat {
                name: n.name.clone(),
                external_ip_interface_address_prefix: n.external_prefix.map(|p| p.to_string()).unwrap_or_default(),
                internal_ip_interface_address_prefix: n.internal_prefix.to_string(),
                icmp_query_timeout: n.icmp_query_timeout,
                tcp_established_connection_timeout: n.tcp_established_connection_timeout,
                tcp_transient_connection_timeout: n.tcp_transient_connection_timeout,
                tcp_filtering_behavior: n.tcp_filtering_behavior.winnat_name().to_owned(),
                udp_filtering_behavior: n.udp_filtering_behavior.winnat_name().to_owned(),
                udp_idle_session_timeout: n.udp_idle_session_timeout,
                udp_inbound_refresh: n.udp_inbound_refresh,
                store: "Local".to_owned(),
                active: true,
                filter_policy: n.filter_policy.as_ref().map(policy_info),
            })
            .collect()
    }

    fn sessions(&self, detailed: bool) -> Vec<NetNatSession> {
        let now = self.clock.now();
        let mut rows: Vec<_> = self.plane.nats().iter().flat_map(|n| n.sessions()).collect();
        rows.sort_by_key(|s| (s.creation_time, s.internal_source_address, s.internal_source_port));
        rows.into_iter()
            .map(|s| NetNatSession {
                detail: detailed.then(|| SessionDetail::of(&s, now)),
                nat_name: s.nat_name,
                internal_routing_domain_id: NULL_ROUTING_DOMAIN.to_owned(),
                creation_time: self.clock.format_local(s.creation_time),
                protocol: s.protocol,
                internal_source_address: s.internal_source_address.to_string(),
                internal_source_port: s.internal_source_port,
                internal_destination_address: s.internal_destination_address.to_string(),
                internal_destination_port: s.internal_destination_port,
                external_source_address: s.external_source_address.to_string(),
                external_source_port: s.external_source_port,
                external_destination_address: s.external_destination_address.to_string(),
                external_destination_port: s.external_destination_port,
            })
            .collect()
    }

    /// Get-NetNatStatistics: the snapshot of `statistics::collect` as JSON.
    fn statistics(&self) -> serde_json::Map<String, serde_json::Value> {
        super::statistics::collect(&self.plane, self.clock.now()).to_json()
    }
}

/// The `k`-th of `n` equal slices of `range` (NATs sharing the host's addresses).
fn port_slice((first, last): (u16, u16), k: usize, n: usize) -> (u16, u16) {
    let total = u32::from(last - first) + 1;
    let n = u32::try_from(n.max(1)).unwrap_or(u32::MAX).min(total);
    let k = u32::try_from(k).unwrap_or(0).min(n - 1);
    let size = total / n;
    let start = u32::from(first) + k * size;
    let end = if k + 1 == n { u32::from(last) } else { start + size - 1 };
    (u16::try_from(start).unwrap_or(last), u16::try_from(end).unwrap_or(last))
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn mapping_object(m: &StaticMappingRecord) -> NetNatStaticMapping {
    NetNatStaticMapping {
        static_mapping_id: m.id,
        nat_name: m.nat_name.clone(),
        protocol: m.protocol.to_string(),
        remote_external_ip_address_prefix: m.remote_prefix.to_string(),
        external_ip_address: m.external_address.to_string(),
        external_port: m.external_port,
        internal_ip_address: m.internal_address.to_string(),
        internal_port: m.internal_port,
        internal_routing_domain_id: NULL_ROUTING_DOMAIN.to_owned(),
        active: true,
    }
}

fn address_object(a: &ExternalAddressRecord) -> NetNatExternalAddress {
    NetNatExternalAddress {
        external_address_id: a.id,
        nat_name: a.nat_name.clone(),
        ip_address: a.address.to_string(),
        port_start: a.port_start,
        port_end: a.port_end,
        active: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::ErrorKind;

    fn service() -> Service {
        Service::new(
            State::default(),
            None,
            Arc::new(Dataplane::new()),
            Clock::start(),
            EngineSettings {
                seed: 7,
                limits: Limits::default(),
                host_nat_ports: (1024, 65535),
                session_counters: false,
            },
            vec![Ipv4Addr::new(203, 0, 113, 1), Ipv4Addr::new(10, 100, 1, 1)],
            Box::new(|_, _| {}),
        )
        .unwrap()
    }

    fn new_nat(s: &mut Service, name: &str, prefix: &str) -> Reply {
        s.handle(Request::NewNetNat {
            name: name.into(),
            internal_prefix: prefix.parse().unwrap(),
            external_prefix: None,
            filter_policy: None,
        })
    }

    /// Add-NetNatExternalAddress -NatName WinNAT -IPAddress 203.0.113.1 (so the NAT has
    /// explicit addressing and one engine).
    fn add_external_address(s: &mut Service) {
        let add_address = Request::AddNetNatExternalAddress {
            nat_name: "WinNAT".into(),
            address: Ipv4Addr::new(203, 0, 113, 1),
            port_start: None,
            port_end: None,
        };
        assert!(matches!(s.handle(add_address), Reply::Ok { .. }));
    }

    fn err(r: Reply) -> ControlError {
        match r {
            Reply::Error(e) => e,
            Reply::Ok { output, .. } => panic!("expected an error, got {output:?}"),
        }
    }

    /// A change the engines would refuse (a static mapping to a host outside the internal
    /// prefix) is refused before the save: the state file keeps its bytes, the running NAT
    /// is the same object with its session, and the configuration in force is unchanged.
    #[test]
    fn a_refused_change_leaves_the_state_file_and_the_running_nats_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        let plane = Arc::new(Dataplane::new());
        let engine = EngineSettings {
            seed: 7,
            limits: Limits::default(),
            host_nat_ports: (1024, 65535),
            session_counters: false,
        };
        let hosts = vec![Ipv4Addr::new(203, 0, 113, 1)];
        let mut s = Service::new(
            State::default(),
            Some(StateStore::new(dir.path())),
            Arc::clone(&plane),
            Clock::start(),
            engine,
            hosts,
            Box::new(|_, _| {}),
        )
        .unwrap();
        assert!(matches!(new_nat(&mut s, "WinNAT", "10.100.0.0/16"), Reply::Ok { .. }));
        add_external_address(&mut s);
        // One flow through the running NAT.
        let mut p = vec![0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 100, 10, 11, 198, 51, 100, 10];
        p.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 8, 0, 0]);
        netnat_engine::wire::ipv4::fill_checksum(&mut p);
        let now = netnat_engine::Instant::from_secs(1);
        assert!(matches!(plane.process(now, &mut p), crate::daemon::dataplane::Action::Translated { .. }));
        let (saved, state, running) = (std::fs::read(store.path()).unwrap(), s.state().clone(), plane.nats());

        let refused = s.handle(Request::AddNetNatStaticMapping {
            nat_name: "WinNAT".into(),
            protocol: Protocol::Udp,
            remote_prefix: None,
            external_address: Ipv4Addr::UNSPECIFIED,
            external_port: 8080,
            internal_address: Ipv4Addr::new(10, 200, 0, 5),
            internal_port: None,
        });
        let e = err(refused);
        assert_eq!(e.kind, ErrorKind::InvalidParameter, "{e}");
        assert_eq!(std::fs::read(store.path()).unwrap(), saved, "the state file is untouched");
        assert_eq!(s.state(), &state, "the configuration in force is unchanged");
        assert!(Arc::ptr_eq(&plane.nats()[0], &running[0]), "the same NAT runs");
        assert_eq!(plane.nats()[0].sessions().len(), 1, "its session is kept");
    }

    const POLICY: &str =
        "[[rule]]\naction = \"deny\"\nremote = \"198.51.100.0/24\"\n\n[[limit]]\nnew_inbound_per_second = 5\n";

    fn source(text: &str) -> PolicySource {
        PolicySource { path: "/etc/netnat/policy.toml".into(), text: text.into(), module: None }
    }

    fn set_policy(s: &mut Service, change: PolicyChange) -> Reply {
        s.handle(Request::SetNetNat {
            names: Some(vec!["WinNAT".into()]),
            changes: NatChanges { filter_policy: Some(change), ..NatChanges::default() },
        })
    }

    fn service_at(dir: &std::path::Path, state: State, plane: Arc<Dataplane>) -> Service {
        let engine = EngineSettings {
            seed: 7,
            limits: Limits::default(),
            host_nat_ports: (1024, 65535),
            session_counters: false,
        };
        Service::new(
            state,
            Some(StateStore::new(dir)),
            plane,
            Clock::start(),
            engine,
            vec![Ipv4Addr::new(203, 0, 113, 1)],
            Box::new(|_, _| {}),
        )
        .unwrap()
    }

    /// The policy each running engine of the NAT has.
    fn running_policy(plane: &Dataplane) -> Vec<Option<netnat_engine::policy::Policy>> {
        plane.nats()[0].instances().iter().map(|i| i.nat.config().filter_policy.clone()).collect()
    }

    /// A policy module (as the cmdlet sends it) runs in the NAT's engines instead of its
    /// filtering; a module that cannot run is refused with the file named and nothing
    /// changes; removing it brings the configured filtering back.
    #[test]
    fn a_policy_module_runs_in_the_nats_engines_and_a_bad_one_is_refused() {
        use base64::Engine as _;
        let module = |wat: &str| PolicySource {
            path: "/etc/netnat/m.wat".into(),
            text: String::new(),
            module: Some(crate::control::protocol::ModuleSource {
                base64: base64::engine::general_purpose::STANDARD.encode(wat),
                on_error: "deny".into(),
                fuel_per_call: 1000,
            }),
        };
        const ABI: &str = r#"(func (export "netnat_abi_version") (result i32) (i32.const 1))"#;
        let deny_all = format!(
            r#"(module {ABI} (func (export "netnat_inbound") (param i32 i32 i32 i32 i32 i32 i32 i32 i64) (result i32) (i32.const 2)))"#
        );
        let dir = tempfile::tempdir().unwrap();
        let plane = Arc::new(Dataplane::new());
        let mut s = service_at(dir.path(), State::default(), Arc::clone(&plane));
        assert!(matches!(new_nat(&mut s, "WinNAT", "10.100.0.0/16"), Reply::Ok { .. }));
        assert!(matches!(set_policy(&mut s, PolicyChange::Set(module(&deny_all))), Reply::Ok { .. }));

        let udp = |src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16| {
            let mut p = Vec::new();
            etherparse::PacketBuilder::ipv4(src, dst, 64).udp(sport, dport).write(&mut p, b"x").unwrap();
            p
        };
        let nat = &plane.nats()[0].instances()[0].nat;
        let mut out = udp([10, 100, 0, 5], 5000, [198, 51, 100, 7], 53);
        assert!(matches!(
            nat.handle_packet(netnat_engine::Instant::from_secs(1), &mut out),
            netnat_engine::Verdict::Forward { .. }
        ));
        let ext = u16::from_be_bytes([out[20], out[21]]);
        let probe = |port: u16| {
            let mut p = udp([198, 51, 100, 7], port, [203, 0, 113, 1], ext);
            nat.handle_packet(netnat_engine::Instant::from_secs(2), &mut p)
        };
        // Address-dependent filtering would admit another port of a contacted address.
        assert_eq!(probe(54), netnat_engine::Verdict::Drop(netnat_engine::DropReason::PolicyDenied));
        let Reply::Ok { output: Output::Nats(nats), .. } = s.handle(Request::GetNetNat { names: None }) else {
            panic!()
        };
        let info = nats[0].filter_policy.clone().expect("shown");
        assert_eq!(info.to_string(), "/etc/netnat/m.wat (WASM module, on_error deny, 1000 fuel per decision)");

        let store = StateStore::new(dir.path());
        let saved = std::fs::read(store.path()).unwrap();
        let imports = format!(r#"(module (import "env" "log" (func)) {ABI})"#);
        let e = err(set_policy(&mut s, PolicyChange::Set(module(&imports))));
        assert!(e.to_string().contains("/etc/netnat/m.wat: the module imports env.log"), "{e}");
        assert_eq!(std::fs::read(store.path()).unwrap(), saved, "the state file is untouched");
        assert_eq!(
            probe(55),
            netnat_engine::Verdict::Drop(netnat_engine::DropReason::PolicyDenied),
            "still the module"
        );

        // The saved module comes back with the daemon.
        let reloaded_plane = Arc::new(Dataplane::new());
        let _reloaded = service_at(dir.path(), store.load().unwrap(), Arc::clone(&reloaded_plane));
        let nat2 = &reloaded_plane.nats()[0].instances()[0].nat;
        let mut out = udp([10, 100, 0, 5], 5000, [198, 51, 100, 7], 53);
        assert!(matches!(
            nat2.handle_packet(netnat_engine::Instant::from_secs(1), &mut out),
            netnat_engine::Verdict::Forward { .. }
        ));
        let ext2 = u16::from_be_bytes([out[20], out[21]]);
        let mut p = udp([198, 51, 100, 7], 54, [203, 0, 113, 1], ext2);
        assert_eq!(
            nat2.handle_packet(netnat_engine::Instant::from_secs(2), &mut p),
            netnat_engine::Verdict::Drop(netnat_engine::DropReason::PolicyDenied)
        );

        assert!(matches!(set_policy(&mut s, PolicyChange::Remove), Reply::Ok { .. }));
        assert!(matches!(probe(56), netnat_engine::Verdict::Forward { .. }), "the configured filtering again");
    }

    /// A bad policy (bad text, or a rule that can never match this NAT) is refused by
    /// Set-NetNat and New-NetNat with the file and line; the state file, the state and the
    /// running NAT stay as they were.
    #[test]
    fn a_bad_filter_policy_is_refused_and_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let plane = Arc::new(Dataplane::new());
        let mut s = service_at(dir.path(), State::default(), Arc::clone(&plane));
        assert!(matches!(new_nat(&mut s, "WinNAT", "10.100.0.0/16"), Reply::Ok { .. }));
        assert!(matches!(set_policy(&mut s, PolicyChange::Set(source(POLICY))), Reply::Ok { .. }));
        let store = StateStore::new(dir.path());
        let (saved, state, running) = (std::fs::read(store.path()).unwrap(), s.state().clone(), plane.nats());

        for (text, expect) in [
            ("[[rule]]\naction = \"deny\"\nremote = \"198.51.100.0/33\"\n", "/etc/netnat/policy.toml:3: rule 1: \"remote\" is not an IPv4 prefix"),
            ("[[rule]]\naction = \"deny\"\ninternal = \"10.200.0.5\"\n", "/etc/netnat/policy.toml:3: rule 1: \"internal\" 10.200.0.5/32 lies outside the NAT's internal prefix 10.100.0.0/16"),
            ("[[rule]]\nactoin = \"deny\"\n", "/etc/netnat/policy.toml:2:1: rule 1: unknown field `actoin`"),
        ] {
            let e = err(set_policy(&mut s, PolicyChange::Set(source(text))));
            assert_eq!(e.kind, ErrorKind::InvalidParameter, "{e}");
            assert!(e.to_string().contains(expect), "expected {expect:?} in: {e}");
            assert_eq!(std::fs::read(store.path()).unwrap(), saved, "the state file is untouched");
            assert_eq!(s.state(), &state, "the configuration in force is unchanged");
            assert!(Arc::ptr_eq(&plane.nats()[0], &running[0]), "the same NAT runs");
            assert_eq!(running_policy(&plane), vec![Some(crate::policy_file::parse(POLICY, "p").unwrap().policy().clone())]);
        }
        let e = err(s.handle(Request::NewNetNat {
            name: "Other".into(),
            internal_prefix: "10.101.0.0/16".parse().unwrap(),
            external_prefix: None,
            filter_policy: Some(source("[[rule]]\naction = \"deny\"\ninternal = \"10.100.0.5\"\n")),
        }));
        assert!(e.to_string().contains("Filter policy of NAT 'Other'"), "{e}");
        assert_eq!(s.state(), &state, "no NAT was created");
        assert_eq!(std::fs::read(store.path()).unwrap(), saved);
    }

    /// A valid policy is saved with its text (not only its path), shown by Get-NetNat only
    /// as the extension field, runs in the engine, and survives a restart from the state
    /// file; -RemoveFilterPolicy removes it.
    #[test]
    fn a_filter_policy_persists_with_its_text_and_survives_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let plane = Arc::new(Dataplane::new());
        let mut s = service_at(dir.path(), State::default(), Arc::clone(&plane));
        let reply = s.handle(Request::NewNetNat {
            name: "WinNAT".into(),
            internal_prefix: "10.100.0.0/16".parse().unwrap(),
            external_prefix: None,
            filter_policy: Some(source(POLICY)),
        });
        let Reply::Ok { output: Output::Nats(nats), .. } = reply else { panic!("{reply:?}") };
        let info = nats[0].filter_policy.clone().expect("shown by New-NetNat");
        assert_eq!((info.path.as_str(), info.rules, info.limits), ("/etc/netnat/policy.toml", 1, 1));
        let expected = crate::policy_file::parse(POLICY, "p").unwrap().policy().clone();
        assert_eq!(running_policy(&plane), vec![Some(expected.clone())]);
        let saved = std::fs::read_to_string(StateStore::new(dir.path()).path()).unwrap();
        assert!(saved.contains("new_inbound_per_second = 5"), "the text is saved: {saved}");

        // A restart: a new service over the state loaded from the file (no policy file exists
        // anywhere: the daemon never needed one).
        drop(s);
        let plane = Arc::new(Dataplane::new());
        let loaded = StateStore::new(dir.path()).load().unwrap();
        let mut s = service_at(dir.path(), loaded, Arc::clone(&plane));
        assert_eq!(s.state().nats[0].filter_policy.as_ref().map(|p| p.text.as_str()), Some(POLICY));
        assert_eq!(running_policy(&plane), vec![Some(expected)]);
        let Reply::Ok { output: Output::Nats(nats), .. } = s.handle(Request::GetNetNat { names: None }) else {
            panic!()
        };
        assert_eq!(nats[0].filter_policy.as_ref().map(|p| p.rules), Some(1));

        // Another setting leaves the policy alone; removing it goes back to the behaviours.
        let reply = s.handle(Request::SetNetNat {
            names: None,
            changes: NatChanges { udp_idle_session_timeout: Some(60), ..NatChanges::default() },
        });
        assert!(matches!(reply, Reply::Ok { .. }));
        assert!(s.state().nats[0].filter_policy.is_some());
        assert!(matches!(set_policy(&mut s, PolicyChange::Remove), Reply::Ok { .. }));
        assert_eq!(running_policy(&plane), vec![None]);
        let saved = std::fs::read_to_string(StateStore::new(dir.path()).path()).unwrap();
        assert!(!saved.contains("filter_policy"), "no key without a policy: {saved}");
    }

    /// Get-NetNatSession lists WinNAT's properties only; with -Detailed each row also has the
    /// session's timer and TCP state, read from the engine at the daemon's clock.
    #[test]
    fn get_session_detailed_adds_timer_and_tcp_state() {
        let plane = Arc::new(Dataplane::new());
        let dir = tempfile::tempdir().unwrap();
        let mut s = service_at(dir.path(), State::default(), Arc::clone(&plane));
        assert!(matches!(new_nat(&mut s, "WinNAT", "10.100.0.0/16"), Reply::Ok { .. }));
        add_external_address(&mut s);
        let now = s.clock.now();
        // A TCP SYN from 10.100.10.11:5000 to 198.51.100.10:80.
        let mut syn = vec![0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 100, 10, 11, 198, 51, 100, 10];
        syn.extend_from_slice(&[0x13, 0x88, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        netnat_engine::wire::ipv4::fill_checksum(&mut syn);
        let action = plane.process(now, &mut syn);
        assert!(matches!(action, crate::daemon::dataplane::Action::Translated { .. }), "{action:?}");

        let Reply::Ok { output: Output::Sessions(plain), .. } =
            s.handle(Request::GetNetNatSession { detailed: false, watch: false })
        else {
            panic!("no sessions")
        };
        assert_eq!(plain.len(), 1);
        assert_eq!(plain[0].detail, None, "the default rows are WinNAT's");
        let Reply::Ok { output: Output::Sessions(rows), .. } =
            s.handle(Request::GetNetNatSession { detailed: true, watch: false })
        else {
            panic!("no sessions")
        };
        let d = rows[0].detail.clone().expect("detail with -Detailed");
        assert_eq!(
            (d.tcp_state.as_deref(), d.timeout_seconds, d.opened_direction.as_str()),
            (Some("Opening"), 120, "Outbound")
        );
        assert!(d.idle_seconds < 10.0 && d.idle_seconds >= 0.0, "{d:?}");
        assert!((d.idle_seconds + d.time_left_seconds - 120.0).abs() < 0.002, "{d:?}");
        let mut without = rows[0].clone();
        without.detail = None;
        assert_eq!(without, plain[0], "the WinNAT properties are the same");
    }

    #[test]
    fn port_slices_cover_the_range_without_overlap() {
        const ALL: (u16, u16) = (1024, 65535);
        assert_eq!(port_slice(ALL, 0, 1), ALL);
        let (a, b) = (port_slice(ALL, 0, 2), port_slice(ALL, 1, 2));
        assert_eq!(a.0, 1024);
        assert_eq!(a.1 + 1, b.0);
        assert_eq!(b.1, 65535);
        // The host's share of a Linux default: below its ephemeral range 32768-60999.
        let host = (1024, 32767);
        let slices: Vec<_> = (0..3).map(|k| port_slice(host, k, 3)).collect();
        assert_eq!((slices[0].0, slices[2].1), host);
        assert!(slices.windows(2).all(|w| w[0].1 + 1 == w[1].0));
        // More NATs than ports never yields an empty or inverted slice.
        assert!((0..5).map(|k| port_slice((7, 8), k, 5)).all(|(a, b)| a <= b && (7..=8).contains(&a)));
    }

    #[test]
    fn overlapping_prefixes_are_refused_with_winnat_wording() {
        let mut s = service();
        assert!(matches!(new_nat(&mut s, "WinNAT", "10.100.0.0/16"), Reply::Ok { .. }));
        let e = err(new_nat(&mut s, "Other", "10.100.5.0/24"));
        assert_eq!(e.kind, ErrorKind::InvalidParameter);
        assert!(e.to_string().starts_with("The parameter is incorrect."), "{e}");
        assert!(e.to_string().contains("WinNAT"), "{e}");
        let e = err(new_nat(&mut s, "winnat", "10.200.0.0/16"));
        assert_eq!(e.kind, ErrorKind::DuplicateName);
        assert!(matches!(new_nat(&mut s, "Second", "10.200.0.0/16"), Reply::Ok { .. }));
        assert_eq!(s.state().nats.len(), 2);
    }

    #[test]
    fn duplicate_static_port_and_remove_all() {
        let mut s = service();
        new_nat(&mut s, "WinNAT", "10.100.0.0/16");
        let add = |port| Request::AddNetNatStaticMapping {
            nat_name: "WinNAT".into(),
            protocol: Protocol::Tcp,
            remote_prefix: None,
            external_address: Ipv4Addr::UNSPECIFIED,
            external_port: port,
            internal_address: Ipv4Addr::new(10, 100, 10, 11),
            internal_port: None,
        };
        assert!(matches!(s.handle(add(8080)), Reply::Ok { .. }));
        let e = err(s.handle(add(8080)));
        assert!(e.to_string().contains("duplicate name exists on the network"), "{e}");
        assert_eq!(s.state().static_mappings[0].internal_port, 8080);
        assert!(matches!(s.handle(Request::RemoveNetNat { names: None }), Reply::Ok { .. }));
        assert!(s.state().nats.is_empty() && s.state().static_mappings.is_empty());
    }

    #[test]
    fn remove_by_id_removes_only_that_record_and_an_unknown_id_is_not_found() {
        let mut s = service();
        new_nat(&mut s, "WinNAT", "10.100.0.0/16");
        for port in [8080, 8081] {
            let add = Request::AddNetNatStaticMapping {
                nat_name: "WinNAT".into(),
                protocol: Protocol::Tcp,
                remote_prefix: None,
                external_address: Ipv4Addr::UNSPECIFIED,
                external_port: port,
                internal_address: Ipv4Addr::new(10, 100, 10, 11),
                internal_port: None,
            };
            assert!(matches!(s.handle(add), Reply::Ok { .. }));
        }
        let first = s.state().static_mappings[0].id;
        let e = err(s.handle(Request::RemoveNetNatStaticMapping { ids: Some(vec![first, 999]), nat_names: None }));
        assert!(
            e.to_string()
                .contains("No MSFT_NetNatStaticMapping objects found with property 'StaticMappingID' equal to '999'"),
            "{e}"
        );
        assert_eq!(s.state().static_mappings.len(), 2, "nothing removed when one id is unknown");
        assert!(matches!(
            s.handle(Request::RemoveNetNatStaticMapping { ids: Some(vec![first]), nat_names: None }),
            Reply::Ok { .. }
        ));
        assert_eq!(s.state().static_mappings.iter().map(|m| m.external_port).collect::<Vec<_>>(), [8081]);
        let e = err(s.handle(Request::RemoveNetNatExternalAddress { ids: Some(vec![7]), nat_names: None }));
        assert!(
            e.to_string()
                .contains("No MSFT_NetNatExternalAddress objects found with property 'ExternalAddressID' equal to '7'"),
            "{e}"
        );
        let e = err(s.handle(Request::RemoveNetNatStaticMapping { ids: None, nat_names: Some(vec!["Other".into()]) }));
        assert!(
            e.to_string()
                .contains("No MSFT_NetNatStaticMapping objects found with property 'NatName' equal to 'Other'"),
            "{e}"
        );
    }

    #[test]
    fn get_unknown_name_is_not_found_but_wildcards_may_match_nothing() {
        let mut s = service();
        let e = err(s.handle(Request::GetNetNat { names: Some(vec!["Nope".into()]) }));
        assert!(e.to_string().contains("No MSFT_NetNat objects found with property 'Name' equal to 'Nope'"));
        assert!(matches!(s.handle(Request::GetNetNat { names: Some(vec!["No*".into()]) }), Reply::Ok { .. }));
    }
    #[cfg(target_os = "linux")]
    #[test]
    fn statistics_include_the_kernel_queue_counters_beside_the_nats() {
        let mut s = service();
        assert!(matches!(new_nat(&mut s, "WinNAT", "10.100.0.0/16"), Reply::Ok { .. }));
        assert!(matches!(new_nat(&mut s, "nfqueue", "10.101.0.0/16"), Reply::Ok { .. }));
        let Reply::Ok { output: Output::Statistics(map), .. } = s.handle(Request::GetNetNatStatistics) else {
            panic!("no statistics")
        };
        // The NATs keep their entries, engine counters under "stats".
        for nat in ["WinNAT", "nfqueue"] {
            assert!(map[nat][0]["stats"].is_object(), "{nat}: {map:?}");
        }
        // The kernel's entry has the same shape; this test process binds no queue: zeros, a note.
        let kernel = &map["nfqueue (kernel)"][0];
        assert_eq!(kernel["stats"]["dropped"], 0, "{kernel}");
        assert_eq!(kernel["stats"]["queue_dropped"], 0, "{kernel}");
        assert_eq!(kernel["stats"]["user_dropped"], 0, "{kernel}");
        assert_eq!(kernel["queues"], serde_json::json!([]));
        assert!(kernel["note"].is_string(), "{kernel}");
        // The capture workers' counters are there too, zero before any worker published.
        assert_eq!(kernel["stats"]["gso_packets"], 0, "{kernel}");
        assert_eq!(kernel["stats"]["checksums_completed"], 0, "{kernel}");
    }
}
