// The source keys of the trainer's caches, shared by build.rs (which computes them at build
// time) and the trainer's tests (which check what changes them). Plain functions: this file
// is `include!`d, not a module.

/// A 16-hex-digit BLAKE3 key of every `.rs` file under `src` (names and contents, in name
/// order), skipping the directories in `skip`, and of `lock` (the workspace's `Cargo.lock`,
/// whose crate versions change rounding) when it exists. Calls `seen` with each path read.
pub fn source_key(
    src: &std::path::Path,
    skip: &[&std::path::Path],
    lock: &std::path::Path,
    seen: &mut dyn FnMut(&std::path::Path),
) -> String {
    fn collect(
        dir: &std::path::Path,
        skip: &[&std::path::Path],
        files: &mut Vec<std::path::PathBuf>,
        seen: &mut dyn FnMut(&std::path::Path),
    ) {
        seen(dir);
        for entry in std::fs::read_dir(dir).expect("a source directory").flatten() {
            let path = entry.path();
            if path.is_dir() {
                if !skip.iter().any(|s| path.ends_with(s)) {
                    collect(&path, skip, files, seen);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    collect(src, skip, &mut files, seen);
    files.sort();
    let mut hasher = blake3::Hasher::new();
    for file in &files {
        seen(file);
        let name = file.strip_prefix(src).unwrap_or(file);
        hasher.update(name.to_string_lossy().as_bytes());
        hasher.update(&std::fs::read(file).expect("a source file"));
    }
    seen(lock);
    if let Ok(lock) = std::fs::read(lock) {
        hasher.update(b"Cargo.lock");
        hasher.update(&lock);
    }
    hasher.finalize().to_hex()[..16].to_string()
}
