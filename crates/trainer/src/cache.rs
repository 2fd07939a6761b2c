//! Models trained once and kept on disk under the hash of everything that shaped them (the
//! miniature's aligned base, an aligned checkpoint): written whole or not at all, and made by
//! one process while the others that ask at the same time wait for it.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::Duration;

use burn::prelude::*;
use burn::store::{BurnpackStore, ModuleSnapshot};

use crate::model::Lm;
use crate::report::TrialReport;

/// The base model (its cache, or a saved file) cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("base model {0}: {1}")]
pub struct CacheError(pub PathBuf, pub String);

/// The model cached at `path`, or the one `make` trains (`doing` it, as the log says), written
/// there whole first. A lock
/// file beside it makes processes that ask at the same time wait for one of them to train
/// it instead of each doing so.
pub fn cached(
    path: &Path,
    doing: &str,
    load: impl Fn(&Path) -> Result<Lm, String>,
    report: &mut dyn FnMut(TrialReport),
    make: impl FnOnce(&mut dyn FnMut(TrialReport)) -> Result<Lm, CacheError>,
) -> Result<Lm, CacheError> {
    let cache_err = |e: String| CacheError(path.to_path_buf(), e);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| cache_err(e.to_string()))?;
    }
    let lock = path.with_extension("lock");
    loop {
        if path.exists() {
            return load(path)
                .map_err(|e| cache_err(format!("cannot load ({e}); delete the file to retrain")));
        }
        match OpenOptions::new().write(true).create_new(true).open(&lock) {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if lock_is_stale(&lock) {
                    let _ = std::fs::remove_file(&lock);
                    continue;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(cache_err(e.to_string())),
        }
    }
    let _ = std::fs::write(&lock, std::process::id().to_string());
    report(TrialReport::Note(format!(
        "{doing} (cached as {})",
        path.display()
    )));
    let made = make(report);
    let saved = made.and_then(|model| {
        write_whole(&model, path).map_err(cache_err)?;
        Ok(model)
    });
    let _ = std::fs::remove_file(&lock);
    saved
}

/// The kind of `device` (`Cpu`, `Cuda`), without its index: float rounding differs between
/// kinds, not between two devices of one kind.
pub fn device_kind(device: &Device) -> String {
    format!("{device:?}")
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .collect()
}

/// Writes `model` to `path` through a temporary file renamed into place, so a reader never
/// sees half a model.
pub fn write_whole(model: &Lm, path: &Path) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    model
        .save_into(&mut BurnpackStore::from_file(&tmp))
        .map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}

/// A lock whose writer process is gone (it crashed while training).
fn lock_is_stale(lock: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(lock) else {
        return false;
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        // Written but not yet filled in: give the writer a moment.
        return std::fs::metadata(lock)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(30));
    };
    !Path::new("/proc").join(pid.to_string()).exists() && Path::new("/proc/self").exists()
}
