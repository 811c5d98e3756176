//! `dump`: a file of a snapshot as its bytes, or a folder as a tar stream (POSIX pax: raw-byte
//! names of any length, nanosecond times, owners by id and name, symlinks, hard links, fifos,
//! devices, extended attributes as `SCHILY.xattr.*`) or a zip stream (deflate; modes, mtimes to
//! two seconds, symlinks; names as UTF-8 with invalid bytes replaced, hard links as copies, no
//! owners, xattrs or special files: zip has no place for them), written in walk order with
//! bounded memory.
//!
//! Content is read a window of blobs at a time, in parallel, and written in order, so memory is
//! at most a window of blobs whatever the size of the folder.

use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind};
use crate::id::Id;
use crate::repo::Repository;
use crate::snapshot::walk::{Step, TreeWalk};
use rayon::prelude::*;
use std::collections::HashMap;
use std::io::Write;

/// Blobs fetched at once while streaming a file's content.
const WINDOW: usize = 8;

/// What a dump wrote.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DumpSummary {
    /// Entries written (folders, files, links, …).
    pub entries: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

fn io_err(e: std::io::Error) -> Error {
    Error::io("cannot write the dump", e)
}

/// Write the content of file node `n` to `out`, a window of blobs at a time: the window's
/// blobs are grouped by pack and read through the one pack reader (neighbours in one ranged
/// read), packs in parallel, then written in order.
pub fn write_content(repo: &Repository, n: &Node, out: &mut dyn Write) -> Result<u64> {
    let mut written = 0u64;
    for window in n.content.chunks(WINDOW) {
        // Slot i of the window ← the blob read for it (a blob used twice is read once).
        let mut by_pack: HashMap<Id, Vec<(Id, crate::cache::BlobLocation)>> = HashMap::new();
        for id in window {
            let loc = repo.locate(id)?;
            let group = by_pack.entry(loc.pack).or_default();
            if !group.iter().any(|(b, _)| b == id) {
                group.push((*id, loc));
            }
        }
        let read: Vec<Vec<(Id, Vec<u8>)>> = by_pack
            .into_par_iter()
            .map(|(pack, mut blobs)| {
                blobs.sort_by_key(|(_, l)| (l.offset, l.length));
                let mut got = Vec::with_capacity(blobs.len());
                repo.read_pack_blobs(
                    &pack,
                    &blobs,
                    |(_, l)| l,
                    |(id, l), sealed| {
                        got.push((*id, repo.open_blob(id, l, sealed?)?));
                        Ok(())
                    },
                )?;
                Ok(got)
            })
            .collect::<Result<_>>()?;
        let raw: HashMap<Id, Vec<u8>> = read.into_iter().flatten().collect();
        for id in window {
            let b = raw
                .get(id)
                .ok_or_else(|| Error::not_found(format!("blob {} was not read", id.short())))?;
            out.write_all(b).map_err(io_err)?;
            written += b.len() as u64;
        }
    }
    Ok(written)
}

/// One pax record: `"<len> key=value\n"`, where len counts the whole record.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn time_value(ns: i64) -> String {
    let a = ns.unsigned_abs();
    let sign = if ns < 0 { "-" } else { "" };
    format!("{sign}{}.{:09}", a / 1_000_000_000, a % 1_000_000_000)
}

/// Streams a folder of a snapshot as a tar archive.
struct TarWriter<'w> {
    out: tar::Builder<&'w mut dyn Write>,
    /// (device, inode) of multiply linked files → the archive path of their first link.
    links: HashMap<(u64, u64), Vec<u8>>,
    summary: DumpSummary,
}

