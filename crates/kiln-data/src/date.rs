//! Calendar dates and a `strftime` subset, for the `strftime_now` helper of chat templates.
//!
//! Llama-3.2+ templates print today's date with `strftime_now("%d %b %Y")`. [`TemplateClock`]
//! decides what "now" is: the system clock (UTC), or a pinned instant for reproducible runs.

use std::fmt::Write as _;

/// A UTC date and time of day (proleptic Gregorian calendar).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateTime {
    /// Year, e.g. 2026.
    pub year: i32,
    /// Month 1..=12.
    pub month: u32,
    /// Day of month 1..=31.
    pub day: u32,
    /// Hour 0..=23.
    pub hour: u32,
    /// Minute 0..=59.
    pub minute: u32,
    /// Second 0..=59.
    pub second: u32,
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
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

impl DateTime {
    /// Midnight of a date; `None` if the date does not exist.
    pub fn date(year: i32, month: u32, day: u32) -> Option<Self> {
        let dim = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if is_leap(year) => 29,
            2 => 28,
            _ => return None,
        };
        (1..=dim).contains(&day).then_some(DateTime {
            year,
            month,
            day,
            hour: 0,
            minute: 0,
            second: 0,
        })
    }

    /// Parses `YYYY-MM-DD` (midnight UTC).
    pub fn parse_date(s: &str) -> Option<Self> {
        let mut it = s.trim().splitn(3, '-');
        let y = it.next()?.parse().ok()?;
        let m = it.next()?.parse().ok()?;
        let d = it.next()?.parse().ok()?;
        Self::date(y, m, d)
    }

    /// The current UTC time from the system clock.
    pub fn now_utc() -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let s = secs.rem_euclid(86_400);
        DateTime {
            year,
            month,
            day,
            hour: (s / 3600) as u32,
            minute: (s / 60 % 60) as u32,
            second: (s % 60) as u32,
        }
    }

    /// Day of the week, 0 = Monday.
    fn weekday(&self) -> usize {
        // 1970-01-01 was a Thursday (3).
        (days_from_civil(self.year, self.month, self.day) + 3).rem_euclid(7) as usize
    }

    fn day_of_year(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) - days_from_civil(self.year, 1, 1) + 1
    }

    /// Formats like Python's `datetime.strftime` in the C locale, for the directives
    /// `%Y %y %m %d %e %j %b %h %B %a %A %u %w %H %I %M %S %p %F %D %T %%`.
    /// Unknown directives are copied through unchanged, as glibc does.
    pub fn strftime(&self, format: &str) -> String {
        let mut out = String::new();
        let mut chars = format.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let Some(d) = chars.next() else {
                out.push('%');
                break;
            };
            let month = MONTHS[(self.month - 1) as usize];
            let weekday = WEEKDAYS[self.weekday()];
            let hour12 = if self.hour.is_multiple_of(12) {
                12
            } else {
                self.hour % 12
            };
            // Writing to a String cannot fail.
            let _ = match d {
                'Y' => write!(out, "{}", self.year),
                'y' => write!(out, "{:02}", self.year.rem_euclid(100)),
                'm' => write!(out, "{:02}", self.month),
                'd' => write!(out, "{:02}", self.day),
                'e' => write!(out, "{:>2}", self.day),
                'j' => write!(out, "{:03}", self.day_of_year()),
                'b' | 'h' => write!(out, "{}", &month[..3]),
                'B' => write!(out, "{month}"),
                'a' => write!(out, "{}", &weekday[..3]),
                'A' => write!(out, "{weekday}"),
                'u' => write!(out, "{}", self.weekday() + 1),
                'w' => write!(out, "{}", (self.weekday() + 1) % 7),
                'H' => write!(out, "{:02}", self.hour),
                'I' => write!(out, "{hour12:02}"),
                'M' => write!(out, "{:02}", self.minute),
                'S' => write!(out, "{:02}", self.second),
                'p' => write!(out, "{}", if self.hour < 12 { "AM" } else { "PM" }),
                'F' => write!(out, "{}-{:02}-{:02}", self.year, self.month, self.day),
                'D' => write!(
                    out,
                    "{:02}/{:02}/{:02}",
                    self.month,
                    self.day,
                    self.year.rem_euclid(100)
                ),
                'T' => write!(
                    out,
                    "{:02}:{:02}:{:02}",
                    self.hour, self.minute, self.second
                ),
                '%' => write!(out, "%"),
                other => write!(out, "%{other}"),
            };
        }
        out
    }
}

/// What `strftime_now` in a chat template sees as "now".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TemplateClock {
    /// The system clock, in UTC (what transformers does, in local time).
    #[default]
    System,
    /// A fixed instant, for reproducible prompts across runs.
    Pinned(DateTime),
}

impl TemplateClock {
    /// The instant this clock reads now.
    pub fn now(&self) -> DateTime {
        match self {
            TemplateClock::System => DateTime::now_utc(),
            TemplateClock::Pinned(t) => *t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip_and_weekdays() {
        for z in [-800_000_i64, -1, 0, 1, 19_000, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        let t = DateTime::date(2024, 7, 26).unwrap();
        assert_eq!(t.strftime("%d %b %Y"), "26 Jul 2024");
        assert_eq!(t.strftime("%A %B %e, %y %j"), "Friday July 26, 24 208");
        let t = DateTime::date(2026, 11, 28).unwrap();
        assert_eq!(
            t.strftime("%a %F %T %p %I %%x %Q"),
            "Sat 2026-11-28 00:00:00 AM 12 %x %Q"
        );
        assert!(DateTime::date(2025, 2, 29).is_none());
        assert!(DateTime::date(2024, 2, 29).is_some());
        assert_eq!(
            DateTime::parse_date("2024-01-05")
                .unwrap()
                .strftime("%d %b %Y"),
            "05 Jan 2024"
        );
        assert!(DateTime::parse_date("2024-13-05").is_none());
    }
}
