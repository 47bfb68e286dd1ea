//! Drawing the UI: header, tabs, the panel shown, and a key line.

use mlx_grpo::trainer::RunState;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline, Tabs, Wrap};

use crate::app::{App, Mode, Panel};
use crate::format;

/// Rows of one metric in the metrics panel: a title and a two-row sparkline.
const METRIC_ROWS: u16 = 3;

/// Draws the whole UI into `frame`.
pub fn draw(frame: &mut Frame, app: &App) {
    let [header, tabs, body, keys] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_header(frame, header, app);
    let titles = Panel::ALL
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{} {}", i + 1, p.title()));
    frame.render_widget(
        Tabs::new(titles)
            .select(app.panel.index())
            .style(Style::default().fg(Color::Gray))
            .highlight_style(Style::default().fg(Color::Black).bg(Color::Cyan)),
        tabs,
    );
    match app.panel {
        Panel::Metrics => draw_metrics(frame, body, app),
        Panel::Samples => draw_samples(frame, body, app),
        Panel::Logs => draw_logs(frame, body, app),
        Panel::Config => draw_config(frame, body, app),
    }
    let help = match app.mode {
        Mode::InProcess => {
            "p pause/resume  s save  q save+quit  Tab/1-4 panels  ↑↓ PgUp/PgDn scroll"
        }
        Mode::Watch => {
            "p pause/resume  s save  x save+stop run  q leave  Tab/1-4 panels  ↑↓ scroll"
        }
    };
    frame.render_widget(
        Paragraph::new(help).style(Style::default().fg(Color::DarkGray)),
        keys,
    );
}

fn state_span(app: &App) -> Span<'static> {
    let state = app.view.status.as_ref().map(|s| s.state);
    let (text, color) = match state {
        _ if app.view.finished == Some(None) && state != Some(RunState::Stopped) => {
            ("FINISHED", Color::Green)
        }
        Some(RunState::Running) if app.pause_requested() => ("PAUSING", Color::Yellow),
        Some(RunState::Running) if app.stopping => ("STOPPING", Color::Yellow),
        Some(RunState::Running) => ("RUNNING", Color::Green),
        Some(RunState::Paused) => ("PAUSED", Color::Yellow),
        Some(RunState::Saving) => ("SAVING", Color::Cyan),
        Some(RunState::Stopped) => ("STOPPED", Color::Magenta),
        Some(RunState::Finished) => ("FINISHED", Color::Green),
        None => ("WAITING", Color::DarkGray),
    };
    Span::styled(
        format!(" {text} "),
        Style::default()
            .fg(Color::Black)
            .bg(color)
            .add_modifier(Modifier::BOLD),
    )
}

fn draw_header(frame: &mut Frame, area: Rect, app: &App) {
    let view = &app.view;
    let (model, step, total, memory) = match &view.status {
        Some(s) => (
            s.model.clone(),
            s.step.to_string(),
            s.total_steps.to_string(),
            format!(
                "{} (peak {})",
                format::bytes(s.active_memory),
                format::bytes(s.peak_memory)
            ),
        ),
        None => ("-".into(), "-".into(), "-".into(), "-".into()),
    };
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let state = state_span(app);
    let fixed = format!(" step {step}/{total}  model ").chars().count() + 10;
    let room = usize::from(area.width).saturating_sub(fixed).max(8);
    let first = Line::from(vec![
        state,
        Span::raw(" step "),
        Span::styled(format!("{step}/{total}"), bold),
        Span::raw("  model "),
        Span::styled(format::tail(&model, room), bold),
    ]);
    let tokens = view
        .tokens_per_second()
        .map_or_else(|| "-".to_string(), |t| format!("{t:.0}"));
    let second = Line::from(vec![
        Span::raw("elapsed "),
        Span::styled(format::duration(view.elapsed(app.now_unix)), bold),
        Span::raw("  ETA "),
        Span::styled(format::duration(view.eta()), bold),
        Span::raw("  tok/s "),
        Span::styled(tokens, bold),
        Span::raw("  mem "),
        Span::styled(memory, bold),
    ]);
    frame.render_widget(Paragraph::new(vec![first, second]), area);
}

/// Values mapped onto 1..=100 for a sparkline (NaN as 0, a flat series
/// at mid-height).
fn sparkline_data(values: &[f64]) -> Vec<u64> {
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    values
        .iter()
        .map(|&v| {
            if !v.is_finite() {
                0
            } else if hi > lo {
                1 + ((v - lo) / (hi - lo) * 99.0).round() as u64
            } else {
                50
            }
        })
        .collect()
}

