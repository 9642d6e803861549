//! A deterministic demo inventory, and the demo OM account.
//!
//! [`inventory`] builds the rows of a small but complete inventory (both the
//! ADSL map fed by Matrix and the FTTH map fed by eMatrix) from a
//! [`DemoSpec`]; the same spec always gives identical rows, parents before
//! children. [`DemoSpec::default`] is the hand-testing set described in
//! `docs/demo-inventory.md`; [`DemoSpec::with_ports`] scales it for
//! benchmarks.
//!
//! The default set, by exchange number `nn` = `01`..`10`:
//!
//! | row | values |
//! |---|---|
//! | sector | `CAIRO` (zones `Z01`–`Z05`), `ALEX` (zones `Z06`–`Z10`), in both maps |
//! | zone / city | `Znn`, `Cnn` (city `Cnn` in zone `Znn`), in both maps |
//! | exchange | `EXnn` in city `Cnn`, popid `196nn`, area code `2` (nn ≤ 05) or `3` |
//! | DSLAM | `EXnn-D1`..`D4`, IP `10.nn.0.d`; D1–D2 ADSL, D3–D4 VDSL |
//! | port | frame 0, slots 1–8, ports 0–63; port % 10 == 9 `OCCUPIED`, slot 8 port 63 `FAULTY` |
//! | OLT | `OLTnn` at `EXnn`, IP `10.nn.1.1`, PON ports `0/1/0`..`0/1/15` (128 ONTs each) |
//! | compound | `CP01`..`CP20`; `CPmm` at `EXkk`, kk = (mm−1) mod 10 + 1, served by `OLTkk` `0/1/j`, `0/1/j+1`, j = 2·((mm−1) div 10) |
//! | VLAN | every OLT: 100–1099 `INTERNET`, 2000–2099 `VOICE`, 3000–3099 `IPTV` |
//!
//! ```
//! use im_core::demo::{inventory, DemoSpec};
//! let inv = inventory(&DemoSpec::default());
//! assert_eq!(inv.exchanges[0].popid, "19601");
//! assert_eq!(inv.ports.len(), 20_480);
//! ```

use crate::model::{
    City, Compound, Domain, Dslam, Exchange, Inventory, Olt, Ont, PonPort, PonPortRef, Port,
    Sector, SourceState, Technology, Vlan, VlanPurpose, Zone,
};

/// Login of the OM account that [`install_if_empty`] creates.
pub const DEMO_OM_USER: &str = "OM_webservice";
/// Password of the OM account that [`install_if_empty`] creates.
pub const DEMO_OM_PASSWORD: &str = "om-demo-secret";

/// Model of every demo DSLAM.
pub const DSLAM_MODEL: &str = "MA5600T";
/// Model of every demo OLT.
pub const OLT_MODEL: &str = "MA5800-X7";
/// Model of every demo ONT.
pub const ONT_MODEL: &str = "HG8245H";
/// Highest number of ONTs per demo PON port (unless `onts_per_pon` is larger).
pub const MAX_ONTS_PER_PON: u32 = 128;

/// VLAN ranges of every demo OLT: (first id, last id, purpose).
pub const VLAN_RANGES: [(u16, u16, VlanPurpose); 3] = [
    (100, 1099, VlanPurpose::Internet),
    (2000, 2099, VlanPurpose::Voice),
    (3000, 3099, VlanPurpose::Iptv),
];

/// The two sectors: (code, name). The first half of the exchanges lies in
/// the first, the rest in the second.
const SECTORS: [(&str, &str); 2] = [("CAIRO", "Cairo"), ("ALEX", "Alexandria")];

/// Area codes of the first and of the second half of the exchanges.
const AREA_CODES: [&str; 2] = ["2", "3"];

/// The shape of a demo inventory. [`Default`] is the small hand-testing set.
///
/// ```
/// let spec = im_core::demo::DemoSpec::default();
/// assert_eq!((spec.exchanges, spec.dslams_per_exchange, spec.slots, spec.ports_per_slot),
///            (10, 4, 8, 64));
/// assert_eq!(spec.port_count(), 20_480);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSpec {
    /// Exchanges (POPs), each with its own zone and city in both maps and
    /// one OLT. Default 10.
    pub exchanges: u32,
    /// DSLAMs per exchange (the first half ADSL, the rest VDSL; at most 255).
    /// Default 4.
    pub dslams_per_exchange: u32,
    /// Slots per DSLAM, numbered from 1. Default 8.
    pub slots: u32,
    /// Ports per slot, numbered from 0. Default 64.
    pub ports_per_slot: u32,
    /// Compounds, spread round-robin over the exchanges. Default 20.
    pub compounds: u32,
    /// PON ports per OLT (frame 0, slot 1, numbered from 0). Default 16.
    pub pon_ports_per_olt: u32,
    /// ONTs known to the source per PON port (ids from 0). Default 0.
    pub onts_per_pon: u32,
}

impl Default for DemoSpec {
    fn default() -> Self {
        DemoSpec {
            exchanges: 10,
            dslams_per_exchange: 4,
            slots: 8,
            ports_per_slot: 64,
            compounds: 20,
            pon_ports_per_olt: 16,
            onts_per_pon: 0,
        }
    }
}

