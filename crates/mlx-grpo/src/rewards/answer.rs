//! Finding and comparing final answers in model output.
//!
//! All functions are total: any input string gives an answer or `None`, never
//! a panic.

/// The content of the last `\boxed{...}` (or `\fbox{...}`), braces balanced.
pub fn extract_boxed(text: &str) -> Option<&str> {
    let start = ["\\boxed{", "\\fbox{"]
        .iter()
        .filter_map(|marker| text.rfind(marker).map(|i| i + marker.len()))
        .max()?;
    let mut depth = 1usize;
    for (offset, ch) in text[start..].char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&text[start..start + offset]);
                }
            }
            _ => {}
        }
    }
    None
}

/// The content of the last complete `<tag>...</tag>` pair.
pub fn extract_tag<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let end = text.rfind(&close)?;
    let start = text[..end].rfind(&open)? + open.len();
    Some(&text[start..end])
}

/// The text after the last `####` marker (GSM8K's answer format), up to the
/// end of that line.
pub fn extract_after_hashes(text: &str) -> Option<&str> {
    let start = text.rfind("####")? + 4;
    let rest = &text[start..];
    Some(rest.lines().next().unwrap_or("").trim())
}

/// The final answer of a model's text: the last `\boxed{}`, else the last
/// `<answer>` block, else what follows the last `####`, else the whole text.
pub fn extract_final_answer(text: &str) -> &str {
    extract_boxed(text)
        .or_else(|| extract_tag(text, "answer"))
        .or_else(|| extract_after_hashes(text))
        .unwrap_or(text)
        .trim()
}

/// Reads a whole string as a number, tolerating the usual decorations:
/// surrounding `$` or `\$`, `\(`..`\)`, thousands separators (`1,234`), a
/// trailing `%` or `.`, a leading `+`, the Unicode minus, `\frac{a}{b}` /
/// `\dfrac{a}{b}` / `\tfrac{a}{b}`, `a/b`, `\!` and `\,` spacing, and a
/// trailing `\%`. Returns `None` for anything else (units, words, several
/// numbers).
pub fn parse_number(text: &str) -> Option<f64> {
    let mut s = text
        .trim()
        .replace('\u{2212}', "-")
        .replace("\\!", "")
        .replace("\\,", "")
        .replace("\\%", "%");
    for (open, close) in [("\\(", "\\)"), ("\\[", "\\]"), ("$", "$")] {
        if s.len() >= open.len() + close.len() && s.starts_with(open) && s.ends_with(close) {
            s = s[open.len()..s.len() - close.len()].trim().to_string();
        }
    }
    let s = s.trim_start_matches("\\$").trim_start_matches('$').trim();
    let s = s.strip_suffix('%').unwrap_or(s).trim();
    let s = s.strip_suffix('.').unwrap_or(s).trim();
    if s.is_empty() {
        return None;
    }
    if let Some(value) = parse_latex_fraction(s) {
        return Some(value);
    }
    if let Some((num, den)) = s.split_once('/') {
        let (num, den) = (parse_plain(num.trim())?, parse_plain(den.trim())?);
        return (den != 0.0).then(|| num / den);
    }
    parse_plain(s)
}

/// `\frac{a}{b}` and its `\dfrac`/`\tfrac` forms, with an optional sign.
fn parse_latex_fraction(s: &str) -> Option<f64> {
    let (sign, body) = match s.strip_prefix('-') {
        Some(rest) => (-1.0, rest.trim_start()),
        None => (1.0, s),
    };
    let body = ["\\dfrac", "\\tfrac", "\\frac"]
        .iter()
        .find_map(|p| body.strip_prefix(p))?;
    let body = body.trim_start().strip_prefix('{')?;
    let (num, rest) = body.split_once('}')?;
    let rest = rest.trim_start().strip_prefix('{')?;
    let den = rest.strip_suffix('}')?;
    let (num, den) = (parse_number(num)?, parse_number(den)?);
    (den != 0.0).then(|| sign * num / den)
}

/// A decimal number with optional sign and well-formed thousands separators.
fn parse_plain(s: &str) -> Option<f64> {
    let s = s.strip_prefix('+').unwrap_or(s);
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    if unsigned.is_empty() || !unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let cleaned = if unsigned.contains(',') {
        let (int_part, frac_part) = match unsigned.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (unsigned, None),
        };
        let groups: Vec<&str> = int_part.split(',').collect();
        let well_formed = groups.first().is_some_and(|g| (1..=3).contains(&g.len()))
            && groups[1..].iter().all(|g| g.len() == 3)
            && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_digit()));
        if !well_formed {
            return None;
        }
        let mut out = groups.concat();
        if let Some(f) = frac_part {
            out.push('.');
            out.push_str(f);
        }
        out
    } else {
        unsigned.to_string()
    };
    if !cleaned.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let value: f64 = cleaned.parse().ok()?;
    Some(if s.starts_with('-') { -value } else { value })
}

