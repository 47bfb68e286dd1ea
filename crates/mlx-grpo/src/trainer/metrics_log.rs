//! Training logs: metrics as JSON lines, a reward/loss curve PNG, and a
//! progress bar on the terminal.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One logged step: the step number and TRL-named metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Optimizer step (1-based).
    pub step: usize,
    /// Metric name → value (`reward`, `loss`, `kl`, `completions/mean_length`, …).
    /// NaN and infinities are written as strings (see [`super::metric_serde`]).
    #[serde(with = "super::metric_serde::map")]
    pub metrics: BTreeMap<String, f64>,
}

/// Appends metrics to `metrics.jsonl` and keeps the history for plotting.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
    history: Vec<LogRecord>,
}

impl MetricsLog {
    /// Opens (appending) `dir/metrics.jsonl`; `history` carries earlier records on resume.
    pub fn open(dir: &Path, history: Vec<LogRecord>) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join("metrics.jsonl");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(MetricsLog {
            path,
            file,
            history,
        })
    }

    /// Opens `dir/metrics.jsonl` to continue a run resumed from a checkpoint
    /// of step `step` whose log is `history`. Lines of steps after `step`
    /// (logged by the interrupted run after its checkpoint, and about to be
    /// logged again) are cut off; every line up to `step` is kept as it is,
    /// and records of `history` the file lacks (a file lost or cut short)
    /// are appended. A torn last line (a write the interruption cut short)
    /// is dropped. The file is replaced atomically.
    pub fn resume(dir: &Path, history: Vec<LogRecord>, step: usize) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join("metrics.jsonl");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let (mut kept, last_kept) = lines_up_to(&text, step);
        for record in history
            .iter()
            .filter(|r| last_kept.is_none_or(|l| r.step > l))
        {
            let line = serde_json::to_string(record)
                .map_err(|e| Error::io(&path, std::io::Error::other(e)))?;
            kept.push_str(&line);
            kept.push('\n');
        }
        if kept != text {
            super::checkpoint::write_durably(&path, kept.as_bytes())?;
        }
        Self::open(dir, history)
    }

    /// Writes one record as a JSON line and remembers it.
    pub fn append(&mut self, record: LogRecord) -> Result<()> {
        let line = serde_json::to_string(&record)
            .map_err(|e| Error::io(&self.path, std::io::Error::other(e)))?;
        writeln!(self.file, "{line}").map_err(|e| Error::io(&self.path, e))?;
        self.file.flush().map_err(|e| Error::io(&self.path, e))?;
        self.history.push(record);
        Ok(())
    }

    /// Everything logged so far.
    pub fn history(&self) -> &[LogRecord] {
        &self.history
    }

    /// The JSONL file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The lines of a `metrics.jsonl` text up to the first record of a step
/// after `step` (each ending in a newline), and the step of the last record
/// kept. Lines that are not records are kept, except an unterminated last
/// line (a torn write).
fn lines_up_to(text: &str, step: usize) -> (String, Option<usize>) {
    let mut kept = String::with_capacity(text.len());
    let mut last = None;
    for line in text.split_inclusive('\n') {
        let terminated = line.ends_with('\n');
        match serde_json::from_str::<LogRecord>(line.trim_end()) {
            Ok(record) if record.step > step => break,
            Ok(record) => last = Some(record.step),
            Err(_) if !terminated => break,
            Err(_) => {}
        }
        kept.push_str(line);
        if !terminated {
            kept.push('\n');
        }
    }
    (kept, last)
}

/// Reads a `metrics.jsonl` file.
pub fn read_metrics(path: &Path) -> Result<Vec<LogRecord>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| Error::io(path, std::io::Error::other(e))))
        .collect()
}

/// Common places of a TrueType font for the plot's labels.
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

fn register_font() -> bool {
    for candidate in FONT_CANDIDATES {
        if let Ok(bytes) = std::fs::read(candidate) {
            // plotters keeps the font for the life of the process.
            let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, leaked).is_ok() {
                return true;
            }
        }
    }
    false
}

/// Draws the reward and loss curves (two panels) into a PNG. Labels are drawn
/// when a system font is found; the curves are drawn either way.
pub fn plot_curves(history: &[LogRecord], path: &Path) -> Result<()> {
    static FONT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let has_font = *FONT.get_or_init(register_font);
    let plot_err = |e: String| Error::io(path, std::io::Error::other(e));
    let tmp = path.with_extension("tmp.png");
    {
        let root = BitMapBackend::new(&tmp, (1000, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(e.to_string()))?;
        let panels = root.split_evenly((1, 2));
        for (panel, (key, color)) in panels.iter().zip([("reward", BLUE), ("loss", RED)]) {
            let points: Vec<(f64, f64)> = history
                .iter()
                .filter_map(|r| {
                    r.metrics
                        .get(key)
                        .filter(|v| v.is_finite())
                        .map(|v| (r.step as f64, *v))
                })
                .collect();
            let (x0, x1) = points
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
            let (y0, y1) = points
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
            let (x0, x1) = if points.is_empty() {
                (0.0, 1.0)
            } else if x1 > x0 {
                (x0, x1)
            } else {
                (x0 - 1.0, x1 + 1.0)
            };
            let pad = ((y1 - y0).abs() * 0.05).max(1e-3);
            let (y0, y1) = if points.is_empty() {
                (0.0, 1.0)
            } else {
                (y0 - pad, y1 + pad)
            };
            let mut builder = ChartBuilder::on(panel);
            builder.margin(12);
            if has_font {
                builder
                    .caption(key, ("sans-serif", 22))
                    .x_label_area_size(32)
                    .y_label_area_size(56);
            }
            let mut chart = builder
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| plot_err(e.to_string()))?;
            let mut mesh = chart.configure_mesh();
            if has_font {
                mesh.x_desc("step");
            } else {
                mesh.disable_x_mesh().disable_y_mesh();
            }
            mesh.draw().map_err(|e| plot_err(e.to_string()))?;
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| plot_err(e.to_string()))?;
        }
        root.present().map_err(|e| plot_err(e.to_string()))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// A progress bar showing step, reward and loss.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar over `total` steps starting at `start`.
    pub fn new(total: usize, start: usize) -> Self {
        let bar = ProgressBar::new(total as u64);
        if let Ok(style) = ProgressStyle::with_template(
            "{bar:30.cyan/blue} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        ) {
            bar.set_style(style);
        }
        bar.set_position(start as u64);
        Progress { bar }
    }

    /// A bar that draws nothing (for tests and non-interactive runs).
    pub fn hidden() -> Self {
        Progress {
            bar: ProgressBar::hidden(),
        }
    }

    /// Advances one step and shows the latest metrics.
    pub fn step(&self, metrics: &BTreeMap<String, f64>) {
        let get = |k: &str| metrics.get(k).copied().unwrap_or(f64::NAN);
        self.bar.set_message(format!(
            "reward {:.3} loss {:.4} kl {:.4}",
            get("reward"),
            get("loss"),
            get("kl")
        ));
        self.bar.inc(1);
    }

    /// Prints a line above the bar.
    pub fn println(&self, line: impl AsRef<str>) {
        self.bar.println(line.as_ref());
    }

    /// Leaves the bar at its final state.
    pub fn finish(&self) {
        self.bar.finish();
    }
}
