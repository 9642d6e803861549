//! SOAP 1.1 Faults: the answer (HTTP 500) for a request that is not a
//! usable SOAP 1.1 envelope of this operation, or for an internal failure
//! outside any work order. A Fault never carries internal details.

use crate::envelope::SOAP11_NS;
use crate::xml;
use std::fmt;

/// The SOAP 1.1 fault codes this service uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultCode {
    /// The Envelope is not in the SOAP 1.1 namespace.
    VersionMismatch,
    /// A header marked `mustUnderstand` is not understood.
    MustUnderstand,
    /// The request is not usable (not XML, DTD, limits, no Body, …).
    Client,
    /// An internal failure outside any work order.
    Server,
}

impl FaultCode {
    /// The local part of the `faultcode` QName.
    pub const fn as_str(self) -> &'static str {
        match self {
            FaultCode::VersionMismatch => "VersionMismatch",
            FaultCode::MustUnderstand => "MustUnderstand",
            FaultCode::Client => "Client",
            FaultCode::Server => "Server",
        }
    }

    /// Reads the local part of a `faultcode` (`soapenv:Client.Auth` → `Client`).
    pub fn parse(qname: &str) -> Option<FaultCode> {
        let local = qname.rsplit(':').next().unwrap_or(qname);
        let head = local.split('.').next().unwrap_or(local);
        [
            FaultCode::VersionMismatch,
            FaultCode::MustUnderstand,
            FaultCode::Client,
            FaultCode::Server,
        ]
        .into_iter()
        .find(|c| c.as_str() == head.trim())
    }
}

impl fmt::Display for FaultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SOAP 1.1 Fault: a code and a human-readable `faultstring`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SOAP Fault {code}: {string}")]
pub struct Fault {
    /// `faultcode`.
    pub code: FaultCode,
    /// `faultstring`: what was wrong with the request, never internals.
    pub string: String,
}

impl Fault {
    /// A Fault with a code and a text.
    pub fn new(code: FaultCode, string: impl Into<String>) -> Fault {
        Fault {
            code,
            string: string.into(),
        }
    }

    /// A `Client` Fault.
    pub fn client(string: impl Into<String>) -> Fault {
        Fault::new(FaultCode::Client, string)
    }

    /// The `Server` Fault for an internal failure (generic text only).
    pub fn server() -> Fault {
        Fault::new(
            FaultCode::Server,
            "internal error; nothing was stored, retry later",
        )
    }

    /// The Fault as a SOAP 1.1 envelope: UTF-8 declared, plain ASCII bytes.
    ///
    /// ```
    /// let f = im_soap::fault::Fault::client("bad <input>");
    /// let xml = f.to_xml();
    /// assert!(xml.contains("<faultcode>soapenv:Client</faultcode>"));
    /// assert!(xml.contains("bad &lt;input&gt;"));
    /// ```
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(320 + self.string.len());
        out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        out.push_str(r#"<soapenv:Envelope xmlns:soapenv=""#);
        out.push_str(SOAP11_NS);
        out.push_str(r#""><soapenv:Body><soapenv:Fault><faultcode>soapenv:"#);
        out.push_str(self.code.as_str());
        out.push_str("</faultcode><faultstring>");
        xml::push_text_ascii(&mut out, &self.string);
        out.push_str("</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_round_trips_and_is_ascii() {
        let f = Fault::new(FaultCode::MustUnderstand, "header م");
        let x = f.to_xml();
        assert!(x.is_ascii());
        let doc = roxmltree::Document::parse(&x).expect("well-formed");
        let code = doc
            .descendants()
            .find(|n| n.has_tag_name("faultcode"))
            .and_then(|n| n.text())
            .expect("faultcode");
        assert_eq!(FaultCode::parse(code), Some(FaultCode::MustUnderstand));
        let s = doc
            .descendants()
            .find(|n| n.has_tag_name("faultstring"))
            .and_then(|n| n.text())
            .expect("faultstring");
        assert_eq!(s, "header م");
        assert_eq!(
            FaultCode::parse("soapenv:Server.userException"),
            Some(FaultCode::Server)
        );
        assert_eq!(FaultCode::parse("x"), None);
    }
}
