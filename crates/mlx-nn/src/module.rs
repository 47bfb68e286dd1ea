//! Modules and their parameter trees.
//!
//! A module's parameters form a tree whose dotted paths
//! (`model.layers.3.self_attn.q_proj.weight`) are exactly the tensor names of
//! Hugging Face safetensors checkpoints. Loading, saving, freezing, gradients
//! and optimizer state are all keyed by these names.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use mlx_tensor::{Array, Dtype, io};

use crate::{Error, Result};

/// Parameters (or gradients, or optimizer slots) by dotted name.
pub type ParamMap = BTreeMap<String, Array>;

/// A parameter: an array plus whether training updates it.
#[derive(Debug, Clone)]
pub struct Param {
    /// The current value.
    pub value: Array,
    /// Frozen parameters get no gradient and no update.
    pub frozen: bool,
}

impl Param {
    /// A trainable parameter.
    pub fn new(value: Array) -> Self {
        Param {
            value,
            frozen: false,
        }
    }
}

impl From<Array> for Param {
    fn from(value: Array) -> Self {
        Param::new(value)
    }
}

impl std::ops::Deref for Param {
    type Target = Array;
    fn deref(&self) -> &Array {
        &self.value
    }
}

/// Walks a module's parameters with their full dotted names.
pub struct Visitor<'v, 'a> {
    prefix: String,
    f: &'v mut dyn FnMut(&str, &'a Param),
}

impl<'v, 'a> Visitor<'v, 'a> {
    /// Reports parameter `name` (relative to the current prefix).
    pub fn param(&mut self, name: &str, p: &'a Param) {
        let full = join(&self.prefix, name);
        (self.f)(&full, p);
    }

    /// Descends into a child module under `name`.
    pub fn child<M: Module + ?Sized>(&mut self, name: &str, m: &'a M) {
        let saved = std::mem::take(&mut self.prefix);
        self.prefix = join(&saved, name);
        m.visit(self);
        self.prefix = saved;
    }

    /// Descends into a list of child modules named `name.0`, `name.1`, …
    pub fn children<M: Module>(&mut self, name: &str, ms: &'a [M]) {
        for (i, m) in ms.iter().enumerate() {
            self.child(&format!("{name}.{i}"), m);
        }
    }
}

/// Walks a module's parameters mutably with their full dotted names.
pub struct VisitorMut<'v> {
    prefix: String,
    f: &'v mut dyn FnMut(&str, &mut Param),
}

impl<'v> VisitorMut<'v> {
    /// Reports parameter `name` (relative to the current prefix).
    pub fn param(&mut self, name: &str, p: &mut Param) {
        let full = join(&self.prefix, name);
        (self.f)(&full, p);
    }

    /// Descends into a child module under `name`.
    pub fn child<M: Module + ?Sized>(&mut self, name: &str, m: &mut M) {
        let saved = std::mem::take(&mut self.prefix);
        self.prefix = join(&saved, name);
        m.visit_mut(self);
        self.prefix = saved;
    }

    /// Descends into a list of child modules named `name.0`, `name.1`, …
    pub fn children<M: Module>(&mut self, name: &str, ms: &mut [M]) {
        for (i, m) in ms.iter_mut().enumerate() {
            self.child(&format!("{name}.{i}"), m);
        }
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else if name.is_empty() {
        prefix.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Something with named parameters. Implement the two visitors (they must
/// report the same names in the same order); everything else comes from
/// [`ModuleExt`].
pub trait Module {
    /// Reports every parameter.
    fn visit<'a>(&'a self, v: &mut Visitor<'_, 'a>);
    /// Reports every parameter mutably.
    fn visit_mut(&mut self, v: &mut VisitorMut<'_>);
}

/// What loading weights into an existing module found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// Module parameters the source did not have.
    pub missing: Vec<String>,
    /// Source tensors the module has no parameter for.
    pub unexpected: Vec<String>,
    /// `(name, expected, found)` for tensors of the wrong shape.
    pub mismatched: Vec<(String, Vec<i32>, Vec<i32>)>,
}

impl LoadReport {
    /// Whether everything matched.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }

    /// One line per problem.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for name in &self.missing {
            out.push(format!("missing tensor `{name}`"));
        }
        for name in &self.unexpected {
            out.push(format!("unexpected tensor `{name}`"));
        }
        for (name, expected, actual) in &self.mismatched {
            out.push(format!(
                "tensor `{name}` has shape {actual:?}, expected {expected:?}"
            ));
        }
        out
    }
}

/// Operations every [`Module`] gets.
pub trait ModuleExt: Module {
    /// Visits every `(name, param)` pair.
    fn for_each_param<'a>(&'a self, mut f: impl FnMut(&str, &'a Param)) {
        let mut v = Visitor {
            prefix: String::new(),
            f: &mut f,
        };
        self.visit(&mut v);
    }

    /// Visits every `(name, param)` pair mutably.
    fn for_each_param_mut(&mut self, mut f: impl FnMut(&str, &mut Param)) {
        let mut v = VisitorMut {
            prefix: String::new(),
            f: &mut f,
        };
        self.visit_mut(&mut v);
    }

    /// All parameters by name.
    fn parameters(&self) -> ParamMap {
        let mut out = ParamMap::new();
        self.for_each_param(|name, p| {
            out.insert(name.to_string(), p.value.clone());
        });
        out
    }

    /// The names of all parameters, in visiting order.
    fn parameter_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.for_each_param(|name, _| out.push(name.to_string()));
        out
    }

    /// The parameters that are not frozen.
    fn trainable_parameters(&self) -> ParamMap {
        let mut out = ParamMap::new();
        self.for_each_param(|name, p| {
            if !p.frozen {
                out.insert(name.to_string(), p.value.clone());
            }
        });
        out
    }

