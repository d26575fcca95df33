//! A real `sinew node` keeps its control socket to its owner and bounds what it reads
//! there: the data directory is made 0700 (even if it existed open to everyone) and the
//! socket 0600; a request line of exactly the limit is answered and one byte more is
//! refused with an error; relative paths in `blob_add` and `blob_get` are refused.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{control, spawn_blob_node_on, Rt};
use serde_json::{json, Value};

/// The binary's `control::MAX_REQUEST_LINE`.
const MAX_REQUEST_LINE: usize = 4 << 20;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn the_data_directory_becomes_0700_and_the_socket_0600(rt: Rt) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let node = spawn_blob_node_on(rt, &dir, "");
    assert_eq!(mode(&node.dir), 0o700, "data directory");
    assert_eq!(
        mode(&node.dir.join("control.sock")),
        0o600,
        "control socket"
    );
    let log = std::fs::read_to_string(node.dir.join("node.log")).unwrap();
    assert!(
        log.contains("restricted it to 0700"),
        "the user is told: {log}"
    );

    // A data directory the node creates itself is 0700 from the start.
    let fresh = tmp.path().join("fresh/nested");
    let out = tmp.path().join("fresh.jsonl");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args([
            "node",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--json",
            "--data-dir",
        ])
        .arg(&fresh)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ready = (0..400).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        std::fs::read_to_string(&out).unwrap().contains("\"ready\"")
    });
    let fresh_mode = mode(&fresh);
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready, "the node with a fresh data directory did not start");
    assert_eq!(fresh_mode, 0o700, "fresh data directory");
}
on_both_runtimes!(the_data_directory_becomes_0700_and_the_socket_0600);

/// Sends `line` (no newline added) and reads one response line.
fn raw_request(dir: &std::path::Path, line: &[u8]) -> Value {
    let mut stream = UnixStream::connect(dir.join("control.sock")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(line).unwrap();
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).unwrap();
    serde_json::from_str(&reply).unwrap()
}

fn a_request_line_of_exactly_the_limit_is_answered_and_one_byte_more_is_refused(rt: Rt) {
    let tmp = tempfile::tempdir().unwrap();
    let node = spawn_blob_node_on(rt, &tmp.path().join("a"), "");

    // `{"cmd":"status"}` padded with JSON whitespace to exactly the limit, then a newline.
    let mut at = br#"{"cmd":"status"}"#.to_vec();
    at.resize(MAX_REQUEST_LINE, b' ');
    at.push(b'\n');
    let reply = raw_request(&node.dir, &at);
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["result"]["peer_id"], node.peer_id.to_string());

    // One byte more, no newline: the node stops reading at the limit and answers.
    let mut over = br#"{"cmd":"status"}"#.to_vec();
    over.resize(MAX_REQUEST_LINE + 1, b' ');
    let reply = raw_request(&node.dir, &over);
    assert_eq!(reply["ok"], false, "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("longer than {MAX_REQUEST_LINE} bytes")),
        "{error}"
    );

    // The node still serves the next connection.
    assert!(control(&node.dir, json!({"cmd": "status"})).is_ok());
}
on_both_runtimes!(a_request_line_of_exactly_the_limit_is_answered_and_one_byte_more_is_refused);

fn relative_paths_in_blob_requests_are_refused_by_the_node(rt: Rt) {
    let tmp = tempfile::tempdir().unwrap();
    let node = spawn_blob_node_on(rt, &tmp.path().join("a"), "");
    // A file that exists relative to the node's working directory would be found if the
    // node resolved the path itself.
    let err = control(&node.dir, json!({"cmd": "blob_add", "path": "Cargo.toml"})).unwrap_err();
    assert!(err.contains("\"Cargo.toml\" is not absolute"), "{err}");

    let file = tmp.path().join("in");
    std::fs::write(&file, b"hello").unwrap();
    let added = control(
        &node.dir,
        json!({"cmd": "blob_add", "path": file.to_str().unwrap()}),
    )
    .unwrap();
    let id = added["id"].as_str().unwrap();
    let err = control(
        &node.dir,
        json!({"cmd": "blob_get", "id": id, "output": "out/copy"}),
    )
    .unwrap_err();
    assert!(err.contains("\"out/copy\" is not absolute"), "{err}");
    assert!(!std::path::Path::new("out/copy").exists());
}
on_both_runtimes!(relative_paths_in_blob_requests_are_refused_by_the_node);
