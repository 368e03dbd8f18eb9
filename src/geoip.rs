//! The MaxMind country database behind `[network] geoip_db` (opened by the application, looked
//! up by the core through `CountryDb`).

use simboxd_core::config::{CountryDb, NetworkConfig};
use std::path::Path;

/// A country database opened once and shared (lookups are read-only).
pub struct GeoIp(maxminddb::Reader<Vec<u8>>);

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GeoIp")
    }
}

impl GeoIp {
    pub fn open(path: &Path) -> Result<GeoIp, String> {
        maxminddb::Reader::open_readfile(path)
            .map(GeoIp)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))
    }
}

impl CountryDb for GeoIp {
    fn in_country(&self, ip: std::net::IpAddr, iso: &str) -> bool {
        let Ok(found) = self.0.lookup(ip) else {
            return false;
        };
        matches!(
            found.decode::<maxminddb::geoip2::Country>(),
            Ok(Some(c)) if c.country.iso_code.is_some_and(|c| c.eq_ignore_ascii_case(iso))
        )
    }
}

/// Opens `net.geoip_db` (checking `home_country`) into `net.geoip`; a message saying what is
/// wrong otherwise.
pub fn open_geoip(net: &mut NetworkConfig) -> Result<(), String> {
    let Some(path) = &net.geoip_db else {
        return Ok(());
    };
    match &net.home_country {
        Some(c) if c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()) => {}
        Some(c) => {
            return Err(format!(
                "home_country {c:?} is not an ISO 3166-1 alpha-2 code"
            ))
        }
        None => return Err("geoip_db needs home_country (ISO 3166-1 alpha-2)".into()),
    }
    net.geoip = Some(std::sync::Arc::new(GeoIp::open(path)?));
    Ok(())
}
