//! Following a run directory: the new lines of `metrics.jsonl` and
//! `samples.jsonl`, and `status.json` and the config when they change.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use mlx_grpo::trainer::control::{CONFIG_FILE, SAMPLES_FILE};
use mlx_grpo::trainer::{LogRecord, RunStatus, SampleRecord};

use crate::event::RunEvent;
use crate::{Error, Result};

/// The metrics file the trainer appends to.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// The complete lines appended to a file since the last read.
#[derive(Debug)]
struct LineTail {
    path: PathBuf,
    offset: u64,
}

impl LineTail {
    fn new(path: PathBuf) -> Self {
        Self { path, offset: 0 }
    }

    /// New complete lines, and whether the file shrank (and was read anew).
    fn read(&mut self) -> Result<(Vec<String>, bool)> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), false)),
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        let len = file.metadata().map_err(|e| Error::io(&self.path, e))?.len();
        let shrank = len < self.offset;
        if shrank {
            self.offset = 0;
        }
        file.seek(SeekFrom::Start(self.offset))
            .map_err(|e| Error::io(&self.path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| Error::io(&self.path, e))?;
        // Leave an unfinished last line for the next read.
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.offset += complete as u64;
        let text = String::from_utf8_lossy(&bytes[..complete]);
        let lines = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        Ok((lines, shrank))
    }
}

/// Turns a run directory's files into [`RunEvent`]s, a poll at a time.
#[derive(Debug)]
pub struct RunDirReader {
    dir: PathBuf,
    metrics: LineTail,
    samples: LineTail,
    status: Option<RunStatus>,
    config: Option<String>,
}

impl RunDirReader {
    /// A reader of `dir` (which must exist).
    pub fn new(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "not a run directory"),
            ));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            metrics: LineTail::new(dir.join(METRICS_FILE)),
            samples: LineTail::new(dir.join(SAMPLES_FILE)),
            status: None,
            config: None,
        })
    }

    /// What changed since the last poll. Lines that do not parse become
    /// messages naming the file.
    pub fn poll(&mut self) -> Result<Vec<RunEvent>> {
        let mut events = Vec::new();
        let config_path = self.dir.join(CONFIG_FILE);
        if let Ok(text) = std::fs::read_to_string(&config_path)
            && self.config.as_deref() != Some(text.as_str())
        {
            events.push(RunEvent::Config(text.clone()));
            self.config = Some(text);
        }
        let (lines, shrank) = self.metrics.read()?;
        if shrank {
            events.push(RunEvent::Reset);
        }
        for line in lines {
            match serde_json::from_str::<LogRecord>(&line) {
                Ok(record) => events.push(RunEvent::Log(record)),
                Err(e) => events.push(RunEvent::Message(format!("{METRICS_FILE}: {e}"))),
            }
        }
        let (lines, _) = self.samples.read()?;
        let mut samples = Vec::new();
        for line in lines {
            match serde_json::from_str::<SampleRecord>(&line) {
                Ok(sample) => samples.push(sample),
                Err(e) => events.push(RunEvent::Message(format!("{SAMPLES_FILE}: {e}"))),
            }
        }
        if !samples.is_empty() {
            events.push(RunEvent::Samples(samples));
        }
        match RunStatus::read(&self.dir) {
            Ok(Some(status)) if self.status.as_ref() != Some(&status) => {
                self.status = Some(status.clone());
                events.push(RunEvent::Status(status));
            }
            Ok(_) => {}
            // A status being replaced is read again at the next poll.
            Err(_) => {}
        }
        Ok(events)
    }
}
