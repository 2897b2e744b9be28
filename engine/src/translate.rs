//! The mapping and filtering decisions for one packet's endpoints: find or create the
//! mapping and session, apply the filtering behaviour and timers, and say which endpoint to
//! rewrite to. The packet bytes are not touched here (see `rewrite.rs`).

use std::net::Ipv4Addr;

use std::collections::hash_map::{Entry, VacantEntry};

use crate::alloc;
use crate::config::{Limits, PortAllocation, Protocol, StaticMapping};
use crate::endpoint::{Inside, Outside, Remote};
use crate::events::{Event, EventKind};
use crate::filter::{Contacted, InboundContext, OutboundContext};
use crate::nat::Nat;
use crate::settings::Settings;
use crate::stats::bump;
use crate::table::{key, Mapping, Released, Session, Table};
use crate::tcp_state::{self, TcpSegment};
use crate::time::Instant;
use crate::verdict::DropReason;

/// Attempts of the find-or-create loop; more than two happen only when other threads race to
/// create or remove the same mapping.
const ATTEMPTS: usize = 4;

fn retryable(e: DropReason) -> bool {
    matches!(e, DropReason::PortsExhausted | DropReason::SessionLimit | DropReason::HostSessionLimit)
}

impl Nat {
    /// Outbound: the external endpoint for `internal` talking to `remote`, creating the mapping
    /// and session as needed and refreshing the session.
    #[inline]
    pub(crate) fn outbound(
        &self,
        s: &Settings,
        now: Instant,
        proto: Protocol,
        internal: Inside,
        remote: Remote,
        seg: TcpSegment,
    ) -> Result<Outside, DropReason> {
        let ik = key(proto, internal.0, internal.1);
        // The established flow: a shared lock, the session's atomics, no retry machinery
        // (inlined into the packet path; everything else is out of line).
        {
            let shard = self.table.by_internal.read(ik);
            if let Some(m) = shard.get(&ik) {
                if let Some(sess) = m.session(remote.0, remote.1) {
                    if sess.is_alive(proto, now, &s.config.timeouts) {
                        sess.on_packet(proto, true, seg, now)?;
                        return Ok(m.outside());
                    }
                }
            }
        }
        self.outbound_slow(s, now, proto, internal, remote, seg)
    }

    /// Outbound for a packet that is not on a live session: find or create.
    #[inline(never)]
    fn outbound_slow(
        &self,
        s: &Settings,
        now: Instant,
        proto: Protocol,
        internal: Inside,
        remote: Remote,
        seg: TcpSegment,
    ) -> Result<Outside, DropReason> {
        let ik = key(proto, internal.0, internal.1);
        self.retrying(now, DropReason::PortsExhausted, || {
            let mut shard = self.table.by_internal.write(ik);
            match shard.entry(ik) {
                Entry::Occupied(o) => {
                    let m = o.into_mut();
                    self.touch_outbound(s, now, m, remote, seg).map(|()| Some(m.outside()))
                }
                Entry::Vacant(v) => self.create_outbound(s, now, v, proto, internal, remote, seg).map(Some),
            }
        })
        .inspect_err(|&e| self.refused(now, e, proto, internal, None, remote))
    }

    /// Queues the event of a new session that a limit or the port range refused (after the
    /// retries: one event per refused packet).
    #[cold]
    fn refused(
        &self,
        now: Instant,
        reason: DropReason,
        proto: Protocol,
        internal: Inside,
        external: Option<Outside>,
        remote: Remote,
    ) {
        let Some(kind) = refusal_event(reason) else { return };
        self.table.events.emit(|| Event {
            time: now,
            kind,
            protocol: proto,
            internal: internal.socket_addr(),
            external: external.map(Outside::socket_addr),
            remote: Some(remote.socket_addr()),
        });
    }

