//! Loading trees: the one path from a tree id to a verified [`Tree`], through the cache's
//! plaintext copies and merged ranged reads of tree packs. Repository walks (`ls`, restore,
//! backup's parent), check's prefetch and the mount's reader all come through here.

use super::Repository;
use crate::error::{ErrorKind, Result};
use crate::format::pack::BlobKind;
use crate::format::tree::Tree;
use crate::id::Id;
use crate::index::BlobLocation;

/// How far around a tree that is read its pack's other trees are read with it (bytes).
pub const TREE_PREFETCH: u64 = 16 << 20;

impl Repository {
    /// Read and verify a tree (cache first).
    pub fn load_tree(&self, id: &Id) -> Result<Tree> {
        let what = format!("tree {}", id.short());
        if let Some(t) = self.cached_tree(id)? {
            return Ok(t);
        }
        let plain = self.read_tree_pack(id)?;
        let t = Tree::decode(&plain, &what)?;
        self.cache().put_tree(id, &plain)?;
        Ok(t)
    }

    /// A tree from the cache's plaintext copies, if it is there and decodes.
    pub(crate) fn cached_tree(&self, id: &Id) -> Result<Option<Tree>> {
        let what = format!("tree {}", id.short());
        Ok(self
            .cache()
            .tree(id)?
            .and_then(|plain| Tree::decode(&plain, &what).ok()))
    }

    /// Keep the plaintext of a tree verified by the caller (one this session stored, or read
    /// and checked against its id) for later loads; dropped on a read-only cache.
    pub(crate) fn cache_tree(&self, id: &Id, plain: &[u8]) -> Result<()> {
        self.cache().put_tree(id, plain)
    }

    /// Read the trees `trees` of pack `pack` with merged ranged reads and cache each one that
    /// verifies (decrypted, decompressed, hashed), so the walk that follows finds them in the
    /// cache instead of making a request per tree. A tree that fails here is simply not cached
    /// (a walk reads it again and reports it); only a failure of the store stops this.
    pub fn prefetch_trees(&self, pack: &Id, trees: &mut [(Id, BlobLocation)]) -> Result<()> {
        self.read_trees(pack, trees, None).map(|_| ())
    }

    /// [`Self::prefetch_trees`], handing back the plaintext of `want` (one of `trees`) instead
    /// of caching it.
    fn read_trees(
        &self,
        pack: &Id,
        trees: &mut [(Id, BlobLocation)],
        want: Option<&Id>,
    ) -> Result<Option<Vec<u8>>> {
        trees.sort_by_key(|(_, l)| (l.offset, l.length));
        let mut wanted = None;
        self.read_pack_blobs(
            pack,
            trees,
            |(_, l)| l,
            |(b, l), sealed| {
                match sealed {
                    Ok(s) => {
                        if let Ok(plain) = self.open_blob(b, l, s) {
                            if Some(b) == want {
                                wanted = Some(plain);
                            } else {
                                self.cache().put_tree(b, &plain)?;
                            }
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Backend => return Err(e),
                    Err(_) => {}
                }
                Ok(())
            },
        )?;
        Ok(wanted)
    }

    /// Read tree `id`, and with it the other trees the cache lacks that sit within
    /// [`TREE_PREFETCH`] bytes of it in its pack (merged ranged reads through the one pack
    /// reader, each tree verified before it is cached): the trees of a snapshot sit together in
    /// tree packs, so a walk with a cold cache (a first `ls` or `restore` of a remote
    /// repository) costs about a request per tree pack, not one per tree (restic caches whole
    /// tree packs for the same reason). If that read fails for any reason, the tree is read
    /// alone, so damage next to it never hides it.
    fn read_tree_pack(&self, id: &Id) -> Result<Vec<u8>> {
        let index = self.index()?;
        let loc = index.locate(id)?;
        if loc.kind != BlobKind::Tree {
            return self.read_blob(id);
        }
        let near = |l: &BlobLocation| {
            u64::from(l.offset).abs_diff(u64::from(loc.offset)) <= TREE_PREFETCH / 2
        };
        let mut trees: Vec<(Id, BlobLocation)> = Vec::new();
        for (b, l) in index.blobs_in(&loc.pack).unwrap_or_default() {
            if l.kind == BlobKind::Tree
                && near(&l)
                && (b == *id || matches!(self.cache().tree(&b), Ok(None)))
            {
                trees.push((b, l));
            }
        }
        if trees.len() < 2 || !trees.iter().any(|(b, _)| b == id) {
            return self.read_blob(id);
        }
        match self.read_trees(&loc.pack, &mut trees, Some(id)) {
            Ok(Some(plain)) => Ok(plain),
            _ => self.read_blob(id),
        }
    }
}
