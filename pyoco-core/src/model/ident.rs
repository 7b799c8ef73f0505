//! One rule for every identifier that reaches a NATS subject, header or key.
//!
//! A NATS server closes the connection of a client whose control line (subject + headers) is
//! too long, so one 4 KB tag or path id could cut every other request of a gateway off NATS.
//! Identifiers are therefore checked here, once, before any I/O: at most [`MAX_ID_LEN`]
//! characters (the original allows longer tags; nothing real needs them) from a small
//! alphabet. A path id that fails the rule cannot exist, so routes answer 404 for it without
//! asking NATS.

/// The longest identifier pyoco accepts.
pub const MAX_ID_LEN: usize = 128;

/// What an identifier names; each kind has its alphabet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdKind {
    /// Routing tag: the original's `[A-Za-z0-9_-]+`, a subject token and consumer name suffix.
    Tag,
    /// Run id (uuid4 from us and the original): a KV key.
    RunId,
    /// Schedule id (uuid4): a KV key.
    ScheduleId,
    /// Worker id: a KV key; may contain dots (host names).
    WorkerId,
    /// Flow name: travels in documents and names a file of the worker's flows directory.
    FlowName,
}

impl IdKind {
    /// The field name used in error messages.
    pub fn field(self) -> &'static str {
        match self {
            IdKind::Tag => "tag",
            IdKind::RunId => "run_id",
            IdKind::ScheduleId => "schedule_id",
            IdKind::WorkerId => "worker_id",
            IdKind::FlowName => "flow_name",
        }
    }

    /// The allowed characters, for messages.
    pub fn alphabet(self) -> &'static str {
        match self {
            IdKind::Tag | IdKind::RunId | IdKind::ScheduleId => "A-Z a-z 0-9 _ -",
            IdKind::WorkerId => "A-Z a-z 0-9 _ - . (no leading, trailing or double dot)",
            IdKind::FlowName => "any printable character",
        }
    }

    fn allows(self, c: char) -> bool {
        match self {
            IdKind::Tag | IdKind::RunId | IdKind::ScheduleId => {
                c.is_ascii_alphanumeric() || c == '_' || c == '-'
            }
            IdKind::WorkerId => c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'),
            IdKind::FlowName => !c.is_control(),
        }
    }
}

/// An identifier that breaks the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} must be 1 to {max} characters of {alphabet}", field = kind.field(), max = MAX_ID_LEN, alphabet = kind.alphabet())]
pub struct InvalidId {
    pub kind: IdKind,
}

/// Checks `value` against the rule of `kind`.
pub fn check_id(kind: IdKind, value: &str) -> Result<(), InvalidId> {
    let len = value.chars().count();
    let mut ok = (1..=MAX_ID_LEN).contains(&len) && value.chars().all(|c| kind.allows(c));
    if kind == IdKind::WorkerId {
        // Dots separate KV key tokens: an empty token is not a valid key.
        ok = ok && !value.starts_with('.') && !value.ends_with('.') && !value.contains("..");
    }
    if kind == IdKind::FlowName {
        ok = ok && !value.trim().is_empty();
    }
    if ok { Ok(()) } else { Err(InvalidId { kind }) }
}

/// True when `value` passes the rule of `kind`.
pub fn is_valid_id(kind: IdKind, value: &str) -> bool {
    check_id(kind, value).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_run_ids_and_tags_pass() {
        assert!(is_valid_id(
            IdKind::RunId,
            "3f2b8c1e-8d1a-4e8e-9f7a-2b9f1d6c0a11"
        ));
        assert!(is_valid_id(IdKind::Tag, "gpu_a-1"));
        assert!(is_valid_id(IdKind::WorkerId, "worker-host.example.org-42"));
        assert!(is_valid_id(IdKind::FlowName, "hello world ✓"));
    }

    #[test]
    fn long_ids_fail_whatever_the_kind() {
        for kind in [
            IdKind::Tag,
            IdKind::RunId,
            IdKind::ScheduleId,
            IdKind::WorkerId,
            IdKind::FlowName,
        ] {
            assert!(is_valid_id(kind, &"a".repeat(MAX_ID_LEN)), "{kind:?}");
            assert!(!is_valid_id(kind, &"a".repeat(MAX_ID_LEN + 1)), "{kind:?}");
            assert!(!is_valid_id(kind, &"a".repeat(4096)), "{kind:?}");
            assert!(!is_valid_id(kind, ""), "{kind:?}");
        }
    }

    #[test]
    fn subject_and_key_breaking_characters_fail() {
        for bad in ["a.b", "a b", "a*", "a>", "a\r\nPUB x", "ü"] {
            assert!(!is_valid_id(IdKind::Tag, bad), "{bad:?}");
            assert!(!is_valid_id(IdKind::RunId, bad), "{bad:?}");
        }
        for bad in [".w", "w.", "w..x", "w x", "w*"] {
            assert!(!is_valid_id(IdKind::WorkerId, bad), "{bad:?}");
        }
        for bad in ["a\nb", "a\0", "   "] {
            assert!(!is_valid_id(IdKind::FlowName, bad), "{bad:?}");
        }
    }

    #[test]
    fn messages_name_the_field_and_the_rule() {
        let e = check_id(IdKind::Tag, "a.b").unwrap_err();
        assert_eq!(
            e.to_string(),
            "tag must be 1 to 128 characters of A-Z a-z 0-9 _ -"
        );
    }
}
