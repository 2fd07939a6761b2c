//! Reading the reference files the parity scripts write (`tests/hf_parity.rs`,
//! `tests/peft_parity.rs`).

/// A JSON array of numbers.
pub fn numbers(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}
