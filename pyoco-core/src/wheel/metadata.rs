//! The core-metadata format of `.dist-info/METADATA` and `WHEEL`: RFC 822-style headers
//! (folded lines continue a value), then an optional body (the long description).

/// Headers in file order (names as written) and the body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Metadata {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Metadata {
    pub fn parse(text: &str) -> Metadata {
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut lines = text.lines();
        let mut body = String::new();
        for line in lines.by_ref() {
            if line.trim().is_empty() {
                break;
            }
            if line.starts_with([' ', '\t']) {
                // A folded continuation of the previous value.
                if let Some((_, value)) = headers.last_mut() {
                    value.push('\n');
                    value.push_str(line.trim());
                }
                continue;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        for line in lines {
            body.push_str(line);
            body.push('\n');
        }
        Metadata { headers, body }
    }

    /// The first value of `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` (any case).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The long description: the body, else the `Description` header (older metadata).
    pub fn description(&self) -> &str {
        let body = self.body.trim();
        if body.is_empty() {
            self.get("Description").unwrap_or("").trim()
        } else {
            body
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_folds_and_body() {
        let m = Metadata::parse(
            "Metadata-Version: 2.1\nName: demo\nSummary: a\n  b\nProject-URL: Docs, https://x\nProject-URL: Home, https://y\n\nLong text\nmore\n",
        );
        assert_eq!(m.get("name"), Some("demo"));
        assert_eq!(m.get("Summary"), Some("a\nb"));
        assert_eq!(m.get_all("Project-URL").count(), 2);
        assert_eq!(m.description(), "Long text\nmore");
    }
}
