//! Rezolus' `src/agent/bpf/mod.rs`: `BpfBuilder` (re-exported `Builder`),
//! `BpfProgStats`, `kernel_has_btf`, the `OpenSkelExt`/`SkelExt` traits a
//! generated `mod.rs` implements, and `AsyncBpf: Sampler`.

mod builder;

pub use builder::BpfProgStats;
pub use builder::Builder as BpfBuilder;

use std::path::Path;
use std::sync::OnceLock;

use crate::agent::samplers::Sampler;

/// Returns true if the running kernel exposes its own BTF.
pub fn kernel_has_btf() -> bool {
    static HAS_BTF: OnceLock<bool> = OnceLock::new();
    *HAS_BTF.get_or_init(|| Path::new("/sys/kernel/btf/vmlinux").exists())
}

pub trait OpenSkelExt {
    /// When called, the SkelBuilder should log instruction counts for each of
    /// the programs within the skeleton. Log level should be debug.
    fn log_prog_instructions(&self);
}

pub trait SkelExt {
    fn map(&self, name: &str) -> &libbpf_rs::Map<'_>;
}

pub struct AsyncBpf {
    name: &'static str,
}

impl Sampler for AsyncBpf {
    fn name(&self) -> &'static str {
        self.name
    }
}