    /// Runs a find-or-create `attempt` until it gives an endpoint (`Ok(None)`: another thread
    /// raced it, try again), sweeping expired sessions once if it ran out of ports or session
    /// slots; `give_up` when the races never settle.
    fn retrying<E>(
        &self,
        now: Instant,
        give_up: DropReason,
        mut attempt: impl FnMut() -> Result<Option<E>, DropReason>,
    ) -> Result<E, DropReason> {
        let mut swept = false;
        for _ in 0..ATTEMPTS {
            match attempt() {
                Ok(Some(endpoint)) => return Ok(endpoint),
                Ok(None) => {}
                Err(e) if retryable(e) && !swept && self.forced_sweep(now) => swept = true,
                Err(e) => return Err(e),
            }
        }
        Err(give_up)
    }

    fn touch_outbound(
        &self,
        s: &Settings,
        now: Instant,
        m: &mut Mapping,
        remote: Remote,
        seg: TcpSegment,
    ) -> Result<(), DropReason> {
        let proto = m.protocol;
        let t = &s.config.timeouts;
        if let Some(sess) = m.sessions.find_mut(remote.0, remote.1) {
            if !sess.is_alive(proto, now, t) {
                let was_inbound = sess.opened_inbound();
                let ended = EventKind::SessionDeleted(sess.end_reason(proto));
                *sess = Session::new(remote.0, remote.1, true, now).counted(s.config.session_counters);
                m.inbound_sessions -= u32::from(was_inbound);
                self.table.events.emit(|| m.event(now, ended, Some(remote)));
                self.table.events.emit(|| m.event(now, EventKind::SessionCreated, Some(remote)));
                if was_inbound && !m.from_static {
                    self.table.release_sessions(m.internal_addr, Released::ONE_OPENED_INBOUND);
                }
                bump(&self.counters.sessions_expired);
                bump(&self.counters.sessions_created);
            }
        } else {
            self.reserve_in(s, now, m, Table::reserve_session)?;
            bump(&self.counters.sessions_created);
            m.sessions.insert(
                Session::new(remote.0, remote.1, true, now).counted(s.config.session_counters),
                self.table.hasher(),
            );
            self.table.events.emit(|| m.event(now, EventKind::SessionCreated, Some(remote)));
        }
        // Found again rather than kept from above: two short borrows instead of one across
        // the reservation (a hash probe, or a scan of at most `LINEAR_SESSIONS`).
        match m.session(remote.0, remote.1) {
            Some(session) => session.on_packet(proto, true, seg, now),
            None => Ok(()),
        }
    }

    /// Claims room for one more session of `m`'s host with `reserve` (a session, or an
    /// inbound-opened one). At a limit, first frees the expired sessions of `m` itself
    /// (bounded by the per-host cap, and the likely culprit: one port talking to many
    /// remotes); the rest of the table is the sweep's (`Nat::forced_sweep`).
    fn reserve_in(
        &self,
        s: &Settings,
        now: Instant,
        m: &mut Mapping,
        reserve: fn(&Table, u32, &Limits) -> Result<(), DropReason>,
    ) -> Result<(), DropReason> {
        let limits = &s.config.limits;
        match reserve(&self.table, m.internal_addr, limits) {
            Err(e @ (DropReason::HostSessionLimit | DropReason::SessionLimit | DropReason::InboundSessionLimit)) => {
                if self.reclaim_expired(s, now, m) == 0 {
                    return Err(e);
                }
                reserve(&self.table, m.internal_addr, limits)
            }
            other => other,
        }
    }

