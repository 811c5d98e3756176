//! The blob index's storage in the cache's database: every (blob, pack) location, which index file
//! lists which pack, which packs are marked for deletion, and which index files are superseded.
//!
//! Column families (format.md §17):
//! - `blobs`: blob id → the preferred [`BlobLocation`] (an unmarked pack first, then the lowest
//!   pack id), kept for the one lookup backup and restore make per blob;
//! - `locations`: blob id ‖ pack id → [`Entry`] (13 bytes), every location of every blob, sorted
//!   by blob so all locations of a blob are adjacent;
//! - `pack_blobs`: pack id → the ids of its blobs, concatenated (one value per pack);
//! - `packs`: pack id ‖ index file id → [`PackRow`] (20 bytes), one row per index file listing
//!   the pack; a pack is marked when any of its rows is;
//! - `index_files`: index file id → the ids of the packs it lists, concatenated;
//! - default: `superseded/` ‖ index file id for every index file a merged one supersedes (never
//!   merged again), and `dirty` while an update is under way (a crash in the middle makes the
//!   next open rebuild the index).
//!
//! - default: `generation` (see [`IndexStore::generation`]), `index-schema` (the layout of
//!   these column families; another or no value has the index rebuilt on open) and
//!   `complete/` ‖ snapshot id (the generation at which every blob of the snapshot was known
//!   present).
//!
//! Updates are a write batch of the rows of one index file, then the preferred locations of the
//! blobs whose choice may have changed. Between the two the `dirty` flag is set.

use super::Generation;
use crate::cache::{
    CF_BLOBS, CF_INDEX_FILES, CF_LOCATIONS, CF_PACK_BLOBS, CF_PACKS, Cache, db_err,
};
use crate::error::{Error, ErrorKind, Result};
use crate::format::index::IndexFile;
use crate::format::pack::BlobKind;
use crate::id::Id;
use rocksdb::{DB, Direction, IteratorMode, WriteBatch};
use std::collections::HashMap;

/// Column families that hold the index (cleared together).
const INDEX_CFS: [&str; 5] = [
    CF_BLOBS,
    CF_LOCATIONS,
    CF_PACK_BLOBS,
    CF_PACKS,
    CF_INDEX_FILES,
];

const KEY_DIRTY: &[u8] = b"dirty";
const SUPERSEDED: &[u8] = b"superseded/";
/// Default column family: the index generation (see [`IndexStore::generation`]).
const KEY_GENERATION: &[u8] = b"generation";
/// Default column family: the layout of the index column families (format.md §17). A cache
/// with another (or no) value has its index rebuilt on open.
const KEY_SCHEMA: &[u8] = b"index-schema";
const SCHEMA: u64 = 3;

fn complete_key(snapshot: &Id) -> Vec<u8> {
    let mut k = b"complete/".to_vec();
    k.extend_from_slice(&snapshot.0);
    k
}

/// Where a blob lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// Pack holding it.
    pub pack: Id,
    /// Offset of the sealed blob in the pack.
    pub offset: u32,
    /// Sealed length.
    pub length: u32,
    /// Raw length.
    pub raw_length: u32,
    /// Blob kind.
    pub kind: BlobKind,
    /// The pack is marked for deletion by a prune: do not deduplicate against it.
    pub marked: bool,
}

impl BlobLocation {
    /// Where the pack header (or index) entry `e` of pack `pack` puts its blob.
    pub fn of_entry(pack: Id, e: &crate::format::pack::PackEntry, marked: bool) -> BlobLocation {
        BlobLocation {
            pack,
            offset: e.offset,
            length: e.length,
            raw_length: e.raw_length,
            kind: e.kind,
            marked,
        }
    }

    /// The pack header (or index) entry of blob `id` at this location: the inverse of
    /// [`Self::of_entry`].
    pub fn entry(&self, id: Id) -> crate::format::pack::PackEntry {
        crate::format::pack::PackEntry {
            kind: self.kind,
            id,
            offset: self.offset,
            length: self.length,
            raw_length: self.raw_length,
        }
    }

    fn encode(&self) -> [u8; 46] {
        let mut b = [0u8; 46];
        b[..32].copy_from_slice(&self.pack.0);
        b[32..45].copy_from_slice(&Entry::of(self).encode());
        b[45] = u8::from(self.marked);
        b
    }
    fn decode(v: &[u8]) -> Option<BlobLocation> {
        if v.len() != 46 {
            return None;
        }
        let e = Entry::decode(&v[32..45])?;
        Some(e.at(Id(v[..32].try_into().ok()?), v[45] == 1))
    }
}

