//! Static checks of one item (-1004, -1005, -1001, -1006): everything that
//! needs no stored data. Runs on the submitter's thread, off the writer.

use super::fields::{ItemFields, applies};
use super::formats::{
    MAX_TEXT, is_ipv4, is_mask, parse_index, parse_ont_sn, parse_speed, parse_vlan,
};
use crate::ErrorCode;
use crate::model::{CoverType, OperType, ServiceType};
use crate::secrets::Secrets;

/// Why an item failed: its code and a description naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemFailure {
    /// The item's error code.
    pub code: ErrorCode,
    /// What is wrong (without the `item N:` prefix; never a secret).
    pub desc: String,
}

impl ItemFailure {
    pub(crate) fn new(code: ErrorCode, desc: impl Into<String>) -> ItemFailure {
        ItemFailure {
            code,
            desc: desc.into(),
        }
    }
}

/// Protected values of an item, already encrypted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Protected {
    /// PPPoE password.
    pub password: Option<Vec<u8>>,
    /// IPTV password.
    pub iptv_password: Option<Vec<u8>>,
    /// Mobile number.
    pub mobile: Option<Vec<u8>>,
    /// E-mail address.
    pub email: Option<Vec<u8>>,
}

/// An item that passed the static checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidItem {
    /// 1-based position.
    pub seq: usize,
    /// What it does.
    pub op: OperType,
    /// Cover type (absent only for a Query).
    pub cover: Option<CoverType>,
    /// Service type (absent only for a Query).
    pub service: Option<ServiceType>,
    /// The subscriber's login.
    pub user_name: String,
    /// All fields, merged and trimmed.
    pub fields: ItemFields,
    /// Speed in kbit/s.
    pub speed_kbps: Option<u64>,
    /// VLAN id.
    pub vlan: Option<u16>,
    /// Frame, slot, port when all three were given.
    pub port: Option<(u32, u32, u32)>,
    /// ONT serial, canonical form.
    pub ont_sn: Option<String>,
    /// Encrypted protected values.
    pub protected: Protected,
}

/// What a result item shows even when the item failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemHead {
    /// Opertype in contract spelling, or as sent.
    pub opertype: String,
    /// serviceType in contract spelling, or as sent.
    pub service_type: String,
    /// UserName.
    pub user_name: String,
}

/// Checks one item, given its merged fields.
pub fn check_fields(
    seq: usize,
    fields: ItemFields,
    secrets: &Secrets,
) -> (ItemHead, Result<ValidItem, ItemFailure>) {
    let op_raw = fields.get("opertype");
    let st_raw = fields.get("serviceType");
    let ct_raw = fields.get("coverType");
    let op = OperType::parse(op_raw);
    let service = ServiceType::parse(st_raw);
    let cover = CoverType::parse(ct_raw);
    let head = ItemHead {
        opertype: op
            .map(|o| o.as_str().to_string())
            .unwrap_or_else(|| op_raw.to_string()),
        service_type: service
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| st_raw.to_string()),
        user_name: fields.get("UserName").to_string(),
    };
    let r = check(seq, fields, op, cover, service, secrets);
    (head, r)
}

