//! Bearer authentication for the HTTP services: opaque tokens whose SHA-256 hashes sit in a
//! file, and JWTs checked against a configured key. Writes need a token once either is
//! configured; reads only when asked to (`--auth-reads`). `/status` and `/metrics` never do,
//! since load balancers and scrapers carry no credentials.
//!
//! A presented token is never stored, logged or echoed: the opaque kind is hashed on arrival
//! and compared in constant time against every stored hash; a JWT is only decoded.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::config::Secret;
use crate::problem::Problem;

/// Scope a JWT needs for writes unless configured otherwise.
pub const DEFAULT_WRITE_SCOPE: &str = "points:write";
/// Scope a JWT needs for reads, when reads need a token at all.
pub const DEFAULT_READ_SCOPE: &str = "points:read";

/// The realm named in every `WWW-Authenticate` challenge.
const REALM: &str = "geoledger";

/// Shortest accepted HS256 secret, in bytes: RFC 7518 §3.2 asks for a key at least as long as
/// the hash output.
const MIN_HMAC_SECRET: usize = 32;

/// Paths that never need a token: health checks and scrapes carry none.
const PUBLIC_PATHS: [&str; 2] = ["/status", "/metrics"];

/// Who may write (and, optionally, read), from flags or `GEOLEDGER_AUTH_*` variables. With
/// nothing set, every request is let through.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthConfig {
    /// File of accepted opaque tokens: one SHA-256 hex digest of a token per line, optionally
    /// followed by a label naming its holder; `#` starts a comment. The tokens themselves are
    /// never stored.
    #[arg(long, env = "GEOLEDGER_AUTH_TOKENS_FILE")]
    pub auth_tokens_file: Option<PathBuf>,
    /// File holding the HS256 secret JWTs are signed with (at least 32 bytes; one trailing
    /// newline is ignored).
    #[arg(long, env = "GEOLEDGER_AUTH_JWT_SECRET_FILE")]
    pub auth_jwt_secret_file: Option<PathBuf>,
    /// The HS256 secret itself, for platforms that hand secrets over as variables. Prefer the
    /// file: a flag shows in the process list.
    #[arg(long, env = "GEOLEDGER_AUTH_JWT_SECRET", hide_env_values = true)]
    pub auth_jwt_secret: Option<Secret>,
    /// PEM file of the public key JWTs are signed with: RSA (RS256) or Ed25519 (`EdDSA`).
    #[arg(long, env = "GEOLEDGER_AUTH_JWT_PUBLIC_KEY_FILE")]
    pub auth_jwt_public_key_file: Option<PathBuf>,
    /// Audience a JWT must name in `aud`; unset, `aud` is not checked.
    #[arg(long, env = "GEOLEDGER_AUTH_JWT_AUDIENCE")]
    pub auth_jwt_audience: Option<String>,
    /// Issuer a JWT must name in `iss`; unset, `iss` is not checked.
    #[arg(long, env = "GEOLEDGER_AUTH_JWT_ISSUER")]
    pub auth_jwt_issuer: Option<String>,
    /// Scope a JWT must hold (in `scope` or `scp`) to write.
    #[arg(long, env = "GEOLEDGER_AUTH_WRITE_SCOPE", default_value = DEFAULT_WRITE_SCOPE)]
    pub auth_write_scope: String,
    /// Scope a JWT must hold to read, when `--auth-reads` is on. A write scope also reads.
    #[arg(long, env = "GEOLEDGER_AUTH_READ_SCOPE", default_value = DEFAULT_READ_SCOPE)]
    pub auth_read_scope: String,
    /// Require a token on reads too (everything but `/status` and `/metrics`).
    #[arg(long, env = "GEOLEDGER_AUTH_READS")]
    pub auth_reads: bool,
}

impl Default for AuthConfig {
    /// What the command line gives without any of these flags: nothing configured, and the
    /// default scopes.
    fn default() -> Self {
        Self {
            auth_tokens_file: None,
            auth_jwt_secret_file: None,
            auth_jwt_secret: None,
            auth_jwt_public_key_file: None,
            auth_jwt_audience: None,
            auth_jwt_issuer: None,
            auth_write_scope: DEFAULT_WRITE_SCOPE.to_owned(),
            auth_read_scope: DEFAULT_READ_SCOPE.to_owned(),
            auth_reads: false,
        }
    }
}