impl TarWriter<'_> {
    /// Write `n` at archive path `path` (no leading `/`), with its content for a regular file
    /// that is not a hard link to an earlier entry.
    fn entry(&mut self, repo: &Repository, path: &[u8], n: &Node) -> Result<()> {
        use tar::EntryType;
        let mut pax = Vec::new();
        let mut hdr = tar::Header::new_ustar();
        let mut name = path.to_vec();
        let (ty, size) = match n.kind {
            NodeKind::Dir => {
                name.push(b'/');
                (EntryType::Directory, 0)
            }
            NodeKind::File => {
                let key = (n.device, n.inode);
                if n.nlink > 1 && n.inode != 0 {
                    if let Some(first) = self.links.get(&key) {
                        pax_record(&mut pax, b"linkpath", first);
                        (EntryType::Link, 0)
                    } else {
                        self.links.insert(key, path.to_vec());
                        (EntryType::Regular, n.size)
                    }
                } else {
                    (EntryType::Regular, n.size)
                }
            }
            NodeKind::Symlink => {
                pax_record(&mut pax, b"linkpath", &n.link_target);
                (EntryType::Symlink, 0)
            }
            NodeKind::Fifo => (EntryType::Fifo, 0),
            NodeKind::CharDevice => (EntryType::Char, 0),
            NodeKind::BlockDevice => (EntryType::Block, 0),
            NodeKind::Socket => return Ok(()),
        };
        pax_record(&mut pax, b"path", &name);
        pax_record(&mut pax, b"mtime", time_value(n.mtime_ns).as_bytes());
        if n.atime_ns != crate::format::tree::ATIME_NOT_RECORDED {
            pax_record(&mut pax, b"atime", time_value(n.atime_ns).as_bytes());
        }
        pax_record(&mut pax, b"uid", n.uid.to_string().as_bytes());
        pax_record(&mut pax, b"gid", n.gid.to_string().as_bytes());
        if !n.user.is_empty() {
            pax_record(&mut pax, b"uname", n.user.as_bytes());
        }
        if !n.group.is_empty() {
            pax_record(&mut pax, b"gname", n.group.as_bytes());
        }
        if ty == EntryType::Regular {
            pax_record(&mut pax, b"size", size.to_string().as_bytes());
        }
        for x in &n.xattrs {
            let mut k = b"SCHILY.xattr.".to_vec();
            k.extend_from_slice(&x.name);
            pax_record(&mut pax, &k, &x.value);
        }
        // The pax header first (it describes the next entry), then the entry itself with the
        // same facts where ustar can hold them.
        let mut ph = tar::Header::new_ustar();
        ph.set_entry_type(EntryType::XHeader);
        ph.set_path("PaxHeaders/entry").map_err(io_err)?;
        ph.set_size(pax.len() as u64);
        ph.set_mode(0o644);
        ph.set_cksum();
        self.out.append(&ph, pax.as_slice()).map_err(io_err)?;

        hdr.set_entry_type(ty);
        let short: &[u8] = if name.len() <= 100 && std::str::from_utf8(&name).is_ok() {
            &name
        } else {
            b"cairn-long-name"
        };
        hdr.set_path(std::str::from_utf8(short).unwrap_or("cairn-long-name"))
            .or_else(|_| hdr.set_path("cairn-long-name"))
            .map_err(io_err)?;
        hdr.set_mode(n.mode & 0o7777);
        hdr.set_uid(u64::from(n.uid));
        hdr.set_gid(u64::from(n.gid));
        hdr.set_mtime(n.mtime_ns.div_euclid(1_000_000_000).max(0) as u64);
        hdr.set_size(size);
        if matches!(ty, EntryType::Char | EntryType::Block) {
            let (major, minor) = (libc::major(n.rdev), libc::minor(n.rdev));
            hdr.set_device_major(major).map_err(io_err)?;
            hdr.set_device_minor(minor).map_err(io_err)?;
        }
        hdr.set_cksum();
        self.summary.entries += 1;
        if ty == EntryType::Regular {
            // Content straight from the repository into the archive; a short or long content
            // list is padded or cut to the size the header promised, so the archive stays valid.
            let mut body = Vec::new();
            if size <= (WINDOW as u64) << 20 {
                write_content(repo, n, &mut body)?;
                body.resize(size as usize, 0);
                self.out.append(&hdr, body.as_slice()).map_err(io_err)?;
            } else {
                let out = self.out.get_mut();
                out.write_all(hdr.as_bytes()).map_err(io_err)?;
                let mut limited = Limited {
                    out: &mut **out,
                    left: size,
                };
                write_content(repo, n, &mut limited)?;
                let pad = limited.left;
                let zeros = [0u8; 8192];
                let mut left = pad;
                while left > 0 {
                    let k = left.min(zeros.len() as u64) as usize;
                    out.write_all(&zeros[..k]).map_err(io_err)?;
                    left -= k as u64;
                }
                let rem = (size % 512) as usize;
                if rem != 0 {
                    out.write_all(&zeros[..512 - rem]).map_err(io_err)?;
                }
            }
            self.summary.bytes += size;
        } else {
            self.out.append(&hdr, std::io::empty()).map_err(io_err)?;
        }
        Ok(())
    }
}

/// A writer that passes on at most `left` bytes and drops the rest.
struct Limited<'a> {
    out: &'a mut dyn Write,
    left: u64,
}

impl Write for Limited<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = (buf.len() as u64).min(self.left) as usize;
        self.out.write_all(&buf[..k])?;
        self.left -= k as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Write folder (or file) `node`, found at snapshot path `spath`, as a tar archive to `out`.
