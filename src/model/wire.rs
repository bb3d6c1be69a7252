//! Text that came over the wire (an IdP's kids, algs, error descriptions, header values)
//! made safe to keep in the model: no control characters (an ESC sequence in a kid must
//! not drive the terminal that prints a finding) and a bounded length (a 1 MB
//! `error_description` must not become a 1 MB finding, log line and page).
//!
//! Two shapes: [`text`] for prose that is only shown (cut with `…`), and [`ident`] for
//! values that are also compared (kids, algs): a cut one keeps a hash of the whole value,
//! so two long kids that share a prefix stay different. [`scrub`] takes the secret values
//! keycanary knows out of text an IdP sends back (it may echo the client secret it was
//! sent). Pure; `probe` calls these where a wire string enters an `Observation`, and
//! nowhere else has to.

/// Longest identifier kept whole (kids, algs, `typ`, `kty`, issuers).
pub const IDENT_MAX: usize = 128;
/// Longest prose kept (error descriptions, header values quoted in messages).
pub const TEXT_MAX: usize = 256;

/// Whether `c` must not reach a terminal, a log line or a page as it is: C0 and C1
/// controls, DEL, and the Unicode bidirectional overrides and isolates (which reorder
/// what a reader sees).
fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with each unsafe character replaced by `\u{fffd}` and cut to `max` characters
/// (plus `…`). Text that is already clean and short is returned unchanged.
pub fn text(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max * 4 + 3));
    for (n, c) in s.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        out.push(if unsafe_char(c) { '\u{fffd}' } else { c });
    }
    out
}

/// An identifier from the wire: unchanged when it is clean and at most [`IDENT_MAX`]
/// characters; otherwise its cleaned first characters, `…`, and a 64-bit FNV-1a hash of
/// the whole value in hex, so that distinct values stay distinct (the same value always
/// gives the same result, whichever view or token it came from).
pub fn ident(s: &str) -> String {
    let clean = !s.chars().any(unsafe_char);
    if clean && s.chars().count() <= IDENT_MAX {
        return s.to_owned();
    }
    let head: String = text(s, IDENT_MAX - 24).trim_end_matches('…').to_owned();
    format!("{head}…#{:016x}", fnv1a(s.as_bytes()))
}

/// What replaces a secret value in text from outside.
pub const REDACTED: &str = "<redacted>";

/// `s` with every occurrence of each of `secrets` replaced by [`REDACTED`] — the value as
/// it is, and as it travels form- or percent-encoded (an IdP may echo the form it got).
/// Longer secrets are replaced first, so one that contains another is caught whole.
/// Empty secrets are ignored.
///
/// Text that [`text`] or [`ident`] already cut is handled too: the characters just before
/// a `…` that begin a secret are redacted (the cut may have gone through it), and the
/// hash [`ident`] appended, which was computed over the value with the secret in it, is
/// replaced by a hash of the scrubbed text.
pub fn scrub(s: &str, secrets: &[String]) -> String {
    let mut forms: Vec<String> = Vec::new();
    for secret in secrets.iter().filter(|v| !v.is_empty()) {
        let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        forms.push(encoded.replace('+', "%20"));
        forms.push(encoded);
        forms.push(secret.clone());
    }
    if forms.is_empty() {
        return s.to_owned();
    }
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    let mut out = s.to_owned();
    for form in &forms {
        if out.contains(form.as_str()) {
            out = out.replace(form.as_str(), REDACTED);
        }
    }
    let cuts: Vec<usize> = out.match_indices('…').map(|(i, _)| i).collect();
    for &cut in cuts.iter().rev() {
        let head = &out[..cut];
        let partial = head.char_indices().map(|(i, _)| i).find(|&i| {
            forms
                .iter()
                .any(|f| f.len() > head.len() - i && f.starts_with(&head[i..]))
        });
        if let Some(start) = partial {
            out = format!("{}{REDACTED}{}", &out[..start], &out[cut..]);
        }
    }
    if out != s
        && let Some(at) = out.rfind("…#")
    {
        let hash = fnv1a(&out.as_bytes()[..at]);
        out = format!("{}…#{hash:016x}", &out[..at]);
    }
    out
}

