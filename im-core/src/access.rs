//! The access model (spec auth-and-config.md, "Users, roles,
//! organisations"): what a role may read or change, per area and action,
//! whether it may call the OM interface, and which protected values it sees
//! in clear. A principal's access is the union of its roles'.
//!
//! Roles keep their permissions in the `role` table as JSON
//! (`{"inventory":["read","modify"], …}`) and their visible values as a JSON
//! array (`["Mobile","Email"]`); unknown areas, actions and values are
//! ignored on reading, so that an older IM reads a newer database's roles.
//! The server enforces the checks per route; this module holds their data.

use crate::Im;
use crate::operator::OpError;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// What shows instead of a protected value the caller may not see.
pub const MASK: &str = "******";

/// An area of IM an operator may read or change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Area {
    /// Space and physical inventory.
    Inventory,
    /// Customers and services.
    Services,
    /// Tasks (work orders) and the AM outbox.
    Tasks,
    /// Inventory sync runs.
    Sync,
    /// Users, roles and organisations.
    Users,
    /// The audit logs.
    Logs,
}

impl Area {
    /// Every area.
    pub const ALL: [Area; 6] = [
        Area::Inventory,
        Area::Services,
        Area::Tasks,
        Area::Sync,
        Area::Users,
        Area::Logs,
    ];

    /// `inventory`, `services`, `tasks`, `sync`, `users`, `logs`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Area::Inventory => "inventory",
            Area::Services => "services",
            Area::Tasks => "tasks",
            Area::Sync => "sync",
            Area::Users => "users",
            Area::Logs => "logs",
        }
    }

    /// Parses an area name (any case).
    pub fn parse(s: &str) -> Option<Area> {
        Area::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

impl fmt::Display for Area {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an operator does in an area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// See.
    Read,
    /// Create.
    Add,
    /// Change (for tasks: redo, cancel, force-finish).
    Modify,
    /// Remove (soft) or disable.
    Delete,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 4] = [Action::Read, Action::Add, Action::Modify, Action::Delete];

    /// `read`, `add`, `modify`, `delete`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Add => "add",
            Action::Modify => "modify",
            Action::Delete => "delete",
        }
    }

    /// Parses an action name (any case).
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A protected value (encrypted at rest, shown only to roles allowed to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtectedValue {
    /// The customer's mobile number.
    Mobile,
    /// The customer's e-mail address.
    Email,
    /// The IPTV password.
    IptvPassword,
    /// The PPPoE password.
    Password,
}

impl ProtectedValue {
    /// Every protected value.
    pub const ALL: [ProtectedValue; 4] = [
        ProtectedValue::Mobile,
        ProtectedValue::Email,
        ProtectedValue::IptvPassword,
        ProtectedValue::Password,
    ];

    /// The field name of the contract: `Mobile`, `Email`, `IPTVPassword`, `Password`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProtectedValue::Mobile => "Mobile",
            ProtectedValue::Email => "Email",
            ProtectedValue::IptvPassword => "IPTVPassword",
            ProtectedValue::Password => "Password",
        }
    }

    /// Parses a field name as the contract compares them (case, `_`, `-`
    /// and spaces ignored).
    pub fn parse(s: &str) -> Option<ProtectedValue> {
        ProtectedValue::ALL
            .into_iter()
            .find(|p| crate::names::same(p.as_str(), s))
    }
}

/// Which actions a role may take in which areas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions(BTreeSet<(Area, Action)>);

impl Permissions {
    /// No permission at all.
    pub fn none() -> Permissions {
        Permissions::default()
    }

    /// Every action in every area.
    pub fn all() -> Permissions {
        let mut p = Permissions::none();
        for a in Area::ALL {
            for x in Action::ALL {
                p.grant(a, x);
            }
        }
        p
    }

    /// Adds one permission.
    pub fn grant(&mut self, area: Area, action: Action) -> &mut Permissions {
        self.0.insert((area, action));
        self
    }

    /// Whether `action` in `area` is allowed.
    pub fn allows(&self, area: Area, action: Action) -> bool {
        self.0.contains(&(area, action))
    }

