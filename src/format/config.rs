//! The repository config: sealed, one object named `config`.

use crate::error::{Error, Result};
use crate::id::Id;
use serde::{Deserialize, Serialize};

/// Version of [`Config`] written and read by this build. Version 2 goes with key files of
/// version 2, whose chunker key is 256 bits (format.md §14, §15); a version-1 config is refused.
pub const CONFIG_VERSION: u8 = 2;

/// Content-defined chunking parameters (bytes), fixed at `init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// Smallest chunk (except a file's last).
    pub min: u32,
    /// Target average chunk.
    pub avg: u32,
    /// Largest chunk.
    pub max: u32,
}

impl ChunkerParams {
    /// Parameters for a target average: min = avg/2, max = avg*8.
    pub fn for_average(avg: u32) -> Result<Self> {
        let p = ChunkerParams {
            min: avg / 2,
            avg,
            max: avg.saturating_mul(8),
        };
        p.validate()?;
        Ok(p)
    }
    /// Check the bounds FastCDC accepts (all even, 64 B ≤ min ≤ avg ≤ max ≤ 16 MiB).
    pub fn validate(&self) -> Result<()> {
        let ok = self.min >= 64
            && self.min <= self.avg
            && self.avg <= self.max
            && self.avg >= 256
            && self.avg <= 4 << 20
            && self.max <= 16 << 20
            && self.min <= 1 << 20
            && self.max >= 1024
            && self.min % 2 == 0
            && self.avg % 2 == 0
            && self.max % 2 == 0
            && self.avg.is_power_of_two();
        if ok {
            Ok(())
        } else {
            Err(Error::usage(format!(
                "invalid chunker parameters {}/{}/{}: need even sizes, a power-of-two average between 256 B and 2 MiB (max = 8 x average, at most 16 MiB)",
                self.min, self.avg, self.max
            )))
        }
    }
}

impl Default for ChunkerParams {
    /// 512 KiB / 1 MiB / 8 MiB.
    fn default() -> Self {
        ChunkerParams {
            min: 512 << 10,
            avg: 1 << 20,
            max: 8 << 20,
        }
    }
}

/// The repository-wide settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Format version ([`CONFIG_VERSION`]).
    pub version: u8,
    /// Random id naming the repository (and its local cache).
    pub repository_id: Id,
    /// Chunker parameters.
    pub chunker: ChunkerParams,
    /// Target size of a pack in bytes.
    pub pack_size: u32,
    /// zstd level for blobs (0 = no compression).
    pub compression_level: i32,
    /// Creation time, ns since the Unix epoch.
    pub created_ns: i64,
}

impl Config {
    /// Decode and validate a config's plaintext.
    pub fn decode(bytes: &[u8]) -> Result<Config> {
        let c: Config = super::decode_version(bytes, &"config", CONFIG_VERSION)?;
        c.chunker
            .validate()
            .map_err(|e| Error::corrupt(format!("config is corrupt: {e}")))?;
        if !(1 << 20..=1 << 30).contains(&c.pack_size) || !(0..=22).contains(&c.compression_level) {
            return Err(Error::corrupt(
                "config is corrupt: pack size or compression level out of range",
            ));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Config {
        Config {
            version: CONFIG_VERSION,
            repository_id: Id([0xab; 32]),
            chunker: ChunkerParams::default(),
            pack_size: 16 << 20,
            compression_level: 3,
            created_ns: 0,
        }
    }

    #[test]
    fn round_trip_and_old_version_refused_by_name() {
        let c = sample();
        let b = crate::format::encode(&c).unwrap();
        assert_eq!(Config::decode(&b).unwrap(), c);
        let mut old = b.clone();
        old[0] = 1;
        let e = Config::decode(&old).unwrap_err();
        assert_eq!(
            e.to_string(),
            "config has format version 1, this cairn reads version 2"
        );
    }
}