/// A location without its pack id and marked flag (the value of `locations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    offset: u32,
    length: u32,
    raw_length: u32,
    kind: BlobKind,
}

impl Entry {
    fn of(l: &BlobLocation) -> Entry {
        Entry {
            offset: l.offset,
            length: l.length,
            raw_length: l.raw_length,
            kind: l.kind,
        }
    }
    fn encode(&self) -> [u8; 13] {
        let mut b = [0u8; 13];
        b[0..4].copy_from_slice(&self.offset.to_le_bytes());
        b[4..8].copy_from_slice(&self.length.to_le_bytes());
        b[8..12].copy_from_slice(&self.raw_length.to_le_bytes());
        b[12] = match self.kind {
            BlobKind::Data => 0,
            BlobKind::Tree => 1,
        };
        b
    }
    fn decode(v: &[u8]) -> Option<Entry> {
        if v.len() != 13 {
            return None;
        }
        let u = |i: usize| v.get(i..i + 4).and_then(|s| s.try_into().ok());
        Some(Entry {
            offset: u32::from_le_bytes(u(0)?),
            length: u32::from_le_bytes(u(4)?),
            raw_length: u32::from_le_bytes(u(8)?),
            kind: if v[12] == 1 {
                BlobKind::Tree
            } else {
                BlobKind::Data
            },
        })
    }
    fn at(self, pack: Id, marked: bool) -> BlobLocation {
        BlobLocation {
            pack,
            offset: self.offset,
            length: self.length,
            raw_length: self.raw_length,
            kind: self.kind,
            marked,
        }
    }
}

/// One index file's statement about a pack (the value of `packs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PackRow {
    size: u64,
    marked_ns: Option<i64>,
    blobs: u32,
}

impl PackRow {
    fn encode(&self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[0..8].copy_from_slice(&self.size.to_le_bytes());
        b[8..16].copy_from_slice(&self.marked_ns.unwrap_or(i64::MIN).to_le_bytes());
        b[16..20].copy_from_slice(&self.blobs.to_le_bytes());
        b
    }
    fn decode(v: &[u8]) -> Option<PackRow> {
        let a: &[u8; 20] = v.try_into().ok()?;
        let m = i64::from_le_bytes(a[8..16].try_into().ok()?);
        Some(PackRow {
            size: u64::from_le_bytes(a[0..8].try_into().ok()?),
            marked_ns: (m != i64::MIN).then_some(m),
            blobs: u32::from_le_bytes(a[16..20].try_into().ok()?),
        })
    }
}

/// What the index knows about one pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackInfo {
    /// The pack's name.
    pub id: Id,
    /// Its size in bytes.
    pub size: u64,
    /// When some index file marks it for deletion: the earliest such time (ns).
    pub marked_ns: Option<i64>,
    /// Number of blobs it holds.
    pub blobs: u32,
    /// The index files that list it.
    pub index_files: Vec<Id>,
}

fn pair(a: &Id, b: &Id) -> [u8; 64] {
    let mut k = [0u8; 64];
    k[..32].copy_from_slice(&a.0);
    k[32..].copy_from_slice(&b.0);
    k
}

fn split(k: &[u8]) -> Option<(Id, Id)> {
    if k.len() != 64 {
        return None;
    }
    Some((Id(k[..32].try_into().ok()?), Id(k[32..].try_into().ok()?)))
}

/// The smallest key above every key that starts with `prefix` (`None`: no such key, all 0xff).
fn next_prefix(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut p = prefix.to_vec();
    while let Some(last) = p.pop() {
        if last < 0xff {
            p.push(last + 1);
            return Some(p);
        }
    }
    None
}

fn superseded_key(file: &Id) -> Vec<u8> {
    let mut k = SUPERSEDED.to_vec();
    k.extend_from_slice(&file.0);
    k
}

/// Fold rows of one pack into its info.
fn fold(id: Id, rows: &[(Id, PackRow)]) -> Option<PackInfo> {
    let first = rows.first()?;
    Some(PackInfo {
        id,
        size: first.1.size,
        marked_ns: rows.iter().filter_map(|(_, r)| r.marked_ns).min(),
        blobs: first.1.blobs,
        index_files: rows.iter().map(|(f, _)| *f).collect(),
    })
}

/// The index's rows in a cache: every query, and the updates a merge of index files makes.
/// Holding one says nothing about whether it matches the repository; [`super::Index`] (from
/// `Repository::index`) does.
#[derive(Clone, Copy)]
pub struct IndexStore<'c> {
    cache: &'c Cache,
}

impl std::fmt::Debug for IndexStore<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IndexStore({:?})", self.cache)
    }
}

