//! HMAC-SHA256 request signing (`PYOCO_HTTP_HMAC_SECRET`). A client sends
//! `X-Pyoco-Ts` (unix seconds or milliseconds), `X-Pyoco-Nonce` (used once) and
//! `X-Pyoco-Signature: v1=<hex>` over [`canonical`]. The gateway checks the signature and the
//! timestamp here (pure); whether a nonce was seen before is the store's job (a KV bucket with
//! a TTL shared by every gateway), so a request replayed to another gateway is refused too.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Header carrying the request's unix time (seconds, or milliseconds when > 10^11).
pub const TS_HEADER: &str = "x-pyoco-ts";
/// Header carrying a client-chosen value that must never be reused within the TTL.
pub const NONCE_HEADER: &str = "x-pyoco-nonce";
/// Header carrying `v1=<hex>` (a bare `<hex>` is accepted too, as in the seed's scheme).
pub const SIGNATURE_HEADER: &str = "x-pyoco-signature";

/// Why a signed request was refused. Every kind is a 401 for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    #[error("missing signature headers (X-Pyoco-Ts, X-Pyoco-Nonce, X-Pyoco-Signature)")]
    Missing,
    #[error("X-Pyoco-Ts must be unix seconds or milliseconds")]
    BadTimestamp,
    #[error("request timestamp outside the allowed window")]
    Stale,
    #[error("X-Pyoco-Nonce must be 8 to 128 characters of A-Z a-z 0-9 _ -")]
    BadNonce,
    #[error("signature mismatch")]
    Mismatch,
    #[error("nonce already used")]
    Replayed,
}

/// The signed string: `ts \n nonce \n METHOD \n path \n sha256hex(body) \n`, where `path` is
/// the request target as sent (path plus `?query` when there is one), so neither the route
/// nor its query can be changed without breaking the signature.
pub fn canonical(ts: &str, nonce: &str, method: &str, path: &str, body: &[u8]) -> String {
    let body_hash = hex::encode(Sha256::digest(body));
    format!(
        "{ts}\n{nonce}\n{}\n{path}\n{body_hash}\n",
        method.to_ascii_uppercase()
    )
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; the error branch cannot happen for Hmac<Sha256>.
    match <Hmac<Sha256> as Mac>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    }
}

/// `v1=<hex>` for a request.
pub fn sign(secret: &[u8], ts: &str, nonce: &str, method: &str, path: &str, body: &[u8]) -> String {
    let mut m = mac(secret);
    m.update(canonical(ts, nonce, method, path, body).as_bytes());
    format!("v1={}", hex::encode(m.finalize().into_bytes()))
}

/// Reads `X-Pyoco-Ts` as unix seconds (values above 10^11 are milliseconds).
pub fn parse_timestamp(ts: &str) -> Option<f64> {
    let n: u64 = ts.trim().parse().ok()?;
    let secs = if n > 100_000_000_000 {
        n as f64 / 1000.0
    } else {
        n as f64
    };
    Some(secs)
}

/// A nonce becomes part of a KV key, so only token characters are allowed.
pub fn is_valid_nonce(nonce: &str) -> bool {
    (8..=128).contains(&nonce.len())
        && nonce
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The three signature headers of one request.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub ts: &'a str,
    pub nonce: &'a str,
    pub signature: &'a str,
}

