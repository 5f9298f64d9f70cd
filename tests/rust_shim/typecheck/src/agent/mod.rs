//! Mirrors what generated samplers reach through `use crate::agent::*;` in
//! Rezolus' `src/agent/mod.rs`: `Config`, `SamplerResult`, `SAMPLERS`, the
//! `bpf` glob (`BpfBuilder`, `BpfProgStats`, `SkelExt`, `OpenSkelExt`),
//! `kernel_has_btf`, `MAX_CPUS`, and the crate root's `debug!` and
//! `distributed_slice` through `use super::*;`.

use super::*;

mod config;
mod samplers;
mod timing;

use config::Config;
use samplers::{SamplerResult, SAMPLERS};

#[cfg(target_os = "linux")]
mod bpf;

#[cfg(target_os = "linux")]
use bpf::*;

#[cfg(target_os = "linux")]
pub use bpf::kernel_has_btf;

// This is the maximum number of CPUs we track with BPF counters.
pub const MAX_CPUS: usize = 1024;

/// The part of Rezolus' `agent::run` that touches the registries: every
/// sampler's `init`, then every declared acquisition group.
pub fn run() -> usize {
    let config: Arc<Config> = Arc::new(Config::load_default());
    #[cfg(target_os = "linux")]
    debug!("kernel BTF: {}", kernel_has_btf());
    let mut samplers = Vec::new();
    for entry in SAMPLERS {
        match (entry.init)(config.clone()) {
            Ok(Some(s)) => {
                debug!(
                    "{} ({}) initialized as {}",
                    entry.name,
                    entry.module,
                    s.name()
                );
                samplers.push(s);
            }
            Ok(None) => debug!("{} disabled", entry.name),
            Err(e) => debug!("{} failed: {e}", entry.name),
        }
    }
    for group in samplers::ACQUISITION_GROUPS {
        debug!("acquisition group {}/{}", group.sampler(), group.name());
    }
    samplers.len()
}
