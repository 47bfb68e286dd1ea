//! Saving and loading prompt caches as safetensors files.
//!
//! The layout is mlx-lm 0.32's: tensor `"{layer}.{field}"` holds field
//! `field` of layer `layer`'s state (keys, values, offset, …), integer
//! fields are stored as scalar arrays and listed as such in the metadata
//! (`"2.{n}.0"` the tensor, `"2.{n}.1"` `scalar`), empty buffers as empty
//! arrays marked `none`; metadata `"1.{layer}"` names each cache's class and
//! `"0.{key}"` holds the caller's metadata. `tests/prompt_cache_mlx_lm.rs`
//! checks both directions against files mlx-lm 0.32.2 wrote and read.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use mlx_tensor::{Array, Dtype, io};

use super::{BatchKVCache, KVCache, LayerCache, RotatingKVCache};
use crate::{Error, Result};

/// One field of a cache's state.
enum Field {
    Array(Option<Array>),
    Int(i32),
}

fn state(cache: &LayerCache) -> Result<(&'static str, Vec<Field>)> {
    Ok(match cache {
        LayerCache::Kv(c) => {
            let (k, v) = if c.is_empty() {
                (None, None)
            } else {
                split(c.keys_and_values()?)
            };
            (
                "KVCache",
                vec![Field::Array(k), Field::Array(v), Field::Int(c.offset)],
            )
        }
        LayerCache::Rotating(c) => (
            "RotatingKVCache",
            vec![
                Field::Array(c.keys.clone()),
                Field::Array(c.values.clone()),
                Field::Int(c.offset),
                Field::Int(c.keep),
                Field::Int(c.max_size),
                Field::Int(c.idx),
            ],
        ),
        LayerCache::Batch(c) => {
            let (k, v) = if c.is_empty() {
                (None, None)
            } else {
                split(c.keys_and_values()?)
            };
            let rows = c.batch_size() as i32;
            (
                "BatchKVCache",
                vec![
                    Field::Array(k),
                    Field::Array(v),
                    Field::Array(Some(Array::from_slice(&c.offsets(), &[rows])?)),
                    Field::Array(Some(Array::from_slice(&c.left_padding, &[rows])?)),
                    Field::Int(c.idx),
                ],
            )
        }
    })
}

fn split((k, v): (Array, Array)) -> (Option<Array>, Option<Array>) {
    (Some(k), Some(v))
}

