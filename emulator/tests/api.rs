#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Wire-level tests of the emulator: error shapes, strictness, admin API,
//! seed and state files, and the binary's ready file.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use kms_emulator::{Config, Emulator};
use p256::pkcs8::DecodePublicKey;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

struct Reply {
    status: u16,
    head: String,
    body: Value,
}

/// One HTTP/1.1 request over a fresh connection.
fn http(url: &str, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Reply {
    let addr = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        head: head.to_owned(),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// An AWS KMS call signed with SigV4 (an independent signer, to check the
/// emulator's verification against the specification, not only the SDK).
fn aws(url: &str, op: &str, body: &Value, secret: &str) -> Reply {
    aws_raw(url, op, body.to_string().as_bytes(), secret)
}

fn aws_raw(url: &str, op: &str, body: &[u8], secret: &str) -> Reply {
    aws_with(url, op, secret, &Tamper::default(), body)
}

/// How a request departs from a correct signature.
#[derive(Default)]
struct Tamper<'a> {
    /// Leave x-amz-target out of SignedHeaders (it is still sent).
    unsigned_target: bool,
    /// Send these headers too, unsigned.
    unsigned_headers: &'a [(&'a str, &'a str)],
    /// Send this x-amz-content-sha256 (signed).
    content_sha256: Option<String>,
    /// Sign this body but send the real one.
    signed_body: Option<&'a [u8]>,
}

fn aws_with(url: &str, op: &str, secret: &str, t: &Tamper<'_>, body: &[u8]) -> Reply {
    let host = url.trim_start_matches("http://");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (y, mo, d) = civil(now / 86_400);
    let secs = now % 86_400;
    let date = format!("{y:04}{mo:02}{d:02}");
    let amz = format!(
        "{date}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    let target = format!("TrentService.{op}");
    let ct = "application/x-amz-json-1.1";
    let mut signed: Vec<(&str, String)> = vec![
        ("content-type", ct.into()),
        ("host", host.into()),
        ("x-amz-date", amz.clone()),
    ];
    if let Some(h) = &t.content_sha256 {
        signed.push(("x-amz-content-sha256", h.clone()));
    }
    if !t.unsigned_target {
        signed.push(("x-amz-target", target.clone()));
    }
    signed.sort();
    let names = signed.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(";");
    let headers: String = signed.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let payload = t
        .content_sha256
        .clone()
        .unwrap_or_else(|| hex::encode(Sha256::digest(t.signed_body.unwrap_or(body))));
    let canonical = format!("POST\n/\n\n{headers}\n{names}\n{payload}");
    let scope = format!("{date}/us-east-1/kms/aws4_request");
    let sts = format!(
        "AWS4-HMAC-SHA256\n{amz}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut k = hmac(format!("AWS4{secret}").as_bytes(), &date);
    for part in ["us-east-1", "kms", "aws4_request"] {
        k = hmac(&k, part);
    }
    let sig = hex::encode(hmac(&k, &sts));
    let auth =
        format!("AWS4-HMAC-SHA256 Credential=test/{scope}, SignedHeaders={names}, Signature={sig}");
    let mut sent: Vec<(&str, String)> = signed.into_iter().filter(|(k, _)| *k != "host").collect();
    if t.unsigned_target {
        sent.push(("x-amz-target", target));
    }
    for (k, v) in t.unsigned_headers {
        sent.push((k, (*v).to_owned()));
    }
    sent.push(("authorization", auth));
    http(url, "POST", "/", &sent, body)
}

fn civil(days: u64) -> (i64, u32, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn aws_type(r: &Reply) -> &str {
    r.body["__type"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_strictness_and_digest_semantics() {
    let emu = Emulator::start(Config::default()).await.unwrap();
    let url = emu.endpoints().aws.clone();
    let tokio_url = url.clone();
    tokio::task::spawn_blocking(move || {
        let url = tokio_url;
        let r = aws(&url, "CreateKey", &json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"}), "test");
        assert_eq!(r.status, 200, "{}", r.body);
        let id = r.body["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
        let pk = aws(&url, "GetPublicKey", &json!({"KeyId": id}), "test");
        let der = B64.decode(pk.body["PublicKey"].as_str().unwrap()).unwrap();
        let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&der).unwrap();

        // DIGEST signs the given digest as is: the signature verifies over the message.
        let msg = b"the message";
        let digest = Sha256::digest(msg);
        let r = aws(&url, "Sign", &json!({"KeyId": id, "Message": B64.encode(digest), "MessageType": "DIGEST", "SigningAlgorithm": "ECDSA_SHA_256"}), "test");
        assert_eq!(r.status, 200, "{}", r.body);
        let sig = p256::ecdsa::Signature::from_der(&B64.decode(r.body["Signature"].as_str().unwrap()).unwrap()).unwrap();
        use p256::ecdsa::signature::Verifier;
        vk.verify(msg, &sig).expect("DIGEST signature verifies over the message");
        // RAW hashes the message itself.
        let r = aws(&url, "Sign", &json!({"KeyId": id, "Message": B64.encode(msg), "MessageType": "RAW", "SigningAlgorithm": "ECDSA_SHA_256"}), "test");
        let sig = p256::ecdsa::Signature::from_der(&B64.decode(r.body["Signature"].as_str().unwrap()).unwrap()).unwrap();
        vk.verify(msg, &sig).expect("RAW signature verifies over the message");
        let v = aws(&url, "Verify", &json!({"KeyId": id, "Message": B64.encode(msg), "MessageType": "RAW", "Signature": r.body["Signature"], "SigningAlgorithm": "ECDSA_SHA_256"}), "test");
        assert_eq!(v.body["SignatureValid"], json!(true));
        let v = aws(&url, "Verify", &json!({"KeyId": id, "Message": B64.encode(b"other"), "MessageType": "RAW", "Signature": r.body["Signature"], "SigningAlgorithm": "ECDSA_SHA_256"}), "test");
        assert_eq!(aws_type(&v), "KMSInvalidSignatureException");

        let cases: Vec<(Value, &str)> = vec![
            (json!({"KeyId": id, "Message": B64.encode([0u8; 31]), "MessageType": "DIGEST", "SigningAlgorithm": "ECDSA_SHA_256"}), "ValidationException"),
            (json!({"KeyId": id, "Message": B64.encode(vec![0u8; 4097]), "MessageType": "RAW", "SigningAlgorithm": "ECDSA_SHA_256"}), "ValidationException"),
            (json!({"KeyId": id, "Message": "%%%not base64", "SigningAlgorithm": "ECDSA_SHA_256"}), "SerializationException"),
            (json!({"KeyId": id, "Message": B64.encode(msg), "SigningAlgorithm": "ECDSA_SHA_384"}), "InvalidKeyUsageException"),
            (json!({"KeyId": "alias/none", "Message": B64.encode(msg), "SigningAlgorithm": "ECDSA_SHA_256"}), "NotFoundException"),
            (json!({"KeyId": "1234", "Message": B64.encode(msg), "SigningAlgorithm": "ECDSA_SHA_256"}), "NotFoundException"),
        ];
        for (body, want) in cases {
            let r = aws(&url, "Sign", &body, "test");
            assert_eq!((r.status, aws_type(&r)), (400, want), "{body}: {}", r.body);
            assert!(r.body["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        let r = aws_raw(&url, "Sign", b"{not json", "test");
        assert_eq!(aws_type(&r), "SerializationException");
        let r = aws(&url, "Sign", &json!({}), "wrong-secret");
        assert_eq!(aws_type(&r), "InvalidSignatureException");
        let r = http(&url, "POST", "/", &[("x-amz-target", "TrentService.Sign".into())], b"{}");
        assert_eq!(aws_type(&r), "MissingAuthenticationTokenException");
        let big = vec![b' '; kms_emulator::MAX_BODY + 10];
        let r = aws_raw(&url, "Sign", &big, "test");
        assert_eq!(r.status, 413, "{}", r.head);

        // Ed25519: RAW only, real Ed25519 over the whole message.
        let r = aws(&url, "CreateKey", &json!({"KeySpec": "ECC_NIST_EDWARDS25519", "KeyUsage": "SIGN_VERIFY"}), "test");
        let ed = r.body["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
        let r = aws(&url, "Sign", &json!({"KeyId": ed, "Message": B64.encode([0u8; 64]), "MessageType": "DIGEST", "SigningAlgorithm": "ED25519_SHA_512"}), "test");
        assert_eq!(aws_type(&r), "ValidationException");
        let pk = aws(&url, "GetPublicKey", &json!({"KeyId": ed}), "test");
        let vk = ed25519_dalek::VerifyingKey::from_public_key_der(&B64.decode(pk.body["PublicKey"].as_str().unwrap()).unwrap()).unwrap();
        let r = aws(&url, "Sign", &json!({"KeyId": ed, "Message": B64.encode(msg), "MessageType": "RAW", "SigningAlgorithm": "ED25519_SHA_512"}), "test");
        let sig = ed25519_dalek::Signature::from_slice(&B64.decode(r.body["Signature"].as_str().unwrap()).unwrap()).unwrap();
        vk.verify_strict(msg, &sig).unwrap();

        // Symmetric keys: wrong usage for Sign; Encrypt/Decrypt/GenerateDataKey round trips.
        let r = aws(&url, "CreateKey", &json!({}), "test");
        let sym = r.body["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
        let r = aws(&url, "Sign", &json!({"KeyId": sym, "Message": B64.encode(msg), "SigningAlgorithm": "ECDSA_SHA_256"}), "test");
        assert_eq!(aws_type(&r), "InvalidKeyUsageException");
        let ct = aws(&url, "Encrypt", &json!({"KeyId": sym, "Plaintext": B64.encode(b"secret"), "EncryptionContext": {"a": "b"}}), "test");
        let pt = aws(&url, "Decrypt", &json!({"CiphertextBlob": ct.body["CiphertextBlob"], "EncryptionContext": {"a": "b"}}), "test");
        assert_eq!(B64.decode(pt.body["Plaintext"].as_str().unwrap()).unwrap(), b"secret");
        let bad = aws(&url, "Decrypt", &json!({"CiphertextBlob": ct.body["CiphertextBlob"], "EncryptionContext": {"a": "c"}}), "test");
        assert_eq!(aws_type(&bad), "InvalidCiphertextException");
        let dk = aws(&url, "GenerateDataKey", &json!({"KeyId": sym, "KeySpec": "AES_256"}), "test");
        let pt = aws(&url, "Decrypt", &json!({"CiphertextBlob": dk.body["CiphertextBlob"]}), "test");
        assert_eq!(pt.body["Plaintext"], dk.body["Plaintext"]);
        // Disable, schedule deletion, list.
        assert_eq!(aws(&url, "DisableKey", &json!({"KeyId": id}), "test").status, 200);
        let r = aws(&url, "Sign", &json!({"KeyId": id, "Message": B64.encode(msg), "SigningAlgorithm": "ECDSA_SHA_256"}), "test");
        assert_eq!(aws_type(&r), "DisabledException");
        let r = aws(&url, "ScheduleKeyDeletion", &json!({"KeyId": id, "PendingWindowInDays": 7}), "test");
        assert_eq!(r.body["KeyState"], json!("PendingDeletion"));
        let r = aws(&url, "ScheduleKeyDeletion", &json!({"KeyId": ed, "PendingWindowInDays": 3}), "test");
        assert_eq!(aws_type(&r), "ValidationException");
        let r = aws(&url, "ListKeys", &json!({"Limit": 2}), "test");
        assert_eq!(r.body["Keys"].as_array().unwrap().len(), 2);
        assert_eq!(r.body["Truncated"], json!(true));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcp_strictness_and_error_shape() {
    let emu = Emulator::start(Config::default()).await.unwrap();
    let url = emu.endpoints().gcp.clone();
    let key = "projects/p/locations/global/keyRings/r/cryptoKeys/k";
    let v = emu.create_gcp_key(key, "EC_SIGN_P256_SHA256").unwrap();
    let ed = emu
        .create_gcp_key(
            "projects/p/locations/global/keyRings/r/cryptoKeys/ed",
            "EC_SIGN_ED25519",
        )
        .unwrap();
    tokio::task::spawn_blocking(move || {
        let post = |path: &str, body: Value| http(&url, "POST", &format!("/v1/{path}"), &[("content-type", "application/json".into())], body.to_string().as_bytes());
        let digest = Sha256::digest(b"m");
        let crc = crc32c::crc32c(&digest);
        let r = post(&format!("{v}:asymmetricSign"), json!({"digest": {"sha256": B64.encode(digest)}, "digestCrc32c": crc.to_string()}));
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["verifiedDigestCrc32c"], json!(true));
        let sig = B64.decode(r.body["signature"].as_str().unwrap()).unwrap();
        assert_eq!(r.body["signatureCrc32c"], json!(crc32c::crc32c(&sig).to_string()));
        let pk = http(&url, "GET", &format!("/v1/{v}/publicKey"), &[], b"");
        let pem = pk.body["pem"].as_str().unwrap();
        assert_eq!(pk.body["pemCrc32c"], json!(crc32c::crc32c(pem.as_bytes()).to_string()));
        assert_eq!(pk.body["algorithm"], json!("EC_SIGN_P256_SHA256"), "names without enum-encoding=int");
        let pk_int = http(&url, "GET", &format!("/v1/{v}/publicKey?%24alt=json%3Benum-encoding%3Dint"), &[], b"");
        assert_eq!(pk_int.body["algorithm"], json!(12));
        let vk = p256::ecdsa::VerifyingKey::from_public_key_pem(pem).unwrap();
        use p256::ecdsa::signature::Verifier;
        vk.verify(b"m", &p256::ecdsa::Signature::from_der(&sig).unwrap()).unwrap();

        let cases = vec![
            (format!("{v}:asymmetricSign"), json!({"digest": {"sha256": B64.encode(digest)}, "digestCrc32c": (crc ^ 1).to_string()}), 400, "INVALID_ARGUMENT"),
            (format!("{v}:asymmetricSign"), json!({"digest": {"sha384": B64.encode([0u8; 48])}}), 400, "INVALID_ARGUMENT"),
            (format!("{v}:asymmetricSign"), json!({"digest": {"sha256": B64.encode([0u8; 20])}}), 400, "INVALID_ARGUMENT"),
            (format!("{v}:asymmetricSign"), json!({"data": B64.encode(b"m")}), 400, "INVALID_ARGUMENT"),
            (format!("{v}:asymmetricSign"), json!({"digest": {"sha256": "!!"}}), 400, "INVALID_ARGUMENT"),
            (format!("{ed}:asymmetricSign"), json!({"digest": {"sha256": B64.encode(digest)}}), 400, "INVALID_ARGUMENT"),
            (format!("{ed}:asymmetricSign"), json!({"data": B64.encode(b"m"), "dataCrc32c": "1"}), 400, "INVALID_ARGUMENT"),
            (format!("{key}/cryptoKeyVersions/9:asymmetricSign"), json!({"digest": {"sha256": B64.encode(digest)}}), 404, "NOT_FOUND"),
        ];
        for (path, body, code, status) in cases {
            let r = post(&path, body.clone());
            assert_eq!((r.status, r.body["error"]["status"].as_str().unwrap_or("")), (code, status), "{body}: {}", r.body);
            assert_eq!(r.body["error"]["code"], json!(code));
        }
        let r = http(&url, "POST", &format!("/v1/{v}:asymmetricSign"), &[], b"{broken");
        assert_eq!(r.body["error"]["status"], json!("INVALID_ARGUMENT"));
        let r = http(&url, "PATCH", &format!("/v1/{v}?updateMask=state"), &[], br#"{"state":"DISABLED"}"#);
        assert_eq!(r.body["state"], json!("DISABLED"));
        let r = post(&format!("{v}:asymmetricSign"), json!({"digest": {"sha256": B64.encode(digest)}}));
        assert_eq!(r.body["error"]["status"], json!("FAILED_PRECONDITION"));
        let r = http(&url, "GET", "/v1/nothing/here", &[], b"");
        assert_eq!(r.status, 404);
    })
    .await
    .unwrap();
    // With a token configured, anonymous requests are refused.
    let emu = Emulator::start(Config {
        gcp_token: Some("tok".into()),
        ..Config::default()
    })
    .await
    .unwrap();
    let url = emu.endpoints().gcp.clone();
    tokio::task::spawn_blocking(move || {
        let r = http(&url, "GET", "/v1/projects/p/locations/l/keyRings", &[], b"");
        assert_eq!(
            (r.status, r.body["error"]["status"].as_str()),
            (401, Some("UNAUTHENTICATED"))
        );
        let r = http(
            &url,
            "GET",
            "/v1/projects/p/locations/l/keyRings",
            &[("authorization", "Bearer tok".into())],
            b"",
        );
        assert_eq!(r.status, 200);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_stats_faults_and_reset() {
    let emu = Emulator::start(Config::default()).await.unwrap();
    let admin = emu.endpoints().admin.clone();
    let gcp = emu.endpoints().gcp.clone();
    let v = emu
        .create_gcp_key(
            "projects/p/locations/global/keyRings/r/cryptoKeys/k",
            "EC_SIGN_P256_SHA256",
        )
        .unwrap();
    tokio::task::spawn_blocking(move || {
        assert_eq!(
            http(&admin, "GET", "/health", &[], b"").body["status"],
            json!("ok")
        );
        let get_pk = || http(&gcp, "GET", &format!("/v1/{v}/publicKey"), &[], b"");
        assert_eq!(get_pk().status, 200);
        let stats = http(&admin, "GET", "/stats", &[], b"").body;
        assert_eq!(stats["gcp"]["getPublicKey"], json!(1));
        assert!(stats["aws"].is_object() && stats["azure"].is_object());
        // Throttling for the next 2 calls, then normal service.
        let r = http(
            &admin,
            "POST",
            "/faults",
            &[],
            br#"{"service":"gcp","operation":"getPublicKey","error":"throttle","count":2}"#,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(get_pk().status, 429);
        assert_eq!(
            get_pk().body["error"]["status"],
            json!("RESOURCE_EXHAUSTED")
        );
        assert_eq!(get_pk().status, 200);
        // Dropped connections: no answer at all.
        http(
            &admin,
            "POST",
            "/faults",
            &[],
            br#"{"service":"gcp","drop_connection":true,"count":1}"#,
        );
        assert_eq!(get_pk().status, 0);
        // Latency.
        http(
            &admin,
            "POST",
            "/faults",
            &[],
            br#"{"service":"*","latency_ms":300,"count":1}"#,
        );
        let t = std::time::Instant::now();
        assert_eq!(get_pk().status, 200);
        assert!(t.elapsed() >= Duration::from_millis(300));
        // Bad fault rules are refused with the reason.
        let r = http(&admin, "POST", "/faults", &[], br#"{"service":"s3"}"#);
        assert_eq!(r.status, 400);
        assert!(r.body["error"]
            .as_str()
            .unwrap()
            .contains("unknown service"));
        let r = http(
            &admin,
            "POST",
            "/faults",
            &[],
            br#"{"service":"aws","rate":2}"#,
        );
        assert_eq!(r.status, 400);
        assert_eq!(http(&admin, "POST", "/reset", &[], b"").status, 200);
        assert_eq!(
            http(&admin, "GET", "/stats", &[], b"").body["gcp"],
            json!({})
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigv4_covers_the_body_and_every_amz_header() {
    let emu = Emulator::start(Config::default()).await.unwrap();
    let url = emu.endpoints().aws.clone();
    let admin = emu.endpoints().admin.clone();
    tokio::task::spawn_blocking(move || {
        let list = br#"{}"#;
        // The reference request passes.
        let r = aws_with(&url, "ListKeys", "test", &Tamper::default(), list);
        assert_eq!(r.status, 200, "{}", r.body);
        // A body swapped under a signature made for another body.
        let create = br#"{"KeySpec":"ECC_NIST_P256","KeyUsage":"SIGN_VERIFY"}"#;
        let t = Tamper {
            signed_body: Some(list),
            ..Default::default()
        };
        let r = aws_with(&url, "CreateKey", "test", &t, create);
        assert_eq!(
            (r.status, aws_type(&r)),
            (400, "InvalidSignatureException"),
            "{}",
            r.body
        );
        // The same, with the signed body's hash declared in x-amz-content-sha256.
        let t = Tamper {
            content_sha256: Some(hex::encode(Sha256::digest(list))),
            ..Default::default()
        };
        let r = aws_with(&url, "CreateKey", "test", &t, create);
        assert_eq!(
            (r.status, aws_type(&r)),
            (400, "InvalidSignatureException"),
            "{}",
            r.body
        );
        assert!(r.body["message"]
            .as_str()
            .unwrap()
            .contains("x-amz-content-sha256"));
        // A correct declared hash is accepted.
        let t = Tamper {
            content_sha256: Some(hex::encode(Sha256::digest(list))),
            ..Default::default()
        };
        assert_eq!(aws_with(&url, "ListKeys", "test", &t, list).status, 200);
        // An operation outside the signature: x-amz-target unsigned.
        let t = Tamper {
            unsigned_target: true,
            ..Default::default()
        };
        let r = aws_with(&url, "CreateKey", "test", &t, create);
        assert_eq!(
            (r.status, aws_type(&r)),
            (400, "IncompleteSignatureException"),
            "{}",
            r.body
        );
        assert!(r.body["message"].as_str().unwrap().contains("x-amz-target"));
        // Any other x-amz-* header sent unsigned.
        let t = Tamper {
            unsigned_headers: &[("x-amz-security-token", "forged")],
            ..Default::default()
        };
        let r = aws_with(&url, "ListKeys", "test", &t, list);
        assert_eq!(
            (r.status, aws_type(&r)),
            (400, "IncompleteSignatureException"),
            "{}",
            r.body
        );
        assert!(r.body["message"]
            .as_str()
            .unwrap()
            .contains("x-amz-security-token"));
        // Nothing of the refused CreateKeys was created.
        let r = aws_with(&url, "ListKeys", "test", &Tamper::default(), list);
        assert_eq!(r.body["Keys"], json!([]), "{}", r.body);

        // Unknown operations are refused before they are counted.
        let stats = || http(&admin, "GET", "/stats", &[], b"").body;
        let before = stats();
        let r = aws_with(&url, "BogusOp", "test", &Tamper::default(), list);
        assert_eq!((r.status, aws_type(&r)), (400, "UnknownOperationException"));
        assert_eq!(stats()["aws"], before["aws"]);
        assert!(stats()["aws"].get("BogusOp").is_none());

        // The fault list is bounded: all or none of a batch is added.
        let one = json!({"service": "azure", "latency_ms": 1});
        let batch = |n: usize| Value::Array(vec![one.clone(); n]).to_string();
        let r = http(&admin, "POST", "/faults", &[], batch(200).as_bytes());
        assert_eq!(r.status, 200, "{}", r.body);
        let r = http(&admin, "POST", "/faults", &[], batch(57).as_bytes());
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.body["error"]
            .as_str()
            .unwrap()
            .contains("at most 256 rules"));
        let listed = http(&admin, "GET", "/faults", &[], b"").body;
        assert_eq!(listed.as_array().map(Vec::len), Some(200), "{listed}");
        assert_eq!(
            http(&admin, "POST", "/faults", &[], batch(56).as_bytes()).status,
            200
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcp_unknown_paths_are_not_counted() {
    let emu = Emulator::start(Config::default()).await.unwrap();
    let gcp = emu.endpoints().gcp.clone();
    let admin = emu.endpoints().admin.clone();
    tokio::task::spawn_blocking(move || {
        for path in [
            "/v1/projects/p/locations/l/bogus",
            "/v2/x",
            "/v1/projects/p/locations/l/keyRings/r/cryptoKeys/k:explode",
        ] {
            let r = http(&gcp, "POST", path, &[], b"{}");
            assert_eq!(r.status, 404, "{path}: {}", r.body);
        }
        let stats = http(&admin, "GET", "/stats", &[], b"").body;
        assert_eq!(stats["gcp"], json!({}), "{stats}");
    })
    .await
    .unwrap();
}

const SEED_P256: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgevZzL1gdAFr88hb2
OF/2NxApJCzGCEDdfSp6VQO30hyhRANCAAQRWz+jn65BtOMvdyHKcvjBeBSDZH2r
1RTwjmYSi9R/zpBnuQ4EiMnCqfMPWiZqB4QdbAd0E7oH50VpuZ1P087G
-----END PRIVATE KEY-----
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_and_state_files() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("ca.pem"), SEED_P256).unwrap();
    let seed = d.path().join("seed.toml");
    std::fs::write(
        &seed,
        r#"
[[aws]]
id = "11111111-2222-3333-4444-555555555555"
spec = "ECC_NIST_P256"
aliases = ["alias/ssh-ca"]
private_key_file = "ca.pem"

[[gcp]]
key = "projects/p/locations/global/keyRings/r/cryptoKeys/ca"
algorithm = "EC_SIGN_P256_SHA256"
[[gcp.versions]]
private_key_file = "ca.pem"

[[azure]]
name = "ca"
kty = "EC"
[[azure.versions]]
version = "0123456789abcdef0123456789abcdef"
private_key_file = "ca.pem"
"#,
    )
    .unwrap();
    let state = d.path().join("state.toml");
    let expected = p256::SecretKey::from_pkcs8_pem_compat(SEED_P256);
    let emu = Emulator::start(Config {
        seed: Some(seed.clone()),
        state_file: Some(state.clone()),
        ..Config::default()
    })
    .await
    .unwrap();
    let url = emu.endpoints().aws.clone();
    let gcp = emu.endpoints().gcp.clone();
    let new_id = tokio::task::spawn_blocking(move || {
        let pk = aws(&url, "GetPublicKey", &json!({"KeyId": "alias/ssh-ca"}), "test");
        assert_eq!(pk.body["KeyId"], json!("arn:aws:kms:us-east-1:111122223333:key/11111111-2222-3333-4444-555555555555"));
        assert_eq!(B64.decode(pk.body["PublicKey"].as_str().unwrap()).unwrap(), expected);
        let g = http(&gcp, "GET", "/v1/projects/p/locations/global/keyRings/r/cryptoKeys/ca/cryptoKeyVersions/1/publicKey", &[], b"");
        let vk = p256::PublicKey::from_public_key_pem(g.body["pem"].as_str().unwrap()).unwrap();
        assert_eq!(vk.to_public_key_der_compat(), expected);
        let r = aws(&url, "CreateKey", &json!({"KeySpec": "ECC_NIST_P384", "KeyUsage": "SIGN_VERIFY"}), "test");
        r.body["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()
    })
    .await
    .unwrap();
    drop(emu);
    // Restart from the state file: the created key survives.
    let emu = Emulator::start(Config {
        state_file: Some(state),
        ..Config::default()
    })
    .await
    .unwrap();
    let url = emu.endpoints().aws.clone();
    tokio::task::spawn_blocking(move || {
        let r = aws(&url, "DescribeKey", &json!({"KeyId": new_id}), "test");
        assert_eq!(
            r.body["KeyMetadata"]["KeySpec"],
            json!("ECC_NIST_P384"),
            "{}",
            r.body
        );
        let r = aws(
            &url,
            "DescribeKey",
            &json!({"KeyId": "alias/ssh-ca"}),
            "test",
        );
        assert_eq!(r.status, 200);
    })
    .await
    .unwrap();
    // A bad seed is a clear error naming the key and the problem.
    std::fs::write(&seed, "[[aws]]\nspec = \"ECC_NIST_P999\"\n").unwrap();
    let e = Emulator::start(Config {
        seed: Some(seed),
        ..Config::default()
    })
    .await
    .unwrap_err();
    assert!(
        e.to_string().contains("unknown spec \"ECC_NIST_P999\""),
        "{e}"
    );
}

trait Compat {
    fn to_public_key_der_compat(&self) -> Vec<u8>;
}
impl Compat for p256::PublicKey {
    fn to_public_key_der_compat(&self) -> Vec<u8> {
        use p256::pkcs8::EncodePublicKey;
        self.to_public_key_der().unwrap().into_vec()
    }
}
trait FromPem {
    fn from_pkcs8_pem_compat(pem: &str) -> Vec<u8>;
}
impl FromPem for p256::SecretKey {
    fn from_pkcs8_pem_compat(pem: &str) -> Vec<u8> {
        use p256::pkcs8::DecodePrivateKey;
        p256::SecretKey::from_pkcs8_pem(pem)
            .unwrap()
            .public_key()
            .to_public_key_der_compat()
    }
}

#[test]
fn binary_ready_file_and_help() {
    let bin = env!("CARGO_BIN_EXE_kms-emulator");
    let help = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--bind",
        "--port",
        "--seed",
        "--state",
        "--ready-file",
        "--cert-dir",
        "--aws-credentials",
        "--gcp-token",
        "--azure-token",
        "[[aws]]",
        "[[gcp]]",
        "[[azure]]",
        "private_key_file",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
    let d = tempfile::tempdir().unwrap();
    let ready = d.path().join("ready.json");
    let mut child = std::process::Command::new(bin)
        .arg("--ready-file")
        .arg(&ready)
        .arg("--cert-dir")
        .arg(d.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !ready.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&ready).unwrap()).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    for k in ["aws", "gcp", "azure", "azure_ca_cert", "admin"] {
        assert!(v[k].is_string(), "ready file lacks {k}: {v}");
    }
    assert!(v["aws"].as_str().unwrap().starts_with("http://127.0.0.1:"));
    assert!(v["azure"]
        .as_str()
        .unwrap()
        .starts_with("https://127.0.0.1:"));
    assert!(
        std::fs::read_to_string(v["azure_ca_cert"].as_str().unwrap())
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ekm_keys_connections_and_external_keys_in_seed_and_state() {
    use p256::ecdsa::signature::Verifier;
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("ca.pem"), SEED_P256).unwrap();
    let pinned = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .unwrap()
        .cert
        .pem();
    std::fs::write(d.path().join("pinned.pem"), &pinned).unwrap();
    let conn = "projects/p/locations/l/ekmConnections/hsm";
    let key = "projects/p/locations/l/keyRings/r/cryptoKeys/ext";
    let seed = d.path().join("seed.toml");
    std::fs::write(
        &seed,
        format!(
            r#"
[[ekm]]
name = "v0/s/keys/ca"
algorithm = "EC_SIGN_P256_SHA256"
private_key_file = "ca.pem"

[[gcp_ekm_connections]]
name = "{conn}"
[[gcp_ekm_connections.service_resolvers]]
hostname = "127.0.0.1:9"
server_certificate_files = ["pinned.pem"]

[[gcp]]
key = "{key}"
algorithm = "EC_SIGN_P256_SHA256"
protection_level = "EXTERNAL_VPC"
crypto_key_backend = "{conn}"
[[gcp.versions]]
ekm_connection_key_path = "v0/s/keys/ca"

[[gcp_ekm_configs]]
location = "projects/p/locations/l"
default_ekm_connection = "{conn}"
"#
        ),
    )
    .unwrap();
    let state = d.path().join("state.toml");
    let emu = Emulator::start(Config {
        seed: Some(seed.clone()),
        state_file: Some(state.clone()),
        ..Config::default()
    })
    .await
    .unwrap();
    let ep = emu.endpoints().clone();
    let server_der = {
        let pem = std::fs::read(&ep.ekm_server_cert).unwrap();
        let der = rustls_pemfile::certs(&mut &pem[..])
            .next()
            .unwrap()
            .unwrap()
            .to_vec();
        der
    };
    let gcp = ep.gcp.clone();
    let replicas: Vec<String> = ep
        .ekm
        .iter()
        .map(|u| u.trim_start_matches("https://").to_string())
        .collect();
    tokio::task::spawn_blocking(move || {
        let c = http(&gcp, "GET", &format!("/v1/{conn}"), &[], b"");
        assert_eq!(c.status, 200, "{}", c.body);
        assert_eq!(c.body["serviceResolvers"][0]["hostname"], "127.0.0.1:9");
        assert_eq!(
            c.body["serviceResolvers"][0]["serverCertificates"][0]["parsed"],
            true
        );
        let cfg = http(
            &gcp,
            "GET",
            "/v1/projects/p/locations/l/ekmConfig",
            &[],
            b"",
        );
        assert_eq!(cfg.body["defaultEkmConnection"], conn);
        let v = http(
            &gcp,
            "GET",
            &format!("/v1/{key}/cryptoKeyVersions/1"),
            &[],
            b"",
        );
        assert_eq!(
            v.body["externalProtectionLevelOptions"]["ekmConnectionKeyPath"],
            "v0/s/keys/ca"
        );
        // Signing needs the key manager: the seeded replica is not there.
        let digest = B64.encode(Sha256::digest(b"msg"));
        let body = json!({"digest": {"sha256": digest}}).to_string();
        let sign_path = format!("/v1/{key}/cryptoKeyVersions/1:asymmetricSign");
        let r = http(&gcp, "POST", &sign_path, &[], body.as_bytes());
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("resolver 0 (127.0.0.1:9)"));
        // Point the connection at the replicas; the seeded key signs.
        let patch = json!({"serviceResolvers": replicas.iter().map(|h| json!({
            "hostname": h,
            "serverCertificates": [{"rawDer": B64.encode(&server_der)}],
        })).collect::<Vec<_>>()});
        let p = http(
            &gcp,
            "PATCH",
            &format!("/v1/{conn}?updateMask=serviceResolvers"),
            &[],
            patch.to_string().as_bytes(),
        );
        assert_eq!(p.status, 200, "{}", p.body);
        let r = http(&gcp, "POST", &sign_path, &[], body.as_bytes());
        assert_eq!(r.status, 200, "{}", r.body);
        let sig = B64.decode(r.body["signature"].as_str().unwrap()).unwrap();
        let vk = p256::ecdsa::VerifyingKey::from_public_key_der(
            &p256::SecretKey::from_pkcs8_pem_compat(SEED_P256),
        )
        .unwrap();
        vk.verify(
            b"msg",
            &p256::ecdsa::DerSignature::from_bytes(&sig).unwrap(),
        )
        .unwrap();
    })
    .await
    .unwrap();
    drop(emu);
    // The state file holds all of it: the key manager's key, the updated
    // connection, the external key and the config.
    let text = std::fs::read_to_string(&state).unwrap();
    assert!(
        text.contains("ekm_connection_key_path = \"v0/s/keys/ca\""),
        "{text}"
    );
    // Loaded twice without a change in between: nothing is lost (the state
    // file is written once, after the whole load).
    drop(
        Emulator::start(Config {
            state_file: Some(state.clone()),
            ..Config::default()
        })
        .await
        .unwrap(),
    );
    let emu = Emulator::start(Config {
        state_file: Some(state),
        ..Config::default()
    })
    .await
    .unwrap();
    let key_pem = {
        let ekm = kms_emulator::state::read(&emu.state().ekm);
        ekm.keys["v0/s/keys/ca"].material.public_pem().unwrap()
    };
    let vk = p256::PublicKey::from_public_key_pem(&key_pem).unwrap();
    assert_eq!(
        vk.to_public_key_der_compat(),
        p256::SecretKey::from_pkcs8_pem_compat(SEED_P256)
    );
    let gcp = emu.endpoints().gcp.clone();
    let old: Vec<String> = ep
        .ekm
        .iter()
        .map(|u| u.trim_start_matches("https://").to_string())
        .collect();
    tokio::task::spawn_blocking(move || {
        let c = http(&gcp, "GET", &format!("/v1/{conn}"), &[], b"");
        assert_eq!(c.body["serviceResolvers"][1]["hostname"], old[1]);
        let cfg = http(
            &gcp,
            "GET",
            "/v1/projects/p/locations/l/ekmConfig",
            &[],
            b"",
        );
        assert_eq!(cfg.body["defaultEkmConnection"], conn);
        let k = http(&gcp, "GET", &format!("/v1/{key}"), &[], b"");
        assert_eq!(k.body["cryptoKeyBackend"], conn);
        assert_eq!(k.body["versionTemplate"]["protectionLevel"], "EXTERNAL_VPC");
    })
    .await
    .unwrap();
    // Seeds that do not fit: a clear error naming the entry.
    std::fs::write(
        &seed,
        format!("[[gcp]]\nkey = \"{key}\"\nalgorithm = \"EC_SIGN_P256_SHA256\"\nprotection_level = \"EXTERNAL_VPC\"\n"),
    )
    .unwrap();
    let e = Emulator::start(Config {
        seed: Some(seed),
        ..Config::default()
    })
    .await
    .unwrap_err();
    assert!(e.to_string().contains("need crypto_key_backend"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_log_and_admin_bind() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests.jsonl");
    let emu = Emulator::start(Config {
        admin_bind: "127.0.0.2".parse().unwrap(),
        request_log: Some(log.clone()),
        gcp_token: Some("gcp-secret-token".into()),
        ..Config::default()
    })
    .await
    .unwrap();
    let admin = emu.endpoints().admin.clone();
    let (aws_url, gcp) = (emu.endpoints().aws.clone(), emu.endpoints().gcp.clone());
    // The admin API on its own address; the services where they were.
    assert!(admin.starts_with("http://127.0.0.2:"), "{admin}");
    assert!(aws_url.starts_with("http://127.0.0.1:"), "{aws_url}");
    let admin_port: u16 = admin.rsplit(':').next().unwrap().parse().unwrap();
    assert!(TcpStream::connect(("127.0.0.1", admin_port)).is_err());
    let v = emu
        .create_gcp_key(
            "projects/p/locations/global/keyRings/r/cryptoKeys/k",
            "EC_SIGN_P256_SHA256",
        )
        .unwrap();
    tokio::task::spawn_blocking(move || {
        let r = aws(
            &aws_url,
            "DescribeKey",
            &json!({"KeyId": "alias/missing"}),
            "test",
        );
        assert_eq!(aws_type(&r), "NotFoundException");
        let bearer = [("authorization", "Bearer gcp-secret-token".to_owned())];
        let path = format!("/v1/{v}/publicKey");
        assert_eq!(http(&gcp, "GET", &path, &bearer, b"").status, 200);
        assert_eq!(http(&gcp, "GET", &path, &[], b"").status, 401);
        // Admin requests are not logged.
        let all = http(&admin, "GET", "/requests", &[], b"").body;
        assert_eq!(all["last"], json!(3));
        let r = all["requests"].as_array().unwrap();
        assert_eq!(r.len(), 3, "{all}");
        let fingerprint = hex::encode(Sha256::digest(b"gcp-secret-token"));
        let expect = [
            (
                1,
                "aws",
                "DescribeKey",
                json!("alias/missing"),
                json!("test"),
                400,
                json!("NotFoundException"),
            ),
            (
                2,
                "gcp",
                "getPublicKey",
                json!(v),
                json!(format!("bearer:{}", &fingerprint[..12])),
                200,
                Value::Null,
            ),
            (
                3,
                "gcp",
                "-",
                json!(v),
                Value::Null,
                401,
                json!("UNAUTHENTICATED"),
            ),
        ];
        for (e, (seq, service, op, key, caller, status, code)) in r.iter().zip(expect) {
            assert_eq!(e["seq"], json!(seq), "{e}");
            assert_eq!(e["service"], json!(service), "{e}");
            assert_eq!(e["operation"], json!(op), "{e}");
            assert_eq!(e["key"], key, "{e}");
            assert_eq!(e["caller"], caller, "{e}");
            assert_eq!(e["status"], json!(status), "{e}");
            assert_eq!(e["error_code"], code, "{e}");
            assert!(e["latency_ms"].as_f64().unwrap() >= 0.0, "{e}");
            assert!(e["time"].as_str().unwrap().ends_with('Z'), "{e}");
        }
        let later = http(&admin, "GET", "/requests?since=2", &[], b"").body;
        assert_eq!(later["requests"].as_array().unwrap().len(), 1, "{later}");
        assert_eq!(later["requests"][0]["seq"], json!(3));
        let bad = http(&admin, "GET", "/requests?since=yesterday", &[], b"");
        assert_eq!(bad.status, 400);
        assert!(bad.body["error"].as_str().unwrap().contains("since"));
        // The file holds the same entries, and never the token.
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.as_slice(), r.as_slice());
        assert!(!text.contains("gcp-secret-token"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_and_reset_to_the_seed() {
    let d = tempfile::tempdir().unwrap();
    let seed = d.path().join("seed.toml");
    std::fs::write(
        &seed,
        r#"
[[aws]]
id = "11111111-2222-3333-4444-555555555555"
spec = "ECC_NIST_P256"
aliases = ["alias/ssh-ca"]
"#,
    )
    .unwrap();
    let state = d.path().join("state.toml");
    let emu = Emulator::start(Config {
        seed: Some(seed),
        state_file: Some(state.clone()),
        clock_offset: -3600,
        ..Config::default()
    })
    .await
    .unwrap();
    let url = emu.endpoints().aws.clone();
    let admin = emu.endpoints().admin.clone();
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::PermissionsExt;
        let id = "11111111-2222-3333-4444-555555555555";
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let c = http(&admin, "GET", "/clock", &[], b"").body;
        assert_eq!(c["offset_seconds"], json!(-3600));
        assert!(
            (c["now_seconds"].as_i64().unwrap() - (real - 3600)).abs() < 5,
            "{c}"
        );
        // Bad offsets are refused with the reason, and change nothing.
        for bad in [&br#"{"offset":"soon"}"#[..], br#"{}"#, b"[1]"] {
            let r = http(&admin, "POST", "/clock", &[], bad);
            assert_eq!(r.status, 400, "{}", r.body);
            assert!(
                r.body["error"].as_str().unwrap().contains("offset")
                    || r.body["error"].as_str().unwrap().contains("JSON"),
                "{}",
                r.body
            );
        }
        assert_eq!(
            http(&admin, "GET", "/clock", &[], b"").body["offset_seconds"],
            json!(-3600)
        );
        // A key scheduled for deletion in 7 days is gone once the clock
        // passes its deletion date, with its alias.
        let r = aws(
            &url,
            "ScheduleKeyDeletion",
            &json!({"KeyId": id, "PendingWindowInDays": 7}),
            "test",
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let date = r.body["DeletionDate"].as_i64().unwrap();
        assert!(
            (date - (real - 3600 + 7 * 86_400)).abs() < 5,
            "deletion date on the emulated clock"
        );
        let r = http(&admin, "POST", "/clock", &[], br#"{"offset":"6d"}"#);
        assert_eq!(r.body["offset_seconds"], json!(6 * 86_400));
        let r = aws(&url, "DescribeKey", &json!({"KeyId": id}), "test");
        assert_eq!(r.body["KeyMetadata"]["KeyState"], json!("PendingDeletion"));
        http(&admin, "POST", "/clock", &[], br#"{"offset":"+7d1h"}"#);
        let r = aws(&url, "DescribeKey", &json!({"KeyId": id}), "test");
        assert_eq!(aws_type(&r), "NotFoundException", "{}", r.body);
        let r = aws(
            &url,
            "DescribeKey",
            &json!({"KeyId": "alias/ssh-ca"}),
            "test",
        );
        assert_eq!(aws_type(&r), "NotFoundException", "{}", r.body);
        let r = aws(
            &url,
            "CreateKey",
            &json!({"KeySpec": "ECC_NIST_P384", "KeyUsage": "SIGN_VERIFY"}),
            "test",
        );
        assert_eq!(r.status, 200, "{}", r.body);
        // The state file holds private keys: owner only.
        let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Reset with keys: the seed again (not the state file), and the
        // clock back at its configured offset.
        let r = http(&admin, "POST", "/reset?keys=true", &[], b"");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            http(&admin, "GET", "/clock", &[], b"").body["offset_seconds"],
            json!(-3600)
        );
        let r = aws(&url, "ListKeys", &json!({}), "test");
        let ids: Vec<&str> = r.body["Keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["KeyId"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [id]);
        let r = aws(
            &url,
            "DescribeKey",
            &json!({"KeyId": "alias/ssh-ca"}),
            "test",
        );
        assert_eq!(
            r.body["KeyMetadata"]["KeyState"],
            json!("Enabled"),
            "{}",
            r.body
        );
        let saved = std::fs::read_to_string(&state).unwrap();
        assert!(
            saved.contains(id) && !saved.contains("ECC_NIST_P384"),
            "{saved}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_state_keeps_tags_policies_grants_rotations_imports_and_replicas() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state.toml");
    let config = || Config {
        state_file: Some(state.clone()),
        ..Config::default()
    };
    let emu = Emulator::start(config()).await.unwrap();
    let url = emu.endpoints().aws.clone();
    let policy = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"}]}).to_string();
    let (sym, ct, mrk, ext, hmac, mac) = tokio::task::spawn_blocking({
        let (url, policy) = (url.clone(), policy.clone());
        move || {
            let ok = |r: Reply| {
                assert_eq!(r.status, 200, "{}", r.body);
                r.body
            };
            let sym = ok(aws(&url, "CreateKey", &json!({"Tags": [{"TagKey": "team", "TagValue": "sec"}], "Policy": policy}), "test"))["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
            let ct = ok(aws(&url, "Encrypt", &json!({"KeyId": sym, "Plaintext": B64.encode("old")}), "test"))["CiphertextBlob"].clone();
            ok(aws(&url, "EnableKeyRotation", &json!({"KeyId": sym}), "test"));
            ok(aws(&url, "RotateKeyOnDemand", &json!({"KeyId": sym}), "test"));
            ok(aws(&url, "CreateGrant", &json!({"KeyId": sym, "GranteePrincipal": "arn:aws:iam::111122223333:user/bob", "Operations": ["Decrypt"]}), "test"));
            let mrk = ok(aws(&url, "CreateKey", &json!({"MultiRegion": true}), "test"))["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
            ok(aws(&url, "ReplicateKey", &json!({"KeyId": mrk, "ReplicaRegion": "eu-west-1"}), "test"));
            let ext = ok(aws(&url, "CreateKey", &json!({"Origin": "EXTERNAL"}), "test"))["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
            let hmac = ok(aws(&url, "CreateKey", &json!({"KeySpec": "HMAC_384", "KeyUsage": "GENERATE_VERIFY_MAC"}), "test"))["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
            let mac = ok(aws(&url, "GenerateMac", &json!({"KeyId": hmac, "Message": B64.encode("m"), "MacAlgorithm": "HMAC_SHA_384"}), "test"))["Mac"].clone();
            (sym, ct, mrk, ext, hmac, mac)
        }
    })
    .await
    .unwrap();
    drop(emu);
    let emu = Emulator::start(config()).await.unwrap();
    let url = emu.endpoints().aws.clone();
    tokio::task::spawn_blocking(move || {
        let ok = |r: Reply| {
            assert_eq!(r.status, 200, "{}", r.body);
            r.body
        };
        let tags = ok(aws(&url, "ListResourceTags", &json!({"KeyId": sym}), "test"));
        assert_eq!(tags["Tags"], json!([{"TagKey": "team", "TagValue": "sec"}]));
        assert_eq!(ok(aws(&url, "GetKeyPolicy", &json!({"KeyId": sym, "PolicyName": "default"}), "test"))["Policy"], json!(policy));
        assert_eq!(ok(aws(&url, "ListGrants", &json!({"KeyId": sym}), "test"))["Grants"].as_array().unwrap().len(), 1);
        assert_eq!(ok(aws(&url, "GetKeyRotationStatus", &json!({"KeyId": sym}), "test"))["KeyRotationEnabled"], json!(true));
        assert_eq!(ok(aws(&url, "ListKeyRotations", &json!({"KeyId": sym}), "test"))["Rotations"].as_array().unwrap().len(), 1);
        let pt = ok(aws(&url, "Decrypt", &json!({"CiphertextBlob": ct}), "test"));
        assert_eq!(pt["Plaintext"], json!(B64.encode("old")), "material from before the rotation survives");
        let m = ok(aws(&url, "DescribeKey", &json!({"KeyId": mrk}), "test"));
        assert_eq!(m["KeyMetadata"]["MultiRegionConfiguration"]["ReplicaKeys"][0]["Region"], json!("eu-west-1"));
        let e = ok(aws(&url, "DescribeKey", &json!({"KeyId": ext}), "test"));
        assert_eq!((e["KeyMetadata"]["KeyState"].clone(), e["KeyMetadata"]["Origin"].clone()), (json!("PendingImport"), json!("EXTERNAL")));
        let v = ok(aws(&url, "VerifyMac", &json!({"KeyId": hmac, "Message": B64.encode("m"), "MacAlgorithm": "HMAC_SHA_384", "Mac": mac}), "test"));
        assert_eq!(v["MacValid"], json!(true));
    })
    .await
    .unwrap();
}
