//! EC2's IMDSv2: a session token from `PUT /latest/api/token`, then the
//! instance identity document and its signatures (`signature`: base64
//! RSA/SHA-256 over the document; `rsa2048`: PKCS#7 with RSA/SHA-256;
//! `pkcs7`: PKCS#7 with SHA-1, which careful verifiers refuse) with the
//! token in `X-aws-ec2-metadata-token`. IMDSv1 (no token) gets 401, as on
//! an instance that requires IMDSv2.

use cms::builder::{SignedDataBuilder, SignerInfoBuilder};
use cms::cert::IssuerAndSerialNumber;
use cms::content_info::ContentInfo;
use cms::signed_data::{EncapsulatedContentInfo, SignerIdentifier};
use der::{Decode, Encode};
use hyper::{Method, StatusCode};
use rand_core::RngCore;
use serde_json::json;
use spki::AlgorithmIdentifierOwned;

use super::{pick, text, wrapped_b64, AwsInstance, Signer};
use crate::state::{read, write, State};
use crate::{Reply, Request};

/// The longest session token IMDSv2 hands out (6 hours).
const MAX_TTL: u64 = 21_600;

pub(super) fn handle(state: &State, signer: &Signer, req: &Request) -> Reply {
    if req.path == "/latest/api/token" {
        return session_token(state, req);
    }
    if req.method != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    let instance = match session(state, req) {
        Ok(i) => i,
        Err(StatusCode::NOT_FOUND) => return text(StatusCode::NOT_FOUND, "no such instance"),
        Err(_) => return text(StatusCode::UNAUTHORIZED, "Unauthorized"),
    };
    let doc = document(&instance, signer.started);
    let answer = match req.path.trim_end_matches('/') {
        "/latest/dynamic/instance-identity/document" => Ok(doc),
        "/latest/dynamic/instance-identity/signature" => {
            signer.sign(doc.as_bytes(), false).map(|s| wrapped_b64(&s))
        }
        "/latest/dynamic/instance-identity/rsa2048" => {
            pkcs7(signer, doc.as_bytes(), false).map(|d| wrapped_b64(&d))
        }
        "/latest/dynamic/instance-identity/pkcs7" => {
            pkcs7(signer, doc.as_bytes(), true).map(|d| wrapped_b64(&d))
        }
        "/latest/meta-data/instance-id" => Ok(instance.instance_id.clone()),
        "/latest/meta-data/placement/region" => Ok(instance.region.clone()),
        "/latest/meta-data/local-ipv4" => Ok(instance.private_ip.clone()),
        _ => return text(StatusCode::NOT_FOUND, "Not Found"),
    };
    match answer {
        Ok(body) => text(StatusCode::OK, body),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

fn session_token(state: &State, req: &Request) -> Reply {
    if req.method != Method::PUT {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    let ttl = req
        .header("x-aws-ec2-metadata-token-ttl-seconds")
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(ttl) = ttl.filter(|t| (1..=MAX_TTL).contains(t)) else {
        return text(StatusCode::BAD_REQUEST, "Bad Request");
    };
    let instances = read(&state.metadata).instances.aws.clone();
    let Some(instance) = pick(state, req, "aws", &instances, |i| {
        [i.instance_id.as_str(), i.instance_id.as_str()]
    }) else {
        return text(StatusCode::NOT_FOUND, "no such instance");
    };
    let mut raw = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut raw);
    let token = crate::util::b64url(&raw);
    let t = state.now();
    let mut m = write(&state.metadata);
    m.imds_tokens.retain(|_, (_, exp)| *exp > t);
    m.imds_tokens
        .insert(token.clone(), (instance.instance_id.clone(), t + ttl));
    drop(m);
    let Reply::Send(mut r) = text(StatusCode::OK, token) else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    if let Ok(v) = hyper::header::HeaderValue::from_str(&ttl.to_string()) {
        r.headers_mut()
            .insert("x-aws-ec2-metadata-token-ttl-seconds", v);
    }
    Reply::Send(r)
}

/// The instance of the request's session token; 401 without a valid one,
/// 404 when its instance is gone (the seed was reloaded).
fn session(state: &State, req: &Request) -> Result<AwsInstance, StatusCode> {
    let token = req
        .header("x-aws-ec2-metadata-token")
        .ok_or(StatusCode::UNAUTHORIZED)?;
    let m = read(&state.metadata);
    let (id, exp) = m.imds_tokens.get(token).ok_or(StatusCode::UNAUTHORIZED)?;
    if *exp <= state.now() {
        return Err(StatusCode::UNAUTHORIZED);
    }
    m.instances
        .aws
        .iter()
        .find(|i| &i.instance_id == id)
        .cloned()
        .ok_or(StatusCode::NOT_FOUND)
}

/// The identity document, laid out as EC2 prints it.
fn document(i: &AwsInstance, started: u64) -> String {
    let az = i
        .availability_zone
        .clone()
        .unwrap_or_else(|| format!("{}a", i.region));
    let pending = i.pending_time.unwrap_or(started);
    let time = crate::util::rfc3339(pending).replace(".000000000Z", "Z");
    let v = json!({
        "accountId": i.account_id,
        "architecture": "x86_64",
        "availabilityZone": az,
        "billingProducts": null,
        "devpayProductCodes": null,
        "marketplaceProductCodes": null,
        "imageId": i.image_id,
        "instanceId": i.instance_id,
        "instanceType": i.instance_type,
        "kernelId": null,
        "pendingTime": time,
        "privateIp": i.private_ip,
        "ramdiskId": null,
        "region": i.region,
        "version": "2017-09-30",
    });
    serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
}

/// PKCS#7 SignedData over `doc` (encapsulated), with the content type,
/// signing time and message digest as signed attributes and no
/// certificates, as EC2 sends it.
fn pkcs7(signer: &Signer, doc: &[u8], sha1: bool) -> Result<Vec<u8>, String> {
    if sha1 {
        pkcs7_with::<sha1::Sha1>(signer, doc)
    } else {
        pkcs7_with::<sha2::Sha256>(signer, doc)
    }
}

fn pkcs7_with<D>(signer: &Signer, doc: &[u8]) -> Result<Vec<u8>, String>
where
    D: sha2::Digest + const_oid::AssociatedOid,
    rsa::pkcs1v15::SigningKey<D>: spki::DynSignatureAlgorithmIdentifier
        + rsa::signature::Keypair
        + rsa::signature::Signer<rsa::pkcs1v15::Signature>,
{
    let fail = |e: &dyn std::fmt::Display| format!("cannot build the PKCS#7 signature: {e}");
    let cert = x509_cert::Certificate::from_der(&signer.certificate_der).map_err(|e| fail(&e))?;
    let content = EncapsulatedContentInfo {
        econtent_type: const_oid::db::rfc5911::ID_DATA,
        econtent: Some(der::Any::new(der::Tag::OctetString, doc).map_err(|e| fail(&e))?),
    };
    let sid = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
        issuer: cert.tbs_certificate.issuer.clone(),
        serial_number: cert.tbs_certificate.serial_number.clone(),
    });
    let digest = AlgorithmIdentifierOwned {
        oid: D::OID,
        parameters: None,
    };
    let key = rsa::pkcs1v15::SigningKey::<D>::new(signer.key.clone());
    let mut info =
        SignerInfoBuilder::new(&key, sid, digest.clone(), &content, None).map_err(|e| fail(&e))?;
    info.add_signed_attribute(cms::builder::create_signing_time_attribute().map_err(|e| fail(&e))?)
        .map_err(|e| fail(&e))?;
    let built: ContentInfo = SignedDataBuilder::new(&content)
        .add_digest_algorithm(digest)
        .map_err(|e| fail(&e))?
        .add_signer_info::<_, rsa::pkcs1v15::Signature>(info)
        .map_err(|e| fail(&e))?
        .build()
        .map_err(|e| fail(&e))?;
    built.to_der().map_err(|e| fail(&e))
}
