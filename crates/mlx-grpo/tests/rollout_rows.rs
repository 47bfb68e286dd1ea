//! Rollouts key every completion by its row in the generation batch: the
//! completions do not depend on `generation_chunk_prompts` nor on which
//! rows are generated together, so a data-parallel rank generates only
//! its rows (reading only their prompts, a straddled group's on both
//! sides) and gets what a whole-batch rollout gets.

mod tiny_task;

use mlx_grpo::config::GrpoConfig;
use mlx_grpo::trainer::RolloutSample;
use mlx_grpo::trainer::rollout::{
    RowChunk, generate, generate_rows, render_prompt, row_chunks, row_seed,
};
use mlx_lm::Tokenizer;
use mlx_lm::models::Model;
use tiny_task::{dataset, dense_model, tokenizer};

/// Completions per prompt: groups of 4 let a row range cut a group.
const G: usize = 4;
/// Prompts of the rollout (12 rows).
const PROMPTS: usize = 3;
const SEED: u64 = 77;

fn config(chunk: Option<usize>) -> GrpoConfig {
    GrpoConfig {
        num_generations: G,
        max_completion_length: 6,
        generation_chunk_prompts: chunk,
        temperature: 1.0,
        ..GrpoConfig::default()
    }
}

fn setup() -> (Tokenizer, Model, Vec<Vec<u32>>) {
    let tok = tokenizer();
    let model = dense_model(&tok);
    let prompts = dataset().rows()[..PROMPTS]
        .iter()
        .map(|r| render_prompt(&tok, &r.prompt).unwrap())
        .collect();
    (tok, model, prompts)
}

/// `prompts` with every prompt that `rows` does not touch emptied: a
/// rollout that read one would fail (an empty prompt is an error).
fn only_needed(prompts: &[Vec<u32>], rows: &std::ops::Range<usize>) -> Vec<Vec<u32>> {
    let needed = rows.start / G..rows.end.div_ceil(G);
    prompts
        .iter()
        .enumerate()
        .map(|(p, ids)| {
            if needed.contains(&p) {
                ids.clone()
            } else {
                Vec::new()
            }
        })
        .collect()
}

/// The same completions: tokens, prompts and finish reasons exactly; the
/// sampling log-probabilities to float rounding (a batch of other rows
/// reduces in another order, which moves them by a few ulps).
fn assert_same(a: &[RolloutSample], b: &[RolloutSample], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: number of samples");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(
            (
                &x.row_index,
                &x.prompt_ids,
                &x.completion_ids,
                x.finish_reason,
                &x.tools
            ),
            (
                &y.row_index,
                &y.prompt_ids,
                &y.completion_ids,
                y.finish_reason,
                &y.tools
            ),
            "{what}: sample {i}"
        );
        assert_eq!(
            x.sampling_logps.len(),
            y.sampling_logps.len(),
            "{what}: sample {i}"
        );
        for (u, v) in x.sampling_logps.iter().zip(&y.sampling_logps) {
            assert!(
                (u - v).abs() <= 1e-5,
                "{what}: sample {i}: log-probability {u} vs {v}"
            );
        }
    }
}

fn rows_of(
    model: &Model,
    tok: &Tokenizer,
    prompts: &[Vec<u32>],
    chunk: Option<usize>,
    rows: std::ops::Range<usize>,
) -> Vec<RolloutSample> {
    let indices: Vec<usize> = (0..PROMPTS).collect();
    let only = only_needed(prompts, &rows);
    let samples = generate_rows(
        model,
        tok,
        &indices,
        &only,
        &config(chunk),
        SEED,
        rows.clone(),
    )
    .unwrap();
    assert_eq!(samples.len(), rows.len(), "rows {rows:?}");
    for (s, r) in samples.iter().zip(rows) {
        assert_eq!(s.row_index, r / G, "row {r} belongs to prompt {}", r / G);
        assert_eq!(s.prompt_ids, prompts[r / G]);
    }
    samples
}

