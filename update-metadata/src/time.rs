//! Lenient RFC 3339 parsing, as the reference accepts it in `manifest.json` wave times.
//!
//! Accepted: one- or two-digit month and day (`2019-8-06T15:00:00Z`), `T`, `t` or a space
//! between date and time, optional fractional seconds, and `Z`/`z` or any numeric offset
//! (`+02:00`, `-0530`), converted to UTC. A time without an offset is rejected: a wave time
//! must name an instant. Output is always canonical UTC (`2019-08-06T15:00:00Z`), which is what
//! [`jiff::Timestamp`]'s `Display` prints.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::Offset;

/// Parse a wave time leniently (see the module docs). `None` when the text is not a time.
pub fn parse_lenient_rfc3339(text: &str) -> Option<Timestamp> {
    let mut cursor = Cursor { rest: text.trim() };
    let year = cursor.number(4, 4)?;
    cursor.literal('-')?;
    let month = cursor.number(1, 2)?;
    cursor.literal('-')?;
    let day = cursor.number(1, 2)?;
    cursor.one_of(&['T', 't', ' '])?;
    let hour = cursor.number(2, 2)?;
    cursor.literal(':')?;
    let minute = cursor.number(2, 2)?;
    cursor.literal(':')?;
    let second = cursor.number(2, 2)?;
    let nanos = cursor.fraction()?;
    let offset_seconds = cursor.offset()?;
    if !cursor.rest.is_empty() {
        return None;
    }
    let datetime = DateTime::new(
        i16::try_from(year).ok()?,
        i8::try_from(month).ok()?,
        i8::try_from(day).ok()?,
        i8::try_from(hour).ok()?,
        i8::try_from(minute).ok()?,
        i8::try_from(second).ok()?,
        nanos,
    )
    .ok()?;
    let offset = Offset::from_seconds(offset_seconds).ok()?;
    offset.to_timestamp(datetime).ok()
}

struct Cursor<'a> {
    rest: &'a str,
}

impl Cursor<'_> {
    fn number(&mut self, min_digits: usize, max_digits: usize) -> Option<u32> {
        let digits = self
            .rest
            .bytes()
            .take(max_digits)
            .take_while(u8::is_ascii_digit)
            .count();
        if digits < min_digits {
            return None;
        }
        let (number, rest) = self.rest.split_at(digits);
        self.rest = rest;
        number.parse().ok()
    }

    fn literal(&mut self, expected: char) -> Option<()> {
        self.one_of(&[expected])
    }

    fn one_of(&mut self, accepted: &[char]) -> Option<()> {
        let first = self.rest.chars().next()?;
        accepted
            .contains(&first)
            .then(|| self.rest = &self.rest[first.len_utf8()..])
    }

    /// Optional `.digits`; returns nanoseconds (digits past the ninth are truncated).
    fn fraction(&mut self) -> Option<i32> {
        let Some(after_dot) = self.rest.strip_prefix('.') else {
            return Some(0);
        };
        let digits = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let mut nanos: i32 = 0;
        for (index, byte) in after_dot
            .bytes()
            .take(9)
            .take_while(u8::is_ascii_digit)
            .enumerate()
        {
            nanos += i32::from(byte - b'0') * 10_i32.pow(8 - index as u32);
        }
        self.rest = &after_dot[digits..];
        Some(nanos)
    }

    /// `Z`, `z`, `+HH:MM`, `-HH:MM`, `+HHMM` or `-HHMM`; returns the offset in seconds.
    fn offset(&mut self) -> Option<i32> {
        if self.one_of(&['Z', 'z']).is_some() {
            return Some(0);
        }
        let sign = if self.literal('+').is_some() {
            1
        } else {
            self.literal('-')?;
            -1
        };
        let hours = self.number(2, 2)?;
        let _ = self.literal(':');
        let minutes = self.number(2, 2)?;
        if minutes >= 60 {
            return None;
        }
        Some(sign * i32::try_from(hours * 3600 + minutes * 60).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_lenient_rfc3339;

    fn canonical(text: &str) -> Option<String> {
        parse_lenient_rfc3339(text).map(|t| t.to_string())
    }

    #[test]
    fn accepts_the_reference_leniencies() {
        assert_eq!(
            canonical("2019-8-06T15:00:00Z").as_deref(),
            Some("2019-08-06T15:00:00Z")
        );
        assert_eq!(
            canonical("2019-08-6 15:00:00z").as_deref(),
            Some("2019-08-06T15:00:00Z")
        );
        assert_eq!(
            canonical("2019-10-06t15:00:00+02:00").as_deref(),
            Some("2019-10-06T13:00:00Z")
        );
        assert_eq!(
            canonical("2019-10-06T15:00:00-0530").as_deref(),
            Some("2019-10-06T20:30:00Z")
        );
        assert_eq!(
            canonical("2019-10-06T15:00:00.25Z").as_deref(),
            Some("2019-10-06T15:00:00.25Z")
        );
        assert_eq!(
            canonical(" 2019-10-06T15:00:00Z ").as_deref(),
            Some("2019-10-06T15:00:00Z")
        );
    }

    #[test]
    fn rejects_non_times() {
        for text in [
            "2019-10-06T15:00:00",
            "2019-13-06T15:00:00Z",
            "2019-02-30T15:00:00Z",
            "2019-10-06T25:00:00Z",
            "2019-10-06T15:00Z",
            "2019-10-06T15:00:00.Z",
            "2019-10-06T15:00:00Zjunk",
            "1 hour",
            "",
        ] {
            assert_eq!(canonical(text), None, "{text:?} must be rejected");
        }
    }
}
