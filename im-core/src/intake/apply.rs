//! The stored-data phase of intake (-1007, -1008, -1009 and the writes): runs
//! inside the writer's batch, one call per savepoint. A refusal returns an
//! [`Outcome`] and the caller rolls the savepoint back; nothing here commits.

use super::validate::{ItemFailure, ValidItem};
use super::{PreparedCall, item_results_failed};
use crate::model::{CommandType, CoverType, OperType, ServiceState, ServiceType, VlanPurpose};
use crate::store::{
    CommandWrite, CustomerWrite, OntRec, PonRec, PortRec, ServiceRec, ServiceWrite, StoreRead,
    StoreResult, StoreWrite, TaskWrite,
};
use crate::{DuplicateContent, ErrorCode, ItemResult, Outcome};
use std::collections::BTreeMap;

type ItemOutcome = Result<Applied, ItemFailure>;
/// A judgement that needs stored data: a storage failure, a refusal, or a value.
type Judged<T> = StoreResult<Result<T, ItemFailure>>;
/// The DSLAM and port an item names.
type DslRefs = (Option<crate::store::DslamRec>, Option<PortRec>);
/// Compound id, ONT plan, candidate PON ports, OLT id and VLAN of an FTTH item.
type FtthRefs = (i64, OntPlan, Vec<PonRec>, i64, u16);
/// The ONT and port an add-on uses, and its VLAN.
type AddonRefs = (Option<OntRec>, Option<PortRec>, Option<u16>);

/// What one accepted item did.
struct Applied {
    result: ItemResult,
    service_id: Option<i64>,
}

/// A command to queue once every item is accepted.
struct PendingCommand {
    service_id: i64,
    kind: CommandType,
    service_type: ServiceType,
    params: Vec<(&'static str, String)>,
}

struct Ctx<'a> {
    tx: &'a mut dyn StoreWrite,
    call: &'a PreparedCall,
    at: &'a str,
    commands: Vec<PendingCommand>,
}

fn fail(code: ErrorCode, desc: impl Into<String>) -> StoreResult<ItemOutcome> {
    Ok(Err(ItemFailure::new(code, desc)))
}

/// Judges and applies a whole changing call. `Ok(outcome)` with a refusal
/// means the caller must roll its savepoint back.
pub(crate) fn apply_call(
    tx: &mut dyn StoreWrite,
    call: &PreparedCall,
    task_no: &str,
    at: &str,
) -> StoreResult<Outcome> {
    if let Some((task_no, fingerprint)) = tx.flow(&call.flow_id)? {
        let same = fingerprint.as_slice() == call.fingerprint.as_slice();
        let mut o = Outcome::refused(
            ErrorCode::DuplicateFlowId,
            format!(
                "flowId {} was already accepted as task {task_no}",
                call.flow_id
            ),
            call.flow_id.clone(),
        );
        o.task_no = Some(task_no);
        o.duplicate_content = Some(if same {
            DuplicateContent::Same
        } else {
            DuplicateContent::Different
        });
        return Ok(o);
    }
    if let Some(f) = &call.deferred {
        return Ok(Outcome::refused(
            f.code,
            f.desc.clone(),
            call.flow_id.clone(),
        ));
    }
    let mut ctx = Ctx {
        tx,
        call,
        at,
        commands: Vec::new(),
    };
    let mut applied = Vec::with_capacity(call.items.len());
    for (i, item) in call.items.iter().enumerate() {
        let r = match item {
            Err(f) => Err(f.clone()),
            Ok(v) => apply_item(&mut ctx, v)?,
        };
        match r {
            Ok(a) => applied.push(a),
            Err(f) => return Ok(item_results_failed(call, i, f)),
        }
    }
    let Ctx { tx, commands, .. } = ctx;
    let items: Vec<serde_json::Value> = applied
        .iter()
        .zip(&call.heads)
        .map(|(a, head)| {
            serde_json::json!({
                "seq": a.result.seq,
                "opertype": head.opertype,
                "serviceType": head.service_type,
                "UserName": head.user_name,
                "service": a.service_id,
                "port": a.result.port,
                "ontSn": a.result.ont_sn,
                "vlan": a.result.vlan,
                "state": a.result.state,
            })
        })
        .collect();
    let items = serde_json::Value::Array(items).to_string();
    let task_id = tx.insert_task(&TaskWrite {
        task_no,
        flow_id: &call.flow_id,
        fingerprint: &call.fingerprint,
        popid: &call.popid,
        request: &call.request_json,
        items: &items,
        account: &call.account,
        at,
    })?;
    for (n, c) in commands.iter().enumerate() {
        let n = n + 1;
        let cmd_id = format!("CMD-{task_no}-{n}");
        let params = params_json(&c.params);
        tx.insert_command(
            task_id,
            &CommandWrite {
                cmd_id: &cmd_id,
                seq: n as u32,
                service_id: c.service_id,
                kind: c.kind,
                service_type: c.service_type,
                params: &params,
                at,
            },
        )?;
    }
    Ok(Outcome {
        error_code: ErrorCode::Success,
        error_desc: "success".into(),
        flow_id: call.flow_id.clone(),
        task_no: Some(task_no.to_string()),
        items: applied.into_iter().map(|a| a.result).collect(),
        duplicate_content: None,
    })
}

