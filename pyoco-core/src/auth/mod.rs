//! Identity, pure parts: API keys wire-compatible with the original (`key`) and HMAC request
//! signing (`sign`). The gateway's checks (lookup in `pyoco_auth`, the verified-key cache, the
//! shared nonce store) build on these; nothing here does I/O.

pub mod key;
pub mod sign;

pub use key::{ApiKey, ApiKeyRecord, KeyFormatError};
pub use sign::SignatureError;
