//! Single-use, short-lived tokens naming a streaming request. Nothing in a
//! streaming URL but the token selects what runs.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::backend::StreamRequest;

pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// As the kubelet's streaming server: at most this many unused tokens.
const MAX_IN_FLIGHT: usize = 1000;
const TOKEN_BYTES: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("too many streaming requests in flight")]
    TooMany,
    #[error("no randomness for a token: {0}")]
    Random(String),
}

pub struct TokenCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, StreamRequest)>>,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::with_ttl(TOKEN_TTL)
    }
}

impl TokenCache {
    pub fn with_ttl(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
        }
    }

    /// 128 bits from the OS's random source, URL-safe.
    pub fn insert(&self, request: StreamRequest) -> Result<String, TokenError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let mut entries = self.entries.lock();
        let ttl = self.ttl;
        entries.retain(|_, (created, _)| created.elapsed() < ttl);
        if entries.len() >= MAX_IN_FLIGHT {
            return Err(TokenError::TooMany);
        }
        entries.insert(token.clone(), (Instant::now(), request));
        Ok(token)
    }

    /// The request, once: a second use or an expired token finds nothing.
    pub fn consume(&self, token: &str) -> Option<StreamRequest> {
        let (created, request) = self.entries.lock().remove(token)?;
        (created.elapsed() < self.ttl).then_some(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::PortForwardParams;

    fn request() -> StreamRequest {
        StreamRequest::PortForward(PortForwardParams {
            pod_sandbox_id: "p".into(),
            ports: vec![80],
        })
    }

    #[test]
    fn tokens_are_random_single_use_and_expire() {
        let cache = TokenCache::default();
        let a = cache.insert(request()).unwrap();
        let b = cache.insert(request()).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 22, "128 bits, base64url");
        assert!(cache.consume(&a).is_some());
        assert!(cache.consume(&a).is_none(), "single use");
        assert!(cache.consume("made-up").is_none());
        let short = TokenCache::with_ttl(Duration::from_millis(1));
        let t = short.insert(request()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(short.consume(&t).is_none(), "expired");
        assert!(cache.consume(&b).is_some());
    }
}