/// The last number written in free text (`"so she has 1,234.5 apples"` gives
/// 1234.5); a `a/b` fraction counts as one number.
pub fn last_number(text: &str) -> Option<f64> {
    let bytes = text.as_bytes();
    let mut end = bytes.len();
    while end > 0 {
        // Find the last digit at or before `end`.
        let last_digit = bytes[..end].iter().rposition(u8::is_ascii_digit)?;
        // Extend left over digits, commas between digits, one dot, and a fraction slash.
        let mut start = last_digit;
        while start > 0 {
            let prev = bytes[start - 1];
            let joins = matches!(prev, b',' | b'.' | b'/')
                && start >= 2
                && bytes[start - 2].is_ascii_digit();
            if prev.is_ascii_digit() || joins {
                start -= 1;
            } else {
                break;
            }
        }
        if start > 0 && bytes[start - 1] == b'-' {
            start -= 1;
        }
        // Both ends sit on ASCII bytes, so the slice is on char boundaries.
        if let Some(value) = text.get(start..=last_digit).and_then(parse_number) {
            return Some(value);
        }
        end = start;
    }
    None
}

/// A canonical form for comparing non-numeric answers: trimmed, lowercased,
/// `$` and `\text{}` wrappers and a trailing period removed, inner whitespace
/// collapsed.
pub fn normalize_text(text: &str) -> String {
    let mut s = text;
    loop {
        let before = s;
        s = s.trim().trim_end_matches('.').trim_matches('$');
        if let Some(inner) = s.strip_prefix("\\text{").and_then(|r| r.strip_suffix('}')) {
            s = inner;
        }
        if s == before {
            break;
        }
    }
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Whether a model's output answers `gold`.
///
/// The model's final answer is taken with [`extract_final_answer`]; the gold
/// answer is read the same way (so a GSM8K solution ending in `#### 42` works).
/// When the gold answer is a number, the model's answer is read as a number
/// (or its last number is taken) and compared within a relative tolerance
/// `tol` (`|a - b| <= tol * max(1, |b|)`); otherwise the normalised texts must
/// be equal.
pub fn answers_match(model_text: &str, gold: &str, tol: f64) -> bool {
    let gold = extract_final_answer(gold);
    let candidate = extract_final_answer(model_text);
    match parse_number(gold) {
        Some(expected) => match parse_number(candidate).or_else(|| last_number(candidate)) {
            Some(got) => (got - expected).abs() <= tol * expected.abs().max(1.0),
            None => false,
        },
        None => !candidate.is_empty() && normalize_text(candidate) == normalize_text(gold),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxed_and_tags() {
        assert_eq!(
            extract_boxed(r"so \boxed{1} then \boxed{\frac{1}{2}}."),
            Some(r"\frac{1}{2}")
        );
        assert_eq!(extract_boxed(r"\boxed{unclosed"), None);
        assert_eq!(
            extract_tag("<answer> 7 </answer> and <answer>8</answer>", "answer"),
            Some("8")
        );
        assert_eq!(extract_tag("</answer><answer>", "answer"), None);
        assert_eq!(
            extract_after_hashes("work\n#### 1,200\nmore"),
            Some("1,200")
        );
        assert_eq!(extract_final_answer("blah <answer>x</answer>"), "x");
        assert_eq!(extract_final_answer("  plain "), "plain");
    }

    #[test]
    fn numbers() {
        let cases = [
            ("42", Some(42.0)),
            ("-3.5", Some(-3.5)),
            ("\u{2212}2", Some(-2.0)),
            ("$1,234.50", Some(1234.5)),
            (r"\$18", Some(18.0)),
            ("18.0", Some(18.0)),
            ("7.", Some(7.0)),
            ("50%", Some(50.0)),
            (r"50\%", Some(50.0)),
            ("3/4", Some(0.75)),
            (r"\frac{3}{4}", Some(0.75)),
            (r"-\dfrac{1}{8}", Some(-0.125)),
            (r"\(12\)", Some(12.0)),
            ("$5$", Some(5.0)),
            ("1,23", None),
            ("12 apples", None),
            ("1/0", None),
            ("", None),
            ("abc", None),
            ("+4", Some(4.0)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_number(text), expected, "{text}");
        }
    }

    #[test]
    fn last_numbers() {
        assert_eq!(last_number("she has 1,234.5 apples."), Some(1234.5));
        assert_eq!(last_number("3 then -4"), Some(-4.0));
        assert_eq!(last_number("ratio 3/4!"), Some(0.75));
        assert_eq!(last_number("x-2"), Some(-2.0));
        assert_eq!(last_number("no digits"), None);
        assert_eq!(last_number("é1"), Some(1.0));
    }

    #[test]
    fn matching() {
        assert!(answers_match("The answer is \\boxed{18}", "18", 1e-6));
        assert!(answers_match("so 18.0 dollars", "#### 18", 1e-6));
        assert!(answers_match("<answer>$1,000</answer>", "1000", 1e-6));
        assert!(answers_match("\\boxed{\\frac{1}{2}}", "0.5", 1e-6));
        assert!(!answers_match("\\boxed{17}", "18", 1e-6));
        assert!(!answers_match("no idea", "18", 1e-6));
        assert!(answers_match("<answer> Paris. </answer>", "paris", 1e-6));
        assert!(!answers_match("", "paris", 1e-6));
        assert!(!answers_match("London", "Paris", 1e-6));
    }

    #[test]
    fn normalization() {
        assert_eq!(normalize_text(r"  $\text{Blue  Whale}$. "), "blue whale");
    }
}