#[test]
fn completions_do_not_depend_on_chunks_or_on_the_rows_generated_together() {
    let (tok, model, prompts) = setup();
    let indices: Vec<usize> = (0..PROMPTS).collect();
    let whole = generate(&model, &tok, &indices, &prompts, &config(None), SEED).unwrap();
    assert_eq!(whole.len(), PROMPTS * G);
    // Rows have their own keys: a group's completions are not all equal.
    for group in whole.chunks(G) {
        assert!(
            group
                .iter()
                .any(|s| s.completion_ids != group[0].completion_ids),
            "a group of identical completions"
        );
    }
    for chunk in [Some(1), Some(2), Some(3), None] {
        let chunked = generate(&model, &tok, &indices, &prompts, &config(chunk), SEED).unwrap();
        assert_same(
            &chunked,
            &whole,
            &format!("generation_chunk_prompts = {chunk:?}"),
        );
        // Rows 0..8 at once and as 0..3 + 3..8 (prompt 0's group cut after
        // its third completion, prompt 2 never read).
        let at_once = rows_of(&model, &tok, &prompts, chunk, 0..8);
        assert_same(
            &at_once,
            &whole[..8],
            &format!("rows 0..8, chunks {chunk:?}"),
        );
        let mut parts = rows_of(&model, &tok, &prompts, chunk, 0..3);
        parts.extend(rows_of(&model, &tok, &prompts, chunk, 3..8));
        assert_same(
            &parts,
            &whole[..8],
            &format!("rows 0..3 + 3..8, chunks {chunk:?}"),
        );
        // Two "ranks" of 6 rows: prompt 1's group straddles them.
        let mut ranks = rows_of(&model, &tok, &prompts, chunk, 0..6);
        ranks.extend(rows_of(&model, &tok, &prompts, chunk, 6..12));
        assert_same(
            &ranks,
            &whole,
            &format!("rows 0..6 + 6..12, chunks {chunk:?}"),
        );
    }
    // Another seed samples other completions.
    let other = generate(&model, &tok, &indices, &prompts, &config(None), SEED + 1).unwrap();
    assert!(
        other
            .iter()
            .zip(&whole)
            .any(|(a, b)| a.completion_ids != b.completion_ids),
        "another seed sampled the same completions"
    );
}

#[test]
fn a_row_range_is_cut_into_batches_of_its_prompts_only() {
    // Rows 3..10 of groups of 4: the last row of prompt 0, all of prompt
    // 1, the first two of prompt 2.
    assert_eq!(
        row_chunks(&(3..10), 4, None),
        vec![RowChunk {
            prompts: 0..3,
            generations: vec![3..4, 0..4, 0..2],
        }]
    );
    assert_eq!(
        row_chunks(&(3..10), 4, Some(2)),
        vec![
            RowChunk {
                prompts: 0..2,
                generations: vec![3..4, 0..4],
            },
            RowChunk {
                prompts: 2..3,
                generations: std::iter::once(0..2).collect(),
            },
        ]
    );
    assert_eq!(row_chunks(&(4..8), 4, Some(1)).len(), 1);
    assert!(row_chunks(&(5..5), 4, None).is_empty());
    // A batch's keys are those of its global rows, in row order.
    let chunk = &row_chunks(&(3..10), 4, Some(2))[1];
    assert_eq!(chunk.row_seeds(9, 4), vec![row_seed(9, 8), row_seed(9, 9)]);
    // Rows and seeds give distinct keys.
    let seeds: std::collections::BTreeSet<u64> = (0..2u64)
        .flat_map(|s| (0..64).map(move |r| row_seed(s, r)))
        .collect();
    assert_eq!(seeds.len(), 128);
}

#[test]
fn rows_outside_the_rollout_are_an_error() {
    let (tok, model, prompts) = setup();
    let indices: Vec<usize> = (0..PROMPTS).collect();
    let err =
        generate_rows(&model, &tok, &indices, &prompts, &config(None), SEED, 8..13).unwrap_err();
    assert!(err.to_string().contains("8..13"), "{err}");
}