impl AuthConfig {
    /// Whether any way of authenticating is configured.
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.auth_tokens_file.is_some()
            || self.auth_jwt_secret_file.is_some()
            || self.auth_jwt_secret.is_some()
            || self.auth_jwt_public_key_file.is_some()
    }
}

/// Why the authentication settings could not be used; the service does not start.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// A configured file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line of the tokens file is not a SHA-256 hex digest. The line is not quoted, since
    /// it might be a token pasted there by mistake.
    #[error("{path} line {line}: expected a SHA-256 hex digest (64 hex digits), then a label")]
    BadTokenLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// The tokens file names no token: every write would be refused.
    #[error("{0} holds no token hash")]
    NoTokens(PathBuf),
    /// The HS256 secret is too short to be safe.
    #[error("the JWT secret must be at least {MIN_HMAC_SECRET} bytes")]
    WeakSecret,
    /// Both a secret file and a secret value were given.
    #[error("give the JWT secret as a file or as a value, not both")]
    TwoSecrets,
    /// The public key is neither an RSA nor an Ed25519 PEM key.
    #[error("{0} is not an RSA or Ed25519 public key in PEM form")]
    BadPublicKey(PathBuf),
    /// The key material was refused by the JWT library.
    #[error("unusable JWT key")]
    Key(#[source] jsonwebtoken::errors::Error),
}

/// What a request wants to do, which decides the scope it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reading.
    Read,
    /// Changing anything.
    Write,
}

impl Access {
    fn of(method: &Method) -> Self {
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            Self::Read
        } else {
            Self::Write
        }
    }
}

/// Why a request was not let through. Only the kind is kept: never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("no bearer token")]
    Missing,
    /// An `Authorization` header that is not `Bearer <token>`.
    #[error("malformed credentials")]
    Malformed,
    /// A token nobody issued, a bad signature, or a JWT failing a check other than time.
    #[error("invalid token")]
    Invalid,
    /// A JWT past its `exp`, or before its `nbf`.
    #[error("token expired or not yet valid")]
    Expired,
    /// A valid token without the scope this request needs.
    #[error("token lacks scope {0}")]
    InsufficientScope(String),
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let (problem, challenge) = match &self {
            Self::Missing => (
                unauthorized("send a bearer token: Authorization: Bearer <token>"),
                format!("Bearer realm=\"{REALM}\""),
            ),
            Self::Malformed => (
                unauthorized("the Authorization header must be: Bearer <token>"),
                format!("Bearer realm=\"{REALM}\", error=\"invalid_request\""),
            ),
            Self::Invalid => (
                unauthorized("the bearer token is not valid"),
                format!("Bearer realm=\"{REALM}\", error=\"invalid_token\""),
            ),
            Self::Expired => (
                unauthorized("the bearer token has expired or is not valid yet"),
                format!(
                    "Bearer realm=\"{REALM}\", error=\"invalid_token\", \
                     error_description=\"expired\""
                ),
            ),
            Self::InsufficientScope(scope) => (
                Problem::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed")
                    .detail(format!("the token does not grant the scope {scope}")),
                format!(
                    "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{scope}\""
                ),
            ),
        };
        let mut response = problem.into_response();
        if let Ok(value) = HeaderValue::try_from(challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

fn unauthorized(detail: &str) -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Authentication required",
    )
    .detail(detail)
}

/// Who a request was let through as, for logs: a token's label or a JWT's `sub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal(pub String);

/// Decides whether requests may pass. Cheap to clone; build once at start-up.
#[derive(Clone)]
pub struct Authenticator {
    inner: Option<Arc<Verifier>>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            None => f.write_str("Authenticator(open)"),
            Some(v) => f
                .debug_struct("Authenticator")
                .field("tokens", &v.tokens.len())
                .field("jwt", &v.jwt.is_some())
                .field("reads", &v.reads)
                .finish(),
        }
    }
}

struct Verifier {
    tokens: Vec<TokenHash>,
    jwt: Option<JwtVerifier>,
    write_scope: String,
    read_scope: String,
    reads: bool,
}

struct TokenHash {
    digest: [u8; 32],
    label: String,
}

struct JwtVerifier {
    /// Each key with the validation its algorithm needs; the token's header picks one.
    keys: Vec<(DecodingKey, Validation)>,
}

