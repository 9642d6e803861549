//! Inventory rows as their sources (Matrix, eMatrix, the demo generator)
//! describe them: natural keys and source-owned fields only. IM-owned usage
//! (which service holds what) is never part of these rows.

use super::{Domain, SourceState, Technology, VlanPurpose};
use std::fmt;

/// A top-level sector of one domain's map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sector {
    /// `ADSL` or `FTTH` map.
    pub domain: Domain,
    /// Natural key within the domain (`CAIRO`).
    pub code: String,
    /// Display name.
    pub name: String,
}

/// A zone of a sector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// Map the zone belongs to.
    pub domain: Domain,
    /// Natural key within the domain (`Z01`).
    pub code: String,
    /// Display name.
    pub name: String,
    /// Code of the sector.
    pub sector: String,
}

/// A city or district of a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct City {
    /// Map the city belongs to.
    pub domain: Domain,
    /// Natural key within the domain (`C01`).
    pub code: String,
    /// Display name.
    pub name: String,
    /// Code of the zone.
    pub zone: String,
}

/// An exchange, the POP that work orders name by `popid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// Natural key (`EX01`).
    pub code: String,
    /// Display name.
    pub name: String,
    /// Code of the city (ADSL map).
    pub city: String,
    /// POP id, unique (`19601`).
    pub popid: String,
    /// Telephone area code (digits).
    pub area_code: String,
}

/// A DSLAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dslam {
    /// Natural key (`EX01-D1`).
    pub name: String,
    /// Code of its exchange.
    pub exchange: String,
    /// Management IPv4 address.
    pub ip: String,
    /// Vendor model.
    pub model: String,
    /// Which services it carries.
    pub technology: Technology,
}

/// A DSLAM port (ADSL/VDSL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// Name of the DSLAM.
    pub dslam: String,
    /// Frame number.
    pub frame: u32,
    /// Slot number.
    pub slot: u32,
    /// Port number.
    pub port: u32,
    /// State in the source.
    pub state: SourceState,
}

/// An OLT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Olt {
    /// Natural key (`OLT01`).
    pub name: String,
    /// Code of its exchange.
    pub exchange: String,
    /// Management IPv4 address.
    pub ip: String,
    /// Vendor model.
    pub model: String,
}

/// Reference to a PON port: `OLT/frame/slot/port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PonPortRef {
    /// OLT name.
    pub olt: String,
    /// Frame number.
    pub frame: u32,
    /// Slot number.
    pub slot: u32,
    /// Port number.
    pub port: u32,
}

impl PonPortRef {
    /// Parses `OLT01/0/1/3`.
    ///
    /// ```
    /// let p = im_core::model::PonPortRef::parse("OLT01/0/1/3").unwrap();
    /// assert_eq!((p.olt.as_str(), p.frame, p.slot, p.port), ("OLT01", 0, 1, 3));
    /// assert_eq!(p.to_string(), "OLT01/0/1/3");
    /// ```
    pub fn parse(s: &str) -> Option<PonPortRef> {
        let mut parts = s.trim().rsplitn(4, '/');
        let port = parts.next()?.parse().ok()?;
        let slot = parts.next()?.parse().ok()?;
        let frame = parts.next()?.parse().ok()?;
        let olt = parts.next()?.to_string();
        if olt.is_empty() {
            return None;
        }
        Some(PonPortRef {
            olt,
            frame,
            slot,
            port,
        })
    }
}

impl fmt::Display for PonPortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}/{}", self.olt, self.frame, self.slot, self.port)
    }
}

/// A PON port of an OLT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PonPort {
    /// Which PON port.
    pub at: PonPortRef,
    /// Highest number of ONTs (ids `0..max_onts`).
    pub max_onts: u32,
    /// State in the source.
    pub state: SourceState,
}

/// A compound (a residential block) and the PON ports that serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compound {
    /// Natural key (`CP01`).
    pub code: String,
    /// Display name.
    pub name: String,
    /// Code of the exchange (POP) it lies at.
    pub exchange: String,
    /// Code of its zone (FTTH map).
    pub zone: String,
    /// The PON ports that serve it.
    pub pon_ports: Vec<PonPortRef>,
}

/// An ONT placed on a PON port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ont {
    /// Serial, canonical form (`HWTC1A2B3C4D`).
    pub serial: String,
    /// Where it sits.
    pub at: PonPortRef,
    /// ONT id on that PON port (from 0).
    pub ont_id: u32,
    /// Vendor model.
    pub model: String,
    /// State in the source.
    pub state: SourceState,
}

/// A VLAN of an OLT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vlan {
    /// OLT name.
    pub olt: String,
    /// VLAN id (1–4094).
    pub id: u16,
    /// What it is for.
    pub purpose: VlanPurpose,
    /// State in the source.
    pub state: SourceState,
}

/// A whole inventory (or a part of one) as rows, parents before children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Sectors of both maps.
    pub sectors: Vec<Sector>,
    /// Zones of both maps.
    pub zones: Vec<Zone>,
    /// Cities of both maps.
    pub cities: Vec<City>,
    /// Exchanges (POPs).
    pub exchanges: Vec<Exchange>,
    /// DSLAMs.
    pub dslams: Vec<Dslam>,
    /// DSLAM ports.
    pub ports: Vec<Port>,
    /// OLTs.
    pub olts: Vec<Olt>,
    /// PON ports.
    pub pon_ports: Vec<PonPort>,
    /// Compounds.
    pub compounds: Vec<Compound>,
    /// ONTs known to the source.
    pub onts: Vec<Ont>,
    /// VLANs.
    pub vlans: Vec<Vlan>,
}
