//! `pyoco-gateway admin api-key create | list | revoke`: the original's `pyoco-server-admin`,
//! same JSON lines and exit codes, without its crashes (an empty bucket lists `[]`, a bad
//! tenant is a clear error).

use serde::Serialize;
use serde_json::{Value, json};

use crate::auth::key::is_valid_tenant;
use crate::auth::{ApiKey, ApiKeyRecord};
use crate::model::now;
use crate::store::{Store, StoreError};

/// One admin command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdminCommand {
    /// A new key for `tenant`; `admin` keys may call admin routes.
    CreateKey {
        tenant: String,
        admin: bool,
    },
    ListKeys,
    RevokeKey {
        key_id: String,
    },
}

/// What to print and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminOutcome {
    /// One JSON line for stdout (empty when `stderr` says what went wrong).
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
}

impl AdminOutcome {
    fn ok(v: &Value) -> AdminOutcome {
        AdminOutcome {
            stdout: python_json(v),
            stderr: String::new(),
            exit_code: 0,
        }
    }
}

/// Runs `cmd` against the key bucket of `store`, with `pepper` (`PYOCO_AUTH_PEPPER`).
pub async fn run(store: &Store, pepper: Option<&str>, cmd: AdminCommand) -> AdminOutcome {
    match execute(store, pepper.unwrap_or_default(), cmd).await {
        Ok(outcome) => outcome,
        Err(e) => AdminOutcome {
            stdout: String::new(),
            stderr: format!("error: {e}"),
            exit_code: 1,
        },
    }
}

async fn execute(
    store: &Store,
    pepper: &str,
    cmd: AdminCommand,
) -> Result<AdminOutcome, StoreError> {
    let keys = store.api_keys();
    match cmd {
        AdminCommand::CreateKey { tenant, admin } => {
            if !is_valid_tenant(&tenant) {
                return Ok(AdminOutcome {
                    stdout: String::new(),
                    stderr: format!(
                        "error: invalid tenant {tenant:?}: use 1 to 64 characters of A-Z a-z 0-9 _ -"
                    ),
                    exit_code: 1,
                });
            }
            let key = ApiKey::generate().map_err(|e| StoreError::failed("generate api key", e))?;
            let created_at = now();
            let record = ApiKeyRecord::new(&key, &tenant, pepper, admin, created_at)
                .map_err(|e| StoreError::failed("generate salt", e))?;
            keys.create(&record).await?;
            let mut out = json!({
                "key_id": record.key_id,
                "tenant_id": record.tenant_id,
                "api_key": key.to_header_value(),
                "created_at": created_at,
            });
            if admin {
                out["admin"] = Value::Bool(true);
            }
            Ok(AdminOutcome::ok(&out))
        }
        AdminCommand::ListKeys => {
            let list: Vec<Value> = keys
                .list()
                .await?
                .into_iter()
                .map(|r| {
                    let mut v = json!({
                        "key_id": r.key_id,
                        "tenant_id": r.tenant_id,
                        "created_at": r.created_at,
                        "revoked_at": r.revoked_at,
                    });
                    if r.admin {
                        v["admin"] = Value::Bool(true);
                    }
                    v
                })
                .collect();
            Ok(AdminOutcome::ok(&Value::Array(list)))
        }
        AdminCommand::RevokeKey { key_id } => match keys.revoke(&key_id, now()).await? {
            Some(rec) => Ok(AdminOutcome::ok(&json!({
                "key_id": rec.key_id,
                "revoked_at": rec.revoked_at,
            }))),
            None => Ok(AdminOutcome {
                stdout: python_json(&json!({"error": "not_found", "key_id": key_id})),
                stderr: String::new(),
                exit_code: 2,
            }),
        },
    }
}

/// JSON as Python's `json.dumps` writes it by default (see [`crate::model::json::dumps`]).
pub fn python_json<T: Serialize>(value: &T) -> String {
    crate::model::json::dumps(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_separators_and_ascii_escapes() {
        let v = json!({"a": [1, 2.5, null], "b": "é😀", "c": {"d": true}});
        assert_eq!(
            python_json(&v),
            r#"{"a": [1, 2.5, null], "b": "\u00e9\ud83d\ude00", "c": {"d": true}}"#
        );
        assert_eq!(python_json(&json!([])), "[]");
        assert_eq!(
            python_json(&json!(1795313038.6524687)),
            "1795313038.6524687"
        );
    }
}
