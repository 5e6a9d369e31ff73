//! Calendar months in UTC: where one starts and ends, and how many days it has.

/// One day in milliseconds.
pub(super) const DAY_MS: u64 = 86_400_000;

/// A calendar month in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    pub year: i64,
    /// 1–12.
    pub month: u32,
    /// First millisecond of the month (Unix ms).
    pub start_ms: u64,
    /// First millisecond of the next month.
    pub end_ms: u64,
}

impl Month {
    /// The month containing `t_ms`.
    pub fn containing(t_ms: u64) -> Month {
        let first = date_of(t_ms)
            .replace_day(1)
            .expect("every month has a day 1");
        let next = first
            .checked_add(time::Duration::days(i64::from(
                first.month().length(first.year()),
            )))
            .unwrap_or(time::Date::MAX);
        Month {
            year: i64::from(first.year()),
            month: u32::from(u8::from(first.month())),
            start_ms: ms_of(first),
            end_ms: ms_of(next),
        }
    }

    pub fn len_ms(&self) -> u64 {
        self.end_ms - self.start_ms
    }

    pub fn days(&self) -> u32 {
        (self.len_ms() / DAY_MS) as u32
    }

    pub fn contains(&self, t_ms: u64) -> bool {
        (self.start_ms..self.end_ms).contains(&t_ms)
    }
}

/// The UTC date of a Unix millisecond (clamped to the `time` crate's range).
fn date_of(t_ms: u64) -> time::Date {
    let secs = i64::try_from(t_ms / 1000).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .date()
}

/// Unix millisecond of midnight UTC starting `date`.
fn ms_of(date: time::Date) -> u64 {
    (date.midnight().assume_utc().unix_timestamp().max(0) as u64) * 1000
}
