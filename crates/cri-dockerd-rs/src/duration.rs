//! Go's `time.ParseDuration` syntax, which cri-dockerd's duration flags use
//! (`1m0s`, `90s`, `1h30m`, `1.5s`, `300ms`).

use std::time::Duration;

pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("invalid duration {s:?} (examples: 1m0s, 90s, 1h30m, 300ms)");
    let rest = s.trim();
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() || rest.starts_with('-') {
        return Err(err());
    }
    let rest = rest.strip_prefix('+').unwrap_or(rest);
    let mut total = 0f64;
    let mut input = rest;
    while !input.is_empty() {
        let number_len = input
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if number_len == 0 {
            return Err(err());
        }
        let value: f64 = input[..number_len].parse().map_err(|_| err())?;
        input = &input[number_len..];
        let unit_len = input
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(input.len());
        let seconds_per_unit = match &input[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        input = &input[unit_len..];
        total += value * seconds_per_unit;
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1m0s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_go_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "5", "1x", "-1s", "s", "1m0", "1..5s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
    }
}
