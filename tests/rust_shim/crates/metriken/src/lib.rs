//! Stand-in for the metriken 0.10 items Rezolus' BPF sampler `stats.rs` names:
//! `metric`, `Counter`, `LazyCounter`, `CounterGroup` (and the `Metric`
//! trait the real `#[metric]` requires of a static's type).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

pub use shim_macros::metric;

/// A type `#[metric]` may be applied to.
pub trait Metric: Send + Sync + 'static {}

/// A monotonic counter.
#[derive(Default)]
pub struct Counter {
    value: AtomicU64,
}

impl Counter {
    pub fn value(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }

    pub fn set(&self, value: u64) -> u64 {
        self.value.swap(value, Ordering::Relaxed)
    }
}

/// A counter initialised on first use: `LazyCounter::new(Counter::default)`.
pub struct LazyCounter {
    init: fn() -> Counter,
    cell: OnceLock<Counter>,
}

impl LazyCounter {
    pub const fn new(f: fn() -> Counter) -> Self {
        Self {
            init: f,
            cell: OnceLock::new(),
        }
    }

    pub fn get(&self) -> &Counter {
        self.cell.get_or_init(self.init)
    }
}

/// A fixed number of counters, one per entry (Rezolus: one per CPU).
pub struct CounterGroup {
    entries: usize,
}

impl CounterGroup {
    pub const fn new(entries: usize) -> Self {
        Self { entries }
    }

    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

impl Metric for Counter {}
impl Metric for LazyCounter {}
impl Metric for CounterGroup {}

#[doc(hidden)]
pub mod __private {
    /// Emitted by `#[metric]`: the static's type must be a metric.
    pub fn assert_metric<T: super::Metric>(_: &'static T) {}
}
