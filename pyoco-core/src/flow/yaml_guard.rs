//! Bounded YAML loading for everything a client can send (flow.yaml, bundles, params).
//!
//! Two guards, so that neither a parser difference nor an alias bomb gets through:
//! 1. a pre-scan of the event stream (yaml-rust2) computes the size and depth the document
//!    would have with every alias expanded — without expanding anything — and refuses
//!    non-standard tags (`!!python/object:…`, `!custom`), which serde_yaml would silently read
//!    as plain values;
//! 2. the real load (serde_yaml, the parser the rest of pyoco uses) goes through a visitor that
//!    counts nodes as they are built and stops at the same budget, so memory stays bounded by
//!    the budget even if the pre-scan and libyaml disagreed about a document.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};
use serde_yaml::{Mapping, Value as Yaml};
use yaml_rust2::parser::{Event, Parser, Tag};

/// `PYOCO_YAML_MAX_NODES`' default: nodes after alias expansion.
pub const DEFAULT_MAX_NODES: usize = 100_000;
/// Nesting deeper than this is refused (after alias expansion).
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// What one document may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YamlLimits {
    pub max_nodes: usize,
    pub max_depth: usize,
}

impl Default for YamlLimits {
    fn default() -> Self {
        YamlLimits {
            max_nodes: DEFAULT_MAX_NODES,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum YamlGuardError {
    /// Not YAML at all (syntax error).
    #[error("invalid yaml: {0}")]
    Syntax(String),
    /// More than `max_nodes` nodes once aliases are expanded.
    #[error("yaml too large: more than {limit} nodes once aliases are expanded")]
    TooManyNodes { limit: usize },
    /// Nested deeper than `max_depth`.
    #[error("yaml nested too deeply: more than {limit} levels")]
    TooDeep { limit: usize },
    /// A tag outside YAML's core schema.
    #[error("yaml tag not allowed: {tag}")]
    Tag { tag: String },
}

impl YamlGuardError {
    /// The reason code reported to clients (`invalid_yaml`, `yaml_too_large`,
    /// `yaml_too_deep`, `invalid_yaml_tag`).
    pub fn reason(&self) -> &'static str {
        match self {
            YamlGuardError::Syntax(_) => "invalid_yaml",
            YamlGuardError::TooManyNodes { .. } => "yaml_too_large",
            YamlGuardError::TooDeep { .. } => "yaml_too_deep",
            YamlGuardError::Tag { .. } => "invalid_yaml_tag",
        }
    }
}

/// Loads `text` into a YAML value within `limits`.
pub fn load(text: &str, limits: YamlLimits) -> Result<Yaml, YamlGuardError> {
    prescan(text, limits)?;
    let budget = Budget {
        limits,
        nodes: Cell::new(0),
        failure: Cell::new(None),
    };
    let de = serde_yaml::Deserializer::from_str(text);
    match (NodeSeed {
        budget: &budget,
        depth: 1,
    })
    .deserialize(de)
    {
        Ok(v) => Ok(v),
        Err(e) => Err(budget
            .failure
            .take()
            .unwrap_or_else(|| YamlGuardError::Syntax(e.to_string()))),
    }
}

/// `!!str`, `!!int`, …: the tags of YAML's core schema. Everything else, the non-specific `!`
/// included (serde_yaml would read it as an enum), is refused.
fn check_tag(tag: Option<&Tag>) -> Result<(), YamlGuardError> {
    let Some(tag) = tag else { return Ok(()) };
    const CORE: &[&str] = &["str", "int", "float", "bool", "null", "seq", "map"];
    let standard = (tag.handle == "tag:yaml.org,2002:" || tag.handle == "!!")
        && CORE.contains(&tag.suffix.as_str());
    if standard {
        Ok(())
    } else {
        let handle = if tag.handle == "tag:yaml.org,2002:" {
            "!!"
        } else {
            tag.handle.as_str()
        };
        Err(YamlGuardError::Tag {
            tag: format!("{handle}{}", tag.suffix),
        })
    }
}

/// Size and height of a node with its aliases expanded.
#[derive(Debug, Clone, Copy)]
struct Extent {
    nodes: usize,
    height: usize,
}

/// Walks the event stream once; an alias adds the extent recorded for its anchor.
fn prescan(text: &str, limits: YamlLimits) -> Result<(), YamlGuardError> {
    let mut parser = Parser::new_from_str(text);
    let mut anchors: HashMap<usize, Extent> = HashMap::new();
    // Open collections: (anchor id, extent so far).
    let mut open: Vec<(usize, Extent)> = Vec::new();
    let mut total: usize = 0;
    loop {
        let (event, _) = parser
            .next_token()
            .map_err(|e| YamlGuardError::Syntax(e.to_string()))?;
        let done = match event {
            Event::StreamEnd => return Ok(()),
            Event::Scalar(_, _, anchor, tag) => {
                check_tag(tag.as_ref())?;
                Some((
                    anchor,
                    Extent {
                        nodes: 1,
                        height: 1,
                    },
                ))
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag) => {
                check_tag(tag.as_ref())?;
                if open.len() >= limits.max_depth {
                    return Err(YamlGuardError::TooDeep {
                        limit: limits.max_depth,
                    });
                }
                open.push((
                    anchor,
                    Extent {
                        nodes: 1,
                        height: 1,
                    },
                ));
                None
            }
            Event::SequenceEnd | Event::MappingEnd => open.pop(),
            Event::Alias(id) => {
                let extent = anchors
                    .get(&id)
                    .copied()
                    .ok_or_else(|| YamlGuardError::Syntax("alias to an unknown anchor".into()))?;
                Some((0, extent))
            }
            _ => None,
        };
        let Some((anchor, extent)) = done else {
            continue;
        };
        if extent.nodes > limits.max_nodes {
            return Err(YamlGuardError::TooManyNodes {
                limit: limits.max_nodes,
            });
        }
        if extent.height + open.len() > limits.max_depth {
            return Err(YamlGuardError::TooDeep {
                limit: limits.max_depth,
            });
        }
        if anchor != 0 {
            anchors.insert(anchor, extent);
        }
        match open.last_mut() {
            Some((_, parent)) => {
                parent.nodes = parent.nodes.saturating_add(extent.nodes);
                parent.height = parent.height.max(extent.height + 1);
            }
            None => {
                total = total.saturating_add(extent.nodes);
                if total > limits.max_nodes {
                    return Err(YamlGuardError::TooManyNodes {
                        limit: limits.max_nodes,
                    });
                }
            }
        }
    }
}

struct Budget {
    limits: YamlLimits,
    nodes: Cell<usize>,
    /// The guard's own reason, kept apart from serde_yaml's error text.
    failure: Cell<Option<YamlGuardError>>,
}

impl Budget {
    fn charge<E: de::Error>(&self, depth: usize) -> Result<(), E> {
        let n = self.nodes.get() + 1;
        self.nodes.set(n);
        let failure = if n > self.limits.max_nodes {
            YamlGuardError::TooManyNodes {
                limit: self.limits.max_nodes,
            }
        } else if depth > self.limits.max_depth {
            YamlGuardError::TooDeep {
                limit: self.limits.max_depth,
            }
        } else {
            return Ok(());
        };
        let msg = failure.to_string();
        self.failure.set(Some(failure));
        Err(E::custom(msg))
    }
}

struct NodeSeed<'b> {
    budget: &'b Budget,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = Yaml;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Yaml, D::Error> {
        self.budget.charge(self.depth)?;
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_> {
    type Value = Yaml;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Yaml, E> {
        Ok(Yaml::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Yaml, E> {
        Ok(Yaml::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Yaml, E> {
        Ok(Yaml::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Yaml, E> {
        Ok(Yaml::Number(v.into()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Yaml, E> {
        Ok(Yaml::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Yaml, E> {
        Ok(Yaml::String(v))
    }
    fn visit_unit<E>(self) -> Result<Yaml, E> {
        Ok(Yaml::Null)
    }
    fn visit_none<E>(self) -> Result<Yaml, E> {
        Ok(Yaml::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Yaml, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Yaml, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(NodeSeed {
            budget: self.budget,
            depth: self.depth + 1,
        })? {
            out.push(v);
        }
        Ok(Yaml::Sequence(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Yaml, A::Error> {
        let mut out = Mapping::new();
        let child = || NodeSeed {
            budget: self.budget,
            depth: self.depth + 1,
        };
        while let Some(k) = map.next_key_seed(child())? {
            // Like serde_yaml's own Mapping: a duplicate key is an error, not "last one wins".
            if out.contains_key(&k) {
                return Err(de::Error::custom("duplicate mapping key"));
            }
            let v = map.next_value_seed(child())?;
            out.insert(k, v);
        }
        Ok(Yaml::Mapping(out))
    }

    /// serde_yaml reports a `!custom` tag as an enum: refuse it.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Yaml, A::Error> {
        let (tag, _rest): (String, _) = data.variant()?;
        let failure = YamlGuardError::Tag {
            tag: format!("!{tag}"),
        };
        let msg = failure.to_string();
        self.budget.failure.set(Some(failure));
        Err(de::Error::custom(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bomb(levels: usize, fan: usize) -> String {
        let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..=levels {
            let refs = vec![format!("*a{}", i - 1); fan].join(", ");
            s.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        s
    }

    #[test]
    fn plain_documents_load_like_serde_yaml() {
        let text = "flow: {graph: a >> b, defaults: {n: 1, f: 1.5, t: true, z: null}}\ntasks:\n  a: {callable: 'pyoco:echo', inputs: [1, two, !!str 3]}\n";
        let ours = load(text, YamlLimits::default()).unwrap();
        let theirs: Yaml = serde_yaml::from_str(text).unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn anchors_within_budget_are_fine() {
        let text = "base: &b {retries: 2}\na: *b\nb: *b\n";
        let v = load(text, YamlLimits::default()).unwrap();
        assert_eq!(v["b"]["retries"], Yaml::from(2));
    }

    #[test]
    fn alias_bombs_are_refused_before_expansion() {
        // 10 * 10^8 nodes if expanded; the text is under 1 KB.
        let text = bomb(8, 10);
        assert!(text.len() < 1024);
        let err = load(&text, YamlLimits::default()).unwrap_err();
        assert_eq!(err.reason(), "yaml_too_large");
    }

    #[test]
    fn the_second_guard_also_stops_a_bomb() {
        // Called directly, the counting visitor alone stops at the budget: one wide anchor
        // replayed 150 times stays under serde_yaml's own limit on alias jumps.
        let wide = vec!["x"; 1000].join(", ");
        let refs = vec!["*a"; 150].join(", ");
        let text = format!("a: &a [{wide}]\nb: [{refs}]\n");
        let budget = Budget {
            limits: YamlLimits::default(),
            nodes: Cell::new(0),
            failure: Cell::new(None),
        };
        let seed = NodeSeed {
            budget: &budget,
            depth: 1,
        };
        assert!(
            seed.deserialize(serde_yaml::Deserializer::from_str(&text))
                .is_err()
        );
        assert_eq!(
            budget.failure.take(),
            Some(YamlGuardError::TooManyNodes {
                limit: DEFAULT_MAX_NODES
            })
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = format!("{}1{}", "[".repeat(65), "]".repeat(65));
        assert_eq!(
            load(&text, YamlLimits::default()).unwrap_err().reason(),
            "yaml_too_deep"
        );
        let ok = format!("{}1{}", "[".repeat(60), "]".repeat(60));
        assert!(load(&ok, YamlLimits::default()).is_ok());
        // Depth reached through aliases counts too.
        let inner = format!("{}1{}", "[".repeat(40), "]".repeat(40));
        let text =
            format!("a: &a {inner}\nb: [[[[[[[[[[[[[[[[[[[[[[[[[[*a]]]]]]]]]]]]]]]]]]]]]]]]]]\n");
        assert_eq!(
            load(&text, YamlLimits::default()).unwrap_err().reason(),
            "yaml_too_deep"
        );
    }

    #[test]
    fn python_and_custom_tags_are_refused() {
        for text in [
            "x: !!python/object:os.system [ls]\n",
            "x: !!python/name:os.system ''\n",
            "x: !custom 1\n",
            "x: !<tag:example.com,2000:app/foo> 1\n",
            "x: !!binary aGVsbG8=\n",
            "x: ! 2\n",
        ] {
            let err = load(text, YamlLimits::default()).unwrap_err();
            assert_eq!(err.reason(), "invalid_yaml_tag", "{text}");
        }
        assert!(load("x: !!str 1\nz: !!map {a: !!int 3}\n", YamlLimits::default()).is_ok());
    }

    #[test]
    fn duplicate_keys_and_multiple_documents_stay_errors() {
        for text in ["a: 1\na: 2\n", "a: 1\n---\nb: 2\n"] {
            let err = load(text, YamlLimits::default()).unwrap_err();
            assert_eq!(err.reason(), "invalid_yaml", "{text}");
        }
        assert_eq!(load("", YamlLimits::default()).unwrap(), Yaml::Null);
    }

    #[test]
    fn syntax_errors_are_syntax_errors() {
        let err = load("a: [1, 2\n", YamlLimits::default()).unwrap_err();
        assert_eq!(err.reason(), "invalid_yaml");
        let err = load("a: *nope\n", YamlLimits::default()).unwrap_err();
        assert_eq!(err.reason(), "invalid_yaml");
    }
}