    /// Creates the mapping for an internal endpoint that has none, in its `vacant` entry
    /// (its shard is locked for writing, so no other thread creates it meanwhile).
    #[allow(clippy::too_many_arguments)]
    fn create_outbound(
        &self,
        s: &Settings,
        now: Instant,
        vacant: VacantEntry<'_, u64, Mapping>,
        proto: Protocol,
        internal: Inside,
        remote: Remote,
        seg: TcpSegment,
    ) -> Result<Outside, DropReason> {
        if proto != Protocol::Icmp {
            let ctx = OutboundContext {
                now,
                protocol: proto,
                internal: internal.socket_addr(),
                remote: remote.socket_addr(),
                tcp_flags: seg.flags,
            };
            s.filter(proto).new_mapping(&ctx)?;
        }
        let session = Session::new(remote.0, remote.1, true, now).counted(s.config.session_counters);
        session.on_packet(proto, true, seg, now)?;
        self.table.reserve_session(internal.0, &s.config.limits)?;
        let ik = *vacant.key();
        let claimed = match s.static_for_internal(proto, internal.0, internal.1) {
            // The internal endpoint of a static mapping keeps the mapping's external
            // port for its outbound traffic too (one endpoint, one mapping).
            Some(sm) => static_external_addr(s, sm, internal.0)
                .map(|a| Outside(a, sm.external_port))
                .filter(|&external| claim(s, ik, proto, external)),
            None => self.allocate(s, ik, proto, internal),
        };
        match claimed {
            Some(ext) => {
                let m = vacant.insert(Mapping::new(proto, internal, ext, false, session));
                self.table.enqueue(ik, m);
                self.table.mapping_created(now, m, remote);
                bump(&self.counters.sessions_created);
                Ok(ext)
            }
            None => {
                self.table.release_sessions(internal.0, Released::ONE);
                Err(DropReason::PortsExhausted)
            }
        }
    }

    /// Picks a free external port (RFC 6056) that no static mapping owns.
    fn allocate(&self, s: &Settings, ik: u64, proto: Protocol, internal: Inside) -> Option<Outside> {
        let ext = s.external_for(internal.0)?;
        let preserve = (s.config.port_allocation == PortAllocation::Preserve).then_some(internal.1);
        let n = self.port_draws.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let draw = self.table.hash_key(ik) ^ alloc::mix(n ^ s.config.seed);
        alloc::candidates(ext.start, ext.end, preserve, draw)
            .filter(|&p| s.static_owner(proto, ext.addr, p).is_none())
            .find(|&p| ext.ports.claim(proto, p, ik))
            .map(|p| Outside(ext.addr, p))
    }

    /// Inbound: the internal endpoint for a packet from `remote` to `external`, if a mapping
    /// (or a static mapping) and the filtering admit it.
    #[inline]
    pub(crate) fn inbound(
        &self,
        s: &Settings,
        now: Instant,
        proto: Protocol,
        remote: Remote,
        external: Outside,
        seg: TcpSegment,
    ) -> Result<Inside, DropReason> {
        let ports = s.external(external.0).map(|e| &e.ports);
        // The established flow: a shared lock, the session's atomics, no retry machinery.
        if let Some(ik) = ports.and_then(|p| p.owner(proto, external.1)) {
            let shard = self.table.by_internal.read(ik);
            if let Some(m) = shard.get(&ik).filter(|m| m.outside() == external) {
                if let Some(sess) = m.session(remote.0, remote.1) {
                    if sess.is_alive(proto, now, &s.config.timeouts) {
                        inbound_refresh(s, sess, proto, seg, now)?;
                        return Ok(m.inside());
                    }
                }
            }
        }
        self.inbound_slow(s, now, proto, remote, external, seg)
    }

    /// Inbound for a packet that is not on a live session: its mapping or static mapping,
    /// and the filtering.
    #[inline(never)]
    fn inbound_slow(
        &self,
        s: &Settings,
        now: Instant,
        proto: Protocol,
        remote: Remote,
        external: Outside,
        seg: TcpSegment,
    ) -> Result<Inside, DropReason> {
        let ports = s.external(external.0).map(|e| &e.ports);
        self.retrying(now, DropReason::NoMapping, || {
            match ports.and_then(|p| p.owner(proto, external.1)) {
                Some(ik) => match self.table.by_internal.write(ik).get_mut(&ik) {
                    Some(m) if m.outside() == external => self.touch_inbound(s, now, m, remote, seg).map(Some),
                    // Being removed or replaced by another thread: look again.
                    _ => Ok(None),
                },
                None => {
                    match (proto != Protocol::Icmp).then(|| s.static_owner(proto, external.0, external.1)).flatten() {
                        Some(sm) => self.create_static(s, now, sm, external, remote, seg),
                        None => Err(DropReason::NoMapping),
                    }
                }
            }
        })
        .inspect_err(|&e| {
            // The mapping's internal endpoint is looked up only for an event that will be made.
            if refusal_event(e).is_some() && self.table.events.enabled() {
                if let Some(internal) = self.local_hairpin_target(s, proto, external) {
                    self.refused(now, e, proto, internal, Some(external), remote);
                }
            }
        })
    }

