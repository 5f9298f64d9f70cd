//! `AcquisitionGroup` from Rezolus' `src/agent/timing.rs`: declared in a
//! sampler's `stats.rs` as a `static` (so `Sync`, no `PartialEq`), built by
//! the `pub(crate) const fn new(sampler: &'static str, name: &'static str)`.

use std::sync::atomic::{AtomicUsize, Ordering};

pub struct AcquisitionGroup {
    sampler: &'static str,
    name: &'static str,
    member_bound: AtomicUsize,
}

impl AcquisitionGroup {
    pub(crate) const fn new(sampler: &'static str, name: &'static str) -> Self {
        Self {
            sampler,
            name,
            member_bound: AtomicUsize::new(0),
        }
    }

    pub fn sampler(&self) -> &'static str {
        self.sampler
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn bind(&self, members: usize) {
        self.member_bound.fetch_add(members, Ordering::Relaxed);
    }
}
