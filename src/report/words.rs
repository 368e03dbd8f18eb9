//! Plain words for the report: what each detection signal is called for a reader who is not an
//! engineer, what it measures and what it cannot tell. Signal codes stay in JSON; the report shows
//! these names with the code beside them.

/// (code, plain name, what it measures, what it cannot tell).
pub const SIGNALS: &[(&str, &str, &str, &str)] = &[
    (
        "foreign_inbound",
        "Calls come in from abroad",
        "The share of the line's calls that were sent to it by a remote party outside the configured domestic networks. A SIM-box gateway receives its calls from a softswitch abroad.",
        "A person or business using a foreign VoIP provider, or a help desk called from abroad, also receives calls from abroad.",
    ),
    (
        "distinct_called",
        "Each incoming call is for a different number",
        "How many different called numbers the incoming calls carry. A gateway is handed the destination mobile number of every call; an ordinary line is called on its own number, an office on a small block of numbers.",
        "Anyone can send calls with arbitrary numbers to a line; the line's answering of them is what matters (see the call table).",
    ),
    (
        "concurrency_ceiling",
        "Simultaneous calls held at a channel count",
        "How long the line holds the same number of simultaneous calls (4, 8, 16, 32: the SIM channels of a gateway) with new calls starting as others end.",
        "An office PBX also carries simultaneous calls; it does so in both directions and with a domestic provider.",
    ),
    (
        "machine_rhythm",
        "Short calls and many unanswered attempts",
        "The median talk time of answered incoming calls and the share of incoming calls answered. Gateways carry short calls with many failed attempts.",
        "Call centres and unlucky days also produce short or failed calls.",
    ),
    (
        "gap_regularity",
        "New calls start seconds after others end",
        "The gap between a call ending and the next call taking its place. A gateway's channels are re-seized within seconds, with regular gaps.",
        "A busy inbound service line also refills quickly.",
    ),
    (
        "registrations",
        "Many SIP accounts registered from one address",
        "SIP accounts registered from the line to the same registrar, one per SIM port on many gateways, and their re-registration period.",
        "A small office registers several phones too; a gateway may register none at all.",
    ),
    (
        "fingerprint",
        "Software name of a gateway product",
        "User-Agent/Server, Allow or SDP values that match names of gateway products.",
        "Names are trivially changed or removed; never conclusive alone.",
    ),
    (
        "opaque_media",
        "Voice streams without readable signalling",
        "Voice-shaped two-way media flows (about 50 packets per second each way) with no readable SIP, several at once to one remote peer.",
        "Encrypted apps and VPN voice look alike; without signalling no number or call outcome is known.",
    ),
    (
        "site",
        "One of a group of lines with the same peer and rhythm",
        "Lines that take calls from the same remote peer with the same call rhythm (several cables into one premises).",
        "Lines of one business share a provider and rhythm too.",
    ),
    (
        "flagged_earlier",
        "Flagged earlier in this capture",
        "The line earned the gateway verdict earlier; the verdict is held for the long window after it was last earned.",
        "The current evidence alone may score lower (its score is given).",
    ),
];

/// The plain-language name of a signal code (the code itself when unknown).
pub fn signal_name(code: &str) -> &str {
    SIGNALS.iter().find(|s| s.0 == code).map_or(code, |s| s.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_signal_names() {
        assert_eq!(signal_name("foreign_inbound"), "Calls come in from abroad");
        assert_eq!(signal_name("new_signal"), "new_signal");
    }
}