    fn touch_inbound(
        &self,
        s: &Settings,
        now: Instant,
        m: &mut Mapping,
        remote: Remote,
        seg: TcpSegment,
    ) -> Result<Inside, DropReason> {
        let proto = m.protocol;
        let t = &s.config.timeouts;
        let internal = m.inside();
        if let Some(sess) = m.session(remote.0, remote.1) {
            if sess.is_alive(proto, now, t) {
                inbound_refresh(s, sess, proto, seg, now)?;
                return Ok(internal);
            }
        }
        // A remote without a live session: only the filtering (or the static mapping's remote
        // prefix) can let it in. ICMP echo replies must come from a remote that was queried.
        if proto == Protocol::Icmp {
            return Err(DropReason::Filtered);
        }
        if m.from_static {
            match s.static_owner(proto, m.external_addr, m.external_port) {
                Some(sm)
                    if u32::from(sm.internal_address) == m.internal_addr && sm.internal_port == m.internal_port =>
                {
                    if !sm.remote_prefix.contains(&Ipv4Addr::from(remote.0)) {
                        return Err(DropReason::RemoteNotAllowed);
                    }
                    if proto == Protocol::Tcp && !tcp_state::opens_connection(seg.flags) {
                        return Err(DropReason::TcpNoSession);
                    }
                }
                _ => return Err(DropReason::NoMapping),
            }
        } else {
            let ctx = InboundContext {
                now,
                protocol: proto,
                remote: remote.socket_addr(),
                internal: m.inside().socket_addr(),
                external: m.outside().socket_addr(),
                new_session: true,
                tcp_flags: seg.flags,
                contacted: Contacted { sessions: &m.sessions, protocol: proto, now, timeouts: *t },
            };
            s.filter(proto).check(&ctx)?;
        }
        // A remote may open sessions on a dynamic mapping only up to the inbound cap, so it
        // cannot spend the internal host's whole session quota (its own outbound flows).
        let cap = s.config.limits.max_inbound_sessions_per_mapping;
        if !m.from_static && inbound_after(m, remote) > cap {
            self.reclaim_expired(s, now, m);
            if inbound_after(m, remote) > cap {
                return Err(DropReason::InboundSessionLimit);
            }
        }
        let session = Session::new(remote.0, remote.1, false, now).counted(s.config.session_counters);
        session.on_packet(proto, false, seg, now)?;
        // The host's inbound cap counts a dynamic mapping's inbound-opened sessions, so
        // remotes cannot take its quota through many mappings; replacing one such session
        // (expired) costs nothing.
        let replaces_opened_inbound = m.session(remote.0, remote.1).is_some_and(|x| x.opened_inbound());
        let charged = !m.from_static && !replaces_opened_inbound;
        if charged {
            self.reserve_in(s, now, m, Table::reserve_opened_inbound)?;
        }
        // Any session of this remote left here has expired (a live one returned above).
        if let Some(old) = m.sessions.find_mut(remote.0, remote.1) {
            let was_inbound = old.opened_inbound();
            let ended = EventKind::SessionDeleted(old.end_reason(proto));
            *old = session;
            m.inbound_sessions -= u32::from(was_inbound);
            bump(&self.counters.sessions_expired);
            self.table.events.emit(|| m.event(now, ended, Some(remote)));
        } else {
            if let Err(e) = self.reserve_in(s, now, m, Table::reserve_session) {
                if charged {
                    self.table.release_sessions(m.internal_addr, Released::ONE_OPENED_INBOUND);
                }
                return Err(e);
            }
            m.sessions.insert(session, self.table.hasher());
        }
        self.table.events.emit(|| m.event(now, EventKind::SessionCreated, Some(remote)));
        m.inbound_sessions += 1;
        bump(&self.counters.sessions_created);
        Ok(internal)
    }

