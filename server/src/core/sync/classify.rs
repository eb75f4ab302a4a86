//! Error classification: is a failed sync worth retrying? Rules are case-insensitive regular
//! expressions over the error message, configurable under `[sync.classification]`. A message
//! matching a non-recoverable rule is not recoverable even when a recoverable rule matches too
//! (retrying "503: invalid credentials" would fail again), and a message matching no rule is
//! not retried: retrying is for failures known to pass.

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

/// The rule name used when the worker said whether to retry.
pub const WORKER_RULE: &str = "worker";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassificationRule {
    pub name: String,
    pub pattern: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassificationRules {
    /// Tried in order; the first match names the rule.
    pub recoverable: Vec<ClassificationRule>,
    pub non_recoverable: Vec<ClassificationRule>,
}

fn rule(name: &str, pattern: &str) -> ClassificationRule {
    ClassificationRule {
        name: name.to_owned(),
        pattern: pattern.to_owned(),
    }
}

impl Default for ClassificationRules {
    /// The seed's rules. The more specific "gateway timeout" comes before "timeout" so it names
    /// the match; 5xx must be a whole three-digit number, not part of "port 5432".
    fn default() -> Self {
        Self {
            recoverable: vec![
                rule("gateway timeout", r"gateway\s*time-?out"),
                rule("rate limit", r"rate[\s_-]*limit|too many requests"),
                rule("network", r"network"),
                rule("timeout", r"time-?out|timed out"),
                rule("5xx", r"\b5\d{2}\b"),
                rule("connection", r"connection"),
                rule("dns", r"\bdns\b"),
                rule("ssl", r"\bssl\b|\btls\b"),
            ],
            non_recoverable: vec![
                rule("empty data", r"empty.*data"),
                rule("invalid credentials", r"invalid.*credentials"),
                rule("schema error", r"schema.*error"),
                rule("unauthorized", r"unauthori[sz]ed"),
                rule("malformed data", r"malformed.*data"),
            ],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub recoverable: bool,
    /// The deciding rule; `None` when no rule matched.
    pub matched_rule: Option<String>,
}

impl Classification {
    /// The worker's own verdict.
    pub fn by_worker(retryable: bool) -> Self {
        Self {
            recoverable: retryable,
            matched_rule: Some(WORKER_RULE.to_owned()),
        }
    }

    /// A verdict of the server's own (a rejected snapshot), not of the rules.
    pub fn non_recoverable(rule: &str) -> Self {
        Self {
            recoverable: false,
            matched_rule: Some(rule.to_owned()),
        }
    }
}

/// The rules, compiled.
#[derive(Debug, Clone)]
pub struct Classifier {
    recoverable: Vec<(String, Regex)>,
    non_recoverable: Vec<(String, Regex)>,
}

impl Classifier {
    /// Compiles the rules; the error names the rule whose pattern is not a valid expression.
    pub fn new(rules: &ClassificationRules) -> Result<Self, String> {
        let compile = |rules: &[ClassificationRule]| {
            rules
                .iter()
                .map(|rule| {
                    RegexBuilder::new(&rule.pattern)
                        .case_insensitive(true)
                        .build()
                        .map(|regex| (rule.name.clone(), regex))
                        .map_err(|err| format!("classification rule {:?}: {err}", rule.name))
                })
                .collect::<Result<Vec<_>, String>>()
        };
        Ok(Self {
            recoverable: compile(&rules.recoverable)?,
            non_recoverable: compile(&rules.non_recoverable)?,
        })
    }

    pub fn classify(&self, message: &str) -> Classification {
        let first_match = |rules: &[(String, Regex)]| {
            rules
                .iter()
                .find(|(_, regex)| regex.is_match(message))
                .map(|(name, _)| name.clone())
        };
        if let Some(rule) = first_match(&self.non_recoverable) {
            return Classification {
                recoverable: false,
                matched_rule: Some(rule),
            };
        }
        match first_match(&self.recoverable) {
            Some(rule) => Classification {
                recoverable: true,
                matched_rule: Some(rule),
            },
            None => Classification {
                recoverable: false,
                matched_rule: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_pattern_is_named() {
        let rules = ClassificationRules {
            recoverable: vec![rule("broken", "(")],
            non_recoverable: Vec::new(),
        };
        assert!(Classifier::new(&rules).unwrap_err().contains("broken"));
    }
}
