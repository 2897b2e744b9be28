//! netnat's program as a library: the `netnat` binary (`src/main.rs`) is its command line,
//! and the benches drive the daemon's packet path ([`dataplane`]) and the WASM policy
//! modules ([`ModulePolicy`]) through the same code the program runs. Everything else is
//! private to the program.

mod cmdlets;
mod control;
mod daemon;
mod event_log;
mod ipfix;
mod platform;
mod policy_file;
mod policy_module;
mod replay;
mod state;

pub use cmdlets::{position_of_cmdlet, run as run_cmdlet};
pub use daemon::dataplane;
pub use daemon::{run as run_daemon, DaemonArgs};
pub use policy_module::{ModulePolicy, ModuleSpec, OnError, DEFAULT_FUEL_PER_CALL};
pub use replay::{run as run_replay, ReplayArgs};
