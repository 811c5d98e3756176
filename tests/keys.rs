//! Key management: add, list, remove, passwd.

use crate::util::*;

fn keys(env: &Env, password: &str) -> Vec<serde_json::Value> {
    let o = env.cairn_with(&["key", "list", "--json"], |c| {
        c.env("CAIRN_PASSWORD", password);
    });
    assert_eq!(o.status.code(), Some(0), "key list\n{}", describe(&o));
    serde_json::from_slice::<serde_json::Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn opens(env: &Env, password: &str) -> std::process::Output {
    env.cairn_with(&["snapshots", "--json"], |c| {
        c.env("CAIRN_PASSWORD", password);
    })
}

#[test]
fn add_list_remove_passwd() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f"), b"content\n");
    env.backup(&[src.to_str().unwrap()]);

    let o = env.cairn_with(&["key", "add"], |c| {
        c.env("CAIRN_NEW_PASSWORD", "second password");
    });
    assert_eq!(o.status.code(), Some(0), "key add\n{}", describe(&o));
    let o = opens(&env, "second password");
    assert_eq!(
        o.status.code(),
        Some(0),
        "the added password does not open the repository\n{}",
        describe(&o)
    );
    let path = format!("{}/f", src.to_str().unwrap());
    let o = env.cairn_with(&["dump", "latest", &path], |c| {
        c.env("CAIRN_PASSWORD", "second password");
    });
    assert_eq!(o.stdout, b"content\n", "{}", describe(&o));

    let list = keys(&env, PASSWORD);
    assert_eq!(list.len(), 2, "{list:?}");
    let current: Vec<&serde_json::Value> = list.iter().filter(|k| k["current"] == true).collect();
    assert_eq!(
        current.len(),
        1,
        "exactly one key is the current one: {list:?}"
    );
    let current_id = current[0]["id"].as_str().unwrap().to_string();

    // The key in use cannot be removed.
    let o = env.cairn(&["key", "remove", &current_id]);
    assert_fails_one_line(&o, 1, "key remove of the key in use");
    assert_eq!(
        keys(&env, PASSWORD).len(),
        2,
        "the refused remove deleted a key"
    );

    // passwd: the old password stops working, the new one and the other key keep working.
    let o = env.cairn_with(&["key", "passwd"], |c| {
        c.env("CAIRN_NEW_PASSWORD", "third password");
    });
    assert_eq!(o.status.code(), Some(0), "key passwd\n{}", describe(&o));
    let o = opens(&env, PASSWORD);
    let line = assert_fails_one_line(&o, 12, "the password replaced by key passwd");
    assert!(line.contains("wrong password"), "{line}");
    assert_eq!(opens(&env, "third password").status.code(), Some(0));
    assert_eq!(opens(&env, "second password").status.code(), Some(0));
    let list = keys(&env, "third password");
    assert_eq!(
        list.len(),
        2,
        "passwd should replace a key, not add one: {list:?}"
    );
    assert!(
        !list.iter().any(|k| k["id"] == current_id.as_str()),
        "the old key file is still there: {list:?}"
    );

    // Removing the other (not current) key works; then that password fails.
    let other = list.iter().find(|k| k["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let o = env.cairn_with(&["key", "remove", &other[..12]], |c| {
        c.env("CAIRN_PASSWORD", "third password");
    });
    assert_eq!(
        o.status.code(),
        Some(0),
        "key remove by prefix\n{}",
        describe(&o)
    );
    assert_eq!(opens(&env, "second password").status.code(), Some(12));
    assert_eq!(keys(&env, "third password").len(), 1);
}
