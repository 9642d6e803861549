//! The routes of the operators' API: authentication, the permission each
//! route needs, parameter checks, and the call into im-core.

use super::auth::Presented;
use super::wire::*;
use super::{Api, ApiError, Call, Record, Reply, clip};
use http::{Method, StatusCode};
use im_core::access::{Access, Action, Area, Permissions, ProtectedValue, Role};
use im_core::admin::NewUser;
use im_core::audit::{LogFilter, OpAction};
use im_core::lifecycle::OperatorAction;
use im_core::login::{AuthMode, LoginError};
use im_core::model::{CommandState, TaskState};
use im_core::operator::{Actor, DEFAULT_PAGE, PageRequest};
use im_core::query::{InventoryQuery, ServiceSearch, TaskSearch};
use im_core::sync::{Resource, SyncKind, SyncSystem};
use std::collections::BTreeMap;

/// The resource type of an `/inventory/{type}` segment.
fn resource_of(s: &str) -> Option<Resource> {
    Some(match s {
        "sectors" => Resource::Sector,
        "zones" => Resource::Zone,
        "cities" => Resource::City,
        "exchanges" => Resource::Exchange,
        "dslams" => Resource::Dslam,
        "ports" => Resource::Port,
        "olts" => Resource::Olt,
        "pon-ports" => Resource::PonPort,
        "compounds" => Resource::Compound,
        "onts" => Resource::Ont,
        "vlans" => Resource::Vlan,
        _ => return None,
    })
}

fn need(access: &Access, area: Area, action: Action) -> Result<(), ApiError> {
    if access.allows(area, action) {
        Ok(())
    } else {
        Err(ApiError::forbidden(&format!(
            "{} on {}",
            action.as_str(),
            area.as_str()
        )))
    }
}

/// The query parameter `name`, when given and not empty.
fn param<'a>(call: &'a Call, name: &str) -> Option<&'a str> {
    call.query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.trim().is_empty())
}

/// Refuses parameters a route does not know.
fn only(call: &Call, known: &[&str]) -> Result<(), ApiError> {
    for (k, _) in &call.query {
        if !known.contains(&k.as_str()) && k != "limit" && k != "before" {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {:?} (known: {}, limit, before)",
                clip(k, 40),
                known.join(", ")
            )));
        }
    }
    Ok(())
}

fn page(call: &Call) -> Result<PageRequest, ApiError> {
    let limit = match param(call, "limit") {
        None => DEFAULT_PAGE,
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| ApiError::unprocessable("limit: a whole number"))?,
    };
    let before = match param(call, "before") {
        None => None,
        Some(v) => Some(
            v.trim()
                .parse()
                .map_err(|_| ApiError::unprocessable("before: a row id"))?,
        ),
    };
    Ok(PageRequest::new(limit, before)?)
}

fn owned(call: &Call, name: &str) -> Option<String> {
    param(call, name).map(str::to_string)
}

fn id_of(s: &str) -> Result<i64, ApiError> {
    s.parse()
        .ok()
        .filter(|n: &i64| *n > 0)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such id"))
}

/// Checks the caller and returns what it may do.
async fn authenticate(api: &Api, call: &Call, rec: &mut Record) -> Result<Access, ApiError> {
    let account = match super::auth::presented(call.authorization.as_deref()) {
        Presented::Bearer(token) => api
            .sessions
            .account(&token)
            .ok_or_else(|| ApiError::unauthenticated("the session is unknown or has expired"))?,
        Presented::Basic(login, password) => {
            rec.account = clip(login.trim(), 128);
            match api.basic.lookup(&login, &password) {
                Some(acc) => acc,
                None => {
                    let principal = login_checked(api, &login, &password, &call.ip).await?;
                    api.basic.insert(&login, &password, &principal);
                    principal
                }
            }
        }
        Presented::None => {
            return Err(ApiError::unauthenticated(
                "credentials required (HTTP Basic or a bearer session token)",
            ));
        }
    };
    rec.account = account.clone();
    match api.im.access(&account).await? {
        Some(a) => Ok(a),
        None => {
            api.sessions.close_all_of(&account);
            Err(ApiError::unauthenticated(
                "the account is disabled or unknown",
            ))
        }
    }
}

