//! Human durations in the pipeline file ("30s", "5m", "2h", "30d").

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as a whole number and a unit: `s`, `m`, `h` or `d`.
///
/// Kept as the number of seconds so that plans print it back the way it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// Parses `"90s"`, `"5m"`, `"2h"` or `"30d"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| {
            format!("`{text}` has no unit: write e.g. \"30s\", \"5m\", \"2h\" or \"30d\"")
        })?;
        let (number, unit) = text.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("`{text}` does not start with a whole number"))?;
        let seconds_per_unit = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            other => {
                return Err(format!(
                    "`{text}` has unknown unit `{other}`: use s, m, h or d"
                ));
            }
        };
        number
            .checked_mul(seconds_per_unit)
            .map(|secs| HumanDuration(Duration::from_secs(secs)))
            .ok_or_else(|| format!("`{text}` is too large"))
    }

    /// The duration in whole seconds.
    pub fn as_secs(&self) -> u64 {
        self.0.as_secs()
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
            if secs != 0 && secs.is_multiple_of(size) {
                return write!(f, "{}{unit}", secs / size);
            }
        }
        write!(f, "{secs}s")
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

    #[test]
    fn parses_each_unit_and_prints_it_back() {
        for (text, secs) in [("45s", 45), ("5m", 300), ("2h", 7200), ("30d", 2_592_000)] {
            let parsed = HumanDuration::parse(text).unwrap();
            assert_eq!(parsed.as_secs(), secs);
            assert_eq!(parsed.to_string(), text);
        }
        assert_eq!(HumanDuration::parse("120m").unwrap().to_string(), "2h");
    }

    #[test]
    fn rejects_missing_or_unknown_units() {
        assert!(HumanDuration::parse("30").unwrap_err().contains("no unit"));
        assert!(
            HumanDuration::parse("3w")
                .unwrap_err()
                .contains("unknown unit `w`")
        );
        assert!(
            HumanDuration::parse("m")
                .unwrap_err()
                .contains("whole number")
        );
        assert!(HumanDuration::parse("99999999999999999999d").is_err());
    }
}
