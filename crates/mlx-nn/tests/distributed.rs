//! Gradient averaging over MLX's distributed layer: one process (a size-1
//! group) and two ring ranks on 127.0.0.1, each rank this test binary
//! re-invoked to run one ignored `rank_*` test.

use std::time::Duration;

use mlx_launch::{Backend as LaunchBackend, run_test_ranks};
use mlx_nn::ParamMap;
use mlx_nn::distributed::{
    DEFAULT_BUCKET_BYTES, average_gradients, average_gradients_in_buckets, gradient_buckets,
};
use mlx_tensor::distributed::{Backend, Group, all_sum};
use mlx_tensor::{Array, Dtype, random};

/// Gradients of several shapes and two dtypes, drawn from `seed`.
fn gradients(seed: u64) -> ParamMap {
    let key = random::key(seed).expect("key");
    let keys = random::split(&key, 6).expect("keys");
    let specs: [(&str, &[i32], Dtype); 6] = [
        ("a.weight", &[4, 3], Dtype::F32),
        ("a.bias", &[3], Dtype::F32),
        ("b.scale", &[], Dtype::F32),
        ("c.weight", &[40, 2], Dtype::F32),
        ("d.weight", &[5, 2], Dtype::BF16),
        ("d.bias", &[2], Dtype::BF16),
    ];
    specs
        .iter()
        .enumerate()
        .map(|(i, (name, shape, dtype))| {
            let k = keys
                .take(&Array::scalar(i as i32).expect("i"), Some(0))
                .expect("key i");
            let g = random::normal(shape, *dtype, 0.0, 1.0, Some(&k)).expect("normal");
            (name.to_string(), g)
        })
        .collect()
}

/// Element values as f64 (read through f32; bf16 converts exactly).
fn values(a: &Array) -> Vec<f64> {
    a.to_vec::<f32>()
        .expect("read")
        .into_iter()
        .map(f64::from)
        .collect()
}

#[test]
fn buckets_group_by_dtype_in_name_order_up_to_the_byte_limit() {
    let grads = gradients(0);
    // f32 in name order: a.bias (12 B), a.weight (48 B), b.scale (4 B),
    // c.weight (320 B); bf16: d.bias (4 B), d.weight (20 B).
    let big = gradient_buckets(&grads, DEFAULT_BUCKET_BYTES).expect("buckets");
    assert_eq!(
        big,
        vec![
            vec!["a.bias", "a.weight", "b.scale", "c.weight"],
            vec!["d.bias", "d.weight"],
        ]
    );
    let small = gradient_buckets(&grads, 64).expect("buckets");
    assert_eq!(
        small,
        vec![
            vec!["a.bias", "a.weight", "b.scale"],
            vec!["c.weight"],
            vec!["d.bias", "d.weight"],
        ]
    );
    let mut ints = grads.clone();
    ints.insert("step".into(), Array::scalar(3i32).expect("int"));
    let err = gradient_buckets(&ints, 64).expect_err("integer gradient");
    assert!(err.to_string().contains("`step`"), "{err}");
}

#[test]
fn one_rank_leaves_gradients_unchanged() {
    let group = Group::init_or_single(Backend::Any).expect("single group");
    assert_eq!(group.size(), 1);
    let grads = gradients(1);
    let averaged = average_gradients(&grads, &group).expect("average");
    assert_eq!(
        averaged.keys().collect::<Vec<_>>(),
        grads.keys().collect::<Vec<_>>()
    );
    for (name, g) in &grads {
        assert_eq!(values(&averaged[name]), values(g), "{name}");
        assert_eq!(averaged[name].dtype(), g.dtype(), "{name}");
    }
}

#[test]
fn two_ring_ranks_average_like_per_tensor_all_sum() {
    let run = run_test_ranks(
        LaunchBackend::Ring,
        2,
        "rank_average_gradients",
        Duration::from_secs(60),
    )
    .expect("start ranks");
    for rank in 0..2 {
        let output = run.output_of(rank);
        assert!(
            output.contains(&format!("rank {rank}: averages agree")),
            "rank {rank} did not finish; {}:\n{output}",
            run.report.summary()
        );
    }
    assert!(run.report.success(), "{}", run.report.summary());
}

/// One rank of [`two_ring_ranks_average_like_per_tensor_all_sum`].
#[test]
#[ignore = "a rank body, started by two_ring_ranks_average_like_per_tensor_all_sum"]
fn rank_average_gradients() {
    let group = Group::init(Backend::Ring).expect("ring group");
    assert_eq!(group.size(), 2);
    let rank = group.rank();
    // Each rank holds its own draw; both can compute both draws, so the
    // mean is known on each rank without communication.
    let mine = gradients(10 + rank as u64);
    let draws = [gradients(10), gradients(11)];
    for bucket_bytes in [DEFAULT_BUCKET_BYTES, 64, 1] {
        let averaged = average_gradients_in_buckets(&mine, &group, bucket_bytes).expect("average");
        assert_eq!(
            averaged.keys().collect::<Vec<_>>(),
            mine.keys().collect::<Vec<_>>()
        );
        for (name, g) in &mine {
            let got = &averaged[name];
            assert_eq!(got.shape(), g.shape(), "{name}");
            assert_eq!(got.dtype(), g.dtype(), "{name}");
            // The naive reference: one all_sum per tensor, divided by 2.
            let naive = all_sum(g, &group)
                .expect("all_sum")
                .div_scalar(2.0)
                .expect("div");
            assert_eq!(
                values(got),
                values(&naive),
                "{name}, buckets of {bucket_bytes} B"
            );
            // The closed form from both ranks' draws.
            let (a, b) = (values(&draws[0][name]), values(&draws[1][name]));
            let tolerance = if g.dtype() == Dtype::BF16 { 1e-2 } else { 1e-6 };
            for ((x, y), z) in a.iter().zip(&b).zip(values(got)) {
                let expected = (x + y) / 2.0;
                assert!(
                    (z - expected).abs() <= tolerance * (1.0 + expected.abs()),
                    "{name}: {z} vs {expected}"
                );
            }
        }
    }
    println!("rank {rank}: averages agree");
}
