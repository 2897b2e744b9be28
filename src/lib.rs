//! netnat's program as a library: the `netnat` binary (`src/main.rs`) is its command line,
//! and the benches drive the daemon's packet path ([`dataplane`]) through the same code the
//! daemon runs. Everything else is private to the program.

mod cmdlets;
mod control;
mod daemon;
mod platform;
mod policy_file;
mod policy_module;
mod replay;
mod state;

pub use cmdlets::{position_of_cmdlet, run as run_cmdlet};
pub use daemon::dataplane;
pub use daemon::{run as run_daemon, DaemonArgs};
pub use replay::{run as run_replay, ReplayArgs};
