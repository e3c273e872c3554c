//! The one error type of every NFSv4 ACL codec.
use thiserror::Error;

/// What went wrong, and where: binary formats name the byte offset, text names line and
/// column, encoders name the ACE index. The offending value is always part of the message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Nfs4CodecError {
    /// The input bytes are not a valid encoding.
    #[error("{format}: {what} at byte offset {offset}")]
    Malformed {
        format: &'static str,
        offset: usize,
        what: String,
    },
    /// The ACL is valid but this encoding cannot hold it (a name in a numeric-only format,
    /// a value wider than the field, ...). Encoders never drop or narrow silently.
    #[error("{format}: {what}")]
    Unencodable { format: &'static str, what: String },
    /// The ACL breaks a model invariant ([`super::Nfs4Ace::validate`]).
    #[error("ACE {index}: {why}")]
    InvalidAce { index: usize, why: String },
    /// nfs4-acl-tools text that `nfs4_setfacl` would reject (or that this parser rejects
    /// on purpose; see [`super::text`]).
    #[error("nfs4 text line {line}, column {column}: {why}: `{token}`")]
    Text {
        line: usize,
        column: usize,
        token: String,
        why: String,
    },
    /// JSON that does not parse into the model (serde's message carries line and column).
    #[error("nfs4 JSON: {0}")]
    Json(String),
}

impl Nfs4CodecError {
    pub(crate) fn malformed(format: &'static str, offset: usize, what: impl Into<String>) -> Self {
        Nfs4CodecError::Malformed {
            format,
            offset,
            what: what.into(),
        }
    }

    pub(crate) fn unencodable(format: &'static str, what: impl Into<String>) -> Self {
        Nfs4CodecError::Unencodable {
            format,
            what: what.into(),
        }
    }
}
