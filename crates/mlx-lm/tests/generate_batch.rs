//! Batch generation on the tiny fixture model: greedy batches equal single
//! sequences, groups share a prefill, rows stop on their own and leave the
//! batch, the recorded log-probabilities are the model's.

mod sample_support;

use std::sync::{Arc, Mutex};

use mlx_lm::cache::LayerCache;
use mlx_lm::generate::{
    BatchOptions, FinishReason, GenerateOptions, generate_batch, generate_step,
};
use mlx_lm::sample::{LogitsProcessorConfig, RandomState, SamplerConfig};
use mlx_lm::{LanguageModel, Model};
use mlx_nn::{Module, ParamMap, Visitor, VisitorMut};
use mlx_tensor::{Array, Dtype};
use sample_support::tiny_model;

fn prompts() -> Vec<Vec<u32>> {
    vec![
        vec![1, 45, 67, 89, 12, 200],
        vec![1, 5],
        vec![9, 8, 7, 6, 5, 4, 3, 3, 250, 13, 77, 31],
        vec![17],
    ]
}

fn single_greedy(model: &Model, prompt: &[u32], max_tokens: usize) -> Vec<u32> {
    let opts = GenerateOptions {
        max_tokens: Some(max_tokens),
        ..GenerateOptions::default()
    };
    generate_step(model, prompt, &opts, RandomState::global())
        .unwrap()
        .map(|t| t.unwrap().token)
        .collect()
}

fn rng() -> RandomState {
    RandomState::from_seed(5).unwrap()
}

#[test]
fn greedy_batch_equals_single_sequences() {
    let model = tiny_model();
    let options = BatchOptions {
        max_tokens: 16,
        prefill_step_size: 3,
        ..BatchOptions::default()
    };
    let out = generate_batch(&model, &prompts(), &options, &mut rng()).unwrap();
    assert_eq!(out.completions.len(), 4);
    for (c, p) in out.completions.iter().zip(prompts()) {
        assert_eq!(c.tokens, single_greedy(&model, &p, 16));
        assert_eq!(c.finish_reason, FinishReason::Length);
        assert_eq!(c.len(), 16);
        assert_eq!(c.stop_tokens, 0);
    }
}

#[test]
fn the_decoding_memory_bound_changes_no_token() {
    let model = tiny_model();
    let run = |headroom: Option<usize>| {
        let options = BatchOptions {
            max_tokens: 12,
            num_generations: 2,
            sampler: SamplerConfig::with_temperature(1.0),
            memory_headroom_mb: headroom,
            ..BatchOptions::default()
        };
        generate_batch(&model, &prompts(), &options, &mut rng()).unwrap()
    };
    let bounded = run(Some(1));
    let free = run(None);
    for (a, b) in bounded.completions.iter().zip(&free.completions) {
        assert_eq!(a.tokens, b.tokens);
        assert_eq!(a.logprobs, b.logprobs);
    }
}

#[test]
fn queueing_steps_in_halves_changes_no_token() {
    let model = tiny_model();
    let run = |in_place: bool| {
        let options = BatchOptions {
            max_tokens: 14,
            num_generations: 3,
            sampler: SamplerConfig::with_temperature(1.0),
            // Frequent enough that rows end at different steps and leave
            // the batch while the others go on.
            eos_token_ids: (0..256).step_by(9).collect(),
            in_place_cache_writes: in_place,
            ..BatchOptions::default()
        };
        generate_batch(&model, &prompts(), &options, &mut rng()).unwrap()
    };
    let halves = run(true);
    let whole = run(false);
    assert_eq!(halves.completions, whole.completions);
    let lengths: std::collections::HashSet<usize> =
        halves.completions.iter().map(|c| c.len()).collect();
    assert!(
        lengths.len() > 1,
        "rows should end at different steps: {lengths:?}"
    );
}

#[test]
fn groups_repeat_each_prompt() {
    let model = tiny_model();
    let options = BatchOptions {
        num_generations: 3,
        max_tokens: 8,
        ..BatchOptions::default()
    };
    let out = generate_batch(&model, &prompts()[..2], &options, &mut rng()).unwrap();
    assert_eq!(out.completions.len(), 6);
    for (i, c) in out.completions.iter().enumerate() {
        assert_eq!((c.prompt_index, c.generation_index), (i / 3, i % 3));
        assert_eq!(c.tokens, single_greedy(&model, &prompts()[i / 3], 8));
    }
    assert_eq!(out.stats.prompt_tokens, 8);
    assert_eq!(out.stats.generation_tokens, 48);
}

