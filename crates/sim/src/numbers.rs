//! Phone numbers in the formats real traffic shows, random draws and the signalling scrambler.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Home country calling code (numbers are drawn in its plans; digits are random).
pub const HOME_CC: &str = "86";

const MOBILE_PREFIXES: [&str; 16] = [
    "130", "131", "132", "135", "136", "137", "138", "139", "150", "151", "157", "158", "159",
    "186", "187", "188",
];

fn digits(rng: &mut ChaCha8Rng, n: usize, out: &mut String) {
    for _ in 0..n {
        out.push(char::from(b'0' + rng.random_range(0..10u8)));
    }
}

/// A national mobile number, e.g. `13812345678`.
pub fn mobile_national(rng: &mut ChaCha8Rng) -> String {
    let mut s = String::with_capacity(11);
    s.push_str(MOBILE_PREFIXES[rng.random_range(0..MOBILE_PREFIXES.len())]);
    digits(rng, 8, &mut s);
    s
}

/// A national number in one of the formats softswitches send: `138...`, `+86138...`,
/// `0086138...`, `86138...` or with the `17951` IP-dialling prefix. Returns (format, number).
pub fn dialled_mobile(rng: &mut ChaCha8Rng) -> (&'static str, String) {
    let n = mobile_national(rng);
    let u: f64 = rng.random();
    if u < 0.4 {
        ("national", n)
    } else if u < 0.65 {
        ("e164", format!("+{HOME_CC}{n}"))
    } else if u < 0.85 {
        ("intl-00", format!("00{HOME_CC}{n}"))
    } else if u < 0.95 {
        ("cc", format!("{HOME_CC}{n}"))
    } else {
        ("prefix", format!("17951{n}"))
    }
}

/// A domestic landline in E.164, e.g. `+862155501234`.
pub fn landline_e164(rng: &mut ChaCha8Rng) -> String {
    let areas = ["10", "21", "20", "755", "571", "28"];
    let a = areas[rng.random_range(0..areas.len())];
    let mut s = format!("+{HOME_CC}{a}");
    digits(rng, 11 - a.len(), &mut s);
    s
}

/// A domestic number as a person dials it (mobile national or landline with trunk 0).
pub fn domestic_dialled(rng: &mut ChaCha8Rng) -> String {
    if rng.random_bool(0.6) {
        mobile_national(rng)
    } else {
        let l = landline_e164(rng);
        format!("0{}", l.get(1 + HOME_CC.len()..).unwrap_or(""))
    }
}

/// A domestic caller as the provider presents it (E.164).
pub fn domestic_cli(rng: &mut ChaCha8Rng) -> String {
    if rng.random_bool(0.6) {
        format!("+{HOME_CC}{}", mobile_national(rng))
    } else {
        landline_e164(rng)
    }
}

/// An international calling line identity (`+CC...` or `00CC...`).
pub fn intl_cli(rng: &mut ChaCha8Rng) -> String {
    let ccs = [
        "1", "44", "49", "33", "234", "880", "92", "63", "971", "7", "55",
    ];
    let cc = ccs[rng.random_range(0..ccs.len())];
    let mut s = if rng.random_bool(0.7) {
        format!("+{cc}")
    } else {
        format!("00{cc}")
    };
    digits(rng, 10, &mut s);
    s
}

/// A number in a foreign plan (expatriates' provider numbers), e.g. `+442079460123`.
pub fn foreign_e164(rng: &mut ChaCha8Rng, cc: &str) -> String {
    let mut s = format!("+{cc}");
    digits(rng, 10, &mut s);
    s
}

/// Dial prefixes toll-fraud scanners try in turn in front of an international number, hoping
/// one matches a PBX's outbound route: 00 (ITU), 011 (NANP), 9 + 011 / 9 + 00 (an outside-line
/// digit first), 000, 0011 and `+`.
pub const TOLL_PREFIXES: [&str; 7] = ["00", "011", "9011", "900", "000", "0011", "+"];

/// An international destination of the kind toll fraud pumps traffic to (premium and
/// high-termination-rate ranges: Palestinian/Israeli mobiles, international networks and
/// satellite, small West African and Baltic operators), without any dial prefix.
pub fn premium_number(rng: &mut ChaCha8Rng) -> String {
    let heads = [
        "97259", "97056", "88216", "8816", "37167", "25290", "22507", "5352", "35568", "23990",
    ];
    let head = heads[rng.random_range(0..heads.len())];
    let mut s = head.to_string();
    digits(rng, 12 - head.len(), &mut s);
    s
}

/// Lowercase hex of `n` random bytes.
pub fn hex_id(rng: &mut ChaCha8Rng, n: usize) -> String {
    let mut s = String::with_capacity(2 * n);
    for _ in 0..n {
        let b: u8 = rng.random();
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    s
}

/// Median-`median`, log-sd `sigma` lognormal draw.
pub fn lognormal(rng: &mut ChaCha8Rng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

/// Standard normal (Box-Muller).
pub fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Exponential draw with the given mean.
pub fn exponential(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    let u: f64 = rng.random::<f64>().max(1e-12);
    -mean * u.ln()
}

pub fn uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    if hi <= lo {
        return lo;
    }
    rng.random_range(lo..hi)
}

/// VOS-style scrambling: XOR with a keystream from the line key and a message nonce.
pub fn scramble(key: u64, nonce: u64, buf: &mut [u8]) {
    let mut x = super::engine::Xs::new(key ^ nonce.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    for c in buf.chunks_mut(8) {
        let k = x.next().to_le_bytes();
        for (b, kb) in c.iter_mut().zip(k) {
            *b ^= kb;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn formats_carry_the_national_number() {
        let mut r = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..200 {
            let (fmt, n) = dialled_mobile(&mut r);
            assert!(n.chars().all(|c| c.is_ascii_digit() || c == '+'), "{n}");
            let nat_len = 11;
            match fmt {
                "national" => assert_eq!(n.len(), nat_len),
                "e164" => assert!(n.starts_with("+86") && n.len() == nat_len + 3),
                "intl-00" => assert!(n.starts_with("0086") && n.len() == nat_len + 4),
                "cc" => assert!(n.starts_with("86") && n.len() == nat_len + 2),
                "prefix" => assert!(n.starts_with("17951") && n.len() == nat_len + 5),
                other => panic!("{other}"),
            }
        }
        let d = domestic_dialled(&mut r);
        assert!(d.len() >= 11, "{d}");
    }

    #[test]
    fn scramble_is_an_involution_and_hides_text() {
        let mut b = b"INVITE sip:1@2 SIP/2.0\r\n".to_vec();
        scramble(7, 9, &mut b);
        assert!(!b.starts_with(b"INVITE"));
        scramble(7, 9, &mut b);
        assert_eq!(&b[..], b"INVITE sip:1@2 SIP/2.0\r\n");
    }

    #[test]
    fn lognormal_median_is_close() {
        let mut r = ChaCha8Rng::seed_from_u64(1);
        let mut v: Vec<f64> = (0..2001).map(|_| lognormal(&mut r, 60.0, 0.8)).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        let med = v[1000];
        assert!((50.0..72.0).contains(&med), "{med}");
    }
}
