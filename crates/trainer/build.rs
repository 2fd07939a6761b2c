//! Two jobs. With the `tch` feature, embeds an rpath to the libtorch that torch-sys linked
//! against into this crate's tests, benches and examples, so they run without
//! `LD_LIBRARY_PATH`. And hashes the trainer's own source, with the workspace's `Cargo.lock`
//! (burn's version changes rounding), into two cache keys, so a change to the code that
//! makes a cached model retrains it without anyone remembering to bump a version string:
//! `SWEEP_TRAINER_SOURCE` for the miniature's base, which never runs through `src/hf/`, and
//! `SWEEP_CHECKPOINT_SOURCE`, all of it, for an aligned checkpoint, which `src/hf/` loads,
//! templates and runs.
use std::path::Path;

include!("build/source_key.rs");

fn main() {
    // torch-sys declares `links = "tch"` and exports its library directory as `libtorch_lib`.
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        // Every target this crate links (the library itself links nothing).
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    let lock = Path::new("../../Cargo.lock");
    let mut watch = |path: &Path| println!("cargo:rerun-if-changed={}", path.display());
    let miniature = source_key(Path::new("src"), &[Path::new("hf")], lock, &mut watch);
    let checkpoint = source_key(Path::new("src"), &[], lock, &mut watch);
    println!("cargo:rustc-env=SWEEP_TRAINER_SOURCE={miniature}");
    println!("cargo:rustc-env=SWEEP_CHECKPOINT_SOURCE={checkpoint}");
}
