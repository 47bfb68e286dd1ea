//! The UI drawn into ratatui's test backend at 80×24: the header's fields,
//! sparklines, each panel, switching panels and the keys that steer a run.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use mlx_grpo::trainer::{LogRecord, RunState, RunStatus, SampleRecord, TrainerControl};
use mlx_grpo_tui::{App, Flow, HandleController, Mode, Panel, RunEvent, ui};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const MIB: usize = 1024 * 1024;

fn status(state: RunState, step: usize) -> RunStatus {
    RunStatus {
        state,
        step,
        total_steps: 10,
        start_step: 0,
        start_num_tokens: 0.0,
        model: "/models/Qwen3-0.6B".into(),
        num_parameters: 1000,
        num_tokens: 600.0,
        active_memory: 3 * MIB / 2,
        peak_memory: 2 * MIB,
        started_unix: 1000.0,
        updated_unix: 1030.0,
        last_checkpoint: None,
    }
}

fn record(step: usize) -> LogRecord {
    let s = step as f64;
    let metrics: BTreeMap<String, f64> = [
        ("reward", 0.1 * s),
        ("rewards/accuracy/mean", 0.1 * s),
        ("loss", 1.0 / s),
        ("kl", 0.001 * s),
        ("entropy", 2.0),
        ("grad_norm", 0.5),
        ("learning_rate", 1e-6),
        ("completions/mean_length", 10.0 + s),
        ("clip_ratio/region_mean", 0.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    LogRecord { step, metrics }
}

fn sample() -> SampleRecord {
    SampleRecord {
        step: 3,
        prompt: "What is 2+3?".into(),
        text: "5".into(),
        thinking: Some("two plus three".into()),
        tool_calls: vec!["<tool_call>{\"name\": \"add\"}</tool_call>".into()],
        answer: Some("5".into()),
        rewards: [("accuracy".to_string(), 1.0), ("format".to_string(), 0.5)]
            .into_iter()
            .collect(),
        reward: Some(1.5),
        advantage: 0.75,
        num_tokens: 12,
        truncated: false,
    }
}

/// A UI after three logged steps of a ten-step run, 30 s in.
fn app() -> (App, TrainerControl) {
    let control = TrainerControl::new();
    let mut app = App::new(
        Box::new(HandleController::new(control.clone())),
        Mode::InProcess,
    );
    for step in 1..=5 {
        app.view.apply(RunEvent::Log(record(step)));
    }
    app.view
        .apply(RunEvent::Status(status(RunState::Running, 3)));
    app.view.apply(RunEvent::Samples(vec![sample()]));
    app.view
        .apply(RunEvent::Config("{\n  \"learning_rate\": 1e-06\n}".into()));
    app.now_unix = 1030.0;
    (app, control)
}

/// The screen as lines of text.
fn screen(app: &App) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|frame| ui::draw(frame, app)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol().to_string())
                .collect::<String>()
        })
        .collect()
}

