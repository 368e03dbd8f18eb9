//! RELP client (the Reliable Event Logging Protocol of rsyslog's `imrelp`), written from the
//! protocol description: every syslog message is a command with a transaction number that the
//! server acknowledges with `rsp 200` once it has taken it, so "delivered" means acknowledged,
//! not "written to the local socket buffer" as with plain TCP.
//!
//! Contract: frames are `TXNR SP COMMAND SP DATALEN [SP DATA] LF`; [`encode`] and [`parse`] are
//! pure (a partial frame is `Ok(None)`, anything malformed or oversized an error, never a
//! panic). A [`Session`] opens with `open` (offering `commands=syslog`), sends one message at a
//! time (window 1: simple, and alert rates are low) and reports success only on the matching
//! `rsp` with status 200. A non-200 answer is a refusal of that message; a broken connection,
//! a `serverclose` or a timeout is an outage and the message is sent again on a new session
//! (so a receiver may see an idempotency key twice, never miss one).

use super::syslog::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest DATALEN accepted from a server (its answers are short).
pub const MAX_DATA: usize = 128 * 1024;
/// Transaction numbers run 1..=999_999_999, then wrap to 1.
pub const MAX_TXNR: u32 = 999_999_999;

/// One RELP frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub txnr: u32,
    pub command: String,
    pub data: Vec<u8>,
}

/// The bytes of a frame.
pub fn encode(txnr: u32, command: &str, data: &[u8]) -> Vec<u8> {
    let mut out = format!("{txnr} {command} {}", data.len()).into_bytes();
    if !data.is_empty() {
        out.push(b' ');
        out.extend_from_slice(data);
    }
    out.push(b'\n');
    out
}

/// Reads a decimal number of at most `max_digits` digits ended by a space (or by LF for a
/// DATALEN of 0); returns it and the index after it.
fn number(buf: &[u8], at: usize, max_digits: usize) -> Result<Option<(u64, usize)>, String> {
    let mut v: u64 = 0;
    let mut i = at;
    loop {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        if b.is_ascii_digit() {
            if i - at >= max_digits {
                return Err("number too long".into());
            }
            v = v * 10 + u64::from(b - b'0');
            i += 1;
        } else if i == at {
            return Err(format!("expected a digit, got byte {b:#04x}"));
        } else {
            return Ok(Some((v, i)));
        }
    }
}

/// Parses one frame from the start of `buf`: `Ok(Some((frame, bytes used)))`, `Ok(None)` when
/// more bytes are needed, `Err` when the bytes are not RELP.
pub fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, String> {
    let Some((txnr, i)) = number(buf, 0, 9)? else {
        return Ok(None);
    };
    if buf.get(i) != Some(&b' ') {
        return Err("no space after TXNR".into());
    }
    let start = i + 1;
    let mut j = start;
    loop {
        match buf.get(j) {
            None => return Ok(None),
            Some(b' ') => break,
            Some(b) if b.is_ascii_alphabetic() && j - start < 32 => j += 1,
            Some(_) => return Err("bad COMMAND".into()),
        }
    }
    if j == start {
        return Err("empty COMMAND".into());
    }
    let command = String::from_utf8_lossy(buf.get(start..j).unwrap_or(&[])).into_owned();
    let Some((len, k)) = number(buf, j + 1, 9)? else {
        return Ok(None);
    };
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > MAX_DATA {
        return Err(format!("DATALEN {len} over {MAX_DATA}"));
    }
    let (data_start, end) = if len == 0 {
        (k, k)
    } else {
        match buf.get(k) {
            None => return Ok(None),
            Some(b' ') => (k + 1, k + 1 + len),
            Some(_) => return Err("no space before DATA".into()),
        }
    };
    match buf.get(end) {
        None => Ok(None),
        Some(b'\n') => Ok(Some((
            Frame {
                txnr: u32::try_from(txnr).map_err(|_| "TXNR out of range".to_string())?,
                command,
                data: buf.get(data_start..end).unwrap_or(&[]).to_vec(),
            },
            end + 1,
        ))),
        Some(_) => Err("no LF after the frame".into()),
    }
}

/// The status code and text of an `rsp` frame's data (`200 OK\n...`).
pub fn rsp_status(data: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(data);
    let first = text.lines().next().unwrap_or("");
    let (code, msg) = first.split_once(' ').unwrap_or((first, ""));
    (code.parse().unwrap_or(0), msg.to_string())
}

/// Why a RELP exchange failed.
#[derive(Debug)]
pub enum RelpError {
    /// The connection broke, closed or spoke something else: resend on a new session.
    Broken(String),
    /// The server answered this message with a status other than 200.
    Refused(u16, String),
}

/// An open RELP session over a connected stream.
pub struct Session {
    stream: Box<dyn Stream>,
    next: u32,
    buf: Vec<u8>,
}

