//! Reading and writing arrays: safetensors (with metadata) and `.npy`.
//!
//! Loading checks the file's header before handing it to MLX, so a truncated
//! file, a garbage header, overlapping or mis-sized byte ranges, unknown
//! dtypes or repeated names are a clear [`Error::File`] naming the file (and
//! the tensor), not a failure at evaluation time or silently wrong data. Saving writes a temporary
//! file in the same directory and renames it over the target, so an
//! interrupted save never destroys an existing file.

mod header;
mod strict_json;

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use mlx_ffi::ffi;

use crate::ops::to_array_vec;
use crate::{Array, Dtype, Error, HostArray, Result};

pub use header::read_safetensors_header;

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
