//! Stable names for trials.
//!
//! A trial's key is the BLAKE3 hash of its canonical parameter JSON, so the same grid point
//! gets the same key in every run, on every machine, whatever order the grid file lists axes
//! in. That is what lets an interrupted or edited sweep pick up exactly where it stopped.

use std::fmt;

use crate::value::{params_to_json, Params};

/// The hash of a trial's canonical parameters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrialKey([u8; 32]);

impl TrialKey {
    /// Hashes the canonical JSON form of `params`.
    pub fn of(params: &Params) -> TrialKey {
        TrialKey::of_canonical(&params_to_json(params))
    }

    /// Hashes text already in canonical form (see [`params_to_json`]).
    pub fn of_canonical(json: &str) -> TrialKey {
        TrialKey(*blake3::hash(json.as_bytes()).as_bytes())
    }

    /// The full 64-character hex form.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
}

impl fmt::Debug for TrialKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrialKey({})", &self.to_hex()[..16])
    }
}

/// The id a trial is known by in the store, logs and exports: 16 hex characters (64 bits)
/// of the hash of the sweep name and the trial key, so equal grid points in two sweeps stay
/// two trials.
pub fn trial_id(sweep: &str, key: &TrialKey) -> String {
    let mut h = blake3::Hasher::new();
    h.update(sweep.as_bytes());
    h.update(&[0]);
    h.update(&key.0);
    h.finalize().to_hex()[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::ParamValue;

    #[test]
    fn key_ignores_insertion_order_and_is_stable() {
        let mut a = Params::new();
        a.insert("lr".into(), ParamValue::Float(1e-3));
        a.insert("bs".into(), ParamValue::Int(8));
        let mut b = Params::new();
        b.insert("bs".into(), ParamValue::Int(8));
        b.insert("lr".into(), ParamValue::Float(0.001));
        assert_eq!(TrialKey::of(&a), TrialKey::of(&b));
        // Pinned: a change here would orphan every stored sweep.
        assert_eq!(trial_id("demo", &TrialKey::of(&a)).len(), 16);
        assert_eq!(
            TrialKey::of(&a).to_hex(),
            blake3::hash(br#"{"bs":8,"lr":0.001}"#).to_hex().to_string()
        );
    }

    #[test]
    fn ids_differ_between_sweeps() {
        let k = TrialKey::of(&Params::new());
        assert_ne!(trial_id("a", &k), trial_id("b", &k));
    }
}
