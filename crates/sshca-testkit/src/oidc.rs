//! A local OpenID Connect provider for the login tests, over HTTPS on
//! 127.0.0.1 with an OS-chosen port: discovery, the authorization code
//! grant with PKCE (S256 only, the `iss` response parameter of RFC 9207),
//! the device authorization grant (RFC 8628) with a scripted sequence of
//! poll answers, and the JWKS of the ES256 key its ID tokens are signed
//! with. The "person" who signs in is [`Provider::set_user`]; approving
//! is a GET of the authorization URL ([`Provider::approve`]).

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// What the token endpoint answers to one device-code poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevicePoll {
    /// `authorization_pending`.
    Pending,
    /// `slow_down`.
    SlowDown,
    /// `access_denied`.
    Denied,
    /// `expired_token`.
    Expired,
    /// The person approved: tokens.
    Approve,
}

struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
}

struct State {
    issuer: String,
    /// client id → its secret, if it has one.
    clients: HashMap<String, Option<String>>,
    user: String,
    codes: HashMap<String, Grant>,
    device_script: VecDeque<DevicePoll>,
    device_codes: HashMap<String, String>,
    /// Times of the device-code polls.
    polls: Vec<Instant>,
    /// `(method, path)` of every request.
    log: Vec<(String, String)>,
    /// The `iss` put on the redirect (default: the issuer).
    response_iss: Option<String>,
    advertise_device: bool,
    id_token_ttl: u64,
    key: EncodingKey,
    kid: String,
    jwks: String,
}

/// The provider, stopped when dropped.
pub struct Provider {
    /// `https://127.0.0.1:PORT` (the issuer).
    pub url: String,
    /// The PEM of the CA its TLS certificate chains to.
    pub ca: PathBuf,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.url.trim_start_matches("https://"));
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Provider {
    /// Starts a provider; its TLS CA goes to `dir/oidc-ca.pem`. One client,
    /// `sshca-cli`, is registered without a secret.
    pub fn start(dir: &Path) -> Provider {
        let (tls, ca_path) = crate::tls::loopback_server(dir, "test OIDC CA", "oidc-ca.pem");

        use p256::pkcs8::EncodePrivateKey;
        let secret = p256::SecretKey::random(&mut rand_core::OsRng);
        let key = EncodingKey::from_ec_der(secret.to_pkcs8_der().unwrap().as_bytes());
        let kid = random_hex(4);
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some(kid.clone());
        let jwks = serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            issuer: url.clone(),
            clients: HashMap::from([("sshca-cli".to_owned(), None)]),
            user: "alice@example.com".into(),
            codes: HashMap::new(),
            device_script: VecDeque::new(),
            device_codes: HashMap::new(),
            polls: Vec::new(),
            log: Vec::new(),
            response_iss: None,
            advertise_device: true,
            id_token_ttl: 300,
            key,
            kid,
            jwks,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (st, tls) = (st.clone(), tls.clone());
                std::thread::spawn(move || serve(conn, tls, st));
            }
        });
        Provider {
            url,
            ca: ca_path,
            state,
            stop,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Registers a client, with a secret the token endpoint then asks for.
    pub fn add_client(&self, id: &str, secret: Option<&str>) {
        self.state()
            .clients
            .insert(id.to_owned(), secret.map(str::to_owned));
    }

    /// The person who signs in from now on (`sub` and `email`).
    pub fn set_user(&self, user: &str) {
        self.state().user = user.to_owned();
    }

    /// The answers to the next device-code polls (then: approved).
    pub fn script_device(&self, polls: &[DevicePoll]) {
        self.state().device_script = polls.iter().copied().collect();
    }

    /// The `iss` the authorization response carries (RFC 9207).
    pub fn set_response_iss(&self, iss: &str) {
        self.state().response_iss = Some(iss.to_owned());
    }

    /// Whether discovery names a device authorization endpoint.
    pub fn set_device_endpoint(&self, on: bool) {
        self.state().advertise_device = on;
    }

    /// How long the ID tokens it issues are valid.
    pub fn set_id_token_ttl(&self, secs: u64) {
        self.state().id_token_ttl = secs;
    }

    /// When each device-code poll arrived.
    pub fn polls(&self) -> Vec<Instant> {
        self.state().polls.clone()
    }

    /// `METHOD PATH` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.state()
            .log
            .iter()
            .map(|(m, p)| format!("{m} {p}"))
            .collect()
    }

    /// Plays the person's browser: GETs the authorization URL and returns
    /// where the provider redirects it (the client's callback), without
    /// following it.
    pub async fn approve(&self, authorization_url: &str) -> String {
        let c = crate::tls::client_builder(&self.ca, None)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let resp = c.get(authorization_url).send().await.unwrap();
        assert_eq!(
            resp.status().as_u16(),
            302,
            "{}",
            resp.text().await.unwrap_or_default()
        );
        resp.headers()
            .get("location")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    }

    fn id_token(st: &State, client_id: &str, nonce: Option<&str>) -> String {
        let t = now();
        let mut claims = json!({
            "iss": st.issuer,
            "sub": st.user,
            "email": st.user,
            "email_verified": true,
            "aud": client_id,
            "iat": t,
            "exp": t + st.id_token_ttl,
        });
        if let Some(n) = nonce {
            claims["nonce"] = json!(n);
        }
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(st.kid.clone());
        jsonwebtoken::encode(&h, &claims, &st.key).unwrap()
    }
}

