//! The domain vocabulary: enumerations of the contract and of the inventory,
//! and the inventory snapshot types.

mod inventory;

pub use inventory::*;

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $wire:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* #[doc = concat!("`", $wire, "` on the wire.")] $var),+ }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$var),+];

            /// The contract's spelling.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$var => $wire),+ }
            }

            /// Reads a value tolerantly: case, spaces, `_` and `-` are ignored.
            pub fn parse(s: &str) -> Option<$name> {
                // Fast path: the exact spelling (what the store holds).
                if let Some(v) = $name::ALL.iter().copied().find(|v| v.as_str() == s) {
                    return Some(v);
                }
                $name::ALL.iter().copied().find(|v| crate::names::same(v.as_str(), s))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// What a work-order item does.
    OperType { Install = "Install", Modify = "Modify", Delete = "Delete", Query = "Query" }
);

wire_enum!(
    /// Access technology of a service (`coverType`).
    CoverType { Adsl = "ADSL", Vdsl = "VDSL", Ftth = "FTTH" }
);

wire_enum!(
    /// The service of an item: a broadband service or an add-on riding on one.
    ServiceType {
        /// ADSL broadband.
        Adsl = "ADSL",
        /// VDSL broadband.
        Vdsl = "VDSL",
        /// FTTH broadband.
        Ftth = "FTTH",
        /// IPTV add-on (FTTH only).
        Iptv = "IPTV",
        /// IP-Phone add-on (FTTH only).
        IpPhone = "IP-Phone",
        /// Option pack add-on (any cover).
        OptionPack = "OptionPack",
        /// Domain / e-mail add-on (any cover).
        DomainEmail = "Domain/Email",
    }
);

impl ServiceType {
    /// The broadband service of a cover type.
    pub const fn broadband(cover: CoverType) -> ServiceType {
        match cover {
            CoverType::Adsl => ServiceType::Adsl,
            CoverType::Vdsl => ServiceType::Vdsl,
            CoverType::Ftth => ServiceType::Ftth,
        }
    }

    /// Whether this is a broadband service (not an add-on).
    pub const fn is_broadband(self) -> bool {
        matches!(
            self,
            ServiceType::Adsl | ServiceType::Vdsl | ServiceType::Ftth
        )
    }

    /// Whether this service may ride on (or be) the given cover type.
    pub const fn fits_cover(self, cover: CoverType) -> bool {
        match self {
            ServiceType::Adsl => matches!(cover, CoverType::Adsl),
            ServiceType::Vdsl => matches!(cover, CoverType::Vdsl),
            ServiceType::Ftth | ServiceType::Iptv | ServiceType::IpPhone => {
                matches!(cover, CoverType::Ftth)
            }
            ServiceType::OptionPack | ServiceType::DomainEmail => true,
        }
    }

    /// The VLAN purpose this service takes by default, if it uses a VLAN.
    pub const fn vlan_purpose(self) -> Option<VlanPurpose> {
        match self {
            ServiceType::Ftth => Some(VlanPurpose::Internet),
            ServiceType::Iptv => Some(VlanPurpose::Iptv),
            ServiceType::IpPhone => Some(VlanPurpose::Voice),
            _ => None,
        }
    }
}

wire_enum!(
    /// The two inventory domains, each with its own sector/zone map.
    Domain { Adsl = "ADSL", Ftth = "FTTH" }
);

wire_enum!(
    /// Physical state of a resource as its source system reports it.
    SourceState { Available = "AVAILABLE", Occupied = "OCCUPIED", Faulty = "FAULTY" }
);

wire_enum!(
    /// Which services a DSLAM carries.
    Technology { Adsl = "ADSL", Vdsl = "VDSL", AdslVdsl = "ADSL+VDSL" }
);

impl Technology {
    /// Whether a DSLAM of this technology carries a service of that cover.
    pub const fn carries(self, cover: CoverType) -> bool {
        matches!(
            (self, cover),
            (Technology::AdslVdsl, CoverType::Adsl | CoverType::Vdsl)
                | (Technology::Adsl, CoverType::Adsl)
                | (Technology::Vdsl, CoverType::Vdsl)
        )
    }
}

wire_enum!(
    /// What a VLAN is for.
    VlanPurpose { Internet = "INTERNET", Voice = "VOICE", Iptv = "IPTV", Mgmt = "MGMT" }
);

wire_enum!(
    /// IM-owned usage of a port.
    Usage { Free = "FREE", InService = "IN_SERVICE" }
);

wire_enum!(
    /// State of a service.
    ServiceState { Active = "ACTIVE", Inactive = "INACTIVE" }
);

wire_enum!(
    /// State of a task (work order).
    TaskState {
        /// Accepted from OM, no command sent yet.
        Received = "RECEIVED",
        /// At least one command sent to AM.
        Activating = "ACTIVATING",
        /// All commands delivered (or force-finished).
        Completed = "COMPLETED",
        /// A command was rejected or ran out of retries.
        Failed = "FAILED",
        /// Cancelled by an operator.
        Cancelled = "CANCELLED",
    }
);

impl TaskState {
    /// Whether the state machine allows going from `self` to `to`.
    ///
    /// ```
    /// use im_core::model::TaskState::*;
    /// assert!(Received.can_become(Activating));
    /// assert!(Failed.can_become(Activating)); // an operator's redo
    /// assert!(!Completed.can_become(Received));
    /// ```
    pub const fn can_become(self, to: TaskState) -> bool {
        use TaskState::*;
        matches!(
            (self, to),
            (Received, Activating)
                | (Received, Completed)
                | (Received, Failed)
                | (Received, Cancelled)
                | (Activating, Completed)
                | (Activating, Failed)
                | (Activating, Cancelled)
                | (Failed, Activating)
                | (Failed, Cancelled)
                | (Failed, Completed)
        )
    }

    /// Whether no further automatic change happens in this state.
    pub const fn is_final(self) -> bool {
        matches!(self, TaskState::Completed | TaskState::Cancelled)
    }
}

wire_enum!(
    /// Type of an activation command for AM.
    CommandType { Activate = "ACTIVATE", Modify = "MODIFY", Deactivate = "DEACTIVATE" }
);

wire_enum!(
    /// Delivery state of an outbox command.
    CommandState {
        /// Waiting to be sent (or between retries).
        Pending = "PENDING",
        /// AM answered OK or DUPLICATE.
        Delivered = "DELIVERED",
        /// AM rejected it, or retries ran out.
        Failed = "FAILED",
        /// Dropped by an operator's cancel or force-finish.
        Dropped = "DROPPED",
    }
);

impl CommandType {
    /// The command an opertype gives (`None` for Query).
    pub const fn for_oper(op: OperType) -> Option<CommandType> {
        match op {
            OperType::Install => Some(CommandType::Activate),
            OperType::Modify => Some(CommandType::Modify),
            OperType::Delete => Some(CommandType::Deactivate),
            OperType::Query => None,
        }
    }
}
