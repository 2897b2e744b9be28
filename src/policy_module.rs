//! WASM filtering policy modules: a `.wasm` or `.wat` file that decides which unsolicited
//! inbound packets may pass an existing mapping, run in a sandbox (no imports, so no I/O; a
//! fuel budget per call; bounded memory). The ABI is in docs/policy-modules.md; in short,
//! version 1:
//!
//! ```text
//! (func (export "netnat_abi_version") (result i32))      ;; returns 1
//! (func (export "netnat_inbound")
//!   (param $protocol i32)                                  ;; 6 TCP, 17 UDP
//!   (param $remote_addr i32) (param $remote_port i32)     ;; addresses as u32, 198.51.100.7 = 0xc6336407
//!   (param $internal_addr i32) (param $internal_port i32)
//!   (param $external_addr i32) (param $external_port i32)
//!   (param $flags i32)                                     ;; bit 0 new session, 1 sent to the address,
//!                                                          ;; 2 sent to the endpoint, 8-15 TCP flags
//!   (param $now_ms i64)                                    ;; packet time (capture time in replay)
//!   (result i32))                                          ;; 0 fall back, 1 allow, 2 deny, 3 rate-limited
//! (func (export "netnat_outbound")                         ;; optional: may this endpoint get a new mapping?
//!   (param $protocol i32) (param $internal_addr i32) (param $internal_port i32)
//!   (param $remote_addr i32) (param $remote_port i32) (param $tcp_flags i32) (param $now_ms i64)
//!   (result i32))                                          ;; 0 fall back (allow, as WinNAT), 1 allow, 2 deny, 3 rate-limited
//! ```
//!
//! The engine asks a policy only about a remote without a live session on the mapping (the
//! first packet of each inbound session), so a decision is made once per session and
//! established packets never reach the module. The module may keep state in its globals and
//! memory; calls are serialised, and in replay they come in capture order, so a replay is
//! deterministic. A call that traps, runs out of fuel or returns another value is an error:
//! counted, and handled as the policy file says (`on_error = "deny"` refuses the packet as
//! `policy_failed`; `"fallback"` lets the NAT's filtering behaviour decide). An error never
//! takes the NAT down.
//!
//! Runtime: wasmi, an interpreter in pure Rust (18 crates, 36 s to build here; about 70 ns a
//! call), rather than wasmtime (about 400 crates with cranelift). BENCHMARKS.md has the
//! measurements.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use netnat_engine::filter::builtin;
use netnat_engine::{FilteringBehavior, FilteringPolicy, InboundContext, OutboundContext, Protocol, Refusal};
use parking_lot::Mutex;
use wasmi::{Config, Engine, Linker, Module, Store, StoreLimits, StoreLimitsBuilder, TypedFunc};

/// The ABI version this netnat speaks.
pub const ABI_VERSION: i32 = 1;

/// Default fuel per decision (wasmi charges about one unit per instruction).
pub const DEFAULT_FUEL_PER_CALL: u64 = 100_000;

/// Largest module file accepted.
pub const MAX_MODULE_BYTES: u64 = 4 * 1024 * 1024;

/// Most linear memory a module may grow to.
pub const MAX_MEMORY_BYTES: usize = 16 * 1024 * 1024;

/// What a decision that fails (trap, out of fuel, unknown answer) turns into.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnError {
    /// Refuse the packet, counted as `policy_failed`.
    #[default]
    Deny,
    /// Let the NAT's filtering behaviour decide.
    Fallback,
}

impl std::str::FromStr for OnError {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "deny" => Ok(OnError::Deny),
            "fallback" => Ok(OnError::Fallback),
            _ => Err(format!("\"on_error\" is {s:?}; give \"deny\" or \"fallback\"")),
        }
    }
}

/// A module to load, and how to run it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleSpec {
    /// The file, as it was named (for messages).
    pub file: String,
    /// The module: WASM binary, or WAT text.
    pub bytes: Vec<u8>,
    /// What a failed decision turns into.
    pub on_error: OnError,
    /// Fuel per decision.
    pub fuel_per_call: u64,
}

impl ModuleSpec {
    /// Reads a module file with the default settings.
    pub fn read(path: &Path, on_error: OnError, fuel_per_call: u64) -> anyhow::Result<ModuleSpec> {
        let file = path.display().to_string();
        let len = std::fs::metadata(path)
            .map_err(|e| anyhow::anyhow!("{file}: cannot read the policy module: {e}; check the path"))?
            .len();
        if len > MAX_MODULE_BYTES {
            anyhow::bail!("{file}: the module has {len} bytes; a policy module has at most {MAX_MODULE_BYTES}");
        }
        let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{file}: cannot read the policy module: {e}"))?;
        Ok(ModuleSpec { file, bytes, on_error, fuel_per_call })
    }

