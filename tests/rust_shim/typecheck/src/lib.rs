//! Crate root of the type-check crate (stands in for Rezolus' `src/main.rs`).
//!
//! Built alone (a workspace member) it checks the shim with no samplers.
//! tests/test_rust_typecheck.py copies this package, appends the rendered
//! samplers' group modules to `agent/samplers/mod.rs`, and puts the fake
//! libbpf-cargo skeletons in `generated/`, which `build.rs` copies into
//! `OUT_DIR` where the samplers' `mod.rs` files `include!` them from.
//!
//! Like Rezolus' `main.rs`, the root imports `distributed_slice` and
//! `debug`, which samplers reach through `use crate::agent::*;` (the agent
//! module starts with `use super::*;`).

// Only when built with no sampler (the workspace's own `cargo check`): then
// nothing calls the builder or the root's `debug`/`distributed_slice`
// imports. With samplers, every warning is an error (RUSTFLAGS=-D warnings).
#![cfg_attr(shim_no_samplers, allow(dead_code, unused_imports))]

use linkme::distributed_slice;
use std::sync::Arc;
use tracing::debug;

mod agent;
mod common;

/// Stands in for `main` running `agent::run`: everything a sampler registers
/// is reachable from here, so the dead-code lint applies to generated code.
pub fn run() -> usize {
    agent::run()
}
