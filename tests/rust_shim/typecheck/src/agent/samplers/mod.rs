//! Rezolus' `src/agent/samplers/mod.rs`: `SamplerEntry`, the `SAMPLERS` and
//! `ACQUISITION_GROUPS` distributed slices (declared with the same syntax),
//! `bpf_sampler_name`, `Sampler` and `SamplerResult`. The test appends the
//! group modules (`mod scheduler;` ...) to its copy of this file and writes
//! each group's `mod.rs` and `linux/mod.rs` as Rezolus lays them out.

use crate::agent::Config;
use linkme::distributed_slice;
use std::sync::Arc;

/// A registered sampler: its stable name plus its init function.
pub struct SamplerEntry {
    pub name: &'static str,
    pub module: &'static str,
    pub init: fn(config: Arc<Config>) -> SamplerResult,
}

#[distributed_slice]
pub static SAMPLERS: [SamplerEntry] = [..];

/// Declared acquisition groups.
#[distributed_slice]
pub static ACQUISITION_GROUPS: [&'static crate::agent::timing::AcquisitionGroup] = [..];

#[cfg(target_os = "linux")]
pub(crate) const fn bpf_sampler_name(linux_name: &'static str) -> &'static str {
    linux_name
}

#[cfg(not(target_os = "linux"))]
pub(crate) const fn bpf_sampler_name(_linux_name: &'static str) -> &'static str {
    "unattributed"
}

/// Rezolus' trait is `#[async_trait]` with `async fn refresh(&self)`; the
/// type check only needs `AsyncBpf: Sampler` and the `Send + Sync` bound.
pub trait Sampler: Send + Sync {
    fn name(&self) -> &'static str;
}

pub type SamplerResult = anyhow::Result<Option<Box<dyn Sampler>>>;

// Group modules (appended by tests/test_rust_typecheck.py):
