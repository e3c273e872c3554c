//! Big-endian cursor and writer shared by the XDR and NDR codecs.
//!
//! The reader never indexes past the end: every read checks the remaining length and reports
//! the offset where the missing bytes were expected.
use super::error::Nfs4CodecError;
use super::{Nfs4Ace, Nfs4AceType};

pub(crate) struct Reader<'a> {
    format: &'static str,
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(format: &'static str, bytes: &'a [u8]) -> Self {
        Reader {
            format,
            bytes,
            offset: 0,
        }
    }

    pub(crate) fn offset(&self) -> usize {
        self.offset
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }

    /// The unread bytes, without consuming them.
    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.bytes[self.offset..]
    }

    pub(crate) fn error(&self, offset: usize, what: impl Into<String>) -> Nfs4CodecError {
        Nfs4CodecError::malformed(self.format, offset, what)
    }

    pub(crate) fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], Nfs4CodecError> {
        if len > self.remaining() {
            return Err(self.error(
                self.offset,
                format!(
                    "truncated {what}: need {len} bytes, {} left",
                    self.remaining()
                ),
            ));
        }
        let slice = &self.bytes[self.offset..self.offset + len];
        self.offset += len;
        Ok(slice)
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, Nfs4CodecError> {
        Ok(self.take(1, what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &str) -> Result<u16, Nfs4CodecError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, Nfs4CodecError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Skips padding up to the next multiple of 4 and insists it is zero: XDR (RFC 4506
    /// §4.10) and Samba's NDR both write zeros, and anything else would not round-trip.
    pub(crate) fn zero_pad_to_4(&mut self, what: &str) -> Result<(), Nfs4CodecError> {
        let start = self.offset;
        let pad = (4 - start % 4) % 4;
        let bytes = self.take(pad, what)?;
        if let Some(pos) = bytes.iter().position(|b| *b != 0) {
            return Err(self.error(
                start + pos,
                format!("non-zero {what} byte 0x{:02x}", bytes[pos]),
            ));
        }
        Ok(())
    }

    /// Rejects a count that could not fit in the rest of the input, before anything is
    /// allocated for it: `min_item_len` is the smallest encoding of one item.
    pub(crate) fn check_count(
        &self,
        count_offset: usize,
        count: u64,
        min_item_len: usize,
        what: &str,
    ) -> Result<usize, Nfs4CodecError> {
        let fits = self.remaining() as u64 / min_item_len as u64;
        if count > fits {
            return Err(self.error(
                count_offset,
                format!(
                    "{what} count {count} cannot fit in the {} bytes left (at least {min_item_len} each)",
                    self.remaining()
                ),
            ));
        }
        Ok(count as usize)
    }

    pub(crate) fn finish(self) -> Result<(), Nfs4CodecError> {
        if self.remaining() != 0 {
            return Err(self.error(
                self.offset,
                format!("{} trailing bytes after the ACL", self.remaining()),
            ));
        }
        Ok(())
    }
}

pub(crate) fn put_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_be_bytes());
}

pub(crate) fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_be_bytes());
}

pub(crate) fn pad_to_4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

/// Decodes an ACE type code, naming the offset of the field on error.
pub(crate) fn ace_type(
    reader: &Reader<'_>,
    offset: usize,
    code: u32,
) -> Result<Nfs4AceType, Nfs4CodecError> {
    Nfs4AceType::from_code(code).ok_or_else(|| {
        reader.error(
            offset,
            format!("unknown ACE type {code} (0 ALLOW, 1 DENY, 2 AUDIT, 3 ALARM)"),
        )
    })
}

/// The ACE-count check every encoder shares: the count field is `u32` (XDR) or `u16` (NDR).
pub(crate) fn count_field(
    format: &'static str,
    aces: &[Nfs4Ace],
    max: usize,
) -> Result<usize, Nfs4CodecError> {
    if aces.len() > max {
        return Err(Nfs4CodecError::unencodable(
            format,
            format!("{} ACEs exceed the limit of {max}", aces.len()),
        ));
    }
    Ok(aces.len())
}
