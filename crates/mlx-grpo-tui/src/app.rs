//! The UI's state besides the run: the panel shown, scroll offsets, and
//! what the keys do.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::controls::Controller;
use crate::view::RunView;

/// The panels below the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    /// Sparklines of the logged metrics.
    Metrics,
    /// The latest scored completions.
    Samples,
    /// Log lines.
    Logs,
    /// The run's config.
    Config,
}

impl Panel {
    /// Every panel, in tab order.
    pub const ALL: [Panel; 4] = [Panel::Metrics, Panel::Samples, Panel::Logs, Panel::Config];

    /// The tab's title.
    pub fn title(self) -> &'static str {
        match self {
            Panel::Metrics => "Metrics",
            Panel::Samples => "Samples",
            Panel::Logs => "Logs",
            Panel::Config => "Config",
        }
    }

    /// The panel's place in [`Panel::ALL`].
    pub fn index(self) -> usize {
        Panel::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }
}

/// Where the run is that the UI shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Training runs in this process: quitting stops it after a save.
    InProcess,
    /// Watching another process's run directory: quitting leaves the run
    /// alone; `x` stops it.
    Watch,
}

/// What the event loop does after a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// Leave the UI.
    Exit,
}

/// The whole UI state.
pub struct App {
    /// The run.
    pub view: RunView,
    /// The panel shown.
    pub panel: Panel,
    /// Lines scrolled, per panel (the logs count from the newest line).
    pub scroll: [usize; 4],
    /// In process or watching.
    pub mode: Mode,
    /// The wall clock (seconds since the Unix epoch) the header counts to.
    pub now_unix: f64,
    /// Set once the run was asked to stop.
    pub stopping: bool,
    controller: Box<dyn Controller>,
}

impl App {
    /// A UI on an empty view, steering through `controller`.
    pub fn new(controller: Box<dyn Controller>, mode: Mode) -> Self {
        Self {
            view: RunView::new(),
            panel: Panel::Metrics,
            scroll: [0; 4],
            mode,
            now_unix: 0.0,
            stopping: false,
            controller,
        }
    }

    /// Whether a pause is asked for.
    pub fn pause_requested(&self) -> bool {
        self.controller.is_paused()
    }

    /// Handles a key.
    pub fn on_key(&mut self, key: KeyEvent) -> Flow {
        let ctrl_c =
            key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
        let result = match key.code {
            _ if ctrl_c => return self.quit(),
            KeyCode::Char('q') | KeyCode::Esc => return self.quit(),
            KeyCode::Char('x') if self.mode == Mode::Watch => self.stop_run(),
            KeyCode::Char('p') | KeyCode::Char(' ') => {
                if self.view.is_over() {
                    Ok(())
                } else if self.controller.is_paused() {
                    self.view.log("resume requested".into());
                    self.controller.resume()
                } else {
                    self.view
                        .log("pause requested (takes effect between steps)".into());
                    self.controller.pause()
                }
            }
            KeyCode::Char('s') => {
                if self.view.is_over() {
                    Ok(())
                } else {
                    self.view.log("checkpoint requested".into());
                    self.controller.save()
                }
            }
            KeyCode::Tab => {
                self.panel = Panel::ALL[(self.panel.index() + 1) % Panel::ALL.len()];
                Ok(())
            }
            KeyCode::BackTab => {
                let n = Panel::ALL.len();
                self.panel = Panel::ALL[(self.panel.index() + n - 1) % n];
                Ok(())
            }
            KeyCode::Char(c @ '1'..='4') => {
                let index = usize::from(c as u8 - b'1');
                self.panel = Panel::ALL[index];
                Ok(())
            }
            KeyCode::Down | KeyCode::Char('j') => self.scroll_by(1),
            KeyCode::Up | KeyCode::Char('k') => self.scroll_by(-1),
            KeyCode::PageDown => self.scroll_by(10),
            KeyCode::PageUp => self.scroll_by(-10),
            KeyCode::Home => {
                self.scroll[self.panel.index()] = 0;
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            self.view.log(format!("error: {e}"));
        }
        Flow::Continue
    }

    /// `q`: in process, stop the run after a save (and leave once it has
    /// ended); watching, leave.
    fn quit(&mut self) -> Flow {
        if self.mode == Mode::Watch || self.view.finished.is_some() {
            return Flow::Exit;
        }
        if !self.stopping
            && let Err(e) = self.stop_run()
        {
            self.view.log(format!("error: {e}"));
        }
        Flow::Continue
    }

    fn stop_run(&mut self) -> crate::Result<()> {
        if self.view.is_over() {
            return Ok(());
        }
        self.stopping = true;
        self.view
            .log("stop requested: saving a checkpoint, then ending the run".into());
        self.controller.stop()
    }

    /// Scrolls the shown panel (down for positive `lines`; the logs panel
    /// scrolls back in time for negative).
    fn scroll_by(&mut self, lines: isize) -> crate::Result<()> {
        let lines = if self.panel == Panel::Logs {
            -lines
        } else {
            lines
        };
        let offset = &mut self.scroll[self.panel.index()];
        *offset = offset.saturating_add_signed(lines);
        Ok(())
    }

    /// Whether the event loop should end by itself: an in-process run that
    /// was stopped and whose thread has ended.
    pub fn should_exit(&self) -> bool {
        self.mode == Mode::InProcess && self.stopping && self.view.finished.is_some()
    }
}
