//! What the cmdlets show: the NetNat objects, sessions and statistics, read from the state
//! and the running engines.

use super::*;

pub(super) fn policy_info(p: &FilterPolicyRecord) -> FilterPolicyInfo {
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

pub(super) fn mapping_object(m: &StaticMappingRecord) -> NetNatStaticMapping {
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

pub(super) fn address_object(a: &ExternalAddressRecord) -> NetNatExternalAddress {
    NetNatExternalAddress {
        external_address_id: a.id,
        nat_name: a.nat_name.clone(),
        ip_address: a.address.to_string(),
        port_start: a.port_start,
        port_end: a.port_end,
        active: true,
    }
}

impl Service {
    pub(super) fn global(&self) -> NetNatGlobal {
        NetNatGlobal { inter_routing_domain_hairpinning_mode: self.state.hairpinning_mode.to_string() }
    }

    pub(super) fn nat_objects(&self, chosen: &HashSet<String>) -> Vec<NetNat> {
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

    pub(super) fn sessions(&self, detailed: bool) -> Vec<NetNatSession> {
        let now = self.clock.now();
        let mut rows: Vec<_> = self.plane.nats().iter().flat_map(|n| n.sessions()).collect();
        rows.sort_by_key(|s| (s.creation_time, s.internal_source_address, s.internal_source_port));
        rows.into_iter()
            .map(|s| {
                let created = self.clock.format_local(s.creation_time);
                NetNatSession::of(&s, created, Some(NULL_ROUTING_DOMAIN.to_owned()), detailed.then_some(now))
            })
            .collect()
    }

    /// Get-NetNatStatistics: the snapshot of `statistics::collect` as JSON.
    pub(super) fn statistics(&self) -> serde_json::Map<String, serde_json::Value> {
        crate::daemon::statistics::collect(&self.plane, self.clock.now()).to_json()
    }
}
