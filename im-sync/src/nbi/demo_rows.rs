//! The demo inventory of `im_core::demo`, row by row: the number of rows of
//! each entity and the row at any index, computed from the [`DemoSpec`]
//! arithmetic without generating the others. Row `i` of an entity is the
//! `i`-th row of that entity (of the system's map, for sectors, zones and
//! cities) in `im_core::demo::inventory(spec)`; the unit tests hold the two
//! together.

use super::wire::{Entity, Row, System};
use im_core::demo::{
    DSLAM_MODEL, DemoSpec, MAX_ONTS_PER_PON, OLT_MODEL, ONT_MODEL, VLAN_RANGES, ont_serial,
    port_state,
};
use im_core::model::{
    City, Compound, Dslam, Exchange, Olt, Ont, PonPort, PonPortRef, Port, Sector, SourceState,
    Technology, Vlan, Zone,
};

/// The two sectors (code, name), as in `im_core::demo`.
const SECTORS: [(&str, &str); 2] = [("CAIRO", "Cairo"), ("ALEX", "Alexandria")];
/// Area codes of the first and second half of the exchanges.
const AREA_CODES: [&str; 2] = ["2", "3"];

/// VLANs per OLT.
pub fn vlans_per_olt() -> u64 {
    VLAN_RANGES
        .iter()
        .map(|(a, b, _)| u64::from(*b) - u64::from(*a) + 1)
        .sum()
}

/// Rows of `entity` that `system` serves for `spec` (0 for an entity the
/// system does not serve).
pub fn count(spec: &DemoSpec, system: System, entity: Entity) -> u64 {
    if !system.serves(entity) {
        return 0;
    }
    let e = u64::from(spec.exchanges);
    match entity {
        Entity::Sectors => SECTORS.len() as u64,
        Entity::Zones | Entity::Cities | Entity::Exchanges | Entity::Olts => e,
        Entity::Dslams => e * u64::from(spec.dslams_per_exchange),
        Entity::Ports => spec.port_count(),
        Entity::PonPorts => e * u64::from(spec.pon_ports_per_olt),
        Entity::Compounds => {
            if spec.exchanges > 0 && spec.pon_ports_per_olt > 0 {
                u64::from(spec.compounds)
            } else {
                0
            }
        }
        Entity::Onts => e * u64::from(spec.pon_ports_per_olt) * u64::from(spec.onts_per_pon),
        Entity::Vlans => e * vlans_per_olt(),
    }
}

/// A code with at least two digits.
pub fn num(n: u64) -> String {
    format!("{n:02}")
}

/// Exchange code `EXnn` of exchange `n` (from 1).
pub fn exchange_code(n: u64) -> String {
    format!("EX{}", num(n))
}

/// DSLAM name `EXnn-Dd`.
pub fn dslam_name(n: u64, d: u64) -> String {
    format!("{}-D{d}", exchange_code(n))
}

/// OLT name `OLTnn`.
pub fn olt_name(n: u64) -> String {
    format!("OLT{}", num(n))
}

fn half(spec: &DemoSpec, n: u64) -> usize {
    usize::from(n > u64::from(spec.exchanges.div_ceil(2)))
}

fn device_ip(n: u64, kind: u64, host: u64) -> String {
    let b = n % 256;
    let c = ((n / 256) * 2 + kind) % 256;
    let d = host % 256;
    format!("10.{b}.{c}.{d}")
}