impl Session {
    /// Sends `open` and checks that the server offers the `syslog` command.
    pub async fn open(stream: Box<dyn Stream>) -> Result<Session, RelpError> {
        let mut s = Session {
            stream,
            next: 1,
            buf: Vec::with_capacity(512),
        };
        let offers = concat!(
            "relp_version=0\nrelp_software=simboxd,",
            env!("CARGO_PKG_VERSION"),
            "\ncommands=syslog"
        );
        let rsp = s.exchange("open", offers.as_bytes()).await?;
        let text = String::from_utf8_lossy(&rsp);
        let offers_syslog = text
            .lines()
            .filter_map(|l| l.strip_prefix("commands="))
            .any(|c| c.split(',').any(|x| x.trim() == "syslog"));
        if !offers_syslog {
            return Err(RelpError::Broken(format!(
                "server does not offer the syslog command: {}",
                crate::text::escape(&text)
            )));
        }
        Ok(s)
    }

    /// Sends one syslog message; `Ok` once the server acknowledged it with 200.
    pub async fn syslog(&mut self, msg: &[u8]) -> Result<(), RelpError> {
        self.exchange("syslog", msg).await.map(|_| ())
    }

    async fn exchange(&mut self, command: &str, data: &[u8]) -> Result<Vec<u8>, RelpError> {
        let txnr = self.next;
        self.next = if txnr >= MAX_TXNR { 1 } else { txnr + 1 };
        let frame = encode(txnr, command, data);
        let io = |e: std::io::Error| RelpError::Broken(e.to_string());
        self.stream.write_all(&frame).await.map_err(io)?;
        self.stream.flush().await.map_err(io)?;
        loop {
            match parse(&self.buf).map_err(RelpError::Broken)? {
                Some((f, used)) => {
                    self.buf.drain(..used);
                    if f.command == "serverclose" {
                        return Err(RelpError::Broken("server closed the session".into()));
                    }
                    if f.command != "rsp" || f.txnr != txnr {
                        // Window 1: nothing else may be outstanding.
                        return Err(RelpError::Broken(format!(
                            "unexpected {} for txnr {} (waiting for {txnr})",
                            crate::text::escape(&f.command),
                            f.txnr
                        )));
                    }
                    let (code, msg) = rsp_status(&f.data);
                    if command == "close" || code == 200 {
                        return Ok(f.data);
                    }
                    return Err(RelpError::Refused(
                        code,
                        crate::text::escape(&msg).into_owned(),
                    ));
                }
                None => {
                    let mut chunk = [0u8; 1024];
                    let n = self.stream.read(&mut chunk).await.map_err(io)?;
                    if n == 0 {
                        return Err(RelpError::Broken("connection closed by the server".into()));
                    }
                    self.buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
                    if self.buf.len() > MAX_DATA + 64 {
                        return Err(RelpError::Broken("answer too long".into()));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_encode_and_parse_both_ways() {
        assert_eq!(
            encode(1, "syslog", b"<13>1 - x"),
            b"1 syslog 9 <13>1 - x\n".to_vec()
        );
        assert_eq!(encode(7, "close", b""), b"7 close 0\n".to_vec());
        let (f, used) = parse(b"2 rsp 6 200 OK\nrest").unwrap().unwrap();
        assert_eq!(
            (f.txnr, f.command.as_str(), f.data.as_slice(), used),
            (2, "rsp", &b"200 OK"[..], 15)
        );
        let (f, used) = parse(b"0 serverclose 0\n").unwrap().unwrap();
        assert_eq!(
            (f.txnr, f.command.as_str(), f.data.len(), used),
            (0, "serverclose", 0, 16)
        );
        // Partial frames wait for more bytes.
        for cut in 0..15 {
            assert_eq!(parse(&b"2 rsp 6 200 OK\n"[..cut]).unwrap(), None, "{cut}");
        }
        // Data may hold LF: DATALEN decides.
        let (f, _) = parse(b"1 rsp 30 200 OK\nrelp_version=0\ncommands\n")
            .unwrap()
            .unwrap();
        assert_eq!(rsp_status(&f.data), (200, "OK".to_string()));
        assert_eq!(rsp_status(b"500 not taken"), (500, "not taken".to_string()));
        for bad in [
            &b"x rsp 0\n"[..],
            b"1 rsp 3 abcd\n",
            b"1 r-p 0\n",
            b"1 rsp 0 \n",
            b"1234567890 rsp 0\n",
            b"1 rsp 999999999 ",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
                                              txnr in 1u32..=MAX_TXNR, data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse(&bytes);
            let enc = encode(txnr, "syslog", &data);
            let (f, used) = parse(&enc).unwrap().unwrap();
            proptest::prop_assert_eq!(used, enc.len());
            proptest::prop_assert_eq!((f.txnr, f.command.as_str(), f.data), (txnr, "syslog", data));
        }
    }
}
