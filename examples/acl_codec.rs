//! Our ACL codecs and mapping behind a JSON pipe, for tests written in other languages (the
//! Samba interop tests in `tests/integration/test_acl_interop.py`). Independent of the
//! `nfsbridge acl` CLI on purpose: it exposes the library functions one by one.
//!
//! One JSON request on stdin, one JSON answer on stdout (`{"error": "..."}` on failure,
//! exit status 0 either way so that the caller can assert on the message; exit 2 only for a
//! malformed request). Binary blobs are lowercase hex. Requests (`op`):
//!
//! - `decode` `{encoding, hex}` → `{acl, text, reencoded_hex}`: the NFSv4 ACL as JSON, its
//!   nfs4-acl-tools text (or null when it has no text form), and our encoding of what we
//!   decoded (ndr keeps the header fields it read, so that this must equal the input).
//! - `parse_text` `{spec}` → `{acl, text}`: nfs4-acl-tools text parsed, and printed back.
//! - `encode` `{encoding, acl}` → `{hex}` (ndr: Samba's defaults, version 1, masks 0).
//! - `parse_sd` `{sddl, domain?}` or `{smbcacls}` → `{sd}` (the SD JSON of `acl::sd::json`;
//!   `domain` is the SID that domain-relative SDDL aliases such as `DU` stand for).
//! - `sd_to_nfs4` `{sd | sddl | smbcacls, file, idmap, options}` →
//!   `{owner, group, dacl, skipped}`.
//! - `nfs4_to_sd` `{acl, file, idmap, options}` → `{sd, sddl}`.
//!
//! `encoding` is `nfs40`, `nfs41`, `xdr` or `ndr`; `file` is `{uid, gid, is_directory}`;
//! `idmap` is the text of a mapping file (`acl::idmap::MappingFile`, over the Unix SIDs);
//! `options` has the optional keys `owner_group` (`special`|`numeric`), `both_ids`
//! (`user_and_group`|`group_plus_owner`), `unmappable_sid` (`error`|`skip`),
//! `file_inherit_flags` (`keep`|`strip`) and `map_full_control` (bool).
use std::io::Read;

use nfsbridge::acl::idmap::MappingFile;
use nfsbridge::acl::mapping::{
    self, BothIdAces, FileContext, FileInheritFlags, MappingOptions, Nfs4Acls, OwnerGroupForm,
    UnmappableSid,
};
use nfsbridge::acl::nfs4::{self, ndr, Nfs4Acl, Nfs4Encoding};
use nfsbridge::acl::sd::{self, SecurityDescriptor};
use nfsbridge::acl::sid::Sid;
use serde_json::{json, Value};

fn main() {
    let mut input = String::new();
    if let Err(error) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("acl_codec: reading stdin: {error}");
        std::process::exit(2);
    }
    let request: Value = match serde_json::from_str(&input) {
        Ok(value) => value,
        Err(error) => {
            eprintln!("acl_codec: request is not JSON: {error}");
            std::process::exit(2);
        }
    };
    let answer = handle(&request).unwrap_or_else(|error| json!({ "error": error }));
    println!("{answer}");
}

fn handle(request: &Value) -> Result<Value, String> {
    match field_str(request, "op")? {
        "decode" => decode(request),
        "encode" => encode(request),
        "parse_text" => parse_text(request),
        "parse_sd" => Ok(json!({ "sd": sd_json(&security_descriptor(request)?) })),
        "sd_to_nfs4" => sd_to_nfs4(request),
        "nfs4_to_sd" => nfs4_to_sd(request),
        other => Err(format!("unknown op {other:?}")),
    }
}

fn field<'a>(request: &'a Value, name: &str) -> Result<&'a Value, String> {
    request
        .get(name)
        .ok_or_else(|| format!("request has no {name:?}"))
}

fn field_str<'a>(request: &'a Value, name: &str) -> Result<&'a str, String> {
    field(request, name)?
        .as_str()
        .ok_or_else(|| format!("{name:?} is not a string"))
}

fn encoding(request: &Value) -> Result<Nfs4Encoding, String> {
    match field_str(request, "encoding")? {
        "nfs40" => Ok(Nfs4Encoding::Nfs40),
        "nfs41" => Ok(Nfs4Encoding::Nfs41),
        "xdr" => Ok(Nfs4Encoding::Xdr),
        "ndr" => Ok(Nfs4Encoding::Ndr),
        other => Err(format!("unknown encoding {other:?}")),
    }
}

