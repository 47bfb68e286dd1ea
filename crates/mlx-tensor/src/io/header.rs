//! Reading and checking a safetensors header before any tensor is loaded.
//!
//! Every way a header can lie is refused with an [`Error::File`] naming the
//! file and, where there is one, the tensor: a length prefix past the end of
//! the file, a header that is not a JSON object (or repeats a key), an
//! unknown dtype, a negative or oversized dimension, a byte range outside the
//! data section or of the wrong length for its shape and dtype (computed
//! without overflow), and byte ranges that overlap.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use super::strict_json::from_slice_unique_keys;
use super::{TensorInfo, file_error};
use crate::{Error, Result};

/// The largest header accepted (the format's own readers use the same).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// The key of the metadata entry.
const METADATA_KEY: &str = "__metadata__";

/// Reads and validates the header of a safetensors file without loading any
/// tensor data: tensor names, dtypes, shapes and offsets, and metadata.
pub fn read_safetensors_header(
    path: &Path,
) -> Result<(BTreeMap<String, TensorInfo>, HashMap<String, String>)> {
    let (header, data_len) = read_header_bytes(path)?;
    let object = parse_header(path, &header)?;
    let mut tensors = BTreeMap::new();
    let mut metadata = HashMap::new();
    for (name, value) in object {
        if name == METADATA_KEY {
            metadata = read_metadata(path, value)?;
            continue;
        }
        let info = read_tensor_info(path, &name, &value, data_len)?;
        tensors.insert(name, info);
    }
    check_no_overlap(path, &tensors)?;
    Ok((tensors, metadata))
}

