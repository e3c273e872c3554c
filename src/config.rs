//! The `nfsbridge:` parametric options of a share, as smb.conf spells them.
//!
//! smbd hands the module each option's raw string (or nothing when unset). Parsing and
//! validation live here so they test without Samba; the module refuses the tree connect when
//! [`ModuleConfig::from_lookup`] returns an error, and logs the error's text.
use std::fmt;

/// How an option's value is spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKind {
    /// Samba's boolean spellings: yes/no, true/false, on/off, 1/0 (any case).
    Bool,
    /// One of a fixed list of keywords (any case).
    Keyword(&'static [&'static str]),
}

/// One `nfsbridge:NAME = VALUE` option: its name as written after the colon, how it is
/// spelled, its default, and what it does (the man page repeats this text).
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    pub name: &'static str,
    pub kind: OptionKind,
    pub default: &'static str,
    pub help: &'static str,
}

/// Every option the module reads. Keep `samba-module/vfs_nfsbridge.8` in step with it.
pub const OPTIONS: &[OptionSpec] = &[OptionSpec {
    name: "fault injection",
    kind: OptionKind::Keyword(FaultInjection::KEYWORDS),
    default: "none",
    help: "Testing aid, like vfs_error_inject: make the module fail on purpose so that its \
           error paths can be exercised on a real smbd. 'panic in connect' panics inside the \
           module's connect callback; the panic is caught at the FFI boundary, logged, and \
           only that tree connect fails. Never set this on a production share.",
}];

/// Deliberate failures, for testing the module's error handling inside a real smbd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultInjection {
    #[default]
    None,
    /// Panic inside the connect callback (after the option has been validated).
    PanicInConnect,
}

impl FaultInjection {
    const KEYWORDS: &'static [&'static str] = &["none", "panic in connect"];

    fn from_keyword(word: &str) -> Self {
        match word {
            "panic in connect" => Self::PanicInConnect,
            _ => Self::None,
        }
    }
}

/// The validated `nfsbridge:` configuration of one share.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModuleConfig {
    pub fault_injection: FaultInjection,
}

/// A value smb.conf gave that the module cannot accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value {value:?} for option 'nfsbridge:{option}': {reason}")]
pub struct ConfigError {
    pub option: &'static str,
    pub value: String,
    pub reason: String,
}

impl ModuleConfig {
    /// Builds the configuration from `lookup(name)`, which returns the raw smb.conf value of
    /// `nfsbridge:name` for the share (global section included), or `None` when unset.
    pub fn from_lookup(mut lookup: impl FnMut(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = ModuleConfig::default();
        for spec in OPTIONS {
            let Some(raw) = lookup(spec.name) else { continue };
            let value = parse_value(spec, &raw)?;
            match spec.name {
                "fault injection" => {
                    config.fault_injection = FaultInjection::from_keyword(value.as_keyword())
                }
                other => unreachable!("option table and ModuleConfig disagree on {other}"),
            }
        }
        Ok(config)
    }
}

impl fmt::Display for ModuleConfig {
    /// One line, `name=value` pairs, for the connect log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fault = match self.fault_injection {
            FaultInjection::None => "none",
            FaultInjection::PanicInConnect => "panic in connect",
        };
        write!(f, "fault injection={fault}")
    }
}

/// A parsed option value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Bool(bool),
    /// The canonical (lower-case, single-spaced) keyword from the option's list.
    Keyword(&'static str),
}

impl Value {
    fn as_keyword(&self) -> &'static str {
        match self {
            Value::Keyword(k) => k,
            Value::Bool(_) => unreachable!("option kind checked by parse_value"),
        }
    }
}

/// Parses one raw value the way smbd would read it: surrounding white space ignored, case
/// ignored, runs of inner white space equal to one space.
pub fn parse_value(spec: &OptionSpec, raw: &str) -> Result<Value, ConfigError> {
    let normalized = raw.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase();
    let error = |reason: String| ConfigError { option: spec.name, value: raw.to_string(), reason };
    match spec.kind {
        OptionKind::Bool => match normalized.as_str() {
            "yes" | "true" | "on" | "1" => Ok(Value::Bool(true)),
            "no" | "false" | "off" | "0" => Ok(Value::Bool(false)),
            _ => Err(error("expected yes or no".into())),
        },
        OptionKind::Keyword(words) => words
            .iter()
            .find(|w| **w == normalized)
            .map(|w| Value::Keyword(w))
            .ok_or_else(|| error(format!("expected one of: {}", words.join(", ")))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_from(pairs: &[(&str, &str)]) -> Result<ModuleConfig, ConfigError> {
        ModuleConfig::from_lookup(|name| {
            pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn unset_options_take_their_defaults() {
        let config = config_from(&[]).unwrap();
        assert_eq!(config, ModuleConfig::default());
        for spec in OPTIONS {
            assert!(parse_value(spec, spec.default).is_ok(), "default of {} must parse", spec.name);
        }
    }

    #[test]
    fn keywords_ignore_case_and_spacing() {
        let config = config_from(&[("fault injection", "  Panic   IN connect ")]).unwrap();
        assert_eq!(config.fault_injection, FaultInjection::PanicInConnect);
        assert_eq!(config_from(&[("fault injection", "NONE")]).unwrap().fault_injection, FaultInjection::None);
    }

    #[test]
    fn bad_values_name_the_option_and_the_choices() {
        let err = config_from(&[("fault injection", "sometimes")]).unwrap_err();
        assert_eq!(err.option, "fault injection");
        assert_eq!(err.value, "sometimes");
        let text = err.to_string();
        assert!(text.contains("'nfsbridge:fault injection'"), "{text}");
        assert!(text.contains("none, panic in connect"), "{text}");
    }

    #[test]
    fn booleans_use_samba_spellings() {
        let spec = OptionSpec { name: "x", kind: OptionKind::Bool, default: "no", help: "" };
        for yes in ["yes", "True", "ON", "1"] {
            assert_eq!(parse_value(&spec, yes).unwrap(), Value::Bool(true));
        }
        for no in ["no", "FALSE", "off", "0"] {
            assert_eq!(parse_value(&spec, no).unwrap(), Value::Bool(false));
        }
        assert!(parse_value(&spec, "maybe").is_err());
        assert!(parse_value(&spec, "").is_err());
    }

    #[test]
    fn display_lists_every_option() {
        let shown = ModuleConfig::default().to_string();
        for spec in OPTIONS {
            assert!(shown.contains(spec.name), "{shown} lacks {}", spec.name);
        }
    }
}