impl<'c> IndexStore<'c> {
    /// The index in `cache`, made ready for use: an index left half-updated by a crash, or
    /// written by an earlier layout, is dropped (the next sync merges every index file again).
    /// On a read-only (secondary) cache an index of another layout is an error instead: a
    /// primary open must rebuild it first. (The dirty flag is not checked there: a primary may
    /// be merging right now, and a merge only adds locations before it removes superseded ones,
    /// so lookups stay correct meanwhile.)
    pub fn open(cache: &'c Cache) -> Result<IndexStore<'c>> {
        let s = IndexStore { cache };
        let current = s.get_u64(KEY_SCHEMA)? == Some(SCHEMA);
        if cache.is_secondary() {
            if !current {
                return Err(Error::new(
                    ErrorKind::Io,
                    "the cache's index is of another layout; a primary open must rebuild it first",
                ));
            }
        } else if !current || s.is_dirty()? {
            s.clear_index()?;
            s.db()
                .put(KEY_SCHEMA, SCHEMA.to_le_bytes())
                .map_err(db_err)?;
        }
        Ok(s)
    }

    /// The index in a cache that [`Self::open`] has prepared before.
    pub(crate) fn opened(cache: &'c Cache) -> IndexStore<'c> {
        IndexStore { cache }
    }

    fn db(&self) -> &'c DB {
        self.cache.db()
    }

    fn cf(&self, name: &str) -> Result<&'c rocksdb::ColumnFamily> {
        self.cache.cf(name)
    }

    /// The index generation: it grows whenever the index may have lost a blob (an index file
    /// disappeared, or a pack was marked for deletion). While it stays the same, every blob the
    /// index once confirmed is still in the repository.
    pub fn generation(&self) -> Result<Generation> {
        Ok(Generation(self.get_u64(KEY_GENERATION)?.unwrap_or(0)))
    }

    fn bump_generation(&self, batch: &mut WriteBatch) -> Result<()> {
        batch.put(KEY_GENERATION, (self.generation()?.0 + 1).to_le_bytes());
        Ok(())
    }

    /// A u64le value of the default column family (absent or malformed: `None`).
    fn get_u64(&self, key: &[u8]) -> Result<Option<u64>> {
        Ok(self
            .db()
            .get_pinned(key)
            .map_err(db_err)?
            .and_then(|v| <[u8; 8]>::try_from(&v[..]).ok())
            .map(u64::from_le_bytes))
    }

    /// Remember that every blob `snapshot` references was present at index `generation`
    /// (dropped on a read-only cache).
    pub fn mark_complete(&self, snapshot: &Id, generation: Generation) -> Result<()> {
        if self.cache.is_secondary() {
            return Ok(());
        }
        self.db()
            .put(complete_key(snapshot), generation.0.to_le_bytes())
            .map_err(db_err)
    }

    /// Whether every blob `snapshot` references is known to be present now: it was confirmed
    /// at the current index generation.
    pub fn is_complete(&self, snapshot: &Id) -> Result<bool> {
        Ok(self.get_u64(&complete_key(snapshot))? == Some(self.generation()?.0))
    }

    /// Compact the blob column family into sorted runs (after merging many index files), so
    /// point lookups probe one file per level instead of every L0 file.
    pub fn compact_blobs(&self) -> Result<()> {
        if self.cache.is_secondary() {
            return Ok(());
        }
        self.db()
            .compact_range_cf(self.cf(CF_BLOBS)?, None::<&[u8]>, None::<&[u8]>);
        Ok(())
    }

    /// Iterate the keys and values of `cf` that start with `prefix`, in order.
    fn scan_prefix(
        &self,
        cf: &str,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        // Bounded above by the next prefix: without the bound, a seek for a prefix whose rows
        // were just deleted walks every following tombstone until a live key, which made
        // removing many rows quadratic (design.md §9).
        let mut opts = rocksdb::ReadOptions::default();
        if let Some(upper) = next_prefix(prefix) {
            opts.set_iterate_upper_bound(upper);
        }
        let it = self.db().iterator_cf_opt(
            self.cf(cf)?,
            opts,
            IteratorMode::From(prefix, Direction::Forward),
        );
        for item in it {
            let (k, v) = item.map_err(db_err)?;
            if !k.starts_with(prefix) || !f(&k, &v)? {
                break;
            }
        }
        Ok(())
    }

    /// Where a blob is, if the index knows it: an unmarked location when there is one.
    pub fn blob(&self, id: &Id) -> Result<Option<BlobLocation>> {
        let v = self
            .db()
            .get_pinned_cf(self.cf(CF_BLOBS)?, id.0)
            .map_err(db_err)?;
        Ok(v.and_then(|v| BlobLocation::decode(&v)))
    }

