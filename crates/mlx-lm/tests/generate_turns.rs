//! Multi-turn batch generation on the tiny fixture model: every turn equals
//! greedy generation over the whole conversation so far, batched rows equal
//! rows generated alone, and only the prompts and the inserted tokens are
//! prefilled (no turn runs the conversation again).

mod sample_support;

use std::collections::BTreeMap;

use mlx_lm::generate::{
    BatchOptions, FinishReason, GenerateOptions, TurnEnd, TurnHandler, TurnsOutput, generate_step,
    generate_turns,
};
use mlx_lm::sample::RandomState;
use mlx_lm::{Error, Model};
use sample_support::tiny_model;

fn prompts() -> Vec<Vec<u32>> {
    vec![
        vec![1, 45, 67, 89, 12, 200],
        vec![1, 5],
        vec![9, 8, 7, 6, 5, 4, 3, 3, 250, 13, 77, 31],
        vec![17],
    ]
}

/// Every fourth id ends a turn, so greedy turns of the random model are short.
fn turn_enders() -> Vec<u32> {
    (0..256).step_by(4).collect()
}

fn options(max_tokens: usize, num_generations: usize) -> BatchOptions {
    BatchOptions {
        num_generations,
        max_tokens,
        eos_token_ids: turn_enders(),
        prefill_step_size: 3,
        ..BatchOptions::default()
    }
}

/// Continues each row twice with tokens that depend on the prompt and the
/// turn (lengths 1 to 4), and records what it inserted.
#[derive(Default)]
struct Scripted {
    /// Added to the prompt index (a prompt generated alone is prompt 0).
    first_prompt: usize,
    inserted: BTreeMap<(usize, usize), Vec<u32>>,
    calls: usize,
}

impl TurnHandler for Scripted {
    type Error = Error;

    fn turn_ended(&mut self, end: &TurnEnd<'_>) -> Result<Option<Vec<u32>>, Error> {
        self.calls += 1;
        assert!(turn_enders().contains(end.tokens.last().unwrap()));
        if end.turn >= 2 {
            return Ok(None);
        }
        let prompt = self.first_prompt + end.prompt_index;
        let len = 1 + (prompt + end.turn) % 4;
        let tokens: Vec<u32> = (0..len)
            .map(|i| 101 + (prompt * 10 + end.turn * 3 + i) as u32 * 2)
            .collect();
        if tokens.len() > end.room {
            return Ok(None);
        }
        self.inserted.insert((end.row, end.turn), tokens.clone());
        Ok(Some(tokens))
    }
}

fn run(model: &Model, prompts: &[Vec<u32>], opts: &BatchOptions) -> (TurnsOutput, Scripted) {
    run_from(model, prompts, 0, opts)
}

fn run_from(
    model: &Model,
    prompts: &[Vec<u32>],
    first_prompt: usize,
    opts: &BatchOptions,
) -> (TurnsOutput, Scripted) {
    let mut handler = Scripted {
        first_prompt,
        ..Scripted::default()
    };
    let mut rng = RandomState::from_seed(3).unwrap();
    let out = generate_turns(model, prompts, opts, &mut handler, &mut rng).unwrap();
    (out, handler)
}

fn greedy_after(model: &Model, context: &[u32], n: usize) -> Vec<u32> {
    let opts = GenerateOptions {
        max_tokens: Some(n),
        ..GenerateOptions::default()
    };
    generate_step(model, context, &opts, RandomState::global())
        .unwrap()
        .map(|t| t.unwrap().token)
        .collect()
}

#[test]
fn every_turn_equals_greedy_generation_over_the_whole_conversation() {
    let model = tiny_model();
    let (out, handler) = run(&model, &prompts(), &options(40, 1));
    assert!(handler.calls >= 4, "too few turns ended: {}", handler.calls);
    let mut continued = 0;
    for (row, (c, prompt)) in out.completions.iter().zip(prompts()).enumerate() {
        let tokens = &c.completion.tokens;
        assert_eq!(c.sampled.len(), tokens.len());
        let mut expected_mask = vec![false; tokens.len()];
        for (turn, span) in c.turns.iter().enumerate() {
            expected_mask[span.clone()]
                .iter_mut()
                .for_each(|m| *m = true);
            let context: Vec<u32> = prompt
                .iter()
                .chain(&tokens[..span.start])
                .copied()
                .collect();
            assert_eq!(
                &tokens[span.clone()],
                greedy_after(&model, &context, span.len()).as_slice(),
                "row {row} turn {turn}"
            );
            if turn > 0 {
                continued += 1;
                let inserted = &handler.inserted[&(row, turn - 1)];
                assert_eq!(
                    &tokens[span.start - inserted.len()..span.start],
                    inserted.as_slice()
                );
            }
        }
        assert_eq!(c.sampled, expected_mask, "row {row}");
        for (lp, sampled) in c.completion.logprobs.iter().zip(&c.sampled) {
            assert!(*sampled || *lp == 0.0);
        }
    }
    assert!(continued >= 2, "too few continued turns: {continued}");
}