#[test]
fn sampled_groups_differ_and_are_reproducible() {
    let model = tiny_model();
    let options = BatchOptions {
        num_generations: 4,
        max_tokens: 12,
        sampler: SamplerConfig {
            temperature: 1.0,
            top_p: 0.95,
            ..SamplerConfig::default()
        },
        ..BatchOptions::default()
    };
    let a = generate_batch(&model, &prompts()[..2], &options, &mut rng()).unwrap();
    let b = generate_batch(&model, &prompts()[..2], &options, &mut rng()).unwrap();
    assert_eq!(a.completions, b.completions);
    let distinct: std::collections::HashSet<_> =
        a.completions.iter().map(|c| c.tokens.clone()).collect();
    assert!(distinct.len() > 4, "sampled completions should differ");
}

/// The tokens a greedy completion of prompt 0 goes through, to build stops.
fn greedy_tokens(model: &Model) -> Vec<u32> {
    single_greedy(model, &prompts()[0], 16)
}

#[test]
fn end_of_sequence_and_stop_sequences_end_rows() {
    let model = tiny_model();
    let g = greedy_tokens(&model);
    // Ends prompt 0's completion at its 3rd token (a 1-token stop) and,
    // separately, at the 5th and 6th tokens (a 2-token stop sequence).
    let eos = BatchOptions {
        max_tokens: 16,
        eos_token_ids: vec![g[2]],
        ..BatchOptions::default()
    };
    let out = generate_batch(&model, &prompts()[..1], &eos, &mut rng()).unwrap();
    let c = &out.completions[0];
    let first = g.iter().position(|t| *t == g[2]).unwrap();
    assert_eq!(c.tokens, g[..=first]);
    assert_eq!((c.finish_reason, c.stop_tokens), (FinishReason::Stop, 1));
    assert_eq!(c.content_tokens(), &g[..first]);

    let seq = vec![g[4], g[5]];
    let end = (1..g.len())
        .find(|&i| g[i - 1] == seq[0] && g[i] == seq[1])
        .unwrap();
    let stop = BatchOptions {
        max_tokens: 16,
        stop_sequences: vec![seq],
        ..BatchOptions::default()
    };
    let out = generate_batch(&model, &prompts()[..1], &stop, &mut rng()).unwrap();
    let c = &out.completions[0];
    assert_eq!(c.tokens, g[..=end]);
    assert_eq!((c.finish_reason, c.stop_tokens), (FinishReason::Stop, 2));
    assert_eq!(c.sampler_logprobs.len(), c.len());
    assert_eq!(c.logprobs.len(), c.len());
}

/// The tiny model, recording the batch size of every forward pass.
#[derive(Clone)]
struct Counting {
    inner: Model,
    rows: Arc<Mutex<Vec<i32>>>,
}

impl Module for Counting {
    fn visit<'a>(&'a self, v: &mut Visitor<'_, 'a>) {
        self.inner.visit(v);
    }
    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        self.inner.visit_mut(v);
    }
}

impl LanguageModel for Counting {
    fn forward(&self, tokens: &Array, cache: Option<&mut [LayerCache]>) -> mlx_lm::Result<Array> {
        self.rows.lock().unwrap().push(tokens.dim(0).unwrap());
        self.inner.forward(tokens, cache)
    }
    fn forward_hidden(
        &self,
        tokens: &Array,
        cache: Option<&mut [LayerCache]>,
    ) -> mlx_lm::Result<Array> {
        self.inner.forward_hidden(tokens, cache)
    }
    fn forward_hidden_padded(&self, tokens: &Array, left_padding: &[i32]) -> mlx_lm::Result<Array> {
        self.inner.forward_hidden_padded(tokens, left_padding)
    }
    fn forward_hidden_with_aux(
        &self,
        tokens: &Array,
        left_padding: Option<&[i32]>,
        mask: Option<&Array>,
    ) -> mlx_lm::Result<(Array, Option<Array>)> {
        self.inner
            .forward_hidden_with_aux(tokens, left_padding, mask)
    }
    fn logits_from_hidden(&self, hidden: &Array) -> mlx_lm::Result<Array> {
        self.inner.logits_from_hidden(hidden)
    }
    fn new_cache(&self) -> Vec<LayerCache> {
        self.inner.new_cache()
    }
    fn new_batch_cache(&self, left_padding: &[i32]) -> mlx_lm::Result<Vec<LayerCache>> {
        self.inner.new_batch_cache(left_padding)
    }
    fn vocab_size(&self) -> i32 {
        self.inner.vocab_size()
    }
    fn num_layers(&self) -> usize {
        self.inner.num_layers()
    }
    fn dtype(&self) -> Dtype {
        self.inner.dtype()
    }
    fn checkpoint_tensors(&self) -> mlx_lm::Result<ParamMap> {
        self.inner.checkpoint_tensors()
    }
}