    /// The packs that hold a blob, in id order (one scan; no pack state looked up).
    pub fn location_packs(&self, id: &Id) -> Result<Vec<Id>> {
        let mut out = Vec::new();
        self.scan_prefix(CF_LOCATIONS, &id.0, |k, _| {
            if let Some((_, pack)) = split(k) {
                out.push(pack);
            }
            Ok(true)
        })?;
        Ok(out)
    }

    /// Every location of a blob, unmarked ones first.
    pub fn locations(&self, id: &Id) -> Result<Vec<BlobLocation>> {
        let mut raw = Vec::new();
        self.scan_prefix(CF_LOCATIONS, &id.0, |k, v| {
            if let (Some((_, pack)), Some(e)) = (split(k), Entry::decode(v)) {
                raw.push((pack, e));
            }
            Ok(true)
        })?;
        let mut out = Vec::with_capacity(raw.len());
        for (pack, e) in raw {
            let marked = self.pack(&pack)?.is_some_and(|p| p.marked_ns.is_some());
            out.push(e.at(pack, marked));
        }
        out.sort_by_key(|l| (l.marked, l.pack));
        Ok(out)
    }

    /// What the index knows about a pack.
    pub fn pack(&self, id: &Id) -> Result<Option<PackInfo>> {
        Ok(fold(*id, &self.pack_rows(id)?))
    }

    /// The rows of a pack: one per merged index file that lists it.
    fn pack_rows(&self, id: &Id) -> Result<Vec<(Id, PackRow)>> {
        let mut rows = Vec::new();
        self.scan_prefix(CF_PACKS, &id.0, |k, v| {
            if let (Some((_, file)), Some(r)) = (split(k), PackRow::decode(v)) {
                rows.push((file, r));
            }
            Ok(true)
        })?;
        Ok(rows)
    }

    /// Every pack the index knows, in id order.
    pub fn for_each_pack(&self, mut f: impl FnMut(PackInfo) -> Result<()>) -> Result<()> {
        let mut cur: Option<Id> = None;
        let mut rows: Vec<(Id, PackRow)> = Vec::new();
        for item in self
            .db()
            .iterator_cf(self.cf(CF_PACKS)?, IteratorMode::Start)
        {
            let (k, v) = item.map_err(db_err)?;
            let (Some((pack, file)), Some(r)) = (split(&k), PackRow::decode(&v)) else {
                continue;
            };
            if cur != Some(pack) {
                if let Some(info) = cur.and_then(|c| fold(c, &rows)) {
                    f(info)?;
                }
                rows.clear();
                cur = Some(pack);
            }
            rows.push((file, r));
        }
        if let Some(info) = cur.and_then(|c| fold(c, &rows)) {
            f(info)?;
        }
        Ok(())
    }

    /// The ids of a pack's blobs.
    fn pack_blob_ids(&self, pack: &Id) -> Result<Vec<Id>> {
        let v = self
            .db()
            .get_pinned_cf(self.cf(CF_PACK_BLOBS)?, pack.0)
            .map_err(db_err)?;
        Ok(v.map(|v| {
            v.chunks_exact(32)
                .filter_map(|c| <[u8; 32]>::try_from(c).ok().map(Id))
                .collect()
        })
        .unwrap_or_default())
    }

    /// The blobs of a pack, with their locations in it.
    pub fn blobs_in(&self, pack: &Id) -> Result<Vec<(Id, BlobLocation)>> {
        let marked = self.pack(pack)?.is_some_and(|p| p.marked_ns.is_some());
        let ids = self.pack_blob_ids(pack)?;
        let cf = self.cf(CF_LOCATIONS)?;
        let mut out = Vec::with_capacity(ids.len());
        for blob in ids {
            let v = self
                .db()
                .get_pinned_cf(cf, pair(&blob, pack))
                .map_err(db_err)?;
            if let Some(e) = v.and_then(|v| Entry::decode(&v)) {
                out.push((blob, e.at(*pack, marked)));
            }
        }
        out.sort_by_key(|(_, l)| l.offset);
        Ok(out)
    }

    /// Every (blob, location) of the index, sorted by blob id (all locations of a blob in a
    /// row). The marked flag is not filled in (it is a property of the pack: see
    /// [`Self::pack`]).
    pub fn for_each_location(
        &self,
        mut f: impl FnMut(&Id, BlobLocation) -> Result<()>,
    ) -> Result<()> {
        for item in self
            .db()
            .iterator_cf(self.cf(CF_LOCATIONS)?, IteratorMode::Start)
        {
            let (k, v) = item.map_err(db_err)?;
            if let (Some((blob, pack)), Some(e)) = (split(&k), Entry::decode(&v)) {
                f(&blob, e.at(pack, false))?;
            }
        }
        Ok(())
    }

