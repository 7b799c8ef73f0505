//! Multipart forms read like FastAPI reads `UploadFile` + `Form` parameters: every part is
//! read (so all validation problems are found before the size is judged), one file part is
//! kept up to its limit but counted in full, text parts are short flags, an empty text part
//! counts as absent, and the last of a repeated part wins. A large file part (a wheel) can
//! be spooled to an anonymous temporary file as it arrives instead of kept in memory, hashed
//! on the way, so the gateway's memory does not grow with the upload.

use axum::extract::Multipart;
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::http::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::gateway::error::{ApiError, problem};

/// Text parts longer than this are cut (they are names, flags and tag lists).
const MAX_TEXT_PART: usize = 64 * 1024;

/// The file part of a form.
#[derive(Debug, Default)]
pub(in crate::gateway) struct FilePart {
    pub file_name: String,
    /// The part's `Content-Type`, `application/octet-stream` when absent.
    pub content_type: String,
    /// At most `limit + 1` bytes: enough to tell that the upload is too large (empty when
    /// the part was spooled).
    pub data: Vec<u8>,
    /// The part in a temporary file, when read with [`Form::read_spooled`] and not over the
    /// limit.
    pub spooled: Option<Spooled>,
    /// The full size of the part.
    pub size: usize,
}

/// A file part written to an anonymous temporary file (gone when dropped).
#[derive(Debug)]
pub(in crate::gateway) struct Spooled {
    pub file: std::fs::File,
    pub sha256: [u8; 32],
}

/// The file part being spooled.
struct Spooling {
    file: tokio::fs::File,
    hash: Sha256,
    written: usize,
}

impl Spooling {
    async fn start() -> Result<Spooling, ApiError> {
        let file = tokio::task::spawn_blocking(tempfile::tempfile)
            .await
            .map_err(|_| ApiError::internal())?
            .map_err(|e| {
                tracing::error!(error = %e, "cannot create a temporary file for an upload");
                ApiError::internal()
            })?;
        Ok(Spooling {
            file: tokio::fs::File::from_std(file),
            hash: Sha256::new(),
            written: 0,
        })
    }

    async fn write(&mut self, chunk: &[u8]) -> Result<(), ApiError> {
        self.hash.update(chunk);
        self.written += chunk.len();
        self.file.write_all(chunk).await.map_err(|e| {
            tracing::error!(error = %e, "cannot spool an upload to its temporary file");
            ApiError::internal()
        })
    }

    async fn finish(mut self) -> Result<Spooled, ApiError> {
        self.file.flush().await.map_err(|_| ApiError::internal())?;
        Ok(Spooled {
            file: self.file.into_std().await,
            sha256: self.hash.finalize().into(),
        })
    }
}

/// A read form: its file part, if any, and its non-empty text parts.
#[derive(Debug, Default)]
pub(in crate::gateway) struct Form {
    file_part: &'static str,
    file: Option<FilePart>,
    /// The file part was sent as text (FastAPI: "Expected UploadFile").
    file_is_text: bool,
    texts: Vec<(String, String)>,
}

impl Form {
    /// Reads every part. `file_part` names the file; it keeps `limit + 1` bytes. A body over
    /// the route's limit answers `too_large`; an unreadable body a 422 `value_error`. A
    /// request that is not multipart at all reads as an empty form (every part missing).
    pub(in crate::gateway) async fn read(
        multipart: Result<Multipart, MultipartRejection>,
        file_part: &'static str,
        limit: usize,
        too_large: ApiError,
    ) -> Result<Form, ApiError> {
        Form::read_with(multipart, file_part, limit, too_large, false).await
    }

    /// [`Form::read`], with the file part written to a temporary file as it arrives (up to
    /// `limit` bytes; past it the part is only counted) and hashed on the way.
    pub(in crate::gateway) async fn read_spooled(
        multipart: Result<Multipart, MultipartRejection>,
        file_part: &'static str,
        limit: usize,
        too_large: ApiError,
    ) -> Result<Form, ApiError> {
        Form::read_with(multipart, file_part, limit, too_large, true).await
    }

