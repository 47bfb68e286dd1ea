//! A small command-line parser for the examples: `--name value`,
//! `--name=value` and boolean `--flag`s, with typed look-ups and an error
//! for unknown names.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

/// What went wrong while reading the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    /// An option that the program does not know.
    Unknown(String),
    /// An option that needs a value came last.
    MissingValue(String),
    /// A value that does not parse.
    Invalid {
        /// The option.
        name: String,
        /// The value given.
        value: String,
        /// Why it does not parse.
        message: String,
    },
    /// A required option was not given.
    Required(String),
    /// A word that is not an option.
    Unexpected(String),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Unknown(n) => write!(f, "unknown option --{n}"),
            ArgError::MissingValue(n) => write!(f, "option --{n} needs a value"),
            ArgError::Invalid {
                name,
                value,
                message,
            } => write!(f, "--{name} {value:?}: {message}"),
            ArgError::Required(n) => write!(f, "option --{n} is required"),
            ArgError::Unexpected(w) => write!(f, "unexpected argument {w:?}"),
        }
    }
}

impl std::error::Error for ArgError {}

/// Parsed options: values by name (without the leading `--`) and the
/// boolean flags that were given.
#[derive(Debug, Clone, Default)]
pub struct Args {
    values: HashMap<String, String>,
    flags: HashSet<String>,
}

impl Args {
    /// Parses the process's arguments (after the program name). `options`
    /// names the options that take a value and `flags` the boolean ones;
    /// anything else is an error.
    pub fn from_env(options: &[&str], flags: &[&str]) -> Result<Args, ArgError> {
        Args::parse(std::env::args().skip(1), options, flags)
    }

    /// Parses `words` (see [`Args::from_env`]).
    pub fn parse(
        words: impl IntoIterator<Item = String>,
        options: &[&str],
        flags: &[&str],
    ) -> Result<Args, ArgError> {
        let mut out = Args::default();
        let mut words = words.into_iter();
        while let Some(word) = words.next() {
            let Some(body) = word.strip_prefix("--") else {
                return Err(ArgError::Unexpected(word));
            };
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (body.to_string(), None),
            };
            if flags.contains(&name.as_str()) {
                out.flags.insert(name);
            } else if options.contains(&name.as_str()) {
                let value = match inline {
                    Some(v) => v,
                    None => words
                        .next()
                        .ok_or_else(|| ArgError::MissingValue(name.clone()))?,
                };
                out.values.insert(name, value);
            } else {
                return Err(ArgError::Unknown(name));
            }
        }
        Ok(out)
    }

    /// Whether the boolean flag `name` was given.
    pub fn flag(&self, name: &str) -> bool {
        self.flags.contains(name)
    }

    /// The raw value of `name`, if given.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// The value of `name` parsed as `T`, if given.
    pub fn get<T: FromStr>(&self, name: &str) -> Result<Option<T>, ArgError>
    where
        T::Err: fmt::Display,
    {
        match self.values.get(name) {
            None => Ok(None),
            Some(v) => v.parse::<T>().map(Some).map_err(|e| ArgError::Invalid {
                name: name.to_string(),
                value: v.clone(),
                message: e.to_string(),
            }),
        }
    }

    /// The value of `name` parsed as `T`, or `default`.
    pub fn get_or<T: FromStr>(&self, name: &str, default: T) -> Result<T, ArgError>
    where
        T::Err: fmt::Display,
    {
        Ok(self.get(name)?.unwrap_or(default))
    }

    /// A comma-separated list (`1,2,3`), if given; empty items are skipped.
    pub fn list<T: FromStr>(&self, name: &str) -> Result<Option<Vec<T>>, ArgError>
    where
        T::Err: fmt::Display,
    {
        let Some(v) = self.values.get(name) else {
            return Ok(None);
        };
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<T>().map_err(|e| ArgError::Invalid {
                    name: name.to_string(),
                    value: v.clone(),
                    message: e.to_string(),
                })
            })
            .collect::<Result<Vec<T>, _>>()
            .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn values_flags_and_lists() -> Result<(), ArgError> {
        let a = Args::parse(
            words("--temp 0.7 --json --top-k=5 --ids 1,2,,3 --neg -0.5"),
            &["temp", "top-k", "ids", "neg"],
            &["json"],
        )?;
        assert_eq!(a.get::<f64>("temp")?, Some(0.7));
        assert_eq!(a.get::<usize>("top-k")?, Some(5));
        assert_eq!(a.get::<f64>("neg")?, Some(-0.5));
        assert_eq!(a.list::<u32>("ids")?, Some(vec![1, 2, 3]));
        assert!(a.flag("json"));
        assert!(!a.flag("other"));
        assert_eq!(a.get_or("missing", 3u32)?, 3);
        Ok(())
    }

    #[test]
    fn errors_name_the_option() -> Result<(), ArgError> {
        assert_eq!(
            Args::parse(words("--nope 1"), &[], &[]).unwrap_err(),
            ArgError::Unknown("nope".into())
        );
        assert_eq!(
            Args::parse(words("--temp"), &["temp"], &[]).unwrap_err(),
            ArgError::MissingValue("temp".into())
        );
        assert!(matches!(
            Args::parse(words("--temp x"), &["temp"], &[])?.get::<f64>("temp"),
            Err(ArgError::Invalid { .. })
        ));
        assert_eq!(
            Args::parse(words("stray"), &[], &[]).unwrap_err(),
            ArgError::Unexpected("stray".into())
        );
        Ok(())
    }
}