impl DemoSpec {
    /// The default set grown to at least `total` DSLAM ports: only the number
    /// of exchanges grows (never below the default 10), and the compounds
    /// with it (2 per exchange). Everything per exchange stays as in the
    /// default.
    ///
    /// ```
    /// let spec = im_core::demo::DemoSpec::with_ports(2_000_000);
    /// assert!(spec.port_count() >= 2_000_000);
    /// assert_eq!(spec.exchanges, 977);
    /// assert_eq!(spec.compounds, 1954);
    /// ```
    pub fn with_ports(total: u64) -> DemoSpec {
        let base = DemoSpec::default();
        let per_exchange = base.ports_per_exchange().max(1);
        let needed = total.div_ceil(per_exchange);
        let exchanges = u32::try_from(needed)
            .unwrap_or(u32::MAX)
            .max(base.exchanges);
        DemoSpec {
            exchanges,
            compounds: exchanges.saturating_mul(2),
            ..base
        }
    }

    /// DSLAM ports of one exchange.
    pub fn ports_per_exchange(&self) -> u64 {
        u64::from(self.dslams_per_exchange) * u64::from(self.slots) * u64::from(self.ports_per_slot)
    }

    /// DSLAM ports in the whole inventory (computed, nothing generated).
    pub fn port_count(&self) -> u64 {
        u64::from(self.exchanges).saturating_mul(self.ports_per_exchange())
    }
}

/// The source state of a DSLAM port in a demo inventory: `FAULTY` for the
/// last port of the last slot (slot 8 port 63 by default), else `OCCUPIED`
/// when the port number ends in 9, else `AVAILABLE`. Same on every DSLAM.
///
/// ```
/// use im_core::demo::{port_state, DemoSpec};
/// use im_core::model::SourceState;
/// let spec = DemoSpec::default();
/// assert_eq!(port_state(&spec, 1, 9), SourceState::Occupied);
/// assert_eq!(port_state(&spec, 8, 63), SourceState::Faulty);
/// assert_eq!(port_state(&spec, 1, 5), SourceState::Available);
/// ```
pub fn port_state(spec: &DemoSpec, slot: u32, port: u32) -> SourceState {
    if slot == spec.slots && Some(port) == spec.ports_per_slot.checked_sub(1) {
        SourceState::Faulty
    } else if port % 10 == 9 {
        SourceState::Occupied
    } else {
        SourceState::Available
    }
}

/// A valid ONT serial (four letters and eight upper-case hex digits),
/// distinct for every `n` below 26⁴·2³² (≈ 1.9·10¹⁵). For `n < 2³²` it is
/// `DEMO` followed by `n` in hex; above, the letters count on from `DEMO`.
///
/// ```
/// use im_core::demo::ont_serial;
/// assert_eq!(ont_serial(0), "DEMO00000000");
/// assert_eq!(ont_serial(0x1A2B), "DEMO00001A2B");
/// assert_eq!(ont_serial(1 << 32), "DEMP00000000");
/// ```
pub fn ont_serial(n: u64) -> String {
    const LETTERS: u64 = 26 * 26 * 26 * 26;
    // "DEMO" read as a base-26 number (A = 0).
    const DEMO: u64 = ((3 * 26 + 4) * 26 + 12) * 26 + 14;
    let mut prefix = (DEMO + (n >> 32)) % LETTERS;
    let mut letters = [b'A'; 4];
    for slot in letters.iter_mut().rev() {
        // `prefix % 26` is below 26, so the cast cannot truncate.
        *slot = b'A' + (prefix % 26) as u8;
        prefix /= 26;
    }
    let prefix: String = letters.iter().map(|&b| char::from(b)).collect();
    format!("{prefix}{:08X}", n & 0xFFFF_FFFF)
}

/// A code with at least two digits: `01`, `10`, `100`.
fn num(n: u32) -> String {
    format!("{n:02}")
}

/// Exchange code `EXnn`.
fn exchange_code(n: u32) -> String {
    format!("EX{}", num(n))
}

/// Index (0 or 1) of the half of the exchanges that `n` (from 1) lies in.
fn half(spec: &DemoSpec, n: u32) -> usize {
    let first_half = spec.exchanges.div_ceil(2);
    usize::from(n > first_half)
}

/// Management address `10.a.b.c` of a device of exchange `n`: `kind` 0 for
/// DSLAMs, 1 for the OLT. Gives `10.n.0.d` and `10.n.1.1` for n ≤ 255 and
/// stays unique up to 32 767 exchanges and 255 DSLAMs per exchange.
fn device_ip(n: u32, kind: u32, host: u32) -> String {
    let b = n % 256;
    let c = ((n / 256) * 2 + kind) % 256;
    let d = host % 256;
    format!("10.{b}.{c}.{d}")
}

fn reserve<T>(v: &mut Vec<T>, n: u64) {
    if let Ok(n) = usize::try_from(n) {
        // Only a hint: if it cannot be reserved, pushing grows the vector.
        let _ = v.try_reserve_exact(n);
    }
}