/// The claims read from a JWT beyond what the library checks itself.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    /// RFC 8693: space-separated scopes.
    #[serde(default)]
    scope: Option<String>,
    /// The array form some issuers use instead.
    #[serde(default)]
    scp: Option<Vec<String>>,
}

impl Claims {
    fn grants(&self, scope: &str) -> bool {
        self.scope
            .as_deref()
            .is_some_and(|s| s.split_ascii_whitespace().any(|s| s == scope))
            || self.scp.iter().flatten().any(|s| s == scope)
    }
}

impl Authenticator {
    /// Lets every request through: no authentication configured.
    #[must_use]
    pub fn open() -> Self {
        Self { inner: None }
    }

    /// Reads the configured token file and keys.
    ///
    /// # Errors
    /// A file that cannot be read, a malformed token line, an empty token file, a short HS256
    /// secret or a key that is not RSA or Ed25519 PEM.
    pub fn from_config(config: &AuthConfig) -> Result<Self, AuthSetupError> {
        if !config.enabled() {
            return Ok(Self::open());
        }
        let tokens = match &config.auth_tokens_file {
            Some(path) => read_token_hashes(path)?,
            None => Vec::new(),
        };
        let jwt = JwtVerifier::from_config(config)?;
        Ok(Self {
            inner: Some(Arc::new(Verifier {
                tokens,
                jwt,
                write_scope: config.auth_write_scope.clone(),
                read_scope: config.auth_read_scope.clone(),
                reads: config.auth_reads,
            })),
        })
    }

    /// Whether writes need a token.
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Checks the request's bearer token for `access`. Passes everything when open, and
    /// reads when reads are public.
    ///
    /// # Errors
    /// The [`AuthError`] that becomes the 401 or 403 answer.
    pub fn check(
        &self,
        headers: &HeaderMap,
        access: Access,
    ) -> Result<Option<Principal>, AuthError> {
        let Some(verifier) = &self.inner else {
            return Ok(None);
        };
        if access == Access::Read && !verifier.reads {
            return Ok(None);
        }
        let token = bearer_token(headers)?;
        verifier.verify(token, access).map(Some)
    }
}

impl Verifier {
    fn verify(&self, token: &str, access: Access) -> Result<Principal, AuthError> {
        if let Some(label) = self.opaque(token) {
            // An opaque token is all or nothing: its holder may read and write.
            return Ok(Principal(label.to_owned()));
        }
        let Some(jwt) = &self.jwt else {
            return Err(AuthError::Invalid);
        };
        let claims = jwt.decode(token)?;
        let granted = match access {
            Access::Write => claims.grants(&self.write_scope),
            Access::Read => claims.grants(&self.read_scope) || claims.grants(&self.write_scope),
        };
        if !granted {
            let needed = match access {
                Access::Write => &self.write_scope,
                Access::Read => &self.read_scope,
            };
            return Err(AuthError::InsufficientScope(needed.clone()));
        }
        Ok(Principal(claims.sub.unwrap_or_else(|| "jwt".to_owned())))
    }

    /// The label of the stored hash the token matches. Every stored hash is compared, each in
    /// constant time, so the time taken does not depend on which one matched or how much of
    /// a digest did.
    fn opaque(&self, token: &str) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for stored in &self.tokens {
            if bool::from(stored.digest.ct_eq(&digest)) {
                found = Some(stored.label.as_str());
            }
        }
        found
    }
}