    /// Total number of parameter elements.
    fn num_parameters(&self) -> usize {
        let mut n = 0;
        self.for_each_param(|_, p| n += p.value.size());
        n
    }

    /// Freezes (or unfreezes) every parameter whose name satisfies `pred`.
    fn set_frozen_where(&mut self, frozen: bool, pred: impl Fn(&str) -> bool) {
        self.for_each_param_mut(|name, p| {
            if pred(name) {
                p.frozen = frozen;
            }
        });
    }

    /// Freezes every parameter.
    fn freeze(&mut self) {
        self.set_frozen_where(true, |_| true);
    }

    /// Unfreezes every parameter.
    fn unfreeze(&mut self) {
        self.set_frozen_where(false, |_| true);
    }

    /// Freezes the parameters under a dotted path prefix (`model.embed_tokens`).
    fn freeze_path(&mut self, path: &str) {
        let prefix = format!("{path}.");
        self.set_frozen_where(true, |name| name == path || name.starts_with(&prefix));
    }

    /// Replaces parameters by name. Every name must exist; shapes must match.
    fn update(&mut self, values: &ParamMap) -> Result<()> {
        let mut seen = 0usize;
        let mut problem: Option<Error> = None;
        self.for_each_param_mut(|name, p| {
            if let Some(v) = values.get(name) {
                seen += 1;
                let (old, new) = (p.value.shape(), v.shape());
                if old != new && problem.is_none() {
                    problem = Some(Error::ShapeMismatch {
                        name: name.to_string(),
                        expected: old.0,
                        actual: new.0,
                    });
                    return;
                }
                p.value = v.clone();
            }
        });
        if let Some(e) = problem {
            return Err(e);
        }
        if seen != values.len() {
            let names = self.parameter_names();
            if let Some(unknown) = values.keys().find(|k| !names.contains(k)) {
                return Err(Error::UnknownParameter {
                    name: unknown.clone(),
                });
            }
        }
        Ok(())
    }

    /// Loads tensors into the matching parameters (cast to each parameter's
    /// dtype). `strict` makes any missing, unexpected or mis-shaped key an
    /// error listing all of them; otherwise mis-shaped keys still fail and the
    /// report lists what was skipped.
    fn load_tensors(
        &mut self,
        tensors: &HashMap<String, Array>,
        strict: bool,
    ) -> Result<LoadReport> {
        let mut report = LoadReport::default();
        let mut used = std::collections::HashSet::new();
        let mut cast_error = None;
        self.for_each_param_mut(|name, p| match tensors.get(name) {
            None => report.missing.push(name.to_string()),
            Some(t) => {
                used.insert(name.to_string());
                let (expected, actual) = (p.value.shape(), t.shape());
                if expected != actual {
                    report
                        .mismatched
                        .push((name.to_string(), expected.0, actual.0));
                } else {
                    match t.as_type(p.value.dtype()) {
                        Ok(v) => p.value = v,
                        Err(e) => cast_error = Some(e),
                    }
                }
            }
        });
        if let Some(e) = cast_error {
            return Err(e.into());
        }
        let mut unexpected: Vec<String> = tensors
            .keys()
            .filter(|k| !used.contains(*k))
            .cloned()
            .collect();
        unexpected.sort();
        report.unexpected = unexpected;
        if !report.mismatched.is_empty() || (strict && !report.is_clean()) {
            return Err(Error::LoadWeights {
                path: None,
                problems: report.problems(),
            });
        }
        Ok(report)
    }

    /// Loads a safetensors file (see [`ModuleExt::load_tensors`]); errors name the file.
    fn load_weights(&mut self, path: impl AsRef<Path>, strict: bool) -> Result<LoadReport> {
        let path = path.as_ref();
        let file = io::load_safetensors(path)?;
        self.load_tensors(&file.tensors, strict)
            .map_err(|e| match e {
                Error::LoadWeights { problems, .. } => Error::LoadWeights {
                    path: Some(path.to_path_buf()),
                    problems,
                },
                other => other,
            })
    }

    /// Saves every parameter to a safetensors file (atomically).
    fn save_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        let params = self.parameters();
        io::save_safetensors(
            path,
            params.iter().map(|(k, v)| (k.as_str(), v)),
            &HashMap::new(),
        )?;
        Ok(())
    }

    /// Casts every floating-point parameter to `dtype`.
    fn cast(&mut self, dtype: Dtype) -> Result<()> {
        let mut err = None;
        self.for_each_param_mut(|_, p| {
            if p.value.dtype().is_float() && err.is_none() {
                match p.value.as_type(dtype) {
                    Ok(v) => p.value = v,
                    Err(e) => err = Some(e),
                }
            }
        });
        match err {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Evaluates every parameter (after an update, before timing or saving).
    fn eval_params(&self) -> Result<()> {
        let params = self.parameters();
        let refs: Vec<&Array> = params.values().collect();
        mlx_tensor::eval(&refs)?;
        Ok(())
    }
}

impl<M: Module + ?Sized> ModuleExt for M {}

impl<M: Module> Module for Vec<M> {
    fn visit<'a>(&'a self, v: &mut Visitor<'_, 'a>) {
        for (i, m) in self.iter().enumerate() {
            v.child(&i.to_string(), m);
        }
    }
    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        for (i, m) in self.iter_mut().enumerate() {
            v.child(&i.to_string(), m);
        }
    }
}

impl<M: Module> Module for Option<M> {
    fn visit<'a>(&'a self, v: &mut Visitor<'_, 'a>) {
        if let Some(m) = self {
            m.visit(v);
        }
    }
    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        if let Some(m) = self {
            m.visit_mut(v);
        }
    }
}