    /// Every permission, in order.
    pub fn iter(&self) -> impl Iterator<Item = (Area, Action)> + '_ {
        self.0.iter().copied()
    }

    /// The union with `other`.
    pub fn extend(&mut self, other: &Permissions) {
        self.0.extend(other.0.iter().copied());
    }

    /// Reads the stored JSON (`{"area":["action",…],…}`); unknown areas,
    /// actions and anything that is not such an object are ignored.
    ///
    /// ```
    /// use im_core::access::{Action, Area, Permissions};
    /// let p = Permissions::from_json(r#"{"tasks":["read","modify","fly"],"moon":["read"]}"#);
    /// assert!(p.allows(Area::Tasks, Action::Modify));
    /// assert!(!p.allows(Area::Tasks, Action::Delete));
    /// assert_eq!(p.iter().count(), 2);
    /// ```
    pub fn from_json(text: &str) -> Permissions {
        let mut p = Permissions::none();
        let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text)
        else {
            return p;
        };
        for (area, actions) in map {
            let (Some(area), Some(list)) = (Area::parse(&area), actions.as_array()) else {
                continue;
            };
            for a in list
                .iter()
                .filter_map(|v| v.as_str())
                .filter_map(Action::parse)
            {
                p.grant(area, a);
            }
        }
        p
    }

    /// The stored JSON form (areas and actions in order).
    pub fn to_json(&self) -> String {
        let mut map: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (area, action) in self.iter() {
            map.entry(area.as_str()).or_default().push(action.as_str());
        }
        serde_json::to_string(&map).unwrap_or_else(|_| "{}".into())
    }
}

/// Reads a stored `visible_protected` array (unknown names ignored).
pub fn visible_from_json(text: &str) -> BTreeSet<ProtectedValue> {
    serde_json::from_str::<Vec<serde_json::Value>>(text)
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str())
        .filter_map(ProtectedValue::parse)
        .collect()
}

/// The stored form of visible values.
pub fn visible_to_json(v: &BTreeSet<ProtectedValue>) -> String {
    let names: Vec<&str> = v.iter().map(|p| p.as_str()).collect();
    serde_json::to_string(&names).unwrap_or_else(|_| "[]".into())
}

/// A role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// Code (`ROLE_TECH_L1`), unique, case-insensitive.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Whether it may call the OM interface (SOAP).
    pub om_interface: bool,
    /// What it may read and change.
    pub permissions: Permissions,
    /// The protected values it sees in clear.
    pub visible: BTreeSet<ProtectedValue>,
}

/// What one principal may do: the union of its roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The account's login as stored.
    pub account: String,
    /// Its role codes, sorted.
    pub roles: Vec<String>,
    /// The union of the roles' permissions.
    pub permissions: Permissions,
    /// Whether any role allows the OM interface.
    pub om_interface: bool,
    /// The union of the roles' visible values.
    pub visible: BTreeSet<ProtectedValue>,
}

impl Access {
    /// The union of `roles` for `account`.
    ///
    /// ```
    /// use im_core::access::*;
    /// let mut p = Permissions::none();
    /// p.grant(Area::Tasks, Action::Read);
    /// let viewer = Role { code: "V".into(), name: "v".into(), om_interface: false,
    ///     permissions: p, visible: Default::default() };
    /// let mut q = Permissions::none();
    /// q.grant(Area::Tasks, Action::Modify);
    /// let fixer = Role { code: "F".into(), name: "f".into(), om_interface: false,
    ///     permissions: q, visible: [ProtectedValue::Mobile].into() };
    /// let a = Access::of("ops1", &[viewer, fixer]);
    /// assert!(a.allows(Area::Tasks, Action::Read) && a.allows(Area::Tasks, Action::Modify));
    /// assert!(!a.allows(Area::Users, Action::Read));
    /// assert_eq!(a.reveal(ProtectedValue::Mobile, Some("0100".into())).as_deref(), Some("0100"));
    /// assert_eq!(a.reveal(ProtectedValue::Email, Some("a@b".into())).as_deref(), Some(MASK));
    /// ```
    pub fn of(account: &str, roles: &[Role]) -> Access {
        let mut permissions = Permissions::none();
        let mut visible = BTreeSet::new();
        let mut om_interface = false;
        let mut codes: Vec<String> = Vec::with_capacity(roles.len());
        for r in roles {
            permissions.extend(&r.permissions);
            visible.extend(r.visible.iter().copied());
            om_interface |= r.om_interface;
            codes.push(r.code.clone());
        }
        codes.sort();
        Access {
            account: account.to_string(),
            roles: codes,
            permissions,
            om_interface,
            visible,
        }
    }

