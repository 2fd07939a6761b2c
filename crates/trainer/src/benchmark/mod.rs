//! Benchmark utility: log-likelihood multiple choice as lm-evaluation-harness scores it
//! (HellaSwag, ARC, PIQA, MMLU files in their public formats), so "equal utility" on a
//! front means what it means in the field. Each benchmark `NAME` gives `NAME_acc` (the choice
//! with the highest summed log-probability is right) and `NAME_acc_norm` (the same after
//! dividing each sum by its choice's length in characters, as lm-eval 0.4 does), on all items
//! and on each fixed half (`val_`, `test_`) like every rate.
//!
//! [`formats`] reads the files into lm-eval's prompts; [`score`] computes the log-likelihoods.

pub mod formats;
pub mod score;

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use crate::chat::Split;
use crate::data::{fixed_split, FormatError};
use crate::model::Lm;
pub use formats::{Format, Item};
pub use score::{Group, Tokens, TokensError};

/// One entry of `[trainer] benchmarks`: `"NAME"` (the file `NAME.jsonl` in `benchmark_dir`)
/// or `"NAME:PATH"`; the name says the format and prefixes the metrics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct BenchmarkSpec {
    /// The benchmark's name, one of [`formats::KNOWN`].
    pub name: String,
    /// Its file, when given; else `benchmark_dir/NAME.jsonl`.
    pub path: Option<PathBuf>,
}

impl TryFrom<String> for BenchmarkSpec {
    type Error = String;

    fn try_from(text: String) -> Result<BenchmarkSpec, String> {
        let (name, path) = match text.split_once(':') {
            Some((name, path)) => (name, Some(PathBuf::from(path))),
            None => (text.as_str(), None),
        };
        if Format::of(name).is_none() {
            let known: Vec<&str> = formats::KNOWN.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "unknown benchmark {name:?}: sweep reads {} (write \"NAME\" for \
                 benchmark_dir/NAME.jsonl, or \"NAME:PATH\")",
                known.join(", ")
            ));
        }
        if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(format!("{text:?} names no file after the `:`"));
        }
        Ok(BenchmarkSpec {
            name: name.to_string(),
            path,
        })
    }
}

impl BenchmarkSpec {
    /// The file this benchmark is read from.
    pub fn file(&self, dir: &Path) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| dir.join(format!("{}.jsonl", self.name)))
    }

    /// Reads the benchmark's file, keeping a fixed sample of `sample` items (all without one).
    pub fn read(&self, dir: &Path, sample: Option<usize>) -> Result<Benchmark, FormatError> {
        let format = Format::of(&self.name).expect("checked when the spec was read");
        let file = self.file(dir);
        if !file.exists() {
            return Err(FormatError::Read {
                path: file.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file; `scripts/benchmarks` fetches the public benchmarks into \
                     benchmarks/ (pinned by hash), or name a file of your own as \"NAME:PATH\"",
                ),
            });
        }
        let items = formats::read_items(&file, format)?;
        Ok(Benchmark {
            name: self.name.clone(),
            items: fixed_split(items, sample).0,
        })
    }
}

/// A benchmark's items, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Benchmark {
    /// Its name: the metrics' prefix.
    pub name: String,
    /// The items scored.
    pub items: Vec<Item>,
}

/// A benchmark ready to score: every item's tokens, made once when a trial starts.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The items.
    pub benchmark: Benchmark,
    tokens: Vec<Tokens>,
    split: Vec<Split>,
}

/// An item's tokens cannot be scored.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError<E> {
    /// The tokenizer failed.
    #[error(transparent)]
    Encode(E),
    /// The item cannot be scored as lm-eval would.
    #[error("benchmark {name}, line {line}: {error}")]
    Item {
        /// Benchmark.
        name: String,
        /// The item's line in its file.
        line: usize,
        /// What is wrong.
        error: TokensError,
    },
}

impl Benchmark {
    /// Tokenises every item with `encode` (plain text, as lm-eval encodes it: no chat
    /// template), cutting inputs to the model's `window`.
    pub fn prepare<E>(
        self,
        window: usize,
        encode: impl Fn(&str) -> Result<Vec<u32>, E>,
    ) -> Result<Prepared, PrepareError<E>> {
        let mut tokens = Vec::with_capacity(self.items.len());
        for item in &self.items {
            let t = score::tokens(&item.context, &item.choices, window, &encode)
                .map_err(PrepareError::Encode)?
                .map_err(|error| PrepareError::Item {
                    name: self.name.clone(),
                    line: item.line,
                    error,
                })?;
            tokens.push(t);
        }
        let split = self.items.iter().map(|i| Split::of(&i.context)).collect();
        Ok(Prepared {
            benchmark: self,
            tokens,
            split,
        })
    }
}