    /// Index files already merged.
    pub fn known_index_files(&self) -> Result<Vec<Id>> {
        let mut out = Vec::new();
        for item in self
            .db()
            .iterator_cf(self.cf(CF_INDEX_FILES)?, IteratorMode::Start)
        {
            let (k, _) = item.map_err(db_err)?;
            if let Ok(a) = <[u8; 32]>::try_from(&k[..]) {
                out.push(Id(a));
            }
        }
        Ok(out)
    }

    /// Whether a merged index file superseded `file` (it is never merged again).
    pub fn is_superseded(&self, file: &Id) -> Result<bool> {
        Ok(self
            .db()
            .get_pinned(superseded_key(file))
            .map_err(db_err)?
            .is_some())
    }

    /// Whether an update was interrupted (the index must be rebuilt).
    fn is_dirty(&self) -> Result<bool> {
        Ok(self.db().get_pinned(KEY_DIRTY).map_err(db_err)?.is_some())
    }

    fn set_dirty(&self, dirty: bool) -> Result<()> {
        if dirty {
            self.db().put(KEY_DIRTY, [1]).map_err(db_err)
        } else {
            self.db().delete(KEY_DIRTY).map_err(db_err)
        }
    }

    /// Whether the pack is marked according to the rows stored now.
    fn pack_marked(&self, pack: &Id, memo: &mut HashMap<Id, bool>) -> Result<bool> {
        if let Some(&m) = memo.get(pack) {
            return Ok(m);
        }
        let m = self.pack(pack)?.is_some_and(|p| p.marked_ns.is_some());
        memo.insert(*pack, m);
        Ok(m)
    }

    /// The preferred location of a blob from the rows stored now: unmarked first, then the
    /// lowest pack id.
    fn choose(&self, blob: &Id, memo: &mut HashMap<Id, bool>) -> Result<Option<BlobLocation>> {
        let mut raw = Vec::new();
        self.scan_prefix(CF_LOCATIONS, &blob.0, |k, v| {
            if let (Some((_, pack)), Some(e)) = (split(k), Entry::decode(v)) {
                raw.push((pack, e));
            }
            Ok(true)
        })?;
        let mut best: Option<BlobLocation> = None;
        for (pack, e) in raw {
            let l = e.at(pack, self.pack_marked(&pack, memo)?);
            if best.is_none_or(|b| (l.marked, l.pack) < (b.marked, b.pack)) {
                best = Some(l);
            }
        }
        Ok(best)
    }

    /// Write the preferred locations of `blobs` again from the stored rows.
    fn rechoose(&self, blobs: impl IntoIterator<Item = Id>) -> Result<()> {
        let cf = self.cf(CF_BLOBS)?;
        let mut memo = HashMap::new();
        let mut batch = WriteBatch::default();
        for blob in blobs {
            match self.choose(&blob, &mut memo)? {
                Some(l) => batch.put_cf(cf, blob.0, l.encode()),
                None => batch.delete_cf(cf, blob.0),
            }
            if batch.len() >= 65536 {
                self.db()
                    .write(std::mem::take(&mut batch))
                    .map_err(db_err)?;
            }
        }
        self.db().write(batch).map_err(db_err)
    }

