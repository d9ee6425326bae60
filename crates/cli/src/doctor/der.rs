//! Just enough DER to read two things webpki does not tell us about a
//! certificate: whether it issued itself, and its validity period (needed
//! when we trust a pinned certificate that webpki refuses to check).
//!
//! Certificate ::= SEQUENCE { tbs SEQUENCE { [0] version?, serial, sigAlg,
//! issuer, validity, subject, ... } ... }.

/// The certificate's serial, signature algorithm, issuer, validity and
/// subject, each as a whole DER element; `None` when it does not parse.
fn tbs_fields(cert: &[u8]) -> Option<[&[u8]; 5]> {
    let tbs = content(content(cert)?)?;
    let mut fields = Vec::with_capacity(5);
    let mut rest = tbs;
    while let Some((tag, _, next)) = tlv(rest) {
        let whole = &rest[..rest.len() - next.len()];
        if tag != 0xa0 {
            fields.push(whole);
        }
        rest = next;
        if fields.len() == 5 {
            break;
        }
    }
    fields.try_into().ok()
}

/// True when the certificate's issuer equals its subject.
pub fn is_self_issued(cert: &[u8]) -> bool {
    tbs_fields(cert).is_some_and(|f| f[2] == f[4])
}

/// `(not_before, not_after)` in seconds since the Unix epoch.
pub fn validity(cert: &[u8]) -> Option<(i64, i64)> {
    let validity = content(tbs_fields(cert)?[3])?;
    let (tag_a, a, rest) = tlv(validity)?;
    let (tag_b, b, _) = tlv(rest)?;
    Some((time(tag_a, a)?, time(tag_b, b)?))
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn time(tag: u8, text: &[u8]) -> Option<i64> {
    let digits = text.strip_suffix(b"Z")?;
    let num = |s: &[u8]| -> Option<i64> {
        s.iter().try_fold(0i64, |acc, d| {
            d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
        })
    };
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy = num(&digits[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (0x18, 14) => (num(&digits[..4])?, &digits[4..]),
        _ => return None,
    };
    let field = |i: usize| num(&rest[i..i + 2]);
    let days = days_from_civil(year, field(0)?, field(2)?);
    Some(days * 86_400 + field(4)? * 3600 + field(6)? * 60 + field(8)?)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn content(b: &[u8]) -> Option<&[u8]> {
    tlv(b).map(|(_, content, _)| content)
}

/// One DER element: `(tag, content, rest)`.
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let len = b
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, x| (acc << 8) | *x as usize);
        (len, 2 + n)
    };
    let content = b.get(header..header.checked_add(len)?)?;
    Some((tag, content, &b[header + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_issued_detection() {
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(vec!["ca.test".into()]).unwrap();
        let ca = ca.self_signed(&key).unwrap();
        assert!(is_self_issued(ca.der()));
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = rcgen::CertificateParams::new(vec!["leaf.test".into()]).unwrap();
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, "leaf");
        let leaf = leaf.signed_by(&leaf_key, &ca, &key).unwrap();
        assert!(!is_self_issued(leaf.der()));
        assert!(!is_self_issued(b"\x30\x03\x02\x01"));
    }

    #[test]
    fn validity_reads_both_time_forms() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["a.test".into()]).unwrap();
        // rcgen writes UTCTime before 2050 and GeneralizedTime from 2050 on.
        p.not_before = rcgen::date_time_ymd(2020, 3, 1);
        p.not_after = rcgen::date_time_ymd(2051, 1, 1);
        let cert = p.self_signed(&key).unwrap();
        assert_eq!(validity(cert.der()), Some((1_583_020_800, 2_556_144_000)));
        assert_eq!(validity(b"\x30\x03\x02\x01"), None);
    }
}
