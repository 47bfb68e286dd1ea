//! Reading and writing arrays: safetensors (with metadata) and `.npy`.
//!
//! Loading checks the file's header before handing it to MLX, so a truncated
//! file or a garbage header is a clear [`Error::File`] naming the file (and
//! the tensor), not a failure at evaluation time. Saving writes a temporary
//! file in the same directory and renames it over the target, so an
//! interrupted save never destroys an existing file.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use mlx_ffi::ffi;

use crate::ops::to_array_vec;
use crate::{Array, Dtype, Error, HostArray, Result};

/// The arrays and metadata of a safetensors file.
#[derive(Debug, Default)]
pub struct Safetensors {
    /// Tensors by name.
    pub tensors: HashMap<String, Array>,
    /// The `__metadata__` entries.
    pub metadata: HashMap<String, String>,
}

/// What the header says about one tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Element type name as written in the header (`F32`, `BF16`, …).
    pub dtype: String,
    /// The shape.
    pub shape: Vec<i64>,
    /// Byte range in the data section.
    pub data_offsets: (u64, u64),
}

fn file_error(path: &Path, message: impl Into<String>) -> Error {
    Error::File {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads and validates the header of a safetensors file without loading any
/// tensor data: tensor names, dtypes, shapes and offsets, and metadata.
pub fn read_safetensors_header(
    path: &Path,
) -> Result<(BTreeMap<String, TensorInfo>, HashMap<String, String>)> {
    let mut file =
        fs::File::open(path).map_err(|e| file_error(path, format!("cannot open: {e}")))?;
    let file_len = file
        .metadata()
        .map_err(|e| file_error(path, e.to_string()))?
        .len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes).map_err(|_| {
        file_error(
            path,
            format!("not a safetensors file: only {file_len} bytes"),
        )
    })?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > 100_000_000 || header_len + 8 > file_len {
        return Err(file_error(
            path,
            format!("garbage or truncated safetensors header: it claims {header_len} bytes, the file has {file_len}"),
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| file_error(path, format!("reading header: {e}")))?;
    let json: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| file_error(path, format!("garbage safetensors header (not JSON): {e}")))?;
    let object = json
        .as_object()
        .ok_or_else(|| file_error(path, "garbage safetensors header: not a JSON object"))?;
    let data_len = file_len - 8 - header_len;
    let mut tensors = BTreeMap::new();
    let mut metadata = HashMap::new();
    for (name, value) in object {
        if name == "__metadata__" {
            if let Some(map) = value.as_object() {
                for (k, v) in map {
                    metadata.insert(
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    );
                }
            }
            continue;
        }
        let bad = |what: &str| file_error(path, format!("tensor `{name}`: {what}"));
        let dtype = value
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| bad("missing dtype"))?;
        let shape: Vec<i64> = value
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| bad("missing shape"))?
            .iter()
            .map(|d| d.as_i64().ok_or_else(|| bad("non-integer dimension")))
            .collect::<Result<_>>()?;
        let offsets = value
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .filter(|o| o.len() == 2)
            .ok_or_else(|| bad("missing data_offsets"))?;
        let start = offsets[0].as_u64().ok_or_else(|| bad("bad data_offsets"))?;
        let end = offsets[1].as_u64().ok_or_else(|| bad("bad data_offsets"))?;
        if end < start || end > data_len {
            return Err(bad(&format!(
                "data {start}..{end} lies outside the file's {data_len} data bytes (truncated file?)"
            )));
        }
        let element_size = match dtype {
            "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" => 1,
            "U16" | "I16" | "F16" | "BF16" => 2,
            "U32" | "I32" | "F32" => 4,
            "U64" | "I64" | "F64" | "C64" => 8,
            other => return Err(bad(&format!("unknown dtype {other}"))),
        };
        let numel: i64 = shape.iter().product();
        if numel < 0 || (numel as u64) * element_size != end - start {
            return Err(bad(&format!(
                "shape {shape:?} of {dtype} needs {} bytes, the header gives {}",
                numel.max(0) as u64 * element_size,
                end - start
            )));
        }
        tensors.insert(
            name.clone(),
            TensorInfo {
                dtype: dtype.to_string(),
                shape,
                data_offsets: (start, end),
            },
        );
    }
    Ok((tensors, metadata))
}

/// Loads every tensor and the metadata of a safetensors file. The arrays are
/// lazy: their data is read when they are evaluated.
pub fn load_safetensors(path: impl AsRef<Path>) -> Result<Safetensors> {
    let path = path.as_ref();
    read_safetensors_header(path)?;
    let path_str = path
        .to_str()
        .ok_or_else(|| file_error(path, "path is not valid UTF-8"))?;
    let mut meta = Vec::new();
    let named =
        ffi::load_safetensors(path_str, &mut meta).map_err(|e| file_error(path, e.what()))?;
    let mut out = Safetensors::default();
    for entry in named {
        out.tensors.insert(entry.name, Array::from_raw(entry.array));
    }
    for entry in meta {
        out.metadata.insert(entry.key, entry.value);
    }
    Ok(out)
}

