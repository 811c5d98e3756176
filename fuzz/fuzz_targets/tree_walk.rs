#![no_main]
//! The tree walk over hostile trees: the input is a list of tree blobs (each prefixed by its
//! length, u16 LE); a subtree id picks a tree by its first byte, so inputs can build chains,
//! shared subtrees and cycles of ids. The walk must never panic or recurse, must refuse to nest
//! deeper than MAX_DEPTH, and keep its paths consistent. Each input gets a budget of steps.
use cairn::format::tree::{NodeKind, Tree};
use cairn::snapshot::walk::{MAX_DEPTH, Step, TreeSource, TreeWalk};
use cairn::{Error, Id, Result};
use libfuzzer_sys::fuzz_target;

struct Trees(Vec<Tree>);

impl TreeSource for Trees {
    fn tree(&self, id: &Id) -> Result<Tree> {
        if self.0.is_empty() {
            return Err(Error::not_found("no trees"));
        }
        Ok(self.0[id.0[0] as usize % self.0.len()].clone())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut trees = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let n = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        let body = &rest[2..];
        let take = n.min(body.len());
        if let Ok(t) = Tree::decode(&body[..take], &"tree") {
            trees.push(t);
        }
        rest = &body[take..];
    }
    let src = Trees(trees);
    let Ok(mut w) = TreeWalk::new(&src, &Id([0; 32]), b"/") else {
        return;
    };
    let mut budget = 20_000u32;
    while let Some(step) = w.next_step() {
        budget -= 1;
        if budget == 0 {
            break;
        }
        assert!(w.depth() <= MAX_DEPTH);
        if let Step::Node(n) = step {
            let p = w.child_path(&n.name);
            assert!(p.starts_with(w.dir_path()));
            if n.kind == NodeKind::Dir {
                let before = w.depth();
                match w.enter(&n) {
                    Ok(()) => assert_eq!(w.depth(), before + 1),
                    Err(_) => assert_eq!(w.depth(), before),
                }
            }
        }
    }
});
