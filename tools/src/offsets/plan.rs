//! Reset planning: which offset each partition of a group moves to, and the time and
//! duration arguments that select it. Pure functions, no I/O.

use super::error::{Result, ToolError};

/// Where `groups reset` moves offsets to (exactly one per invocation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetTo {
    /// The log start offset.
    Earliest,
    /// The log end offset.
    Latest,
    /// An absolute offset (clamped to the log).
    Offset(i64),
    /// The first offset whose timestamp is >= this time (ms since the epoch); the log end
    /// when there is none.
    Timestamp(i64),
    /// The current committed offset plus this (negative moves back); clamped.
    ShiftBy(i64),
}

/// One row of a reset plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlannedReset {
    pub topic: String,
    pub partition: i32,
    /// Committed offset before the reset, if any.
    pub current: Option<i64>,
    pub new: i64,
    pub log_start: i64,
    pub log_end: i64,
}

/// The new offset of one partition. `offset_for_time` is the ListOffsets answer for a
/// [`ResetTo::Timestamp`] (`None`: no record that late). The result lies in
/// `[log_start, log_end]`.
pub fn plan_offset(
    to: &ResetTo,
    current: Option<i64>,
    log_start: i64,
    log_end: i64,
    offset_for_time: Option<i64>,
    what: &str,
) -> Result<i64> {
    let wanted = match to {
        ResetTo::Earliest => log_start,
        ResetTo::Latest => log_end,
        ResetTo::Offset(n) => *n,
        ResetTo::Timestamp(_) => offset_for_time.unwrap_or(log_end),
        ResetTo::ShiftBy(n) => {
            let current = current.ok_or_else(|| {
                ToolError::Usage(format!(
                    "cannot shift {what}: the group has no committed offset there"
                ))
            })?;
            current.saturating_add(*n)
        }
    };
    Ok(wanted.clamp(log_start, log_end.max(log_start)))
}

/// Parses an RFC 3339 date-time (`2026-11-21T10:00:00Z`, `2026-11-21T11:00:00.5+01:00`)
/// into milliseconds since the Unix epoch.
pub fn parse_datetime(input: &str) -> Result<i64> {
    chrono::DateTime::parse_from_rfc3339(input)
        .map(|t| t.timestamp_millis())
        .map_err(|e| ToolError::InvalidTime {
            input: input.to_string(),
            reason: format!("{e} (expected RFC 3339, e.g. 2026-11-21T10:00:00Z)"),
        })
}

/// Parses an ISO-8601 duration as Java's `Duration.parse` does (`PT1H`, `P1D`,
/// `P1DT2H30M`, `PT0.5S`, `-PT10M`; days are 24 hours; no years, months or weeks) into
/// milliseconds. Case-insensitive.
pub fn parse_duration(input: &str) -> Result<i64> {
    let bad = |reason: &str| ToolError::InvalidTime {
        input: input.to_string(),
        reason: format!("{reason} (expected an ISO-8601 duration such as PT1H, P1D, P1DT2H30M)"),
    };
    let s = input.trim().to_ascii_uppercase();
    let (sign, rest) = match s.strip_prefix('-') {
        Some(r) => (-1i64, r),
        None => (1, s.strip_prefix('+').unwrap_or(&s)),
    };
    let rest = rest
        .strip_prefix('P')
        .ok_or_else(|| bad("must start with P"))?;
    if rest.is_empty() {
        return Err(bad("no amount after P"));
    }
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => {
            if t.is_empty() {
                return Err(bad("no amount after T"));
            }
            (d, Some(t))
        }
        None => (rest, None),
    };
    let mut total_ms: i64 = 0;
    let mut add = |amount_ms: Option<i64>| -> Result<()> {
        let ms = amount_ms.ok_or_else(|| bad("amount too large"))?;
        total_ms = total_ms
            .checked_add(ms)
            .ok_or_else(|| bad("amount too large"))?;
        Ok(())
    };
    if !date.is_empty() {
        let days = date
            .strip_suffix('D')
            .ok_or_else(|| bad("only days (D) may come before T"))?;
        let days: i64 = days.parse().map_err(|_| bad("days must be an integer"))?;
        add(days.checked_mul(86_400_000))?;
    }
    if let Some(mut t) = time {
        let mut seen = String::new();
        while !t.is_empty() {
            let end = t
                .find(|c: char| c.is_ascii_alphabetic())
                .ok_or_else(|| bad("number without unit"))?;
            let (number, unit) = (&t[..end], &t[end..end + 1]);
            t = &t[end + 1..];
            if seen.contains(unit) || number.is_empty() {
                return Err(bad("each of H, M, S at most once, with a number"));
            }
            seen.push_str(unit);
            match unit {
                "H" => add(parse_int(number).and_then(|h| h.checked_mul(3_600_000)))?,
                "M" => add(parse_int(number).and_then(|m| m.checked_mul(60_000)))?,
                "S" => add(parse_seconds_ms(number))?,
                _ => return Err(bad("units after T are H, M and S")),
            }
        }
    }
    Ok(sign * total_ms)
}

