//! The browser driver of the authorization-code sign-in (`driver = "browser"`), for
//! sign-in pages that only work with JavaScript: headless Chromium over the DevTools
//! protocol (`chromiumoxide`). keycanary types the username and the password into the
//! configured selectors, clicks, and waits for the request to `redirect_uri`, which it
//! intercepts (the Fetch domain pauses every request of the page): the code is read from
//! that request's URL and the request is failed, so the browser never loads
//! `redirect_uri`.
//!
//! One Chromium process per [`Prober`] is started on the first browser sign-in (with a
//! user-data-dir of its own under the system's temporary directory, removed when the
//! prober drops it; a helper process still writing its cache can leave it behind), reused by every later one and started
//! again when it died; each sign-in gets a fresh browser context (incognito: no cookie
//! or storage of another sign-in), closed afterwards. Every request of the page, the
//! assets included, must be on the issuer's origin or an origin of `page_origins`, as
//! with the form driver: others are failed before they leave the browser, so the
//! password and the session cookies go nowhere else. Chromium's own output is never read
//! into the logs (its stderr is read only until the DevTools address is printed).
//!
//! Each action is a step and a span `probe.login.step` (the step number, the page's URL
//! path and the action, e.g. `type password into input[type=password]`; never a typed
//! value). Not here: the authorization URL, the checks of the redirect back and the code
//! exchange, which both drivers share (`checks`, `login`).

use super::{Allowed, checks};
use crate::config::AuthCode;
use crate::model::wire;
use crate::probe::Prober;
use chromiumoxide::cdp::browser_protocol::fetch::{
    ContinueRequestParams, EnableParams, EventRequestPaused, FailRequestParams, RequestPattern,
    RequestStage,
};
use chromiumoxide::cdp::browser_protocol::input::InsertTextParams;
use chromiumoxide::cdp::browser_protocol::network::{ErrorReason, ResourceType};
use chromiumoxide::cdp::browser_protocol::page::NavigateParams;
use chromiumoxide::cdp::browser_protocol::target::{
    CreateBrowserContextParams, CreateTargetParams,
};
use chromiumoxide::{Browser, BrowserConfig, Element, Page};
use futures_util::StreamExt;
use secrecy::ExposeSecret;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{Instrument, info_span};
use url::Url;

/// The Chromium binary: `KEYCANARY_CHROMIUM`, else `chromium` on the `PATH` (Debian's).
pub const CHROMIUM_VAR: &str = "KEYCANARY_CHROMIUM";

/// Flags for a headless Chromium that talks to nobody but the pages it is sent to:
/// without the background-networking ones it calls Google's services on its own.
const FLAGS: [&str; 7] = [
    "headless",
    "disable-gpu",
    "disable-quic",
    "no-first-run",
    "disable-background-networking",
    "disable-component-update",
    "disable-sync",
];

/// How often a page is looked at while waiting for an element or the redirect back.
const POLL: Duration = Duration::from_millis(100);

/// The browser of one prober: none until the first browser sign-in.
#[derive(Default)]
pub struct Chromium {
    running: tokio::sync::Mutex<Option<Running>>,
}

struct Running {
    /// `None` only while dropping.
    browser: Option<Arc<Browser>>,
    handler: tokio::task::JoinHandle<()>,
    dir: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.handler.abort();
        // The process is killed when the last `Browser` goes (kill_on_drop): before its
        // directory is removed, or it would write there again.
        drop(self.browser.take());
        // Its helper processes notice a moment later and may still write (the network
        // service's cache): remove the directory until it stays removed, a few tries.
        for _ in 0..5 {
            let _ = std::fs::remove_dir_all(&self.dir);
            std::thread::sleep(Duration::from_millis(40));
            if !self.dir.exists() {
                break;
            }
        }
    }
}

