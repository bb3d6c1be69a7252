//! The form driver's reading of a sign-in page: which form to submit and with what, found
//! with an HTML parser (`scraper`, html5ever), never with patterns over the text.
//!
//! A page's form is one of three kinds: the password form (it has the password input), the
//! identifier form (a username input and no password input: identifier-first sign-in) and
//! the consent form (the form named by `form_action` or `submit_button`, or the page's only
//! form). The username and the password are placeholders here ([`Value::Username`],
//! [`Value::Password`]): the caller fills them in when it builds the request, so nothing
//! this file returns or says can hold a credential.
//!
//! Not here: fetching pages, cookies, where a form may be sent (`authcode`).

use crate::config::FormRules;
use crate::model::wire;
use scraper::{ElementRef, Html, Selector};

/// What a form is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Password,
    Identifier,
    Consent,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Password => "password",
            Kind::Identifier => "identifier",
            Kind::Consent => "consent",
        }
    }
}

/// A field's value: as the page gave it, or a credential the caller puts in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Page(String),
    Username,
    Password,
}

/// The form to submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub kind: Kind,
    /// `get` or `post`.
    pub post: bool,
    /// The form's `action` as written (empty: the page's own URL).
    pub action: String,
    pub fields: Vec<(String, Value)>,
}

impl Submission {
    /// What a span and a step's error say about the form: its kind and the button pressed,
    /// never a field value.
    pub fn label(&self) -> String {
        self.kind.as_str().to_owned()
    }
}

/// Why no form was picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoForm {
    /// The page has no form at all.
    None,
    /// Only forms without a password input, and the flow expects one now.
    NoPassword,
    /// Several forms and none named by the rules.
    Ambiguous(usize),
    /// `submit_button` names no button of the chosen form.
    NoButton(String),
}

impl NoForm {
    /// How a failed step says it (the page's title is added by the caller).
    pub fn why(&self, rules: &FormRules) -> String {
        match self {
            NoForm::None => "no form on the page (a page that needs JavaScript cannot be driven by the form driver)".to_owned(),
            NoForm::NoPassword => match &rules.password_input {
                Some(name) => format!("no password input on the page (no input named `{}`)", wire::text(name, 64)),
                None => "no password input on the page (no input type=password; name it with login.password_input)".to_owned(),
            },
            NoForm::Ambiguous(n) => format!("{n} form(s) on the page and none chosen by the rules: set login.form_action (part of the form's action) or login.submit_button (the button's text, name or value)"),
            NoForm::NoButton(b) => format!("no button `{}` in the form", wire::text(b, 64)),
        }
    }
}

/// Where the sign-in is: whether the password has been sent yet decides whether a page
/// without a password input is a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before the password was submitted.
    SigningIn,
    /// After it: consent screens and the like.
    SignedIn,
}

/// The form to submit on `html`, filled but for the credentials.
pub fn pick(html: &str, rules: &FormRules, stage: Stage) -> Result<Submission, NoForm> {
    let doc = Html::parse_document(html);
    let forms: Vec<ElementRef<'_>> = doc.select(&sel("form")).collect();
    if forms.is_empty() {
        return Err(NoForm::None);
    }
    let read: Vec<Form<'_>> = forms.iter().map(|f| Form::read(*f, rules)).collect();
    if let Some(f) = read.iter().find(|f| f.password.is_some()) {
        return f.submission(Kind::Password, rules);
    }
    if stage == Stage::SigningIn {
        if let Some(f) = read.iter().find(|f| f.username.is_some()) {
            return f.submission(Kind::Identifier, rules);
        }
        // A page before the password that names a consent form is still a step (an
        // account chooser, a notice); without a rule it is the missing password.
        if rules.form_action.is_none() && rules.submit_button.is_none() {
            return Err(NoForm::NoPassword);
        }
    }
    let named = read.iter().find(|f| f.named_by(rules));
    match (named, read.len()) {
        (Some(f), _) => f.submission(Kind::Consent, rules),
        (None, 1) if rules.form_action.is_none() => read[0].submission(Kind::Consent, rules),
        (None, 1) => Err(NoForm::Ambiguous(1)),
        (None, n) => Err(NoForm::Ambiguous(n)),
    }
}