/// Writes named arrays (and metadata) to a safetensors file, atomically.
/// Every dtype but `F64` and `C64` can be saved: MLX 0.32.4 writes neither
/// to safetensors files (and reads no `F64`), so they give [`Error::File`].
pub fn save_safetensors<'a>(
    path: impl AsRef<Path>,
    tensors: impl IntoIterator<Item = (&'a str, &'a Array)>,
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    let mut names = Vec::new();
    let mut arrays = Vec::new();
    for (name, array) in tensors {
        // MLX 0.32.4's safetensors writer has no C64 or F64.
        if matches!(array.dtype(), Dtype::C64 | Dtype::F64) {
            return Err(file_error(
                path,
                format!(
                    "tensor `{name}`: {} arrays cannot be saved as safetensors",
                    array.dtype()
                ),
            ));
        }
        names.push(name.to_string());
        arrays.push(array);
    }
    let list = to_array_vec(&arrays);
    let list = list
        .as_ref()
        .ok_or_else(|| file_error(path, "internal: null array list"))?;
    let meta: Vec<ffi::MetadataEntry> = metadata
        .iter()
        .map(|(k, v)| ffi::MetadataEntry {
            key: k.clone(),
            value: v.clone(),
        })
        .collect();
    write_atomically(path, temporary_sibling(path), |tmp| {
        ffi::save_safetensors(tmp, &names, list, &meta).map_err(|e| e.what().to_string())
    })
}

/// Writes named host arrays (and metadata) to a safetensors file,
/// atomically, straight from host memory: unlike [`save_safetensors`] no
/// MLX array is created, so saving state kept on the host takes no device
/// memory. The file is an ordinary safetensors file ([`load_safetensors`]
/// reads it).
pub fn save_host_safetensors<'a>(
    path: impl AsRef<Path>,
    tensors: impl IntoIterator<Item = (&'a str, &'a HostArray)>,
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    let tensors: Vec<(&str, &HostArray)> = tensors.into_iter().collect();
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        let meta: serde_json::Map<String, serde_json::Value> = metadata
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        header.insert("__metadata__".into(), serde_json::Value::Object(meta));
    }
    let mut offset = 0usize;
    for (name, tensor) in &tensors {
        if *name == "__metadata__" || header.contains_key(*name) {
            return Err(file_error(
                path,
                format!("tensor name `{name}` is reserved or repeated"),
            ));
        }
        let end = offset + tensor.nbytes();
        header.insert(
            name.to_string(),
            serde_json::json!({
                "dtype": tensor.dtype().safetensors_name(),
                "shape": tensor.shape(),
                "data_offsets": [offset, end],
            }),
        );
        offset = end;
    }
    let mut header = serde_json::to_vec(&serde_json::Value::Object(header))
        .map_err(|e| file_error(path, format!("encoding the header: {e}")))?;
    // The data section starts 8-byte aligned, as safetensors writers do.
    while header.len() % 8 != 0 {
        header.push(b' ');
    }
    write_atomically(path, temporary_sibling(path), |tmp| {
        let written = (|| -> std::io::Result<()> {
            let mut out = std::io::BufWriter::new(fs::File::create(tmp)?);
            out.write_all(&(header.len() as u64).to_le_bytes())?;
            out.write_all(&header)?;
            for (_, tensor) in &tensors {
                out.write_all(tensor.bytes())?;
            }
            out.into_inner().map_err(|e| e.into_error())?.sync_all()
        })();
        written.map_err(|e| format!("writing: {e}"))
    })
}

/// Loads a `.npy` file.
pub fn load_npy(path: impl AsRef<Path>) -> Result<Array> {
    let path = path.as_ref();
    let path_str = path
        .to_str()
        .ok_or_else(|| file_error(path, "path is not valid UTF-8"))?;
    ffi::load_npy(path_str)
        .map(Array::from_raw)
        .map_err(|e| file_error(path, e.what()))
}

/// Writes a `.npy` file, atomically.
pub fn save_npy(path: impl AsRef<Path>, array: &Array) -> Result<()> {
    let path = path.as_ref();
    write_atomically(path, temporary_sibling(path).with_extension("npy"), |tmp| {
        ffi::save_npy(tmp, array.raw()).map_err(|e| e.what().to_string())
    })
}

/// Runs `write` on the temporary file `tmp` (a sibling of `path`), then
/// renames it over `path`; on any failure the temporary file is removed
/// and the error names `path`, so an existing file is never lost.
fn write_atomically(
    path: &Path,
    tmp: PathBuf,
    write: impl FnOnce(&str) -> std::result::Result<(), String>,
) -> Result<()> {
    let tmp_str = tmp
        .to_str()
        .ok_or_else(|| file_error(path, "path is not valid UTF-8"))?;
    if let Err(message) = write(tmp_str) {
        let _ = fs::remove_file(&tmp);
        return Err(file_error(path, message));
    }
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        file_error(path, format!("renaming the finished file into place: {e}"))
    })
}

fn temporary_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}.safetensors", std::process::id()))
}