/// Entry names are snapshot paths without the leading `/`, as `restore` lays them out below
/// its target.
pub fn tar(
    repo: &Repository,
    node: &Node,
    spath: &[u8],
    out: &mut dyn Write,
) -> Result<DumpSummary> {
    let mut w = TarWriter {
        out: tar::Builder::new(out),
        links: HashMap::new(),
        summary: DumpSummary::default(),
    };
    let rel = |p: &[u8]| -> Vec<u8> {
        let mut v = p.to_vec();
        while v.first() == Some(&b'/') {
            v.remove(0);
        }
        v
    };
    let top = rel(spath);
    if !top.is_empty() {
        w.entry(repo, &top, node)?;
    }
    if let (NodeKind::Dir, Some(tree)) = (node.kind, node.subtree) {
        let mut walk = TreeWalk::new(repo, &tree, spath)?;
        while let Some(step) = walk.next_step() {
            if let Step::Node(n) = step {
                let p = rel(&walk.child_path(&n.name));
                w.entry(repo, &p, &n)?;
                if n.kind == NodeKind::Dir {
                    walk.enter(&n)?;
                }
            }
        }
    }
    w.out.finish().map_err(io_err)?;
    Ok(w.summary)
}

/// Write folder (or file) `node`, found at snapshot path `spath`, as a zip archive to `out`
/// (streamed: no seeking, so sizes go into data descriptors). Names as in [`tar`].
pub fn zip(
    repo: &Repository,
    node: &Node,
    spath: &[u8],
    out: &mut dyn Write,
) -> Result<DumpSummary> {
    use zip::write::SimpleFileOptions;
    let zerr =
        |e: zip::result::ZipError| Error::io("cannot write the dump", std::io::Error::other(e));
    let mut z = zip::ZipWriter::new_stream(out);
    let mut summary = DumpSummary::default();
    let mut one = |z: &mut zip::ZipWriter<_>, path: &[u8], n: &Node| -> Result<()> {
        let name = String::from_utf8_lossy(path).into_owned();
        let secs = n.mtime_ns.div_euclid(1_000_000_000);
        let when = chrono::DateTime::from_timestamp(secs, 0)
            .map(|t| t.with_timezone(&chrono::Local).naive_local())
            .and_then(|t| {
                use chrono::{Datelike, Timelike};
                zip::DateTime::from_date_and_time(
                    u16::try_from(t.year()).ok()?,
                    t.month() as u8,
                    t.day() as u8,
                    t.hour() as u8,
                    t.minute() as u8,
                    t.second() as u8,
                )
                .ok()
            })
            .unwrap_or_default();
        let opts = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(n.mode & 0o7777)
            .last_modified_time(when)
            .large_file(n.size >= u64::from(u32::MAX));
        match n.kind {
            NodeKind::Dir => z.add_directory(format!("{name}/"), opts).map_err(zerr)?,
            NodeKind::File => {
                z.start_file(name, opts).map_err(zerr)?;
                summary.bytes += write_content(repo, n, z)?;
            }
            NodeKind::Symlink => z
                .add_symlink(name, String::from_utf8_lossy(&n.link_target), opts)
                .map_err(zerr)?,
            _ => return Ok(()),
        }
        summary.entries += 1;
        Ok(())
    };
    let rel = |p: &[u8]| -> Vec<u8> { p.iter().skip_while(|&&b| b == b'/').copied().collect() };
    let top = rel(spath);
    if !top.is_empty() {
        one(&mut z, &top, node)?;
    }
    if let (NodeKind::Dir, Some(tree)) = (node.kind, node.subtree) {
        let mut walk = TreeWalk::new(repo, &tree, spath)?;
        while let Some(step) = walk.next_step() {
            if let Step::Node(n) = step {
                one(&mut z, &rel(&walk.child_path(&n.name)), &n)?;
                if n.kind == NodeKind::Dir {
                    walk.enter(&n)?;
                }
            }
        }
    }
    z.finish().map_err(zerr)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        for (k, v) in [
            ("path", "a"),
            ("path", &"x".repeat(95)[..]),
            ("mtime", "1.5"),
        ] {
            let mut out = Vec::new();
            pax_record(&mut out, k.as_bytes(), v.as_bytes());
            let s = String::from_utf8(out.clone()).unwrap();
            let (n, _) = s.split_once(' ').unwrap();
            assert_eq!(n.parse::<usize>().unwrap(), out.len(), "{s:?}");
        }
        assert_eq!(
            time_value(1_400_000_000_000_000_007),
            "1400000000.000000007"
        );
        assert_eq!(time_value(-1), "-0.000000001");
    }
}
