#![no_main]
//! A tree blob's plaintext. Whatever decodes must re-encode to bytes that decode to an equal tree,
//! and its names must be safe, sorted and unique (so `find` sees every node).
use cairn::format::tree::{Tree, is_valid_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = Tree::decode(data, &"tree") {
        for n in &tree.nodes {
            assert!(is_valid_name(&n.name), "accepted unsafe name {:?}", n.name);
            assert!(std::ptr::eq(tree.find(&n.name).expect("find"), n), "names not sorted/unique");
        }
        let again = tree.encode().expect("re-encode tree");
        assert_eq!(Tree::decode(&again, &"tree").expect("round trip"), tree);
    }
});