/// How a model did on one item: what `benchmarks.jsonl` records.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ItemScore {
    /// The benchmark.
    pub benchmark: String,
    /// The item's line in its file.
    pub line: usize,
    /// The half it belongs to.
    pub split: Split,
    /// The right choice.
    pub gold: usize,
    /// Each choice's summed log-probability.
    pub loglikelihoods: Vec<f64>,
    /// Whether the highest log-likelihood is the right choice's.
    pub acc: bool,
    /// Whether the highest log-likelihood per character is.
    pub acc_norm: bool,
}

impl Prepared {
    /// Scores every item with `model`; `pad` fills batches (never scored).
    pub fn score(&self, model: &Lm, pad: u32, device: &Device) -> Vec<ItemScore> {
        let lls = score::loglikelihoods(model, &self.tokens, pad, device);
        self.benchmark
            .items
            .iter()
            .zip(lls)
            .zip(&self.split)
            .map(|((item, lls), &split)| ItemScore {
                benchmark: self.benchmark.name.clone(),
                line: item.line,
                split,
                gold: item.gold,
                acc: argmax(&lls) == item.gold,
                acc_norm: argmax(&per_character(&lls, &item.choices)) == item.gold,
                loglikelihoods: lls,
            })
            .collect()
    }
}

/// Each log-likelihood divided by its choice's length in characters (Python's `len`), which
/// is `acc_norm`'s measure in lm-eval 0.4 (its `acc_bytes` divides by UTF-8 bytes).
fn per_character(lls: &[f64], choices: &[String]) -> Vec<f64> {
    lls.iter()
        .zip(choices)
        .map(|(ll, c)| ll / c.chars().count() as f64)
        .collect()
}

/// numpy's `argmax`: the first index of the largest value (a NaN counts as largest).
fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if values[best].is_nan() {
            break;
        }
        if v.is_nan() || v > values[best] {
            best = i;
        }
    }
    best
}

/// `NAME_acc` and `NAME_acc_norm` of `scores` (one benchmark's, called `name`).
pub fn metrics(name: &str, scores: &[ItemScore]) -> Vec<(String, f64)> {
    if scores.is_empty() {
        return Vec::new();
    }
    let share = |hit: fn(&ItemScore) -> bool| {
        scores.iter().filter(|s| hit(s)).count() as f64 / scores.len() as f64
    };
    vec![
        (format!("{name}_acc"), share(|s| s.acc)),
        (format!("{name}_acc_norm"), share(|s| s.acc_norm)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_is_a_known_name_and_maybe_a_path() {
        let s = BenchmarkSpec::try_from("arc_easy".to_string()).unwrap();
        assert_eq!(s.file(Path::new("b")), Path::new("b/arc_easy.jsonl"));
        let s = BenchmarkSpec::try_from("hellaswag:data/hs.jsonl".to_string()).unwrap();
        assert_eq!(s.file(Path::new("b")), Path::new("data/hs.jsonl"));
        let e = BenchmarkSpec::try_from("winogrand".to_string()).unwrap_err();
        assert!(
            e.contains("unknown benchmark \"winogrand\"") && e.contains("hellaswag"),
            "{e}"
        );
        assert!(BenchmarkSpec::try_from("piqa:".to_string()).is_err());
    }

    #[test]
    fn argmax_takes_the_first_of_equals_as_numpy_does() {
        assert_eq!(argmax(&[-3.0, -1.0, -1.0]), 1);
        assert_eq!(argmax(&[-3.0, f64::NAN, 0.0]), 1);
        assert_eq!(argmax(&[-1.0, f64::NEG_INFINITY]), 0);
    }

    #[test]
    fn acc_norm_divides_by_characters_not_bytes() {
        // "éé" is 2 characters and 4 bytes: -3/2 < -4/3 by characters, -3/4 > -4/3 by bytes.
        let choices = vec!["éé".to_string(), "abc".to_string()];
        assert_eq!(argmax(&per_character(&[-3.0, -4.0], &choices)), 1);
        let s = ItemScore {
            benchmark: "piqa".into(),
            line: 1,
            split: Split::Test,
            gold: 0,
            loglikelihoods: vec![],
            acc: true,
            acc_norm: false,
        };
        let m = metrics("piqa", &[s.clone(), ItemScore { acc: false, ..s }]);
        assert_eq!(
            m,
            vec![("piqa_acc".into(), 0.5), ("piqa_acc_norm".into(), 0.0)]
        );
    }
}