    /// Merge index file `file_id`: its packs and every location of their blobs. A pack listed
    /// by another merged file keeps both rows; it is marked when either marks it.
    pub fn add_index_file(&self, file_id: &Id, file: &IndexFile) -> Result<()> {
        self.set_dirty(true)?;
        // Packs whose marked state flips to marked: their blobs' choices are made again.
        let mut flipped = Vec::new();
        let mut batch = WriteBatch::default();
        let (cf_loc, cf_pb, cf_packs) = (
            self.cf(CF_LOCATIONS)?,
            self.cf(CF_PACK_BLOBS)?,
            self.cf(CF_PACKS)?,
        );
        let mut pack_ids = Vec::with_capacity(file.packs.len() * 32);
        let mut fast: Vec<(Id, BlobLocation)> = Vec::new();
        for p in &file.packs {
            let before = self.pack(&p.id)?;
            let marked =
                p.marked_ns.is_some() || before.as_ref().is_some_and(|b| b.marked_ns.is_some());
            if before.as_ref().is_some_and(|b| b.marked_ns.is_none()) && marked {
                flipped.push(p.id);
            }
            pack_ids.extend_from_slice(&p.id.0);
            let row = PackRow {
                size: p.size,
                marked_ns: p.marked_ns,
                blobs: u32::try_from(p.blobs.len()).unwrap_or(u32::MAX),
            };
            batch.put_cf(cf_packs, pair(&p.id, file_id), row.encode());
            let mut ids = Vec::with_capacity(p.blobs.len() * 32);
            for b in &p.blobs {
                ids.extend_from_slice(&b.id.0);
            }
            batch.put_cf(cf_pb, p.id.0, &ids);
            for b in &p.blobs {
                let l = BlobLocation::of_entry(p.id, b, marked);
                batch.put_cf(cf_loc, pair(&b.id, &p.id), Entry::of(&l).encode());
                fast.push((b.id, l));
            }
        }
        batch.put_cf(self.cf(CF_INDEX_FILES)?, file_id.0, &pack_ids);
        if !flipped.is_empty() {
            // Blobs of a newly marked pack no longer count as present.
            self.bump_generation(&mut batch)?;
        }
        self.db().write(batch).map_err(db_err)?;
        // Preferred locations: a blob with no location yet, or only a marked one, takes this
        // one when it is better; anything else keeps its choice (no scan needed).
        let cf_blobs = self.cf(CF_BLOBS)?;
        let mut batch = WriteBatch::default();
        let mut slow = Vec::new();
        // Choices made in this batch and not yet written: a file that lists a blob in two packs
        // must compare the second listing with the first, not with the stored state.
        let mut pending: HashMap<Id, BlobLocation> = HashMap::new();
        for part in fast.chunks(4096) {
            // One batched lookup per chunk: most blobs of a merge are new (bloom-filter misses).
            let current =
                self.db()
                    .batched_multi_get_cf(cf_blobs, part.iter().map(|(b, _)| &b.0[..]), false);
            for ((blob, l), cur) in part.iter().zip(current) {
                let stored = cur.map_err(db_err)?.and_then(|v| BlobLocation::decode(&v));
                let cur = pending.get(blob).copied().or(stored);
                let mut choose = |l: &BlobLocation| {
                    batch.put_cf(cf_blobs, blob.0, l.encode());
                    pending.insert(*blob, *l);
                };
                match cur {
                    None => choose(l),
                    // Its preferred pack became marked: another copy may be better now.
                    Some(cur) if flipped.contains(&cur.pack) => slow.push(*blob),
                    // Already preferred here (the pack is listed again): the same choice.
                    Some(cur) if cur.pack == l.pack => {
                        if cur != *l {
                            choose(l)
                        }
                    }
                    Some(cur) if (l.marked, l.pack) < (cur.marked, cur.pack) => choose(l),
                    Some(_) => {}
                }
            }
        }
        self.db().write(batch).map_err(db_err)?;
        for p in &flipped {
            slow.extend(self.blobs_in(p)?.into_iter().map(|(b, _)| b));
        }
        slow.sort_unstable();
        slow.dedup();
        self.rechoose(slow)?;
        self.set_dirty(false)
    }

    /// Forget what index file `file_id` said (it was superseded or has disappeared): its rows;
    /// a pack no other merged file lists loses its locations. Returns whether any location was
    /// lost or a pack changed state.
    pub fn remove_index_file(&self, file_id: &Id) -> Result<bool> {
        let Some(packs) = self
            .db()
            .get_cf(self.cf(CF_INDEX_FILES)?, file_id.0)
            .map_err(db_err)?
        else {
            return Ok(false);
        };
        self.set_dirty(true)?;
        let (cf_loc, cf_pb, cf_packs) = (
            self.cf(CF_LOCATIONS)?,
            self.cf(CF_PACK_BLOBS)?,
            self.cf(CF_PACKS)?,
        );
        let mut batch = WriteBatch::default();
        // Blobs whose preferred location may change: those of packs that lose their last row
        // (only where that pack was the preferred one) or change marked state.
        let mut affected = Vec::new();
        let mut changed = false;
        let cf_blobs = self.cf(CF_BLOBS)?;
        for chunk in packs.chunks_exact(32) {
            let Ok(a) = <[u8; 32]>::try_from(chunk) else {
                continue;
            };
            let pack = Id(a);
            let rows = self.pack_rows(&pack)?;
            if !rows.iter().any(|(f, _)| f == file_id) {
                continue;
            }
            batch.delete_cf(cf_packs, pair(&pack, file_id));
            let was_marked = rows.iter().any(|(_, r)| r.marked_ns.is_some());
            let others: Vec<&PackRow> = rows
                .iter()
                .filter(|(f, _)| f != file_id)
                .map(|(_, r)| r)
                .collect();
            if others.is_empty() {
                let ids = self.pack_blob_ids(&pack)?;
                for blob in &ids {
                    batch.delete_cf(cf_loc, pair(blob, &pack));
                }
                batch.delete_cf(cf_pb, pack.0);
                changed = true;
                // Only blobs that preferred this pack need a new choice.
                for (blob, cur) in ids.iter().zip(self.db().batched_multi_get_cf(
                    cf_blobs,
                    ids.iter().map(|b| &b.0[..]),
                    false,
                )) {
                    let cur = cur.map_err(db_err)?.and_then(|v| BlobLocation::decode(&v));
                    if cur.is_none_or(|c| c.pack == pack) {
                        affected.push(*blob);
                    }
                }
            } else if was_marked != others.iter().any(|r| r.marked_ns.is_some()) {
                changed = true;
                affected.extend(self.pack_blob_ids(&pack)?);
            }
        }
        batch.delete_cf(self.cf(CF_INDEX_FILES)?, file_id.0);
        if changed {
            self.bump_generation(&mut batch)?;
        }
        self.db().write(batch).map_err(db_err)?;
        affected.sort_unstable();
        affected.dedup();
        self.rechoose(affected)?;
        self.set_dirty(false)?;
        Ok(changed)
    }