    async fn read_with(
        multipart: Result<Multipart, MultipartRejection>,
        file_part: &'static str,
        limit: usize,
        too_large: ApiError,
        spool: bool,
    ) -> Result<Form, ApiError> {
        let mut form = Form {
            file_part,
            ..Form::default()
        };
        let Ok(mut multipart) = multipart else {
            return Ok(form);
        };
        loop {
            let mut field = match multipart.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large),
                Err(e) => return Err(multipart_problem(None, &e)),
            };
            let name = field.name().unwrap_or_default().to_string();
            let file_name = field.file_name().map(str::to_string);
            let content_type = field.content_type().map(str::to_string);
            let spooling = spool && name == file_part && file_name.is_some();
            let keep = if spooling {
                0
            } else if name == file_part {
                limit.saturating_add(1)
            } else {
                MAX_TEXT_PART
            };
            let mut spooled = match spooling {
                true => Some(Spooling::start().await?),
                false => None,
            };
            let mut data = Vec::new();
            let mut size = 0usize;
            loop {
                match field.chunk().await {
                    Ok(Some(chunk)) => {
                        size += chunk.len();
                        if let Some(s) = &mut spooled {
                            if size <= limit {
                                s.write(&chunk).await?;
                            } else {
                                // Over the limit: only counted from here on (413 below).
                                spooled = None;
                            }
                        } else if data.len() < keep {
                            let room = keep - data.len();
                            data.extend_from_slice(&chunk[..chunk.len().min(room)]);
                        }
                    }
                    Ok(None) => break,
                    Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                        return Err(too_large);
                    }
                    Err(e) => return Err(multipart_problem(Some(&name), &e)),
                }
            }
            match file_name {
                Some(file_name) if name == file_part => {
                    let spooled = match spooled {
                        Some(s) if s.written == size => Some(s.finish().await?),
                        _ => None,
                    };
                    form.file = Some(FilePart {
                        file_name,
                        content_type: content_type
                            .unwrap_or_else(|| "application/octet-stream".into()),
                        data,
                        spooled,
                        size,
                    });
                }
                None if name == file_part => form.file_is_text = !data.is_empty(),
                _ if !data.is_empty() => {
                    form.texts
                        .push((name, String::from_utf8_lossy(&data).into_owned()));
                }
                _ => {}
            }
        }
        Ok(form)
    }

    /// The last non-empty text part `name`.
    pub(in crate::gateway) fn text(&self, name: &str) -> Option<String> {
        self.texts
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    /// The last non-empty text part `name`; when there is none, FastAPI's `missing` problem
    /// for it is added to `problems`.
    pub(in crate::gateway) fn required_text(
        &self,
        name: &str,
        problems: &mut Vec<Value>,
    ) -> Option<String> {
        let text = self.text(name);
        if text.is_none() {
            problems.push(part_problem("missing", name, "Field required", Value::Null));
        }
        text
    }

    /// FastAPI's problem for a missing file part (or one sent as text), if it is.
    pub(in crate::gateway) fn file_problem(&self) -> Option<Value> {
        if self.file.is_some() {
            return None;
        }
        Some(if self.file_is_text {
            part_problem(
                "value_error",
                self.file_part,
                "Value error, Expected UploadFile, received: <class 'str'>",
                Value::Null,
            )
        } else {
            part_problem("missing", self.file_part, "Field required", Value::Null)
        })
    }

    /// The file part (empty when missing; callers check [`Form::file_problem`] first).
    pub(in crate::gateway) fn take_file(&mut self) -> FilePart {
        self.file.take().unwrap_or_default()
    }
}

/// One FastAPI problem at `["body", part]`.
pub(in crate::gateway) fn part_problem(kind: &str, part: &str, msg: &str, input: Value) -> Value {
    problem(kind, &[json!("body"), json!(part)], msg, input, None)
}

fn multipart_problem(part: Option<&str>, e: &MultipartError) -> ApiError {
    let mut loc = vec![json!("body")];
    if let Some(part) = part {
        loc.push(json!(part));
    }
    ApiError::validation(vec![problem(
        "value_error",
        &loc,
        &format!("invalid multipart body: {e}"),
        Value::Null,
        None,
    )])
}
