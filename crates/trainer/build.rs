//! Two jobs. With the `tch` feature, embeds an rpath to the libtorch that torch-sys linked
//! against into this crate's tests, benches and examples, so they run without
//! `LD_LIBRARY_PATH`. And hashes the trainer's own source into `SWEEP_TRAINER_SOURCE`, part of the base model's cache
//! key: a change to the code that trains or scores the base retrains it, without anyone
//! remembering to bump a version string. `src/hf/` is left out: the built-in base model never
//! runs through it.
use std::path::Path;

fn main() {
    // torch-sys declares `links = "tch"` and exports its library directory as `libtorch_lib`.
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        // Every target this crate links (the library itself links nothing).
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    let mut files = Vec::new();
    collect(Path::new("src"), &mut files);
    files.sort();
    let mut hasher = blake3::Hasher::new();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        hasher.update(file.to_string_lossy().as_bytes());
        hasher.update(&std::fs::read(file).expect("a source file of this crate"));
    }
    println!(
        "cargo:rustc-env=SWEEP_TRAINER_SOURCE={}",
        &hasher.finalize().to_hex()[..16]
    );
}

fn collect(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    println!("cargo:rerun-if-changed={}", dir.display());
    for entry in std::fs::read_dir(dir)
        .expect("the crate's src directory")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            if path != Path::new("src/hf") {
                collect(&path, files);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}
