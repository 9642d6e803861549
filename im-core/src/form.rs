//! The typed form: what the SOAP layer hands to intake after parsing the
//! `<form>` document. It carries names and values exactly as OM wrote them
//! (after entity decoding); every rule about them lives in intake.

/// One named value of a form or of a `bussItem`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The name as written (`ExchangeID`, `ont_sn`, …).
    pub name: String,
    /// The value as written (intake trims it).
    pub value: String,
}

impl Field {
    /// A field from a name and a value.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Field {
        Field {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// One `bussItem`: its direct fields and its `attrList` entries, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormItem {
    /// Fields written directly in the `bussItem`.
    pub fields: Vec<Field>,
    /// Entries of its `attrList`, whatever their shape on the wire.
    pub attrs: Vec<Field>,
}

impl FormItem {
    /// Adds a direct field (builder style).
    pub fn field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.push(Field::new(name, value));
        self
    }

    /// Adds an `attrList` entry (builder style).
    pub fn attr(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attrs.push(Field::new(name, value));
        self
    }
}

/// A parsed `<form>`: form-level fields (`authusername`, `authpassword`,
/// `flowId`, `popid`, and anything else) and the `bussItem`s of `bussInfo`.
///
/// ```
/// use im_core::{Form, FormItem};
/// let form = Form::default()
///     .field("authusername", "OM_webservice")
///     .field("flowId", "F1")
///     .item(FormItem::default().field("opertype", "Query").field("UserName", "u1"));
/// assert_eq!(form.items.len(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    /// Form-level fields, in document order.
    pub fields: Vec<Field>,
    /// Whether a `bussInfo` element was present at all.
    pub buss_info_present: bool,
    /// The `bussItem`s, in order.
    pub items: Vec<FormItem>,
}

impl Form {
    /// Adds a form-level field (builder style).
    pub fn field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.push(Field::new(name, value));
        self
    }

    /// Adds a `bussItem` (builder style); marks `bussInfo` present.
    pub fn item(mut self, item: FormItem) -> Self {
        self.buss_info_present = true;
        self.items.push(item);
        self
    }

    /// The trimmed value of the first non-empty form-level field named `name`
    /// (compared by [`crate::names::same`]), or `""`.
    pub fn get(&self, name: &str) -> &str {
        self.fields
            .iter()
            .filter(|f| crate::names::same(&f.name, name))
            .map(|f| f.value.trim())
            .find(|v| !v.is_empty())
            .unwrap_or("")
    }
}
