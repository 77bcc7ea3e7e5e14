//! A real OpenID provider: Spring Authorization Server (`it/auth-server`, built by
//! `it/build.sh`), with users `alice`/`alice-pw` (groups `devs`) and `bob`/`bob-pw` (`ops`),
//! the login client `xipgate` (secret `xipgate-secret`, PKCE, no consent) and the
//! client-credentials clients `robot` (`aud` xipgate, groups `robots`) and `other`
//! (`aud` somebody-else). See it/README.md.
//!
//! Started on port 0 (the port read back from a file); ready when its discovery document
//! answers 200; killed on drop. Every call is plain blocking HTTP/1.0 over loopback, so it
//! works from sync and async tests alike.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::Value;

use super::real::{jar, read_port_file, JVM_FLAGS};
use super::{header, parse_response, raw, Response};

/// The login client every test registers its redirect URIs for.
pub const CLIENT: &str = "xipgate";
pub const CLIENT_SECRET: &str = "xipgate-secret";

/// How long the JVM may take to answer discovery (it takes ~5 s on a quiet 2-core machine).
const START_WITHIN: Duration = Duration::from_secs(120);

pub struct Idp {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Idp {
    /// Starts the provider with `redirect_uris` registered for `xipgate` (exact match,
    /// except that a 127.x.x.x URI matches on any port) and every access token living
    /// `token_ttl` (at least 1 s). Post-logout redirect URIs: the origin of each
    /// redirect URI, with path `/`.
    pub fn start(redirect_uris: &[String], token_ttl: Duration) -> Idp {
        let post_logout: Vec<String> = redirect_uris
            .iter()
            .filter_map(|u| url::Url::parse(u).ok())
            .map(|u| format!("{}/", u.origin().ascii_serialization()))
            .collect();
        Self::start_with(redirect_uris, &post_logout, token_ttl)
    }

    /// As [`Idp::start`], with the post-logout redirect URIs given.
    pub fn start_with(
        redirect_uris: &[String],
        post_logout_redirect_uris: &[String],
        token_ttl: Duration,
    ) -> Idp {
        Self::start_on(0, redirect_uris, post_logout_redirect_uris, token_ttl)
    }

