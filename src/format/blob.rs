//! The plaintext of a sealed blob: a one-byte compression tag, then the payload.
//!
//! Tag 0 = stored as is, tag 1 = exactly one zstd frame. Compression is kept only when it saves
//! space.
//!
//! Decompression is streaming: the output grows with what the frame really produces and stops
//! one byte past the claimed raw length, so a frame claiming more than it holds never makes the
//! reader allocate more than [`AHEAD_CAP`] ahead of real output. zstd's own window buffer is
//! bounded by its default limit (128 MiB, `ZSTD_WINDOWLOG_LIMIT_DEFAULT`), which every frame
//! written at levels 1–22 respects; a frame that needs more is corrupt.

use crate::error::{Error, Result};
use std::borrow::Cow;
use std::cell::RefCell;

/// Payload stored uncompressed.
pub const TAG_STORED: u8 = 0;
/// Payload is a zstd frame.
pub const TAG_ZSTD: u8 = 1;
/// Largest raw blob any decoder accepts (guards decompression against bombs).
pub const MAX_RAW_LEN: usize = 1 << 30;
/// Bytes a sealed blob adds to its payload: the compression tag, the nonce and the AEAD tag.
pub const SEALED_OVERHEAD: usize = 1 + crate::crypto::SEAL_OVERHEAD;
/// The smallest sealed blob (an empty payload): 29 bytes.
pub const MIN_SEALED_LEN: usize = SEALED_OVERHEAD;
/// Most output buffer a decompression reserves before the frame has produced it (8 MiB, the
/// default chunk maximum, so ordinary data blobs decode into one buffer in one pass).
pub const AHEAD_CAP: usize = 8 << 20;
/// The first four bytes of a zstd frame (magic number 0xFD2FB528, little endian).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

thread_local! {
    // zstd contexts are costly to create (hundreds of KiB); each thread keeps one of each.
    static CCTX: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DCTX: RefCell<Option<zstd::zstd_safe::DCtx<'static>>> = const { RefCell::new(None) };
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
        TAG_ZSTD => unzstd(payload, raw_len)
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

/// Decompress exactly one zstd frame that must make at most `raw_len` bytes (the caller checks
/// the exact length). Refused: anything that does not start with the zstd magic (so skippable
/// frames too), a declared content size other than `raw_len`, a truncated frame, output past
/// `raw_len`, and any byte after the frame.
fn unzstd(payload: &[u8], raw_len: usize) -> std::result::Result<Vec<u8>, String> {
    use zstd::zstd_safe::{DCtx, InBuffer, OutBuffer, ResetDirective, get_frame_content_size};
    if !payload.starts_with(&ZSTD_MAGIC) {
        return Err("not a zstd frame".into());
    }
    match get_frame_content_size(payload) {
        Ok(Some(n)) if n != raw_len as u64 => {
            return Err(format!("the frame declares {n} bytes, not {raw_len}"));
        }
        Ok(_) => {}
        Err(_) => return Err("invalid frame header".into()),
    }
    DCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        let dctx = slot.get_or_insert_with(DCtx::create);
        dctx.reset(ResetDirective::SessionOnly)
            .map_err(|c| zstd::zstd_safe::get_error_name(c).to_string())?;
        // Room for one byte more than claimed, so an overlong frame shows itself.
        let limit = raw_len + 1;
        let mut out: Vec<u8> = Vec::with_capacity(limit.min(AHEAD_CAP));
        let mut input = InBuffer::around(payload);
        loop {
            if out.len() == out.capacity() {
                if out.len() >= limit {
                    return Err(format!("more than {raw_len} bytes"));
                }
                let grow = out.capacity().max(1 << 16).min(limit - out.len());
                out.reserve_exact(grow);
            }
            let (before_in, before_out) = (input.pos(), out.len());
            let hint = {
                let mut ob = OutBuffer::around_pos(&mut out, before_out);
                dctx.decompress_stream(&mut ob, &mut input)
                    .map_err(|c| zstd::zstd_safe::get_error_name(c).to_string())?
            };
            if hint == 0 {
                break;
            }
            if input.pos() == before_in && out.len() == before_out {
                return Err("truncated frame".into());
            }
        }
        if out.len() > raw_len {
            return Err(format!("more than {raw_len} bytes"));
        }
        if input.pos() != payload.len() {
            return Err(format!(
                "{} bytes after the frame",
                payload.len() - input.pos()
            ));
        }
        Ok(out)
    })
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

    #[test]
    fn exactly_one_frame_of_exactly_the_claimed_length() {
        let text = b"abcd".repeat(5000);
        let e = encode(&text, 3).unwrap();
        assert_eq!(decode(&e, text.len(), &"b").unwrap(), text);
        // Claims that differ from the frame's declared size, both ways.
        assert!(decode(&e, text.len() - 1, &"b").is_err());
        assert!(decode(&e, text.len() + 1, &"b").is_err());
        // A second frame, trailing junk, a truncated frame, a skippable frame first.
        let mut two = e.clone();
        two.extend_from_slice(&e[1..]);
        assert!(decode(&two, text.len() * 2, &"b").is_err());
        assert!(decode(&two, text.len(), &"b").is_err());
        let mut junk = e.clone();
        junk.push(0);
        assert!(decode(&junk, text.len(), &"b").is_err());
        assert!(decode(&e[..e.len() - 3], text.len(), &"b").is_err());
        let mut skippable = vec![TAG_ZSTD, 0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0];
        skippable.extend_from_slice(&e[1..]);
        assert!(decode(&skippable, text.len(), &"b").is_err());
        // A frame without a declared size is decoded as a stream and still checked.
        let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        enc.include_contentsize(false).unwrap();
        std::io::Write::write_all(&mut enc, &text).unwrap();
        let mut plain = vec![TAG_ZSTD];
        plain.extend_from_slice(&enc.finish().unwrap());
        assert_eq!(decode(&plain, text.len(), &"b").unwrap(), text);
        assert!(decode(&plain, text.len() - 1, &"b").is_err());
        assert!(decode(&plain, text.len() + 1, &"b").is_err());
        // Larger than the up-front reservation: grows with the output.
        let big = vec![5u8; AHEAD_CAP * 2 + 3];
        let e = encode(&big, 1).unwrap();
        assert_eq!(decode(&e, big.len(), &"b").unwrap(), big);
    }
}
