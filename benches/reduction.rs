//! Row reductions of f32 matrices (`sum`, `max` and `logsumexp` over the last
//! axis, as in a softmax or a loss over the vocabulary). Throughput is the
//! bytes read, so criterion prints GB/s.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mlx_tensor::{Array, Dtype, Result, random};

type Reduction = fn(&Array) -> Result<Array>;

fn reduction(c: &mut Criterion) {
    let reductions: [(&str, Reduction); 3] = [
        ("sum", |a| a.sum(-1, false)),
        ("max", |a| a.max(-1, false)),
        ("logsumexp", |a| a.logsumexp(-1, false)),
    ];
    // (rows, columns): many short rows, a square, few long rows (vocabulary-sized).
    let shapes = [(16_384, 256), (2048, 2048), (64, 151_936)];
    for (name, reduce) in reductions {
        let mut group = c.benchmark_group(format!("{name}_rows_f32"));
        group.sample_size(10);
        for (rows, cols) in shapes {
            let x = random::normal(
                &[rows, cols],
                Dtype::F32,
                0.0,
                1.0,
                Some(&random::key(0).unwrap()),
            )
            .unwrap();
            x.eval().unwrap();
            group.throughput(Throughput::Bytes(4 * rows as u64 * cols as u64));
            group.bench_with_input(
                BenchmarkId::from_parameter(format!("{rows}x{cols}")),
                &x,
                |bench, x| {
                    bench.iter(|| reduce(x).unwrap().eval().unwrap());
                },
            );
        }
        group.finish();
    }
}

criterion_group!(benches, reduction);
criterion_main!(benches);
