//! Variable families: variables whose name carries a user-chosen part, so they cannot be rows
//! of `config_table!`. Today one family, `PYOCO_SQL_<NAME>_URL`: the PostgreSQL DSN of the
//! connection `<name>` that `pyoco:sql` tasks use. The flow YAML names the connection, never
//! the DSN, so credentials stay with the worker.

use std::collections::{BTreeMap, HashMap};

/// Every family, as `spec/config.md` writes it (the spec test compares them).
pub const VARIABLE_FAMILIES: &[&str] = &["PYOCO_SQL_<NAME>_URL"];

const SQL_PREFIX: &str = "PYOCO_SQL_";
const SQL_SUFFIX: &str = "_URL";

/// The DSNs of the `pyoco:sql` connections, by upper-case name. `Debug` shows only the names:
/// the URLs hold passwords and configs get logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SqlUrls(BTreeMap<String, String>);

impl std::fmt::Debug for SqlUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl SqlUrls {
    /// Reads `PYOCO_SQL_<NAME>_URL` from `vars`; blank values count as unset, later entries win.
    pub fn from_vars<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> SqlUrls {
        let mut urls = SqlUrls::default();
        for (key, value) in vars {
            let Some(name) = key
                .strip_prefix(SQL_PREFIX)
                .and_then(|rest| rest.strip_suffix(SQL_SUFFIX))
            else {
                continue;
            };
            if is_connection_name(name) && !value.trim().is_empty() {
                urls.0
                    .insert(name.to_ascii_uppercase(), value.trim().to_string());
            }
        }
        urls
    }

    /// `.env` values first, then the process environment over them (as for every variable).
    pub(super) fn from_sources(
        process: &HashMap<String, String>,
        dotenv: &HashMap<String, String>,
    ) -> SqlUrls {
        let pairs = dotenv.iter().chain(process.iter());
        // A blank process value must not hide the `.env` one: drop blanks before merging.
        SqlUrls::from_vars(
            pairs
                .filter(|(_, v)| !v.trim().is_empty())
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }

    /// Sets the DSN of connection `name` (case-insensitive).
    pub fn insert(&mut self, name: &str, url: impl Into<String>) -> &mut SqlUrls {
        self.0.insert(name.to_ascii_uppercase(), url.into());
        self
    }

    /// The DSN of connection `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(&name.to_ascii_uppercase()).map(String::as_str)
    }

    /// The configured connection names (upper case).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// The variable holding connection `name`'s DSN.
pub fn sql_url_variable(name: &str) -> String {
    format!("{SQL_PREFIX}{}{SQL_SUFFIX}", name.to_ascii_uppercase())
}

/// A connection name: letters, digits and `_`, not starting or ending with `_` (so the
/// variable name splits one way only).
pub fn is_connection_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('_')
        && !name.ends_with('_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_urls_come_from_the_family_and_hide_their_values() {
        let urls = SqlUrls::from_vars([
            ("PYOCO_SQL_MAIN_URL", "postgres://u:secret@h/db"),
            ("PYOCO_SQL_my_db_URL", " postgres://h/other "),
            ("PYOCO_SQL__URL", "postgres://h/none"),
            ("PYOCO_SQL_BLANK_URL", "  "),
            ("PYOCO_SQL_POOL_SIZE", "4"),
            ("OTHER_SQL_X_URL", "postgres://h/x"),
        ]);
        assert_eq!(urls.names().collect::<Vec<_>>(), ["MAIN", "MY_DB"]);
        assert_eq!(urls.get("main"), Some("postgres://u:secret@h/db"));
        assert_eq!(urls.get("My_Db"), Some("postgres://h/other"));
        assert_eq!(urls.get("blank"), None);
        assert!(!format!("{urls:?}").contains("secret"));
        assert_eq!(sql_url_variable("my_db"), "PYOCO_SQL_MY_DB_URL");
    }

    #[test]
    fn the_process_environment_wins_over_dotenv_unless_blank() {
        let map = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let process = map(&[
            ("PYOCO_SQL_A_URL", "postgres://p/a"),
            ("PYOCO_SQL_B_URL", " "),
        ]);
        let dotenv = map(&[
            ("PYOCO_SQL_A_URL", "postgres://d/a"),
            ("PYOCO_SQL_B_URL", "postgres://d/b"),
        ]);
        let urls = SqlUrls::from_sources(&process, &dotenv);
        assert_eq!(urls.get("a"), Some("postgres://p/a"));
        assert_eq!(urls.get("b"), Some("postgres://d/b"));
    }
}
