//! With the `tch` feature, embeds an rpath to the libtorch that torch-sys linked against into this
//! crate's tests, benches and examples, so they run without `LD_LIBRARY_PATH`.
fn main() {
    // torch-sys declares `links = "tch"` and exports its library directory as `libtorch_lib`.
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        // Every target this crate links (the library itself links nothing).
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