fn press(app: &mut App, code: KeyCode) -> Flow {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn find(lines: &[String], needle: &str) -> usize {
    lines
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not on the screen:\n{}", lines.join("\n")))
}

#[test]
fn header_shows_step_time_eta_throughput_and_memory() {
    let (app, _) = app();
    let lines = screen(&app);
    println!("{}", lines.join("\n"));
    assert_eq!(lines.len(), 24);
    assert!(lines[0].contains("RUNNING"), "{}", lines[0]);
    assert!(lines[0].contains("step 3/10"), "{}", lines[0]);
    assert!(
        lines[0].contains("model /models/Qwen3-0.6B"),
        "{}",
        lines[0]
    );
    // 3 steps in 30 s: 10 s a step, 7 left; 600 tokens in 30 s.
    assert!(lines[1].contains("elapsed 0:00:30"), "{}", lines[1]);
    assert!(lines[1].contains("ETA 0:01:10"), "{}", lines[1]);
    assert!(lines[1].contains("tok/s 20"), "{}", lines[1]);
    assert!(
        lines[1].contains("mem 1.5 MiB (peak 2.0 MiB)"),
        "{}",
        lines[1]
    );
    for tab in ["1 Metrics", "2 Samples", "3 Logs", "4 Config"] {
        assert!(lines[2].contains(tab), "{}", lines[2]);
    }
    assert!(lines[23].contains("p pause/resume"), "{}", lines[23]);
}

/// Fill level of a sparkline cell: 0 (blank) to 8 (full block).
fn level(cell: char) -> usize {
    " ▁▂▃▄▅▆▇█"
        .chars()
        .position(|c| c == cell)
        .unwrap_or_else(|| panic!("not a bar: {cell:?}"))
}

#[test]
fn metrics_panel_draws_a_sparkline_per_metric_in_trl_order() {
    let (app, _) = app();
    let lines = screen(&app);
    let reward = find(&lines, "reward 0.5000");
    assert!(
        lines[reward].contains("[0.1000 … 0.5000]"),
        "{}",
        lines[reward]
    );
    // The reward rises over the five records: the sparkline's two rows
    // (top, bottom) fill up from left to right, and end full.
    let bars = |row: usize| -> Vec<usize> { lines[row].chars().take(5).map(level).collect() };
    let (top, bottom) = (bars(reward + 1), bars(reward + 2));
    let heights: Vec<usize> = top.iter().zip(&bottom).map(|(t, b)| t + b).collect();
    assert!(heights.windows(2).all(|w| w[0] < w[1]), "{heights:?}");
    assert_eq!(heights[4], 16);
    // The loss falls: its heights fall.
    let loss = find(&lines, "loss 0.2000");
    let falling: Vec<usize> = bars(loss + 1)
        .iter()
        .zip(&bars(loss + 2))
        .map(|(t, b)| t + b)
        .collect();
    assert!(falling.windows(2).all(|w| w[0] > w[1]), "{falling:?}");
    // TRL's order: reward, the reward functions, loss, kl, entropy.
    // Two columns, filled row by row.
    let slot = |name: &str| {
        let row = find(&lines, name);
        let line = &lines[row];
        let x = line
            .find(name)
            .map_or(0, |byte| line[..byte].chars().count());
        (row - 3) / 3 * 2 + usize::from(x >= 40)
    };
    let order: Vec<usize> = [
        "reward 0.5",
        "rewards/accuracy/mean",
        "loss",
        "kl",
        "entropy",
    ]
    .iter()
    .map(|n| slot(n))
    .collect();
    assert_eq!(order, [0, 1, 2, 3, 4]);
}

#[test]
fn tab_and_number_keys_switch_panels() {
    let (mut app, _) = app();
    assert_eq!(press(&mut app, KeyCode::Tab), Flow::Continue);
    assert_eq!(app.panel, Panel::Samples);
    let lines = screen(&app);
    println!("{}", lines.join("\n"));
    let head = find(&lines, "step 3  reward 1.500  adv +0.750  12 tok");
    assert!(lines[head + 1].contains("accuracy=1.0000  format=0.5000"));
    assert!(lines[head + 2].starts_with("prompt What is 2+3?"));
    assert!(lines[head + 3].starts_with("think  two plus three"));
    assert!(lines[head + 4].starts_with("tool   <tool_call>"));
    assert!(lines[head + 5].starts_with("answer 5"));
    assert!(lines[head + 6].starts_with("expect 5"));

    press(&mut app, KeyCode::Char('3'));
    assert_eq!(app.panel, Panel::Logs);
    let lines = screen(&app);
    find(&lines, "step 5: reward 0.5000 loss 0.2000");
    find(&lines, "step 3: running");

    press(&mut app, KeyCode::Char('4'));
    let lines = screen(&app);
    find(&lines, "\"learning_rate\": 1e-06");

    press(&mut app, KeyCode::Tab);
    assert_eq!(app.panel, Panel::Metrics);
    press(&mut app, KeyCode::BackTab);
    assert_eq!(app.panel, Panel::Config);
}

#[test]
fn scrolling_moves_the_metrics_grid_a_row_at_a_time() {
    let (mut app, _) = app();
    let before = screen(&app);
    find(&before, "reward 0.5000");
    press(&mut app, KeyCode::Down);
    let after = screen(&app);
    assert!(!after.iter().any(|l| l.contains("reward 0.5000")));
    press(&mut app, KeyCode::Home);
    assert_eq!(screen(&app), before);
}

#[test]
fn keys_pause_save_and_stop_through_the_trainer_control() {
    let (mut app, control) = app();
    press(&mut app, KeyCode::Char('p'));
    assert!(control.is_paused());
    assert!(screen(&app)[0].contains("PAUSING"));
    app.view
        .apply(RunEvent::Status(status(RunState::Paused, 3)));
    assert!(screen(&app)[0].contains("PAUSED"));
    press(&mut app, KeyCode::Char('s'));
    press(&mut app, KeyCode::Char('s'));
    assert_eq!(control.request().save, 2);
    press(&mut app, KeyCode::Char(' '));
    assert!(!control.is_paused());

    // q stops the run after a save and leaves once its thread has ended.
    assert_eq!(press(&mut app, KeyCode::Char('q')), Flow::Continue);
    assert!(control.request().stop);
    assert!(!app.should_exit());
    let mut stopped = status(RunState::Stopped, 4);
    stopped.last_checkpoint = Some(PathBuf::from("/runs/x/checkpoint-4"));
    app.view.apply(RunEvent::Status(stopped));
    app.view.apply(RunEvent::Finished(None));
    assert!(app.should_exit());
    let lines = screen(&app);
    assert!(lines[0].contains("STOPPED"), "{}", lines[0]);
    press(&mut app, KeyCode::Char('3'));
    find(&screen(&app), "step 4: saved /runs/x/checkpoint-4");
}

#[test]
fn a_long_model_path_keeps_the_header_in_80_columns() {
    let (mut app, _) = app();
    let mut s = status(RunState::Running, 3);
    s.model = format!("/very/long/{}/Qwen3-30B-A3B", "directory".repeat(12));
    app.view.apply(RunEvent::Status(s));
    let lines = screen(&app);
    assert!(
        lines[0].trim_end().ends_with("/Qwen3-30B-A3B"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("model …"), "{}", lines[0]);
    assert!(lines[0].contains("step 3/10"), "{}", lines[0]);
}
