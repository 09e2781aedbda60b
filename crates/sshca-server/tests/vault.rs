//! Vault's SSH secrets engine API under `[server] vault_mount`: a Vault
//! client (vaultrs) signs, reads the CA key and gets errors in Vault's
//! shape with the policy still deciding.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use serde_json::{json, Value};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_clients_get_certificates() {
    use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
    use vaultrs::error::ClientError;
    let s = setup("vault_mount = \"ssh\"", "");
    let dir = &s.dir;
    let me = user();
    let svc = Service::start(&s.config).await;
    let key = pubkey(dir, "id_vault");
    let vault = |token: &str| {
        VaultClient::new(
            VaultClientSettingsBuilder::default()
                .address(&svc.url)
                .token(token)
                .ca_certs(vec![s.tls_ca.display().to_string()])
                .build()
                .unwrap(),
        )
        .unwrap()
    };
    let ca_line = s.ca_line();
    {
        let client = vault(&s.ci);
        // `vault write ssh/sign/ci public_key=@id.pub valid_principals=ME ttl=30m`
        let mut opts = vaultrs::api::ssh::requests::SignSSHKeyRequest::builder();
        opts.valid_principals(format!("{me},alice"))
            .ttl("30m")
            .cert_type("user");
        let signed = vaultrs::ssh::ca::sign(&client, "ssh", "ci", &key, Some(&mut opts))
            .await
            .unwrap();
        assert!(signed.signed_key.ends_with('\n'));
        let cert = sshca_core::Certificate::from_openssh(signed.signed_key.trim()).unwrap();
        assert_eq!(signed.serial_number, format!("{:016x}", cert.serial()));
        assert_eq!(signed.serial_number.len(), 16);
        assert_eq!(cert.principals(), [me.clone(), "alice".into()]);
        assert!(cert.valid_before() - cert.valid_after() <= 1800 + 300);
        std::fs::write(dir.join("id_vault-cert.pub"), &signed.signed_key).unwrap();

        // The CA key, as Vault's clients read it.
        let ca = vaultrs::ssh::ca::read(&client, "ssh").await.unwrap();
        assert_eq!(
            ca.public_key.split_whitespace().take(2).collect::<Vec<_>>(),
            ca_line.split_whitespace().take(2).collect::<Vec<_>>()
        );
        let r = s
            .client(None)
            .get(format!("{}/v1/ssh/public_key", svc.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        let text = r.text().await.unwrap();
        assert!(
            text.ends_with('\n')
                && text.starts_with(
                    ca_line
                        .split_whitespace()
                        .take(2)
                        .collect::<Vec<_>>()
                        .join(" ")
                        .as_str()
                ),
            "{text}"
        );

        // Errors in Vault's shape, with the policy still deciding.
        let e = vaultrs::ssh::ca::sign(&vault("sshca_wrong"), "ssh", "ci", &key, None)
            .await
            .unwrap_err();
        match e {
            ClientError::APIError { code, errors } => {
                assert_eq!(code, 401);
                assert!(errors[0].contains("not valid"), "{errors:?}");
            }
            other => panic!("{other:?}"),
        }
        let mut opts = vaultrs::api::ssh::requests::SignSSHKeyRequest::builder();
        opts.valid_principals("mallory");
        match vaultrs::ssh::ca::sign(&client, "ssh", "ci", &key, Some(&mut opts))
            .await
            .unwrap_err()
        {
            ClientError::APIError { code, errors } => {
                assert_eq!(code, 422);
                assert!(errors[0].contains("`mallory` is not allowed"), "{errors:?}");
            }
            other => panic!("{other:?}"),
        }
        match vaultrs::ssh::ca::sign(&vault(&s.other), "ssh", "ci", &key, None)
            .await
            .unwrap_err()
        {
            ClientError::APIError { code, .. } => assert_eq!(code, 403),
            other => panic!("{other:?}"),
        }
        match vaultrs::ssh::ca::sign(&client, "ssh", "nope", &key, None)
            .await
            .unwrap_err()
        {
            ClientError::APIError { code, .. } => assert_eq!(code, 404),
            other => panic!("{other:?}"),
        }
        let mut opts = vaultrs::api::ssh::requests::SignSSHKeyRequest::builder();
        opts.ttl("forever");
        match vaultrs::ssh::ca::sign(&client, "ssh", "ci", &key, Some(&mut opts))
            .await
            .unwrap_err()
        {
            ClientError::APIError { code, errors } => {
                assert_eq!(code, 400);
                assert!(errors[0].contains("ttl"), "{errors:?}");
            }
            other => panic!("{other:?}"),
        }

        // Fields Vault would ignore come back as a warning, as Vault says it.
        let r = s
            .client(None)
            .post(format!("{}/v1/ssh/sign/ci", svc.url))
            .header("x-vault-token", &s.ci)
            .json(&json!({"public_key": key, "ttl": 600, "valid_after": "soon"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["lease_id"], "");
        assert_eq!(v["renewable"], false);
        assert!(
            v["warnings"][0].as_str().unwrap().contains("[valid_after]"),
            "{v}"
        );
        // A malformed body: 400 in Vault's shape.
        let r = s
            .client(None)
            .post(format!("{}/v1/ssh/sign/ci", svc.url))
            .header("x-vault-token", &s.ci)
            .body("public_key=x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        let v: Value = r.json().await.unwrap();
        assert!(v["errors"][0].is_string(), "{v}");
    }
    svc.stop().await;

    // ssh-keygen reads the signed key.
    let cert = dir.join("id_vault-cert.pub");
    let shown = String::from_utf8(
        run(std::process::Command::new("ssh-keygen")
            .arg("-L")
            .arg("-f")
            .arg(&cert))
        .stdout,
    )
    .unwrap();
    assert!(shown.contains("Key ID: \"ci\""), "{shown}");
}