/// The page's `<title>` for a failed step's message: through `scrub` (a page may echo
/// what was sent), then cleaned and bounded.
pub fn title(html: &str, scrub: &dyn Fn(&str) -> String) -> Option<String> {
    let doc = Html::parse_document(html);
    let t = doc.select(&sel("title")).next()?;
    let text: String = t.text().collect::<String>();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!text.is_empty()).then(|| wire::text(&scrub(&text), 80))
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).expect("a valid selector")
}

/// One form as read from the page.
struct Form<'a> {
    el: ElementRef<'a>,
    /// Every successful control's name and value (hidden inputs included), in order.
    fields: Vec<(String, String)>,
    username: Option<String>,
    password: Option<String>,
    buttons: Vec<Button>,
}

struct Button {
    name: Option<String>,
    value: String,
    text: String,
}

impl<'a> Form<'a> {
    fn read(el: ElementRef<'a>, rules: &FormRules) -> Form<'a> {
        let mut fields = Vec::new();
        let (mut username, mut password, mut buttons) = (None, None, Vec::new());
        for c in el.select(&sel("input, select, textarea, button")) {
            let e = c.value();
            let name = e.attr("name").map(str::to_owned);
            let ty = e.attr("type").unwrap_or("").to_ascii_lowercase();
            let disabled = e.attr("disabled").is_some();
            match e.name() {
                "button" => {
                    if matches!(ty.as_str(), "" | "submit") && !disabled {
                        buttons.push(Button {
                            name,
                            value: e.attr("value").unwrap_or("").to_owned(),
                            text: c.text().collect::<String>().trim().to_owned(),
                        });
                    }
                    continue;
                }
                "select" => {
                    let chosen = c
                        .select(&sel("option[selected]"))
                        .next()
                        .or_else(|| c.select(&sel("option")).next());
                    if let (Some(n), Some(o)) = (name, chosen) {
                        let v = o.value().attr("value").map(str::to_owned);
                        fields.push((n, v.unwrap_or_else(|| o.text().collect())));
                    }
                    continue;
                }
                "textarea" => {
                    if let Some(n) = name {
                        fields.push((n, c.text().collect()));
                    }
                    continue;
                }
                _ => {}
            }
            if ty == "submit" || ty == "image" {
                if !disabled {
                    buttons.push(Button {
                        name,
                        value: e.attr("value").unwrap_or("").to_owned(),
                        text: e.attr("value").unwrap_or("").to_owned(),
                    });
                }
                continue;
            }
            let Some(name) = name else { continue };
            if disabled || matches!(ty.as_str(), "reset" | "file" | "button") {
                continue;
            }
            if matches!(ty.as_str(), "checkbox" | "radio") && e.attr("checked").is_none() {
                continue;
            }
            let is_password = match &rules.password_input {
                Some(n) => *n == name,
                None => ty == "password",
            };
            let is_username = match &rules.username_input {
                Some(n) => *n == name,
                None => matches!(ty.as_str(), "" | "text" | "email"),
            };
            if is_password && password.is_none() {
                password = Some(name.clone());
            } else if is_username && username.is_none() && ty != "password" {
                username = Some(name.clone());
            }
            let value = match ty.as_str() {
                "checkbox" | "radio" => e.attr("value").unwrap_or("on"),
                _ => e.attr("value").unwrap_or(""),
            };
            fields.push((name, value.to_owned()));
        }
        Form {
            el,
            fields,
            username,
            password,
            buttons,
        }
    }

    /// Whether `form_action` (part of the action) or `submit_button` names this form.
    fn named_by(&self, rules: &FormRules) -> bool {
        let action = self.el.value().attr("action").unwrap_or("");
        let by_action = rules
            .form_action
            .as_ref()
            .map(|a| action.contains(a.as_str()));
        let by_button = rules
            .submit_button
            .as_ref()
            .map(|b| self.buttons.iter().any(|x| x.matches(b)));
        match (by_action, by_button) {
            (None, None) => false,
            (a, b) => a.unwrap_or(true) && b.unwrap_or(true),
        }
    }

    fn submission(&self, kind: Kind, rules: &FormRules) -> Result<Submission, NoForm> {
        let button = match &rules.submit_button {
            // On a password or identifier form the configured button is for consent
            // screens; the form's own first button signs in.
            Some(b) if kind == Kind::Consent => match self.buttons.iter().find(|x| x.matches(b)) {
                Some(x) => Some(x),
                None => return Err(NoForm::NoButton(b.clone())),
            },
            _ => self.buttons.first(),
        };
        let mut fields: Vec<(String, Value)> = self
            .fields
            .iter()
            .map(|(n, v)| {
                let value = if Some(n) == self.password.as_ref() && kind == Kind::Password {
                    Value::Password
                } else if Some(n) == self.username.as_ref() {
                    Value::Username
                } else {
                    Value::Page(v.clone())
                };
                (n.clone(), value)
            })
            .collect();
        if let Some(Button {
            name: Some(n),
            value,
            ..
        }) = button
        {
            fields.push((n.clone(), Value::Page(value.clone())));
        }
        let e = self.el.value();
        Ok(Submission {
            kind,
            post: e
                .attr("method")
                .is_some_and(|m| m.eq_ignore_ascii_case("post")),
            action: e.attr("action").unwrap_or("").trim().to_owned(),
            fields,
        })
    }
}

impl Button {
    /// A button named by its text, `value` or `name`, ignoring case.
    fn matches(&self, wanted: &str) -> bool {
        [Some(&self.text), Some(&self.value), self.name.as_ref()]
            .into_iter()
            .flatten()
            .any(|s| !s.is_empty() && s.eq_ignore_ascii_case(wanted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// oidc-provider 9's dev interaction pages (lib/views/login.js and interaction.js).
    const LOGIN: &str = r#"<!DOCTYPE html><html><head><title>Sign-in</title></head><body>
<div class="login-card"><h1>Sign-in</h1>
<form autocomplete="off" action="http://127.0.0.1:3000/interaction/Vx5kD2d0T8yQ" method="post">
  <input type="hidden" name="prompt" value="login"/>
  <input required type="text" name="login" placeholder="Enter any login" autofocus="on">
  <input required type="password" name="password" placeholder="and password" >
  <button type="submit" class="login login-submit">Sign-in</button>
</form>
<div class="login-help"><a href="/interaction/Vx5kD2d0T8yQ/abort">[ Cancel ]</a></div>
</div></body></html>"#;
    const CONSENT: &str = r#"<html><head><title>Authorize</title></head><body><ul><li>scopes:</li></ul>
<form autocomplete="off" action="http://127.0.0.1:3000/interaction/Q2" method="post">
  <input type="hidden" name="prompt" value="consent"/>
  <button autofocus type="submit" class="login login-submit">Continue</button>
</form></body></html>"#;
    const IDENTIFIER: &str = r#"<form method="POST" action="/u/login/identifier?state=abc">
  <input type="hidden" name="state" value="abc">
  <input type="email" name="username" value="">
  <input type="checkbox" name="remember" value="yes">
  <button type="submit" name="action" value="default">Continue</button>
</form>"#;
    const TWO_BUTTONS: &str = r#"<form method="post" action="/consent">
  <input type="hidden" name="csrf" value="t0k">
  <button type="submit" name="decision" value="deny">Deny</button>
  <button type="submit" name="decision" value="allow">Allow access</button>
</form>
<form method="get" action="/search"><input name="q"><input type="submit" value="Search"></form>"#;

    fn rules(edit: impl FnOnce(&mut FormRules)) -> FormRules {
        let mut r = FormRules::default();
        edit(&mut r);
        r
    }

    fn page(s: &str) -> Value {
        Value::Page(s.to_owned())
    }

    fn check(html: &str, rules: &FormRules, stage: Stage, expected: Result<Submission, NoForm>) {
        assert_eq!(pick(html, rules, stage), expected, "{html}");
    }

    #[test]
    fn picks_and_fills_the_form_of_each_page() {
        let none = FormRules::default();
        check(
            LOGIN,
            &none,
            Stage::SigningIn,
            Ok(Submission {
                kind: Kind::Password,
                post: true,
                action: "http://127.0.0.1:3000/interaction/Vx5kD2d0T8yQ".into(),
                fields: vec![
                    ("prompt".into(), page("login")),
                    ("login".into(), Value::Username),
                    ("password".into(), Value::Password),
                ],
            }),
        );
        check(
            CONSENT,
            &none,
            Stage::SignedIn,
            Ok(Submission {
                kind: Kind::Consent,
                post: true,
                action: "http://127.0.0.1:3000/interaction/Q2".into(),
                fields: vec![("prompt".into(), page("consent"))],
            }),
        );
        // Identifier first: the email input, hidden state and the checked-only checkbox
        // left out, the button's name and value sent.
        check(
            IDENTIFIER,
            &none,
            Stage::SigningIn,
            Ok(Submission {
                kind: Kind::Identifier,
                post: true,
                action: "/u/login/identifier?state=abc".into(),
                fields: vec![
                    ("state".into(), page("abc")),
                    ("username".into(), Value::Username),
                    ("action".into(), page("default")),
                ],
            }),
        );
        // A consent screen with two forms and two buttons: the configured button decides.
        check(
            TWO_BUTTONS,
            &rules(|r| r.submit_button = Some("allow access".into())),
            Stage::SignedIn,
            Ok(Submission {
                kind: Kind::Consent,
                post: true,
                action: "/consent".into(),
                fields: vec![
                    ("csrf".into(), page("t0k")),
                    ("decision".into(), page("allow")),
                ],
            }),
        );
        check(
            TWO_BUTTONS,
            &rules(|r| r.form_action = Some("/consent".into())),
            Stage::SignedIn,
            Ok(Submission {
                kind: Kind::Consent,
                post: true,
                action: "/consent".into(),
                fields: vec![
                    ("csrf".into(), page("t0k")),
                    ("decision".into(), page("deny")),
                ],
            }),
        );
    }

    #[test]
    fn configured_input_names_win_over_the_defaults() {
        let html = r#"<form method="post" action="/login">
  <input type="text" name="search">
  <input type="text" name="user_id">
  <input type="text" name="pin">
  <select name="lang"><option value="en">English</option><option value="de" selected>Deutsch</option></select>
  <textarea name="note">hi</textarea>
  <input type="submit" name="go" value="Log in">
</form>"#;
        check(
            html,
            &rules(|r| {
                r.username_input = Some("user_id".into());
                r.password_input = Some("pin".into());
            }),
            Stage::SigningIn,
            Ok(Submission {
                kind: Kind::Password,
                post: true,
                action: "/login".into(),
                fields: vec![
                    ("search".into(), page("")),
                    ("user_id".into(), Value::Username),
                    ("pin".into(), Value::Password),
                    ("lang".into(), page("de")),
                    ("note".into(), page("hi")),
                    ("go".into(), page("Log in")),
                ],
            }),
        );
    }

    #[test]
    fn says_why_no_form_fits() {
        let none = FormRules::default();
        check(
            "<p>Loading…</p><script>app()</script>",
            &none,
            Stage::SigningIn,
            Err(NoForm::None),
        );
        check(CONSENT, &none, Stage::SigningIn, Err(NoForm::NoPassword));
        check(
            TWO_BUTTONS,
            &none,
            Stage::SignedIn,
            Err(NoForm::Ambiguous(2)),
        );
        check(
            CONSENT,
            &rules(|r| r.submit_button = Some("Allow".into())),
            Stage::SignedIn,
            Err(NoForm::NoButton("Allow".into())),
        );
        check(
            CONSENT,
            &rules(|r| r.form_action = Some("/nowhere".into())),
            Stage::SignedIn,
            Err(NoForm::Ambiguous(1)),
        );
        assert_eq!(
            NoForm::NoPassword.why(&none),
            "no password input on the page (no input type=password; name it with login.password_input)"
        );
        assert!(
            NoForm::Ambiguous(2)
                .why(&none)
                .starts_with("2 form(s) on the page")
        );
        let keep = |s: &str| s.to_owned();
        assert_eq!(title(LOGIN, &keep).as_deref(), Some("Sign-in"));
        assert_eq!(title("<form></form>", &keep), None);
        let echo = format!("<title>{} hunter2</title>", "t".repeat(74));
        let cut = title(&echo, &|s: &str| s.replace("hunter2", "")).unwrap();
        assert!(!cut.contains("hun"), "{cut}");
    }
}
