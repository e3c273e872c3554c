//! JSON for the model, through serde, with the model invariants checked both ways.
//!
//! Shape (serde's derive on [`Nfs4Acl`]; unknown fields are rejected):
//!
//! ```json
//! {"flags":0,"aces":[
//!   {"ace_type":"allow","flags":0,"mask":1,"who":{"special":"OWNER"}},
//!   {"ace_type":"deny","flags":64,"mask":2,"who":{"gid":100}},
//!   {"ace_type":"allow","flags":0,"mask":1,"who":{"uid":1000}},
//!   {"ace_type":"audit","flags":16,"mask":1,"who":{"name":"bob@example.com"}}]}
//! ```
use super::error::Nfs4CodecError;
use super::Nfs4Acl;

/// Serializes a valid ACL (see [`Nfs4Acl::validate`]).
pub fn to_json(acl: &Nfs4Acl) -> Result<String, Nfs4CodecError> {
    acl.validate()?;
    serde_json::to_string(acl).map_err(|e| Nfs4CodecError::Json(e.to_string()))
}

/// Parses and validates: a uid with IDENTIFIER_GROUP, a gid without it, or a name that
/// would read back as an id or a special identifier is an error, not a guess.
pub fn from_json(text: &str) -> Result<Nfs4Acl, Nfs4CodecError> {
    let acl: Nfs4Acl =
        serde_json::from_str(text).map_err(|e| Nfs4CodecError::Json(e.to_string()))?;
    acl.validate()?;
    Ok(acl)
}

#[cfg(test)]
mod tests {
    use super::super::{ace_flags, Nfs4Ace, Nfs4AceType, SpecialWho, Who};
    use super::*;

    #[test]
    fn documented_shape_parses() {
        let text = r#"{"flags":0,"aces":[
            {"ace_type":"allow","flags":0,"mask":1,"who":{"special":"OWNER"}},
            {"ace_type":"deny","flags":64,"mask":2,"who":{"gid":100}},
            {"ace_type":"allow","flags":0,"mask":1,"who":{"uid":1000}},
            {"ace_type":"audit","flags":16,"mask":1,"who":{"name":"bob@example.com"}}]}"#;
        let acl = from_json(text).unwrap();
        assert_eq!(acl.aces.len(), 4);
        assert_eq!(acl.aces[0].who, Who::Special(SpecialWho::Owner));
        assert_eq!(acl.aces[1].who, Who::Gid(100));
        assert_eq!(acl.aces[3].ace_type, Nfs4AceType::Audit);
        assert_eq!(from_json(&to_json(&acl).unwrap()).unwrap(), acl);
    }

    #[test]
    fn group_flag_invariant_is_enforced_both_ways() {
        let uid_with_group =
            r#"{"flags":0,"aces":[{"ace_type":"allow","flags":64,"mask":1,"who":{"uid":5}}]}"#;
        let err = from_json(uid_with_group).unwrap_err();
        assert!(
            matches!(err, Nfs4CodecError::InvalidAce { index: 0, .. }),
            "{err}"
        );
        let gid_without = Nfs4Acl {
            flags: 0,
            aces: vec![Nfs4Ace {
                ace_type: Nfs4AceType::Allow,
                flags: ace_flags::FILE_INHERIT,
                mask: 1,
                who: Who::Gid(5),
            }],
        };
        assert!(to_json(&gid_without).is_err());
    }

    #[test]
    fn unknown_fields_and_bad_values_are_errors() {
        for text in [
            r#"{"flags":0,"aces":[],"extra":1}"#,
            r#"{"flags":0,"aces":[{"ace_type":"permit","flags":0,"mask":1,"who":{"uid":1}}]}"#,
            r#"{"flags":0,"aces":[{"ace_type":"allow","flags":0,"mask":1,"who":{"special":"NOBODY"}}]}"#,
            r#"{"flags":0,"aces":[{"ace_type":"allow","flags":0,"mask":1,"who":{"name":"123"}}]}"#,
            r#"{"flags":-1,"aces":[]}"#,
        ] {
            assert!(from_json(text).is_err(), "{text}");
        }
    }
}

#[cfg(test)]
mod properties {
    use super::super::strategies;
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn json_round_trips(acl in strategies::nfs41_acl()) {
            prop_assert_eq!(from_json(&to_json(&acl).unwrap()).unwrap(), acl);
        }

        #[test]
        fn from_json_never_panics(text in ".{0,80}") {
            let _ = from_json(&text);
        }
    }
}
