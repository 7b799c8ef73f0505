//! API keys in the original's format: `pyoco_<key_id>.<secret>`, stored as a PBKDF2 record in
//! the `pyoco_auth` bucket under `api_keys.<key_id>`, so a key made by pyoco-server's
//! `pyoco-server-admin` verifies here and the reverse.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

/// The only key-derivation function the original writes (the field is not checked on read).
pub const KDF: &str = "pbkdf2_hmac_sha256";
/// The original's iteration count; records carry their own, and a missing one means this.
pub const DEFAULT_ITERATIONS: u32 = 200_000;
/// Prefix of every key, before the key id.
pub const KEY_PREFIX: &str = "pyoco_";

/// A presented API key, split into its public id and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub key_id: String,
    pub secret: String,
}

impl std::fmt::Debug for ApiKey {
    /// Never prints the secret (keys end up in logs through `{:?}`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("key_id", &self.key_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why a presented key was not even looked up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFormatError {
    #[error("api key must start with {KEY_PREFIX:?}")]
    MissingPrefix,
    #[error("api key must be pyoco_<key_id>.<secret>")]
    MissingDot,
    #[error("api key id must be 8 to 64 characters of A-Z a-z 0-9 _ -")]
    BadKeyId,
    #[error("api key secret must be 16 to 256 characters of A-Z a-z 0-9 _ -")]
    BadSecret,
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn is_token(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.chars().all(is_token_char)
}

/// `[A-Za-z0-9_-]{1,64}`: the tenant ids the original's admin CLI accepts.
pub fn is_valid_tenant(tenant: &str) -> bool {
    is_token(tenant, 1, 64)
}

impl ApiKey {
    /// Parses `pyoco_<key_id>.<secret>`, splitting on the first `.` like the original.
    pub fn parse(presented: &str) -> Result<ApiKey, KeyFormatError> {
        let rest = presented
            .strip_prefix(KEY_PREFIX)
            .ok_or(KeyFormatError::MissingPrefix)?;
        let (key_id, secret) = rest.split_once('.').ok_or(KeyFormatError::MissingDot)?;
        if !is_token(key_id, 8, 64) {
            return Err(KeyFormatError::BadKeyId);
        }
        if !is_token(secret, 16, 256) {
            return Err(KeyFormatError::BadSecret);
        }
        Ok(ApiKey {
            key_id: key_id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// A fresh key as the original makes them: 12 random bytes as hex for the id, 32 random
    /// bytes as unpadded base64url for the secret.
    pub fn generate() -> Result<ApiKey, getrandom::Error> {
        let mut id = [0u8; 12];
        let mut secret = [0u8; 32];
        getrandom::fill(&mut id)?;
        getrandom::fill(&mut secret)?;
        Ok(ApiKey {
            key_id: hex::encode(id),
            secret: URL_SAFE_NO_PAD.encode(secret),
        })
    }

    /// The plaintext form a client sends.
    pub fn to_header_value(&self) -> String {
        format!("{KEY_PREFIX}{}.{}", self.key_id, self.secret)
    }
}

/// PBKDF2-HMAC-SHA256 of `secret + pepper` (the original's password input), 32 bytes.
pub fn derive(secret: &str, pepper: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut password = Vec::with_capacity(secret.len() + pepper.len());
    password.extend_from_slice(secret.as_bytes());
    password.extend_from_slice(pepper.as_bytes());
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(&password, salt, iterations, &mut out);
    out
}

/// The `pyoco_auth` document of one key. Unknown fields written by another version are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub key_id: String,
    pub tenant_id: String,
    #[serde(default = "default_kdf")]
    pub kdf: String,
    #[serde(default = "default_iterations")]
    pub iterations: u32,
    pub salt_b64: String,
    pub hash_b64: String,
    pub created_at: f64,
    #[serde(default)]
    pub revoked_at: Option<f64>,
    /// pyoco's addition: the key may call admin routes (`POST /shutdown`). The original
    /// ignores the field; absent means false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn default_kdf() -> String {
    KDF.to_owned()
}

fn default_iterations() -> u32 {
    DEFAULT_ITERATIONS
}

impl ApiKeyRecord {
    /// A record for `key` with a fresh 16-byte salt.
    pub fn new(
        key: &ApiKey,
        tenant_id: &str,
        pepper: &str,
        admin: bool,
        created_at: f64,
    ) -> Result<ApiKeyRecord, getrandom::Error> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt)?;
        let hash = derive(&key.secret, pepper, &salt, DEFAULT_ITERATIONS);
        Ok(ApiKeyRecord {
            key_id: key.key_id.clone(),
            tenant_id: tenant_id.to_owned(),
            kdf: KDF.to_owned(),
            iterations: DEFAULT_ITERATIONS,
            salt_b64: URL_SAFE_NO_PAD.encode(salt),
            hash_b64: URL_SAFE_NO_PAD.encode(hash),
            created_at,
            revoked_at: None,
            admin,
            extra: Map::new(),
        })
    }

    /// The KV key of a record: `api_keys.<key_id>`.
    pub fn kv_key(key_id: &str) -> String {
        format!("api_keys.{key_id}")
    }