    /// Removes `m`'s expired sessions (bounded by the per-host cap); returns how many.
    fn reclaim_expired(&self, s: &Settings, now: Instant, m: &mut Mapping) -> usize {
        let t = s.config.timeouts;
        let released = m.expire_sessions(|m, sess| {
            let gone = !sess.is_alive(m.protocol, now, &t);
            if gone {
                self.table.session_event(now, EventKind::SessionDeleted(sess.end_reason(m.protocol)), m, sess);
            }
            gone
        });
        self.table.release_sessions(m.internal_addr, released);
        self.counters.sessions_expired.fetch_add(released.sessions as u64, std::sync::atomic::Ordering::Relaxed);
        released.sessions
    }

    /// An inbound packet to a static mapping's port with no mapping yet: creates it.
    fn create_static(
        &self,
        s: &Settings,
        now: Instant,
        sm: &StaticMapping,
        external: Outside,
        remote: Remote,
        seg: TcpSegment,
    ) -> Result<Option<Inside>, DropReason> {
        if !sm.remote_prefix.contains(&Ipv4Addr::from(remote.0)) {
            return Err(DropReason::RemoteNotAllowed);
        }
        if sm.protocol == Protocol::Tcp && !tcp_state::opens_connection(seg.flags) {
            return Err(DropReason::TcpNoSession);
        }
        let internal = Inside(u32::from(sm.internal_address), sm.internal_port);
        let session = Session::new(remote.0, remote.1, false, now).counted(s.config.session_counters);
        session.on_packet(sm.protocol, false, seg, now)?;
        self.table.reserve_session(internal.0, &s.config.limits)?;
        let ik = key(sm.protocol, internal.0, internal.1);
        let result = match self.table.by_internal.write(ik).entry(ik) {
            // The internal endpoint already has a mapping (made before the static mapping
            // existed, or on another external address): it keeps it, one endpoint one mapping.
            Entry::Occupied(o) => {
                if o.get().outside() == external {
                    Ok(None)
                } else {
                    Err(DropReason::NoMapping)
                }
            }
            Entry::Vacant(vacant) => {
                if claim(s, ik, sm.protocol, external) {
                    let m = vacant.insert(Mapping::new(sm.protocol, internal, external, true, session));
                    self.table.enqueue(ik, m);
                    self.table.mapping_created(now, m, remote);
                    bump(&self.counters.sessions_created);
                    Ok(Some(internal))
                } else {
                    Ok(None)
                }
            }
        };
        if !matches!(result, Ok(Some(_))) {
            self.table.release_sessions(internal.0, Released::ONE);
        }
        result
    }

    /// Hairpinning in Local mode: the internal endpoint behind an external one, without
    /// filtering or a session (the packet is routed within the internal subnet).
    pub(crate) fn local_hairpin_target(&self, s: &Settings, proto: Protocol, external: Outside) -> Option<Inside> {
        if let Some(ik) = owner(s, proto, external) {
            if let Some(m) = self.table.by_internal.read(ik).get(&ik) {
                return Some(m.inside());
            }
        }
        s.static_owner(proto, external.0, external.1).map(|sm| Inside(u32::from(sm.internal_address), sm.internal_port))
    }

    /// Whether an external endpoint leads to an internal one (a mapping or a static mapping).
    pub(crate) fn is_mapped(&self, s: &Settings, proto: Protocol, external: Outside) -> bool {
        owner(s, proto, external).is_some()
            || (proto != Protocol::Icmp && s.static_owner(proto, external.0, external.1).is_some())
    }

