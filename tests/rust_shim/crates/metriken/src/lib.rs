//! Stand-in for the metriken 0.10 items Rezolus' BPF sampler `stats.rs` names:
//! `metric`, `Counter`, `LazyCounter`, `CounterGroup`, `RwLockHistogram` (and
//! the `Metric` trait the real `#[metric]` requires of a static's type).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};

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

/// metriken 0.10.1's histogram for bulk updates from pre-aggregated buckets (a
/// BPF map): `const fn new(grouping_power: u8, max_value_power: u8)` builds the
/// histogram crate's `Config` and panics on parameters `Config::new` refuses, so
/// in a `static` initializer a bad pair is a compile-time error, as with the real
/// crate. `update_from` takes exactly `total_buckets()` values.
pub struct RwLockHistogram {
    grouping_power: u8,
    max_value_power: u8,
    buckets: RwLock<Vec<u64>>,
}

impl RwLockHistogram {
    pub const fn new(grouping_power: u8, max_value_power: u8) -> Self {
        if max_value_power > 64 || grouping_power >= max_value_power {
            panic!("invalid histogram config");
        }
        Self {
            grouping_power,
            max_value_power,
            buckets: RwLock::new(Vec::new()),
        }
    }

    /// histogram 1.x `Config::total_buckets`: 2^(g+1) linear buckets, then
    /// 2^g per power of two up to `max_value_power`.
    pub fn total_buckets(&self) -> usize {
        let (g, m) = (self.grouping_power as usize, self.max_value_power as usize);
        (1 << (g + 1)) + (m - g - 1) * (1 << g)
    }

    pub fn update_from(&self, data: &[u64]) -> Result<(), HistogramError> {
        if data.len() != self.total_buckets() {
            return Err(HistogramError::IncompatibleParameters);
        }
        *self.buckets.write().unwrap() = data.to_vec();
        Ok(())
    }
}

/// The `histogram::Error` variant `update_from` returns.
#[derive(Debug)]
pub enum HistogramError {
    IncompatibleParameters,
}

impl Metric for Counter {}
impl Metric for LazyCounter {}
impl Metric for CounterGroup {}
impl Metric for RwLockHistogram {}

#[doc(hidden)]
pub mod __private {
    /// Emitted by `#[metric]`: the static's type must be a metric.
    pub fn assert_metric<T: super::Metric>(_: &'static T) {}
}