/// Checks a request's signature and freshness (`now` and the window in seconds). The nonce's
/// first use is checked afterwards by the caller, only for requests that pass here, so a flood
/// of forged requests cannot fill the nonce store.
pub fn verify(
    secret: &[u8],
    signed: Signed<'_>,
    method: &str,
    path: &str,
    body: &[u8],
    now: f64,
    ttl_sec: f64,
) -> Result<(), SignatureError> {
    let ts = parse_timestamp(signed.ts).ok_or(SignatureError::BadTimestamp)?;
    if (now - ts).abs() > ttl_sec {
        return Err(SignatureError::Stale);
    }
    if !is_valid_nonce(signed.nonce) {
        return Err(SignatureError::BadNonce);
    }
    let presented = signed.signature.trim();
    let hex_sig = presented.strip_prefix("v1=").unwrap_or(presented);
    let Ok(presented) = hex::decode(hex_sig) else {
        return Err(SignatureError::Mismatch);
    };
    let mut m = mac(secret);
    m.update(canonical(signed.ts, signed.nonce, method, path, body).as_bytes());
    let expected = m.finalize().into_bytes();
    if expected.as_slice().ct_eq(presented.as_slice()).into() {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The vectors of spec/auth.md, computed with Python's hmac/hashlib.
    const SECRET: &[u8] = b"topsecret";
    const BODY: &[u8] = br#"{"flow_name":"hello"}"#;

    #[test]
    fn canonical_string_matches_the_spec() {
        assert_eq!(
            canonical("1700000000", "nonce-0001", "post", "/runs", BODY),
            "1700000000\nnonce-0001\nPOST\n/runs\naf4581334c1b4db01454413ef0228e8dca435617d162a57526a89e4a76c6cfb4\n"
        );
    }

    #[test]
    fn signature_matches_python_hmac() {
        assert_eq!(
            sign(SECRET, "1700000000", "nonce-0001", "POST", "/runs", BODY),
            "v1=d5b610e6486c189fe023415fdffff0eba2dcb4bd749f7d0eb01203b626f1322f"
        );
        assert_eq!(
            sign(
                SECRET,
                "1700000000123",
                "nonce-0002",
                "GET",
                "/runs?limit=5",
                b""
            ),
            "v1=c76791b82004e67fa8d4ba2e644e04ee914f7ff2e80106249cb0aed5786c2cb8"
        );
    }

    #[test]
    fn verify_accepts_good_and_refuses_tampered_stale_and_bad_nonce() {
        let sig = sign(SECRET, "1700000000", "nonce-0001", "POST", "/runs", BODY);
        let ok = Signed {
            ts: "1700000000",
            nonce: "nonce-0001",
            signature: &sig,
        };
        let now = 1_700_000_030.0;
        assert_eq!(verify(SECRET, ok, "POST", "/runs", BODY, now, 60.0), Ok(()));
        // A bare hex signature is accepted too.
        let bare = Signed {
            signature: sig.trim_start_matches("v1="),
            ..ok
        };
        assert_eq!(
            verify(SECRET, bare, "POST", "/runs", BODY, now, 60.0),
            Ok(())
        );
        assert_eq!(
            verify(SECRET, ok, "POST", "/runs", b"{}", now, 60.0),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, ok, "POST", "/runs/yaml", BODY, now, 60.0),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", ok, "POST", "/runs", BODY, now, 60.0),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, ok, "POST", "/runs", BODY, now + 61.0, 60.0),
            Err(SignatureError::Stale)
        );
        let bad_nonce = Signed { nonce: "x.y", ..ok };
        assert_eq!(
            verify(SECRET, bad_nonce, "POST", "/runs", BODY, now, 60.0),
            Err(SignatureError::BadNonce)
        );
        let bad_ts = Signed { ts: "soon", ..ok };
        assert_eq!(
            verify(SECRET, bad_ts, "POST", "/runs", BODY, now, 60.0),
            Err(SignatureError::BadTimestamp)
        );
    }

    #[test]
    fn spec_lists_the_same_vectors() {
        let spec = include_str!("../../../spec/auth.md");
        for v in [
            sign(SECRET, "1700000000", "nonce-0001", "POST", "/runs", BODY),
            sign(
                SECRET,
                "1700000000123",
                "nonce-0002",
                "GET",
                "/runs?limit=5",
                b"",
            ),
            hex::encode(Sha256::digest(BODY)),
        ] {
            assert!(spec.contains(&v), "spec/auth.md lacks {v}");
        }
    }

    #[test]
    fn millisecond_timestamps_are_read_as_such() {
        assert_eq!(parse_timestamp("1700000000123"), Some(1_700_000_000.123));
        assert_eq!(parse_timestamp("1700000000"), Some(1_700_000_000.0));
        assert_eq!(parse_timestamp("-1"), None);
    }
}
