//! Reading and writing arrays: safetensors round trips are bit-exact for every
//! dtype and keep metadata; damaged files give `Error::File` naming the file
//! (and the tensor); `.npy` round trips.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use common::temp_dir;
use mlx_tensor::io::{self, load_safetensors, read_safetensors_header, save_safetensors};
use mlx_tensor::{Array, Dtype, Error};
use proptest::prelude::*;

/// Every dtype MLX 0.32.4 writes to safetensors (all but F64 and C64).
const SAVABLE: [Dtype; 12] = [
    Dtype::Bool,
    Dtype::U8,
    Dtype::U16,
    Dtype::U32,
    Dtype::U64,
    Dtype::I8,
    Dtype::I16,
    Dtype::I32,
    Dtype::I64,
    Dtype::F16,
    Dtype::BF16,
    Dtype::F32,
];

/// An array of `dtype` and `shape` whose bytes come from `bytes` (booleans
/// are made 0 or 1).
fn array_from(bytes: &[u8], shape: &[i32], dtype: Dtype) -> Array {
    let n: usize = shape.iter().map(|&d| d as usize).product::<usize>() * dtype.size_of();
    let mut data: Vec<u8> = bytes.iter().cycle().take(n).cloned().collect();
    if dtype == Dtype::Bool {
        data.iter_mut().for_each(|b| *b &= 1);
    }
    Array::from_bytes(&data, shape, dtype).unwrap()
}

/// Asserts that `result` is `Error::File` for `path` whose message holds every
/// one of `words`.
#[track_caller]
fn assert_file_error<T: std::fmt::Debug>(
    result: mlx_tensor::Result<T>,
    path: &Path,
    words: &[&str],
) {
    match result {
        Err(Error::File { path: p, message }) => {
            assert_eq!(p, path);
            for w in words {
                assert!(message.contains(w), "`{message}` does not mention `{w}`");
            }
            let shown = Error::File { path: p, message }.to_string();
            assert!(shown.contains(&path.display().to_string()), "{shown}");
        }
        other => panic!("expected Error::File for {}, got {other:?}", path.display()),
    }
}

fn write_raw(path: &Path, header: &str, data: &[u8]) {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    fs::write(path, bytes).unwrap();
}

proptest! {
    #![proptest_config(common::cases(8))]

    #[test]
    fn safetensors_round_trip_is_bit_exact(
        bytes in prop::collection::vec(any::<u8>(), 1..512),
        shape in common::shape(3, 4),
        meta in prop::collection::hash_map("[a-z_]{1,8}", "[ -~]{0,16}", 0..4),
    ) {
        let tmp = temp_dir(&format!("st-{}", bytes.len()));
        let dir = tmp.path();
        let path = dir.join("all.safetensors");
        let dims = common::dims(&shape);
        let arrays: Vec<(String, Array)> = SAVABLE
            .iter()
            .map(|&d| (format!("layer.{d}"), array_from(&bytes, &dims, d)))
            .collect();
        save_safetensors(&path, arrays.iter().map(|(n, a)| (n.as_str(), a)), &meta).unwrap();
        // Nothing but the file is left in the directory.
        let names: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        prop_assert_eq!(names.len(), 1);
        let loaded = load_safetensors(&path).unwrap();
        prop_assert_eq!(&loaded.metadata, &meta);
        prop_assert_eq!(loaded.tensors.len(), arrays.len());
        for (name, a) in &arrays {
            let b = &loaded.tensors[name];
            prop_assert_eq!(b.dtype(), a.dtype());
            prop_assert_eq!(b.shape(), a.shape());
            prop_assert_eq!(b.to_bytes().unwrap(), a.to_bytes().unwrap(), "{}", name);
        }
        // The header reader agrees.
        let (infos, header_meta) = read_safetensors_header(&path).unwrap();
        prop_assert_eq!(header_meta, meta);
        let info = &infos["layer.bf16"];
        prop_assert_eq!(info.dtype.as_str(), "BF16");
        prop_assert_eq!(info.shape.clone(), shape.iter().map(|&d| d as i64).collect::<Vec<_>>());
        prop_assert_eq!(info.data_offsets.1 - info.data_offsets.0, (common::numel(&shape) * 2) as u64);
    }
}