impl Chromium {
    /// The running browser, started when there is none or the last one died.
    async fn browser(&self, timeout: Duration) -> Result<Arc<Browser>, String> {
        let mut running = self.running.lock().await;
        if let Some(r) = running.as_ref()
            && let Some(browser) = &r.browser
            && !r.handler.is_finished()
        {
            return Ok(browser.clone());
        }
        *running = None;
        let dir = std::env::temp_dir().join(format!("keycanary-chromium-{}", super::random(9)));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot make Chromium's user-data-dir: {e}"))?;
        let exe = executable();
        let config = BrowserConfig::builder()
            .chrome_executable(&exe)
            .disable_default_args()
            .no_sandbox()
            .args(FLAGS)
            .user_data_dir(&dir)
            .launch_timeout(timeout)
            .request_timeout(timeout)
            .build();
        let launched = match config {
            Ok(config) => Browser::launch(config).await.map_err(|e| launch_error(&e)),
            Err(e) => Err(e),
        };
        let (browser, mut handler) = match launched {
            Ok(b) => b,
            Err(why) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!(
                    "cannot start Chromium ({}): {why}; install it (Debian: apt-get install chromium) or set {CHROMIUM_VAR}",
                    exe.display()
                ));
            }
        };
        // The handler drives the DevTools connection; it ends when the browser goes.
        let handler = tokio::spawn(async move {
            while let Some(event) = handler.next().await {
                if event.is_err() {
                    break;
                }
            }
        });
        let browser = Arc::new(browser);
        *running = Some(Running {
            browser: Some(browser.clone()),
            handler,
            dir,
        });
        Ok(browser)
    }
}

/// `KEYCANARY_CHROMIUM`, else the first `chromium` on the `PATH` (the DevTools client
/// wants a path, not a name), else `chromium`.
fn executable() -> PathBuf {
    if let Some(exe) = std::env::var_os(CHROMIUM_VAR) {
        return PathBuf::from(exe);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("chromium"))
}

/// Why Chromium did not start, without its stderr (which `chromiumoxide` attaches).
fn launch_error(e: &chromiumoxide::error::CdpError) -> String {
    use chromiumoxide::error::CdpError as E;
    match e {
        E::LaunchExit(status, _) => format!("it exited ({status})"),
        E::LaunchTimeout(_) => "it did not print its DevTools address in time".to_owned(),
        E::LaunchIo(io, _) => io.to_string(),
        other => format!("the DevTools connection failed: {other:?}"),
    }
}

/// What the interception does with a request the page makes.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The redirect back: its URL holds the code; the request is failed, never sent.
    RedirectBack(Url),
    /// On an allowed origin: sent.
    Send,
    /// Elsewhere: failed, with why.
    Refuse(String),
}

/// Pure: the verdict on a request for `url` (as the browser would send it).
pub fn verdict(url: &str, redirect_uri: &Url, allowed: &Allowed) -> Verdict {
    let Ok(url) = Url::parse(url) else {
        return Verdict::Refuse("not a URL".to_owned());
    };
    if checks::is_redirect_uri(&url, redirect_uri) {
        return Verdict::RedirectBack(url);
    }
    match allowed.check(&url) {
        Ok(()) => Verdict::Send,
        Err(why) => Verdict::Refuse(why),
    }
}

/// What the interception saw, shared with the steps.
#[derive(Default)]
struct Seen {
    back: Option<Url>,
    /// Why the page itself (a navigation) was refused, the first time.
    refused: Option<String>,
}

/// The step being done, for the span and for the message when the time runs out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub n: usize,
    pub action: String,
}

impl Step {
    /// `step 2 (browser: type password into input[type=password]): why`.
    pub fn error(&self, why: &str) -> String {
        format!("step {} (browser: {}): {why}", self.n, self.action)
    }
}