impl JwtVerifier {
    fn from_config(config: &AuthConfig) -> Result<Option<Self>, AuthSetupError> {
        let mut keys = Vec::new();
        let secret = match (&config.auth_jwt_secret_file, &config.auth_jwt_secret) {
            (Some(_), Some(_)) => return Err(AuthSetupError::TwoSecrets),
            (Some(path), None) => {
                let mut bytes = read(path)?;
                if bytes.last() == Some(&b'\n') {
                    bytes.pop();
                }
                Some(bytes)
            }
            (None, Some(secret)) => Some(secret.expose().as_bytes().to_vec()),
            (None, None) => None,
        };
        if let Some(secret) = secret {
            if secret.len() < MIN_HMAC_SECRET {
                return Err(AuthSetupError::WeakSecret);
            }
            let key = DecodingKey::from_secret(&secret).map_err(AuthSetupError::Key)?;
            keys.push((key, validation(config, Algorithm::HS256)));
        }
        if let Some(path) = &config.auth_jwt_public_key_file {
            let pem = read(path)?;
            let (key, algorithm) = if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                (key, Algorithm::RS256)
            } else if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
                (key, Algorithm::EdDSA)
            } else {
                return Err(AuthSetupError::BadPublicKey(path.clone()));
            };
            keys.push((key, validation(config, algorithm)));
        }
        Ok((!keys.is_empty()).then_some(Self { keys }))
    }

    fn decode(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        // The header's algorithm only selects among the configured keys; a token naming any
        // other (`none`, or HS256 against an RSA key) finds none and is refused.
        let (key, validation) = self
            .keys
            .iter()
            .find(|(_, v)| v.algorithms.contains(&header.alg))
            .ok_or(AuthError::Invalid)?;
        match jsonwebtoken::decode::<Claims>(token, key, validation) {
            Ok(data) => Ok(data.claims),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature
                ) =>
            {
                Err(AuthError::Expired)
            }
            Err(_) => Err(AuthError::Invalid),
        }
    }
}

fn validation(config: &AuthConfig, algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.validate_nbf = true;
    let mut required: HashSet<String> = HashSet::from(["exp".to_owned()]);
    match &config.auth_jwt_audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.insert("aud".to_owned());
        }
        None => validation.validate_aud = false,
    }
    if let Some(issuer) = &config.auth_jwt_issuer {
        validation.set_issuer(&[issuer]);
        required.insert("iss".to_owned());
    }
    validation.required_spec_claims = required;
    validation
}