#[test]
fn batched_turns_equal_rows_alone_and_prefill_only_new_tokens() {
    let model = tiny_model();
    let opts = options(40, 1);
    let (batched, handler) = run(&model, &prompts(), &opts);
    for (i, prompt) in prompts().iter().enumerate() {
        let (alone, _) = run_from(&model, std::slice::from_ref(prompt), i, &opts);
        let (a, b) = (&alone.completions[0], &batched.completions[i]);
        assert_eq!(a.completion.tokens, b.completion.tokens, "row {i}");
        assert_eq!(a.sampled, b.sampled, "row {i}");
        assert_eq!(a.turns, b.turns, "row {i}");
        assert_eq!(a.completion.finish_reason, b.completion.finish_reason);
        for (x, y) in a.completion.logprobs.iter().zip(&b.completion.logprobs) {
            assert!((x - y).abs() < 1e-4, "row {i}: {x} vs {y}");
        }
    }
    // Prompts (all but the token the first step reads) once, then per
    // continued turn exactly as many tokens as were inserted.
    let inserted: usize = handler.inserted.values().map(Vec::len).sum();
    let prompt_prefill: usize = prompts().iter().map(|p| p.len() - 1).sum();
    assert_eq!(batched.prefilled_tokens, prompt_prefill + inserted);
    let sampled: usize = batched
        .completions
        .iter()
        .map(|c| c.sampled.iter().filter(|&&s| s).count())
        .sum();
    assert_eq!(batched.decoded_tokens, sampled);
    // Everything run through the model: each sequence but its last token.
    let whole: usize = batched
        .completions
        .iter()
        .zip(prompts())
        .map(|(c, p)| p.len() + c.completion.tokens.len() - 1)
        .sum();
    assert_eq!(batched.prefilled_tokens + batched.decoded_tokens, whole);
}

#[test]
fn groups_share_the_prompt_prefill_and_greedy_members_agree() {
    let model = tiny_model();
    let (out, _) = run(&model, &prompts(), &options(30, 3));
    assert_eq!(out.completions.len(), 12);
    for group in out.completions.chunks(3) {
        assert_eq!(group[0].completion.tokens, group[1].completion.tokens);
        assert_eq!(group[0].completion.tokens, group[2].completion.tokens);
        assert_eq!(group[1].completion.generation_index, 1);
    }
    let (single, _) = run(&model, &prompts(), &options(30, 1));
    for (g, s) in out.completions.chunks(3).zip(&single.completions) {
        assert_eq!(g[0].completion.tokens, s.completion.tokens);
    }
}

#[test]
fn max_tokens_counts_inserted_tokens() {
    let model = tiny_model();
    let (out, _) = run(&model, &prompts(), &options(7, 1));
    for c in &out.completions {
        assert!(c.completion.tokens.len() <= 7);
        if c.completion.tokens.len() < 7 {
            assert_eq!(c.completion.finish_reason, FinishReason::Stop);
        }
    }
}

struct Fixed(Vec<u32>);

impl TurnHandler for Fixed {
    type Error = Error;

    fn turn_ended(&mut self, _: &TurnEnd<'_>) -> Result<Option<Vec<u32>>, Error> {
        Ok(Some(self.0.clone()))
    }
}

#[test]
fn bad_inserted_tokens_are_typed_errors() {
    let model = tiny_model();
    let mut rng = RandomState::from_seed(0).unwrap();
    let opts = options(40, 1);
    let err =
        generate_turns(&model, &prompts(), &opts, &mut Fixed(vec![999]), &mut rng).unwrap_err();
    assert!(matches!(err, Error::TokenOutOfRange { .. }), "{err}");
    let err =
        generate_turns(&model, &prompts(), &opts, &mut Fixed(vec![5; 60]), &mut rng).unwrap_err();
    assert!(matches!(err, Error::InvalidGeneration { .. }), "{err}");
}