    /// True when `secret` (with `pepper`) derives this record's hash and the key is not
    /// revoked. Costs `iterations` rounds: callers cache successes. A record whose salt or hash
    /// does not decode never verifies (the original answers 403 for a corrupt record).
    pub fn verifies(&self, secret: &str, pepper: &str) -> bool {
        if self.revoked_at.is_some() || self.iterations == 0 {
            return false;
        }
        let (Some(salt), Some(expected)) = (decode_b64(&self.salt_b64), decode_b64(&self.hash_b64))
        else {
            return false;
        };
        let got = derive(secret, pepper, &salt, self.iterations);
        got.ct_eq(expected.as_slice()).into()
    }
}

/// Python's `urlsafe_b64decode` after re-padding: accept both padded and unpadded input.
fn decode_b64(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_on_the_first_dot() {
        let k = ApiKey::parse("pyoco_abcdefgh.0123456789abcdef.x").unwrap_err();
        assert_eq!(k, KeyFormatError::BadSecret);
        let k = ApiKey::parse("pyoco_abcdefgh.0123456789abcdef").unwrap();
        assert_eq!(k.key_id, "abcdefgh");
        assert_eq!(k.secret, "0123456789abcdef");
        assert_eq!(k.to_header_value(), "pyoco_abcdefgh.0123456789abcdef");
    }

    #[test]
    fn rejects_what_the_original_rejects() {
        assert_eq!(ApiKey::parse("garbage"), Err(KeyFormatError::MissingPrefix));
        assert_eq!(
            ApiKey::parse("pyoco_bad.bad"),
            Err(KeyFormatError::BadKeyId)
        );
        assert_eq!(
            ApiKey::parse("pyoco_abcdefgh"),
            Err(KeyFormatError::MissingDot)
        );
        assert_eq!(
            ApiKey::parse("pyoco_abcdefgh.short"),
            Err(KeyFormatError::BadSecret)
        );
        assert_eq!(
            ApiKey::parse(&format!("pyoco_{}.0123456789abcdef", "a".repeat(65))),
            Err(KeyFormatError::BadKeyId)
        );
    }

    #[test]
    fn generated_keys_parse_and_never_print_their_secret() {
        let k = ApiKey::generate().unwrap();
        assert_eq!(k.key_id.len(), 24);
        assert_eq!(k.secret.len(), 43);
        assert_eq!(ApiKey::parse(&k.to_header_value()).unwrap(), k);
        assert!(!format!("{k:?}").contains(&k.secret));
    }

    // Vector computed with Python's hashlib.pbkdf2_hmac('sha256', b'secret' + b'pep',
    // b'0123456789abcdef', 1000, 32), the original's derivation.
    #[test]
    fn derivation_matches_python_hashlib() {
        let dk = derive("secret", "pep", b"0123456789abcdef", 1000);
        assert!(include_str!("../../../spec/auth.md").contains(&hex::encode(dk)));
        assert_eq!(
            hex::encode(dk),
            "59c7b005ba63065f34bc07c6b5e163dea680f25683c6bdda7108f26d064cba0f"
        );
    }

    #[test]
    fn records_verify_the_right_secret_only_and_not_when_revoked() {
        let key = ApiKey::generate().unwrap();
        let mut rec = ApiKeyRecord::new(&key, "acme", "pep", false, 1.5).unwrap();
        rec.iterations = 1000; // keep the unit test fast; the hash below is recomputed
        rec.hash_b64 = URL_SAFE_NO_PAD.encode(derive(
            &key.secret,
            "pep",
            &decode_b64(&rec.salt_b64).unwrap(),
            1000,
        ));
        assert!(rec.verifies(&key.secret, "pep"));
        assert!(!rec.verifies(&key.secret, ""));
        assert!(!rec.verifies("0123456789abcdefg", "pep"));
        rec.revoked_at = Some(2.0);
        assert!(!rec.verifies(&key.secret, "pep"));
    }

    #[test]
    fn reads_the_original_record_with_defaults_and_keeps_unknown_fields() {
        let raw = r#"{"key_id":"abcdefgh","tenant_id":"t","salt_b64":"AAAA","hash_b64":"AAAA","created_at":1.0,"revoked_at":null,"note":"x"}"#;
        let rec: ApiKeyRecord = serde_json::from_str(raw).unwrap();
        assert_eq!(rec.iterations, DEFAULT_ITERATIONS);
        assert_eq!(rec.kdf, KDF);
        assert!(!rec.admin);
        let back = serde_json::to_value(&rec).unwrap();
        assert_eq!(back["note"], "x");
        assert!(back.get("admin").is_none());
    }

    #[test]
    fn corrupt_salt_never_verifies() {
        let key = ApiKey::generate().unwrap();
        let mut rec = ApiKeyRecord::new(&key, "t", "", false, 0.0).unwrap();
        rec.salt_b64 = "***".into();
        assert!(!rec.verifies(&key.secret, ""));
    }

    #[test]
    fn tenant_rule() {
        assert!(is_valid_tenant("acme_1-x"));
        assert!(!is_valid_tenant(""));
        assert!(!is_valid_tenant("a b"));
        assert!(!is_valid_tenant(&"a".repeat(65)));
    }
}