#[test]
fn views_and_lazy_arrays_are_saved_in_logical_order() {
    let tmp = temp_dir("views");
    let dir = tmp.path();
    let path = dir.join("v.safetensors");
    let x = Array::arange(0.0, 6.0, 1.0, Dtype::F32)
        .unwrap()
        .reshape(&[2, 3])
        .unwrap();
    let t = x.t().unwrap();
    let lazy = x.mul_scalar(2.0).unwrap();
    save_safetensors(&path, [("t", &t), ("lazy", &lazy)], &HashMap::new()).unwrap();
    let loaded = load_safetensors(&path).unwrap();
    assert_eq!(
        loaded.tensors["t"].to_vec::<f32>().unwrap(),
        [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
    );
    assert_eq!(
        loaded.tensors["lazy"].to_vec::<f32>().unwrap(),
        [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    );
    // Saving over an existing file replaces it.
    save_safetensors(&path, [("only", &x)], &HashMap::new()).unwrap();
    let again = load_safetensors(&path).unwrap();
    assert_eq!(again.tensors.keys().collect::<Vec<_>>(), ["only"]);
}

#[test]
fn damaged_files_name_the_file_and_tensor() {
    let tmp = temp_dir("damaged");
    let dir = tmp.path();
    let x = Array::arange(0.0, 64.0, 1.0, Dtype::F32).unwrap();
    let y = Array::ones(&[8], Dtype::BF16).unwrap();
    let good = dir.join("good.safetensors");
    save_safetensors(
        &good,
        [("model.embed", &x), ("model.norm", &y)],
        &HashMap::new(),
    )
    .unwrap();
    let bytes = fs::read(&good).unwrap();

    // Truncated: the last tensor's data runs past the end.
    let truncated = dir.join("truncated.safetensors");
    fs::write(&truncated, &bytes[..bytes.len() - 10]).unwrap();
    let (infos, _) = read_safetensors_header(&good).unwrap();
    let last = infos
        .iter()
        .max_by_key(|(_, i)| i.data_offsets.1)
        .unwrap()
        .0
        .clone();
    assert_file_error(
        load_safetensors(&truncated),
        &truncated,
        &[&last, "truncated"],
    );

    // Cut inside the header.
    let cut = dir.join("cut.safetensors");
    fs::write(&cut, &bytes[..20]).unwrap();
    assert_file_error(load_safetensors(&cut), &cut, &["header"]);

    // Shorter than the length prefix.
    let tiny = dir.join("tiny.safetensors");
    fs::write(&tiny, [1u8, 2, 3]).unwrap();
    assert_file_error(load_safetensors(&tiny), &tiny, &["not a safetensors file"]);

    // Garbage: a plausible length followed by bytes that are not JSON.
    let garbage = dir.join("garbage.safetensors");
    let mut g = 16u64.to_le_bytes().to_vec();
    g.extend_from_slice(&[
        0xff, 0xfe, 0x00, 0x13, 0x37, 0x42, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
        0x09,
    ]);
    fs::write(&garbage, &g).unwrap();
    assert_file_error(load_safetensors(&garbage), &garbage, &["garbage", "JSON"]);

    // Garbage: a huge length.
    let huge = dir.join("huge.safetensors");
    fs::write(&huge, [0xffu8; 64]).unwrap();
    assert_file_error(load_safetensors(&huge), &huge, &["garbage"]);

    // A tensor whose data lies outside the file.
    let oob = dir.join("oob.safetensors");
    write_raw(
        &oob,
        r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#,
        &[0u8; 16],
    );
    assert_file_error(load_safetensors(&oob), &oob, &["`w`", "outside"]);

    // A shape that disagrees with the byte range, and an unknown dtype.
    let mismatch = dir.join("mismatch.safetensors");
    write_raw(
        &mismatch,
        r#"{"b":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#,
        &[0u8; 16],
    );
    assert_file_error(
        load_safetensors(&mismatch),
        &mismatch,
        &["`b`", "needs 12 bytes"],
    );
    let unknown = dir.join("unknown.safetensors");
    write_raw(
        &unknown,
        r#"{"q":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}"#,
        &[0u8; 1],
    );
    assert_file_error(load_safetensors(&unknown), &unknown, &["`q`", "Q4"]);

    // A missing file.
    let missing = dir.join("missing.safetensors");
    assert_file_error(load_safetensors(&missing), &missing, &["cannot open"]);

    // Complex and f64 arrays cannot be saved; the error names the tensor and
    // nothing is written.
    let c = Array::zeros(&[2], Dtype::C64).unwrap();
    let out = dir.join("complex.safetensors");
    assert_file_error(
        save_safetensors(&out, [("z", &c)], &HashMap::new()),
        &out,
        &["`z`", "c64"],
    );
    let d = Array::zeros(&[2], Dtype::F64).unwrap();
    assert_file_error(
        save_safetensors(&out, [("x", &x), ("d", &d)], &HashMap::new()),
        &out,
        &["`d`", "f64"],
    );
    assert!(!out.exists());
    // An F64 tensor written by another library is refused when loading...
    let f64_file = dir.join("f64.safetensors");
    write_raw(
        &f64_file,
        r#"{"d":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}"#,
        &1.5f64.to_le_bytes(),
    );
    assert_file_error(load_safetensors(&f64_file), &f64_file, &["F64"]);
    let c64_file = dir.join("c64.safetensors");
    write_raw(
        &c64_file,
        r#"{"z":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}"#,
        &[0u8; 8],
    );
    // C64 is the other way round: MLX reads it but cannot write it.
    assert_eq!(
        load_safetensors(&c64_file).unwrap().tensors["z"].dtype(),
        Dtype::C64
    );
    // Saving into a missing directory fails cleanly.
    let nowhere = dir.join("no/such/dir/x.safetensors");
    assert!(matches!(
        save_safetensors(&nowhere, [("x", &x)], &HashMap::new()),
        Err(Error::File { .. })
    ));

    // The good file still loads after all that.
    assert_eq!(
        load_safetensors(&good).unwrap().tensors["model.norm"]
            .to_vec::<f32>()
            .unwrap(),
        [1.0; 8]
    );
}

#[test]
fn npy_round_trip() {
    let tmp = temp_dir("npy");
    let dir = tmp.path();
    let cases: Vec<(&str, Array)> = vec![
        (
            "f32",
            Array::arange(0.0, 12.0, 1.0, Dtype::F32)
                .unwrap()
                .reshape(&[3, 4])
                .unwrap(),
        ),
        (
            "f64",
            Array::from_slice(&[1.5f64, -2.25, 1e300], &[3]).unwrap(),
        ),
        (
            "f16",
            Array::from_slice(&[1.5f32, -2.25], &[2, 1])
                .unwrap()
                .as_type(Dtype::F16)
                .unwrap(),
        ),
        (
            "i64",
            Array::from_slice(&[i64::MIN, 0, i64::MAX], &[3]).unwrap(),
        ),
        ("u8", Array::from_slice(&[0u8, 255, 7], &[1, 3]).unwrap()),
        ("bool", Array::from_slice(&[true, false], &[2]).unwrap()),
        ("scalar", Array::scalar(42i32).unwrap()),
        (
            "transposed",
            Array::arange(0.0, 6.0, 1.0, Dtype::I32)
                .unwrap()
                .reshape(&[2, 3])
                .unwrap()
                .t()
                .unwrap(),
        ),
    ];
    for (name, a) in &cases {
        let path = dir.join(format!("{name}.npy"));
        io::save_npy(&path, a).unwrap();
        let b = io::load_npy(&path).unwrap();
        assert_eq!(b.dtype(), a.dtype(), "{name}");
        assert_eq!(b.shape(), a.shape(), "{name}");
        assert_eq!(b.to_bytes().unwrap(), a.to_bytes().unwrap(), "{name}");
    }
    let names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), cases.len(), "temporary files left: {names:?}");
    let bad = dir.join("bad.npy");
    fs::write(&bad, b"not numpy at all").unwrap();
    assert!(matches!(io::load_npy(&bad), Err(Error::File { path, .. }) if path == bad));
}