fn read(path: &Path) -> Result<Vec<u8>, AuthSetupError> {
    std::fs::read(path).map_err(|source| AuthSetupError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_token_hashes(path: &Path) -> Result<Vec<TokenHash>, AuthSetupError> {
    let text = String::from_utf8_lossy(&read(path)?).into_owned();
    let hashes = parse_token_hashes(&text).map_err(|line| AuthSetupError::BadTokenLine {
        path: path.to_owned(),
        line,
    })?;
    if hashes.is_empty() {
        return Err(AuthSetupError::NoTokens(path.to_owned()));
    }
    Ok(hashes)
}

/// The hashes of a tokens file, or the number of the first line that is not one.
fn parse_token_hashes(text: &str) -> Result<Vec<TokenHash>, usize> {
    let mut hashes = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line
            .split_once('#')
            .map_or(line, |(before, _)| before)
            .trim();
        if line.is_empty() {
            continue;
        }
        let (hex, label) = line
            .split_once(char::is_whitespace)
            .map_or((line, ""), |(h, l)| (h, l.trim()));
        let digest = parse_digest(hex).ok_or(index + 1)?;
        let label = if label.is_empty() {
            format!("token {}", index + 1)
        } else {
            label.to_owned()
        };
        hashes.push(TokenHash { digest, label });
    }
    Ok(hashes)
}

/// The 32 bytes of a SHA-256 digest written as 64 hex digits.
fn parse_digest(text: &str) -> Option<[u8; 32]> {
    crate::hex::decode(text)?.try_into().ok()
}

/// The SHA-256 hex digest of a token, as a tokens file line holds it.
#[must_use]
pub fn token_hash(token: &str) -> String {
    crate::hex::encode(&Sha256::digest(token.as_bytes()))
}

fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(AuthError::Missing);
    };
    let value = value.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    let token = token.trim();
    // RFC 6750 §2.1: the scheme is case-insensitive; the token is b64token characters.
    let b64token = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || !token.chars().all(b64token) {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

/// Middleware for `axum::middleware::from_fn_with_state`: lets a request through or answers
/// 401/403 before its body is read, so an unauthenticated client cannot make the service
/// buffer a body. `GET`, `HEAD` and `OPTIONS` are reads; anything else is a write.
pub async fn require(State(auth): State<Authenticator>, request: Request, next: Next) -> Response {
    let access = Access::of(request.method());
    guard(&auth, access, request, next).await
}

/// As [`require`], for a service that only reads: every request is a read, so a method the
/// service does not serve still gets its 405 rather than a 401.
pub async fn require_read(
    State(auth): State<Authenticator>,
    request: Request,
    next: Next,
) -> Response {
    guard(&auth, Access::Read, request, next).await
}

async fn guard(auth: &Authenticator, access: Access, request: Request, next: Next) -> Response {
    // A CORS preflight carries no credentials by design.
    if PUBLIC_PATHS.contains(&request.uri().path()) || request.method() == Method::OPTIONS {
        return next.run(request).await;
    }
    match auth.check(request.headers(), access) {
        Ok(Some(principal)) => {
            tracing::debug!(auth.subject = %principal.0, "authenticated");
            next.run(request).await
        }
        Ok(None) => next.run(request).await,
        Err(error) => {
            tracing::debug!(auth.error = %error, "authentication refused");
            error.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};

    use super::*;

    const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn with_tokens(lines: &str) -> Authenticator {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, lines).unwrap();
        Authenticator::from_config(&AuthConfig {
            auth_tokens_file: Some(path),
            ..AuthConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn the_default_is_what_the_command_line_gives_without_flags() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            auth: AuthConfig,
        }
        let parsed = Cli::try_parse_from(["t"]).unwrap().auth;
        assert_eq!(
            format!("{parsed:?}"),
            format!("{:?}", AuthConfig::default())
        );
        assert_eq!(AuthConfig::default().auth_write_scope, DEFAULT_WRITE_SCOPE);
        assert_eq!(AuthConfig::default().auth_read_scope, DEFAULT_READ_SCOPE);
    }

    #[test]
    fn a_digest_is_64_hex_digits_and_a_signed_pair_is_none() {
        let hash = token_hash("t");
        assert_eq!(
            parse_digest(&hash).map(|digest| crate::hex::encode(&digest)),
            Some(hash.clone())
        );
        assert!(parse_digest(&hash.to_uppercase()).is_some());
        for refused in [
            format!("+f{}", &hash[2..]),
            format!("{}+f", &hash[..62]),
            hash[2..].to_owned(),
            format!("{hash}00"),
        ] {
            assert_eq!(parse_digest(&refused), None, "{refused}");
        }
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::try_from(format!("Bearer {token}")).unwrap(),
        );
        headers
    }

    fn hs256(claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn jwt_auth(audience: Option<&str>) -> Authenticator {
        Authenticator::from_config(&AuthConfig {
            auth_jwt_secret: Some(SECRET.parse().unwrap()),
            auth_jwt_audience: audience.map(str::to_owned),
            ..AuthConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn a_token_whose_hash_is_listed_passes_and_others_do_not() {
        let auth = with_tokens(&format!(
            "# loaders\n\n{} loader  # the bulk loader\n{}\n",
            token_hash("s3cret-token"),
            token_hash("other")
        ));
        assert_eq!(
            auth.check(&bearer("s3cret-token"), Access::Write),
            Ok(Some(Principal("loader".to_owned())))
        );
        assert_eq!(
            auth.check(&bearer("other"), Access::Write),
            Ok(Some(Principal("token 4".to_owned())))
        );
        assert_eq!(
            auth.check(&bearer("s3cret-tokeN"), Access::Write),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.check(&HeaderMap::new(), Access::Write),
            Err(AuthError::Missing)
        );
        assert_eq!(auth.check(&HeaderMap::new(), Access::Read), Ok(None));
    }

    #[test]
    fn authorization_headers_other_than_bearer_are_malformed() {
        let auth = with_tokens(&token_hash("t"));
        for value in ["Basic dTpw", "Bearer", "Bearer ", "Bearer a b", "t"] {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(
                auth.check(&headers, Access::Write),
                Err(AuthError::Malformed),
                "{value}"
            );
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer t"));
        assert!(auth.check(&headers, Access::Write).is_ok());
    }

    #[test]
    fn a_tokens_file_line_that_is_not_a_digest_is_named_by_number_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(
            &path,
            format!("{}\nplain-token-pasted-here\n", token_hash("a")),
        )
        .unwrap();
        let error = Authenticator::from_config(&AuthConfig {
            auth_tokens_file: Some(path),
            ..AuthConfig::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("line 2"), "{error}");
        assert!(!error.contains("plain-token"), "{error}");
    }

    #[test]
    fn a_jwt_needs_a_valid_signature_time_and_scope() {
        let auth = jwt_auth(None);
        let exp = now() + 600;
        let good = hs256(
            &serde_json::json!({"sub": "app", "exp": exp, "scope": "points:read points:write"}),
        );
        assert_eq!(
            auth.check(&bearer(&good), Access::Write),
            Ok(Some(Principal("app".to_owned())))
        );
        let expired = hs256(&serde_json::json!({"exp": now() - 3600, "scope": "points:write"}));
        assert_eq!(
            auth.check(&bearer(&expired), Access::Write),
            Err(AuthError::Expired)
        );
        let early =
            hs256(&serde_json::json!({"exp": exp, "nbf": now() + 3600, "scope": "points:write"}));
        assert_eq!(
            auth.check(&bearer(&early), Access::Write),
            Err(AuthError::Expired)
        );
        let read_only = hs256(&serde_json::json!({"exp": exp, "scp": ["points:read"]}));
        assert_eq!(
            auth.check(&bearer(&read_only), Access::Write),
            Err(AuthError::InsufficientScope("points:write".to_owned()))
        );
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"exp": exp, "scope": "points:write"}),
            &EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes!!").unwrap(),
        )
        .unwrap();
        assert_eq!(
            auth.check(&bearer(&forged), Access::Write),
            Err(AuthError::Invalid)
        );
        let no_exp = hs256(&serde_json::json!({"scope": "points:write"}));
        assert_eq!(
            auth.check(&bearer(&no_exp), Access::Write),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn a_configured_audience_is_required() {
        let auth = jwt_auth(Some("geoledger"));
        let exp = now() + 600;
        let right =
            hs256(&serde_json::json!({"exp": exp, "aud": "geoledger", "scope": "points:write"}));
        assert!(auth.check(&bearer(&right), Access::Write).is_ok());
        let wrong =
            hs256(&serde_json::json!({"exp": exp, "aud": "other", "scope": "points:write"}));
        assert_eq!(
            auth.check(&bearer(&wrong), Access::Write),
            Err(AuthError::Invalid)
        );
        let none = hs256(&serde_json::json!({"exp": exp, "scope": "points:write"}));
        assert_eq!(
            auth.check(&bearer(&none), Access::Write),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn an_unsigned_token_is_refused() {
        let auth = jwt_auth(None);
        // {"alg":"none"} . {"exp":9999999999,"scope":"points:write"} . (no signature)
        let unsigned =
            "eyJhbGciOiJub25lIn0.eyJleHAiOjk5OTk5OTk5OTksInNjb3BlIjoicG9pbnRzOndyaXRlIn0.";
        assert_eq!(
            auth.check(&bearer(unsigned), Access::Write),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn an_eddsa_token_is_checked_against_the_public_key() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let auth = Authenticator::from_config(&AuthConfig {
            auth_jwt_public_key_file: Some(fixtures.join("jwt-ed25519-test-public.pem")),
            ..AuthConfig::default()
        })
        .unwrap();
        let private = std::fs::read(fixtures.join("jwt-ed25519-test-private.pem")).unwrap();
        let claims = serde_json::json!({"exp": now() + 600, "scope": "points:write"});
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &claims,
            &EncodingKey::from_ed_pem(&private).unwrap(),
        )
        .unwrap();
        assert!(auth.check(&bearer(&token), Access::Write).is_ok());
        // The HS256 confusion: the public key's bytes used as an HMAC secret.
        let public = std::fs::read(fixtures.join("jwt-ed25519-test-public.pem")).unwrap();
        let confused = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&public).unwrap(),
        )
        .unwrap();
        assert_eq!(
            auth.check(&bearer(&confused), Access::Write),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn a_short_secret_stops_the_start() {
        let result = Authenticator::from_config(&AuthConfig {
            auth_jwt_secret: Some("short".parse().unwrap()),
            ..AuthConfig::default()
        });
        assert!(matches!(result, Err(AuthSetupError::WeakSecret)));
    }

    #[test]
    fn the_secret_never_reaches_debug_output() {
        let config = AuthConfig {
            auth_jwt_secret: Some(SECRET.parse().unwrap()),
            ..AuthConfig::default()
        };
        assert!(!format!("{config:?}").contains(SECRET));
    }

    #[test]
    fn reads_need_a_token_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, token_hash("t")).unwrap();
        let auth = Authenticator::from_config(&AuthConfig {
            auth_tokens_file: Some(path),
            auth_reads: true,
            ..AuthConfig::default()
        })
        .unwrap();
        assert_eq!(
            auth.check(&HeaderMap::new(), Access::Read),
            Err(AuthError::Missing)
        );
        assert!(auth.check(&bearer("t"), Access::Read).is_ok());
    }
}
