//! How long to wait before the next attempt: exponential backoff with jitter, or what the
//! server asked for with `Retry-After`.

use std::time::{Duration, Instant};

use crate::cancel::CancelToken;
use crate::error::Error;
use crate::transport;

/// A `Retry-After` longer than this is ignored in favour of the usual backoff.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Longest backoff between two attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(8);

/// `base * 2^attempt`, capped, minus up to a quarter at random so that many clients
/// retrying together spread out.
pub(crate) fn backoff(base: Duration, attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let full = base
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_RETRY_DELAY);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(attempt);
    let jitter = (hasher.finish() % 1000) as f64 / 4000.0;
    full.mul_f64(1.0 - jitter)
}

pub(crate) fn sleep_unless_cancelled(
    delay: Duration,
    cancel: Option<&CancelToken>,
) -> Result<(), Error> {
    let until = Instant::now() + delay;
    loop {
        if cancel.is_some_and(CancelToken::is_cancelled) {
            return Err(Error::cancelled());
        }
        let now = Instant::now();
        if now >= until {
            return Ok(());
        }
        std::thread::sleep((until - now).min(transport::CANCEL_POLL));
    }
}

/// Parses `Retry-After` (seconds or an HTTP date) or OpenAI's `retry-after-ms`, when the wait
/// it asks for is reasonable.
pub(crate) fn retry_after(headers: &ureq::http::HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let wait = if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        Duration::try_from_secs_f64(ms / 1000.0).ok()?
    } else {
        let value = text("retry-after")?;
        match value.parse::<f64>() {
            Ok(secs) => Duration::try_from_secs_f64(secs).ok()?,
            Err(_) => {
                let at = parse_http_date(value)?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()?
                    .as_secs();
                Duration::from_secs(at.checked_sub(now)?)
            }
        }
    };
    (wait <= MAX_RETRY_AFTER).then_some(wait)
}

/// Seconds since 1970 of an IMF-fixdate such as `Wed, 21 Oct 2015 07:28:00 GMT`.
fn parse_http_date(text: &str) -> Option<u64> {
    let mut parts = text.split_whitespace().skip(1);
    let day: u64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days)
        .ok()
        .map(|d| d * 86_400 + h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(1_445_412_480)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_cap() {
        let base = Duration::from_millis(100);
        for attempt in 0..6 {
            let full = (base * (1 << attempt)).min(MAX_RETRY_DELAY);
            let d = backoff(base, attempt);
            assert!(d <= full && d >= full.mul_f64(0.75), "{attempt}: {d:?}");
        }
        assert!(backoff(base, 40) <= MAX_RETRY_DELAY);
    }
}