fn params_json(params: &[(&'static str, String)]) -> String {
    let list: Vec<[&str; 2]> = params.iter().map(|(k, v)| [*k, v.as_str()]).collect();
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".into())
}

/// Answers the Query items of a call that changes nothing.
pub(crate) fn query_call(r: &mut dyn StoreRead, call: &PreparedCall) -> StoreResult<Outcome> {
    if let Some(f) = &call.deferred {
        return Ok(Outcome::refused(
            f.code,
            f.desc.clone(),
            call.flow_id.clone(),
        ));
    }
    let mut results = Vec::with_capacity(call.items.len());
    for (i, item) in call.items.iter().enumerate() {
        match item {
            Err(f) => return Ok(item_results_failed(call, i, f.clone())),
            Ok(v) => results.push(query_item(r, v)?),
        }
    }
    Ok(Outcome {
        error_code: ErrorCode::Success,
        error_desc: "success".into(),
        flow_id: call.flow_id.clone(),
        task_no: None,
        items: results,
        duplicate_content: None,
    })
}

fn query_item(r: &mut dyn StoreRead, v: &ValidItem) -> StoreResult<ItemResult> {
    let services = r.query_services(&v.user_name, v.service)?;
    Ok(ItemResult {
        seq: v.seq,
        opertype: OperType::Query.as_str().into(),
        service_type: v
            .service
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        user_name: v.user_name.clone(),
        error_code: Some(ErrorCode::Success),
        services,
        ..ItemResult::default()
    })
}

fn apply_item(ctx: &mut Ctx<'_>, v: &ValidItem) -> StoreResult<ItemOutcome> {
    let (Some(service), Some(cover)) = (v.service, v.cover) else {
        // Only a Query may lack them (checked statically).
        let res = query_item(ctx.tx, v)?;
        return Ok(Ok(Applied {
            result: res,
            service_id: None,
        }));
    };
    match v.op {
        OperType::Query => {
            let res = query_item(ctx.tx, v)?;
            Ok(Ok(Applied {
                result: res,
                service_id: None,
            }))
        }
        OperType::Install => match service {
            ServiceType::Adsl | ServiceType::Vdsl => install_dsl(ctx, v, service, cover),
            ServiceType::Ftth => install_ftth(ctx, v),
            _ => install_addon(ctx, v, service, cover),
        },
        OperType::Modify => modify(ctx, v, service, cover),
        OperType::Delete => delete(ctx, v, service),
    }
}

/// The service's data from an item, on top of what is stored (Modify) or
/// from scratch (Install).
fn service_write(
    v: &ValidItem,
    service: ServiceType,
    cover: CoverType,
    base: Option<&ServiceRec>,
) -> ServiceWrite {
    let mut fields: BTreeMap<String, String> = base.map(|b| b.fields.clone()).unwrap_or_default();
    for (key, _, value) in v.fields.non_empty() {
        // `key` is canonical: compare with the canonical spellings.
        if super::fields::PROTECTED_CANONICAL.contains(&key)
            || matches!(key, "opertype" | "covertype" | "servicetype" | "username")
        {
            continue;
        }
        fields.insert(key.to_string(), value.to_string());
    }
    ServiceWrite {
        user_name: v.user_name.clone(),
        service_type: service,
        cover_type: cover,
        customer_id: base.and_then(|b| b.customer_id),
        parent_id: base.and_then(|b| b.parent_id),
        popid: base.map(|b| b.popid.clone()).unwrap_or_default(),
        exchange_id: base.and_then(|b| b.exchange_id),
        olt_id: base.and_then(|b| b.olt_id),
        compound_id: base.and_then(|b| b.compound_id),
        vlan: v.vlan.or(base.and_then(|b| b.vlan)),
        speed_kbps: v.speed_kbps.or(base.and_then(|b| b.speed_kbps)),
        password_enc: v.protected.password.clone(),
        iptv_password_enc: v.protected.iptv_password.clone(),
        fields,
    }
}

fn customer(ctx: &mut Ctx<'_>, v: &ValidItem, current: Option<i64>) -> StoreResult<Option<i64>> {
    let f = &v.fields;
    let account = match f.opt("AccountNumber") {
        Some(a) => Some(a.to_string()),
        None => match current {
            Some(id) => ctx.tx.customer_account(id)?,
            None => None,
        },
    };
    let Some(account_number) = account else {
        return Ok(current);
    };
    let w = CustomerWrite {
        account_number,
        name: f.opt("CustomerName").map(str::to_string),
        segment: f.opt("CustomerSegment").map(str::to_string),
        level: f.opt("CustomerLevel").map(str::to_string),
        mobile_enc: v.protected.mobile.clone(),
        email_enc: v.protected.email.clone(),
    };
    let unchanged = f.opt("AccountNumber").is_none()
        && w.name.is_none()
        && w.segment.is_none()
        && w.level.is_none()
        && w.mobile_enc.is_none()
        && w.email_enc.is_none();
    if unchanged {
        return Ok(current);
    }
    Ok(Some(ctx.tx.upsert_customer(&w, ctx.at)?))
}

fn dsl_params(user: &str, port: &PortRec, speed: Option<u64>) -> Vec<(&'static str, String)> {
    vec![
        ("UserName", user.to_string()),
        ("port", port.label()),
        ("dslamIp", port.dslam_ip.clone()),
        ("speed", speed.map(|s| s.to_string()).unwrap_or_default()),
    ]
}

fn ftth_params(
    user: &str,
    ont: &OntRec,
    vlan: Option<u16>,
    speed: Option<u64>,
) -> Vec<(&'static str, String)> {
    vec![
        ("UserName", user.to_string()),
        ("olt", ont.pon.olt.clone()),
        ("ponPort", ont.pon.label()),
        ("ontId", ont.ont_id.to_string()),
        ("ontSn", ont.serial.clone()),
        ("vlan", vlan.map(|v| v.to_string()).unwrap_or_default()),
        ("speed", speed.map(|s| s.to_string()).unwrap_or_default()),
    ]
}

fn addon_params(
    service: ServiceType,
    user: &str,
    ont: Option<&OntRec>,
    vlan: Option<u16>,
    fields: &BTreeMap<String, String>,
) -> Vec<(&'static str, String)> {
    let get = |k: &str| fields.get(k).cloned().unwrap_or_default();
    let ont_sn = ont.map(|o| o.serial.clone()).unwrap_or_default();
    let vlan = vlan.map(|v| v.to_string()).unwrap_or_default();
    let mut p = vec![("UserName", user.to_string())];
    match service {
        ServiceType::Iptv => {
            p.extend([
                ("ontSn", ont_sn),
                ("vlan", vlan),
                ("iptvContent", get("iptvcontent")),
            ]);
        }
        ServiceType::IpPhone => p.extend([
            ("ontSn", ont_sn),
            ("vlan", vlan),
            ("ipAddress", get("ipaddress")),
            ("sipDomain", get("sipdomainname")),
            ("voiceOfferId", get("voiceofferid")),
        ]),
        ServiceType::OptionPack => p.extend([
            ("wanIp", get("wanip")),
            ("subnetMask", get("subnetmask")),
            ("lanIp", get("lanip")),
        ]),
        ServiceType::DomainEmail => p.push(("domainName", get("domainname"))),
        _ => {}
    }
    p
}

fn push_command(
    ctx: &mut Ctx<'_>,
    service_id: i64,
    op: OperType,
    service_type: ServiceType,
    params: Vec<(&'static str, String)>,
) {
    if let Some(kind) = CommandType::for_oper(op) {
        ctx.commands.push(PendingCommand {
            service_id,
            kind,
            service_type,
            params,
        });
    }
}

fn result(
    v: &ValidItem,
    port: &str,
    ont: &str,
    vlan: Option<u16>,
    state: ServiceState,
) -> ItemResult {
    ItemResult {
        seq: v.seq,
        opertype: v.op.as_str().into(),
        service_type: v
            .service
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        user_name: v.user_name.clone(),
        error_code: Some(ErrorCode::Success),
        port: port.to_string(),
        ont_sn: ont.to_string(),
        vlan: vlan.map(|x| x.to_string()).unwrap_or_default(),
        state: state.as_str().into(),
        services: Vec::new(),
    }
}

/// Resolves the DSLAM and port an ADSL/VDSL item names (-1007, -1006), without
/// judging availability. `Ok(None)` when the port fields are empty.
fn resolve_dsl_port(
    ctx: &mut Ctx<'_>,
    v: &ValidItem,
    cover: CoverType,
    exchange_id: Option<i64>,
    default_dslam: Option<i64>,
) -> Judged<DslRefs> {
    let f = &v.fields;
    let name = f.opt("Dslamname").or(f.opt("DSLAM"));
    if let (Some(a), Some(b)) = (f.opt("Dslamname"), f.opt("DSLAM"))
        && !a.eq_ignore_ascii_case(b)
    {
        return Ok(Err(ItemFailure::new(
            ErrorCode::InvalidValue,
            format!("Dslamname {a} and DSLAM {b} differ"),
        )));
    }
    let mut dslam = None;
    if let Some(name) = name {
        match ctx.tx.dslam_by_name(name)? {
            Some(d) if exchange_id.is_none_or(|e| e == d.exchange_id) => dslam = Some(d),
            Some(_) => {
                return Ok(Err(ItemFailure::new(
                    ErrorCode::UnknownReference,
                    format!(
                        "Dslamname {name} is not a DSLAM of exchange {}",
                        f.get("ExchangeID")
                    ),
                )));
            }
            None => {
                return Ok(Err(ItemFailure::new(
                    ErrorCode::UnknownReference,
                    format!("Dslamname {name} is not in the inventory"),
                )));
            }
        }
    }
    if let Some(ip) = f.opt("DslamIP") {
        match ctx.tx.dslam_by_ip(ip)? {
            None => {
                return Ok(Err(ItemFailure::new(
                    ErrorCode::UnknownReference,
                    format!("DslamIP {ip} is not a DSLAM in the inventory"),
                )));
            }
            Some(d) => match &dslam {
                Some(named) if named.id != d.id => {
                    return Ok(Err(ItemFailure::new(
                        ErrorCode::InvalidValue,
                        format!("DslamIP {ip} is not the address of DSLAM {}", named.name),
                    )));
                }
                Some(_) => {}
                None => {
                    if exchange_id.is_some_and(|e| e != d.exchange_id) {
                        return Ok(Err(ItemFailure::new(
                            ErrorCode::UnknownReference,
                            format!(
                                "DslamIP {ip} is not a DSLAM of exchange {}",
                                f.get("ExchangeID")
                            ),
                        )));
                    }
                    dslam = Some(d);
                }
            },
        }
    }
    if let Some(d) = &dslam
        && !d.technology.carries(cover)
    {
        return Ok(Err(ItemFailure::new(
            ErrorCode::InvalidValue,
            format!(
                "DSLAM {} is {} and cannot carry {cover}",
                d.name, d.technology
            ),
        )));
    }
    let Some((fr, sl, po)) = v.port else {
        return Ok(Ok((dslam, None)));
    };
    let dslam_id = match (&dslam, default_dslam) {
        (Some(d), _) => d.id,
        (None, Some(id)) => id,
        (None, None) => {
            return Ok(Err(ItemFailure::new(
                ErrorCode::MissingField,
                "Dslamname is missing (a port needs its DSLAM)",
            )));
        }
    };
    match ctx.tx.port_at(dslam_id, fr, sl, po)? {
        Some(p) if !p.removed => Ok(Ok((dslam, Some(p)))),
        _ => Ok(Err(ItemFailure::new(
            ErrorCode::UnknownReference,
            format!(
                "port {}/{fr}/{sl}/{po} is not in the inventory",
                dslam.as_ref().map(|d| d.name.as_str()).unwrap_or("DSLAM")
            ),
        ))),
    }
}

/// Judges whether a service may take a port (-1009).
fn port_available(p: &PortRec, me: Option<i64>) -> Option<ItemFailure> {
    if p.holder.is_some() && p.holder != me {
        return Some(ItemFailure::new(
            ErrorCode::ResourceUnavailable,
            format!("port {} is held by another service", p.label()),
        ));
    }
    if p.holder.is_none() && p.state != crate::model::SourceState::Available {
        return Some(ItemFailure::new(
            ErrorCode::ResourceUnavailable,
            format!("port {} is {} in the inventory", p.label(), p.state),
        ));
    }
    None
}

fn check_pop(ctx: &mut Ctx<'_>, v: &ValidItem) -> Judged<i64> {
    let popid = &ctx.call.popid;
    let Some(ex) = ctx.tx.exchange_by_popid(popid)? else {
        return Ok(Err(ItemFailure::new(
            ErrorCode::UnknownReference,
            format!("popid {popid} is not a known POP"),
        )));
    };
    if let Some(code) = v.fields.opt("ExchangeID")
        && !code.eq_ignore_ascii_case(&ex.code)
    {
        return Ok(Err(ItemFailure::new(
            ErrorCode::UnknownReference,
            format!("ExchangeID {code} is not an exchange of POP {popid}"),
        )));
    }
    Ok(Ok(ex.id))
}

macro_rules! tri {
    ($e:expr) => {
        match $e? {
            Ok(v) => v,
            Err(f) => return Ok(Err(f)),
        }
    };
}

fn install_dsl(
    ctx: &mut Ctx<'_>,
    v: &ValidItem,
    service: ServiceType,
    cover: CoverType,
) -> StoreResult<ItemOutcome> {
    let exchange_id = tri!(check_pop(ctx, v));
    let (dslam, port) = tri!(resolve_dsl_port(ctx, v, cover, Some(exchange_id), None));
    let existing = ctx.tx.service(&v.user_name, service)?;
    if existing
        .as_ref()
        .is_some_and(|s| s.state == ServiceState::Active)
    {
        return fail(
            ErrorCode::StateConflict,
            format!("{service} service {} is already active", v.user_name),
        );
    }
    let port = match port {
        Some(p) => {
            if let Some(f) = port_available(&p, None) {
                return Ok(Err(f));
            }
            p
        }
        None => {
            let candidates = match dslam {
                Some(d) => vec![d],
                None => ctx
                    .tx
                    .dslams_of_exchange(exchange_id)?
                    .into_iter()
                    .filter(|d| d.technology.carries(cover))
                    .collect(),
            };
            let mut found = None;
            for d in &candidates {
                if let Some(p) = ctx.tx.first_free_port(d.id)? {
                    found = Some(p);
                    break;
                }
            }
            match found {
                Some(p) => p,
                None => {
                    return fail(
                        ErrorCode::ResourceUnavailable,
                        format!(
                            "no free {cover} port at exchange {}",
                            v.fields.get("ExchangeID")
                        ),
                    );
                }
            }
        }
    };
    let customer_id = customer(ctx, v, None)?;
    let mut w = service_write(v, service, cover, None);
    w.customer_id = customer_id;
    w.popid = ctx.call.popid.clone();
    w.exchange_id = Some(exchange_id);
    let id = ctx
        .tx
        .put_service(&w, existing.as_ref().map(|s| s.id), ctx.at)?;
    ctx.tx.hold_port(port.id, id, ctx.at)?;
    push_command(
        ctx,
        id,
        OperType::Install,
        service,
        dsl_params(&v.user_name, &port, w.speed_kbps),
    );
    Ok(Ok(Applied {
        result: result(v, &port.label(), "", None, ServiceState::Active),
        service_id: Some(id),
    }))
}

/// Where an FTTH service's ONT goes: an existing ONT, or a new place.
enum OntPlan {
    Existing(OntRec),
    Place { serial: String, reuse: Option<i64> },
}

/// Resolves compound, OLT, ONT placement constraints and VLAN for FTTH
/// (-1007, -1006). Returns the plan, candidate PON ports, OLT id and VLAN.
fn resolve_ftth(
    ctx: &mut Ctx<'_>,
    v: &ValidItem,
    compound_code: &str,
    ont_sn: &str,
    me: Option<i64>,
) -> Judged<FtthRefs> {
    use ErrorCode::*;
    let popid = ctx.call.popid.clone();
    let Some(ex) = ctx.tx.exchange_by_popid(&popid)? else {
        return Ok(Err(ItemFailure::new(
            UnknownReference,
            format!("popid {popid} is not a known POP"),
        )));
    };
    let compound = match ctx.tx.compound_by_code(compound_code)? {
        Some(c) if c.exchange_id == ex.id => c,
        _ => {
            return Ok(Err(ItemFailure::new(
                UnknownReference,
                format!("CompoundId {compound_code} is not a compound of POP {popid}"),
            )));
        }
    };
    let pons = ctx.tx.pon_ports_of_compound(compound.id)?;
    let olt_id = match v.fields.opt("OLTName") {
        Some(name) => match ctx.tx.olt_by_name(name)? {
            None => {
                return Ok(Err(ItemFailure::new(
                    UnknownReference,
                    format!("OLTName {name} is not in the inventory"),
                )));
            }
            Some(o) if pons.iter().any(|p| p.olt_id == o.id) => o.id,
            Some(_) => {
                return Ok(Err(ItemFailure::new(
                    InvalidValue,
                    format!("OLTName {name} does not serve compound {compound_code}"),
                )));
            }
        },
        None => match pons.first() {
            Some(p) => p.olt_id,
            None => {
                return Ok(Err(ItemFailure::new(
                    UnknownReference,
                    format!("no PON port serves compound {compound_code}"),
                )));
            }
        },
    };
    let known = ctx.tx.ont_by_serial(ont_sn)?;
    let (plan, olt_id, candidates) = match known {
        Some(o) if !o.removed => {
            if !pons.iter().any(|p| p.id == o.pon.id) {
                return Ok(Err(ItemFailure::new(
                    InvalidValue,
                    format!(
                        "ONTSN {ont_sn} sits on PON port {} which does not serve compound {compound_code}",
                        o.pon.label()
                    ),
                )));
            }
            if v.fields.opt("OLTName").is_some() && o.pon.olt_id != olt_id {
                return Ok(Err(ItemFailure::new(
                    InvalidValue,
                    format!(
                        "ONTSN {ont_sn} is on OLT {}, not OLTName {}",
                        o.pon.olt,
                        v.fields.get("OLTName")
                    ),
                )));
            }
            let olt = o.pon.olt_id;
            (OntPlan::Existing(o), olt, Vec::new())
        }
        other => {
            let cands: Vec<PonRec> = pons.into_iter().filter(|p| p.olt_id == olt_id).collect();
            (
                OntPlan::Place {
                    serial: ont_sn.to_string(),
                    reuse: other.map(|o| o.id),
                },
                olt_id,
                cands,
            )
        }
    };
    let _ = me;
    let vlan = match v.vlan {
        Some(id) => match ctx.tx.vlan(olt_id, id)? {
            Some(_) => id,
            None => {
                return Ok(Err(ItemFailure::new(
                    UnknownReference,
                    format!("VLAN {id} is not a VLAN of the OLT serving compound {compound_code}"),
                )));
            }
        },
        None => match ctx.tx.lowest_vlan(olt_id, VlanPurpose::Internet)? {
            Some(id) => id,
            None => {
                return Ok(Err(ItemFailure::new(
                    UnknownReference,
                    format!("the OLT serving compound {compound_code} has no INTERNET VLAN"),
                )));
            }
        },
    };
    Ok(Ok((compound.id, plan, candidates, olt_id, vlan)))
}

/// Where a new ONT will go: the first PON port (of the candidates) with a
/// free ONT id, and the lowest free id there. Reads only.
fn free_ont_place(ctx: &mut Ctx<'_>, candidates: &[PonRec]) -> StoreResult<Option<(PonRec, u32)>> {
    for pon in candidates
        .iter()
        .filter(|p| p.state != crate::model::SourceState::Faulty)
    {
        let used = ctx.tx.used_ont_ids(pon.id)?;
        let mut next = 0u32;
        for u in used {
            if u == next {
                next += 1;
            } else if u > next {
                break;
            }
        }
        if next < pon.max_onts {
            return Ok(Some((pon.clone(), next)));
        }
    }
    Ok(None)
}

/// Judges the planned ONT (-1009 when held by another service or when no
/// ONT id is free) without writing; returns where it will be.
fn judge_ont(
    ctx: &mut Ctx<'_>,
    plan: OntPlan,
    candidates: &[PonRec],
    me: Option<i64>,
) -> Judged<OntTake> {
    match plan {
        OntPlan::Existing(o) => {
            if o.holder.is_some() && o.holder != me {
                return Ok(Err(ItemFailure::new(
                    ErrorCode::ResourceUnavailable,
                    format!("ONTSN {} is held by another service", o.serial),
                )));
            }
            Ok(Ok(OntTake::Existing(o)))
        }
        OntPlan::Place { serial, reuse } => match free_ont_place(ctx, candidates)? {
            Some((pon, ont_id)) => Ok(Ok(OntTake::Place {
                serial,
                reuse,
                pon,
                ont_id,
            })),
            None => Ok(Err(ItemFailure::new(
                ErrorCode::ResourceUnavailable,
                "no free ONT id on the PON ports serving the compound",
            ))),
        },
    }
}

/// A judged ONT, ready to be taken.
enum OntTake {
    Existing(OntRec),
    Place {
        serial: String,
        reuse: Option<i64>,
        pon: PonRec,
        ont_id: u32,
    },
}

/// Makes a service hold the judged ONT (writes only; cannot refuse).
fn take_ont(ctx: &mut Ctx<'_>, take: OntTake, service_id: i64, model: &str) -> StoreResult<OntRec> {
    match take {
        OntTake::Existing(o) => {
            if o.holder != Some(service_id) {
                ctx.tx.hold_ont(o.id, service_id, ctx.at)?;
            }
            Ok(OntRec {
                holder: Some(service_id),
                ..o
            })
        }
        OntTake::Place {
            serial,
            reuse,
            pon,
            ont_id,
        } => {
            let id = match reuse {
                Some(id) => {
                    ctx.tx.replace_ont(id, pon.id, ont_id, ctx.at)?;
                    id
                }
                None => ctx
                    .tx
                    .register_ont(&serial, pon.id, ont_id, model, ctx.at)?,
            };
            ctx.tx.hold_ont(id, service_id, ctx.at)?;
            Ok(OntRec {
                id,
                serial,
                pon,
                ont_id,
                state: crate::model::SourceState::Available,
                holder: Some(service_id),
                removed: false,
            })
        }
    }
}

fn install_ftth(ctx: &mut Ctx<'_>, v: &ValidItem) -> StoreResult<ItemOutcome> {
    let compound_code = v.fields.get("CompoundId").to_string();
    let ont_sn = v.ont_sn.clone().unwrap_or_default();
    let (compound_id, plan, candidates, olt_id, vlan) =
        tri!(resolve_ftth(ctx, v, &compound_code, &ont_sn, None));
    let existing = ctx.tx.service(&v.user_name, ServiceType::Ftth)?;
    if existing
        .as_ref()
        .is_some_and(|s| s.state == ServiceState::Active)
    {
        return fail(
            ErrorCode::StateConflict,
            format!("FTTH service {} is already active", v.user_name),
        );
    }
    let take = tri!(judge_ont(ctx, plan, &candidates, None));
    let customer_id = customer(ctx, v, None)?;
    let mut w = service_write(v, ServiceType::Ftth, CoverType::Ftth, None);
    w.customer_id = customer_id;
    w.popid = ctx.call.popid.clone();
    w.olt_id = Some(olt_id);
    w.compound_id = Some(compound_id);
    w.vlan = Some(vlan);
    let id = ctx
        .tx
        .put_service(&w, existing.as_ref().map(|s| s.id), ctx.at)?;
    let ont = take_ont(ctx, take, id, v.fields.get("ONTModel"))?;
    push_command(
        ctx,
        id,
        OperType::Install,
        ServiceType::Ftth,
        ftth_params(&v.user_name, &ont, Some(vlan), w.speed_kbps),
    );
    Ok(Ok(Applied {
        result: result(v, "", &ont.serial, Some(vlan), ServiceState::Active),
        service_id: Some(id),
    }))
}

/// The active broadband service an add-on rides on (-1008 when none).
fn broadband_of(
    ctx: &mut Ctx<'_>,
    v: &ValidItem,
    service: ServiceType,
    cover: CoverType,
) -> Judged<ServiceRec> {
    let bb = ServiceType::broadband(cover);
    match ctx.tx.service(&v.user_name, bb)? {
        Some(s) if s.state == ServiceState::Active => Ok(Ok(s)),
        _ => Ok(Err(ItemFailure::new(
            ErrorCode::StateConflict,
            format!("{service} needs an active {bb} service {}", v.user_name),
        ))),
    }
}

/// Checks an add-on's ONT/OLT fields against its broadband and picks its VLAN.
fn addon_resources(
    ctx: &mut Ctx<'_>,
    v: &ValidItem,
    service: ServiceType,
    bb: &ServiceRec,
    current_vlan: Option<u16>,
) -> Judged<AddonRefs> {
    let ont = ctx.tx.ont_held_by(bb.id)?;
    let port = ctx.tx.port_held_by(bb.id)?;
    let Some(purpose) = service.vlan_purpose() else {
        return Ok(Ok((ont, port, None)));
    };
    if let Some(sn) = &v.ont_sn
        && ont.as_ref().is_none_or(|o| &o.serial != sn)
    {
        return Ok(Err(ItemFailure::new(
            ErrorCode::InvalidValue,
            format!("ONTSN {sn} is not the ONT of FTTH service {}", v.user_name),
        )));
    }
    if let Some(name) = v.fields.opt("OLTName")
        && ont
            .as_ref()
            .is_none_or(|o| !o.pon.olt.eq_ignore_ascii_case(name))
    {
        return Ok(Err(ItemFailure::new(
            ErrorCode::InvalidValue,
            format!(
                "OLTName {name} is not the OLT of FTTH service {}",
                v.user_name
            ),
        )));
    }
    let Some(olt_id) = bb.olt_id else {
        return Ok(Ok((ont, port, None)));
    };
    let vlan = match v.vlan {
        Some(id) => match ctx.tx.vlan(olt_id, id)? {
            Some(_) => id,
            None => {
                return Ok(Err(ItemFailure::new(
                    ErrorCode::UnknownReference,
                    format!(
                        "VLAN {id} is not a VLAN of the OLT of FTTH service {}",
                        v.user_name
                    ),
                )));
            }
        },
        None => match current_vlan {
            Some(id) => id,
            None => match ctx.tx.lowest_vlan(olt_id, purpose)? {
                Some(id) => id,
                None => {
                    return Ok(Err(ItemFailure::new(
                        ErrorCode::UnknownReference,
                        format!(
                            "the OLT of FTTH service {} has no {purpose} VLAN",
                            v.user_name
                        ),
                    )));
                }
            },
        },
    };
    Ok(Ok((ont, port, Some(vlan))))
}

fn install_addon(
    ctx: &mut Ctx<'_>,
    v: &ValidItem,
    service: ServiceType,
    cover: CoverType,
) -> StoreResult<ItemOutcome> {
    let bb = tri!(broadband_of(ctx, v, service, cover));
    let (ont, port, vlan) = tri!(addon_resources(ctx, v, service, &bb, None));
    let existing = ctx.tx.service(&v.user_name, service)?;
    if existing
        .as_ref()
        .is_some_and(|s| s.state == ServiceState::Active)
    {
        return fail(
            ErrorCode::StateConflict,
            format!("{service} service {} is already active", v.user_name),
        );
    }
    let customer_id = match v.fields.opt("AccountNumber") {
        Some(_) => customer(ctx, v, None)?,
        None => bb.customer_id,
    };
    let mut w = service_write(v, service, cover, None);
    w.customer_id = customer_id;
    w.parent_id = Some(bb.id);
    w.popid = ctx.call.popid.clone();
    w.olt_id = bb.olt_id;
    w.compound_id = bb.compound_id;
    w.exchange_id = bb.exchange_id;
    w.vlan = vlan;
    w.speed_kbps = None;
    let id = ctx
        .tx
        .put_service(&w, existing.as_ref().map(|s| s.id), ctx.at)?;
    push_command(
        ctx,
        id,
        OperType::Install,
        service,
        addon_params(service, &v.user_name, ont.as_ref(), vlan, &w.fields),
    );
    let port_label = port.map(|p| p.label()).unwrap_or_default();
    let ont_sn = ont.map(|o| o.serial).unwrap_or_default();
    Ok(Ok(Applied {
        result: result(v, &port_label, &ont_sn, vlan, ServiceState::Active),
        service_id: Some(id),
    }))
}

fn active_service(ctx: &mut Ctx<'_>, v: &ValidItem, service: ServiceType) -> Judged<ServiceRec> {
    match ctx.tx.service(&v.user_name, service)? {
        Some(s) if s.state == ServiceState::Active => Ok(Ok(s)),
        Some(_) => Ok(Err(ItemFailure::new(
            ErrorCode::StateConflict,
            format!("{service} service {} is not active", v.user_name),
        ))),
        None => Ok(Err(ItemFailure::new(
            ErrorCode::StateConflict,
            format!("{service} service {} does not exist", v.user_name),
        ))),
    }
}

fn modify(
    ctx: &mut Ctx<'_>,
    v: &ValidItem,
    service: ServiceType,
    cover: CoverType,
) -> StoreResult<ItemOutcome> {
    match service {
        ServiceType::Adsl | ServiceType::Vdsl => modify_dsl(ctx, v, service, cover),
        ServiceType::Ftth => modify_ftth(ctx, v),
        _ => modify_addon(ctx, v, service, cover),
    }
}

fn modify_dsl(
    ctx: &mut Ctx<'_>,
    v: &ValidItem,
    service: ServiceType,
    cover: CoverType,
) -> StoreResult<ItemOutcome> {
    let moving = v.port.is_some();
    let mut exchange_id = None;
    let mut new_port = None;
    if moving {
        exchange_id = Some(tri!(check_pop(ctx, v)));
    }
    // References first (-1007/-1006), then the state (-1008), then availability (-1009).
    let current = ctx.tx.service(&v.user_name, service)?;
    let held = match &current {
        Some(s) => ctx.tx.port_held_by(s.id)?,
        None => None,
    };
    if moving {
        let (_, p) = tri!(resolve_dsl_port(
            ctx,
            v,
            cover,
            exchange_id,
            held.as_ref().map(|p| p.dslam_id)
        ));
        new_port = p;
    }
    let svc = tri!(active_service(ctx, v, service));
    if let Some(p) = &new_port
        && let Some(f) = port_available(p, Some(svc.id))
    {
        return Ok(Err(f));
    }
    let customer_id = customer(ctx, v, svc.customer_id)?;
    let mut w = service_write(v, service, cover, Some(&svc));
    w.customer_id = customer_id;
    let port = match new_port {
        Some(p) if Some(p.id) != held.as_ref().map(|h| h.id) => {
            ctx.tx.release_port(svc.id, ctx.at)?;
            ctx.tx.hold_port(p.id, svc.id, ctx.at)?;
            w.popid = ctx.call.popid.clone();
            w.exchange_id = exchange_id;
            Some(p)
        }
        _ => held,
    };
    ctx.tx.update_service(svc.id, &w, ctx.at)?;
    let label = port.as_ref().map(|p| p.label()).unwrap_or_default();
    if let Some(p) = &port {
        push_command(
            ctx,
            svc.id,
            OperType::Modify,
            service,
            dsl_params(&v.user_name, p, w.speed_kbps),
        );
    } else {
        let params = vec![
            ("UserName", v.user_name.clone()),
            ("port", String::new()),
            ("dslamIp", String::new()),
            (
                "speed",
                w.speed_kbps.map(|s| s.to_string()).unwrap_or_default(),
            ),
        ];
        push_command(ctx, svc.id, OperType::Modify, service, params);
    }
    Ok(Ok(Applied {
        result: result(v, &label, "", None, ServiceState::Active),
        service_id: Some(svc.id),
    }))
}

fn modify_ftth(ctx: &mut Ctx<'_>, v: &ValidItem) -> StoreResult<ItemOutcome> {
    let current = ctx.tx.service(&v.user_name, ServiceType::Ftth)?;
    let held = match &current {
        Some(s) => ctx.tx.ont_held_by(s.id)?,
        None => None,
    };
    let moving = v
        .ont_sn
        .as_ref()
        .is_some_and(|sn| held.as_ref().is_none_or(|h| &h.serial != sn));
    let mut plan = None;
    let mut vlan = None;
    if moving {
        let compound_code = match v.fields.opt("CompoundId") {
            Some(c) => c.to_string(),
            None => match current.as_ref().and_then(|s| s.compound_id) {
                Some(id) => ctx
                    .tx
                    .compound_by_id(id)?
                    .map(|c| c.code)
                    .unwrap_or_default(),
                // No compound to move within: a missing service is the answer.
                None => {
                    tri!(active_service(ctx, v, ServiceType::Ftth));
                    String::new()
                }
            },
        };
        let sn = v.ont_sn.clone().unwrap_or_default();
        let (compound_id, p, cands, olt_id, vl) =
            tri!(resolve_ftth(ctx, v, &compound_code, &sn, None));
        vlan = Some(if v.vlan.is_some() {
            vl
        } else {
            current
                .as_ref()
                .and_then(|s| s.vlan)
                .filter(|_| current.as_ref().and_then(|s| s.olt_id) == Some(olt_id))
                .unwrap_or(vl)
        });
        plan = Some((compound_id, p, cands, olt_id));
    } else if let (Some(id), Some(olt)) = (v.vlan, current.as_ref().and_then(|s| s.olt_id)) {
        if ctx.tx.vlan(olt, id)?.is_none() {
            return fail(
                ErrorCode::UnknownReference,
                format!(
                    "VLAN {id} is not a VLAN of the OLT of FTTH service {}",
                    v.user_name
                ),
            );
        }
        vlan = Some(id);
    }
    let svc = tri!(active_service(ctx, v, ServiceType::Ftth));
    let plan = match plan {
        Some((compound_id, p, cands, olt_id)) => Some((
            compound_id,
            tri!(judge_ont(ctx, p, &cands, Some(svc.id))),
            olt_id,
        )),
        None => None,
    };
    let customer_id = customer(ctx, v, svc.customer_id)?;
    let mut w = service_write(v, ServiceType::Ftth, CoverType::Ftth, Some(&svc));
    w.customer_id = customer_id;
    if let Some(vl) = vlan {
        w.vlan = Some(vl);
    }
    let ont = match plan {
        Some((compound_id, take, olt_id)) => {
            ctx.tx.release_ont(svc.id, ctx.at)?;
            let ont = take_ont(ctx, take, svc.id, v.fields.get("ONTModel"))?;
            w.compound_id = Some(compound_id);
            w.olt_id = Some(olt_id);
            w.popid = ctx.call.popid.clone();
            Some(ont)
        }
        None => held,
    };
    ctx.tx.update_service(svc.id, &w, ctx.at)?;
    let params = match &ont {
        Some(o) => ftth_params(&v.user_name, o, w.vlan, w.speed_kbps),
        None => vec![("UserName", v.user_name.clone())],
    };
    push_command(ctx, svc.id, OperType::Modify, ServiceType::Ftth, params);
    let sn = ont.map(|o| o.serial).unwrap_or_default();
    Ok(Ok(Applied {
        result: result(v, "", &sn, w.vlan, ServiceState::Active),
        service_id: Some(svc.id),
    }))
}

fn modify_addon(
    ctx: &mut Ctx<'_>,
    v: &ValidItem,
    service: ServiceType,
    cover: CoverType,
) -> StoreResult<ItemOutcome> {
    let svc = tri!(active_service(ctx, v, service));
    let bb = tri!(broadband_of(ctx, v, service, cover));
    let (ont, port, vlan) = tri!(addon_resources(ctx, v, service, &bb, svc.vlan));
    let customer_id = customer(ctx, v, svc.customer_id)?;
    let mut w = service_write(v, service, cover, Some(&svc));
    w.customer_id = customer_id;
    w.vlan = vlan;
    w.speed_kbps = None;
    ctx.tx.update_service(svc.id, &w, ctx.at)?;
    push_command(
        ctx,
        svc.id,
        OperType::Modify,
        service,
        addon_params(service, &v.user_name, ont.as_ref(), vlan, &w.fields),
    );
    let port_label = port.map(|p| p.label()).unwrap_or_default();
    let sn = ont.map(|o| o.serial).unwrap_or_default();
    Ok(Ok(Applied {
        result: result(v, &port_label, &sn, vlan, ServiceState::Active),
        service_id: Some(svc.id),
    }))
}

fn delete(ctx: &mut Ctx<'_>, v: &ValidItem, service: ServiceType) -> StoreResult<ItemOutcome> {
    let svc = tri!(active_service(ctx, v, service));
    let port = ctx.tx.port_held_by(svc.id)?;
    let ont = ctx.tx.ont_held_by(svc.id)?;
    if service.is_broadband() {
        for addon in ctx.tx.active_addons(svc.id)? {
            let params = addon_params(
                addon.service_type,
                &addon.user_name,
                ont.as_ref(),
                addon.vlan,
                &addon.fields,
            );
            ctx.tx
                .set_service_state(addon.id, ServiceState::Inactive, ctx.at)?;
            push_command(ctx, addon.id, OperType::Delete, addon.service_type, params);
        }
    }
    let params = match service {
        ServiceType::Adsl | ServiceType::Vdsl => match &port {
            Some(p) => dsl_params(&svc.user_name, p, svc.speed_kbps),
            None => vec![("UserName", svc.user_name.clone())],
        },
        ServiceType::Ftth => match &ont {
            Some(o) => ftth_params(&svc.user_name, o, svc.vlan, svc.speed_kbps),
            None => vec![("UserName", svc.user_name.clone())],
        },
        _ => {
            let bb_ont = match svc.parent_id {
                Some(p) => ctx.tx.ont_held_by(p)?,
                None => None,
            };
            addon_params(
                service,
                &svc.user_name,
                bb_ont.as_ref(),
                svc.vlan,
                &svc.fields,
            )
        }
    };
    ctx.tx.release_port(svc.id, ctx.at)?;
    ctx.tx.release_ont(svc.id, ctx.at)?;
    ctx.tx
        .set_service_state(svc.id, ServiceState::Inactive, ctx.at)?;
    push_command(ctx, svc.id, OperType::Delete, service, params);
    Ok(Ok(Applied {
        result: result(v, "", "", None, ServiceState::Inactive),
        service_id: Some(svc.id),
    }))
}
