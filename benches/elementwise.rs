//! Element-wise f32 operations over 1M to 16M elements. Throughput is the
//! bytes read and written (two inputs and one output for binary operations,
//! one of each for unary ones), so criterion prints GB/s.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mlx_tensor::{Array, Dtype, Result, random};

type Op = fn(&Array, &Array) -> Result<Array>;

fn elementwise(c: &mut Criterion) {
    let ops: [(&str, Op, u64); 3] = [
        ("add", |a, b| a.add(b), 3),
        ("mul", |a, b| a.multiply(b), 3),
        ("exp", |a, _| a.exp(), 2),
    ];
    for (name, op, arrays) in ops {
        let mut group = c.benchmark_group(format!("{name}_f32"));
        group.sample_size(10);
        for millions in [1, 4, 16] {
            let n = millions << 20;
            let a = random::uniform(-1.0, 1.0, &[n], Dtype::F32, Some(&random::key(0).unwrap()))
                .unwrap();
            let b = random::uniform(-1.0, 1.0, &[n], Dtype::F32, Some(&random::key(1).unwrap()))
                .unwrap();
            mlx_tensor::eval(&[&a, &b]).unwrap();
            group.throughput(Throughput::Bytes(arrays * 4 * n as u64));
            group.bench_with_input(
                BenchmarkId::from_parameter(format!("{millions}M")),
                &n,
                |bench, _| {
                    bench.iter(|| op(&a, &b).unwrap().eval().unwrap());
                },
            );
        }
        group.finish();
    }
}

criterion_group!(benches, elementwise);
criterion_main!(benches);
