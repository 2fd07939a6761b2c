//! With the `tch` feature, embeds an rpath to the libtorch that torch-sys linked against, so
//! `sweep` and its tests run without `LD_LIBRARY_PATH` and without build flags that would
//! invalidate the default build's artifacts (RUSTFLAGS would rebuild every crate).
fn main() {
    // torch-sys declares `links = "tch"` and exports its library directory as `libtorch_lib`.
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        // Every target: the binary, and the tests and benches that link the trainer too.
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