/// An error and its causes on one line, `a: b: c` (reqwest, for one, keeps the TLS or
/// connection cause in a source its own message leaves out).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// 64-bit FNV-1a of `bytes`: small, stable across toolchains and dependencies (a cut
/// kid's suffix here, a tenant's shard in `config::shard`).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// Whether `url`'s host is `localhost`, a `*.localhost` name or a loopback address: where
/// plain http does not cross a network.
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_strips_controls_and_bounds_length() {
        let check = |input: &str, max: usize, want: &str| {
            assert_eq!(text(input, max), want, "{input:?}");
        };
        check("invalid_client", 64, "invalid_client");
        check("", 64, "");
        check(
            "red\u{1b}[31mALERT\u{1b}[0m",
            64,
            "red\u{fffd}[31mALERT\u{fffd}[0m",
        );
        check(
            "line\nbreak\r\ttab",
            64,
            "line\u{fffd}break\u{fffd}\u{fffd}tab",
        );
        check("del\u{7f} c1\u{9b}", 64, "del\u{fffd} c1\u{fffd}");
        check("bidi \u{202e}txt.exe", 64, "bidi \u{fffd}txt.exe");
        check("isolate \u{2066}x\u{2069}", 64, "isolate \u{fffd}x\u{fffd}");
        check("abcdef", 3, "abc…");
        check("abc", 3, "abc");
        check("ééééé", 2, "éé…");
        check("ünïcödé ✓ stays", 64, "ünïcödé ✓ stays");
    }

    #[test]
    fn ident_keeps_clean_values_and_distinguishes_cut_ones() {
        let check = |input: &str, want: &str| assert_eq!(ident(input), want, "{input:?}");
        check("2011-04-29", "2011-04-29");
        check("RS256", "RS256");
        check("", "");
        let at_max = "k".repeat(IDENT_MAX);
        check(&at_max, &at_max);
        let long_a = format!("{}a", "k".repeat(300));
        let long_b = format!("{}b", "k".repeat(300));
        let (a, b) = (ident(&long_a), ident(&long_b));
        assert_ne!(a, b, "distinct long kids stay distinct");
        assert_eq!(a, ident(&long_a), "the same value gives the same result");
        assert!(a.chars().count() <= IDENT_MAX, "{a}");
        assert!(a.starts_with(&"k".repeat(IDENT_MAX - 24)), "{a}");
        assert!(a.contains("…#"), "{a}");
        let esc = ident("kid\u{1b}]0;pwned\u{7}");
        assert!(!esc.chars().any(char::is_control), "{esc:?}");
        assert!(esc.starts_with("kid\u{fffd}]0;pwned\u{fffd}…#"), "{esc}");
        assert_ne!(
            ident("a\u{1b}"),
            ident("a\u{7}"),
            "the hash is of the raw value"
        );
    }

    #[test]
    fn scrub_removes_every_known_secret() {
        let secrets = ["s3cr et/+x".to_owned(), "pw".to_owned(), String::new()];
        let check = |input: &str, want: &str| assert_eq!(scrub(input, &secrets), want);
        check("nothing here", "nothing here");
        check("bad secret s3cr et/+x!", "bad secret <redacted>!");
        check("form s3cr+et%2F%2Bx", "form <redacted>");
        check("pct s3cr%20et%2F%2Bx", "pct <redacted>");
        check("pw and pw", "<redacted> and <redacted>");
        check("", "");
        assert_eq!(scrub("pw", &[]), "pw");
        // A secret inside a longer one: the longer is replaced whole.
        let nested = ["abc".to_owned(), "xxabcxx".to_owned()];
        assert_eq!(
            scrub("[xxabcxx] [abc]", &nested),
            "[<redacted>] [<redacted>]"
        );
    }

    #[test]
    fn scrub_after_a_cut_leaves_no_part_of_a_secret() {
        let secret = "SECRETVALUE-0042".to_owned();
        let secrets = [secret.clone()];
        // The cut of `text` goes through the secret: its first characters are redacted.
        let cut = text(&format!("desc {secret}"), 9);
        assert_eq!(cut, "desc SECR…");
        assert_eq!(scrub(&cut, &secrets), "desc <redacted>…");
        // So does the cut of `ident`, and the hash over the raw value is replaced.
        let raw = format!("{}{secret}{}", "x".repeat(IDENT_MAX - 28), "y".repeat(50));
        let id = ident(&raw);
        assert!(id.contains("xSECR…#"), "{id}");
        let clean = scrub(&id, &secrets);
        let head = &clean[..clean.rfind("…#").unwrap()];
        assert_eq!(clean, format!("{head}…#{:016x}", fnv1a(head.as_bytes())));
        assert!(head.ends_with("x<redacted>"), "{clean}");
        assert!(!clean.contains("SECR"), "{clean}");
        assert!(
            !clean.ends_with(&id[id.rfind('#').unwrap()..]),
            "the raw hash is gone"
        );
        // A whole secret inside an ident's head: replaced, and the hash too.
        let whole = ident(&format!("kid-{secret}-{}", "z".repeat(200)));
        let clean = scrub(&whole, &secrets);
        assert!(clean.starts_with("kid-<redacted>-zzz"), "{clean}");
        assert!(
            !clean.ends_with(&whole[whole.rfind('#').unwrap()..]),
            "{clean}"
        );
        // Text without secrets, cut or not, is left alone.
        let plain = ident(&"k".repeat(300));
        assert_eq!(scrub(&plain, &secrets), plain);
        assert_eq!(scrub("a … b", &secrets), "a … b");
    }
}
