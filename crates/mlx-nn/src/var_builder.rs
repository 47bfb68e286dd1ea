//! Path-scoped weight sources for building modules.
//!
//! Modules are constructed from a [`VarBuilder`]: `vb.pp("self_attn").pp("q_proj")`
//! scopes names, and `vb.get("weight", &[out, in])` returns the tensor of
//! that full dotted name, so parameter names are checkpoint keys by
//! construction. The same constructor builds a module from loaded tensors
//! ([`VarBuilder::from_tensors`]) or with fresh random values
//! ([`VarBuilder::random`]).
//!
//! Loading collects problems instead of stopping at the first one: a missing
//! or mis-shaped tensor yields a zero placeholder and a recorded problem, and
//! [`VarBuilder::finish`] reports all of them at once.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::rc::Rc;

use mlx_tensor::{Array, Dtype, random};

use crate::init::Init;
use crate::module::LoadReport;
use crate::{Error, Result};

enum Source {
    Tensors(HashMap<String, Array>),
    Random { seed: u64 },
}

/// `(name, expected shape, found shape)` of a mis-shaped tensor.
type Mismatch = (String, Vec<i32>, Vec<i32>);

struct Shared {
    source: Source,
    used: RefCell<BTreeSet<String>>,
    missing: RefCell<Vec<String>>,
    mismatched: RefCell<Vec<Mismatch>>,
    origin: Option<PathBuf>,
}

/// A path-scoped view of a weight source (cheap to clone).
#[derive(Clone)]
pub struct VarBuilder {
    shared: Rc<Shared>,
    prefix: String,
    dtype: Dtype,
}

impl VarBuilder {
    /// Builds from loaded tensors; floating-point tensors are cast to `dtype`.
    pub fn from_tensors(tensors: HashMap<String, Array>, dtype: Dtype) -> Self {
        Self::new(Source::Tensors(tensors), dtype, None)
    }

    /// Like [`VarBuilder::from_tensors`], remembering where the tensors came from for error messages.
    pub fn from_tensors_at(tensors: HashMap<String, Array>, dtype: Dtype, origin: PathBuf) -> Self {
        Self::new(Source::Tensors(tensors), dtype, Some(origin))
    }

    /// Fresh random parameters: each tensor's key is derived from `seed` and
    /// its full name, so values do not depend on construction order.
    pub fn random(seed: u64, dtype: Dtype) -> Self {
        Self::new(Source::Random { seed }, dtype, None)
    }

    fn new(source: Source, dtype: Dtype, origin: Option<PathBuf>) -> Self {
        VarBuilder {
            shared: Rc::new(Shared {
                source,
                used: RefCell::new(BTreeSet::new()),
                missing: RefCell::new(Vec::new()),
                mismatched: RefCell::new(Vec::new()),
                origin,
            }),
            prefix: String::new(),
            dtype,
        }
    }

    /// A builder scoped one level down: `vb.pp("layers").pp(3)`.
    pub fn pp(&self, name: impl std::fmt::Display) -> VarBuilder {
        let name = name.to_string();
        VarBuilder {
            shared: self.shared.clone(),
            prefix: if self.prefix.is_empty() {
                name
            } else {
                format!("{}.{}", self.prefix, name)
            },
            dtype: self.dtype,
        }
    }

    /// The current prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The dtype new parameters get.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// The same source with another parameter dtype.
    pub fn with_dtype(&self, dtype: Dtype) -> VarBuilder {
        VarBuilder {
            shared: self.shared.clone(),
            prefix: self.prefix.clone(),
            dtype,
        }
    }

    /// Whether this source makes random parameters.
    pub fn is_random(&self) -> bool {
        matches!(self.shared.source, Source::Random { .. })
    }

    fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.prefix, name)
        }
    }

    /// Whether the source has a tensor `name` (always true for random sources).
    pub fn contains(&self, name: &str) -> bool {
        match &self.shared.source {
            Source::Tensors(t) => t.contains_key(&self.full_name(name)),
            Source::Random { .. } => true,
        }
    }

    /// The tensor `name` of `shape`, or, for random sources, a draw from a
    /// normal distribution with standard deviation 0.02.
    pub fn get(&self, name: &str, shape: &[i32]) -> Result<Array> {
        self.get_with_init(
            name,
            shape,
            Init::Normal {
                mean: 0.0,
                std: 0.02,
            },
        )
    }

    /// The tensor `name` of `shape`; random sources draw it with `init`.
    pub fn get_with_init(&self, name: &str, shape: &[i32], init: Init) -> Result<Array> {
        let full = self.full_name(name);
        match &self.shared.source {
            Source::Random { seed } => {
                let key = random::key(name_seed(*seed, &full))?;
                init.sample(shape, self.dtype, &key)
            }
            Source::Tensors(tensors) => {
                self.shared.used.borrow_mut().insert(full.clone());
                match tensors.get(&full) {
                    None => {
                        self.shared.missing.borrow_mut().push(full);
                        Ok(Array::zeros(shape, self.dtype)?)
                    }
                    Some(t) => {
                        let actual = t.shape().0;
                        if actual != shape {
                            self.shared.mismatched.borrow_mut().push((
                                full,
                                shape.to_vec(),
                                actual,
                            ));
                            return Ok(Array::zeros(shape, self.dtype)?);
                        }
                        if t.dtype().is_float() && t.dtype() != self.dtype {
                            Ok(t.as_type(self.dtype)?)
                        } else {
                            Ok(t.clone())
                        }
                    }
                }
            }
        }
    }

    /// The tensor `name` with whatever shape it has (random sources cannot
    /// answer this).
    pub fn get_unchecked(&self, name: &str) -> Result<Array> {
        let full = self.full_name(name);
        match &self.shared.source {
            Source::Tensors(tensors) => {
                self.shared.used.borrow_mut().insert(full.clone());
                tensors
                    .get(&full)
                    .cloned()
                    .ok_or(Error::MissingTensor { name: full })
            }
            Source::Random { .. } => Err(Error::MissingTensor { name: full }),
        }
    }

    /// Ends construction: an error listing every missing and mis-shaped
    /// tensor (and, with `strict`, every tensor nobody asked for); otherwise
    /// the report of unused tensors.
    pub fn finish(&self, strict: bool) -> Result<LoadReport> {
        let used = self.shared.used.borrow();
        let unexpected = match &self.shared.source {
            Source::Tensors(t) => {
                let mut u: Vec<String> = t.keys().filter(|k| !used.contains(*k)).cloned().collect();
                u.sort();
                u
            }
            Source::Random { .. } => Vec::new(),
        };
        let report = LoadReport {
            missing: self.shared.missing.borrow().clone(),
            unexpected,
            mismatched: self.shared.mismatched.borrow().clone(),
        };
        let fatal = !report.missing.is_empty()
            || !report.mismatched.is_empty()
            || (strict && !report.unexpected.is_empty());
        if fatal {
            return Err(Error::LoadWeights {
                path: self.shared.origin.clone(),
                problems: report.problems(),
            });
        }
        Ok(report)
    }
}

/// FNV-1a of the name mixed with the seed: a stable per-tensor seed.
fn name_seed(seed: u64, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
