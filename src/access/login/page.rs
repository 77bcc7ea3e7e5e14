//! What the login host says about who is signed in: `/oauth2/userinfo` (JSON) and `/`.

use serde_json::json;

use super::{cookie, unix_now, Login, LoginRequest, Origin, Reply};

impl Login {
    fn signed_in(&self, req: &LoginRequest<'_>) -> Option<crate::access::session::Session> {
        let v = cookie::find(req.cookies.iter().copied(), &self.s.cookie)?;
        self.sealer.open(&self.s.cookie, v, unix_now()).ok()
    }

    pub(super) fn userinfo(&self, req: &LoginRequest<'_>) -> Reply {
        let (status, body) = match self.signed_in(req) {
            Some(s) => (
                200,
                json!({"user": s.user, "email": s.email, "groups": s.groups, "expires": s.expires}),
            ),
            None => (401, json!({"error": "not signed in", "status": 401})),
        };
        Reply {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: format!("{body}\n"),
        }
    }

    pub(super) fn page(&self, o: &Origin<'_>, req: &LoginRequest<'_>) -> Reply {
        let who = match self.signed_in(req) {
            Some(s) => format!(
                "<p>Signed in as <b>{}</b>{} on every host under {}.</p><p><a href=\"/oauth2/sign_out\">Sign out</a></p>",
                escape(&s.user),
                s.email.as_deref().map(|e| format!(" ({})", escape(e))).unwrap_or_default(),
                escape(o.domain)
            ),
            None => "<p>Not signed in.</p><p><a href=\"/oauth2/start\">Sign in</a></p>".into(),
        };
        Reply {
            status: 200,
            content_type: "text/html; charset=utf-8",
            headers: Vec::new(),
            body: format!("<!doctype html><title>xipgate login</title>{who}\n"),
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