fn from_hex(text: &str) -> Result<Vec<u8>, String> {
    if text.len() % 2 != 0 {
        return Err("odd number of hex digits".into());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|e| format!("hex at {i}: {e}")))
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn acl_json(acl: &Nfs4Acl) -> Result<Value, String> {
    let text = nfs4::json::to_json(acl).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

fn acl_from(request: &Value) -> Result<Nfs4Acl, String> {
    nfs4::json::from_json(&field(request, "acl")?.to_string()).map_err(|e| e.to_string())
}

fn sd_json(sd: &SecurityDescriptor) -> Value {
    serde_json::from_str(&sd::json::to_json(sd)).expect("the SD JSON of our own encoder is JSON")
}

fn decode(request: &Value) -> Result<Value, String> {
    let encoding = encoding(request)?;
    let bytes = from_hex(field_str(request, "hex")?)?;
    let (acl, reencoded) = if encoding == Nfs4Encoding::Ndr {
        // Through NdrAcl, so that the header fields Nfs4Acl has no place for survive.
        let blob = ndr::decode(&bytes).map_err(|e| e.to_string())?;
        let again = ndr::encode(&blob).map_err(|e| e.to_string())?;
        (blob.acl, again)
    } else {
        let acl = encoding.decode(&bytes).map_err(|e| e.to_string())?;
        let again = encoding.encode(&acl).map_err(|e| e.to_string())?;
        (acl, again)
    };
    let text = nfs4::text::to_text(&acl).ok();
    Ok(json!({ "acl": acl_json(&acl)?, "text": text, "reencoded_hex": to_hex(&reencoded) }))
}

fn parse_text(request: &Value) -> Result<Value, String> {
    let acl = nfs4::text::parse(field_str(request, "spec")?).map_err(|e| e.to_string())?;
    let text = nfs4::text::to_text(&acl).map_err(|e| e.to_string())?;
    Ok(json!({ "acl": acl_json(&acl)?, "text": text }))
}

fn encode(request: &Value) -> Result<Value, String> {
    let bytes = encoding(request)?
        .encode(&acl_from(request)?)
        .map_err(|e| e.to_string())?;
    Ok(json!({ "hex": to_hex(&bytes) }))
}

fn security_descriptor(request: &Value) -> Result<SecurityDescriptor, String> {
    if let Some(sd) = request.get("sd") {
        return sd::json::from_json(&sd.to_string()).map_err(|e| e.to_string());
    }
    if let Some(text) = request.get("sddl").and_then(Value::as_str) {
        let domain = match request.get("domain").and_then(Value::as_str) {
            Some(sid) => Some(
                sid.parse::<Sid>()
                    .map_err(|e| format!("domain {sid:?}: {e}"))?,
            ),
            None => None,
        };
        return sd::sddl::parse(text, domain.as_ref()).map_err(|e| e.to_string());
    }
    if let Some(text) = request.get("smbcacls").and_then(Value::as_str) {
        return sd::smbcacls::parse(text, None).map_err(|e| e.to_string());
    }
    Err("request has none of \"sd\", \"sddl\", \"smbcacls\"".into())
}

fn file_context(request: &Value) -> Result<FileContext, String> {
    let file = field(request, "file")?;
    let id = |name: &str| {
        file.get(name)
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| format!("file.{name} is not a u32"))
    };
    let is_directory = file
        .get("is_directory")
        .and_then(Value::as_bool)
        .ok_or("file.is_directory is not a bool")?;
    Ok(FileContext {
        uid: id("uid")?,
        gid: id("gid")?,
        is_directory,
    })
}

fn idmap(request: &Value) -> Result<MappingFile, String> {
    let text = request.get("idmap").and_then(Value::as_str).unwrap_or("");
    MappingFile::parse(text).map_err(|e| e.to_string())
}

fn options(request: &Value) -> Result<MappingOptions, String> {
    let mut options = MappingOptions::default();
    let Some(given) = request.get("options") else {
        return Ok(options);
    };
    let given = given.as_object().ok_or("options is not an object")?;
    for (key, value) in given {
        let text = value.as_str();
        match (key.as_str(), text) {
            ("owner_group", Some("special")) => options.owner_group = OwnerGroupForm::Special,
            ("owner_group", Some("numeric")) => options.owner_group = OwnerGroupForm::Numeric,
            ("both_ids", Some("user_and_group")) => options.both_ids = BothIdAces::UserAndGroup,
            ("both_ids", Some("group_plus_owner")) => options.both_ids = BothIdAces::GroupPlusOwner,
            ("unmappable_sid", Some("error")) => options.unmappable_sid = UnmappableSid::Error,
            ("unmappable_sid", Some("skip")) => options.unmappable_sid = UnmappableSid::Skip,
            ("file_inherit_flags", Some("keep")) => {
                options.file_inherit_flags = FileInheritFlags::Keep
            }
            ("file_inherit_flags", Some("strip")) => {
                options.file_inherit_flags = FileInheritFlags::Strip
            }
            ("map_full_control", _) => {
                options.map_full_control =
                    value.as_bool().ok_or("map_full_control is not a bool")?
            }
            _ => return Err(format!("unknown option {key}={value}")),
        }
    }
    Ok(options)
}

fn skipped_json(skipped: &[mapping::SkippedAce]) -> Value {
    skipped
        .iter()
        .map(|s| json!({ "acl": s.acl.to_string(), "index": s.index, "who": s.who, "reason": s.reason }))
        .collect()
}

fn sd_to_nfs4(request: &Value) -> Result<Value, String> {
    let sd = security_descriptor(request)?;
    let mapped = mapping::sd_to_nfs4(
        &sd,
        &file_context(request)?,
        &idmap(request)?,
        &options(request)?,
    )
    .map_err(|e| e.to_string())?;
    let dacl = mapped.acls.dacl.as_ref().map(acl_json).transpose()?;
    Ok(json!({
        "owner": mapped.owner,
        "group": mapped.group,
        "dacl": dacl,
        "skipped": skipped_json(&mapped.skipped),
    }))
}

fn nfs4_to_sd(request: &Value) -> Result<Value, String> {
    let acls = Nfs4Acls {
        dacl: Some(acl_from(request)?),
        sacl: None,
    };
    let mapped = mapping::nfs4_to_sd(
        &acls,
        &file_context(request)?,
        &idmap(request)?,
        &options(request)?,
    )
    .map_err(|e| e.to_string())?;
    let sddl = sd::sddl::format(&mapped.sd, None).map_err(|e| e.to_string())?;
    Ok(json!({ "sd": sd_json(&mapped.sd), "sddl": sddl, "skipped": skipped_json(&mapped.skipped) }))
}