    /// Remember that `file` is superseded: it is never merged again, even if it is listed.
    pub fn record_superseded(&self, file: &Id) -> Result<()> {
        self.db().put(superseded_key(file), []).map_err(db_err)
    }

    /// Forget every blob, pack and index file (a rebuild follows). Superseded files stay
    /// remembered.
    pub fn clear_index(&self) -> Result<()> {
        // The generation moves first: a crash between the writes must not leave the cache
        // rebuilt under the old generation.
        let mut batch = WriteBatch::default();
        self.bump_generation(&mut batch)?;
        self.db().write(batch).map_err(db_err)?;
        for name in INDEX_CFS {
            let cf = self.cf(name)?;
            self.db()
                .delete_range_cf(cf, &[][..] as &[u8], &[0xffu8; 65][..])
                .map_err(db_err)?;
        }
        self.set_dirty(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::index::IndexPack;
    use crate::format::pack::PackEntry;

    fn entry(blob: &Id, offset: u32) -> PackEntry {
        PackEntry {
            kind: BlobKind::Data,
            id: *blob,
            offset,
            length: 100,
            raw_length: 90,
        }
    }

    fn file(packs: Vec<(Id, Option<i64>, Vec<Id>)>) -> IndexFile {
        IndexFile {
            version: 1,
            supersedes: vec![],
            packs: packs
                .into_iter()
                .map(|(id, marked_ns, blobs)| IndexPack {
                    id,
                    size: 10_000,
                    marked_ns,
                    blobs: blobs
                        .iter()
                        .enumerate()
                        .map(|(i, b)| entry(b, i as u32 * 100))
                        .collect(),
                })
                .collect(),
        }
    }

    fn id(s: &str) -> Id {
        Id::of_stored(s.as_bytes())
    }

    #[test]
    fn one_file_listing_a_blob_twice_prefers_the_lowest_unmarked_pack() {
        // Both orders of the two listings, and both marked states, in one file each.
        let (x, lo, hi) = (id("x"), Id([1; 32]), Id([2; 32]));
        let cases = [
            (vec![(lo, None), (hi, None)], lo),
            (vec![(hi, None), (lo, None)], lo),
            (vec![(lo, Some(5)), (hi, None)], hi),
            (vec![(hi, None), (lo, Some(5))], hi),
        ];
        for (packs, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            let cache = Cache::open(dir.path(), &id("repo")).unwrap();
            let c = IndexStore::open(&cache).unwrap();
            let f = file(packs.iter().map(|&(p, m)| (p, m, vec![x])).collect());
            c.add_index_file(&id("f"), &f).unwrap();
            assert_eq!(c.blob(&x).unwrap().unwrap().pack, want, "{packs:?}");
            assert_eq!(c.locations(&x).unwrap()[0].pack, want);
        }
    }

    #[test]
    fn next_prefix_bounds_every_key_with_the_prefix() {
        assert_eq!(next_prefix(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(next_prefix(&[1, 0xff]), Some(vec![2]));
        assert_eq!(next_prefix(&[0xff, 0xff]), None);
        assert_eq!(next_prefix(&[]), None);
    }

    #[test]
    fn several_locations_per_blob_unmarked_preferred() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), &id("repo")).unwrap();
        let c = IndexStore::open(&cache).unwrap();
        let (a, b, x) = (id("a"), id("b"), id("x"));
        let (p1, p2) = (id("p1"), id("p2"));
        let (f1, f2, f3) = (id("f1"), id("f2"), id("f3"));
        c.add_index_file(&f1, &file(vec![(p1, None, vec![a, x])]))
            .unwrap();
        c.add_index_file(&f2, &file(vec![(p2, None, vec![b, x])]))
            .unwrap();
        assert_eq!(c.locations(&x).unwrap().len(), 2);
        let g0 = c.generation().unwrap();
        // A third file marks p1: x moves to p2, a stays in marked p1.
        c.add_index_file(&f3, &file(vec![(p1, Some(5), vec![a, x])]))
            .unwrap();
        assert!(c.generation().unwrap() > g0);
        assert_eq!(c.blob(&x).unwrap().unwrap().pack, p2);
        assert!(!c.blob(&x).unwrap().unwrap().marked);
        assert!(c.blob(&a).unwrap().unwrap().marked);
        let info = c.pack(&p1).unwrap().unwrap();
        assert_eq!(info.marked_ns, Some(5));
        assert_eq!(info.index_files.len(), 2);
        assert_eq!(c.blobs_in(&p1).unwrap().len(), 2);
        // f1 and f3 go (superseded): p1 and its locations are gone; x stays in p2.
        c.remove_index_file(&f1).unwrap();
        assert!(c.blob(&a).unwrap().unwrap().marked);
        c.remove_index_file(&f3).unwrap();
        assert_eq!(c.blob(&a).unwrap(), None);
        assert_eq!(c.pack(&p1).unwrap(), None);
        assert_eq!(c.locations(&x).unwrap().len(), 1);
        assert_eq!(c.blob(&x).unwrap().unwrap().pack, p2);
        let mut packs = Vec::new();
        c.for_each_pack(|p| {
            packs.push(p.id);
            Ok(())
        })
        .unwrap();
        assert_eq!(packs, vec![p2]);
        let mut n = 0;
        c.for_each_location(|_, _| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 2);
        assert!(!c.is_dirty().unwrap());
        c.record_superseded(&f1).unwrap();
        assert!(c.is_superseded(&f1).unwrap());
        c.clear_index().unwrap();
        assert!(c.is_superseded(&f1).unwrap());
        assert_eq!(c.blob(&x).unwrap(), None);
    }

    #[test]
    fn locations_round_trip_and_survive_reopen() {
        use crate::format::index::{IndexFile, IndexPack};
        use crate::format::pack::{BlobKind, PackEntry};
        let dir = tempfile::tempdir().unwrap();
        let repo = Id::of_stored(b"repo");
        let loc = BlobLocation {
            pack: Id::of_stored(b"p"),
            offset: 7,
            length: 100,
            raw_length: 90,
            kind: BlobKind::Tree,
            marked: false,
        };
        let blob = Id::of_stored(b"b");
        let file = IndexFile {
            version: 1,
            supersedes: vec![],
            packs: vec![IndexPack {
                id: loc.pack,
                size: 1000,
                marked_ns: None,
                blobs: vec![PackEntry {
                    kind: BlobKind::Tree,
                    id: blob,
                    offset: 7,
                    length: 100,
                    raw_length: 90,
                }],
            }],
        };
        {
            let cache = Cache::open(dir.path(), &repo).unwrap();
            let c = IndexStore::open(&cache).unwrap();
            assert_eq!(c.blob(&blob).unwrap(), None);
            c.add_index_file(&Id::of_stored(b"i"), &file).unwrap();
            assert_eq!(c.blob(&blob).unwrap(), Some(loc));
        }
        let cache = Cache::open(dir.path(), &repo).unwrap();
        let c = IndexStore::open(&cache).unwrap();
        assert_eq!(c.blob(&blob).unwrap(), Some(loc));
        assert_eq!(c.known_index_files().unwrap(), vec![Id::of_stored(b"i")]);
        c.clear_index().unwrap();
        assert_eq!(c.blob(&blob).unwrap(), None);
        assert!(c.known_index_files().unwrap().is_empty());
        // An index left dirty by a crash is dropped on the next open.
        c.add_index_file(&Id::of_stored(b"i"), &file).unwrap();
        c.db().put(b"dirty", [1]).unwrap();
        drop(cache);
        let cache = Cache::open(dir.path(), &repo).unwrap();
        let c = IndexStore::open(&cache).unwrap();
        assert_eq!(c.blob(&blob).unwrap(), None);
    }
}