/// The demo inventory of `spec`: deterministic (the same spec gives the
/// same rows in the same order), parents before children, every reference
/// resolving to a row of the same inventory.
///
/// Rules for any spec (the default set follows them):
/// - exchange `n` (from 1) has code `EX` + `n` with at least two digits
///   (`EX01`, `EX100`), popid `196` + the same digits, its own zone `Znn`
///   and city `Cnn` in both maps; the first ⌈exchanges/2⌉ exchanges are in
///   sector `CAIRO` with area code `2`, the others in `ALEX` with `3`;
/// - DSLAMs `EXnn-D1`.. (the first ⌈dslams/2⌉ ADSL, the rest VDSL), IP
///   `10.nn.0.d`; ports as [`port_state`] says;
/// - OLT `OLTnn` at `EXnn`, IP `10.nn.1.1`, PON ports `0/1/0`.., each
///   `AVAILABLE` with room for 128 ONTs (or `onts_per_pon`, if larger);
/// - compound `CPmm` lies at exchange `k = (mm−1) mod exchanges + 1` (zone
///   `Zk`) and is served by `OLTk` PON ports `j` and `j+1` (modulo the PON
///   ports per OLT), `j = 2·((mm−1) div exchanges)`; no compounds without
///   exchanges or PON ports;
/// - ONTs: `onts_per_pon` per PON port, ids from 0, serials
///   [`ont_serial`]`(0)`, `(1)`, … in PON port order, `AVAILABLE`;
/// - VLANs: [`VLAN_RANGES`] on every OLT, `AVAILABLE`.
///
/// (For exchanges beyond 255, IPs continue as `10.(n mod 256).(2·(n div
/// 256)).d` and `10.(n mod 256).(2·(n div 256)+1).1`.)
pub fn inventory(spec: &DemoSpec) -> Inventory {
    let mut inv = skeleton(spec);
    reserve(&mut inv.ports, spec.port_count());
    inv.ports.extend(ports(spec));
    let per_olt: u64 = VLAN_RANGES
        .iter()
        .map(|(a, b, _)| u64::from(*b) - u64::from(*a) + 1)
        .sum();
    reserve(&mut inv.vlans, u64::from(spec.exchanges) * per_olt);
    inv.vlans.extend(vlans(spec));
    inv
}

/// The same rows as [`inventory`], in parts of at most about `rows` DSLAM
/// ports or VLANs each (the first part holds everything else), so that a
/// large demo inventory can be loaded without holding it all in memory.
/// Loading the parts in order gives exactly [`inventory`]'s result.
///
/// ```
/// use im_core::demo::{DemoSpec, inventory, inventory_in_parts};
/// let spec = DemoSpec::default();
/// let parts: Vec<_> = inventory_in_parts(&spec, 5_000).collect();
/// assert!(parts.len() > 2);
/// assert_eq!(parts.iter().map(|p| p.ports.len()).sum::<usize>(), inventory(&spec).ports.len());
/// ```
pub fn inventory_in_parts(spec: &DemoSpec, rows: usize) -> impl Iterator<Item = Inventory> {
    let rows = rows.max(1);
    let mut ports = ports(spec).peekable();
    let mut vlans = vlans(spec).peekable();
    std::iter::once(skeleton(spec)).chain(std::iter::from_fn(move || {
        if ports.peek().is_some() {
            Some(Inventory {
                ports: ports.by_ref().take(rows).collect(),
                ..Inventory::default()
            })
        } else if vlans.peek().is_some() {
            Some(Inventory {
                vlans: vlans.by_ref().take(rows).collect(),
                ..Inventory::default()
            })
        } else {
            None
        }
    }))
}

/// Every DSLAM port of the spec, in (exchange, DSLAM, slot, port) order.
fn ports(spec: &DemoSpec) -> impl Iterator<Item = Port> + use<> {
    let spec = spec.clone();
    (1..=spec.exchanges).flat_map(move |n| {
        let spec = spec.clone();
        (1..=spec.dslams_per_exchange).flat_map(move |d| {
            let name = format!("{}-D{d}", exchange_code(n));
            let spec = spec.clone();
            (1..=spec.slots).flat_map(move |slot| {
                let (name, spec) = (name.clone(), spec.clone());
                (0..spec.ports_per_slot).map(move |port| Port {
                    dslam: name.clone(),
                    frame: 0,
                    slot,
                    port,
                    state: port_state(&spec, slot, port),
                })
            })
        })
    })
}

/// Every VLAN of the spec: [`VLAN_RANGES`] on every OLT.
fn vlans(spec: &DemoSpec) -> impl Iterator<Item = Vlan> + use<> {
    (1..=spec.exchanges).flat_map(|n| {
        let olt = format!("OLT{}", num(n));
        VLAN_RANGES
            .into_iter()
            .flat_map(move |(first, last, purpose)| {
                let olt = olt.clone();
                (first..=last).map(move |id| Vlan {
                    olt: olt.clone(),
                    id,
                    purpose,
                    state: SourceState::Available,
                })
            })
    })
}

