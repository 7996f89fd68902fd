//! `strftime_now(format)`: the date and time, formatted as Python's `datetime.strftime` does on
//! Linux (C locale). Templates print today's date into system prompts (Llama 3.2,
//! Granite, Mistral Small), which makes prompts depend on the clock; a template variable pins the
//! moment (see [`super::NOW_VARIABLE`]).

use std::time::{SystemTime, UNIX_EPOCH};

/// A moment in the proleptic Gregorian calendar, without a time zone (Python's naive
/// `datetime`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    year: i64,
    /// 1..=12
    month: u32,
    /// 1..=31
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

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
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl DateTime {
    /// The clock's current time. Inside the sandbox there is no time zone: this is UTC.
    pub fn now() -> DateTime {
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        DateTime::from_unix(seconds)
    }

    fn from_unix(seconds: i64) -> DateTime {
        let days = seconds.div_euclid(86_400);
        let rest = seconds.rem_euclid(86_400) as u32;
        // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm, eras of 400 years).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        DateTime {
            year,
            month,
            day,
            hour: rest / 3600,
            minute: rest / 60 % 60,
            second: rest % 60,
        }
    }

    /// Reads `YYYY-MM-DD`, optionally followed by `T` or a space and `HH:MM` or `HH:MM:SS`.
    pub fn parse(text: &str) -> Option<DateTime> {
        let text = text.trim();
        let (date, time) = match text.find(['T', ' ']) {
            Some(at) => (&text[..at], Some(&text[at + 1..])),
            None => (text, None),
        };
        let mut date_parts = date.splitn(3, '-');
        let year: i64 = date_parts.next()?.parse().ok()?;
        let month: u32 = date_parts.next()?.parse().ok()?;
        let day: u32 = date_parts.next()?.parse().ok()?;
        let (mut hour, mut minute, mut second) = (0, 0, 0);
        if let Some(time) = time {
            let mut parts = time.split(':');
            hour = parts.next()?.parse().ok()?;
            minute = parts.next()?.parse().ok()?;
            if let Some(s) = parts.next() {
                second = s.parse().ok()?;
            }
            if parts.next().is_some() {
                return None;
            }
        }
        let valid = (1..=9999).contains(&year)
            && (1..=12).contains(&month)
            && (1..=days_in_month(year, month)).contains(&day)
            && hour < 24
            && minute < 60
            && second < 60;
        valid.then_some(DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        })
    }

    /// Day of the year, 1 for January 1st.
    fn yday(&self) -> u32 {
        (1..self.month)
            .map(|m| days_in_month(self.year, m))
            .sum::<u32>()
            + self.day
    }

    /// 0 for Sunday.
    fn weekday(&self) -> u32 {
        // Zeller-style count from a known Sunday, valid for the proleptic Gregorian calendar.
        let (y, m) = if self.month < 3 {
            (self.year - 1, self.month + 12)
        } else {
            (self.year, self.month)
        };
        let k = y.rem_euclid(100);
        let j = y.div_euclid(100);
        let h = (i64::from(self.day) + (13 * (i64::from(m) + 1)) / 5 + k + k / 4 + j / 4 + 5 * j)
            .rem_euclid(7);
        // Zeller's h: 0 = Saturday.
        ((h + 6) % 7) as u32
    }

    /// Week of the year with weeks starting on `first` (0 Sunday, 1 Monday), as `%U` / `%W`.
    fn week(&self, first: u32) -> u32 {
        let yday0 = self.yday() - 1;
        let offset = (self.weekday() + 7 - first) % 7;
        (yday0 + 7 - offset) / 7
    }

    /// Formats like C's `strftime` in the C locale, with glibc's `-` (no padding) and `_` (pad
    /// with spaces) flags. Unknown directives are written as they are, as glibc does.
    pub fn strftime(&self, format: &str) -> String {
        let mut out = String::new();
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let flag = match chars.peek() {
                Some(&f @ ('-' | '_' | '0')) => {
                    chars.next();
                    Some(f)
                }
                _ => None,
            };
            let Some(directive) = chars.next() else {
                out.push('%');
                if let Some(f) = flag {
                    out.push(f);
                }
                break;
            };
            let num = |value: i64, width: usize, pad: char| -> String {
                match flag.unwrap_or(pad) {
                    '-' => value.to_string(),
                    '_' => format!("{value:>width$}"),
                    _ => format!("{value:0width$}"),
                }
            };
            let hour12 = match self.hour % 12 {
                0 => 12,
                h => h,
            };
            let am_pm = if self.hour < 12 { "AM" } else { "PM" };
            let month_name = MONTHS[(self.month - 1) as usize];
            let weekday_name = WEEKDAYS[self.weekday() as usize];
            let text = match directive {
                'a' => weekday_name[..3].to_string(),
                'A' => weekday_name.to_string(),
                'b' | 'h' => month_name[..3].to_string(),
                'B' => month_name.to_string(),
                'c' => self.strftime("%a %b %e %H:%M:%S %Y"),
                'C' => num(self.year.div_euclid(100), 2, '0'),
                'd' => num(self.day.into(), 2, '0'),
                'D' | 'x' => self.strftime("%m/%d/%y"),
                'e' => num(self.day.into(), 2, '_'),
                'F' => format!("{}-{:02}-{:02}", self.year, self.month, self.day),
                'H' => num(self.hour.into(), 2, '0'),
                'I' => num(hour12.into(), 2, '0'),
                'j' => num(self.yday().into(), 3, '0'),
                'k' => num(self.hour.into(), 2, '_'),
                'l' => num(hour12.into(), 2, '_'),
                'm' => num(self.month.into(), 2, '0'),
                'M' => num(self.minute.into(), 2, '0'),
                'n' => "\n".to_string(),
                'p' => am_pm.to_string(),
                'P' => am_pm.to_lowercase(),
                'r' => self.strftime("%I:%M:%S %p"),
                'R' => self.strftime("%H:%M"),
                'S' => num(self.second.into(), 2, '0'),
                't' => "\t".to_string(),
                'T' | 'X' => self.strftime("%H:%M:%S"),
                'u' => match self.weekday() {
                    0 => 7,
                    d => d,
                }
                .to_string(),
                'U' => num(self.week(0).into(), 2, '0'),
                'w' => self.weekday().to_string(),
                'W' => num(self.week(1).into(), 2, '0'),
                'y' => num(self.year.rem_euclid(100), 2, '0'),
                'Y' => self.year.to_string(),
                // A naive datetime has no offset and no zone name.
                'z' | 'Z' => String::new(),
                '%' => "%".to_string(),
                other => {
                    let mut raw = String::from('%');
                    if let Some(f) = flag {
                        raw.push(f);
                    }
                    raw.push(other);
                    raw
                }
            };
            out.push_str(&text);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python() {
        let t = DateTime::parse("2025-03-04T09:05:07").unwrap();
        assert_eq!(t.strftime("%d %b %Y"), "04 Mar 2025");
        assert_eq!(t.strftime("%B %d, %Y"), "March 04, 2025");
        assert_eq!(
            t.strftime("%A %-d %e|%j %U %W %u %w"),
            "Tuesday 4  4|063 09 09 2 2"
        );
        assert_eq!(
            t.strftime("%I:%M %p %y %F %T %%%Q"),
            "09:05 AM 25 2025-03-04 09:05:07 %%Q"
        );
        assert_eq!(t.strftime("%c"), "Tue Mar  4 09:05:07 2025");
        let new_year = DateTime::parse("2023-01-01").unwrap();
        assert_eq!(new_year.strftime("%a %U %W %j"), "Sun 01 00 001");
    }

    #[test]
    fn reads_the_clock_as_a_calendar_date() {
        assert_eq!(
            DateTime::from_unix(1_741_079_107),
            DateTime::parse("2025-03-04 09:05:07").unwrap()
        );
        assert_eq!(
            DateTime::from_unix(951_782_400),
            DateTime::parse("2000-02-29").unwrap()
        );
    }

    #[test]
    fn refuses_impossible_dates() {
        for bad in [
            "2025-02-29",
            "2025-13-01",
            "2025-03-04T24:00",
            "today",
            "2025-03-04T1:2:3:4",
        ] {
            assert_eq!(DateTime::parse(bad), None, "{bad}");
        }
    }
}
