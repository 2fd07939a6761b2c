//! `sweep generate`: a Hugging Face checkpoint's greedy answers to prompts, through its chat
//! template. The first thing to run on a model directory: it shows that the checkpoint loads
//! and answers as it should before a sweep spends hours on it.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use sweep_trainer::device::Backend;
use sweep_trainer::hf;

use crate::exit_codes;
use crate::output::say;

/// `sweep generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A Hugging Face model directory (config.json, safetensors, tokenizer.json,
    /// tokenizer_config.json).
    model: PathBuf,
    /// Prompts, each asked as a user's one message.
    #[arg(required = true)]
    prompts: Vec<String>,
    /// Most new tokens per answer.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// The burn backend: `flex` (CPU) or `tch` (libtorch, GPU when CUDA_VISIBLE_DEVICES
    /// names one).
    #[arg(long, value_enum, default_value = "flex")]
    backend: BackendArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum BackendArg {
    Flex,
    Tch,
}

pub fn run(args: GenerateArgs) -> anyhow::Result<i32> {
    let backend = match args.backend {
        BackendArg::Flex => Backend::Flex,
        BackendArg::Tch => Backend::Tch,
    };
    backend.check_built()?;
    let selected = backend.select(&std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default())?;
    say!("device: {}", selected.name);
    let start = std::time::Instant::now();
    // The error names the file and the key or tensor at fault already.
    let model = hf::load(&args.model, None, &selected.device)?;
    say!(
        "loaded {} ({} parameters) in {:.1} s",
        model.config.family.class_name(),
        model.config.arch.num_params(),
        start.elapsed().as_secs_f64()
    );
    let answers = hf::answer(&model, &args.prompts, args.max_new_tokens, &selected.device)?;
    let mut out = std::io::stdout().lock();
    for (prompt, answer) in args.prompts.iter().zip(answers) {
        let ending = if answer.ended { "" } else { " […]" };
        writeln!(
            out,
            "> {prompt}\n{}{ending}",
            model.tokenizer.decode(&answer.tokens)
        )?;
    }
    Ok(exit_codes::OK)
}
