//! A small `strftime` for the `strftime_now(format)` template function.
//!
//! Times are in UTC (no time-zone database is consulted). Supported
//! directives: `%a %A %b %B %c %d %D %e %F %H %I %j %m %M %p %R %S %T %u %w
//! %x %X %y %Y %z %Z %h %n %t %%`, and the `-` flag (`%-d`) that drops
//! zero padding. Anything else is copied as written.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A broken-down UTC time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Civil {
    year: i64,
    /// 1..=12
    month: u32,
    /// 1..=31
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// 0 = Monday .. 6 = Sunday
    weekday: u32,
    /// 1..=366
    yday: u32,
}

impl Civil {
    fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        let jan1 = days_from_civil(year, 1, 1);
        Civil {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
            // 1970-01-01 was a Thursday (index 3 from Monday).
            weekday: (days + 3).rem_euclid(7) as u32,
            yday: (days - jan1 + 1) as u32,
        }
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats `time` (UTC) with a Python/C `strftime` format string.
pub(crate) fn strftime(format: &str, time: SystemTime) -> String {
    let secs = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX / 2),
    };
    let t = Civil::from_unix(secs);
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let pad = if chars.peek() == Some(&'-') {
            chars.next();
            false
        } else {
            true
        };
        let Some(d) = chars.next() else {
            out.push('%');
            break;
        };
        let num = |out: &mut String, n: u32, width: usize, fill: char| {
            if pad {
                let s = n.to_string();
                for _ in s.len()..width {
                    out.push(fill);
                }
                out.push_str(&s);
            } else {
                let _ = write!(out, "{n}");
            }
        };
        let hour12 = match t.hour % 12 {
            0 => 12,
            h => h,
        };
        let weekday = WEEKDAYS[t.weekday as usize % 7];
        let month = MONTHS[(t.month as usize + 11) % 12];
        match d {
            'a' => out.push_str(&weekday[..3]),
            'A' => out.push_str(weekday),
            'b' | 'h' => out.push_str(&month[..3]),
            'B' => out.push_str(month),
            'c' => {
                let _ = write!(
                    out,
                    "{} {} {:>2} {:02}:{:02}:{:02} {}",
                    &weekday[..3],
                    &month[..3],
                    t.day,
                    t.hour,
                    t.minute,
                    t.second,
                    t.year
                );
            }
            'd' => num(&mut out, t.day, 2, '0'),
            'e' => num(&mut out, t.day, 2, ' '),
            'D' | 'x' => {
                let _ = write!(
                    out,
                    "{:02}/{:02}/{:02}",
                    t.month,
                    t.day,
                    t.year.rem_euclid(100)
                );
            }
            'F' => {
                let _ = write!(out, "{}-{:02}-{:02}", t.year, t.month, t.day);
            }
            'H' => num(&mut out, t.hour, 2, '0'),
            'I' => num(&mut out, hour12, 2, '0'),
            'j' => num(&mut out, t.yday, 3, '0'),
            'm' => num(&mut out, t.month, 2, '0'),
            'M' => num(&mut out, t.minute, 2, '0'),
            'p' => out.push_str(if t.hour < 12 { "AM" } else { "PM" }),
            'R' => {
                let _ = write!(out, "{:02}:{:02}", t.hour, t.minute);
            }
            'S' => num(&mut out, t.second, 2, '0'),
            'T' | 'X' => {
                let _ = write!(out, "{:02}:{:02}:{:02}", t.hour, t.minute, t.second);
            }
            'u' => num(&mut out, t.weekday + 1, 1, '0'),
            'w' => num(&mut out, (t.weekday + 1) % 7, 1, '0'),
            'y' => num(&mut out, t.year.rem_euclid(100) as u32, 2, '0'),
            'Y' => {
                let _ = write!(out, "{}", t.year);
            }
            'z' => out.push_str("+0000"),
            'Z' => out.push_str("UTC"),
            'n' => out.push('\n'),
            't' => out.push('\t'),
            '%' => out.push('%'),
            other => {
                out.push('%');
                if !pad {
                    out.push('-');
                }
                out.push(other);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn formats_known_dates() {
        // 2024-02-29T13:05:09Z, a Thursday, day 60 of a leap year.
        let t = at(1_709_211_909);
        assert_eq!(strftime("%Y-%m-%d %H:%M:%S", t), "2024-02-29 13:05:09");
        assert_eq!(strftime("%d %b %Y", t), "29 Feb 2024");
        assert_eq!(
            strftime("%A %B %-d, %I %p %j %%", t),
            "Thursday February 29, 01 PM 060 %"
        );
        assert_eq!(strftime("%a %u %w %y %e %q", t), "Thu 4 4 24 29 %q");
        assert_eq!(strftime("%Y-%m-%d %a", at(0)), "1970-01-01 Thu");
    }

    #[test]
    fn round_trips_days() {
        for days in [-800_000i64, -1, 0, 59, 365, 11_016, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
