//! Backing up a stream (stdin, or a command's output such as `pg_dump`) as a snapshot holding
//! one file. A command that exits non-zero produces no snapshot.

use super::{BackupOptions, BackupOutcome};
use crate::error::{Error, Result};
use crate::format::VERSION;
use crate::format::pack::BlobKind;
use crate::format::snapshot::Summary;
use crate::format::tree::{Node, NodeKind, Tree, is_valid_name};
use crate::progress::{Observer, Progress};
use crate::repo::Repository;
use crate::repo::keys::{current_user, now_ns};
use crate::repo::writer::{BlobWriter, WriterOptions};
use std::io::Read;
use std::sync::Arc;

/// Back up everything `reader` yields as the file `name`. `finish_source` runs after the
/// stream ends and before the snapshot is written; an error from it aborts without a snapshot.
pub fn backup_stream(
    repo: &Arc<Repository>,
    reader: impl Read,
    name: &str,
    opts: &BackupOptions,
    observer: &dyn Observer,
    finish_source: &mut dyn FnMut() -> Result<()>,
) -> Result<BackupOutcome> {
    let _shown = observer.show("backup");
    stream(repo, reader, name, opts, observer.counters(), finish_source)
}

/// [`backup_stream`] with the display already started.
fn stream(
    repo: &Arc<Repository>,
    reader: impl Read,
    name: &str,
    opts: &BackupOptions,
    progress: &Progress,
    finish_source: &mut dyn FnMut() -> Result<()>,
) -> Result<BackupOutcome> {
    if !is_valid_name(name.as_bytes()) {
        return Err(Error::usage(format!(
            "invalid --stdin-name {name:?}: one file name, no '/'"
        )));
    }
    let started = now_ns();
    let writer = BlobWriter::new(
        repo.clone(),
        WriterOptions {
            threads: opts.threads,
            dry_run: opts.dry_run,
        },
    )?;
    let mut content = Vec::new();
    let mut size = 0u64;
    for chunk in repo.chunker().stream(reader) {
        let chunk = chunk.map_err(|e| Error::io("cannot read the input stream", e))?;
        size += chunk.len() as u64;
        progress.add_bytes(chunk.len() as u64);
        content.push(writer.add(BlobKind::Data, chunk)?.0);
    }
    let mut node = Node::new(name.as_bytes().to_vec(), NodeKind::File);
    node.mode = 0o100600;
    node.uid = crate::sys::user::uid();
    node.gid = crate::sys::user::gid();
    node.user = current_user();
    node.mtime_ns = opts.time_ns.unwrap_or(started);
    node.ctime_ns = node.mtime_ns;
    node.size = size;
    node.nlink = 1;
    node.content = content;
    let tree = Tree {
        version: VERSION,
        nodes: vec![node],
    };
    let (tree_id, _) = writer.add(BlobKind::Tree, bytes::Bytes::from(tree.encode()?))?;
    let finished = finish_source();
    let added = writer.finish()?;
    finished?;
    let summary = Summary {
        files_new: 1,
        bytes_read: size,
        bytes_total: size,
        blobs_added: added.blobs,
        bytes_added_raw: added.bytes_raw,
        bytes_added_stored: added.bytes_stored,
        started_ns: started,
        finished_ns: now_ns(),
        ..Default::default()
    };
    super::commit_snapshot(
        repo,
        opts,
        vec![format!("/{name}").into_bytes()],
        super::BackupOutcome {
            snapshot: None,
            parent: None,
            tree: tree_id,
            summary,
            added,
        },
        None,
    )
}

/// Environment variables that hold a password or say where to get one. A command whose
/// output is backed up (`pg_dump`, a script) has no business with the repository's password:
/// these are removed from its environment.
const SECRET_VARS: &[&str] = &[
    "CAIRN_PASSWORD",
    "CAIRN_PASSWORD_FILE",
    "CAIRN_PASSWORD_COMMAND",
    "CAIRN_NEW_PASSWORD",
    "CAIRN_NEW_PASSWORD_FILE",
    "CAIRN_NEW_PASSWORD_COMMAND",
    "CAIRN_FROM_PASSWORD",
    "CAIRN_FROM_PASSWORD_FILE",
    "CAIRN_FROM_PASSWORD_COMMAND",
];

/// The names among `present` (and the fixed list) to remove from a child's environment: the
/// fixed list, and any other name starting with one of the password prefixes (a variant added
/// later is covered too).
pub fn secret_vars(present: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    const PREFIXES: &[&[u8]] = &[
        b"CAIRN_PASSWORD",
        b"CAIRN_NEW_PASSWORD",
        b"CAIRN_FROM_PASSWORD",
    ];
    use std::os::unix::ffi::OsStrExt;
    let mut out: Vec<std::ffi::OsString> = SECRET_VARS.iter().map(|v| (*v).into()).collect();
    for k in present {
        if PREFIXES.iter().any(|p| k.as_bytes().starts_with(p)) && !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

/// Run `argv` and back up its standard output as `name`; fails (no snapshot) when it exits
/// non-zero or cannot be started.
pub fn backup_command(
    repo: &Arc<Repository>,
    argv: &[String],
    name: &str,
    opts: &BackupOptions,
    observer: &dyn Observer,
) -> Result<BackupOutcome> {
    let _shown = observer.show("backup");
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| Error::usage("--stdin-from-command needs a command after --"))?;
    let mut cmd = std::process::Command::new(prog);
    for v in secret_vars(std::env::vars_os().map(|(k, _)| k)) {
        cmd.env_remove(v);
    }
    let mut child = cmd
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("cannot run {prog}"), e))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::usage("no stdout from the command"))?;
    let mut finish = || -> Result<()> {
        let status = child
            .wait()
            .map_err(|e| Error::io(format!("cannot wait for {prog}"), e))?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::usage(format!(
                "{prog} failed ({status}); no snapshot written"
            )))
        }
    };
    stream(repo, stdout, name, opts, observer.counters(), &mut finish)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_variables_are_all_named() {
        let present = [
            "PATH",
            "CAIRN_PASSWORD_X",
            "CAIRN_REPOSITORY",
            "CAIRN_FROM_PASSWORD2",
        ];
        let v = secret_vars(present.iter().map(|s| (*s).into()));
        for want in SECRET_VARS
            .iter()
            .chain(&["CAIRN_PASSWORD_X", "CAIRN_FROM_PASSWORD2"])
        {
            assert!(v.iter().any(|k| k == want), "{want} not removed");
        }
        assert!(!v.iter().any(|k| k == "PATH" || k == "CAIRN_REPOSITORY"));
    }
}
