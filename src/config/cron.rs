//! Checks cron expressions the way GitHub's `on.schedule` reads them: five fields, UTC.

/// Field names, ranges and the names each field accepts in place of numbers.
const FIELDS: [(&str, u32, u32, &[&str]); 5] = [
    ("minute", 0, 59, &[]),
    ("hour", 0, 23, &[]),
    ("day of month", 1, 31, &[]),
    (
        "month",
        1,
        12,
        &[
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ],
    ),
    (
        "day of week",
        0,
        6,
        &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    ),
];

/// Returns why `expr` is not a valid five-field cron expression, if it is not.
pub fn check(expr: &str) -> Result<(), String> {
    let parts: Vec<&str> = expr.split_whitespace().collect();
    if parts.len() != 5 {
        return Err(format!(
            "`{expr}` has {} fields; a cron expression has 5: minute hour day-of-month month day-of-week (UTC), e.g. \"0 2 * * *\"",
            parts.len()
        ));
    }
    for (part, (name, low, high, names)) in parts.iter().zip(FIELDS) {
        for item in part.split(',') {
            check_item(item, low, high, names)
                .map_err(|why| format!("`{expr}`: {name} field `{part}`: {why}"))?;
        }
    }
    Ok(())
}

fn check_item(item: &str, low: u32, high: u32, names: &[&str]) -> Result<(), String> {
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, Some(step)),
        None => (item, None),
    };
    if let Some(step) = step {
        match step.parse::<u32>() {
            Ok(n) if n > 0 => {}
            _ => return Err(format!("step `{step}` must be a whole number above 0")),
        }
    }
    if range == "*" {
        return Ok(());
    }
    let value = |text: &str| -> Result<u32, String> {
        if let Some(pos) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
            return Ok(low + pos as u32);
        }
        match text.parse::<u32>() {
            Ok(n) if (low..=high).contains(&n) => Ok(n),
            _ => Err(format!("`{text}` is not a number from {low} to {high}")),
        }
    };
    match range.split_once('-') {
        Some((from, to)) => {
            let (from, to) = (value(from)?, value(to)?);
            if from > to {
                return Err(format!("range `{range}` runs backwards"));
            }
        }
        None => {
            value(range)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn accepts_what_github_accepts() {
        for ok in [
            "0 2 * * *",
            "*/15 * * * *",
            "0 3 * * SUN",
            "30 1 1,15 JAN-JUN 1-5",
            "0 0 * * 0/2",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn names_the_bad_field() {
        assert!(check("0 2 * *").unwrap_err().contains("has 4 fields"));
        assert!(
            check("60 2 * * *")
                .unwrap_err()
                .contains("minute field `60`")
        );
        assert!(check("0 24 * * *").unwrap_err().contains("hour field"));
        assert!(check("0 2 * * */0").unwrap_err().contains("step `0`"));
        assert!(check("0 2 5-1 * *").unwrap_err().contains("runs backwards"));
        assert!(check("0 2 * FOO *").unwrap_err().contains("month field"));
    }
}
