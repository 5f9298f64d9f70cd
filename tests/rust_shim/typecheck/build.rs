//! Copies `$CARGO_MANIFEST_DIR/generated/*.bpf.rs` (the fake libbpf-cargo
//! skeletons) into `OUT_DIR`, where Rezolus' own build.rs leaves the real
//! ones for the samplers' `include!(concat!(env!("OUT_DIR"), ...))`.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let generated = manifest.join("generated");
    println!("cargo:rerun-if-changed={}", generated.display());
    println!("cargo::rustc-check-cfg=cfg(shim_no_samplers)");
    let mut skeletons = 0;
    if let Ok(entries) = std::fs::read_dir(&generated) {
        for entry in entries {
            let path = entry.unwrap().path();
            println!("cargo:rerun-if-changed={}", path.display());
            let name = path.file_name().unwrap().to_owned();
            std::fs::copy(&path, out.join(name)).unwrap();
            skeletons += 1;
        }
    }
    if skeletons == 0 {
        // Built alone: no sampler uses the shim, so most of it is unused.
        println!("cargo:rustc-cfg=shim_no_samplers");
    }
}
