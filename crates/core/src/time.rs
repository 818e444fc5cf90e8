//! Docker's RFC 3339 timestamps as the CRI's nanoseconds.

use chrono::DateTime;

/// Nanoseconds since the epoch; 0 for Docker's zero time
/// ("0001-01-01T00:00:00Z") and for anything unparsable.
pub fn rfc3339_to_ns(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .filter(|ns| *ns > 0)
        .unwrap_or(0)
}

pub fn system_now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_times() {
        assert_eq!(
            rfc3339_to_ns("2026-11-23T21:07:33.218654342Z"),
            1795468053218654342
        );
        assert_eq!(rfc3339_to_ns("0001-01-01T00:00:00Z"), 0);
        assert_eq!(rfc3339_to_ns(""), 0);
    }
}
