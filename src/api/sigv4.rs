//! AWS Signature Version 4, checked the way AWS checks it: the canonical request is rebuilt
//! from the client's own `SignedHeaders` list (awscli signs `content-type;host;x-amz-date`,
//! plus `x-amz-security-token` with session credentials), region and service come from the
//! credential scope, the signature is compared in constant time, and a request dated more
//! than 15 minutes from now is refused (a captured request can't be replayed later).

use super::error::{ApiError, ApiResult};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// How far a request's date may be from the server's clock, as on AWS.
pub const MAX_SKEW_SECS: i64 = 15 * 60;

/// What the signature check needs of an HTTP request.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The raw query string (without `?`), empty for the usual form POST.
    pub query: &'a str,
    /// Header names in any case; a name given twice has its values joined by commas.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// Who signed, and for which region and service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub access_key: String,
    pub region: String,
    pub service: String,
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
struct Authorization<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> ApiResult<Authorization<'_>> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
        ApiError::new(
            "IncompleteSignature",
            "Authorization header must use the AWS4-HMAC-SHA256 algorithm (Signature Version 4)",
        )
    })?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let incomplete = |what: &str| {
        ApiError::new(
            "IncompleteSignature",
            format!("Authorization header requires '{what}' parameter"),
        )
    };
    let credential = credential.ok_or_else(|| incomplete("Credential"))?;
    let signed = signed.ok_or_else(|| incomplete("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| incomplete("Signature"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, "aws4_request"] = scope[..] else {
        return Err(ApiError::new(
            "IncompleteSignature",
            format!(
                "Credential must be ACCESS_KEY/DATE/REGION/SERVICE/aws4_request, not '{credential}'"
            ),
        ));
    };
    Ok(Authorization {
        access_key,
        date,
        region,
        service,
        signed_headers: signed.split(';').collect(),
        signature,
    })
}

/// Checks `req`'s signature. `secret_of` gives the secret of an access key (`None`: no
/// such key); `now` is the server's clock in Unix seconds.
pub fn verify(
    req: &Request,
    secret_of: impl Fn(&str) -> Option<String>,
    now: i64,
) -> ApiResult<Signed> {
    let header = |name: &str| -> Option<String> {
        let values: Vec<&str> = req
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    };
    let Some(auth_value) = header("authorization") else {
        return Err(ApiError::auth(
            "AWS was not able to validate the provided access credentials: the request has no Authorization header (sign it with Signature Version 4, e.g. through the AWS CLI or an SDK)",
        ));
    };
    let auth = parse_authorization(&auth_value)?;
    let Some(secret) = secret_of(auth.access_key) else {
        return Err(ApiError::auth(format!(
            "AWS was not able to validate the provided access credentials: access key {} is not this account's (use the keys `vpclab serve` wrote, profile vpclab-root)",
            auth.access_key
        )));
    };
    let amz_date = header("x-amz-date").ok_or_else(|| {
        ApiError::new(
            "IncompleteSignature",
            "The request must carry an X-Amz-Date header",
        )
    })?;
    let when = parse_amz_date(&amz_date).ok_or_else(|| {
        ApiError::new(
            "IncompleteSignature",
            format!("X-Amz-Date '{amz_date}' is not of the form YYYYMMDDTHHMMSSZ"),
        )
    })?;
    if (now - when).abs() > MAX_SKEW_SECS {
        return Err(ApiError::auth(format!(
            "Signature expired: the request is dated {amz_date}, more than 15 minutes from the server's time; check the clock of the machine that signed it"
        )));
    }
    if !amz_date.starts_with(auth.date) {
        return Err(ApiError::auth(format!(
            "The credential scope's date {} is not the request's date {amz_date}",
            auth.date
        )));
    }
    if !auth.signed_headers.contains(&"host") {
        return Err(ApiError::auth("SignedHeaders must include host"));
    }
    let mut canonical_headers = String::new();
    for name in &auth.signed_headers {
        let value = header(name).ok_or_else(|| {
            ApiError::auth(format!(
                "Header '{name}' is in SignedHeaders but not in the request"
            ))
        })?;
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(&collapse_spaces(&value));
        canonical_headers.push('\n');
    }
    let payload_hash = header("x-amz-content-sha256")
        .filter(|h| h != "UNSIGNED-PAYLOAD")
        .unwrap_or_else(|| hex(&Sha256::digest(req.body)));
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        canonical_uri(req.path),
        canonical_query(req.query),
        canonical_headers,
        auth.signed_headers.join(";"),
        payload_hash
    );
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), auth.date.as_bytes());
    for part in [auth.region, auth.service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let expected = hex(&hmac(&key, string_to_sign.as_bytes()));
    if !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        return Err(ApiError::auth(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
        ));
    }
    Ok(Signed {
        access_key: auth.access_key.to_string(),
        region: auth.region.to_string(),
        service: auth.service.to_string(),
    })
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal length and bytes, in time that does not depend on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn collapse_spaces(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// AWS's URI encoding: everything but unreserved characters as `%XX`.
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                o.push(b as char)
            }
            b'/' if keep_slash => o.push('/'),
            _ => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}

fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    let decoded: String =
        form_urlencoded::parse(format!("p={}", path.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
    uri_encode(&decoded, true)
}

/// Parameters decoded, re-encoded AWS's way and sorted by name, then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (uri_encode(&k, false), uri_encode(&v, false)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `20240501T120000Z` as Unix seconds.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Unix seconds as ISO 8601 (`2024-05-01T12:00:00.000Z`), how EC2 writes times.
pub fn iso8601(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // The inverse of `days_from_civil`.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AKIAVPCLABEXAMPLE0001";
    const SECRET: &str = "vpclabSecretExampleKey/0123456789abcdefXYZ";
    const BODY: &[u8] = b"Action=DescribeVpcs&Version=2016-11-15";
    /// Signed by botocore's own `SigV4Auth` (the signer awscli uses) for region
    /// ap-northeast-2 at 2026-12-02T07:34:06Z.
    const SIGNATURE: &str = "fb64fbd14b1d414c94d4532e00df49f7bdaec9e3b9c994f8b8bee6ea23786708";

    fn headers(signature: &str, date: &str) -> Vec<(String, String)> {
        vec![
            ("Host".into(), "127.0.0.1:4566".into()),
            (
                "Content-Type".into(),
                "application/x-www-form-urlencoded; charset=utf-8".into(),
            ),
            ("X-Amz-Date".into(), date.into()),
            (
                "Authorization".into(),
                format!(
                    "AWS4-HMAC-SHA256 Credential={KEY}/20261202/ap-northeast-2/ec2/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature={signature}"
                ),
            ),
        ]
    }

    fn check(headers: &[(String, String)], body: &[u8], now: i64) -> ApiResult<Signed> {
        let req = Request {
            method: "POST",
            path: "/",
            query: "",
            headers,
            body,
        };
        verify(&req, |k| (k == KEY).then(|| SECRET.to_string()), now)
    }

    fn signed_at() -> i64 {
        parse_amz_date("20261202T073406Z").unwrap()
    }

    #[test]
    fn botocores_signature_is_accepted_with_region_and_service_from_the_scope() {
        let s = check(&headers(SIGNATURE, "20261202T073406Z"), BODY, signed_at()).unwrap();
        assert_eq!(s.access_key, KEY);
        assert_eq!(
            (s.region.as_str(), s.service.as_str()),
            ("ap-northeast-2", "ec2")
        );
    }

    #[test]
    fn a_changed_body_key_or_signature_is_an_auth_failure() {
        let h = headers(SIGNATURE, "20261202T073406Z");
        let e = check(&h, b"Action=DeleteVpc&Version=2016-11-15", signed_at()).unwrap_err();
        assert_eq!((e.code.as_str(), e.status), ("AuthFailure", 401));
        let mut wrong = SIGNATURE.to_string();
        wrong.replace_range(0..1, "0");
        let e = check(&headers(&wrong, "20261202T073406Z"), BODY, signed_at()).unwrap_err();
        assert!(e.message.contains("does not match"), "{e}");
        let req = Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &h,
            body: BODY,
        };
        let e = verify(&req, |_| None, signed_at()).unwrap_err();
        assert_eq!(e.code, "AuthFailure");
        assert!(e.message.contains(KEY), "{e}");
    }

    #[test]
    fn a_request_dated_more_than_15_minutes_away_is_refused() {
        let h = headers(SIGNATURE, "20261202T073406Z");
        assert!(check(&h, BODY, signed_at() + MAX_SKEW_SECS).is_ok());
        let e = check(&h, BODY, signed_at() + MAX_SKEW_SECS + 1).unwrap_err();
        assert!(e.message.starts_with("Signature expired"), "{e}");
        assert!(check(&h, BODY, signed_at() - MAX_SKEW_SECS - 1).is_err());
    }

    #[test]
    fn an_unsigned_or_malformed_request_says_what_is_missing() {
        let e = check(&[], BODY, 0).unwrap_err();
        assert_eq!(e.code, "AuthFailure");
        let h = vec![(
            "Authorization".to_string(),
            "AWS4-HMAC-SHA256 Credential=x".to_string(),
        )];
        assert_eq!(check(&h, BODY, 0).unwrap_err().code, "IncompleteSignature");
    }

    #[test]
    fn the_aws_test_suite_get_vanilla_request_verifies() {
        // AWS's published Signature Version 4 test suite, `get-vanilla`.
        let h = vec![
            ("Host".to_string(), "example.amazonaws.com".to_string()),
            ("X-Amz-Date".to_string(), "20150830T123600Z".to_string()),
            ("Authorization".to_string(), "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31".to_string()),
        ];
        let req = Request {
            method: "GET",
            path: "/",
            query: "",
            headers: &h,
            body: b"",
        };
        let now = parse_amz_date("20150830T123600Z").unwrap();
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_string();
        let s = verify(&req, |_| Some(secret.clone()), now).unwrap();
        assert_eq!(s.service, "service");
    }

    #[test]
    fn dates_convert_both_ways() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20000301T000000Z"), Some(951868800));
        assert_eq!(iso8601(951868800), "2000-03-01T00:00:00.000Z");
        assert_eq!(parse_amz_date("2000-03-01"), None);
        assert_eq!(parse_amz_date("20001301T000000Z"), None);
    }
}