/// A full login (one login-log row); returns the account as stored.
async fn login_checked(
    api: &Api,
    login: &str,
    password: &str,
    ip: &str,
) -> Result<String, ApiError> {
    let Some(_slot) = api.login_slot() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "too many logins in progress; try again",
        ));
    };
    match api.im.login(login, password, ip).await {
        Ok(p) => Ok(p.account),
        Err(LoginError::Refused(_)) => Err(ApiError::unauthenticated("login refused")),
        Err(LoginError::DirectoryUnavailable) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "DIRECTORY_UNAVAILABLE",
            "the directory is unavailable; try again later",
        )),
        Err(LoginError::Busy) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "too many logins in progress; try again",
        )),
        Err(LoginError::Core(e)) => Err(im_core::operator::OpError::from(e).into()),
    }
}

/// `POST /session` (Basic) opens a session; `DELETE /session` (Bearer) closes it.
async fn session(api: &Api, call: &Call, rec: &mut Record) -> Result<Reply, ApiError> {
    let presented = super::auth::presented(call.authorization.as_deref());
    match call.method {
        Method::POST => {
            rec.action = OpAction::Login;
            let Presented::Basic(login, password) = presented else {
                return Err(ApiError::unauthenticated(
                    "open a session with HTTP Basic credentials",
                ));
            };
            rec.account = clip(login.trim(), 128);
            let account = login_checked(api, &login, &password, &call.ip).await?;
            rec.account = account.clone();
            let access =
                api.im.access(&account).await?.ok_or_else(|| {
                    ApiError::unauthenticated("the account is disabled or unknown")
                })?;
            let token = api.sessions.open(&account).ok_or_else(|| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UNAVAILABLE",
                    "no session can be opened now; try again later",
                )
            })?;
            Reply::json(&SessionBody {
                token: token.0,
                expires_in: api.sessions.ttl().as_secs(),
                account,
                roles: access.roles,
            })
        }
        Method::DELETE => {
            rec.action = OpAction::Logout;
            let Presented::Bearer(token) = presented else {
                return Err(ApiError::unauthenticated(
                    "close a session with its bearer token",
                ));
            };
            let account = api.sessions.close(&token).ok_or_else(|| {
                ApiError::unauthenticated("the session is unknown or has expired")
            })?;
            rec.account = account.clone();
            api.im
                .logout(&account, &call.ip)
                .await
                .map_err(im_core::operator::OpError::from)?;
            Ok(Reply::empty())
        }
        _ => Err(ApiError::method("POST, DELETE")),
    }
}

