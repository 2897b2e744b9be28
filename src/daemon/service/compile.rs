//! Compiling the state into what the engines run, and putting it in force: one template (and
//! WASM module) per NAT, checked as the engines check them; then saved and applied, so a
//! refused change touches neither the state file nor the running NATs.

use super::*;

/// One NAT of a change about to be applied ([`Service::plan`]).
pub(super) enum Planned {
    /// Built for the change (with its module); not running yet.
    New(Arc<LiveNat>),
    /// Running; gets this template (boxed: a template with a filter policy is large) and
    /// module.
    Change(Arc<LiveNat>, Box<Template>, Option<Arc<ModulePolicy>>),
}

/// One NAT's engine settings compiled from the state: its template and its WASM policy
/// module, if it has one (which the template cannot carry).
pub(super) struct Compiled {
    name: String,
    template: Template,
    module: Option<Arc<ModulePolicy>>,
}

/// A NAT's filter policy, ready to run: rules for the engine's configuration, or a loaded
/// WASM module (one instance per NAT, shared by its engines).
pub(super) enum CompiledPolicy {
    Rules(netnat_engine::policy::Policy),
    Module(Arc<ModulePolicy>),
}

/// The saved policy of `rec`, parsed and checked against its internal prefix, or its module
/// loaded. The text (or module) is compiled again on every change and at start-up (it is
/// small), with the code the cmdlet used, so what runs is what the cmdlet checked; errors
/// name the file and line. A module is loaded afresh each time: its state starts over when
/// the NAT's configuration changes or the daemon restarts.
pub(super) fn compile_policy(rec: &NatRecord, p: &FilterPolicyRecord) -> Result<CompiledPolicy> {
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

pub(super) fn secs(s: u32) -> netnat_engine::Duration {
    netnat_engine::Duration::from_secs(u64::from(s))
}

/// The `k`-th of `n` equal slices of `range` (NATs sharing the host's addresses).
pub(super) fn port_slice((first, last): (u16, u16), k: usize, n: usize) -> (u16, u16) {
    let total = u32::from(last - first) + 1;
    let n = u32::try_from(n.max(1)).unwrap_or(u32::MAX).min(total);
    let k = u32::try_from(k).unwrap_or(0).min(n - 1);
    let size = total / n;
    let start = u32::from(first) + k * size;
    let end = if k + 1 == n { u32::from(last) } else { start + size - 1 };
    (u16::try_from(start).unwrap_or(last), u16::try_from(end).unwrap_or(last))
}

impl Service {
    pub(super) fn prefixes(&self, state: &State) -> Vec<Ipv4Net> {
        state.nats.iter().map(|n| n.internal_prefix.trunc()).collect()
    }

    /// The engine templates of every NAT of `state`, checked.
    pub(super) fn templates(&self, state: &State) -> Result<Vec<Compiled>> {
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
    pub(super) fn commit(&mut self, next: State) -> Result<()> {
        let templates = self.templates(&next)?;
        let plan = self.plan(&next, templates)?;
        if let Some(store) = &self.store {
            store.save(&next).map_err(|e| ControlError::internal(format!("the change was not made: {e}")))?;
        }
        self.state = next;
        self.apply(plan)
    }

    /// Brings the running NATs in line with `templates` (start-up: nothing to save).
    pub(super) fn sync(&mut self, templates: Vec<Compiled>) -> Result<()> {
        let state = self.state.clone();
        let plan = self.plan(&state, templates)?;
        self.apply(plan)
    }

    /// What applying `templates` (those of `state`) does to each NAT, prepared without
    /// touching the running ones: a NAT new to the dataplane is built here; one that runs
    /// keeps running and gets its template in [`Service::apply`] (its engines' checks are the
    /// ones `templates` passed).
    pub(super) fn plan(&self, state: &State, templates: Vec<Compiled>) -> Result<Vec<Planned>> {
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
    pub(super) fn apply(&mut self, plan: Vec<Planned>) -> Result<()> {
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
}
