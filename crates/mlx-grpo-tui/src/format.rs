//! Numbers as the UI prints them.

/// `h:mm:ss` of a number of seconds (`--:--:--` when unknown).
pub fn duration(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) if s.is_finite() && s >= 0.0 => {
            let s = s.round() as u64;
            format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
        }
        _ => "--:--:--".to_string(),
    }
}

/// Bytes in binary units with one decimal (`12.5 MiB`).
pub fn bytes(n: usize) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A metric value in at most about 9 characters.
pub fn metric(v: f64) -> String {
    if v.is_nan() {
        return "nan".to_string();
    }
    let a = v.abs();
    if a == 0.0 {
        "0".to_string()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

/// The last `width` characters of `text`, with `…` in front when cut.
pub fn tail(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width {
        return text.to_string();
    }
    let keep = width.saturating_sub(1);
    let mut out = String::from("…");
    out.extend(text.chars().skip(count - keep));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_bytes_and_metrics() {
        assert_eq!(duration(Some(3725.0)), "1:02:05");
        assert_eq!(duration(None), "--:--:--");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(metric(0.5), "0.5000");
        assert_eq!(metric(2e-5), "2.00e-5");
        assert_eq!(metric(f64::NAN), "nan");
        assert_eq!(tail("abcdef", 4), "…def");
    }
}
