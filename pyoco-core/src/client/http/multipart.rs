//! `multipart/form-data` bodies built in memory: a signed request (HMAC) must hash the exact
//! bytes it sends, which reqwest's streaming form never exposes.

/// A form under construction.
pub(crate) struct Multipart {
    boundary: String,
    body: Vec<u8>,
}

/// Quotes and line breaks cannot appear inside a quoted header parameter; browsers send `%22`.
fn quoted(value: &str) -> String {
    value
        .replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

impl Multipart {
    pub(crate) fn new() -> Multipart {
        Multipart {
            boundary: format!("pyoco-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
            body: Vec::new(),
        }
    }

    fn head(&mut self, disposition: String, content_type: Option<&str>) {
        self.body
            .extend_from_slice(format!("--{}\r\n{disposition}\r\n", self.boundary).as_bytes());
        if let Some(ct) = content_type {
            self.body
                .extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        self.body.extend_from_slice(b"\r\n");
    }

    pub(crate) fn text(mut self, name: &str, value: &str) -> Multipart {
        self.head(
            format!("Content-Disposition: form-data; name=\"{}\"", quoted(name)),
            None,
        );
        self.body.extend_from_slice(value.as_bytes());
        self.body.extend_from_slice(b"\r\n");
        self
    }

    pub(crate) fn file(
        mut self,
        name: &str,
        filename: &str,
        content_type: &str,
        data: &[u8],
    ) -> Multipart {
        self.head(
            format!(
                "Content-Disposition: form-data; name=\"{}\"; filename=\"{}\"",
                quoted(name),
                quoted(filename)
            ),
            Some(content_type),
        );
        self.body.extend_from_slice(data);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    /// The `Content-Type` header value and the body.
    pub(crate) fn finish(mut self) -> (String, Vec<u8>) {
        self.body
            .extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        (
            format!("multipart/form-data; boundary={}", self.boundary),
            self.body,
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test may panic
mod tests {
    use super::*;

    #[test]
    fn builds_a_form_a_multipart_parser_reads_back() {
        let (ct, body) = Multipart::new()
            .file(
                "workflow",
                "flow.yaml",
                "application/x-yaml",
                b"flow: {graph: a}\n",
            )
            .text("flow_name", "a \"quoted\" name")
            .finish();
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
        assert!(text.contains("filename=\"flow.yaml\"\r\nContent-Type: application/x-yaml\r\n\r\nflow: {graph: a}\n\r\n"));
        assert!(text.contains("name=\"flow_name\"\r\n\r\na \"quoted\" name\r\n"));
    }
}
