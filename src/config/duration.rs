//! Human durations in the pipeline file and on the command line ("30s", "1h30m", "500ms",
//! "30d").
//!
//! Parsing is jiff's "friendly" format (and ISO 8601 such as `PT1H`), with days fixed at 24
//! hours: a retention or a timeout means elapsed time, not a calendar date.

use std::fmt;
use std::time::Duration;

use jiff::{Span, SpanRelativeTo};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What error messages suggest writing instead.
const EXAMPLES: &str = "\"30s\", \"5m\", \"2h\", \"1h30m\", \"500ms\" or \"30d\"";

/// A non-negative duration written with units: `ms`, `s`, `m`, `h`, `d` (24 hours), also
/// `w` (7 days) and jiff's longer spellings, and combinations such as `1h30m`.
///
/// Printed back in the same compact form, largest unit first, so plans show what the
/// pipeline file meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// Parses `"90s"`, `"5m"`, `"1h30m"`, `"500ms"`, `"2 hours"`, `"30d"` or `"PT1H"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err(format!("a duration cannot be empty: write e.g. {EXAMPLES}"));
        }
        // jiff would reject a bare number too, but with a message that does not say the
        // unit is what is missing.
        let digits = text.trim_start_matches(['+', '-']);
        if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(format!("`{text}` has no unit: write e.g. {EXAMPLES}"));
        }
        let span: Span = text.parse().map_err(|e| {
            format!("`{text}` is not a duration ({e}): write a number and a unit (ms, s, m, h or d), e.g. {EXAMPLES}")
        })?;
        if span.get_years() != 0 || span.get_months() != 0 {
            return Err(format!(
                "`{text}` is in months or years, which have no fixed length: write days instead, e.g. \"30d\""
            ));
        }
        if span.is_negative() {
            return Err(format!(
                "`{text}` is negative: write a duration of zero or more, e.g. {EXAMPLES}"
            ));
        }
        span.to_duration(SpanRelativeTo::days_are_24_hours())
            .ok()
            .and_then(|signed| Duration::try_from(signed).ok())
            .map(HumanDuration)
            .ok_or_else(|| format!("`{text}` is too large: write e.g. {EXAMPLES}"))
    }

    /// The duration in whole seconds.
    pub fn as_secs(&self) -> u64 {
        self.0.as_secs()
    }
}

impl fmt::Display for HumanDuration {
    /// Largest units first with no zero parts (`1d12h`, `1h30m`, `500ms`), which
    /// [`HumanDuration::parse`] reads back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let nanos = u64::from(self.0.subsec_nanos());
        let parts = [
            (secs / 86_400, "d"),
            (secs % 86_400 / 3600, "h"),
            (secs % 3600 / 60, "m"),
            (secs % 60, "s"),
            (nanos / 1_000_000, "ms"),
            (nanos % 1_000_000 / 1000, "us"),
            (nanos % 1000, "ns"),
        ];
        let mut wrote = false;
        for (count, unit) in parts {
            if count != 0 {
                write!(f, "{count}{unit}")?;
                wrote = true;
            }
        }
        if !wrote {
            f.write_str("0s")?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        HumanDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> HumanDuration {
        HumanDuration::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn parses_each_form_and_prints_it_back_compactly() {
        let ms = Duration::from_millis;
        let secs = Duration::from_secs;
        for (text, value, shown) in [
            ("500ms", ms(500), "500ms"),
            ("30s", secs(30), "30s"),
            ("5m", secs(300), "5m"),
            ("2h", secs(7200), "2h"),
            ("30d", secs(2_592_000), "30d"),
            ("1h30m", secs(5400), "1h30m"),
            ("1d12h", secs(129_600), "1d12h"),
            ("1s500ms", ms(1500), "1s500ms"),
            ("0s", secs(0), "0s"),
            // Other spellings of the same values print in the compact form.
            ("120m", secs(7200), "2h"),
            ("90s", secs(90), "1m30s"),
            ("36h", secs(129_600), "1d12h"),
            ("1500ms", ms(1500), "1s500ms"),
            ("2 hours", secs(7200), "2h"),
            ("1h 30m", secs(5400), "1h30m"),
            ("1.5h", secs(5400), "1h30m"),
            ("PT1H30M", secs(5400), "1h30m"),
            ("P30D", secs(2_592_000), "30d"),
            ("1w", secs(604_800), "7d"),
            (" 5m ", secs(300), "5m"),
        ] {
            let duration = parsed(text);
            assert_eq!(duration.0, value, "{text}");
            assert_eq!(duration.to_string(), shown, "{text}");
            assert_eq!(parsed(shown), duration, "{text} printed as {shown}");
        }
        assert_eq!(parsed("2h").as_secs(), 7200);
        assert_eq!(parsed("1s999ms").as_secs(), 1);
    }

    #[test]
    fn sub_millisecond_parts_survive_the_round_trip() {
        let d = HumanDuration(Duration::new(93_784, 5_006_007));
        assert_eq!(d.to_string(), "1d2h3m4s5ms6us7ns");
        assert_eq!(parsed(&d.to_string()), d);
    }

    #[test]
    fn rejections_name_the_text_and_say_what_to_write() {
        for (text, expected) in [
            ("30", "`30` has no unit: write e.g. \"30s\", \"5m\", \"2h\""),
            ("1.5", "`1.5` has no unit"),
            ("", "cannot be empty: write e.g. \"30s\""),
            ("   ", "cannot be empty"),
            ("-5m", "`-5m` is negative: write a duration of zero or more"),
            ("5 minutes ago", "`5 minutes ago` is negative"),
            ("3x", "`3x` is not a duration"),
            ("5 fortnights", "`5 fortnights` is not a duration"),
            ("1h30", "`1h30` is not a duration"),
            ("m", "`m` is not a duration"),
            (
                "1mo",
                "`1mo` is in months or years, which have no fixed length",
            ),
            ("1y", "`1y` is in months or years"),
            ("P1M", "`P1M` is in months or years"),
            ("99999999999999999999d", "`99999999999999999999d`"),
            ("10000000d", "`10000000d`"),
        ] {
            let err = HumanDuration::parse(text).unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        let err = HumanDuration::parse("3x").unwrap_err();
        assert!(err.contains("ms, s, m, h or d"), "{err}");
        let err = HumanDuration::parse("1y").unwrap_err();
        assert!(err.contains("write days instead, e.g. \"30d\""), "{err}");
    }

    #[test]
    fn pipeline_files_read_and_write_the_text_form() {
        let d: HumanDuration = serde_json::from_str("\"30d\"").unwrap();
        assert_eq!(d.as_secs(), 2_592_000);
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"30d\"");
        let err = serde_json::from_str::<HumanDuration>("\"30\"").unwrap_err();
        assert!(err.to_string().contains("no unit"), "{err}");
    }
}