    /// The session an inbound ICMP error refers to (its embedded packet went out from
    /// `external` to `remote`), looked up without refreshing it (RFC 5508 REQ-6): the internal
    /// endpoint to send the error to.
    pub(crate) fn session_for_inbound_error(
        &self,
        s: &Settings,
        now: Instant,
        proto: Protocol,
        external: Outside,
        remote: Remote,
    ) -> Option<Inside> {
        let ik = owner(s, proto, external)?;
        let shard = self.table.by_internal.read(ik);
        let m = shard.get(&ik).filter(|m| m.outside() == external)?;
        m.session(remote.0, remote.1)?.is_alive(proto, now, &s.config.timeouts).then(|| m.inside())
    }

    /// The session an outbound ICMP error refers to (its embedded packet came in from
    /// `remote` to `internal`), looked up without refreshing it: the external endpoint the
    /// remote knows.
    pub(crate) fn session_for_outbound_error(
        &self,
        s: &Settings,
        now: Instant,
        proto: Protocol,
        internal: Inside,
        remote: Remote,
    ) -> Option<Outside> {
        let ik = key(proto, internal.0, internal.1);
        let shard = self.table.by_internal.read(ik);
        let m = shard.get(&ik)?;
        m.session(remote.0, remote.1)?.is_alive(proto, now, &s.config.timeouts).then(|| m.outside())
    }
}

/// The event of a new session refused for `reason`, if it is one that has an event (the
/// port range or a limit).
fn refusal_event(reason: DropReason) -> Option<EventKind> {
    match reason {
        DropReason::PortsExhausted => Some(EventKind::PortsExhausted),
        DropReason::SessionLimit | DropReason::HostSessionLimit | DropReason::InboundSessionLimit => {
            Some(EventKind::LimitReached(reason))
        }
        _ => None,
    }
}

/// What an inbound packet on a live session refreshes: TCP state and the idle timer (an
/// out-of-window RST or FIN refreshes nothing and is refused), the UDP idle timer if so
/// configured (ICMP query sessions are refreshed by outbound only).
#[inline(always)]
fn inbound_refresh(
    s: &Settings,
    sess: &Session,
    proto: Protocol,
    seg: TcpSegment,
    now: Instant,
) -> Result<(), DropReason> {
    match proto {
        Protocol::Tcp => sess.on_packet(proto, false, seg, now)?,
        Protocol::Udp if s.config.udp_inbound_refresh => {
            sess.refresh(now);
            sess.count(false, seg.ip_len);
        }
        _ => sess.count(false, seg.ip_len),
    }
    Ok(())
}

/// The inbound-opened sessions `m` would hold once `remote` (with no live session) has one.
fn inbound_after(m: &Mapping, remote: Remote) -> usize {
    let replaced = m.session(remote.0, remote.1).is_some_and(|x| x.opened_inbound());
    (m.inbound_sessions - u32::from(replaced)) as usize + 1
}

/// The internal key of the mapping that owns an external endpoint, if any.
fn owner(s: &Settings, proto: Protocol, external: Outside) -> Option<u64> {
    s.external(external.0)?.ports.owner(proto, external.1)
}

/// Claims an external endpoint for the mapping of internal key `ik`. Called with `ik`'s
/// `by_internal` shard locked (vacant entry), so no reader can see the claim before the
/// mapping exists.
fn claim(s: &Settings, ik: u64, proto: Protocol, external: Outside) -> bool {
    s.external(external.0).is_some_and(|e| e.ports.claim(proto, external.1, ik))
}

/// The external address a static mapping's internal endpoint uses outbound: the mapping's own,
/// or for 0.0.0.0 (any) the address the host's sessions use.
fn static_external_addr(s: &Settings, sm: &StaticMapping, internal: u32) -> Option<u32> {
    if sm.external_address.is_unspecified() {
        s.external_for(internal).map(|e| e.addr)
    } else {
        Some(u32::from(sm.external_address))
    }
}
