//! A wheel upload is spooled to a temporary file as it arrives and streamed to the object
//! store in chunks: the gateway's memory does not grow by the wheel's size. Measured in this
//! process (gateway in-process, the client streaming its body from disk) with the kernel's
//! peak-RSS counter, reset just before the upload.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::io::{Read, Write};

use bytes::Bytes;
use futures::StreamExt;
use pyoco::testkit::Stack;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

const WHEEL_MB: usize = 96;

/// A valid wheel of project `bigpkg` whose payload is `WHEEL_MB` MiB of incompressible bytes,
/// written straight to `path` (never whole in memory). Returns its sha256.
fn write_big_wheel(path: &std::path::Path) -> [u8; 32] {
    let file = std::fs::File::create(path).unwrap();
    let mut w = zip::ZipWriter::new(file);
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let dist = "bigpkg-1.0.dist-info";
    w.start_file(format!("{dist}/METADATA"), stored).unwrap();
    w.write_all(b"Metadata-Version: 2.1\nName: bigpkg\nVersion: 1.0\n")
        .unwrap();
    w.start_file(format!("{dist}/WHEEL"), stored).unwrap();
    w.write_all(
        b"Wheel-Version: 1.0\nGenerator: pyoco-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    )
    .unwrap();
    w.start_file("bigpkg/blob.bin", stored).unwrap();
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..WHEEL_MB {
        block.iter_mut().for_each(|b| *b = fastrand::u8(..));
        w.write_all(&block).unwrap();
    }
    w.finish().unwrap();
    let mut hash = Sha256::new();
    let mut file = std::fs::File::open(path).unwrap();
    loop {
        let n = file.read(&mut block).unwrap();
        if n == 0 {
            break;
        }
        hash.update(&block[..n]);
    }
    hash.finalize().into()
}

/// `VmHWM` or `VmRSS` of this process, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_wheel_upload_does_not_grow_the_gateways_memory_by_its_size() {
    let stack = Stack::builder().no_worker().start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bigpkg-1.0-py3-none-any.whl");
    let sha = write_big_wheel(&path);
    let size = std::fs::metadata(&path).unwrap().len();

    // The multipart body, streamed: head, the file in 1 MiB reads, tail.
    let boundary = "pyoco-memory-test";
    let head = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"wheel\"; filename=\"bigpkg-1.0-py3-none-any.whl\"\r\ncontent-type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let file = tokio::fs::File::open(&path).await.unwrap();
    let body_stream =
        futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(head)) })
            .chain(futures::stream::unfold(file, |mut file| async move {
                let mut buf = vec![0u8; 1 << 20];
                match file.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok(Bytes::from(buf)), file))
                    }
                    Err(e) => Some((Err(e), file)),
                }
            }))
            .chain(futures::stream::once(async move { Ok(Bytes::from(tail)) }));

    // Reset the peak-RSS counter (Linux: 5 > clear_refs), then upload.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_kib("VmRSS:");
    let answer = reqwest::Client::new()
        .post(format!("{}/wheels", stack.gateway.url()))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(reqwest::Body::wrap_stream(body_stream))
        .send()
        .await
        .unwrap();
    let peak = status_kib("VmHWM:");
    let status = answer.status();
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["size_bytes"], size);
    assert_eq!(body["sha256_hex"], hex::encode(sha));
    let grew_mib = peak.saturating_sub(before) / 1024;
    eprintln!(
        "upload of {} MiB: peak RSS grew by {grew_mib} MiB",
        size >> 20
    );
    assert!(
        grew_mib < (WHEEL_MB as u64) / 3,
        "the gateway's memory grew by {grew_mib} MiB for a {WHEEL_MB} MiB wheel"
    );

    // And the stored object is the file, byte for byte.
    let downloaded = stack
        .client
        .download_wheel("bigpkg-1.0-py3-none-any.whl")
        .await
        .unwrap();
    assert_eq!(downloaded.len() as u64, size);
    let got: [u8; 32] = Sha256::digest(&downloaded).into();
    assert_eq!(got, sha);
}