/// Dispatches one call.
pub(crate) async fn route(api: &Api, call: &Call, rec: &mut Record) -> Result<Reply, ApiError> {
    let seg: Vec<&str> = call.segments.iter().map(String::as_str).collect();
    if seg == ["session"] {
        return session(api, call, rec).await;
    }
    let access = authenticate(api, call, rec).await?;
    let actor = Actor::new(access.account.clone(), call.ip.clone());
    let m = &call.method;
    match seg.as_slice() {
        ["me"] => match *m {
            Method::GET => Reply::json(&AccessBody::from(&access)),
            _ => Err(ApiError::method("GET")),
        },
        ["services"] => match *m {
            Method::GET => {
                need(&access, Area::Services, Action::Read)?;
                only(
                    call,
                    &["user_name", "account_number", "serviceno", "ont_sn", "port"],
                )?;
                let search = ServiceSearch {
                    user_name: owned(call, "user_name"),
                    account_number: owned(call, "account_number"),
                    serviceno: owned(call, "serviceno"),
                    ont_sn: owned(call, "ont_sn"),
                    port: owned(call, "port"),
                    page: page(call)?,
                };
                let p = api.im.search_services(search).await?;
                Reply::json(&PageBody::from(p, ServiceRowBody::from))
            }
            _ => Err(ApiError::method("GET")),
        },
        ["services", id] => match *m {
            Method::GET => {
                need(&access, Area::Services, Action::Read)?;
                only(call, &[])?;
                let d = api.im.service_detail(id_of(id)?, &access).await?;
                Reply::json(&ServiceDetailBody::from(d))
            }
            _ => Err(ApiError::method("GET")),
        },
        ["tasks"] => match *m {
            Method::GET => {
                need(&access, Area::Tasks, Action::Read)?;
                only(call, &["task_no", "flow_id", "state", "from", "to"])?;
                let state = match param(call, "state") {
                    None => None,
                    Some(s) => Some(TaskState::parse(s).ok_or_else(|| {
                        ApiError::unprocessable(
                            "state: RECEIVED, ACTIVATING, COMPLETED, FAILED or CANCELLED",
                        )
                    })?),
                };
                let search = TaskSearch {
                    task_no: owned(call, "task_no"),
                    flow_id: owned(call, "flow_id"),
                    state,
                    from: owned(call, "from"),
                    to: owned(call, "to"),
                    page: page(call)?,
                };
                let p = api.im.search_tasks(search).await?;
                Reply::json(&PageBody::from(p, TaskRowBody::from))
            }
            _ => Err(ApiError::method("GET")),
        },
        ["tasks", no] => match *m {
            Method::GET => {
                need(&access, Area::Tasks, Action::Read)?;
                only(call, &[])?;
                let d = api.im.task_detail(no, &access).await?;
                Reply::json(&TaskDetailBody::from(d))
            }
            _ => Err(ApiError::method("GET")),
        },
        ["tasks", no, verb] => {
            let action = match *verb {
                "redo" => OperatorAction::Redo,
                "cancel" => OperatorAction::Cancel,
                "force-finish" => OperatorAction::ForceFinish,
                _ => return Err(ApiError::not_found()),
            };
            if *m != Method::POST {
                return Err(ApiError::method("POST"));
            }
            rec.action = OpAction::Modify;
            need(&access, Area::Tasks, Action::Modify)?;
            let body: ReasonRequest = api.body(call)?;
            let state = api.im.task_action(&actor, action, no, &body.reason).await?;
            Reply::changed(
                StatusCode::OK,
                &TaskStateBody {
                    task_no: (*no).to_string(),
                    state: state.as_str().into(),
                },
            )
        }
        ["inventory", kind] => {
            let resource = resource_of(kind).ok_or_else(ApiError::not_found)?;
            match *m {
                Method::GET => {
                    need(&access, Area::Inventory, Action::Read)?;
                    only(call, &["parent", "search", "state", "include_removed"])?;
                    let include_removed = match param(call, "include_removed") {
                        None | Some("false") => false,
                        Some("true") => true,
                        Some(_) => {
                            return Err(ApiError::unprocessable("include_removed: true or false"));
                        }
                    };
                    let q = InventoryQuery {
                        resource,
                        parent: owned(call, "parent"),
                        search: owned(call, "search"),
                        state: owned(call, "state"),
                        include_removed,
                        page: page(call)?,
                    };
                    let p = api.im.inventory(q).await?;
                    Reply::json(&PageBody::from(p, InventoryBody::from))
                }
                Method::POST => {
                    need(&access, Area::Inventory, Action::Add)?;
                    let values: BTreeMap<String, serde_json::Value> = api.body(call)?;
                    let row = api.im.add_inventory(&actor, resource, values).await?;
                    Reply::changed(StatusCode::CREATED, &InventoryBody::from(row))
                }
                _ => Err(ApiError::method("GET, POST")),
            }
        }
        ["inventory", kind, rest @ ..] => {
            let resource = resource_of(kind).ok_or_else(ApiError::not_found)?;
            let code = rest.join("/");
            rec.target = clip(&format!("{} {kind}/{code}", call.method), 200);
            match *m {
                Method::GET => {
                    need(&access, Area::Inventory, Action::Read)?;
                    only(call, &[])?;
                    let row = api.im.inventory_item(resource, &code).await?;
                    Reply::json(&InventoryBody::from(row))
                }
                Method::PATCH => {
                    need(&access, Area::Inventory, Action::Modify)?;
                    let values: BTreeMap<String, serde_json::Value> = api.body(call)?;
                    let row = api
                        .im
                        .modify_inventory(&actor, resource, &code, values)
                        .await?;
                    Reply::changed(StatusCode::OK, &InventoryBody::from(row))
                }
                Method::DELETE => {
                    need(&access, Area::Inventory, Action::Delete)?;
                    let row = api.im.remove_inventory(&actor, resource, &code).await?;
                    Reply::changed(StatusCode::OK, &InventoryBody::from(row))
                }
                _ => Err(ApiError::method("GET, PATCH, DELETE")),
            }
        }
        ["inventory-summary", kind, rest @ ..] if !rest.is_empty() => {
            if *m != Method::GET {
                return Err(ApiError::method("GET"));
            }
            need(&access, Area::Inventory, Action::Read)?;
            only(call, &[])?;
            let code = rest.join("/");
            let s = match *kind {
                "exchanges" => api.im.exchange_summary(&code).await?,
                "olts" => api.im.olt_summary(&code).await?,
                _ => return Err(ApiError::not_found()),
            };
            Reply::json(&SummaryBody::from(s))
        }
        ["sync", "runs"] => match *m {
            Method::GET => {
                need(&access, Area::Sync, Action::Read)?;
                only(call, &["system"])?;
                let system = match param(call, "system") {
                    None => None,
                    Some(s) => Some(
                        SyncSystem::parse(s)
                            .ok_or_else(|| ApiError::unprocessable("system: matrix or ematrix"))?,
                    ),
                };
                let p = api.im.sync_run_page(system, page(call)?).await?;
                Reply::json(&PageBody::from(p, SyncRunBody::from))
            }
            Method::POST => {
                need(&access, Area::Sync, Action::Add)?;
                let body: SyncStartRequest = api.body(call)?;
                let system = SyncSystem::parse(&body.system)
                    .ok_or_else(|| ApiError::unprocessable("system: matrix or ematrix"))?;
                let kind = match body.kind.as_deref().map(str::to_ascii_uppercase).as_deref() {
                    None | Some("FULL") => SyncKind::Full,
                    Some("INCREMENTAL") => SyncKind::Incremental,
                    Some(_) => return Err(ApiError::unprocessable("kind: FULL or INCREMENTAL")),
                };
                rec.target = format!("sync {} {}", system.as_str(), kind.as_str());
                let not_configured = || {
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "SYNC_NOT_CONFIGURED",
                        format!(
                            "this server has no {} source configured ([sync] in its settings); run im-sync instead",
                            system.as_str()
                        ),
                    )
                };
                let Some(starter) = api.sync.get() else {
                    return Err(not_configured());
                };
                match starter.start(system, kind, &access.account) {
                    Ok(message) => Ok(Reply {
                        status: StatusCode::ACCEPTED,
                        body: Some(super::to_json(&SyncStartedBody {
                            system: system.as_str().into(),
                            kind: kind.as_str().into(),
                            message,
                        })?),
                        logged: false,
                    }),
                    Err(super::SyncRefusal::NotConfigured) => Err(not_configured()),
                    Err(super::SyncRefusal::Busy(message)) => {
                        Err(ApiError::new(StatusCode::CONFLICT, "SYNC_BUSY", message))
                    }
                }
            }
            _ => Err(ApiError::method("GET, POST")),
        },
        ["sync", "runs", id] => match *m {
            Method::GET => {
                need(&access, Area::Sync, Action::Read)?;
                only(call, &[])?;
                let r = api.im.sync_run(id_of(id)?).await?;
                Reply::json(&SyncRunBody::from(r))
            }
            _ => Err(ApiError::method("GET")),
        },
        ["outbox"] => match *m {
            Method::GET => {
                need(&access, Area::Tasks, Action::Read)?;
                only(call, &["state"])?;
                let state = match param(call, "state") {
                    None => None,
                    Some(s) => Some(CommandState::parse(s).ok_or_else(|| {
                        ApiError::unprocessable("state: PENDING, DELIVERED, FAILED or DROPPED")
                    })?),
                };
                let p = api.im.outbox(state, page(call)?).await?;
                Reply::json(&PageBody::from(p, OutboxBody::from))
            }
            _ => Err(ApiError::method("GET")),
        },
        ["outbox", id, "redo"] => {
            if *m != Method::POST {
                return Err(ApiError::method("POST"));
            }
            rec.action = OpAction::Modify;
            need(&access, Area::Tasks, Action::Modify)?;
            let body: ReasonRequest = api.body(call)?;
            let (task_no, state) = api
                .im
                .redrive_command(&actor, id_of(id)?, &body.reason)
                .await?;
            Reply::changed(
                StatusCode::OK,
                &TaskStateBody {
                    task_no,
                    state: state.as_str().into(),
                },
            )
        }
        ["users"] => match *m {
            Method::GET => {
                need(&access, Area::Users, Action::Read)?;
                only(call, &[])?;
                let p = api.im.users(page(call)?).await?;
                Reply::json(&PageBody::from(p, UserBody::from))
            }
            Method::POST => {
                need(&access, Area::Users, Action::Add)?;
                let body: NewUserRequest = api.body(call)?;
                let mode = AuthMode::parse(&body.mode)
                    .ok_or_else(|| ApiError::unprocessable("mode: LOCAL or AD"))?;
                rec.target = clip(&format!("POST users/{}", body.login), 200);
                let user = api
                    .im
                    .create_user(
                        &actor,
                        NewUser {
                            login: body.login,
                            display_name: body.display_name,
                            mode,
                            password: body.password,
                            roles: body.roles,
                            organisation: body.organisation,
                        },
                    )
                    .await?;
                Reply::changed(StatusCode::CREATED, &UserBody::from(user))
            }
            _ => Err(ApiError::method("GET, POST")),
        },
        ["users", login] => match *m {
            Method::GET => {
                need(&access, Area::Users, Action::Read)?;
                only(call, &[])?;
                Reply::json(&UserBody::from(api.im.user(login).await?))
            }
            _ => Err(ApiError::method("GET")),
        },
        ["users", login, "roles"] => {
            if *m != Method::PUT {
                return Err(ApiError::method("PUT"));
            }
            need(&access, Area::Users, Action::Modify)?;
            let body: RolesRequest = api.body(call)?;
            let user = api.im.set_user_roles(&actor, login, &body.roles).await;
            api.basic.clear();
            Reply::changed(StatusCode::OK, &UserBody::from(user?))
        }
        ["users", login, verb @ ("enable" | "disable")] => {
            if *m != Method::POST {
                return Err(ApiError::method("POST"));
            }
            rec.action = OpAction::Modify;
            need(&access, Area::Users, Action::Modify)?;
            let enabled = *verb == "enable";
            let user = api.im.set_user_enabled(&actor, login, enabled).await;
            api.basic.clear();
            if !enabled {
                api.sessions.close_all_of(login);
            }
            Reply::changed(StatusCode::OK, &UserBody::from(user?))
        }
        ["users", login, "password"] => {
            if *m != Method::POST {
                return Err(ApiError::method("POST"));
            }
            rec.action = OpAction::Modify;
            need(&access, Area::Users, Action::Modify)?;
            let body: PasswordRequest = api.body(call)?;
            let r = api
                .im
                .reset_user_password(&actor, login, &body.password)
                .await;
            api.basic.clear();
            r?;
            Ok(Reply {
                logged: true,
                ..Reply::empty()
            })
        }
        ["roles"] => match *m {
            Method::GET => {
                need(&access, Area::Users, Action::Read)?;
                only(call, &[])?;
                let roles: Vec<RoleBody> =
                    api.im.roles().await?.into_iter().map(Into::into).collect();
                Reply::json(&roles)
            }
            Method::POST => {
                need(&access, Area::Users, Action::Add)?;
                let body: RoleBody = api.body(call)?;
                let role = role_of(body)?;
                let created = api.im.create_role(&actor, role).await?;
                Reply::changed(StatusCode::CREATED, &RoleBody::from(created))
            }
            _ => Err(ApiError::method("GET, POST")),
        },
        ["organisations"] => match *m {
            Method::GET => {
                need(&access, Area::Users, Action::Read)?;
                only(call, &[])?;
                let orgs: Vec<OrganisationBody> = api
                    .im
                    .organisations()
                    .await?
                    .into_iter()
                    .map(Into::into)
                    .collect();
                Reply::json(&orgs)
            }
            Method::POST => {
                need(&access, Area::Users, Action::Add)?;
                let body: OrganisationBody = api.body(call)?;
                let o = api
                    .im
                    .create_organisation(&actor, &body.code, &body.name)
                    .await?;
                Reply::changed(StatusCode::CREATED, &OrganisationBody::from(o))
            }
            _ => Err(ApiError::method("GET, POST")),
        },
        ["logs", which @ ("operations" | "resources" | "logins")] => {
            if *m != Method::GET {
                // The logs are append-only: nothing edits or deletes them.
                return Err(ApiError::method("GET"));
            }
            need(&access, Area::Logs, Action::Read)?;
            only(call, &["account", "type", "ip", "from", "to"])?;
            let filter = LogFilter {
                account: owned(call, "account"),
                kind: owned(call, "type"),
                ip: owned(call, "ip"),
                from: owned(call, "from"),
                to: owned(call, "to"),
                page: page(call)?,
            };
            match *which {
                "operations" => {
                    let p = api.im.operation_log(filter).await?;
                    Reply::json(&PageBody::from(p, OperationBody::from))
                }
                "resources" => {
                    let p = api.im.resource_log(filter).await?;
                    Reply::json(&PageBody::from(p, ResourceLogBody::from))
                }
                _ => {
                    let p = api.im.login_log_page(filter).await?;
                    Reply::json(&PageBody::from(p, LoginLogBody::from))
                }
            }
        }
        _ => Err(ApiError::not_found()),
    }
}

