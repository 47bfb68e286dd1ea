//! Command-line plumbing shared by the examples: `clap` parsing whose
//! errors are one line, range-checked value parsers, and a `main` wrapper
//! that prints a failure as one `error: ...` line and exits non-zero.

use std::error::Error;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::error::ErrorKind;
use clap::{Parser, ValueEnum};
use mlx_tensor::Dtype;

/// Exit status of a command line that does not parse (as `clap` and
/// Python's `argparse` use).
pub const USAGE_EXIT_CODE: i32 = 2;
/// Exit status of a run that fails.
pub const FAILURE_EXIT_CODE: i32 = 1;

/// The error type the examples' `run` functions return.
pub type BoxError = Box<dyn Error>;

/// Why [`try_parse_from`] did not return options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseStop {
    /// `--help` or `--version`: print this text on stdout and exit 0.
    Print(String),
    /// The command line is wrong; the one-line reason, without `error: `.
    Usage(String),
}

/// Parses `args` (the program name first) as `C`. Every argument must be
/// UTF-8; a `clap` error is cut to its first line.
pub fn try_parse_from<C, I>(args: I) -> Result<C, ParseStop>
where
    C: Parser,
    I: IntoIterator<Item = OsString>,
{
    let args: Vec<OsString> = args.into_iter().collect();
    for (i, arg) in args.iter().enumerate().skip(1) {
        if arg.to_str().is_none() {
            return Err(ParseStop::Usage(format!(
                "argument {i} is not valid UTF-8: {:?}",
                arg.to_string_lossy()
            )));
        }
    }
    C::try_parse_from(args).map_err(|e| match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ParseStop::Print(e.to_string()),
        _ => ParseStop::Usage(clap_error_line(&e)),
    })
}

/// The first paragraph of a `clap` error (the message, and the missing
/// arguments where it lists them) as one line, without `error: `.
fn clap_error_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let paragraph: Vec<&str> = text
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .collect();
    let line = paragraph.join(" ");
    let line = line.strip_prefix("error: ").unwrap_or(&line);
    if line.is_empty() {
        "invalid command line".to_string()
    } else {
        line.to_string()
    }
}

/// Parses the process's arguments as `C`: prints the help and exits 0 on
/// `--help`, prints one `error: ...` line and exits 2 on a bad command line.
pub fn parse<C: Parser>() -> C {
    match try_parse_from(std::env::args_os()) {
        Ok(options) => options,
        Err(ParseStop::Print(text)) => {
            print!("{text}");
            std::process::exit(0);
        }
        Err(ParseStop::Usage(line)) => {
            eprintln!("error: {line}");
            std::process::exit(USAGE_EXIT_CODE);
        }
    }
}

/// `error` and its sources as one line: each source that the message does
/// not already contain is appended after `: `, and line breaks (a TOML
/// parser's excerpt, say) become spaces.
pub fn one_line(error: &(dyn Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    let words: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    words.join(" ")
}

/// Runs `run`; on failure prints `error: ` and the error as one line on
/// stderr and exits with [`FAILURE_EXIT_CODE`].
pub fn exit_on_error(run: impl FnOnce() -> Result<(), BoxError>) {
    if let Err(e) = run() {
        eprintln!("error: {}", one_line(e.as_ref()));
        std::process::exit(FAILURE_EXIT_CODE);
    }
}

/// An error that names the path an I/O operation failed on (what
/// `std::io::Error` leaves out).
#[derive(Debug)]
pub struct PathError {
    /// What was being done (`writing`, `reading`, ...).
    pub action: &'static str,
    /// The path.
    pub path: PathBuf,
    /// The underlying error.
    pub source: std::io::Error,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.action,
            self.path.display(),
            self.source
        )
    }
}

impl Error for PathError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

/// A closure for `map_err` that wraps an I/O error with `action` and `path`.
pub fn at_path(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PathError {
    let path = path.to_path_buf();
    move |source| PathError {
        action,
        path,
        source,
    }
}

/// Checks that the parent directory of the output file `path` exists and is
/// a directory, before any long computation.
pub fn check_output_parent(path: &Path) -> Result<(), String> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => return Ok(()),
    };
    if parent.is_dir() {
        Ok(())
    } else if parent.exists() {
        Err(format!(
            "output {}: {} is not a directory",
            path.display(),
            parent.display()
        ))
    } else {
        Err(format!(
            "output {}: the directory {} does not exist",
            path.display(),
            parent.display()
        ))
    }
}

/// Checks that every id of `ids` is below the model's `vocab_size`.
pub fn check_token_ids(ids: &[u32], vocab_size: i32, what: &str) -> Result<(), String> {
    match ids
        .iter()
        .find(|&&id| i64::from(id) >= i64::from(vocab_size))
    {
        Some(bad) => Err(format!(
            "{what}: token id {bad} is outside the model's vocabulary of {vocab_size} ids"
        )),
        None => Ok(()),
    }
}

/// Checks that a tokenizer of `tokenizer_size` ids fits a model of
/// `vocab_size` ids (a model may have more rows than its tokenizer, never
/// fewer).
pub fn check_tokenizer_fits(
    tokenizer_size: usize,
    vocab_size: i32,
    dir: &Path,
) -> Result<(), String> {
    let fits = i64::try_from(tokenizer_size).is_ok_and(|n| n <= i64::from(vocab_size));
    if fits {
        Ok(())
    } else {
        Err(format!(
            "{}: the tokenizer has {tokenizer_size} ids but the model's vocabulary has only {vocab_size}",
            dir.display()
        ))
    }
}

