//! `copy` between repositories that share ids (CP1): a blob a source key holder sealed with
//! content that does not match its id is refused, not carried into the destination, where the
//! destination's own backups would deduplicate against it and never store the real chunk.

use crate::util::*;
use bytes::Bytes;
use cairn::format::VERSION;
use cairn::format::pack::BlobKind;
use cairn::format::tree::{Node, NodeKind, Tree};

/// In `env`'s repository, store `evil` under the id of `real` (one data blob), a tree with a
/// file `f` of that content, and a snapshot of it: what another holder of the source's keys
/// can write.
fn plant(env: &Env, real: &[u8], evil: &[u8]) {
    craft_snapshot(env, "planted", 1_700_000_000_000_000_000, |repo, w| {
        let id = repo.blob_id(real);
        assert!(
            w.add_with_id(BlobKind::Data, id, Bytes::copy_from_slice(evil))
                .unwrap()
        );
        let mut file = Node::new(b"f".to_vec(), NodeKind::File);
        file.mode = 0o100644;
        file.size = evil.len() as u64;
        file.content = vec![id];
        let tree = Tree {
            version: VERSION,
            nodes: vec![file],
        };
        w.add(BlobKind::Tree, Bytes::from(tree.encode().unwrap()))
            .unwrap()
            .0
    })
}

#[test]
fn copy_with_shared_ids_refuses_a_blob_that_does_not_match_its_id() {
    let from = Env::new();
    let real = b"the real content of a chunk that many machines back up\n".repeat(20);
    let mut evil = real.clone();
    evil[..8].copy_from_slice(b"PLANTED!");
    plant(&from, &real, &evil);

    let to = Env::uninit();
    let from_vars = |c: &mut std::process::Command| {
        c.env("CAIRN_FROM_REPOSITORY", &from.repo)
            .env("CAIRN_FROM_PASSWORD", &from.password);
    };
    let o = to.cairn_with(&["init", "--copy-chunker-params"], from_vars);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let o = to.cairn_with(&["copy"], from_vars);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("does not match its id"),
        "the error says why\n{}",
        describe(&o)
    );
    assert!(to.snapshots().is_empty(), "no snapshot was copied");

    // The destination's own backup of the real content stores the real chunk: it restores,
    // and check --read-data is clean.
    let src = to.path("src");
    write(&src.join("f"), &real);
    to.backup(&[src.to_str().unwrap()]);
    to.ok(&["check", "--read-data"]);
    let target = to.path("t");
    to.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(restored(&target, &src).join("f")).unwrap(),
        real
    );
}
