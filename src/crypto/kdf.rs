//! Password → key-encryption key, with argon2id.
//!
//! The parameters of a key file are read in clear, before anything is authenticated, so every
//! reader bounds them ([`KdfParams::validate`]) before running argon2, and every writer refuses
//! to write a key file outside those bounds ([`KdfParams::validate_new`]): a key that no reader
//! would try can never be written.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Largest argon2 memory any key file may ask for, in KiB (1 GiB).
pub const MAX_MEMORY_KIB: u32 = 1 << 20;
/// Largest number of argon2 passes any key file may ask for.
pub const MAX_ITERATIONS: u32 = 64;
/// Largest number of argon2 lanes any key file may ask for.
pub const MAX_PARALLELISM: u32 = 64;
/// Smallest argon2 memory cairn writes into a new key file, in KiB (1 MiB). Readers accept
/// less (down to argon2's own minimum of 8 KiB per lane): the floor only keeps new keys from
/// being trivially cheap to guess. The defaults are 64 times this.
pub const MIN_NEW_MEMORY_KIB: u32 = 1024;

/// argon2id parameters, stored in clear in each key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 4 lanes: RFC 9106's second recommended option. The lanes are
    /// computed in parallel, so on two cores unlocking costs about half the wall time of
    /// one lane (0.1 s rather than 0.2 s here).
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 4,
        }
    }
}

impl KdfParams {
    /// The bounds every reader accepts (and the only ones argon2 is ever run with):
    /// `1 ≤ parallelism ≤ 64`, `8 × parallelism ≤ memory_kib ≤ 1 GiB`,
    /// `1 ≤ iterations ≤ 64`. A hostile key file can therefore cost at most one 1 GiB
    /// allocation and 64 passes. The error (kind `Usage`) is one line naming the bounds.
    pub fn validate(&self) -> Result<()> {
        let p = self;
        let ok = (1..=MAX_PARALLELISM).contains(&p.parallelism)
            && p.memory_kib >= 8 * p.parallelism
            && p.memory_kib <= MAX_MEMORY_KIB
            && (1..=MAX_ITERATIONS).contains(&p.iterations);
        if ok {
            Ok(())
        } else {
            Err(Error::usage(format!(
                "KDF parameters out of range (memory {} KiB, {} iterations, {} lanes): cairn reads \
                 memory up to {MAX_MEMORY_KIB} KiB (1 GiB) and at least 8 KiB per lane, 1 to \
                 {MAX_ITERATIONS} iterations, 1 to {MAX_PARALLELISM} lanes",
                p.memory_kib, p.iterations, p.parallelism
            )))
        }
    }

    /// [`validate`](Self::validate) plus the floor for newly written keys: memory at least
    /// [`MIN_NEW_MEMORY_KIB`]. Called by every writer before anything is written.
    pub fn validate_new(&self) -> Result<()> {
        self.validate()?;
        if self.memory_kib < MIN_NEW_MEMORY_KIB {
            return Err(Error::usage(format!(
                "KDF memory {} KiB is too low for a new key: at least {MIN_NEW_MEMORY_KIB} KiB \
                 (the default is {} KiB)",
                self.memory_kib,
                KdfParams::default().memory_kib
            )));
        }
        Ok(())
    }

    /// The work argon2 does for these parameters (memory × passes, in KiB-passes): used to try
    /// cheap keys before expensive ones.
    pub fn cost(&self) -> u64 {
        u64::from(self.memory_kib) * u64::from(self.iterations)
    }
}

/// Derive a 256-bit key from `password` and `salt`. Parameters outside
/// [`KdfParams::validate`]'s bounds are refused before argon2 allocates anything.
pub fn derive(password: &[u8], salt: &[u8], p: &KdfParams) -> Result<Zeroizing<[u8; 32]>> {
    p.validate()?;
    let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32))
        .map_err(|e| Error::crypto(format!("unusable KDF parameters: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    a.hash_password_into(password, salt, out.as_mut())
        .map_err(|e| Error::crypto(format!("key derivation failed: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(memory_kib: u32, iterations: u32, parallelism: u32) -> KdfParams {
        KdfParams {
            memory_kib,
            iterations,
            parallelism,
        }
    }

    #[test]
    fn bounds_are_the_documented_ones() {
        assert!(KdfParams::default().validate_new().is_ok());
        assert!(p(1 << 20, 64, 64).validate().is_ok());
        assert!(p(8, 1, 1).validate().is_ok());
        assert!(p(8 * 64, 1, 64).validate().is_ok());
        for bad in [
            p((1 << 20) + 1, 3, 4),
            p(u32::MAX, 3, 4),
            p(65536, 65, 4),
            p(65536, 0, 4),
            p(65536, 3, 0),
            p(65536, 3, 65),
            p(31, 3, 4),
            p(7, 1, 1),
        ] {
            let e = bad.validate().unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::Usage);
            assert!(!e.to_string().contains('\n'));
            assert!(bad.validate_new().is_err());
        }
    }

    #[test]
    fn floor_applies_to_new_keys_only() {
        assert!(p(1023, 1, 4).validate().is_ok());
        assert!(p(1023, 1, 4).validate_new().is_err());
        assert!(p(1024, 1, 4).validate_new().is_ok());
    }

    #[test]
    fn derive_refuses_out_of_bounds_before_argon2() {
        // 4 TiB would abort the process if argon2 tried to allocate it.
        let e = derive(b"pw", &[0; 16], &p(u32::MAX, 1, 1)).unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        assert!(derive(b"pw", &[0; 16], &p(64, 65, 1)).is_err());
        assert!(derive(b"pw", &[0; 16], &p(64, 1, 1)).is_ok());
    }
}