#[test]
fn finished_rows_leave_the_batch() {
    let inner = tiny_model();
    let stop_at = greedy_tokens(&inner)[1];
    let model = Counting {
        inner,
        rows: Arc::default(),
    };
    // Prompt 0 stops after 2 tokens; the others run to 10.
    let options = BatchOptions {
        max_tokens: 10,
        eos_token_ids: vec![stop_at],
        ..BatchOptions::default()
    };
    let prompts = prompts();
    let out = generate_batch(&model, &prompts, &options, &mut rng()).unwrap();
    let lengths: Vec<usize> = out.completions.iter().map(|c| c.len()).collect();
    assert_eq!(out.completions[0].finish_reason, FinishReason::Stop);
    let rows = model.rows.lock().unwrap().clone();
    // The first step runs on every row; the step queued while reading
    // token i runs on the rows still live then; none is queued once every
    // live row is at the token limit.
    let mut expected = vec![4];
    for i in 0..options.max_tokens - 1 {
        let live = lengths.iter().filter(|&&l| l > i).count() as i32;
        if live > 0 {
            expected.push(live);
        }
    }
    assert_eq!(rows, expected, "lengths {lengths:?}");
    assert!(rows.iter().any(|&r| r < 4), "{rows:?}");
}

#[test]
fn recorded_logprobs_are_the_models() {
    let model = tiny_model();
    let t = 0.7;
    let options = BatchOptions {
        num_generations: 2,
        max_tokens: 6,
        sampler: SamplerConfig::with_temperature(t),
        processors: LogitsProcessorConfig {
            repetition_penalty: Some(1.2),
            ..Default::default()
        },
        ..BatchOptions::default()
    };
    let prompts = prompts();
    let out = generate_batch(&model, &prompts[..3], &options, &mut rng()).unwrap();
    for c in &out.completions {
        // One full forward pass over prompt + completion, no cache.
        let prompt = &prompts[c.prompt_index];
        let seq: Vec<u32> = prompt.iter().chain(&c.tokens).copied().collect();
        let x = Array::from_slice(&seq, &[1, seq.len() as i32]).unwrap();
        let logits = model.forward(&x, None).unwrap();
        let lp = logits
            .as_type(Dtype::F32)
            .unwrap()
            .mul_scalar(1.0 / t)
            .unwrap()
            .log_softmax(-1, true)
            .unwrap();
        let lp = lp.reshape(&[seq.len() as i32, -1]).unwrap();
        for (k, (&tok, &got)) in c.tokens.iter().zip(&c.logprobs).enumerate() {
            let pos = (prompt.len() + k - 1) as i32;
            let row = lp
                .slice_axis(0, pos, Some(pos + 1), 1)
                .unwrap()
                .reshape(&[-1])
                .unwrap();
            let want = row.to_vec::<f32>().unwrap()[tok as usize];
            assert!((got - want).abs() < 1e-4, "token {k}: {got} vs {want}");
        }
        assert!(c.sampler_logprobs.iter().all(|l| *l <= 0.0));
    }
}

#[test]
fn rejects_bad_requests() {
    let model = tiny_model();
    let ok = BatchOptions::default();
    let mut r = rng();
    assert!(generate_batch(&model, &[], &ok, &mut r).is_err());
    assert!(generate_batch(&model, &[vec![]], &ok, &mut r).is_err());
    let bad = BatchOptions {
        num_generations: 0,
        ..BatchOptions::default()
    };
    assert!(generate_batch(&model, &prompts(), &bad, &mut r).is_err());
    let bad = BatchOptions {
        sampler: SamplerConfig {
            temperature: 1.0,
            top_k: 256,
            ..Default::default()
        },
        ..ok
    };
    assert!(matches!(
        generate_batch(&model, &prompts(), &bad, &mut r),
        Err(mlx_lm::Error::InvalidSampling {
            parameter: "top_k",
            ..
        })
    ));
}