/// A task aborted when this goes.
struct Stop(tokio::task::JoinHandle<()>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a wait found.
enum Found {
    Element(Element),
    Back(Url),
}

impl Prober {
    /// Signs in on the pages from `start` in a fresh browser context of the shared
    /// Chromium and returns the redirect back to `redirect_uri` (not yet checked), or
    /// which step failed and why. Bounded by the probe timeout.
    pub(super) async fn drive_browser(
        &self,
        start: Url,
        ac: &AuthCode,
        allowed: &Allowed,
    ) -> Result<Url, String> {
        let timeout = self.clients.timeout();
        let deadline = crate::clock::monotonic() + timeout;
        let first = Step {
            n: 1,
            action: "start Chromium".to_owned(),
        };
        let browser = tokio::time::timeout(timeout, self.chromium.browser(timeout))
            .await
            .map_err(|_| first.error("Chromium did not start within the probe timeout"))?
            .map_err(|why| first.error(&why))?;
        let context = browser
            .create_browser_context(CreateBrowserContextParams::default())
            .await
            .map_err(|e| first.error(&format!("cannot open a browser context: {e}")))?;
        let progress = Arc::new(Mutex::new(first));
        let left = deadline.saturating_duration_since(crate::clock::monotonic());
        let signed = tokio::time::timeout(
            left,
            self.in_context(&browser, &context, start, ac, allowed, &progress),
        )
        .await;
        let result = match signed {
            Ok(r) => r,
            Err(_) => {
                let step = progress.lock().expect("not poisoned").clone();
                Err(step.error(&format!(
                    "{} within the probe timeout ({} s)",
                    if step.action.starts_with("wait") {
                        "not reached"
                    } else {
                        "no element matches"
                    },
                    timeout.as_secs()
                )))
            }
        };
        // The context goes with its cookies and its page, whatever happened.
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            browser.dispose_browser_context(context),
        )
        .await;
        result
    }

    async fn in_context(
        &self,
        browser: &Browser,
        context: &chromiumoxide::cdp::browser_protocol::browser::BrowserContextId,
        start: Url,
        ac: &AuthCode,
        allowed: &Allowed,
        progress: &Arc<Mutex<Step>>,
    ) -> Result<Url, String> {
        let fail = |why: String| progress.lock().expect("not poisoned").error(&why);
        let target = CreateTargetParams::builder()
            .url("about:blank")
            .browser_context_id(context.clone())
            .build()
            .map_err(fail)?;
        let page = browser
            .new_page(target)
            .await
            .map_err(|e| fail(format!("cannot open a page: {e}")))?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        // Stopped when this sign-in ends, the probe timeout included.
        let _intercept = Stop(
            self.intercept(&page, ac, allowed, &seen)
                .await
                .map_err(fail)?,
        );
        let result = self.steps(&page, start, ac, &seen, progress).await;
        if let Err(why) = &result
            && let Ok(Ok(Some(title))) =
                tokio::time::timeout(Duration::from_secs(1), page.get_title()).await
            && !title.trim().is_empty()
        {
            let title = wire::text(&self.scrub(title.trim()), 80);
            return Err(format!("{why} (page title: {title})"));
        }
        result
    }

    /// Pauses every request of `page` and lets through only what [`verdict`] allows.
    async fn intercept(
        &self,
        page: &Page,
        ac: &AuthCode,
        allowed: &Allowed,
        seen: &Arc<Mutex<Seen>>,
    ) -> Result<tokio::task::JoinHandle<()>, String> {
        let mut paused = page
            .event_listener::<EventRequestPaused>()
            .await
            .map_err(|e| format!("cannot listen to the page's requests: {e}"))?;
        let every = RequestPattern {
            url_pattern: Some("*".to_owned()),
            resource_type: None,
            request_stage: Some(RequestStage::Request),
        };
        page.execute(EnableParams {
            patterns: Some(vec![every]),
            handle_auth_requests: None,
        })
        .await
        .map_err(|e| format!("cannot intercept the page's requests: {e}"))?;
        let (page, redirect_uri, allowed, seen) = (
            page.clone(),
            ac.redirect_uri.clone(),
            allowed.clone(),
            seen.clone(),
        );
        Ok(tokio::spawn(async move {
            while let Some(ev) = paused.next().await {
                let id = ev.request_id.clone();
                let url = match &ev.request.url_fragment {
                    Some(f) => format!("{}{f}", ev.request.url),
                    None => ev.request.url.clone(),
                };
                match verdict(&url, &redirect_uri, &allowed) {
                    Verdict::Send => {
                        let _ = page.execute(ContinueRequestParams::new(id)).await;
                    }
                    Verdict::RedirectBack(url) => {
                        seen.lock().expect("not poisoned").back.get_or_insert(url);
                        let _ = page
                            .execute(FailRequestParams::new(id, ErrorReason::Aborted))
                            .await;
                    }
                    Verdict::Refuse(why) => {
                        if ev.resource_type == ResourceType::Document {
                            seen.lock()
                                .expect("not poisoned")
                                .refused
                                .get_or_insert(why);
                        }
                        let _ = page
                            .execute(FailRequestParams::new(id, ErrorReason::BlockedByClient))
                            .await;
                    }
                }
            }
        }))
    }

    /// Open, type the username and the password, click, click the consent, wait for
    /// the redirect back: each a step.
    async fn steps(
        &self,
        page: &Page,
        start: Url,
        ac: &AuthCode,
        seen: &Arc<Mutex<Seen>>,
        progress: &Arc<Mutex<Step>>,
    ) -> Result<Url, String> {
        let rules = &ac.browser;
        let mut n = 0;
        let mut step = |action: String| {
            n += 1;
            let s = Step { n, action };
            *progress.lock().expect("not poisoned") = s.clone();
            s
        };
        let open = step("open the authorization endpoint".to_owned());
        let span = self.step_span(&open, &start);
        // Navigation errors (the redirect back is failed on purpose) show in what the
        // page does next, so only a refused connection is worth a word here.
        let _ = page
            .execute(NavigateParams::new(start.as_str()))
            .instrument(span)
            .await;

        // The first page: the username (and maybe the password) input.
        let typing = step(format!("type username into {}", rules.username));
        let found = self
            .wait(
                page,
                &[&rules.password, &rules.username],
                None,
                seen,
                &typing,
            )
            .await?;
        let Found::Element(_) = found else {
            return self.back(found);
        };
        let has_password = page.find_element(rules.password.as_str()).await.is_ok();
        match page.find_element(rules.username.as_str()).await {
            Ok(input) => {
                self.type_into(page, &input, &ac.username, &typing).await?;
            }
            Err(_) if has_password => {}
            Err(e) => return Err(typing.error(&format!("no element matches ({e})"))),
        }
        if !has_password {
            // Identifier first: submit the username, then the password page.
            let click = step(format!("click {}", rules.submit));
            self.click(page, &rules.submit, seen, &click).await?;
        }
        let typing = step(format!("type password into {}", rules.password));
        let found = self
            .wait(page, &[&rules.password], None, seen, &typing)
            .await?;
        let Found::Element(input) = found else {
            return self.back(found);
        };
        self.type_into(page, &input, ac.password.expose_secret(), &typing)
            .await?;
        let click = step(format!("click {}", rules.submit));
        self.click(page, &rules.submit, seen, &click).await?;

        if let Some(consent) = &rules.consent {
            let click = step(format!("click {consent}"));
            // The consent screen is the page after the password's: wait for it to go.
            let found = self
                .wait(page, &[consent], Some(&rules.password), seen, &click)
                .await?;
            let Found::Element(_) = found else {
                return self.back(found);
            };
            self.click(page, consent, seen, &click).await?;
        }
        let waiting = step("wait for the redirect to redirect_uri".to_owned());
        let span = self.step_span(&waiting, &current(page).await);
        let found = self
            .wait(page, &[], None, seen, &waiting)
            .instrument(span)
            .await?;
        self.back(found)
    }

    fn back(&self, found: Found) -> Result<Url, String> {
        match found {
            Found::Back(url) => Ok(url),
            Found::Element(_) => Err("no redirect back".to_owned()),
        }
    }

    fn step_span(&self, step: &Step, url: &Url) -> tracing::Span {
        info_span!(
            "probe.login.step",
            step = step.n,
            url.path = %checks::shown_path(url),
            action = %step.action,
        )
    }

    /// Waits until one of `selectors` matches on the page (while `absent`, when given,
    /// matches nothing) or the redirect back was seen; the caller's timeout bounds it. A
    /// refused navigation ends the wait with why.
    async fn wait(
        &self,
        page: &Page,
        selectors: &[&String],
        absent: Option<&String>,
        seen: &Arc<Mutex<Seen>>,
        step: &Step,
    ) -> Result<Found, String> {
        loop {
            {
                let seen = seen.lock().expect("not poisoned");
                if let Some(url) = &seen.back {
                    return Ok(Found::Back(url.clone()));
                }
                if let Some(why) = &seen.refused {
                    return Err(step.error(&format!("the page went elsewhere: {why}")));
                }
            }
            let gone = match absent {
                Some(a) => page.find_element(a.as_str()).await.is_err(),
                None => true,
            };
            for selector in selectors.iter().filter(|_| gone) {
                match page.find_element(selector.as_str()).await {
                    Ok(el) => return Ok(Found::Element(el)),
                    Err(chromiumoxide::error::CdpError::Chrome(e))
                        if e.message.contains("not a valid selector") =>
                    {
                        return Err(step.error(&format!("`{selector}` is not a valid selector")));
                    }
                    Err(_) => {}
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Focuses `input` and inserts `text` as typed text (one DevTools message; the page's
    /// input events fire as for a person typing).
    async fn type_into(
        &self,
        page: &Page,
        input: &Element,
        text: &str,
        step: &Step,
    ) -> Result<(), String> {
        let span = self.step_span(step, &current(page).await);
        async {
            input
                .focus()
                .await
                .map_err(|e| step.error(&format!("cannot focus the input: {e}")))?;
            page.execute(InsertTextParams::new(text))
                .await
                .map_err(|_| step.error("cannot type into the input"))?;
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// Clicks the first element `selector` matches, once it is there.
    async fn click(
        &self,
        page: &Page,
        selector: &String,
        seen: &Arc<Mutex<Seen>>,
        step: &Step,
    ) -> Result<(), String> {
        let Found::Element(button) = self.wait(page, &[selector], None, seen, step).await? else {
            return Ok(());
        };
        let span = self.step_span(step, &current(page).await);
        button
            .click()
            .instrument(span)
            .await
            .map_err(|e| step.error(&format!("cannot click it: {e}")))?;
        Ok(())
    }
}

/// The page's URL now (for a span's path); `about:blank` when unknown.
async fn current(page: &Page) -> Url {
    page.url()
        .await
        .ok()
        .flatten()
        .and_then(|u| Url::parse(&u).ok())
        .unwrap_or_else(|| Url::parse("about:blank").expect("a URL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Allowed {
        Allowed {
            issuer: Url::parse("https://idp.example").unwrap().origin(),
            listed: vec![Url::parse("http://assets.example").unwrap().origin()],
        }
    }

    fn check(url: &str, expected: &str) {
        let redirect = Url::parse("http://127.0.0.1:9/callback").unwrap();
        let got = match verdict(url, &redirect, &allowed()) {
            Verdict::RedirectBack(u) => format!("back {u}"),
            Verdict::Send => "send".to_owned(),
            Verdict::Refuse(why) => format!("refuse {why}"),
        };
        assert!(got.starts_with(expected), "{url}: {got}");
    }

    #[test]
    fn every_request_of_the_page_gets_a_verdict() {
        check(
            "http://127.0.0.1:9/callback?code=c&state=s",
            "back http://127.0.0.1:9/callback?code=c&state=s",
        );
        check("https://idp.example/login", "send");
        check("http://assets.example/app.js", "send");
        check(
            "https://evil.example/steal",
            "refuse https://evil.example is not the issuer's origin",
        );
        check(
            "http://idp.example/login",
            "refuse http://idp.example is not the issuer's origin",
        );
        check(
            "http://127.0.0.1:9/elsewhere",
            "refuse http://127.0.0.1:9 is not the issuer's origin",
        );
        check("not a url", "refuse not a URL");
    }

    #[test]
    fn a_step_names_its_action() {
        let step = Step {
            n: 2,
            action: "type password into input[type=password]".to_owned(),
        };
        assert_eq!(
            step.error("no element matches"),
            "step 2 (browser: type password into input[type=password]): no element matches"
        );
    }
}
