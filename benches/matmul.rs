//! f32 matrix products. Throughput is reported in floating-point operations
//! (`2 n³` per product) as "elements", so criterion's `Gelem/s` reads as
//! GFLOP/s.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mlx_tensor::{Dtype, random};

fn matmul(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul_f32");
    group.sample_size(10);
    for n in [256, 512, 1024] {
        let a = random::normal(
            &[n, n],
            Dtype::F32,
            0.0,
            1.0,
            Some(&random::key(0).unwrap()),
        )
        .unwrap();
        let b = random::normal(
            &[n, n],
            Dtype::F32,
            0.0,
            1.0,
            Some(&random::key(1).unwrap()),
        )
        .unwrap();
        mlx_tensor::eval(&[&a, &b]).unwrap();
        group.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, _| {
            // Evaluation happens inside the timed region: building the graph
            // alone costs nothing.
            bench.iter(|| a.matmul(&b).unwrap().eval().unwrap());
        });
    }
    group.finish();
}

criterion_group!(benches, matmul);
criterion_main!(benches);
