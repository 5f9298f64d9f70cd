//! Rezolus' `src/common/mod.rs`: the histogram grouping power every BPF
//! histogram uses (`pub static`, a `u8`, read by `RwLockHistogram::new` in the
//! samplers' static initializers).

// Only samplers that keep histograms name it.
#[allow(dead_code)]
pub static HISTOGRAM_GROUPING_POWER: u8 = 3;
