//! The plaintext of a sealed blob: a one-byte compression tag, then the payload.
//!
//! Tag 0 = stored as is, tag 1 = one zstd frame. Compression is kept only when it saves space.

use crate::error::{Error, Result};
use std::borrow::Cow;
use std::cell::RefCell;

/// Payload stored uncompressed.
pub const TAG_STORED: u8 = 0;
/// Payload is a zstd frame.
pub const TAG_ZSTD: u8 = 1;
/// Largest raw blob any decoder accepts (guards decompression against bombs).
pub const MAX_RAW_LEN: usize = 1 << 30;

thread_local! {
    // zstd contexts are costly to create (hundreds of KiB); each thread keeps one of each.
    static CCTX: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DCTX: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Compress `raw` at zstd `level` (0 = never). Returns the tag and the payload: the zstd frame
/// when it is smaller, else `raw` itself, stored.
pub fn compress(raw: &[u8], level: i32) -> Result<(u8, Cow<'_, [u8]>)> {
    if level > 0 && raw.len() > 64 {
        let out = CCTX.with(|cell| -> Result<Vec<u8>> {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().map(|(l, _)| *l) != Some(level) {
                let c = zstd::bulk::Compressor::new(level)
                    .map_err(|e| Error::usage(format!("zstd level {level}: {e}")))?;
                *slot = Some((level, c));
            }
            let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(raw.len()));
            if let Some((_, c)) = slot.as_mut() {
                c.compress_to_buffer(raw, &mut out)
                    .map_err(|e| Error::usage(format!("zstd: {e}")))?;
            }
            Ok(out)
        })?;
        if !out.is_empty() && out.len() < raw.len() {
            return Ok((TAG_ZSTD, Cow::Owned(out)));
        }
    }
    Ok((TAG_STORED, Cow::Borrowed(raw)))
}

/// Compress `raw` into `tag || payload`.
pub fn encode(raw: &[u8], level: i32) -> Result<Vec<u8>> {
    let (tag, payload) = compress(raw, level)?;
    let mut out = Vec::with_capacity(payload.len() + 1);
    out.push(tag);
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decode `tag || payload` into the raw bytes, which must be exactly `raw_len` long.
pub fn decode(plain: &[u8], raw_len: usize, what: &dyn std::fmt::Display) -> Result<Vec<u8>> {
    if raw_len > MAX_RAW_LEN {
        return Err(Error::corrupt(format!(
            "{what} is corrupt: raw length {raw_len} too large"
        )));
    }
    let (tag, payload) = plain
        .split_first()
        .ok_or_else(|| Error::corrupt(format!("{what} is corrupt: empty blob")))?;
    let raw = match *tag {
        TAG_STORED => payload.to_vec(),
        TAG_ZSTD => DCTX
            .with(|cell| -> std::io::Result<Vec<u8>> {
                let mut slot = cell.borrow_mut();
                if slot.is_none() {
                    *slot = Some(zstd::bulk::Decompressor::new()?);
                }
                match slot.as_mut() {
                    Some(d) => d.decompress(payload, raw_len),
                    None => Err(std::io::Error::other("no zstd context")),
                }
            })
            .map_err(|e| Error::corrupt(format!("{what} is corrupt: zstd: {e}")))?,
        t => {
            return Err(Error::corrupt(format!(
                "{what} is corrupt: unknown compression tag {t}"
            )));
        }
    };
    if raw.len() != raw_len {
        return Err(Error::corrupt(format!(
            "{what} is corrupt: {} bytes instead of {raw_len}",
            raw.len()
        )));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn round_trip_both_tags() {
        let text = b"abc".repeat(1000);
        let e = encode(&text, 3).unwrap();
        assert_eq!(e[0], TAG_ZSTD);
        assert_eq!(decode(&e, text.len(), &"b").unwrap(), text);
        let noise: Vec<u8> = (0..1000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let e = encode(&noise, 3).unwrap();
        assert_eq!(decode(&e, noise.len(), &"b").unwrap(), noise);
        assert!(decode(&e, noise.len() + 1, &"b").is_err());
        assert!(decode(&[9, 1, 2], 2, &"b").is_err());
        assert!(decode(&[], 0, &"b").is_err());
    }
}
