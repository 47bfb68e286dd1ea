//! The event loop on a real terminal: raw mode and the alternate screen,
//! drawing about ten times a second, keys to [`App::on_key`].

use std::time::Duration;

use crossterm::event::{self, Event, KeyEventKind};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use crate::app::{App, Flow};
use crate::event::RunEvent;
use crate::{Error, Result, ui};

/// Puts the terminal back as it was when dropped (also on an error).
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = disable_raw_mode();
        let _ = execute!(std::io::stdout(), LeaveAlternateScreen);
    }
}

/// Runs the UI on stdout until a key asks to leave or the app ends by
/// itself ([`App::should_exit`]); `events` is asked for new events before
/// each frame.
pub fn run(app: &mut App, mut events: impl FnMut() -> Result<Vec<RunEvent>>) -> Result<()> {
    enable_raw_mode().map_err(Error::Terminal)?;
    let _restore = Restore;
    execute!(std::io::stdout(), EnterAlternateScreen).map_err(Error::Terminal)?;
    let mut terminal =
        Terminal::new(CrosstermBackend::new(std::io::stdout())).map_err(Error::Terminal)?;
    loop {
        match events() {
            Ok(batch) => batch.into_iter().for_each(|e| app.view.apply(e)),
            Err(e) => app.view.log(format!("error: {e}")),
        }
        app.now_unix = mlx_grpo::trainer::control::unix_now();
        terminal
            .draw(|frame| ui::draw(frame, app))
            .map_err(Error::Terminal)?;
        if app.should_exit() {
            return Ok(());
        }
        if event::poll(Duration::from_millis(100)).map_err(Error::Terminal)?
            && let Event::Key(key) = event::read().map_err(Error::Terminal)?
            && key.kind == KeyEventKind::Press
            && app.on_key(key) == Flow::Exit
        {
            return Ok(());
        }
    }
}