struct Req {
    method: String,
    path: String,
    query: HashMap<String, String>,
    form: HashMap<String, String>,
    basic: Option<(String, String)>,
}

fn parse_pairs(s: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(s.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn read_req(r: &mut impl BufRead) -> Option<Req> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut len = 0usize;
    let mut basic = None;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => len = value.parse().ok()?,
            "authorization" => {
                if let Some(b) = value.strip_prefix("Basic ") {
                    let raw = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
                    let text = String::from_utf8(raw).ok()?;
                    let (id, secret) = text.split_once(':')?;
                    let dec = |s: &str| {
                        url::form_urlencoded::parse(format!("x={s}").as_bytes())
                            .next()
                            .map(|(_, v)| v.into_owned())
                            .unwrap_or_default()
                    };
                    basic = Some((dec(id), dec(secret)));
                }
            }
            _ => {}
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    Some(Req {
        method,
        path: path.to_owned(),
        query: parse_pairs(query),
        form: parse_pairs(&String::from_utf8_lossy(&body)),
        basic,
    })
}

fn serve(conn: TcpStream, tls: Arc<rustls::ServerConfig>, state: Arc<Mutex<State>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(server) = rustls::ServerConnection::new(tls) else {
        return;
    };
    let stream = rustls::StreamOwned::new(server, conn);
    let mut reader = BufReader::new(stream);
    let Some(req) = read_req(&mut reader) else {
        return;
    };
    let (status, headers, body) = answer(&req, &state);
    let mut stream = reader.into_inner();
    let mut out = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    let _ = stream.write_all(out.as_bytes());
    let _ = stream.flush();
    stream.conn.send_close_notify();
    let _ = stream.flush();
}

fn json_answer(status: &str, v: Value) -> (String, Vec<(String, String)>, String) {
    (
        status.to_owned(),
        vec![("Content-Type".into(), "application/json".into())],
        v.to_string(),
    )
}

fn oauth_error(code: &str) -> (String, Vec<(String, String)>, String) {
    json_answer("400 Bad Request", json!({"error": code}))
}

fn answer(req: &Req, state: &Mutex<State>) -> (String, Vec<(String, String)>, String) {
    let mut st = state.lock().unwrap();
    st.log.push((req.method.clone(), req.path.clone()));
    let issuer = st.issuer.clone();
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/.well-known/openid-configuration") => {
            let mut v = json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/authorize"),
                "token_endpoint": format!("{issuer}/token"),
                "jwks_uri": format!("{issuer}/jwks"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
                "code_challenge_methods_supported": ["S256"],
                "authorization_response_iss_parameter_supported": true,
                "grant_types_supported": ["authorization_code", "urn:ietf:params:oauth:grant-type:device_code"],
            });
            if st.advertise_device {
                v["device_authorization_endpoint"] = json!(format!("{issuer}/device"));
            }
            json_answer("200 OK", v)
        }
        ("GET", "/jwks") => json_answer("200 OK", serde_json::from_str(&st.jwks).unwrap()),
        ("GET", "/authorize") => {
            let q = &req.query;
            let get = |k: &str| q.get(k).cloned().unwrap_or_default();
            let client_id = get("client_id");
            let redirect = get("redirect_uri");
            let bad = |m: &str| ("400 Bad Request".to_owned(), vec![], m.to_owned());
            if !st.clients.contains_key(&client_id) {
                return bad("unknown client");
            }
            if get("response_type") != "code" || get("code_challenge_method") != "S256" {
                return bad("code flow with S256 only");
            }
            if !redirect.starts_with("http://127.0.0.1:") || get("state").is_empty() {
                return bad("loopback redirect and state required");
            }
            if !get("scope").split(' ').any(|s| s == "openid") {
                return bad("openid scope required");
            }
            let code = random_hex(16);
            st.codes.insert(
                code.clone(),
                Grant {
                    client_id,
                    redirect_uri: redirect.clone(),
                    challenge: get("code_challenge"),
                    nonce: q.get("nonce").cloned(),
                },
            );
            let iss = st.response_iss.clone().unwrap_or(issuer);
            let location = format!(
                "{redirect}?{}",
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("code", &code)
                    .append_pair("state", &get("state"))
                    .append_pair("iss", &iss)
                    .finish()
            );
            (
                "302 Found".into(),
                vec![("Location".into(), location)],
                String::new(),
            )
        }
        ("POST", "/device") => {
            let client_id = req
                .form
                .get("client_id")
                .cloned()
                .or(req.basic.clone().map(|b| b.0));
            let Some(client_id) = client_id.filter(|c| st.clients.contains_key(c)) else {
                return oauth_error("invalid_client");
            };
            let device_code = random_hex(16);
            st.device_codes.insert(device_code.clone(), client_id);
            json_answer(
                "200 OK",
                json!({
                    "device_code": device_code,
                    "user_code": "WDJB-MJHT",
                    "verification_uri": format!("{issuer}/activate"),
                    "verification_uri_complete": format!("{issuer}/activate?user_code=WDJB-MJHT"),
                    "expires_in": 600,
                    "interval": 1,
                }),
            )
        }
        ("POST", "/token") => {
            let f = &req.form;
            let client_id = f
                .get("client_id")
                .cloned()
                .or(req.basic.as_ref().map(|b| b.0.clone()))
                .unwrap_or_default();
            let Some(secret) = st.clients.get(&client_id).cloned() else {
                return oauth_error("invalid_client");
            };
            if let Some(secret) = secret {
                let given = f
                    .get("client_secret")
                    .cloned()
                    .or(req.basic.as_ref().map(|b| b.1.clone()));
                if given.as_deref() != Some(secret.as_str()) {
                    return oauth_error("invalid_client");
                }
            }
            match f.get("grant_type").map(String::as_str) {
                Some("authorization_code") => {
                    let Some(g) = f.get("code").and_then(|c| st.codes.remove(c)) else {
                        return oauth_error("invalid_grant");
                    };
                    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
                    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(Sha256::digest(verifier.as_bytes()));
                    if g.client_id != client_id
                        || f.get("redirect_uri") != Some(&g.redirect_uri)
                        || challenge != g.challenge
                    {
                        return oauth_error("invalid_grant");
                    }
                    let id = Provider::id_token(&st, &client_id, g.nonce.as_deref());
                    json_answer(
                        "200 OK",
                        json!({"access_token": random_hex(16), "token_type": "Bearer",
                               "expires_in": 300, "id_token": id, "refresh_token": random_hex(16)}),
                    )
                }
                Some("urn:ietf:params:oauth:grant-type:device_code") => {
                    st.polls.push(Instant::now());
                    let known = f
                        .get("device_code")
                        .and_then(|c| st.device_codes.get(c))
                        .is_some_and(|c| *c == client_id);
                    if !known {
                        return oauth_error("invalid_grant");
                    }
                    match st.device_script.pop_front().unwrap_or(DevicePoll::Approve) {
                        DevicePoll::Pending => oauth_error("authorization_pending"),
                        DevicePoll::SlowDown => oauth_error("slow_down"),
                        DevicePoll::Denied => oauth_error("access_denied"),
                        DevicePoll::Expired => oauth_error("expired_token"),
                        DevicePoll::Approve => {
                            let id = Provider::id_token(&st, &client_id, None);
                            json_answer(
                                "200 OK",
                                json!({"access_token": random_hex(16), "token_type": "Bearer",
                                       "expires_in": 300, "id_token": id}),
                            )
                        }
                    }
                }
                _ => oauth_error("unsupported_grant_type"),
            }
        }
        _ => ("404 Not Found".into(), vec![], "not found".into()),
    }
}
