//! `--only offload`: how fast optimizer state moves between MLX and host
//! memory (`HostArray`), piece by piece, for 2 GiB of bf16 arrays in 64 MiB
//! pieces (about the AdamW moments of the 0.6B shape).

use std::error::Error;
use std::time::Instant;

use mlx_tensor::{Array, Dtype, HostArray, random};
use serde_json::{Value, json};

type Res<T> = Result<T, Box<dyn Error>>;

/// Seconds of `f`, after synchronizing the device before and after.
fn timed<T>(f: impl FnOnce() -> Res<T>) -> Res<(T, f64)> {
    mlx_tensor::synchronize()?;
    let start = Instant::now();
    let out = f()?;
    mlx_tensor::synchronize()?;
    Ok((out, start.elapsed().as_secs_f64()))
}

/// Transfer rates (GB/s) of each stage of a state round trip.
pub fn bench(pieces: usize, piece_elements: i32) -> Res<Value> {
    let key = random::key(0)?;
    let fresh = |shift: f64| -> Res<Vec<Array>> {
        let arrays = (0..pieces)
            .map(|_| {
                random::normal(&[piece_elements], Dtype::BF16, 0.0, 1.0, Some(&key))?
                    .add_scalar(shift)
                    .map_err(Into::into)
            })
            .collect::<Res<Vec<_>>>()?;
        mlx_tensor::eval(&arrays.iter().collect::<Vec<_>>())?;
        Ok(arrays)
    };
    let bytes = pieces as f64 * f64::from(piece_elements) * 2.0;
    let rate = |s: f64| bytes / s / 1e9;

    let arrays = fresh(0.0)?;
    let (mut hosts, to_new_host) = timed(|| {
        arrays
            .iter()
            .map(|a| HostArray::from_array(a).map_err(Into::into))
            .collect::<Res<Vec<_>>>()
    })?;
    drop(arrays);
    let arrays = fresh(1.0)?;
    let ((), to_same_host) = timed(|| {
        for (h, a) in hosts.iter_mut().zip(&arrays) {
            h.copy_from(a)?;
        }
        Ok(())
    })?;
    drop(arrays);
    let (restored, to_mlx) = timed(|| {
        hosts
            .iter()
            .map(|h| h.to_array().map_err(Into::into))
            .collect::<Res<Vec<_>>>()
    })?;
    let read = |arrays: &[Array]| -> Res<Vec<Array>> {
        let out = arrays
            .iter()
            .map(|a| a.add_scalar(0.0))
            .collect::<Result<Vec<_>, _>>()?;
        mlx_tensor::eval(&out.iter().collect::<Vec<_>>())?;
        Ok(out)
    };
    let (first, first_read) = timed(|| read(&restored))?;
    drop(first);
    let (second, second_read) = timed(|| read(&restored))?;
    drop(second);
    let out = json!({
        "bytes": bytes,
        "device_to_new_host_gb_s": rate(to_new_host),
        "device_to_reused_host_gb_s": rate(to_same_host),
        "host_to_mlx_gb_s": rate(to_mlx),
        "first_device_read_gb_s": rate(first_read),
        "second_device_read_gb_s": rate(second_read),
        "seconds": {
            "device_to_new_host": to_new_host, "device_to_reused_host": to_same_host,
            "host_to_mlx": to_mlx, "first_device_read": first_read,
            "second_device_read": second_read,
        },
    });
    println!(
        "state moves, {:.2} GB in {pieces} pieces: device→new host {:.2} GB/s, device→reused host {:.2} GB/s, \
         host→MLX {:.2} GB/s, first device read {:.2} GB/s, second {:.2} GB/s",
        bytes / 1e9,
        rate(to_new_host),
        rate(to_same_host),
        rate(to_mlx),
        rate(first_read),
        rate(second_read)
    );
    Ok(out)
}

/// Seconds of one AdamW update of every parameter of `model` (the second
/// of two, gradients given), with the state in MLX memory and on the host.
pub fn bench_update(model: &mut mlx_lm::models::Model) -> Res<Value> {
    use mlx_nn::optim::{AdamW, Optimizer};
    use mlx_nn::{ModuleExt, ParamMap};

    let grads: ParamMap = model
        .parameters()
        .into_iter()
        .map(|(name, p)| Ok((name, p.mul_scalar(1e-3)?)))
        .collect::<Res<_>>()?;
    mlx_tensor::eval(&grads.values().collect::<Vec<_>>())?;
    let mut out = serde_json::Map::new();
    for on_host in [false, true] {
        let mut optimizer = Optimizer::new(AdamW::new(0.0), 1e-6);
        optimizer.set_state_on_host(on_host)?;
        let mut seconds = 0.0;
        for _ in 0..2 {
            let ((), s) = timed(|| {
                optimizer.update(model, &grads)?;
                optimizer.eval_with(model, &[])?;
                Ok(())
            })?;
            seconds = s;
        }
        let name = if on_host {
            "state_on_host"
        } else {
            "state_on_device"
        };
        println!("AdamW update of every parameter, {name}: {seconds:.3} s");
        out.insert(name.into(), json!(seconds));
        if let Some(t) = optimizer.last_host_update_timings() {
            println!(
                "  {} groups: restore {:.3} s, queue {:.3} s, wait {:.3} s, store {:.3} s",
                t.groups,
                t.restore.as_secs_f64(),
                t.queue.as_secs_f64(),
                t.wait.as_secs_f64(),
                t.store.as_secs_f64()
            );
            out.insert(
                "state_on_host_parts".into(),
                json!({
                    "groups": t.groups,
                    "restore_s": t.restore.as_secs_f64(),
                    "queue_s": t.queue.as_secs_f64(),
                    "wait_s": t.wait.as_secs_f64(),
                    "store_s": t.store.as_secs_f64(),
                }),
            );
        }
        mlx_tensor::memory::clear_cache();
    }
    Ok(Value::Object(out))
}
