//! JSON form of a security descriptor.
//!
//! The shape is the serde derive of the model and is stable (changing it is a breaking
//! change for stored data and scripts):
//!
//! ```json
//! {
//!   "revision": 1,
//!   "control": 33796,
//!   "owner": "S-1-5-32-544",
//!   "group": null,
//!   "dacl": {
//!     "revision": 2,
//!     "aces": [
//!       {"ace_type": "access_allowed", "flags": 3, "mask": 2032127, "sid": "S-1-1-0"},
//!       {"ace_type": {"other": {"type_code": 5, "body": [1, 0, 0, 0]}},
//!        "flags": 0, "mask": 1, "sid": "S-1-0-0"}
//!     ]
//!   },
//!   "sacl": null
//! }
//! ```
//!
//! `control`, `flags` and `mask` are plain numbers (the bits of [`crate::acl::sd::control`],
//! [`crate::acl::sd::ace_flags`], [`crate::acl::sd::access`]); SIDs are `S-1-...` strings;
//! `ace_type` is one of `access_allowed`, `access_denied`, `system_audit`, `system_alarm` or
//! `{"other": {"type_code", "body"}}` with the raw ACE body after the 4-byte header. An absent
//! owner, group or ACL is `null`; a NULL DACL is `"dacl": null` with DACL_PRESENT (4) set in
//! `control`. `owner`, `group`, `dacl` and `sacl` may also be omitted (meaning `null`); every
//! other field is required and unknown fields are refused.
use crate::acl::sd::{SdInvalid, SecurityDescriptor};

/// Why JSON text is not a security descriptor.
#[derive(Debug, thiserror::Error)]
pub enum SdJsonError {
    /// Not JSON of the documented shape; the message has line and column.
    #[error("security descriptor JSON: {0}")]
    Syntax(#[from] serde_json::Error),
    /// Well-formed JSON whose value breaks an invariant of the model.
    #[error(transparent)]
    Invalid(#[from] SdInvalid),
}

/// The documented JSON shape, pretty-printed.
pub fn to_json(sd: &SecurityDescriptor) -> String {
    // Serialising plain data with string keys cannot fail.
    serde_json::to_string_pretty(sd).unwrap_or_else(|error| unreachable!("serialising a security descriptor: {error}"))
}

/// Parses the JSON shape and checks the result with [`SecurityDescriptor::validate`]
/// (revision 1, PRESENT bits for present ACLs, ACL revisions and sizes, unknown-type ACEs
/// consistent). Never panics.
pub fn from_json(text: &str) -> Result<SecurityDescriptor, SdJsonError> {
    let sd: SecurityDescriptor = serde_json::from_str(text)?;
    sd.validate()?;
    Ok(sd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::sd::strategies::arb_security_descriptor;
    use crate::acl::sd::{control, Ace, Acl};
    use crate::acl::sid::Sid;
    use proptest::prelude::*;

    #[test]
    fn documented_shape() {
        let mut sd = SecurityDescriptor::new();
        sd.control |= control::DACL_PRESENT | control::DACL_AUTO_INHERITED;
        sd.owner = Some(Sid::builtin_administrators());
        sd.dacl = Some(Acl::new(vec![Ace::allowed(Sid::world(), 0x1f01ff, 3), Ace::other(5, 0, vec![1, 0, 0, 0])]));
        let value: serde_json::Value = serde_json::from_str(&to_json(&sd)).unwrap();
        let expected = serde_json::json!({
            "revision": 1, "control": 33796, "owner": "S-1-5-32-544", "group": null,
            "dacl": {"revision": 2, "aces": [
                {"ace_type": "access_allowed", "flags": 3, "mask": 2032127, "sid": "S-1-1-0"},
                {"ace_type": {"other": {"type_code": 5, "body": [1, 0, 0, 0]}}, "flags": 0, "mask": 1, "sid": "S-1-0-0"}
            ]},
            "sacl": null
        });
        assert_eq!(value, expected);
        assert_eq!(from_json(&expected.to_string()).unwrap(), sd);
    }

    #[test]
    fn refuses_inconsistent_values() {
        let base = r#"{"revision":1,"control":32768,"owner":null,"group":null,"sacl":null,"dacl":"#;
        let dacl_without_bit = format!("{base}{{\"revision\":2,\"aces\":[]}}}}");
        let error = from_json(&dacl_without_bit).unwrap_err().to_string();
        assert!(error.contains("DACL_PRESENT"), "{error}");

        let bad_revision = r#"{"revision":2,"control":32768,"owner":null,"group":null,"sacl":null,"dacl":null}"#;
        assert!(matches!(from_json(bad_revision), Err(SdJsonError::Invalid(_))));

        let bad_sid = r#"{"revision":1,"control":32768,"owner":"S-1-x","group":null,"sacl":null,"dacl":null}"#;
        assert!(matches!(from_json(bad_sid), Err(SdJsonError::Syntax(_))));

        let acl_revision = r#"{"revision":1,"control":32772,"owner":null,"group":null,"sacl":null,"dacl":{"revision":5,"aces":[]}}"#;
        assert!(from_json(acl_revision).unwrap_err().to_string().contains("dacl"));

        let other_mask = r#"{"revision":1,"control":32772,"owner":null,"group":null,"sacl":null,"dacl":{"revision":2,"aces":[
            {"ace_type":{"other":{"type_code":5,"body":[1,0,0,0]}},"flags":0,"mask":7,"sid":"S-1-0-0"}]}}"#;
        assert!(from_json(other_mask).unwrap_err().to_string().contains("dacl.aces[0]"));

        let known_as_other = r#"{"revision":1,"control":32772,"owner":null,"group":null,"sacl":null,"dacl":{"revision":2,"aces":[
            {"ace_type":{"other":{"type_code":0,"body":[]}},"flags":0,"mask":0,"sid":"S-1-0-0"}]}}"#;
        assert!(from_json(known_as_other).is_err());

        assert!(from_json("").is_err());
        assert!(from_json("{}").is_err());
    }

    proptest! {
        #[test]
        fn round_trips(sd in arb_security_descriptor()) {
            prop_assert_eq!(from_json(&to_json(&sd)).unwrap(), sd);
        }

        #[test]
        fn never_panics(text in ".{0,200}") {
            let _ = from_json(&text);
        }
    }
}