fn small(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Highest number of ONTs per PON port of `spec`.
pub fn max_onts(spec: &DemoSpec) -> u32 {
    MAX_ONTS_PER_PON.max(spec.onts_per_pon)
}

/// The PON port `p` (from 0, over all OLTs) of `spec`.
pub fn pon_ref(spec: &DemoSpec, p: u64) -> PonPortRef {
    let per = u64::from(spec.pon_ports_per_olt).max(1);
    PonPortRef {
        olt: olt_name(p / per + 1),
        frame: 0,
        slot: 1,
        port: small(p % per),
    }
}

/// The DSLAM port `i` (from 0) of `spec`: (exchange n, DSLAM d, slot, port).
pub fn port_place(spec: &DemoSpec, i: u64) -> (u64, u64, u32, u32) {
    let per_slot = u64::from(spec.ports_per_slot).max(1);
    let per_dslam = per_slot * u64::from(spec.slots).max(1);
    let per_ex = per_dslam * u64::from(spec.dslams_per_exchange).max(1);
    let n = i / per_ex + 1;
    let d = (i % per_ex) / per_dslam + 1;
    let slot = small((i % per_dslam) / per_slot + 1);
    let port = small(i % per_slot);
    (n, d, slot, port)
}

/// Row `i` of `entity` as `system` serves it, or `None` past the end.
pub fn row(spec: &DemoSpec, system: System, entity: Entity, i: u64) -> Option<Row> {
    if i >= count(spec, system, entity) {
        return None;
    }
    let domain = system.domain();
    Some(match entity {
        Entity::Sectors => {
            let (code, name) = SECTORS[usize::try_from(i).ok()?];
            Row::Sector(Sector {
                domain,
                code: code.into(),
                name: name.into(),
            })
        }
        Entity::Zones => {
            let n = i + 1;
            Row::Zone(Zone {
                domain,
                code: format!("Z{}", num(n)),
                name: format!("Zone {}", num(n)),
                sector: SECTORS[half(spec, n)].0.into(),
            })
        }
        Entity::Cities => {
            let n = i + 1;
            Row::City(City {
                domain,
                code: format!("C{}", num(n)),
                name: format!("City {}", num(n)),
                zone: format!("Z{}", num(n)),
            })
        }
        Entity::Exchanges => {
            let n = i + 1;
            Row::Exchange(Exchange {
                code: exchange_code(n),
                name: format!("Exchange {}", num(n)),
                city: format!("C{}", num(n)),
                popid: format!("196{}", num(n)),
                area_code: AREA_CODES[half(spec, n)].into(),
            })
        }
        Entity::Dslams => {
            let per = u64::from(spec.dslams_per_exchange).max(1);
            let n = i / per + 1;
            let d = i % per + 1;
            let adsl = u64::from(spec.dslams_per_exchange.div_ceil(2));
            Row::Dslam(Dslam {
                name: dslam_name(n, d),
                exchange: exchange_code(n),
                ip: device_ip(n, 0, d),
                model: DSLAM_MODEL.into(),
                technology: if d <= adsl {
                    Technology::Adsl
                } else {
                    Technology::Vdsl
                },
            })
        }
        Entity::Ports => {
            let (n, d, slot, port) = port_place(spec, i);
            Row::Port(Port {
                dslam: dslam_name(n, d),
                frame: 0,
                slot,
                port,
                state: port_state(spec, slot, port),
            })
        }
        Entity::Olts => {
            let n = i + 1;
            Row::Olt(Olt {
                name: olt_name(n),
                exchange: exchange_code(n),
                ip: device_ip(n, 1, 1),
                model: OLT_MODEL.into(),
            })
        }
        Entity::PonPorts => Row::PonPort(PonPort {
            at: pon_ref(spec, i),
            max_onts: max_onts(spec),
            state: SourceState::Available,
        }),
        Entity::Compounds => {
            let e = u64::from(spec.exchanges);
            let p = u64::from(spec.pon_ports_per_olt);
            let k = i % e + 1;
            let j = (2 * (i / e)) % p;
            let mut pon_ports = Vec::with_capacity(2);
            for q in [j, (j + 1) % p] {
                let at = PonPortRef {
                    olt: olt_name(k),
                    frame: 0,
                    slot: 1,
                    port: small(q),
                };
                if !pon_ports.contains(&at) {
                    pon_ports.push(at);
                }
            }
            Row::Compound(Compound {
                code: format!("CP{}", num(i + 1)),
                name: format!("Compound {}", num(i + 1)),
                exchange: exchange_code(k),
                zone: format!("Z{}", num(k)),
                pon_ports,
            })
        }
        Entity::Onts => {
            let per = u64::from(spec.onts_per_pon).max(1);
            Row::Ont(Ont {
                serial: ont_serial(i),
                at: pon_ref(spec, i / per),
                ont_id: small(i % per),
                model: ONT_MODEL.into(),
                state: SourceState::Available,
            })
        }
        Entity::Vlans => {
            let per = vlans_per_olt();
            let n = i / per + 1;
            let mut k = i % per;
            let mut found = None;
            for (first, last, purpose) in VLAN_RANGES {
                let len = u64::from(last) - u64::from(first) + 1;
                if k < len {
                    found = Some((first, purpose));
                    break;
                }
                k -= len;
            }
            let (first, purpose) = found?;
            Row::Vlan(Vlan {
                olt: olt_name(n),
                id: u16::try_from(u64::from(first) + k).ok()?,
                purpose,
                state: SourceState::Available,
            })
        }
    })
}

/// The rows of one entity of `system` in an inventory, in the order the
/// simulator serves them (sectors, zones and cities of the system's own map).
pub fn inventory_rows(inv: &im_core::model::Inventory, system: System, entity: Entity) -> Vec<Row> {
    let d = system.domain();
    match entity {
        Entity::Sectors => inv
            .sectors
            .iter()
            .filter(|r| r.domain == d)
            .cloned()
            .map(Row::Sector)
            .collect(),
        Entity::Zones => inv
            .zones
            .iter()
            .filter(|r| r.domain == d)
            .cloned()
            .map(Row::Zone)
            .collect(),
        Entity::Cities => inv
            .cities
            .iter()
            .filter(|r| r.domain == d)
            .cloned()
            .map(Row::City)
            .collect(),
        Entity::Exchanges => inv.exchanges.iter().cloned().map(Row::Exchange).collect(),
        Entity::Dslams => inv.dslams.iter().cloned().map(Row::Dslam).collect(),
        Entity::Ports => inv.ports.iter().cloned().map(Row::Port).collect(),
        Entity::Olts => inv.olts.iter().cloned().map(Row::Olt).collect(),
        Entity::PonPorts => inv.pon_ports.iter().cloned().map(Row::PonPort).collect(),
        Entity::Compounds => inv.compounds.iter().cloned().map(Row::Compound).collect(),
        Entity::Onts => inv.onts.iter().cloned().map(Row::Ont).collect(),
        Entity::Vlans => inv.vlans.iter().cloned().map(Row::Vlan).collect(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use im_core::demo::inventory;
    use im_core::model::Inventory;

    fn expected(inv: &Inventory, system: System, entity: Entity) -> Vec<Row> {
        inventory_rows(inv, system, entity)
    }

    #[test]
    fn rows_match_the_demo_inventory() {
        let specs = [
            DemoSpec::default(),
            DemoSpec {
                onts_per_pon: 3,
                ..DemoSpec::default()
            },
            DemoSpec {
                exchanges: 3,
                dslams_per_exchange: 3,
                slots: 2,
                ports_per_slot: 10,
                compounds: 40,
                pon_ports_per_olt: 3,
                onts_per_pon: 200,
            },
            DemoSpec {
                compounds: 5,
                pon_ports_per_olt: 1,
                ..DemoSpec::default()
            },
            DemoSpec {
                exchanges: 0,
                ..DemoSpec::default()
            },
            DemoSpec::with_ports(600_000),
        ];
        for spec in specs {
            let inv = inventory(&spec);
            for system in System::ALL {
                for &entity in system.entities() {
                    let want = expected(&inv, system, entity);
                    let n = count(&spec, system, entity);
                    assert_eq!(n, want.len() as u64, "{spec:?} {entity}");
                    let got: Vec<Row> = (0..n)
                        .filter_map(|i| row(&spec, system, entity, i))
                        .collect();
                    assert_eq!(got, want, "{spec:?} {entity}");
                    assert_eq!(row(&spec, system, entity, n), None);
                }
            }
        }
    }
}
