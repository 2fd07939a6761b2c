//! Telling a trial that ran out of GPU memory from any other crash, and what its retry is
//! told: each out-of-memory attempt halves the next attempt's micro-batch (twice the gradient
//! accumulation, the same effective batch).

/// The variable that tells an attempt into how many parts to split each micro-batch: `1`, then
/// `2`, `4`, … after each out-of-memory attempt. The built-in trainer follows it; a user
/// command may read it or ignore it.
pub const SPLIT_VAR: &str = sweep_core::protocol::env::MICRO_BATCH_SPLIT;

/// The largest split asked for (beyond it a micro-batch is a single example anyway).
const MAX_SPLIT_LOG2: u32 = 10;

/// What out-of-memory errors say on stderr: PyTorch (`torch.OutOfMemoryError: CUDA out of
/// memory`), libtorch through tch or burn-tch (a Rust panic with the same text), the CUDA
/// driver API, cuBLAS and cuDNN allocation failures.
const SIGNATURES: &[&str] = &[
    "cuda out of memory",
    "outofmemoryerror",
    "cuda_error_out_of_memory",
    "cuda error: out of memory",
    "cublas_status_alloc_failed",
    "cudnn_status_alloc_failed",
    "hip out of memory",
];

/// Whether the end of an attempt's stderr says the GPU ran out of memory.
pub fn is_out_of_memory(stderr_tail: &str) -> bool {
    let text = stderr_tail.to_ascii_lowercase();
    SIGNATURES.iter().any(|s| text.contains(s))
}

/// The split for an attempt after `out_of_memory` earlier out-of-memory attempts.
pub fn split_after(out_of_memory: u32) -> u32 {
    1 << out_of_memory.min(MAX_SPLIT_LOG2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pytorch_and_libtorch_messages_are_out_of_memory() {
        let pytorch = "Traceback (most recent call last):\n  File \"train.py\", line 9\n\
            torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; \
            79.15 GiB total capacity; 77.01 GiB already allocated)";
        assert!(is_out_of_memory(pytorch));
        let tch = "thread 'main' panicked at burn-tch/src/ops/base.rs:12:5:\n\
            called `Result::unwrap()` on an `Err` value: Torch(\"CUDA out of memory. Tried to \
            allocate 20.00 MiB\")";
        assert!(is_out_of_memory(tch));
        assert!(is_out_of_memory(
            "RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate`"
        ));
    }

    #[test]
    fn other_crashes_are_not() {
        assert!(!is_out_of_memory(""));
        assert!(!is_out_of_memory(
            "RuntimeError: CUDA error: an illegal memory access was encountered"
        ));
        assert!(!is_out_of_memory("memory allocation of 1024 bytes failed"));
        assert!(!is_out_of_memory("ValueError: batch_size must be positive"));
    }

    #[test]
    fn each_out_of_memory_attempt_halves_the_micro_batch_again() {
        assert_eq!(split_after(0), 1);
        assert_eq!(split_after(1), 2);
        assert_eq!(split_after(3), 8);
        assert_eq!(split_after(99), 1024);
    }
}
