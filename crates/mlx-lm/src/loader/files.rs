//! Finding a checkpoint's weight files and reading their headers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mlx_tensor::io::{TensorInfo, read_safetensors_header};
use serde_json::Value;

use super::problem::CheckpointProblem;
use crate::files::read_json_optional;
use crate::{Error, Result};

/// The single-file weights name.
pub(crate) const SINGLE_FILE: &str = "model.safetensors";
/// The shard index name.
pub(crate) const INDEX_FILE: &str = "model.safetensors.index.json";

/// The shard index's key → file map.
pub(crate) type WeightMap = BTreeMap<String, String>;

/// Where each tensor lives, per the headers.
#[derive(Debug, Default)]
pub(crate) struct HeaderMap {
    /// Tensor name → (file, header entry).
    pub tensors: BTreeMap<String, (PathBuf, TensorInfo)>,
    /// The weight files, in load order.
    pub files: Vec<PathBuf>,
    /// Files that are absent or unreadable (already reported).
    pub bad_files: Vec<PathBuf>,
}

impl HeaderMap {
    /// Whether `key` is known to live in a file already reported as bad
    /// (then its absence is not reported again). Without an index, every
    /// key counts as such once any file is bad.
    pub(crate) fn in_bad_file(
        &self,
        key: &str,
        weight_map: Option<&BTreeMap<String, String>>,
    ) -> bool {
        if self.bad_files.is_empty() {
            return false;
        }
        match weight_map {
            None => true,
            Some(map) => map
                .get(key)
                .is_some_and(|name| self.bad_files.iter().any(|f| f.ends_with(name))),
        }
    }
}

/// The weight files of `dir`: those the shard index names, else
/// `model.safetensors`, else every `*.safetensors` file.
pub(crate) fn weight_files(
    dir: &Path,
    problems: &mut Vec<CheckpointProblem>,
) -> Result<(Vec<PathBuf>, Option<WeightMap>)> {
    let index_path = dir.join(INDEX_FILE);
    if let Some(index) = read_json_optional(&index_path)? {
        let map = index
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| Error::InvalidConfig {
                path: index_path.clone(),
                field: "weight_map".into(),
                message: "missing or not an object".into(),
            })?;
        let mut weight_map = BTreeMap::new();
        for (key, file) in map {
            let file = file.as_str().ok_or_else(|| Error::InvalidConfig {
                path: index_path.clone(),
                field: format!("weight_map.{key}"),
                message: "not a file name".into(),
            })?;
            if !is_plain_file_name(file) {
                return Err(Error::InvalidConfig {
                    path: index_path.clone(),
                    field: format!("weight_map.{key}"),
                    message: format!("`{file}` is not a file name inside the checkpoint directory"),
                });
            }
            weight_map.insert(key.clone(), file.to_string());
        }
        let mut names: Vec<&String> = weight_map.values().collect();
        names.sort();
        names.dedup();
        let files = names.into_iter().map(|n| dir.join(n)).collect();
        return Ok((files, Some(weight_map)));
    }
    let single = dir.join(SINGLE_FILE);
    if single.exists() {
        return Ok((vec![single], None));
    }
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        problems.push(CheckpointProblem::BadFile {
            file: single,
            message: format!(
                "no weights: neither {INDEX_FILE}, {SINGLE_FILE} nor any *.safetensors file"
            ),
        });
    }
    Ok((files, None))
}

/// Whether `name` is one plain file name: not empty, absolute, `..` or a
/// path through other directories (a shard index may not point outside
/// its checkpoint directory).
fn is_plain_file_name(name: &str) -> bool {
    let mut components = Path::new(name).components();
    matches!(
        (components.next(), components.next()),
        (Some(std::path::Component::Normal(_)), None)
    ) && !name.contains('/')
        && !name.contains('\\')
}

/// Reads every file's header, recording unreadable files, duplicate keys
/// and disagreements with the shard index as problems.
pub(crate) fn read_headers(
    files: &[PathBuf],
    weight_map: Option<&BTreeMap<String, String>>,
    problems: &mut Vec<CheckpointProblem>,
) -> HeaderMap {
    let mut out = HeaderMap::default();
    for file in files {
        if !file.exists() {
            problems.push(CheckpointProblem::BadFile {
                file: file.clone(),
                message: "named by the shard index but not present".into(),
            });
            out.bad_files.push(file.clone());
            continue;
        }
        match read_safetensors_header(file) {
            Err(e) => {
                problems.push(CheckpointProblem::BadFile {
                    file: file.clone(),
                    message: header_message(e),
                });
                out.bad_files.push(file.clone());
            }
            Ok((tensors, _)) => {
                out.files.push(file.clone());
                for (key, info) in tensors {
                    if let Some((first, _)) = out.tensors.get(&key) {
                        problems.push(CheckpointProblem::DuplicateTensor {
                            key: key.clone(),
                            first: first.clone(),
                            second: file.clone(),
                        });
                        continue;
                    }
                    out.tensors.insert(key, (file.clone(), info));
                }
            }
        }
    }
    if let Some(map) = weight_map {
        for (key, name) in map {
            match out.tensors.get(key) {
                Some((file, _))
                    if file
                        .file_name()
                        .is_some_and(|f| f.to_string_lossy() == name.as_str()) => {}
                Some((file, _)) => problems.push(CheckpointProblem::IndexMismatch {
                    key: key.clone(),
                    message: format!(
                        "the index names {name}, the tensor is in {}",
                        file.display()
                    ),
                }),
                None if out.bad_files.iter().any(|f| f.ends_with(name)) => {}
                None => problems.push(CheckpointProblem::IndexMismatch {
                    key: key.clone(),
                    message: format!("the index names {name}, which has no such tensor"),
                }),
            }
        }
    }
    out
}

/// The message of a header error without the path (the problem names it).
fn header_message(e: mlx_tensor::Error) -> String {
    match e {
        mlx_tensor::Error::File { message, .. } => message,
        other => other.to_string(),
    }
}