fn check(
    seq: usize,
    fields: ItemFields,
    op: Option<OperType>,
    cover: Option<CoverType>,
    service: Option<ServiceType>,
    secrets: &Secrets,
) -> Result<ValidItem, ItemFailure> {
    use ErrorCode::*;
    // -1004: a present but unknown opertype.
    let op_raw = fields.get("opertype");
    if !op_raw.is_empty() && op.is_none() {
        return Err(ItemFailure::new(
            InvalidOpertype,
            format!("opertype {op_raw} is not Install, Modify, Delete or Query"),
        ));
    }
    // -1005: a present but unknown coverType/serviceType, or a service that does not ride on the cover.
    let ct_raw = fields.get("coverType");
    if !ct_raw.is_empty() && cover.is_none() {
        return Err(ItemFailure::new(
            UnsupportedService,
            format!("coverType {ct_raw} is not supported"),
        ));
    }
    let st_raw = fields.get("serviceType");
    if !st_raw.is_empty() && service.is_none() {
        return Err(ItemFailure::new(
            UnsupportedService,
            format!("serviceType {st_raw} is not supported"),
        ));
    }
    if let (Some(s), Some(c)) = (service, cover)
        && !s.fits_cover(c)
    {
        return Err(ItemFailure::new(
            UnsupportedService,
            format!("serviceType {s} does not ride on coverType {c}"),
        ));
    }
    // -1001: required fields.
    let Some(op) = op else {
        return Err(ItemFailure::new(MissingField, "opertype is missing"));
    };
    let user_name = fields.get("UserName").to_string();
    if user_name.is_empty() {
        return Err(ItemFailure::new(MissingField, "UserName is missing"));
    }
    if op != OperType::Query {
        if cover.is_none() {
            return Err(ItemFailure::new(MissingField, "coverType is missing"));
        }
        if service.is_none() {
            return Err(ItemFailure::new(MissingField, "serviceType is missing"));
        }
    }
    if op == OperType::Install
        && let Some(s) = service
    {
        let required: &[&str] = match s {
            ServiceType::Adsl | ServiceType::Vdsl => {
                &["AccountNumber", "CustomerName", "ExchangeID", "Speed"]
            }
            ServiceType::Ftth => &[
                "AccountNumber",
                "CustomerName",
                "CompoundId",
                "ONTSN",
                "Speed",
            ],
            ServiceType::Iptv => &["IPTVContent"],
            ServiceType::IpPhone => &["IPAddress", "SIPDomainName"],
            ServiceType::OptionPack => &["WANIP", "SubnetMask", "LANIP"],
            ServiceType::DomainEmail => &["DomainName"],
        };
        if let Some(missing) = required.iter().find(|f| fields.get(f).is_empty()) {
            return Err(ItemFailure::new(
                MissingField,
                format!("{missing} is missing"),
            ));
        }
    }
    // Only UserName and serviceType matter for Delete and Query.
    let judged = matches!(op, OperType::Install | OperType::Modify);
    let applies_here = |f: &str| service.is_some_and(|s| applies(f, s));
    let mut port = None;
    if judged && applies_here("PortNumber") {
        let parts = ["FrameNumber", "SlotNumber", "PortNumber"].map(|f| fields.get(f));
        let given = parts.iter().filter(|v| !v.is_empty()).count();
        if given != 0 && given != 3 {
            let missing = ["FrameNumber", "SlotNumber", "PortNumber"]
                .into_iter()
                .zip(parts)
                .find(|(_, v)| v.is_empty())
                .map(|(f, _)| f)
                .unwrap_or("PortNumber");
            return Err(ItemFailure::new(
                MissingField,
                format!(
                    "{missing} is missing (FrameNumber, SlotNumber and PortNumber go together)"
                ),
            ));
        }
        if given == 3
            && op == OperType::Install
            && fields.get("Dslamname").is_empty()
            && fields.get("DSLAM").is_empty()
            && fields.get("DslamIP").is_empty()
        {
            return Err(ItemFailure::new(
                MissingField,
                "Dslamname is missing (a port needs its DSLAM)",
            ));
        }
        if given == 3 {
            let mut v = [0u32; 3];
            for (i, (name, raw)) in ["FrameNumber", "SlotNumber", "PortNumber"]
                .into_iter()
                .zip(parts)
                .enumerate()
            {
                v[i] = parse_index(raw).ok_or_else(|| {
                    ItemFailure::new(
                        InvalidValue,
                        format!("{name} {raw} is not a non-negative integer"),
                    )
                })?;
            }
            port = Some((v[0], v[1], v[2]));
        }
    }
    // -1006: formats, lengths and conflicts.
    if let Some(name) = &fields.conflict {
        return Err(ItemFailure::new(
            InvalidValue,
            format!("{name} is given twice with different values"),
        ));
    }
    // Unknown fields and fields that do not apply are kept but not judged
    // (the form limits bound them).
    for (_, shown, value) in fields.non_empty() {
        let judged_here = match crate::intake::contract_name(shown) {
            Some(name) => {
                judged && applies_here(name)
                    || matches!(name, "UserName" | "opertype" | "coverType" | "serviceType")
            }
            None => false,
        };
        if judged_here && value.chars().count() > MAX_TEXT {
            return Err(ItemFailure::new(
                InvalidValue,
                format!("{shown} is longer than {MAX_TEXT} characters"),
            ));
        }
    }
    let mut speed_kbps = None;
    let mut vlan = None;
    let mut ont_sn = None;
    if judged {
        let shown = |f: &str| fields.get(f).to_string();
        if applies_here("Speed")
            && let Some(v) = fields.opt("Speed")
        {
            speed_kbps = Some(parse_speed(v).ok_or_else(|| {
                ItemFailure::new(
                    InvalidValue,
                    format!("Speed {v} is not a speed (kbit/s, or a number with K, M or G)"),
                )
            })?);
        }
        if applies_here("VLAN")
            && let Some(v) = fields.opt("VLAN")
        {
            vlan = Some(parse_vlan(v).ok_or_else(|| {
                ItemFailure::new(InvalidValue, format!("VLAN {v} is not 1-4094"))
            })?);
        }
        if applies_here("ONTSN")
            && let Some(v) = fields.opt("ONTSN")
        {
            ont_sn = Some(parse_ont_sn(v).ok_or_else(|| {
                ItemFailure::new(
                    InvalidValue,
                    format!(
                        "ONTSN {v} is not four letters and eight hex digits, or sixteen hex digits"
                    ),
                )
            })?);
        }
        for f in ["DslamIP", "WANIP", "LANIP", "IPAddress"] {
            if applies_here(f)
                && let Some(v) = fields.opt(f)
                && !is_ipv4(v)
            {
                return Err(ItemFailure::new(
                    InvalidValue,
                    format!("{f} {v} is not a dotted IPv4 address"),
                ));
            }
        }
        if applies_here("SubnetMask")
            && let Some(v) = fields.opt("SubnetMask")
            && !is_mask(v)
        {
            return Err(ItemFailure::new(
                InvalidValue,
                format!("SubnetMask {v} is not a subnet mask"),
            ));
        }
        if let Some(v) = fields.opt("AreaCode")
            && !v.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ItemFailure::new(
                InvalidValue,
                format!("AreaCode {} is not digits", shown("AreaCode")),
            ));
        }
        if fields.opt("Email").is_some_and(|v| !v.contains('@')) {
            return Err(ItemFailure::new(
                InvalidValue,
                "Email is not an e-mail address",
            ));
        }
    }
    let enc = |f: &str| fields.opt(f).map(|v| secrets.encrypt(v));
    let protected = if judged {
        Protected {
            password: enc("Password"),
            iptv_password: if applies_here("IPTVPassword") {
                enc("IPTVPassword")
            } else {
                None
            },
            mobile: enc("Mobile"),
            email: enc("Email"),
        }
    } else {
        Protected::default()
    };
    Ok(ValidItem {
        seq,
        op,
        cover,
        service,
        user_name,
        fields,
        speed_kbps,
        vlan,
        port,
        ont_sn,
        protected,
    })
}