/// A role from its wire form: unknown areas, actions or values are refused
/// (stored roles tolerate them; a new one is written exactly).
fn role_of(body: RoleBody) -> Result<Role, ApiError> {
    let mut permissions = Permissions::none();
    for (area, actions) in &body.permissions {
        let a = Area::parse(area).ok_or_else(|| {
            ApiError::unprocessable(format!(
                "permissions: unknown area {:?} (inventory, services, tasks, sync, users, logs)",
                clip(area, 40)
            ))
        })?;
        for x in actions {
            let x = Action::parse(x).ok_or_else(|| {
                ApiError::unprocessable(format!(
                    "permissions: unknown action {:?} (read, add, modify, delete)",
                    clip(x, 40)
                ))
            })?;
            permissions.grant(a, x);
        }
    }
    let mut visible = std::collections::BTreeSet::new();
    for v in &body.visible_protected {
        visible.insert(ProtectedValue::parse(v).ok_or_else(|| {
            ApiError::unprocessable(format!(
                "visible_protected: unknown value {:?} (Mobile, Email, IPTVPassword, Password)",
                clip(v, 40)
            ))
        })?);
    }
    Ok(Role {
        code: body.code,
        name: body.name,
        om_interface: body.om_interface,
        permissions,
        visible,
    })
}
