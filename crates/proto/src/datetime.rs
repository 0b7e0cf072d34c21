//! The proleptic Gregorian calendar for the data model's datetimes: whole
//! days since 1970-01-01 to and from dates, and the one textual form every
//! stage writes (UTC, milliseconds, `Z`).

/// Days since 1970-01-01 of a date (month 1–12).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01: (year, month 1–12, day 1–31).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for microseconds since the epoch, truncated
/// to the millisecond (as PostgreSQL's `to_char(… 'MS')` writes it).
pub fn format_utc_millis(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let millis = micros.rem_euclid(1_000_000) / 1000;
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let of_day = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// The microseconds since the epoch of a datetime written exactly as
/// [`format_utc_millis`] writes it (years 0001–9999); `None` for any other
/// text, so that storing the value and writing it back gives the same text.
pub fn parse_utc_millis(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 24 || b[23] != b'Z' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let digits = b.get(from..to)?;
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second, millis) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?);
    if year == 0 || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    let micros = secs.checked_mul(1_000_000)?.checked_add(millis * 1000)?;
    // Separators, day-of-month and time-of-day ranges: whatever does not
    // write back the same is not this form.
    (format_utc_millis(micros) == text).then_some(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_across_leap_days_and_eras() {
        for days in [-800_000, -1, 0, 59, 60, 11_016, 19_723, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn formats_utc_milliseconds_truncated() {
        assert_eq!(format_utc_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_utc_millis(951_782_400_000_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            format_utc_millis(1_735_689_599_999_999),
            "2024-12-31T23:59:59.999Z"
        );
        assert_eq!(format_utc_millis(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn parses_only_what_it_writes_back() {
        for text in [
            "1970-01-01T00:00:00.000Z",
            "2000-02-29T23:59:59.999Z",
            "0001-01-01T00:00:00.000Z",
            "1969-12-31T23:59:59.999Z",
            "2024-11-26T14:06:40.123Z",
        ] {
            let micros = parse_utc_millis(text);
            assert_eq!(micros.map(format_utc_millis).as_deref(), Some(text));
        }
        assert_eq!(
            parse_utc_millis("2024-11-26T14:06:40.123Z"),
            Some(1_732_630_000_123_000)
        );
        for text in [
            "2023-02-29T00:00:00.000Z",
            "2024-04-31T00:00:00.000Z",
            "2024-01-01T24:00:00.000Z",
            "2024-01-01T00:60:00.000Z",
            "2024-01-01T00:00:60.000Z",
            "0000-01-01T00:00:00.000Z",
            "2024-01-01T00:00:00Z",
            "2024-01-01T00:00:00.000000Z",
            "2024-01-01T00:00:00.000+00:00",
            "2024-01-01 00:00:00.000Z",
            "2024-01-01T00:00:00.000z",
            "+024-01-01T00:00:00.000Z",
            "2024-01-01T00:00:00.0-0Z",
            "",
        ] {
            assert_eq!(parse_utc_millis(text), None, "{text}");
        }
    }
}