fn parse_int(s: &str) -> Option<i64> {
    s.parse().ok()
}

/// `"12"` or `"1.5"` seconds as milliseconds (sub-millisecond digits are truncated).
fn parse_seconds_ms(s: &str) -> Option<i64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if !frac.chars().all(|c| c.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    let mut ms = whole.parse::<i64>().ok()?.checked_mul(1000)?;
    let frac3: String = frac.chars().chain("000".chars()).take(3).collect();
    let frac_ms: i64 = frac3.parse().ok()?;
    ms = if ms < 0 || whole.starts_with('-') {
        ms.checked_sub(frac_ms)?
    } else {
        ms.checked_add(frac_ms)?
    };
    Some(ms)
}

/// Parses `--topic` values: `T` (every partition) or `T:0,2,5`.
pub fn parse_topic_arg(arg: &str) -> Result<(String, Option<Vec<i32>>)> {
    match arg.rsplit_once(':') {
        None => Ok((arg.to_string(), None)),
        Some((topic, parts)) => {
            let partitions = parts
                .split(',')
                .map(|p| {
                    p.trim()
                        .parse::<i32>()
                        .ok()
                        .filter(|p| *p >= 0)
                        .ok_or_else(|| {
                            ToolError::Usage(format!(
                                "--topic {arg}: partitions must be non-negative integers (T:0,1,2)"
                            ))
                        })
                })
                .collect::<Result<Vec<i32>>>()?;
            if topic.is_empty() {
                return Err(ToolError::Usage(format!("--topic {arg}: empty topic name")));
            }
            Ok((topic.to_string(), Some(partitions)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_java() {
        assert_eq!(parse_duration("PT1H").unwrap(), 3_600_000);
        assert_eq!(parse_duration("P1D").unwrap(), 86_400_000);
        assert_eq!(parse_duration("P1DT2H30M").unwrap(), 95_400_000);
        assert_eq!(parse_duration("PT0.5S").unwrap(), 500);
        assert_eq!(parse_duration("pt15m").unwrap(), 900_000);
        assert_eq!(parse_duration("-PT10M").unwrap(), -600_000);
        assert_eq!(parse_duration("PT1M30.25S").unwrap(), 90_250);
        for bad in [
            "", "P", "PT", "1H", "P1H", "PT1X", "PT1H1H", "P1Y", "PTH", "PT1.5H",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn datetimes_are_rfc3339() {
        assert_eq!(
            parse_datetime("2026-11-21T10:00:00Z").unwrap(),
            1_795_255_200_000
        );
        assert_eq!(
            parse_datetime("2026-11-21T11:00:00.250+01:00").unwrap(),
            1_795_255_200_250
        );
        assert!(parse_datetime("yesterday").is_err());
        assert!(parse_datetime("2026-11-21").is_err());
    }

    #[test]
    fn plans_clamp_to_the_log() {
        let p = |to, cur, t| plan_offset(&to, cur, 10, 50, t, "t:0").unwrap();
        assert_eq!(p(ResetTo::Earliest, Some(30), None), 10);
        assert_eq!(p(ResetTo::Latest, Some(30), None), 50);
        assert_eq!(p(ResetTo::Offset(5), None, None), 10);
        assert_eq!(p(ResetTo::Offset(25), None, None), 25);
        assert_eq!(p(ResetTo::Offset(99), None, None), 50);
        assert_eq!(p(ResetTo::ShiftBy(-5), Some(30), None), 25);
        assert_eq!(p(ResetTo::ShiftBy(-50), Some(30), None), 10);
        assert_eq!(p(ResetTo::ShiftBy(100), Some(30), None), 50);
        assert_eq!(p(ResetTo::Timestamp(7), Some(30), Some(12)), 12);
        assert_eq!(p(ResetTo::Timestamp(7), Some(30), None), 50);
        assert!(plan_offset(&ResetTo::ShiftBy(1), None, 0, 5, None, "t:0").is_err());
    }

    #[test]
    fn topic_args() {
        assert_eq!(parse_topic_arg("orders").unwrap(), ("orders".into(), None));
        assert_eq!(
            parse_topic_arg("orders:0,2").unwrap(),
            ("orders".into(), Some(vec![0, 2]))
        );
        assert!(parse_topic_arg("orders:x").is_err());
        assert!(parse_topic_arg(":1").is_err());
    }
}