    /// As the control protocol and the state file carry it.
    pub fn to_source(&self) -> crate::control::protocol::ModuleSource {
        use base64::Engine as _;
        crate::control::protocol::ModuleSource {
            base64: base64::engine::general_purpose::STANDARD.encode(&self.bytes),
            on_error: match self.on_error {
                OnError::Deny => "deny",
                OnError::Fallback => "fallback",
            }
            .to_owned(),
            fuel_per_call: self.fuel_per_call,
        }
    }

    /// Back from [`ModuleSpec::to_source`]; `file` names it in errors.
    pub fn from_source(file: &str, source: &crate::control::protocol::ModuleSource) -> anyhow::Result<ModuleSpec> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&source.base64)
            .map_err(|e| anyhow::anyhow!("{file}: the module's bytes are not base64: {e}"))?;
        let on_error = source.on_error.parse().map_err(|e: String| anyhow::anyhow!("{file}: {e}"))?;
        anyhow::ensure!(source.fuel_per_call > 0, "{file}: \"fuel_per_call\" is 0; give a positive budget");
        Ok(ModuleSpec { file: file.to_owned(), bytes, on_error, fuel_per_call: source.fuel_per_call })
    }

    /// Whether a path names a module (`.wasm`, `.wat`) rather than a policy file.
    pub fn is_module_path(path: &Path) -> bool {
        matches!(path.extension().and_then(|e| e.to_str()), Some("wasm" | "wat"))
    }
}

type InboundFn = TypedFunc<(i32, i32, i32, i32, i32, i32, i32, i32, i64), i32>;
type OutboundFn = TypedFunc<(i32, i32, i32, i32, i32, i32, i64), i32>;

struct Running {
    store: Store<StoreLimits>,
    inbound: InboundFn,
    /// `netnat_outbound`, if the module exports it (without it, every new mapping is allowed).
    outbound: Option<OutboundFn>,
}

/// A loaded module as the engine's filtering policy, for TCP and UDP (one instance, so its
/// state is shared by both).
pub struct ModulePolicy {
    file: String,
    running: Mutex<Running>,
    /// The NAT's configured behaviour per protocol: [TCP, UDP].
    fallback: [Arc<dyn FilteringPolicy>; 2],
    on_error: OnError,
    fuel_per_call: u64,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl fmt::Debug for ModulePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModulePolicy")
            .field("file", &self.file)
            .field("on_error", &self.on_error)
            .field("fuel_per_call", &self.fuel_per_call)
            .field("errors", &self.errors())
            .finish_non_exhaustive()
    }
}

/// The answers of `netnat_inbound`.
const FALLBACK: i32 = 0;
const ALLOW: i32 = 1;
const DENY: i32 = 2;
const RATE_LIMITED: i32 = 3;

/// Bits of `netnat_inbound`'s `flags`.
const NEW_SESSION: i32 = 1;
const SENT_TO_ADDRESS: i32 = 2;
const SENT_TO_ENDPOINT: i32 = 4;

impl ModulePolicy {
    /// Compiles and instantiates `spec` (its start function runs, with ten calls' fuel);
    /// `tcp` and `udp` are the NAT's filtering behaviours, for "fall back".
    pub fn load(spec: &ModuleSpec, tcp: FilteringBehavior, udp: FilteringBehavior) -> anyhow::Result<ModulePolicy> {
        let file = &spec.file;
        let mut config = Config::default();
        config.consume_fuel(true);
        let engine = Engine::new(&config);
        let module = Module::new(&engine, &spec.bytes[..])
            .map_err(|e| anyhow::anyhow!("{file}: not a valid WASM module (binary or text): {e}"))?;
        let imports: Vec<String> = module.imports().map(|i| format!("{}.{}", i.module(), i.name())).collect();
        if !imports.is_empty() {
            anyhow::bail!(
                "{file}: the module imports {}; a policy module runs without I/O and may import nothing",
                imports.join(", ")
            );
        }
        let limits = StoreLimitsBuilder::new().memory_size(MAX_MEMORY_BYTES).instances(1).build();
        let mut store = Store::new(&engine, limits);
        store.limiter(|l| l);
        store.set_fuel(spec.fuel_per_call.saturating_mul(10)).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        let instance = <Linker<StoreLimits>>::new(&engine)
            .instantiate_and_start(&mut store, &module)
            .map_err(|e| anyhow::anyhow!("{file}: the module's start failed: {e}"))?;
        let version = instance
            .get_typed_func::<(), i32>(&store, "netnat_abi_version")
            .map_err(|e| anyhow::anyhow!("{file}: the module must export `netnat_abi_version: () -> i32`: {e}"))?;
        store.set_fuel(spec.fuel_per_call).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        let v =
            version.call(&mut store, ()).map_err(|e| anyhow::anyhow!("{file}: `netnat_abi_version` failed: {e}"))?;
        if v != ABI_VERSION {
            anyhow::bail!("{file}: the module speaks ABI version {v}; this netnat speaks version {ABI_VERSION}");
        }
        let inbound = instance.get_typed_func(&store, "netnat_inbound").map_err(|e| {
            anyhow::anyhow!(
                "{file}: the module must export `netnat_inbound: (i32, i32, i32, i32, i32, i32, i32, i32, i64) -> i32` \
                 (docs/policy-modules.md): {e}"
            )
        })?;
        let outbound = match instance.get_export(&store, "netnat_outbound") {
            None => None,
            Some(_) => Some(instance.get_typed_func(&store, "netnat_outbound").map_err(|e| {
                anyhow::anyhow!(
                    "{file}: the module's `netnat_outbound` must be `(i32, i32, i32, i32, i32, i32, i64) -> i32` \
                     (docs/policy-modules.md): {e}"
                )
            })?),
        };
        Ok(ModulePolicy {
            file: file.clone(),
            running: Mutex::new(Running { store, inbound, outbound }),
            fallback: [builtin(tcp), builtin(udp)],
            on_error: spec.on_error,
            fuel_per_call: spec.fuel_per_call,
            errors: AtomicU64::new(0),
            last_error: Mutex::new(None),
        })
    }