    /// As [`Idp::start_with`], on `port` (0: any), for a client configured with the
    /// issuer before the provider can start (its redirect URIs name the client's port).
    pub fn start_on(
        port: u16,
        redirect_uris: &[String],
        post_logout_redirect_uris: &[String],
        token_ttl: Duration,
    ) -> Idp {
        let dir = tempfile::tempdir().expect("tempdir");
        let port_file = dir.path().join("port");
        let log = dir.path().join("auth-server.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new("java")
            .args(JVM_FLAGS)
            .arg("-jar")
            .arg(jar("auth-server"))
            .arg(format!("--server.port={port}"))
            .arg(format!("--xipgate.it.port-file={}", port_file.display()))
            .arg(format!(
                "--xipgate.redirect-uris={}",
                redirect_uris.join(",")
            ))
            .arg(format!(
                "--xipgate.post-logout-redirect-uris={}",
                post_logout_redirect_uris.join(",")
            ))
            .arg(format!("--xipgate.token-ttl={}ms", token_ttl.as_millis()))
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .stdin(Stdio::null())
            .spawn()
            .expect("start java (a JDK 17 is needed for the OpenID provider)");
        let port = read_port_file(
            &port_file,
            &mut child,
            "auth-server",
            Some(&log),
            START_WITHIN,
        );
        let mut idp = Idp { child, port, dir };
        idp.wait_ready();
        idp
    }

    /// Polls the discovery document until it answers 200.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_WITHIN;
        loop {
            if let Ok((200, _, _)) = self.try_get("/.well-known/openid-configuration") {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("auth-server exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "auth-server's discovery did not answer within {START_WITHIN:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `http://127.0.0.1:<port>`, whatever Host a request names.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("auth-server.log")
    }

    /// The discovery document (`/.well-known/openid-configuration`).
    pub fn discovery(&self) -> Value {
        self.get_json("/.well-known/openid-configuration")
    }

    /// The published key set.
    pub fn jwks(&self) -> Value {
        self.get_json("/oauth2/jwks")
    }

    /// The `kid`s JWKS publishes.
    pub fn kids(&self) -> Vec<String> {
        self.jwks()["keys"]
            .as_array()
            .map(|ks| {
                ks.iter()
                    .filter_map(|k| k["kid"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// An access token (a JWT) for a client-credentials client: `robot`/`robot-secret`
    /// (`aud` xipgate, groups robots) or `other`/`other-secret` (`aud` somebody-else).
    pub fn client_credentials(&self, client: &str, secret: &str) -> String {
        let (status, body) = self.token(client, secret, &[("grant_type", "client_credentials")]);
        assert_eq!(status, 200, "client_credentials for {client}: {body}");
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token in {body}"))
            .to_string()
    }

    /// POST to the token endpoint with HTTP Basic client authentication: status and JSON.
    pub fn token(&self, client: &str, secret: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let basic = STANDARD.encode(format!("{client}:{secret}"));
        let (status, _, body) = self.post_form(
            "/oauth2/token",
            form,
            &[("Authorization", &format!("Basic {basic}"))],
        );
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// A new RSA key signs from now on; the old ones stay in JWKS. Returns the new kid.
    pub fn rotate_key(&self) -> String {
        let (status, _, body) = self.post_form("/test/keys/rotate", &[], &[]);
        assert_eq!(status, 200, "rotate: {body}");
        let v: Value = serde_json::from_str(&body).expect("rotate answer");
        v["current"].as_str().expect("current kid").to_string()
    }

    /// Unpublishes every key but the current one (tokens they signed stop verifying).
    /// Returns the kids dropped.
    pub fn drop_old_keys(&self) -> Vec<String> {
        let (status, _, body) = self.post_form("/test/keys/drop-old", &[], &[]);
        assert_eq!(status, 200, "drop-old: {body}");
        let v: Value = serde_json::from_str(&body).expect("drop-old answer");
        v["dropped"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A user's whole authorization-code login as a browser would do it, by plain HTTP:
    /// authorize (PKCE S256, `nonce`) → login form (with its CSRF token) → the redirect
    /// to `redirect_uri` with the code → the token exchange. Returns the token response
    /// (`id_token`, `access_token`, `refresh_token`).
    pub fn login(&self, user: &str, password: &str, redirect_uri: &str, nonce: &str) -> Value {
        self.login_in(&mut Session::default(), user, password, redirect_uri, nonce)
    }

    /// As [`Idp::login`] in a browser `session` of the provider's: one already logged in
    /// gets its code without the login form (single sign-on).
    pub fn login_in(
        &self,
        session: &mut Session,
        user: &str,
        password: &str,
        redirect_uri: &str,
        nonce: &str,
    ) -> Value {
        let (code, verifier) = self.authorize_code(session, user, password, redirect_uri, nonce);
        let (status, body) = self.token(
            CLIENT,
            CLIENT_SECRET,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", &verifier),
            ],
        );
        assert_eq!(status, 200, "code exchange: {body}");
        body
    }

    /// The front-channel half of [`Idp::login_in`]: the authorization code the provider
    /// redirects to `redirect_uri` with (its `state` checked), and the PKCE verifier the
    /// token exchange needs. Logs in with the form when `session` is not logged in yet.
    pub fn authorize_code(
        &self,
        session: &mut Session,
        user: &str,
        password: &str,
        redirect_uri: &str,
        nonce: &str,
    ) -> (String, String) {
        let verifier = random_b64(32);
        let state = random_b64(16);
        let authorize = self.authorize_url(redirect_uri, nonce, &state, &pkce_challenge(&verifier));
        let (status, headers, body) = session.get(self.addr(), &authorize);
        assert_eq!(status, 302, "authorize: {body}");
        let mut to = header(&headers, "location")
            .expect("a redirect")
            .to_string();
        if !to.starts_with(redirect_uri) {
            let (status, _, page) = session.get(self.addr(), &to);
            assert_eq!(status, 200, "login form at {to}");
            let csrf = hidden_input(&page, "_csrf").expect("a CSRF token in the login form");
            let (status, headers, body) = session.post_form(
                self.addr(),
                "/login",
                &[("username", user), ("password", password), ("_csrf", &csrf)],
            );
            assert_eq!(status, 302, "login as {user}: {body}");
            let back = header(&headers, "location").expect("a redirect after login");
            assert!(
                !back.contains("error"),
                "login as {user} failed: redirected to {back}"
            );
            let (status, headers, body) = session.get(self.addr(), back);
            assert_eq!(status, 302, "authorize with a session: {body}");
            to = header(&headers, "location")
                .expect("a redirect to the client")
                .to_string();
        }
        assert!(
            to.starts_with(redirect_uri),
            "redirected to {to}, not {redirect_uri}"
        );
        let to = url::Url::parse(&to).expect("redirect URL");
        let param = |name: &str| {
            to.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        assert_eq!(
            param("state").as_deref(),
            Some(state.as_str()),
            "state in {to}"
        );
        let code = param("code").unwrap_or_else(|| panic!("no code in {to}"));
        (code, verifier)
    }

    /// RP-initiated logout (the discovery document's `end_session_endpoint`) in
    /// `session`: the provider's answer (a 302 to `post_logout_redirect_uri` with
    /// `state` when it accepts).
    pub fn logout(
        &self,
        session: &mut Session,
        id_token: &str,
        post_logout_redirect_uri: &str,
        state: &str,
    ) -> Response {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("id_token_hint", id_token)
            .append_pair("post_logout_redirect_uri", post_logout_redirect_uri)
            .append_pair("state", state)
            .finish();
        session.get(self.addr(), &format!("/connect/logout?{query}"))
    }

    /// The authorization request URL for `xipgate` (scopes openid profile email).
    pub fn authorize_url(
        &self,
        redirect_uri: &str,
        nonce: &str,
        state: &str,
        challenge: &str,
    ) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", CLIENT)
            .append_pair("scope", "openid profile email")
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        format!("{}/oauth2/authorize?{query}", self.issuer())
    }

    fn get_json(&self, path: &str) -> Value {
        let (status, _, body) = self.try_get(path).expect("auth-server answers");
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// A GET (`path` or absolute URL on this server).
    pub fn try_get(&self, path: &str) -> std::io::Result<Response> {
        request(self.addr(), "GET", path, &[], None)
    }

    fn post_form(&self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Response {
        let body = form_body(form);
        let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        request(self.addr(), "POST", path, &all, Some(&body)).expect("auth-server answers")
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser's side of a login: `Accept: text/html`, and the provider's session cookie
/// carried between the steps.
#[derive(Default)]
pub struct Session {
    cookie: Option<String>,
}

impl Session {
    pub fn get(&mut self, addr: SocketAddr, url: &str) -> Response {
        let cookie = self.cookie.clone();
        let mut headers = vec![("Accept", "text/html")];
        headers.extend(cookie.iter().map(|c| ("Cookie", c.as_str())));
        let r = request(addr, "GET", url, &headers, None).expect("auth-server answers");
        self.keep(&r);
        r
    }

    pub fn post_form(&mut self, addr: SocketAddr, url: &str, form: &[(&str, &str)]) -> Response {
        let cookie = self.cookie.clone();
        let mut headers = vec![
            ("Accept", "text/html"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        headers.extend(cookie.iter().map(|c| ("Cookie", c.as_str())));
        let r = request(addr, "POST", url, &headers, Some(&form_body(form))).expect("answers");
        self.keep(&r);
        r
    }

    fn keep(&mut self, (_, headers, _): &Response) {
        for (k, v) in headers {
            if k == "set-cookie" && v.starts_with("IDPSESSION=") {
                self.cookie = v.split(';').next().map(str::to_string);
            }
        }
    }
}

/// One HTTP/1.0 request (so the answer is never chunked), `target` a path or an absolute
/// URL on `addr`.
fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<Response> {
    let path = match url::Url::parse(target) {
        Ok(u) => match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        },
        Err(_) => target.to_string(),
    };
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    Ok(parse_response(&raw(addr, req.as_bytes())?))
}

fn form_body(form: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in form {
        s.append_pair(k, v);
    }
    s.finish()
}

/// The value of `<input name="NAME" ... value="...">` in a page.
fn hidden_input(page: &str, name: &str) -> Option<String> {
    let at = page.find(&format!("name=\"{name}\""))?;
    let tag_end = at + page[at..].find('>')?;
    let tag = &page[at..tag_end];
    let v = tag.find("value=\"")? + "value=\"".len();
    let len = tag[v..].find('"')?;
    Some(tag[v..v + len].to_string())
}

/// `n` random bytes, base64url without padding (PKCE verifiers, states, nonces).
pub fn random_b64(n: usize) -> String {
    use ring::rand::SecureRandom;
    let mut bytes = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("random bytes");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The S256 code challenge of a PKCE verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// A JWT's header and claims, decoded without verification.
pub fn jwt_parts(jwt: &str) -> (Value, Value) {
    let mut parts = jwt.split('.');
    let mut next = || -> Value {
        let part = parts.next().unwrap_or_else(|| panic!("not a JWT: {jwt}"));
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .unwrap_or_else(|e| panic!("not base64url ({e}): {jwt}"));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {jwt}"))
    };
    let header = next();
    (header, next())
}

/// Whether `jwt`'s RS256 signature verifies with the key of its `kid` in `jwks`.
pub fn verifies(jwt: &str, jwks: &Value) -> bool {
    let (header, _) = jwt_parts(jwt);
    let Some(key) = jwks["keys"]
        .as_array()
        .and_then(|ks| ks.iter().find(|k| k["kid"] == header["kid"]))
    else {
        return false;
    };
    let b64 = |v: &Value| URL_SAFE_NO_PAD.decode(v.as_str().unwrap_or_default());
    let (Ok(n), Ok(e)) = (b64(&key["n"]), b64(&key["e"])) else {
        return false;
    };
    let Some((signed, sig)) = jwt.rsplit_once('.') else {
        return false;
    };
    let Ok(sig) = URL_SAFE_NO_PAD.decode(sig) else {
        return false;
    };
    ring::signature::RsaPublicKeyComponents { n, e }
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            signed.as_bytes(),
            &sig,
        )
        .is_ok()
}