fn draw_metrics(frame: &mut Frame, area: Rect, app: &App) {
    let names = app.view.metric_names();
    if names.is_empty() {
        frame.render_widget(
            Paragraph::new(
                "no metrics logged yet (the first record comes after logging_steps steps)",
            ),
            area,
        );
        return;
    }
    let columns = if area.width >= 60 { 2 } else { 1 };
    let rows = usize::from((area.height / METRIC_ROWS).max(1));
    let first = (app.scroll[Panel::Metrics.index()] * columns).min(names.len().saturating_sub(1));
    let column_areas = Layout::horizontal(vec![Constraint::Ratio(1, columns as u32); columns])
        .spacing(2)
        .split(area);
    for (slot, name) in names.iter().skip(first).take(rows * columns).enumerate() {
        let (column, row) = (slot % columns, slot / columns);
        let column_area = column_areas[column];
        let y = column_area.y + row as u16 * METRIC_ROWS;
        let title = Rect::new(column_area.x, y, column_area.width, 1);
        let chart = Rect::new(column_area.x, y + 1, column_area.width, METRIC_ROWS - 1);
        let values = app.view.series(name);
        let last = values.iter().rev().find(|v| v.is_finite()).copied();
        let range = values
            .iter()
            .filter(|v| v.is_finite())
            .fold(None, |acc: Option<(f64, f64)>, &v| {
                Some(acc.map_or((v, v), |(a, b)| (a.min(v), b.max(v))))
            });
        let mut spans = vec![
            Span::styled(
                name.clone(),
                Style::default()
                    .fg(Color::Cyan)
                    .add_modifier(Modifier::BOLD),
            ),
            Span::raw(" "),
            Span::styled(
                last.map_or_else(|| "nan".to_string(), format::metric),
                Style::default().add_modifier(Modifier::BOLD),
            ),
        ];
        if let Some((lo, hi)) = range {
            spans.push(Span::styled(
                format!(" [{} … {}]", format::metric(lo), format::metric(hi)),
                Style::default().fg(Color::DarkGray),
            ));
        }
        frame.render_widget(Paragraph::new(Line::from(spans)), title);
        let data = sparkline_data(&values);
        let shown = &data[data.len().saturating_sub(usize::from(chart.width))..];
        frame.render_widget(
            Sparkline::default()
                .data(shown)
                .max(100)
                .style(Style::default().fg(Color::Green)),
            chart,
        );
    }
}

fn labelled<'a>(label: &'a str, text: &str, style: Style) -> Line<'a> {
    Line::from(vec![
        Span::styled(format!("{label:<7}"), Style::default().fg(Color::DarkGray)),
        Span::styled(text.replace('\n', " ⏎ "), style),
    ])
}

fn draw_samples(frame: &mut Frame, area: Rect, app: &App) {
    let mut lines: Vec<Line> = Vec::new();
    if app.view.samples.is_empty() {
        lines.push(Line::raw(
            "no samples yet (written when log_completions is on or a UI is attached)",
        ));
    }
    for sample in &app.view.samples {
        let reward = sample
            .reward
            .map_or_else(|| "nan".to_string(), |r| format!("{r:.3}"));
        let mut head = vec![
            Span::styled(
                format!("step {}", sample.step),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw("  reward "),
            Span::styled(
                reward,
                Style::default()
                    .fg(Color::Green)
                    .add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(
                "  adv {:+.3}  {} tok",
                sample.advantage, sample.num_tokens
            )),
        ];
        if sample.truncated {
            head.push(Span::styled(" truncated", Style::default().fg(Color::Red)));
        }
        lines.push(Line::from(head));
        let per_function = sample
            .rewards
            .iter()
            .map(|(name, v)| format!("{name}={}", format::metric(*v)))
            .collect::<Vec<_>>()
            .join("  ");
        lines.push(labelled(
            "scores",
            &per_function,
            Style::default().fg(Color::Green),
        ));
        lines.push(labelled(
            "prompt",
            &sample.prompt,
            Style::default().fg(Color::Cyan),
        ));
        if let Some(thinking) = &sample.thinking {
            lines.push(labelled(
                "think",
                thinking,
                Style::default()
                    .fg(Color::Magenta)
                    .add_modifier(Modifier::ITALIC),
            ));
        }
        for call in &sample.tool_calls {
            lines.push(labelled("tool", call, Style::default().fg(Color::Yellow)));
        }
        lines.push(labelled("answer", &sample.text, Style::default()));
        if let Some(expected) = &sample.answer {
            lines.push(labelled(
                "expect",
                expected,
                Style::default().fg(Color::DarkGray),
            ));
        }
        lines.push(Line::raw(""));
    }
    let scroll = u16::try_from(app.scroll[Panel::Samples.index()]).unwrap_or(u16::MAX);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((scroll, 0)),
        area,
    );
}

fn draw_logs(frame: &mut Frame, area: Rect, app: &App) {
    let height = usize::from(area.height);
    let logs = &app.view.logs;
    let back = app.scroll[Panel::Logs.index()].min(logs.len().saturating_sub(height));
    let end = logs.len() - back;
    let start = end.saturating_sub(height);
    let lines: Vec<Line> = logs
        .iter()
        .skip(start)
        .take(end - start)
        .map(|l| Line::raw(l.as_str()))
        .collect();
    frame.render_widget(Paragraph::new(lines), area);
}

fn draw_config(frame: &mut Frame, area: Rect, app: &App) {
    let text = app.view.config.as_deref().unwrap_or("no config yet");
    let scroll = u16::try_from(app.scroll[Panel::Config.index()]).unwrap_or(u16::MAX);
    frame.render_widget(Paragraph::new(text).scroll((scroll, 0)), area);
}
