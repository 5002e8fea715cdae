//! Images mock (OpenAI and Azure paths).

use base64::Engine;
use serde_json::{Value, json};

use super::{json_of, post_raw, start};
use crate::MockServer;

const BOUNDARY: &str = "mock-boundary-7MA4YWxkTrZu0gW";

/// One form part: `(name, Some((filename, content_type)) for files, data)`.
type FormPart<'a> = (&'a str, Option<(&'a str, &'a str)>, &'a [u8]);

/// A multipart body.
fn multipart(parts: &[FormPart<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file, data) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match file {
            Some((filename, ct)) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
                     Content-Type: {ct}\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn post_multipart(server: &MockServer, path: &str, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", server.url()))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send()
        .await
        .expect("send")
}

/// Check a PNG: signature, chunk CRCs, 1x1 IHDR.
fn check_png(b64: &str) {
    let png = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let mut rest = &png[8..];
    let mut kinds = Vec::new();
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..4].try_into().expect("len")) as usize;
        let kind_and_data = &rest[4..8 + len];
        let crc = u32::from_be_bytes(rest[8 + len..12 + len].try_into().expect("crc"));
        assert_eq!(crc32fast::hash(kind_and_data), crc);
        if &kind_and_data[..4] == b"IHDR" {
            assert_eq!(&kind_and_data[4..12], [0, 0, 0, 1, 0, 0, 0, 1]);
        }
        kinds.push(String::from_utf8_lossy(&kind_and_data[..4]).into_owned());
        rest = &rest[12 + len..];
    }
    assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
}

#[tokio::test]
async fn generations() {
    let server = start().await;
    let body = json!({ "model": "gpt-image-1", "prompt": "a small cat", "n": 2, "size": "1024x1024", "quality": "low" });
    let resp = post_raw(&server, "/v1/images/generations", &[], body.to_string()).await;
    assert_eq!(resp.status(), 200);
    let v = json_of(resp).await;
    assert!(v["created"].as_u64().expect("created") > 1_700_000_000);
    let data = v["data"].as_array().expect("data");
    assert_eq!(data.len(), 2);
    for item in data {
        check_png(item["b64_json"].as_str().expect("b64"));
        assert_eq!(item["revised_prompt"], "a small cat");
    }
    assert_eq!(
        v["usage"],
        json!({ "input_tokens": 3, "output_tokens": 544, "total_tokens": 547,
                "input_tokens_details": { "text_tokens": 3, "image_tokens": 0 } })
    );
    assert_eq!(server.requests()[0].body, body);

    let resp = post_raw(
        &server,
        "/v1/images/generations",
        &[],
        json!({ "model": "gpt-image-1" }).to_string(),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let resp = post_raw(
        &server,
        "/v1/images/generations",
        &[],
        json!({ "model": "img-error-500", "prompt": "x" }).to_string(),
    )
    .await;
    assert_eq!(resp.status(), 500);
    assert_eq!(json_of(resp).await["error"]["type"], "server_error");
}

#[tokio::test]
async fn edit_with_two_images() {
    let server = start().await;
    let body = multipart(&[
        (
            "image[]",
            Some(("a.png", "image/png")),
            b"first-image-bytes",
        ),
        ("image[]", Some(("b.png", "image/png")), b"second"),
        ("mask", Some(("mask.png", "image/png")), b"m"),
        ("prompt", None, b"make them blue"),
        ("model", None, b"gpt-image-1"),
        ("n", None, b"1"),
    ]);
    let resp = post_multipart(&server, "/v1/images/edits", body).await;
    assert_eq!(resp.status(), 200);
    let v = json_of(resp).await;
    assert_eq!(
        v["data"][0]["revised_prompt"],
        "edited 2 images: make them blue"
    );
    check_png(v["data"][0]["b64_json"].as_str().expect("b64"));
    assert_eq!(v["usage"]["input_tokens_details"]["image_tokens"], 170);
    assert_eq!(v["usage"]["input_tokens_details"]["text_tokens"], 3);

    let rec = &server.requests()[0];
    assert_eq!(rec.path, "/v1/images/edits");
    let parts = rec.body["multipart"].as_array().expect("summary");
    assert_eq!(parts.len(), 6);
    assert_eq!(
        parts[0],
        json!({ "name": "image[]", "filename": "a.png", "content_type": "image/png", "len": 17 })
    );
    assert_eq!(parts[1]["len"], 6);
    assert_eq!(parts[2]["name"], "mask");
    assert_eq!(parts[3]["filename"], Value::Null);
    assert_eq!(
        rec.body["fields"],
        json!({ "prompt": "make them blue", "model": "gpt-image-1", "n": "1" })
    );

    // No image part: 400.
    let body = multipart(&[("prompt", None, b"x")]);
    let resp = post_multipart(&server, "/v1/images/edits", body).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(json_of(resp).await["error"]["param"], "image");

    // One image on the Azure deployment path.
    let body = multipart(&[
        ("image", Some(("a.png", "image/png")), b"img"),
        ("prompt", None, b"hello"),
    ]);
    let resp = post_multipart(
        &server,
        "/openai/deployments/gpt-image-mock/images/edits?api-version=2025-04-01-preview",
        body,
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        json_of(resp).await["data"][0]["revised_prompt"],
        "edited 1 image: hello"
    );
    let resp = post_raw(
        &server,
        "/openai/deployments/gpt-image-mock/images/generations?api-version=2025-04-01-preview",
        &[],
        json!({ "prompt": "p" }).to_string(),
    )
    .await;
    assert_eq!(resp.status(), 200);
}
