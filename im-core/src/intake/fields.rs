//! The contract's field table and the merging of an item's direct fields and
//! `attrList` entries into one map keyed by canonical name.

use crate::form::Field;
use crate::model::ServiceType;
use crate::names::canonical;
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// Every field the contract names, in its contract spelling.
pub const KNOWN_FIELDS: &[&str] = &[
    "opertype",
    "coverType",
    "serviceType",
    "serviceName",
    "svFlag",
    "UserName",
    "Password",
    "AreaCode",
    "Serviceno",
    "CustomerOrderID",
    "AccountNumber",
    "CustomerName",
    "CustomerSegment",
    "CustomerLevel",
    "Mobile",
    "Email",
    "Address",
    "SecondPhone",
    "OldSecondPhone",
    "ExchangeID",
    "Dslamname",
    "FrameNumber",
    "SlotNumber",
    "PortNumber",
    "DslamIP",
    "DSLAM",
    "Speed",
    "OLTName",
    "VLAN",
    "ONTSN",
    "ONTModel",
    "CompoundId",
    "WANIP",
    "SubnetMask",
    "LANIP",
    "IPTVPassword",
    "IPTVContent",
    "IPAddress",
    "SIPDomainName",
    "VoiceOfferID",
    "VoiceOfferName",
    "DomainName",
    "ParentUserName",
    "ChildUsername",
];

/// Fields whose values are secrets or personal data: encrypted at rest,
/// never logged, never answered.
pub const PROTECTED_FIELDS: &[&str] = &["Password", "IPTVPassword", "Mobile", "Email"];

/// [`PROTECTED_FIELDS`] in canonical form (see [`crate::names::canonical`]),
/// for the writer's hot path, which holds canonical keys already.
pub(crate) const PROTECTED_CANONICAL: [&str; 4] = ["password", "iptvpassword", "mobile", "email"];

static CONTRACT_NAME: LazyLock<BTreeMap<String, &'static str>> =
    LazyLock::new(|| KNOWN_FIELDS.iter().map(|f| (canonical(f), *f)).collect());

/// The contract spelling of a field name, if the contract knows it.
///
/// ```
/// assert_eq!(im_core::intake::contract_name("ont_sn"), Some("ONTSN"));
/// assert_eq!(im_core::intake::contract_name("colour"), None);
/// ```
pub fn contract_name(name: &str) -> Option<&'static str> {
    let mut buf = [0u8; 32];
    match crate::names::canonical_in(name, &mut buf) {
        Some(key) => CONTRACT_NAME.get(key).copied(),
        None => CONTRACT_NAME.get(&canonical(name)).copied(),
    }
}

/// Whether a field (any spelling) is protected.
pub fn is_protected(name: &str) -> bool {
    PROTECTED_FIELDS.iter().any(|p| crate::names::same(p, name))
}

/// Whether the field (contract spelling) applies to a service.
pub fn applies(field: &str, service: ServiceType) -> bool {
    use ServiceType::*;
    let resource = match field {
        "ExchangeID" | "Dslamname" | "FrameNumber" | "SlotNumber" | "PortNumber" | "DslamIP"
        | "DSLAM" => &[Adsl, Vdsl][..],
        "Speed" => &[Adsl, Vdsl, Ftth][..],
        "OLTName" | "VLAN" | "ONTSN" | "ONTModel" | "CompoundId" => &[Ftth, Iptv, IpPhone][..],
        "WANIP" | "SubnetMask" | "LANIP" => &[OptionPack][..],
        "IPTVPassword" | "IPTVContent" => &[Iptv][..],
        "IPAddress" | "SIPDomainName" | "VoiceOfferID" | "VoiceOfferName" => &[IpPhone][..],
        "DomainName" | "ParentUserName" | "ChildUsername" => &[DomainEmail][..],
        _ => return true,
    };
    resource.contains(&service)
}

/// An item's fields merged: canonical name → (spelling to report, trimmed value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemFields {
    map: BTreeMap<String, (String, String)>,
    /// The first field given twice with two different non-empty values.
    pub conflict: Option<String>,
}

impl ItemFields {
    /// Merges direct fields and `attrList` entries.
    pub fn merge<'a>(fields: impl IntoIterator<Item = &'a Field>) -> ItemFields {
        let mut out = ItemFields::default();
        for f in fields {
            let key = canonical(&f.name);
            let value = f.value.trim();
            let shown = contract_name(&f.name)
                .map(str::to_string)
                .unwrap_or_else(|| f.name.trim().to_string());
            match out.map.get_mut(&key) {
                None => {
                    out.map.insert(key, (shown, value.to_string()));
                }
                Some((_, old)) => {
                    if old.is_empty() {
                        *old = value.to_string();
                    } else if !value.is_empty() && old != value && out.conflict.is_none() {
                        out.conflict = Some(shown);
                    }
                }
            }
        }
        out
    }

    /// The trimmed value of a field (any spelling), `""` when absent.
    pub fn get(&self, name: &str) -> &str {
        // Contract spellings are short ASCII: canonicalise them on the stack.
        let mut buf = [0u8; 32];
        let found = match crate::names::canonical_in(name, &mut buf) {
            Some(k) => self.map.get(k),
            None => self.map.get(&canonical(name)),
        };
        found.map(|(_, v)| v.as_str()).unwrap_or("")
    }

    /// The value when non-empty.
    pub fn opt(&self, name: &str) -> Option<&str> {
        Some(self.get(name)).filter(|v| !v.is_empty())
    }

    /// Every non-empty field: (canonical name, reported spelling, value).
    pub fn non_empty(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.map
            .iter()
            .filter(|(_, (_, v))| !v.is_empty())
            .map(|(k, (n, v))| (k.as_str(), n.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_canonical_matches_protected_fields() {
        let canon: Vec<String> = PROTECTED_FIELDS.iter().map(|f| canonical(f)).collect();
        assert_eq!(canon, PROTECTED_CANONICAL);
    }
}