/// Writes the caches (and `metadata`) to a safetensors file.
pub fn save_prompt_cache(
    path: impl AsRef<Path>,
    caches: &[LayerCache],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    let mut tensors: Vec<(String, Array)> = Vec::new();
    let mut meta: HashMap<String, String> = HashMap::new();
    for (key, value) in metadata {
        meta.insert(format!("0.{key}"), value.clone());
    }
    meta.insert("2.0".into(), String::new());
    let mut scalar_count = 1;
    let mut note = |meta: &mut HashMap<String, String>, name: &str, kind: &str| {
        meta.insert(format!("2.{scalar_count}.0"), name.to_string());
        meta.insert(format!("2.{scalar_count}.1"), kind.to_string());
        scalar_count += 1;
    };
    for (i, cache) in caches.iter().enumerate() {
        let (class, fields) = state(cache)?;
        meta.insert(format!("1.{i}"), class.to_string());
        for (j, field) in fields.into_iter().enumerate() {
            let name = format!("{i}.{j}");
            match field {
                Field::Array(Some(a)) => tensors.push((name, a)),
                Field::Array(None) => {
                    note(&mut meta, &name, "none");
                    tensors.push((name, Array::zeros(&[0], Dtype::F32)?));
                }
                Field::Int(n) => {
                    note(&mut meta, &name, "scalar");
                    tensors.push((name, Array::scalar(n)?));
                }
            }
        }
    }
    io::save_safetensors(path, tensors.iter().map(|(k, v)| (k.as_str(), v)), &meta).map_err(|e| {
        Error::PromptCache {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    })
}

/// Reads caches written by [`save_prompt_cache`] (or by mlx-lm) and the
/// caller's metadata.
pub fn load_prompt_cache(
    path: impl AsRef<Path>,
) -> Result<(Vec<LayerCache>, HashMap<String, String>)> {
    let path = path.as_ref();
    let bad = |message: String| Error::PromptCache {
        path: path.to_path_buf(),
        message,
    };
    let file = io::load_safetensors(path).map_err(|e| bad(e.to_string()))?;
    let mut user = HashMap::new();
    let mut classes: BTreeMap<usize, String> = BTreeMap::new();
    let mut scalar_names: BTreeMap<usize, (Option<String>, Option<String>)> = BTreeMap::new();
    for (key, value) in &file.metadata {
        if let Some(k) = key.strip_prefix("0.") {
            user.insert(k.to_string(), value.clone());
        } else if let Some(i) = key.strip_prefix("1.") {
            let i = i
                .parse::<usize>()
                .map_err(|_| bad(format!("metadata key `{key}` is not a layer index")))?;
            classes.insert(i, value.clone());
        } else if let Some(rest) = key.strip_prefix("2.") {
            let mut parts = rest.split('.');
            if let (Some(j), Some(which)) = (parts.next(), parts.next()) {
                let j = j
                    .parse::<usize>()
                    .map_err(|_| bad(format!("metadata key `{key}` is malformed")))?;
                let entry = scalar_names.entry(j).or_default();
                if which == "0" {
                    entry.0 = Some(value.clone());
                } else {
                    entry.1 = Some(value.clone());
                }
            }
        }
    }
    let mut kinds: HashMap<String, String> = HashMap::new();
    for (name, kind) in scalar_names.into_values() {
        if let (Some(name), Some(kind)) = (name, kind) {
            kinds.insert(name, kind);
        }
    }
    let mut caches = Vec::with_capacity(classes.len());
    for (pos, (i, class)) in classes.iter().enumerate() {
        if pos != *i {
            return Err(bad(format!("no cache class for layer {pos}")));
        }
        let array = |j: usize| -> Result<Option<Array>> {
            let name = format!("{i}.{j}");
            if kinds.get(&name).map(String::as_str) == Some("none") {
                return Ok(None);
            }
            file.tensors
                .get(&name)
                .cloned()
                .map(Some)
                .ok_or_else(|| bad(format!("tensor `{name}` is missing")))
        };
        let int = |j: usize| -> Result<i32> {
            let name = format!("{i}.{j}");
            let a = file
                .tensors
                .get(&name)
                .ok_or_else(|| bad(format!("tensor `{name}` is missing")))?;
            a.item::<i32>()
                .map_err(|e| bad(format!("tensor `{name}`: {e}")))
        };
        let ints = |j: usize| -> Result<Vec<i32>> {
            let name = format!("{i}.{j}");
            let a = file
                .tensors
                .get(&name)
                .ok_or_else(|| bad(format!("tensor `{name}` is missing")))?;
            a.to_vec::<i32>()
                .map_err(|e| bad(format!("tensor `{name}`: {e}")))
        };
        let cache = match class.as_str() {
            "KVCache" => LayerCache::Kv(KVCache {
                keys: array(0)?,
                values: array(1)?,
                offset: int(2)?,
            }),
            "RotatingKVCache" => LayerCache::Rotating(RotatingKVCache {
                keys: array(0)?,
                values: array(1)?,
                offset: int(2)?,
                keep: int(3)?,
                max_size: int(4)?,
                idx: int(5)?,
            }),
            "BatchKVCache" => {
                let idx = int(4)?;
                let left_padding = ints(3)?;
                let offsets = ints(2)?;
                if offsets.len() != left_padding.len()
                    || offsets.iter().zip(&left_padding).any(|(o, p)| o + p != idx)
                {
                    return Err(bad(format!(
                        "layer {i}: offsets {offsets:?} do not match left padding {left_padding:?}"
                    )));
                }
                LayerCache::Batch(BatchKVCache {
                    keys: array(0)?,
                    values: array(1)?,
                    left_padding,
                    idx,
                    right_padding: None,
                    reserved: 0,
                })
            }
            other => return Err(bad(format!("layer {i}: unsupported cache class `{other}`"))),
        };
        check_state(&cache).map_err(|m| bad(format!("layer {i} ({class}): {m}")))?;
        caches.push(cache);
    }
    Ok((caches, user))
}

/// Checks that a loaded state is one a cache can hold: keys and values both
/// present (`[B, heads, S, head_dim]`, same `B`, `heads`, `S`, a float
/// dtype) or both absent, and counters within the stored positions.
fn check_state(cache: &LayerCache) -> std::result::Result<(), String> {
    let (keys, values) = match cache {
        LayerCache::Kv(c) => (&c.keys, &c.values),
        LayerCache::Rotating(c) => (&c.keys, &c.values),
        LayerCache::Batch(c) => (&c.keys, &c.values),
    };
    let stored = match (keys, values) {
        (Some(k), Some(v)) => Some(check_buffers(k, v)?),
        (None, None) => None,
        _ => return Err("keys and values must both be stored or both be empty".into()),
    };
    let positions = stored.map_or(0, |(_, s)| s);
    let within = |what: &str, n: i32| {
        if (0..=positions).contains(&n) {
            Ok(())
        } else {
            Err(format!(
                "{what} {n} is outside the {positions} stored positions"
            ))
        }
    };
    match cache {
        LayerCache::Kv(c) => within("offset", c.offset),
        LayerCache::Rotating(c) => {
            RotatingKVCache::new(c.max_size, c.keep).map_err(|e| e.to_string())?;
            within("index", c.idx)?;
            if c.offset < 0 || (stored.is_none() && c.offset != 0) {
                return Err(format!(
                    "offset {} does not match the stored keys",
                    c.offset
                ));
            }
            Ok(())
        }
        LayerCache::Batch(c) => {
            within("index", c.idx)?;
            if let Some((rows, _)) = stored
                && rows != c.left_padding.len()
            {
                return Err(format!(
                    "{} rows of left padding for {rows} rows of keys",
                    c.left_padding.len()
                ));
            }
            match c.left_padding.iter().find(|&&p| p < 0) {
                Some(p) => Err(format!("left padding {p} is negative")),
                None => Ok(()),
            }
        }
    }
}

/// The rows and positions of a layer's keys and values.
fn check_buffers(keys: &Array, values: &Array) -> std::result::Result<(usize, i32), String> {
    let (k, v) = (keys.shape(), values.shape());
    let (k, v) = (k.dims(), v.dims());
    if k.len() != 4 || v.len() != 4 || k[..3] != v[..3] {
        return Err(format!(
            "keys {} and values {} are not [B, heads, S, head_dim] of the same B, heads and S",
            keys.describe(),
            values.describe()
        ));
    }
    if !keys.dtype().is_float() || !values.dtype().is_float() {
        return Err(format!(
            "keys {} and values {} must be floating point",
            keys.describe(),
            values.describe()
        ));
    }
    let rows =
        usize::try_from(k[0]).map_err(|_| format!("keys {} have no rows", keys.describe()))?;
    Ok((rows, k[2]))
}