    /// Whether `action` in `area` is allowed.
    pub fn allows(&self, area: Area, action: Action) -> bool {
        self.permissions.allows(area, action)
    }

    /// Whether `value` is shown in clear.
    pub fn sees(&self, value: ProtectedValue) -> bool {
        self.visible.contains(&value)
    }

    /// `clear` when this access sees `value`, [`MASK`] otherwise (`None`
    /// stays `None`: there is nothing to hide).
    pub fn reveal(&self, value: ProtectedValue, clear: Option<String>) -> Option<String> {
        match clear {
            Some(v) if self.sees(value) => Some(v),
            Some(_) => Some(MASK.to_string()),
            None => None,
        }
    }
}

impl Im {
    /// What the enabled account `login` may do, or `None` when there is no
    /// such account or it is disabled (a session of a disabled account ends
    /// at its next call).
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub async fn access(&self, login: &str) -> Result<Option<Access>, OpError> {
        let login = login.trim().to_string();
        self.on_sqlite_reader(move |conn| crate::store::sqlite::access::access_of(conn, &login))
            .await
    }

    /// Every role, by code.
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub async fn roles(&self) -> Result<Vec<Role>, OpError> {
        self.on_sqlite_reader(crate::store::sqlite::access::roles)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(code: &str, perms: &str, visible: &str) -> Role {
        Role {
            code: code.into(),
            name: code.into(),
            om_interface: false,
            permissions: Permissions::from_json(perms),
            visible: visible_from_json(visible),
        }
    }

    #[test]
    fn the_union_of_roles() {
        let viewer = role(
            "ROLE_VIEWER",
            r#"{"tasks":["read"],"inventory":["read"]}"#,
            "[]",
        );
        let l1 = role(
            "ROLE_TECH_L1",
            r#"{"tasks":["read","modify"]}"#,
            r#"["Mobile"]"#,
        );
        let v = Access::of("x", std::slice::from_ref(&viewer));
        assert!(!v.allows(Area::Tasks, Action::Modify));
        let both = Access::of("x", &[l1, viewer]);
        assert!(both.allows(Area::Tasks, Action::Modify));
        assert!(both.allows(Area::Inventory, Action::Read));
        assert!(!both.allows(Area::Inventory, Action::Modify));
        assert!(!both.allows(Area::Users, Action::Read));
        assert_eq!(both.roles, vec!["ROLE_TECH_L1", "ROLE_VIEWER"]);
        assert!(both.sees(ProtectedValue::Mobile));
        assert!(!both.sees(ProtectedValue::Password));
        let nobody = Access::of("x", &[]);
        assert!(Area::ALL.iter().all(|a| !nobody.allows(*a, Action::Read)));
    }

    #[test]
    fn masking() {
        let v = Access::of("x", &[role("V", "{}", r#"["IPTVPassword"]"#)]);
        assert_eq!(
            v.reveal(ProtectedValue::Password, Some("pw".into()))
                .as_deref(),
            Some(MASK)
        );
        assert_eq!(
            v.reveal(ProtectedValue::IptvPassword, Some("tv".into()))
                .as_deref(),
            Some("tv")
        );
        assert_eq!(v.reveal(ProtectedValue::Password, None), None);
    }

    #[test]
    fn stored_forms_round_trip_and_tolerate_junk() {
        let all = Permissions::all();
        assert_eq!(Permissions::from_json(&all.to_json()), all);
        assert_eq!(Permissions::from_json("not json"), Permissions::none());
        assert_eq!(Permissions::from_json("[1,2]"), Permissions::none());
        assert_eq!(
            Permissions::from_json(r#"{"tasks":"read"}"#),
            Permissions::none()
        );
        let v = visible_from_json(r#"["iptv_password","Mobile","Shoe",3]"#);
        assert_eq!(
            v,
            [ProtectedValue::IptvPassword, ProtectedValue::Mobile].into()
        );
        assert_eq!(visible_from_json(&visible_to_json(&v)), v);
        assert_eq!(visible_from_json("{}"), BTreeSet::new());
    }
}
