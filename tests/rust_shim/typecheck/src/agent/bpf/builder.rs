//! `Builder` from Rezolus' `src/agent/bpf/builder.rs`, with the real generic
//! bounds and the signatures of the registration methods generated samplers
//! call. `build` walks the same skeleton path as the real one (open, load,
//! `log_prog_instructions`, `SkelExt::map` per registered map, attach) so the
//! bounds are exercised, without touching the kernel.

use super::*;
use crate::agent::*;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::OpenObject;
use metriken::{CounterGroup, LazyCounter, RwLockHistogram};

use crate::agent::timing::AcquisitionGroup;

use std::collections::HashSet;
use std::mem::MaybeUninit;

pub struct BpfProgStats {
    pub run_time: &'static LazyCounter,
    pub run_count: &'static LazyCounter,
}

pub struct Builder<T: 'static + SkelBuilder<'static>> {
    name: &'static str,
    skel: fn() -> T,
    prog_stats: BpfProgStats,
    counters: Vec<(
        &'static str,
        Vec<&'static LazyCounter>,
        &'static AcquisitionGroup,
    )>,
    maps: Vec<(&'static str, Vec<u64>)>,
    cpu_counters: Vec<(
        &'static str,
        Vec<&'static CounterGroup>,
        &'static AcquisitionGroup,
    )>,
    packed_counters: Vec<(
        &'static str,
        &'static CounterGroup,
        &'static AcquisitionGroup,
    )>,
    histograms: Vec<(
        &'static str,
        &'static RwLockHistogram,
        &'static AcquisitionGroup,
    )>,
    btf_path: Option<String>,
    enabled_programs: Option<HashSet<&'static str>>,
    disabled_programs: Option<HashSet<&'static str>>,
}

impl<T: 'static> Builder<T>
where
    T: SkelBuilder<'static>,
    <<T as SkelBuilder<'static>>::Output as OpenSkel<'static>>::Output: OpenSkelExt,
    <<T as SkelBuilder<'static>>::Output as OpenSkel<'static>>::Output: SkelExt,
{
    pub fn new(
        config: &crate::agent::Config,
        name: &'static str,
        prog_stats: BpfProgStats,
        skel: fn() -> T,
    ) -> Self {
        Self {
            name,
            skel,
            prog_stats,
            counters: Vec::new(),
            maps: Vec::new(),
            cpu_counters: Vec::new(),
            packed_counters: Vec::new(),
            histograms: Vec::new(),
            btf_path: config.general().btf_path().map(|s| s.to_string()),
            enabled_programs: None,
            disabled_programs: None,
        }
    }

    pub fn build(self) -> Result<AsyncBpf, libbpf_rs::Error> {
        if let Some(ref btf_path) = self.btf_path {
            debug!("Loading BPF program with external BTF from: {}", btf_path);
        }
        let open_object: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let open_skel = (self.skel)().open(open_object)?;
        let mut skel = open_skel.load()?;
        skel.log_prog_instructions();

        for (name, counters, group) in &self.counters {
            group.bind(counters.len());
            debug!(
                "{} {} -> {}",
                self.name,
                skel.map(name).name(),
                counters.len()
            );
        }
        for (name, values) in &self.maps {
            debug!("{} {} <- {:?}", self.name, skel.map(name).name(), values);
        }
        for (name, counters, group) in &self.cpu_counters {
            group.bind(counters.len());
            debug!(
                "{} {} -> {}",
                self.name,
                skel.map(name).name(),
                counters.len()
            );
        }
        for (name, counters, group) in &self.packed_counters {
            group.bind(counters.len());
            debug!("{} {}", self.name, skel.map(name).name());
        }
        for (name, histogram, group) in &self.histograms {
            group.bind(1);
            let buckets = vec![0; histogram.total_buckets()];
            debug!(
                "{} {} -> {} buckets: {:?}",
                self.name,
                skel.map(name).name(),
                buckets.len(),
                histogram.update_from(&buckets)
            );
        }
        for program in self.enabled_programs.iter().flatten() {
            debug!("{} enables {program}", self.name);
        }
        for program in self.disabled_programs.iter().flatten() {
            debug!("{} disables {program}", self.name);
        }
        skel.attach()?;
        let _ = (
            self.prog_stats.run_time.get().value(),
            self.prog_stats.run_count.get().value(),
        );
        Ok(AsyncBpf { name: self.name })
    }

    pub fn counters(
        mut self,
        name: &'static str,
        counters: Vec<&'static LazyCounter>,
        group: &'static AcquisitionGroup,
    ) -> Self {
        self.counters.push((name, counters, group));
        self
    }

    /// Rezolus' signature: the BPF map name, its userspace histogram (same
    /// grouping and max value power as the BPF side), and the acquisition group
    /// every label instance of the family shares. Unused (and allowed to be)
    /// in a package whose samplers keep no histogram.
    #[allow(dead_code)]
    pub fn histogram(
        mut self,
        name: &'static str,
        histogram: &'static RwLockHistogram,
        group: &'static AcquisitionGroup,
    ) -> Self {
        self.histograms.push((name, histogram, group));
        self
    }

    // Rezolus has this registration method; no generated sampler calls it
    // (yet), and an unused method in the shim is not a finding.
    #[allow(dead_code)]
    pub fn map(mut self, name: &'static str, values: Vec<u64>) -> Self {
        self.maps.push((name, values));
        self
    }

    pub fn cpu_counters(
        mut self,
        name: &'static str,
        counters: Vec<&'static CounterGroup>,
        group: &'static AcquisitionGroup,
    ) -> Self {
        self.cpu_counters.push((name, counters, group));
        self
    }

    // Rezolus has this registration method; no generated sampler calls it
    // (yet), and an unused method in the shim is not a finding.
    #[allow(dead_code)]
    pub fn packed_counters(
        mut self,
        name: &'static str,
        counters: &'static CounterGroup,
        group: &'static AcquisitionGroup,
    ) -> Self {
        self.packed_counters.push((name, counters, group));
        self
    }

    // Rezolus has this registration method; no generated sampler calls it
    // (yet), and an unused method in the shim is not a finding.
    #[allow(dead_code)]
    pub fn enabled_programs(mut self, names: &[&'static str]) -> Self {
        self.enabled_programs = Some(names.iter().copied().collect());
        self
    }

    pub fn disabled_programs(mut self, names: &[&'static str]) -> Self {
        self.disabled_programs = Some(names.iter().copied().collect());
        self
    }
}