/// Every row but the DSLAM ports and the VLANs.
fn skeleton(spec: &DemoSpec) -> Inventory {
    let mut inv = Inventory::default();
    let exchanges = 1..=spec.exchanges;

    for domain in [Domain::Adsl, Domain::Ftth] {
        for (code, name) in SECTORS {
            inv.sectors.push(Sector {
                domain,
                code: code.to_string(),
                name: name.to_string(),
            });
        }
        for n in exchanges.clone() {
            inv.zones.push(Zone {
                domain,
                code: format!("Z{}", num(n)),
                name: format!("Zone {}", num(n)),
                sector: SECTORS[half(spec, n)].0.to_string(),
            });
        }
        for n in exchanges.clone() {
            inv.cities.push(City {
                domain,
                code: format!("C{}", num(n)),
                name: format!("City {}", num(n)),
                zone: format!("Z{}", num(n)),
            });
        }
    }

    for n in exchanges.clone() {
        inv.exchanges.push(Exchange {
            code: exchange_code(n),
            name: format!("Exchange {}", num(n)),
            city: format!("C{}", num(n)),
            popid: format!("196{}", num(n)),
            area_code: AREA_CODES[half(spec, n)].to_string(),
        });
    }

    let adsl_dslams = spec.dslams_per_exchange.div_ceil(2);
    reserve(
        &mut inv.dslams,
        u64::from(spec.exchanges) * u64::from(spec.dslams_per_exchange),
    );
    for n in exchanges.clone() {
        for d in 1..=spec.dslams_per_exchange {
            inv.dslams.push(Dslam {
                name: format!("{}-D{d}", exchange_code(n)),
                exchange: exchange_code(n),
                ip: device_ip(n, 0, d),
                model: DSLAM_MODEL.to_string(),
                technology: if d <= adsl_dslams {
                    Technology::Adsl
                } else {
                    Technology::Vdsl
                },
            });
        }
    }

    let max_onts = MAX_ONTS_PER_PON.max(spec.onts_per_pon);
    let pon_total = u64::from(spec.exchanges) * u64::from(spec.pon_ports_per_olt);
    reserve(&mut inv.pon_ports, pon_total);
    reserve(&mut inv.onts, pon_total * u64::from(spec.onts_per_pon));
    let mut serial = 0u64;
    for n in exchanges.clone() {
        let olt = format!("OLT{}", num(n));
        inv.olts.push(Olt {
            name: olt.clone(),
            exchange: exchange_code(n),
            ip: device_ip(n, 1, 1),
            model: OLT_MODEL.to_string(),
        });
        for port in 0..spec.pon_ports_per_olt {
            let at = PonPortRef {
                olt: olt.clone(),
                frame: 0,
                slot: 1,
                port,
            };
            for ont_id in 0..spec.onts_per_pon {
                inv.onts.push(Ont {
                    serial: ont_serial(serial),
                    at: at.clone(),
                    ont_id,
                    model: ONT_MODEL.to_string(),
                    state: SourceState::Available,
                });
                serial += 1;
            }
            inv.pon_ports.push(PonPort {
                at,
                max_onts,
                state: SourceState::Available,
            });
        }
    }

    if spec.exchanges > 0 && spec.pon_ports_per_olt > 0 {
        let e = u64::from(spec.exchanges);
        let p = u64::from(spec.pon_ports_per_olt);
        for m in 1..=spec.compounds {
            let i = u64::from(m) - 1;
            // Below `exchanges` + 1 and below `pon_ports_per_olt`: both fit u32.
            let k = u32::try_from(i % e + 1).unwrap_or(spec.exchanges);
            let j = (2 * (i / e)) % p;
            let mut pon_ports = Vec::with_capacity(2);
            for q in [j, (j + 1) % p] {
                let at = PonPortRef {
                    olt: format!("OLT{}", num(k)),
                    frame: 0,
                    slot: 1,
                    port: u32::try_from(q).unwrap_or(0),
                };
                if !pon_ports.contains(&at) {
                    pon_ports.push(at);
                }
            }
            inv.compounds.push(Compound {
                code: format!("CP{}", num(m)),
                name: format!("Compound {}", num(m)),
                exchange: exchange_code(k),
                zone: format!("Z{}", num(k)),
                pon_ports,
            });
        }
    }

    inv
}

