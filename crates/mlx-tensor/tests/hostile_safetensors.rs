//! Hostile safetensors files: every crafted lie in a header or a file's
//! layout gives `Error::File` naming the file and, where there is one, the
//! tensor or field, from both `read_safetensors_header` and
//! `load_safetensors` (which never hands such a file to MLX).

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::temp_dir;
use mlx_tensor::Error;
use mlx_tensor::io::{load_safetensors, read_safetensors_header};
use tempfile::TempDir;

/// A file `name` in a fresh directory for `tag`, holding `bytes`: the
/// directory's guard (it is removed when dropped) and the file.
fn file_with(tag: &str, name: &str, bytes: &[u8]) -> (TempDir, PathBuf) {
    let dir = temp_dir(tag);
    let path = dir.path().join(name);
    fs::write(&path, bytes).unwrap();
    (dir, path)
}

/// The bytes of a safetensors file: the length prefix, `header`, `data`.
fn safetensors_bytes(header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(data);
    bytes
}

/// A safetensors file with the JSON `header` and `data`.
fn crafted(tag: &str, header: &str, data: &[u8]) -> (TempDir, PathBuf) {
    file_with(
        tag,
        &format!("{tag}.safetensors"),
        &safetensors_bytes(header.as_bytes(), data),
    )
}

/// Both readers refuse `path` with `Error::File` for exactly that path,
/// and the shown message holds the path and every one of `words`.
#[track_caller]
fn assert_refused(path: &Path, words: &[&str]) {
    let header = read_safetensors_header(path).map(|_| ());
    let load = load_safetensors(path).map(|_| ());
    for (reader, result) in [("header", header), ("load", load)] {
        match result {
            Err(Error::File { path: p, message }) => {
                assert_eq!(p, path, "{reader}");
                for w in words {
                    assert!(message.contains(w), "{reader}: `{message}` lacks `{w}`");
                }
                let shown = Error::File { path: p, message }.to_string();
                assert!(shown.contains(&path.display().to_string()), "{shown}");
            }
            other => panic!("{reader}: expected Error::File for {path:?}, got {other:?}"),
        }
    }
}

// The file itself.

#[test]
fn a_zero_length_file_is_refused() {
    let (_dir, path) = file_with("zero", "zero.safetensors", &[]);
    assert_refused(&path, &["not a safetensors file", "0 bytes"]);
}

#[test]
fn a_file_shorter_than_the_length_prefix_is_refused() {
    let (_dir, path) = file_with("seven", "seven.safetensors", &[8, 0, 0, 0, 0, 0, 0]);
    assert_refused(&path, &["not a safetensors file", "7 bytes"]);
}

#[test]
fn a_directory_is_refused() {
    let dir = temp_dir("directory");
    let path = dir.path().join("model.safetensors");
    fs::create_dir(&path).unwrap();
    assert_refused(&path, &["not a regular file"]);
}

// The length prefix.

#[test]
fn a_header_length_of_two_to_the_63_is_refused() {
    let mut bytes = (1u64 << 63).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    let (_dir, path) = file_with("len63", "len63.safetensors", &bytes);
    assert_refused(&path, &["garbage or truncated", &(1u64 << 63).to_string()]);
}

#[test]
fn a_header_length_of_u64_max_is_refused() {
    let mut bytes = u64::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}      ");
    let (_dir, path) = file_with("lenmax", "lenmax.safetensors", &bytes);
    assert_refused(&path, &["garbage or truncated", &u64::MAX.to_string()]);
}

#[test]
fn a_header_one_byte_longer_than_the_file_is_refused() {
    let header = br#"{"w":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}"#;
    let mut bytes = (header.len() as u64 + 1).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    let (_dir, path) = file_with("longer", "longer.safetensors", &bytes);
    assert_refused(&path, &["truncated", &(header.len() + 1).to_string()]);
}

#[test]
fn a_header_over_the_size_limit_is_refused_before_reading_it() {
    let mut bytes = 100_000_001u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    let (_dir, path) = file_with("overlimit", "overlimit.safetensors", &bytes);
    assert_refused(&path, &["garbage", "100000001"]);
}

// The header's JSON.

#[test]
fn a_header_with_invalid_utf8_is_refused() {
    let header = b"{\"w\xff\xfe\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}";
    let (_dir, path) = file_with("utf8", "utf8.safetensors", &safetensors_bytes(header, &[]));
    assert_refused(&path, &["not JSON"]);
}

