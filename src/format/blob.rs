//! The plaintext of a sealed blob: a one-byte compression tag, then the payload.
//!
//! Tag 0 = stored as is, tag 1 = one zstd frame. Compression is kept only when it saves space.

use crate::error::{Error, Result};

/// Payload stored uncompressed.
pub const TAG_STORED: u8 = 0;
/// Payload is a zstd frame.
pub const TAG_ZSTD: u8 = 1;
/// Largest raw blob any decoder accepts (guards decompression against bombs).
pub const MAX_RAW_LEN: usize = 1 << 30;

/// Compress `raw` at zstd `level` (0 = never compress) into `tag || payload`.
pub fn encode(raw: &[u8], level: i32) -> Result<Vec<u8>> {
    if level > 0 && raw.len() > 64 {
        let bound = zstd::zstd_safe::compress_bound(raw.len());
        let mut out = Vec::with_capacity(bound + 1);
        out.push(TAG_ZSTD);
        let mut c = zstd::bulk::Compressor::new(level)
            .map_err(|e| Error::usage(format!("zstd level {level}: {e}")))?;
        out.resize(bound + 1, 0);
        let n = c
            .compress_to_buffer(raw, &mut out[1..])
            .map_err(|e| Error::usage(format!("zstd: {e}")))?;
        out.truncate(n + 1);
        if out.len() < raw.len() + 1 {
            return Ok(out);
        }
    }
    let mut out = Vec::with_capacity(raw.len() + 1);
    out.push(TAG_STORED);
    out.extend_from_slice(raw);
    Ok(out)
}

/// Decode `tag || payload` into the raw bytes, which must be exactly `raw_len` long.
pub fn decode(plain: &[u8], raw_len: usize, what: &dyn std::fmt::Display) -> Result<Vec<u8>> {
    if raw_len > MAX_RAW_LEN {
        return Err(Error::corrupt(format!("{what} is corrupt: raw length {raw_len} too large")));
    }
    let (tag, payload) = plain
        .split_first()
        .ok_or_else(|| Error::corrupt(format!("{what} is corrupt: empty blob")))?;
    let raw = match *tag {
        TAG_STORED => payload.to_vec(),
        TAG_ZSTD => zstd::bulk::decompress(payload, raw_len)
            .map_err(|e| Error::corrupt(format!("{what} is corrupt: zstd: {e}")))?,
        t => return Err(Error::corrupt(format!("{what} is corrupt: unknown compression tag {t}"))),
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
        let noise: Vec<u8> = (0..1000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let e = encode(&noise, 3).unwrap();
        assert_eq!(decode(&e, noise.len(), &"b").unwrap(), noise);
        assert!(decode(&e, noise.len() + 1, &"b").is_err());
        assert!(decode(&[9, 1, 2], 2, &"b").is_err());
        assert!(decode(&[], 0, &"b").is_err());
    }
}