/// Installs the default demo inventory and the demo OM account
/// ([`DEMO_OM_USER`] / [`DEMO_OM_PASSWORD`]) when the inventory is empty.
/// Returns whether it installed anything; an inventory that already holds
/// an exchange is left alone (and so is the OM account).
///
/// # Errors
///
/// Whatever [`crate::Im::inventory_is_empty`], [`crate::Im::load_inventory`]
/// or [`crate::Im::set_om_account`] returns.
///
/// ```no_run
/// let im = im_core::Im::open(im_core::CoreConfig::new("im.db"))?;
/// if im_core::demo::install_if_empty(&im)? {
///     println!("demo inventory installed");
/// }
/// # Ok::<(), im_core::CoreError>(())
/// ```
pub fn install_if_empty(im: &crate::Im) -> Result<bool, crate::CoreError> {
    if !im.inventory_is_empty()? {
        return Ok(false);
    }
    // The account first, then the inventory in one transaction: a crash in
    // between leaves the inventory empty, so the next start installs it;
    // the other way round, it would leave an inventory without the account.
    // An OM account set up before the first start (im-admin) is kept.
    if !im.account_exists(DEMO_OM_USER)? {
        im.set_om_account(DEMO_OM_USER, DEMO_OM_PASSWORD)?;
    }
    im.load_inventory(inventory(&DemoSpec::default()))?;
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parts_add_up_to_the_whole_inventory() {
        let spec = DemoSpec {
            exchanges: 3,
            onts_per_pon: 2,
            ..DemoSpec::default()
        };
        let whole = inventory(&spec);
        let mut joined = Inventory::default();
        for p in inventory_in_parts(&spec, 777) {
            assert!(p.ports.len() <= 777 && p.vlans.len() <= 777);
            joined.sectors.extend(p.sectors);
            joined.zones.extend(p.zones);
            joined.cities.extend(p.cities);
            joined.exchanges.extend(p.exchanges);
            joined.dslams.extend(p.dslams);
            joined.ports.extend(p.ports);
            joined.olts.extend(p.olts);
            joined.pon_ports.extend(p.pon_ports);
            joined.compounds.extend(p.compounds);
            joined.onts.extend(p.onts);
            joined.vlans.extend(p.vlans);
        }
        assert_eq!(joined, whole);
    }
    use std::collections::{HashMap, HashSet};

    fn default_inv() -> Inventory {
        inventory(&DemoSpec::default())
    }

    fn count_state(inv: &Inventory, s: SourceState) -> usize {
        inv.ports.iter().filter(|p| p.state == s).count()
    }

    fn pon(olt: &str, port: u32) -> PonPortRef {
        PonPortRef {
            olt: olt.to_string(),
            frame: 0,
            slot: 1,
            port,
        }
    }

    #[test]
    fn default_counts() {
        let inv = default_inv();
        for d in [Domain::Adsl, Domain::Ftth] {
            assert_eq!(inv.sectors.iter().filter(|s| s.domain == d).count(), 2);
            assert_eq!(inv.zones.iter().filter(|s| s.domain == d).count(), 10);
            assert_eq!(inv.cities.iter().filter(|s| s.domain == d).count(), 10);
        }
        assert_eq!(inv.sectors.len(), 4);
        assert_eq!(inv.zones.len(), 20);
        assert_eq!(inv.cities.len(), 20);
        assert_eq!(inv.exchanges.len(), 10);
        assert_eq!(inv.dslams.len(), 40);
        assert_eq!(inv.ports.len(), 40 * 8 * 64);
        assert_eq!(inv.ports.len(), 20_480);
        // 6 ports ending in 9 per slot (9..59), 8 slots, 40 DSLAMs.
        assert_eq!(count_state(&inv, SourceState::Occupied), 1_920);
        assert_eq!(count_state(&inv, SourceState::Faulty), 40);
        assert_eq!(count_state(&inv, SourceState::Available), 18_520);
        assert_eq!(inv.olts.len(), 10);
        assert_eq!(inv.pon_ports.len(), 160);
        assert!(inv.pon_ports.iter().all(|p| p.max_onts == 128));
        assert_eq!(inv.compounds.len(), 20);
        assert!(inv.compounds.iter().all(|c| c.pon_ports.len() == 2));
        // (1000 + 100 + 100) VLANs per OLT.
        assert_eq!(inv.vlans.len(), 12_000);
        assert!(inv.onts.is_empty());
        assert_eq!(
            inv.dslams
                .iter()
                .filter(|d| d.technology == Technology::Adsl)
                .count(),
            20
        );
        assert_eq!(DemoSpec::default().port_count(), 20_480);
    }

    #[test]
    fn default_specific_rows() {
        let inv = default_inv();
        let ex = |code: &str| inv.exchanges.iter().find(|e| e.code == code).unwrap();
        let ex01 = ex("EX01");
        assert_eq!(
            (
                ex01.popid.as_str(),
                ex01.area_code.as_str(),
                ex01.city.as_str(),
                ex01.name.as_str()
            ),
            ("19601", "2", "C01", "Exchange 01")
        );
        assert_eq!(ex("EX05").area_code, "2");
        assert_eq!(ex("EX06").area_code, "3");
        assert_eq!(ex("EX10").popid, "19610");

        let zone = |d: Domain, code: &str| {
            inv.zones
                .iter()
                .find(|z| z.domain == d && z.code == code)
                .unwrap()
                .clone()
        };
        assert_eq!(zone(Domain::Adsl, "Z05").sector, "CAIRO");
        assert_eq!(zone(Domain::Adsl, "Z06").sector, "ALEX");
        assert_eq!(zone(Domain::Ftth, "Z01").sector, "CAIRO");
        assert_eq!(zone(Domain::Ftth, "Z10").sector, "ALEX");
        assert_eq!(zone(Domain::Adsl, "Z01").name, "Zone 01");
        let c07 = inv.cities.iter().find(|c| c.code == "C07").unwrap();
        assert_eq!((c07.zone.as_str(), c07.name.as_str()), ("Z07", "City 07"));
        assert_eq!(inv.sectors[0].name, "Cairo");

        let dslam = |name: &str| inv.dslams.iter().find(|d| d.name == name).unwrap();
        assert_eq!(dslam("EX03-D2").ip, "10.3.0.2");
        assert_eq!(dslam("EX01-D1").ip, "10.1.0.1");
        assert_eq!(dslam("EX10-D4").ip, "10.10.0.4");
        assert_eq!(dslam("EX03-D2").technology, Technology::Adsl);
        assert_eq!(dslam("EX03-D3").technology, Technology::Vdsl);
        assert_eq!(dslam("EX03-D3").exchange, "EX03");

        let port = |d: &str, slot: u32, port: u32| {
            inv.ports
                .iter()
                .find(|p| p.dslam == d && p.frame == 0 && p.slot == slot && p.port == port)
                .unwrap()
                .state
        };
        assert_eq!(port("EX01-D1", 1, 9), SourceState::Occupied);
        assert_eq!(port("EX01-D1", 1, 5), SourceState::Available);
        assert_eq!(port("EX01-D1", 8, 63), SourceState::Faulty);
        assert_eq!(port("EX07-D4", 8, 59), SourceState::Occupied);
        assert_eq!(port("EX07-D4", 3, 0), SourceState::Available);
        assert!(inv.ports.iter().all(|p| p.frame == 0));
        assert!(!inv.ports.iter().any(|p| p.slot == 0 || p.slot > 8));

        let olt = |name: &str| inv.olts.iter().find(|o| o.name == name).unwrap();
        assert_eq!(olt("OLT01").ip, "10.1.1.1");
        assert_eq!(olt("OLT10").ip, "10.10.1.1");
        assert_eq!(olt("OLT10").exchange, "EX10");

        let cp = |code: &str| inv.compounds.iter().find(|c| c.code == code).unwrap();
        let cp01 = cp("CP01");
        assert_eq!(
            (cp01.exchange.as_str(), cp01.zone.as_str()),
            ("EX01", "Z01")
        );
        assert_eq!(cp01.pon_ports, [pon("OLT01", 0), pon("OLT01", 1)]);
        let cp11 = cp("CP11");
        assert_eq!(cp11.exchange, "EX01");
        assert_eq!(cp11.pon_ports, [pon("OLT01", 2), pon("OLT01", 3)]);
        assert_eq!(cp11.name, "Compound 11");
        let cp20 = cp("CP20");
        assert_eq!(
            (cp20.exchange.as_str(), cp20.zone.as_str()),
            ("EX10", "Z10")
        );
        assert_eq!(cp20.pon_ports, [pon("OLT10", 2), pon("OLT10", 3)]);
        assert_eq!(
            cp20.pon_ports
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["OLT10/0/1/2", "OLT10/0/1/3"]
        );

        let vlan = |olt: &str, id: u16| inv.vlans.iter().find(|v| v.olt == olt && v.id == id);
        assert_eq!(vlan("OLT01", 100).unwrap().purpose, VlanPurpose::Internet);
        assert_eq!(vlan("OLT01", 1099).unwrap().purpose, VlanPurpose::Internet);
        assert_eq!(vlan("OLT05", 2000).unwrap().purpose, VlanPurpose::Voice);
        assert_eq!(vlan("OLT10", 3099).unwrap().purpose, VlanPurpose::Iptv);
        assert!(vlan("OLT01", 1100).is_none());
        assert!(vlan("OLT01", 99).is_none());
    }

    #[test]
    fn deterministic() {
        assert_eq!(default_inv(), default_inv());
        let spec = DemoSpec {
            onts_per_pon: 3,
            ..DemoSpec::with_ports(30_000)
        };
        assert_eq!(inventory(&spec), inventory(&spec));
    }

    /// Every reference in `inv` names a row of `inv`, natural keys are
    /// unique, and every row lists after the rows it refers to.
    fn assert_consistent(inv: &Inventory) {
        let sectors: HashSet<(Domain, &str)> = inv
            .sectors
            .iter()
            .map(|s| (s.domain, s.code.as_str()))
            .collect();
        assert_eq!(sectors.len(), inv.sectors.len());
        let zones: HashSet<(Domain, &str)> = inv
            .zones
            .iter()
            .map(|z| (z.domain, z.code.as_str()))
            .collect();
        assert_eq!(zones.len(), inv.zones.len());
        for z in &inv.zones {
            assert!(sectors.contains(&(z.domain, z.sector.as_str())), "{z:?}");
        }
        let cities: HashSet<(Domain, &str)> = inv
            .cities
            .iter()
            .map(|c| (c.domain, c.code.as_str()))
            .collect();
        assert_eq!(cities.len(), inv.cities.len());
        for c in &inv.cities {
            assert!(zones.contains(&(c.domain, c.zone.as_str())), "{c:?}");
        }
        let exchanges: HashSet<&str> = inv.exchanges.iter().map(|e| e.code.as_str()).collect();
        assert_eq!(exchanges.len(), inv.exchanges.len());
        let popids: HashSet<&str> = inv.exchanges.iter().map(|e| e.popid.as_str()).collect();
        assert_eq!(popids.len(), inv.exchanges.len());
        for e in &inv.exchanges {
            assert!(cities.contains(&(Domain::Adsl, e.city.as_str())), "{e:?}");
            assert!(e.popid.chars().all(|c| c.is_ascii_digit()));
            assert!(e.area_code.chars().all(|c| c.is_ascii_digit()));
        }
        let dslams: HashMap<&str, &Dslam> =
            inv.dslams.iter().map(|d| (d.name.as_str(), d)).collect();
        assert_eq!(dslams.len(), inv.dslams.len());
        let dslam_ips: HashSet<&str> = inv.dslams.iter().map(|d| d.ip.as_str()).collect();
        assert_eq!(dslam_ips.len(), inv.dslams.len());
        for d in &inv.dslams {
            assert!(exchanges.contains(d.exchange.as_str()), "{d:?}");
        }
        let mut ports = HashSet::new();
        for p in &inv.ports {
            assert!(dslams.contains_key(p.dslam.as_str()), "{p:?}");
            assert!(ports.insert((&p.dslam, p.frame, p.slot, p.port)), "{p:?}");
        }
        let olts: HashSet<&str> = inv.olts.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(olts.len(), inv.olts.len());
        for o in &inv.olts {
            assert!(exchanges.contains(o.exchange.as_str()), "{o:?}");
            assert!(!dslam_ips.contains(o.ip.as_str()), "{o:?}");
        }
        let pons: HashMap<&PonPortRef, &PonPort> =
            inv.pon_ports.iter().map(|p| (&p.at, p)).collect();
        assert_eq!(pons.len(), inv.pon_ports.len());
        for p in &inv.pon_ports {
            assert!(olts.contains(p.at.olt.as_str()), "{p:?}");
        }
        let compounds: HashSet<&str> = inv.compounds.iter().map(|c| c.code.as_str()).collect();
        assert_eq!(compounds.len(), inv.compounds.len());
        for c in &inv.compounds {
            assert!(exchanges.contains(c.exchange.as_str()), "{c:?}");
            assert!(zones.contains(&(Domain::Ftth, c.zone.as_str())), "{c:?}");
            assert!(!c.pon_ports.is_empty());
            for p in &c.pon_ports {
                assert!(pons.contains_key(p), "{c:?}");
                // The OLT serving a compound is at the compound's exchange.
                let olt = inv.olts.iter().find(|o| o.name == p.olt).unwrap();
                assert_eq!(olt.exchange, c.exchange);
            }
        }
        let mut serials = HashSet::new();
        let mut ont_slots = HashSet::new();
        for o in &inv.onts {
            let pon = pons.get(&o.at).unwrap();
            assert!(o.ont_id < pon.max_onts, "{o:?}");
            assert!(serials.insert(o.serial.as_str()), "{o:?}");
            assert!(ont_slots.insert((&o.at, o.ont_id)), "{o:?}");
        }
        let mut vlans = HashSet::new();
        for v in &inv.vlans {
            assert!(olts.contains(v.olt.as_str()), "{v:?}");
            assert!((1..=4094).contains(&v.id));
            assert!(vlans.insert((&v.olt, v.id)), "{v:?}");
        }
    }

    #[test]
    fn references_resolve() {
        assert_consistent(&default_inv());
        assert_consistent(&inventory(&DemoSpec {
            onts_per_pon: 4,
            ..DemoSpec::default()
        }));
        assert_consistent(&inventory(&DemoSpec {
            exchanges: 3,
            dslams_per_exchange: 1,
            slots: 2,
            ports_per_slot: 10,
            compounds: 40,
            pon_ports_per_olt: 3,
            onts_per_pon: 200,
        }));
        assert_consistent(&inventory(&DemoSpec {
            compounds: 5,
            pon_ports_per_olt: 1,
            ..DemoSpec::default()
        }));
    }

    #[test]
    fn empty_and_tiny_specs() {
        let none = inventory(&DemoSpec {
            exchanges: 0,
            ..DemoSpec::default()
        });
        assert!(none.exchanges.is_empty() && none.ports.is_empty());
        assert!(none.compounds.is_empty() && none.vlans.is_empty());
        let no_pon = inventory(&DemoSpec {
            pon_ports_per_olt: 0,
            ..DemoSpec::default()
        });
        assert!(no_pon.compounds.is_empty());
        let one = inventory(&DemoSpec {
            exchanges: 1,
            dslams_per_exchange: 1,
            ports_per_slot: 10,
            ..DemoSpec::default()
        });
        assert_eq!(one.exchanges[0].area_code, "2");
        assert_eq!(one.dslams[0].technology, Technology::Adsl);
        // The last port of the last slot is FAULTY even though it ends in 9.
        assert_eq!(one.ports.last().unwrap().state, SourceState::Faulty);
        assert_consistent(&one);
    }

    #[test]
    fn onts_when_asked() {
        let spec = DemoSpec {
            onts_per_pon: 2,
            ..DemoSpec::default()
        };
        let inv = inventory(&spec);
        assert_eq!(inv.onts.len(), 160 * 2);
        assert_eq!(inv.onts[0].serial, "DEMO00000000");
        assert_eq!(inv.onts[0].at, pon("OLT01", 0));
        assert_eq!(inv.onts[1].ont_id, 1);
        assert_eq!(inv.onts[2].at, pon("OLT01", 1));
        assert_eq!(inv.onts[2].ont_id, 0);
        let big = inventory(&DemoSpec {
            exchanges: 1,
            pon_ports_per_olt: 1,
            onts_per_pon: 300,
            ..DemoSpec::default()
        });
        assert_eq!(big.pon_ports[0].max_onts, 300);
    }

    #[test]
    fn scaled_specs_keep_the_patterns() {
        let spec = DemoSpec {
            exchanges: 300,
            compounds: 600,
            ..DemoSpec::default()
        };
        assert_eq!(spec.port_count(), 300 * 2048);
        let inv = inventory(&spec);
        assert_eq!(inv.ports.len() as u64, spec.port_count());
        let ex = |code: &str| inv.exchanges.iter().find(|e| e.code == code).unwrap();
        assert_eq!(ex("EX09").popid, "19609");
        assert_eq!(ex("EX100").popid, "196100");
        assert_eq!(ex("EX150").area_code, "2");
        assert_eq!(ex("EX151").area_code, "3");
        let zone = |code: &str| inv.zones.iter().find(|z| z.code == code).unwrap();
        assert_eq!(zone("Z150").sector, "CAIRO");
        assert_eq!(zone("Z151").sector, "ALEX");
        let dslam = |n: &str| inv.dslams.iter().find(|d| d.name == n).unwrap();
        assert_eq!(dslam("EX255-D4").ip, "10.255.0.4");
        assert_eq!(dslam("EX256-D1").ip, "10.0.2.1");
        let cp = inv.compounds.iter().find(|c| c.code == "CP301").unwrap();
        assert_eq!(cp.exchange, "EX01");
        assert_eq!(cp.pon_ports, [pon("OLT01", 2), pon("OLT01", 3)]);
        assert_consistent(&inv);
    }

    #[test]
    fn with_ports_scales_exchanges_only() {
        let spec = DemoSpec::with_ports(2_000_000);
        assert!(spec.port_count() >= 2_000_000);
        assert!(spec.port_count() - 2_000_000 < spec.ports_per_exchange());
        assert_eq!(spec.exchanges, 977);
        assert_eq!(spec.compounds, 2 * 977);
        let d = DemoSpec::default();
        assert_eq!(
            (
                spec.dslams_per_exchange,
                spec.slots,
                spec.ports_per_slot,
                spec.pon_ports_per_olt,
                spec.onts_per_pon
            ),
            (
                d.dslams_per_exchange,
                d.slots,
                d.ports_per_slot,
                d.pon_ports_per_olt,
                d.onts_per_pon
            )
        );
        // Never smaller than the default set.
        assert_eq!(DemoSpec::with_ports(0), DemoSpec::default());
        assert_eq!(DemoSpec::with_ports(20_480), DemoSpec::default());
        assert_eq!(DemoSpec::with_ports(20_481).exchanges, 11);
        assert_eq!(DemoSpec::with_ports(u64::MAX).exchanges, u32::MAX);
        // Generation matches the arithmetic (a smaller scale keeps the test fast).
        let spec = DemoSpec::with_ports(100_000);
        let inv = inventory(&spec);
        assert_eq!(inv.ports.len() as u64, spec.port_count());
        assert!(inv.ports.len() >= 100_000);
        assert_eq!(inv.compounds.len() as u32, spec.compounds);
    }

    #[test]
    fn two_million_ports_generated() {
        // Well under a second even in a debug build.
        let spec = DemoSpec::with_ports(2_000_000);
        let inv = inventory(&spec);
        assert!(inv.ports.len() >= 2_000_000);
        assert_eq!(inv.ports.len() as u64, spec.port_count());
    }

    fn valid_serial(s: &str) -> bool {
        s.len() == 12
            && s[..4].bytes().all(|b| b.is_ascii_uppercase())
            && s[4..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    }

    #[test]
    fn ont_serials_valid_and_distinct() {
        let ns: Vec<u64> = (0..10_000)
            .chain([
                u64::from(u32::MAX),
                1 << 32,
                (1 << 32) + 1,
                5 << 32,
                (456_975 << 32) | 7,
                u64::MAX,
            ])
            .collect();
        let mut seen = HashSet::new();
        for n in ns {
            let s = ont_serial(n);
            assert!(valid_serial(&s), "{n}: {s}");
            assert!(seen.insert(s), "{n}");
        }
        assert_eq!(ont_serial(0xABCDEF), "DEMO00ABCDEF");
        assert_eq!(ont_serial(u64::from(u32::MAX)), "DEMOFFFFFFFF");
    }

    #[test]
    fn demo_account_constants() {
        assert_eq!(DEMO_OM_USER, "OM_webservice");
        assert_eq!(DEMO_OM_PASSWORD, "om-demo-secret");
    }
}