    /// Decisions that failed so far (trapped, out of fuel, unknown answer).
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// The newest failure, as text.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    /// The file the module came from.
    pub fn file(&self) -> &str {
        &self.file
    }

    fn fallback(&self, ctx: &InboundContext<'_>) -> Result<(), Refusal> {
        let i = usize::from(ctx.protocol == Protocol::Udp);
        self.fallback[i].check(ctx)
    }

    fn ask(&self, ctx: &InboundContext<'_>) -> Result<i32, String> {
        let mut flags = i32::from(ctx.tcp_flags) << 8;
        if ctx.new_session {
            flags |= NEW_SESSION;
        }
        if ctx.has_sent_to_address(*ctx.remote.ip()) {
            flags |= SENT_TO_ADDRESS;
        }
        if ctx.has_sent_to_endpoint(ctx.remote) {
            flags |= SENT_TO_ENDPOINT;
        }
        let addr = |a: std::net::Ipv4Addr| u32::from(a) as i32;
        let args = (
            i32::from(ctx.protocol.number()),
            addr(*ctx.remote.ip()),
            i32::from(ctx.remote.port()),
            addr(*ctx.internal.ip()),
            i32::from(ctx.internal.port()),
            addr(*ctx.external.ip()),
            i32::from(ctx.external.port()),
            flags,
            (ctx.now.as_micros() / 1000) as i64,
        );
        let mut running = self.running.lock();
        let Running { store, inbound, .. } = &mut *running;
        store.set_fuel(self.fuel_per_call).map_err(|e| e.to_string())?;
        inbound.call(store, args).map_err(|e| e.to_string())
    }

    /// Asks `netnat_outbound`; `None` when the module does not export it.
    fn ask_outbound(&self, ctx: &OutboundContext) -> Option<Result<i32, String>> {
        let addr = |a: std::net::Ipv4Addr| u32::from(a) as i32;
        let args = (
            i32::from(ctx.protocol.number()),
            addr(*ctx.internal.ip()),
            i32::from(ctx.internal.port()),
            addr(*ctx.remote.ip()),
            i32::from(ctx.remote.port()),
            i32::from(ctx.tcp_flags),
            (ctx.now.as_micros() / 1000) as i64,
        );
        let mut running = self.running.lock();
        let Running { store, outbound, .. } = &mut *running;
        let f = outbound.as_ref()?;
        Some(
            store
                .set_fuel(self.fuel_per_call)
                .map_err(|e| e.to_string())
                .and_then(|()| f.call(store, args).map_err(|e| e.to_string())),
        )
    }

    /// A module's answer as a decision: `fallback` for 0 (and for a failure under `on_error =
    /// "fallback"`); a failure is counted.
    fn decide(
        &self,
        answer: Result<i32, String>,
        fallback: impl FnOnce() -> Result<(), Refusal>,
    ) -> Result<(), Refusal> {
        let failure = match answer {
            Ok(ALLOW) => return Ok(()),
            Ok(DENY) => return Err(Refusal::Denied),
            Ok(RATE_LIMITED) => return Err(Refusal::RateLimited),
            Ok(FALLBACK) => return fallback(),
            Ok(other) => format!("the module returned {other}; the answers are 0 (fall back), 1, 2 and 3"),
            Err(trap) => trap,
        };
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock() = Some(failure);
        match self.on_error {
            OnError::Deny => Err(Refusal::Failed),
            OnError::Fallback => fallback(),
        }
    }
}

impl FilteringPolicy for ModulePolicy {
    fn admit(&self, ctx: &InboundContext<'_>) -> bool {
        self.check(ctx).is_ok()
    }

    fn check(&self, ctx: &InboundContext<'_>) -> Result<(), Refusal> {
        self.decide(self.ask(ctx), || self.fallback(ctx))
    }

    fn new_mapping(&self, ctx: &OutboundContext) -> Result<(), Refusal> {
        match self.ask_outbound(ctx) {
            None => Ok(()),
            // Falling back is WinNAT's behaviour: every endpoint gets a mapping.
            Some(answer) => self.decide(answer, || Ok(())),
        }
    }
}

#[cfg(test)]
mod tests;