/// A floating-point data type on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DtypeArg {
    /// 32-bit float.
    #[value(name = "f32", alias = "float32")]
    F32,
    /// bfloat16.
    #[value(name = "bf16", alias = "bfloat16")]
    Bf16,
    /// IEEE half precision.
    #[value(name = "f16", alias = "float16")]
    F16,
}

impl From<DtypeArg> for Dtype {
    fn from(d: DtypeArg) -> Dtype {
        match d {
            DtypeArg::F32 => Dtype::F32,
            DtypeArg::Bf16 => Dtype::BF16,
            DtypeArg::F16 => Dtype::F16,
        }
    }
}

fn number(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err("must be a finite number".into())
    }
}

/// A finite number (a value parser for `clap`).
pub fn finite(s: &str) -> Result<f64, String> {
    number(s)
}

/// A finite number `>= 0` (a value parser for `clap`).
pub fn non_negative(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if v >= 0.0 {
        Ok(v)
    } else {
        Err("must be a finite number >= 0".into())
    }
}

/// A finite number `> 0` (a value parser for `clap`).
pub fn positive(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if v > 0.0 {
        Ok(v)
    } else {
        Err("must be a finite number > 0".into())
    }
}

/// A number `> 0` that is finite as an `f32` (a value parser for `clap`).
pub fn positive_f32(s: &str) -> Result<f32, String> {
    let v = positive(s)? as f32;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err("must be a finite 32-bit float > 0".into())
    }
}

/// A probability in `[0, 1]` (a value parser for `clap`).
pub fn probability(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be between 0 and 1".into())
    }
}

/// A count of at least 1 (a value parser for `clap`).
pub fn positive_count(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    #[derive(Parser, Debug)]
    #[command(name = "t", allow_negative_numbers = true)]
    struct T {
        #[arg(long, value_parser = probability)]
        top_p: Option<f64>,
        #[arg(long)]
        max_tokens: Option<usize>,
        #[arg(long, required = true)]
        model: String,
    }

    fn words(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    fn usage(s: &str) -> String {
        match try_parse_from::<T, _>(words(s)) {
            Err(ParseStop::Usage(line)) => line,
            other => panic!("{s}: expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn errors_are_one_line_naming_the_flag() {
        for (line, needle) in [
            ("t --model m --nope", "--nope"),
            ("t --model m --top-p 1.5", "--top-p"),
            ("t --model m --top-p nan", "--top-p"),
            ("t --model m --max-tokens -3", "-3"),
            ("t --model m --max-tokens", "--max-tokens"),
            ("t --top-p 0.5", "--model"),
        ] {
            let msg = usage(line);
            assert!(!msg.contains('\n'), "{line}: {msg}");
            assert!(msg.contains(needle), "{line}: {msg}");
        }
    }

    #[test]
    fn non_utf8_is_a_usage_error() {
        let args = vec![
            OsString::from("t"),
            OsString::from("--model"),
            OsString::from_vec(vec![0x30, 0xff]),
        ];
        let stop = try_parse_from::<T, _>(args).unwrap_err();
        assert!(
            matches!(&stop, ParseStop::Usage(m) if m.contains("argument 2") && m.contains("UTF-8")),
            "{stop:?}"
        );
    }

    #[test]
    fn help_is_printed_and_values_parse() -> Result<(), ParseStop> {
        assert!(
            matches!(try_parse_from::<T, _>(words("t --help")), Err(ParseStop::Print(h)) if h.contains("--top-p"))
        );
        let t = try_parse_from::<T, _>(words("t --model m --top-p 0.5 --max-tokens 7"))?;
        assert_eq!((t.top_p, t.max_tokens), (Some(0.5), Some(7)));
        Ok(())
    }

    #[test]
    fn value_parsers_check_ranges() {
        assert_eq!(probability("1"), Ok(1.0));
        assert!(probability("-0.1").is_err());
        assert!(non_negative("inf").is_err());
        assert_eq!(non_negative("0"), Ok(0.0));
        assert!(positive("0").is_err());
        assert!(positive_f32("1e300").is_err());
        assert_eq!(positive_f32("0.5"), Ok(0.5));
        assert_eq!(positive_count("3"), Ok(3));
        assert!(positive_count("0").is_err());
        assert!(positive_count("-1").is_err());
    }

    #[test]
    fn one_line_joins_sources_and_lines() {
        let e = PathError {
            action: "writing",
            path: PathBuf::from("/no/such/out.npy"),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        let line = one_line(&e);
        assert!(line.starts_with("writing /no/such/out.npy: "), "{line}");
        assert_eq!(line.matches("not found").count(), 1, "{line}");
        let multi: BoxError = "TOML parse error\n  |\n1 | x\n".into();
        assert_eq!(one_line(multi.as_ref()), "TOML parse error | 1 | x");
    }

    #[test]
    fn token_and_vocab_checks() {
        assert!(check_token_ids(&[0, 255], 256, "t").is_ok());
        assert!(
            check_token_ids(&[256], 256, "--prompt-tokens")
                .unwrap_err()
                .contains("256")
        );
        assert!(check_tokenizer_fits(256, 256, Path::new("m")).is_ok());
        assert!(check_tokenizer_fits(257, 256, Path::new("m")).is_err());
    }
}
