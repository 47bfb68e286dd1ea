//! Throughput and memory figures of a generation run.

use std::time::Duration;

/// Throughput and memory of a generation run.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GenerationStats {
    /// Prompt tokens processed (all rows of a batch together).
    pub prompt_tokens: usize,
    /// Time from the start until the first generated token(s) were ready.
    pub prompt_time: Duration,
    /// Tokens generated (all rows of a batch together).
    pub generation_tokens: usize,
    /// Time from the first generated token(s) until the last.
    pub generation_time: Duration,
    /// The largest memory MLX held for arrays so far, in bytes.
    pub peak_memory: usize,
}

fn per_second(n: usize, t: Duration) -> f64 {
    let s = t.as_secs_f64();
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

impl GenerationStats {
    /// Prompt tokens per second.
    pub fn prompt_tps(&self) -> f64 {
        per_second(self.prompt_tokens, self.prompt_time)
    }

    /// Generated tokens per second.
    pub fn generation_tps(&self) -> f64 {
        per_second(self.generation_tokens, self.generation_time)
    }

    /// [`Self::peak_memory`] in gigabytes (10⁹ bytes, as mlx-lm prints it).
    pub fn peak_memory_gb(&self) -> f64 {
        self.peak_memory as f64 / 1e9
    }
}