/// The header's bytes and the length of the data section after it.
fn read_header_bytes(path: &Path) -> Result<(Vec<u8>, u64)> {
    let mut file =
        fs::File::open(path).map_err(|e| file_error(path, format!("cannot open: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| file_error(path, format!("cannot read its metadata: {e}")))?;
    if !meta.is_file() {
        return Err(file_error(
            path,
            "not a safetensors file: not a regular file (a directory?)",
        ));
    }
    let file_len = meta.len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes).map_err(|_| {
        file_error(
            path,
            format!("not a safetensors file: only {file_len} bytes"),
        )
    })?;
    let header_len = u64::from_le_bytes(len_bytes);
    let room = file_len.saturating_sub(8);
    if header_len > MAX_HEADER_BYTES || header_len > room {
        return Err(file_error(
            path,
            format!(
                "garbage or truncated safetensors header: it claims {header_len} bytes, the file has {file_len}"
            ),
        ));
    }
    let capacity = usize::try_from(header_len)
        .map_err(|_| file_error(path, format!("header of {header_len} bytes is too large")))?;
    let mut header = vec![0u8; capacity];
    file.read_exact(&mut header)
        .map_err(|e| file_error(path, format!("reading header: {e}")))?;
    Ok((header, room - header_len))
}

/// The header as a JSON object, its keys in file order checked to be
/// distinct at every depth.
fn parse_header(path: &Path, header: &[u8]) -> Result<serde_json::Map<String, Value>> {
    let json = from_slice_unique_keys(header).map_err(|e| {
        let message = match e.classify() {
            serde_json::error::Category::Data => format!("invalid safetensors header: {e}"),
            _ => format!("garbage safetensors header (not JSON): {e}"),
        };
        file_error(path, message)
    })?;
    match json {
        Value::Object(object) => Ok(object),
        _ => Err(file_error(
            path,
            "garbage safetensors header: not a JSON object",
        )),
    }
}

/// The `__metadata__` entry: an object of strings (MLX writes `null` for
/// none).
fn read_metadata(path: &Path, value: Value) -> Result<HashMap<String, String>> {
    let map = match value {
        Value::Object(map) => map,
        Value::Null => return Ok(HashMap::new()),
        _ => {
            return Err(file_error(
                path,
                format!("`{METADATA_KEY}` must be an object of strings"),
            ));
        }
    };
    map.into_iter()
        .map(|(key, value)| match value {
            Value::String(text) => Ok((key, text)),
            other => Err(file_error(
                path,
                format!("`{METADATA_KEY}` entry `{key}` must be a string, got {other}"),
            )),
        })
        .collect()
}

/// One tensor's entry, checked against itself and the data section.
fn read_tensor_info(path: &Path, name: &str, value: &Value, data_len: u64) -> Result<TensorInfo> {
    let bad = |what: String| file_error(path, format!("tensor `{name}`: {what}"));
    if !value.is_object() {
        return Err(bad(format!("the entry must be an object, got {value}")));
    }
    let dtype = match value.get("dtype") {
        Some(Value::String(dtype)) => dtype.as_str(),
        Some(other) => return Err(bad(format!("dtype must be a string, got {other}"))),
        None => return Err(bad("missing dtype".into())),
    };
    let element_size = element_size(dtype).ok_or_else(|| bad(format!("unknown dtype {dtype}")))?;
    let shape: Vec<i64> = value
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("missing shape".into()))?
        .iter()
        .map(|d| match d.as_i64() {
            Some(d) if (0..=i64::from(i32::MAX)).contains(&d) => Ok(d),
            Some(d) => Err(bad(format!(
                "dimension {d} is out of range (0 to {})",
                i32::MAX
            ))),
            None => Err(bad(format!("non-integer dimension {d}"))),
        })
        .collect::<Result<_>>()?;
    let offsets = value
        .get("data_offsets")
        .and_then(Value::as_array)
        .filter(|o| o.len() == 2)
        .ok_or_else(|| bad("missing data_offsets".into()))?;
    let offset = |i: usize| {
        offsets[i].as_u64().ok_or_else(|| {
            bad(format!(
                "bad data_offsets {}",
                Value::Array(offsets.clone())
            ))
        })
    };
    let (start, end) = (offset(0)?, offset(1)?);
    if end < start || end > data_len {
        return Err(bad(format!(
            "data {start}..{end} lies outside the file's {data_len} data bytes (truncated file?)"
        )));
    }
    let needed = shape
        .iter()
        .try_fold(element_size, |acc, &d| {
            u64::try_from(d).ok().and_then(|d| acc.checked_mul(d))
        })
        .ok_or_else(|| bad(format!("shape {shape:?} of {dtype} overflows a byte count")))?;
    if needed != end - start {
        return Err(bad(format!(
            "shape {shape:?} of {dtype} needs {needed} bytes, the header gives {}",
            end - start
        )));
    }
    Ok(TensorInfo {
        dtype: dtype.to_string(),
        shape,
        data_offsets: (start, end),
    })
}

/// Bytes per element of a safetensors dtype name.
fn element_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" => 1,
        "U16" | "I16" | "F16" | "BF16" => 2,
        "U32" | "I32" | "F32" => 4,
        "U64" | "I64" | "F64" | "C64" => 8,
        _ => return None,
    })
}

/// No two tensors share a byte (empty tensors take no bytes).
fn check_no_overlap(path: &Path, tensors: &BTreeMap<String, TensorInfo>) -> Result<()> {
    let mut ranges: Vec<(u64, u64, &str)> = tensors
        .iter()
        .filter(|(_, info)| info.data_offsets.0 < info.data_offsets.1)
        .map(|(name, info)| (info.data_offsets.0, info.data_offsets.1, name.as_str()))
        .collect();
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        let ((a_start, a_end, a), (b_start, b_end, b)) = (pair[0], pair[1]);
        if b_start < a_end {
            return Err(overlap_error(
                path,
                (a, a_start, a_end),
                (b, b_start, b_end),
            ));
        }
    }
    Ok(())
}

fn overlap_error(path: &Path, a: (&str, u64, u64), b: (&str, u64, u64)) -> Error {
    file_error(
        path,
        format!(
            "tensor `{}` (bytes {}..{}) overlaps tensor `{}` (bytes {}..{})",
            b.0, b.1, b.2, a.0, a.1, a.2
        ),
    )
}