#[test]
fn a_header_cut_inside_the_json_is_refused() {
    let (_dir, path) = crafted("cutjson", r#"{"w":{"dtype":"F32","sha"#, &[]);
    assert_refused(&path, &["not JSON"]);
}

#[test]
fn a_header_that_is_a_json_array_is_refused() {
    let (_dir, path) = crafted("array", r#"[{"dtype":"F32"}]"#, &[]);
    assert_refused(&path, &["not a JSON object"]);
}

#[test]
fn a_header_that_is_a_json_string_is_refused() {
    let (_dir, path) = crafted("string", r#""weights""#, &[]);
    assert_refused(&path, &["not a JSON object"]);
}

#[test]
fn a_repeated_tensor_name_is_refused() {
    // serde_json alone would keep the second entry and MLX the first.
    let (_dir, path) = crafted(
        "duplicate",
        r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"I32","shape":[1],"data_offsets":[4,8]}}"#,
        &[0u8; 8],
    );
    assert_refused(&path, &["`w`", "twice"]);
}

#[test]
fn a_repeated_field_inside_a_tensor_entry_is_refused() {
    let (_dir, path) = crafted(
        "dupfield",
        r#"{"w":{"dtype":"F32","dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#,
        &[0u8; 4],
    );
    assert_refused(&path, &["`w.dtype`", "twice"]);
}

// The metadata.

#[test]
fn metadata_that_is_not_an_object_is_refused() {
    let (_dir, path) = crafted("metaarray", r#"{"__metadata__":["a"]}"#, &[]);
    assert_refused(&path, &["`__metadata__`", "object"]);
}

#[test]
fn a_metadata_value_that_is_not_a_string_is_refused() {
    let (_dir, path) = crafted("metanum", r#"{"__metadata__":{"step":7}}"#, &[]);
    assert_refused(&path, &["`__metadata__`", "`step`", "string"]);
}

// One tensor's entry.

#[test]
fn an_entry_that_is_not_an_object_is_refused() {
    let (_dir, path) = crafted("notobject", r#"{"w":5}"#, &[]);
    assert_refused(&path, &["tensor `w`", "object"]);
}

#[test]
fn an_unknown_dtype_is_refused() {
    let (_dir, path) = crafted(
        "dtype",
        r#"{"w":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}"#,
        &[0u8; 16],
    );
    assert_refused(&path, &["tensor `w`", "unknown dtype F128"]);
}

#[test]
fn a_dtype_that_is_not_a_string_is_refused() {
    let (_dir, path) = crafted(
        "dtypenum",
        r#"{"w":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}"#,
        &[0u8; 4],
    );
    assert_refused(&path, &["tensor `w`", "dtype must be a string"]);
}

#[test]
fn a_missing_shape_is_refused() {
    let (_dir, path) = crafted(
        "noshape",
        r#"{"w":{"dtype":"F32","data_offsets":[0,4]}}"#,
        &[0u8; 4],
    );
    assert_refused(&path, &["tensor `w`", "missing shape"]);
}

#[test]
fn a_negative_dimension_is_refused() {
    let (_dir, path) = crafted(
        "negdim",
        r#"{"w":{"dtype":"F32","shape":[-1,-4],"data_offsets":[0,16]}}"#,
        &[0u8; 16],
    );
    assert_refused(&path, &["tensor `w`", "dimension -1"]);
}

#[test]
fn a_dimension_beyond_32_bits_is_refused() {
    let (_dir, path) = crafted(
        "bigdim",
        r#"{"w":{"dtype":"U8","shape":[4294967297],"data_offsets":[0,1]}}"#,
        &[0u8; 1],
    );
    assert_refused(&path, &["tensor `w`", "dimension 4294967297"]);
}

#[test]
fn a_fractional_dimension_is_refused() {
    let (_dir, path) = crafted(
        "fracdim",
        r#"{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#,
        &[0u8; 4],
    );
    assert_refused(&path, &["tensor `w`", "non-integer dimension 1.5"]);
}

#[test]
fn a_shape_whose_byte_count_overflows_is_refused() {
    // (2^31 - 1)^3 * 8 bytes does not fit in 64 bits.
    let (_dir, path) = crafted(
        "overflow",
        r#"{"w":{"dtype":"F64","shape":[2147483647,2147483647,2147483647],"data_offsets":[0,8]}}"#,
        &[0u8; 8],
    );
    assert_refused(&path, &["tensor `w`", "overflows"]);
}

#[test]
fn a_shape_that_disagrees_with_the_byte_range_is_refused() {
    // 2 x 3 BF16 elements need 12 bytes; the range gives 16.
    let (_dir, path) = crafted(
        "mismatch",
        r#"{"w":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,16]}}"#,
        &[0u8; 16],
    );
    assert_refused(&path, &["tensor `w`", "needs 12 bytes", "gives 16"]);
}

#[test]
fn a_dtype_that_disagrees_with_the_byte_range_is_refused() {
    // Four elements: 16 bytes as F32, but the header says I64 (32 bytes).
    let (_dir, path) = crafted(
        "dtypesize",
        r#"{"w":{"dtype":"I64","shape":[4],"data_offsets":[0,16]}}"#,
        &[0u8; 16],
    );
    assert_refused(&path, &["tensor `w`", "needs 32 bytes"]);
}

#[test]
fn negative_data_offsets_are_refused() {
    let (_dir, path) = crafted(
        "negoffset",
        r#"{"w":{"dtype":"U8","shape":[4],"data_offsets":[-4,0]}}"#,
        &[0u8; 4],
    );
    assert_refused(&path, &["tensor `w`", "bad data_offsets"]);
}

#[test]
fn data_offsets_of_three_numbers_are_refused() {
    let (_dir, path) = crafted(
        "threeoffsets",
        r#"{"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4,8]}}"#,
        &[0u8; 8],
    );
    assert_refused(&path, &["tensor `w`", "data_offsets"]);
}

#[test]
fn a_range_ending_before_it_starts_is_refused() {
    let (_dir, path) = crafted(
        "backwards",
        r#"{"w":{"dtype":"U8","shape":[4],"data_offsets":[8,4]}}"#,
        &[0u8; 8],
    );
    assert_refused(&path, &["tensor `w`", "8..4"]);
}

#[test]
fn a_range_past_the_end_of_the_file_is_refused() {
    let (_dir, path) = crafted(
        "pastend",
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#,
        &[0u8; 20],
    );
    assert_refused(&path, &["tensor `b`", "8..24", "20 data bytes"]);
}

#[test]
fn a_range_at_u64_max_is_refused() {
    let (_dir, path) = crafted(
        "offsetmax",
        r#"{"w":{"dtype":"U8","shape":[1],"data_offsets":[18446744073709551614,18446744073709551615]}}"#,
        &[0u8; 1],
    );
    assert_refused(&path, &["tensor `w`", "outside"]);
}

#[test]
fn a_file_truncated_inside_the_data_is_refused() {
    let header = r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#;
    let full = safetensors_bytes(header.as_bytes(), &[0u8; 16]);
    let (_dir, path) = file_with(
        "truncated",
        "truncated.safetensors",
        &full[..full.len() - 1],
    );
    assert_refused(&path, &["tensor `w`", "truncated"]);
}

// Several tensors' ranges.

#[test]
fn partly_overlapping_ranges_are_refused() {
    let (_dir, path) = crafted(
        "overlap",
        r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#,
        &[0u8; 24],
    );
    assert_refused(&path, &["`a`", "`b`", "overlaps"]);
}

#[test]
fn two_tensors_on_the_same_bytes_are_refused() {
    let (_dir, path) = crafted(
        "alias",
        r#"{"q":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"k":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}"#,
        &[0u8; 8],
    );
    assert_refused(&path, &["`q`", "`k`", "overlaps"]);
}

#[test]
fn a_range_inside_another_is_refused() {
    let (_dir, path) = crafted(
        "nested",
        r#"{"outer":{"dtype":"U8","shape":[32],"data_offsets":[0,32]},"inner":{"dtype":"U8","shape":[4],"data_offsets":[8,12]},"tail":{"dtype":"U8","shape":[4],"data_offsets":[32,36]}}"#,
        &[0u8; 36],
    );
    assert_refused(&path, &["`outer`", "`inner`", "overlaps"]);
}

// What is allowed stays allowed.

#[test]
fn adjacent_ranges_and_empty_tensors_load_with_their_bytes() {
    let a = [1.0f32, -2.0];
    let b = [7i32, 9, -1];
    let mut data: Vec<u8> = a.iter().flat_map(|x| x.to_le_bytes()).collect();
    data.extend(b.iter().flat_map(|x| x.to_le_bytes()));
    // `empty` takes no bytes, so sharing offset 8 with `b` is no overlap.
    let (_dir, path) = crafted(
        "allowed",
        r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"empty":{"dtype":"F32","shape":[0,3],"data_offsets":[8,8]},"b":{"dtype":"I32","shape":[3],"data_offsets":[8,20]}}        "#,
        &data,
    );
    let (infos, metadata) = read_safetensors_header(&path).unwrap();
    assert_eq!(infos["b"].data_offsets, (8, 20));
    assert_eq!(metadata["format"], "pt");
    let file = load_safetensors(&path).unwrap();
    assert_eq!(file.tensors["a"].to_vec::<f32>().unwrap(), a);
    assert_eq!(file.tensors["b"].to_vec::<i32>().unwrap(), b);
    assert_eq!(file.tensors["empty"].shape().0, [0, 3]);
}
