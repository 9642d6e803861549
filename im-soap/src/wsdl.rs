//! The WSDL 1.1 document served on `GET /services/EgyptWorkSheetAll?wsdl`:
//! document/literal wrapped, one operation, a string `in0` in and a string
//! out named per the server setting, in the service namespace.

use crate::envelope::SERVICE_NS;
use crate::result_xml::ReturnElement;
use crate::xml;

/// The path of the service.
pub const SERVICE_PATH: &str = "/services/EgyptWorkSheetAll";

/// Writes the WSDL with `address` (e.g. `http://host:8080/services/EgyptWorkSheetAll`)
/// as the `soap:address` and `element` as the return element's name.
///
/// ```
/// use im_soap::{wsdl::wsdl, ReturnElement};
/// let w = wsdl("http://127.0.0.1:8080/services/EgyptWorkSheetAll", ReturnElement::Out);
/// assert!(w.contains(r#"<xsd:element name="out" type="xsd:string" nillable="true"/>"#));
/// ```
pub fn wsdl(address: &str, element: ReturnElement) -> String {
    let mut addr = String::new();
    xml::push_attr_ascii(&mut addr, address);
    let ret = element.as_str();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions name="EgyptWorkSheetAll"
    targetNamespace="{SERVICE_NS}"
    xmlns:tns="{SERVICE_NS}"
    xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:xsd="http://www.w3.org/2001/XMLSchema">
  <wsdl:documentation>IM work-order interface (OM to IM). in0 carries the whole form document as a string (CDATA or escaped); the return value is the result document as a string.</wsdl:documentation>
  <wsdl:types>
    <xsd:schema targetNamespace="{SERVICE_NS}" elementFormDefault="qualified">
      <xsd:element name="EgyptWorkSheetAll">
        <xsd:complexType>
          <xsd:sequence>
            <xsd:element name="in0" type="xsd:string" nillable="true"/>
          </xsd:sequence>
        </xsd:complexType>
      </xsd:element>
      <xsd:element name="EgyptWorkSheetAllResponse">
        <xsd:complexType>
          <xsd:sequence>
            <xsd:element name="{ret}" type="xsd:string" nillable="true"/>
          </xsd:sequence>
        </xsd:complexType>
      </xsd:element>
    </xsd:schema>
  </wsdl:types>
  <wsdl:message name="EgyptWorkSheetAllRequest">
    <wsdl:part name="parameters" element="tns:EgyptWorkSheetAll"/>
  </wsdl:message>
  <wsdl:message name="EgyptWorkSheetAllResponse">
    <wsdl:part name="parameters" element="tns:EgyptWorkSheetAllResponse"/>
  </wsdl:message>
  <wsdl:portType name="EgyptWorkSheetAllPortType">
    <wsdl:operation name="EgyptWorkSheetAll">
      <wsdl:input name="EgyptWorkSheetAllRequest" message="tns:EgyptWorkSheetAllRequest"/>
      <wsdl:output name="EgyptWorkSheetAllResponse" message="tns:EgyptWorkSheetAllResponse"/>
    </wsdl:operation>
  </wsdl:portType>
  <wsdl:binding name="EgyptWorkSheetAllHttpBinding" type="tns:EgyptWorkSheetAllPortType">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="EgyptWorkSheetAll">
      <soap:operation soapAction="" style="document"/>
      <wsdl:input name="EgyptWorkSheetAllRequest"><soap:body use="literal"/></wsdl:input>
      <wsdl:output name="EgyptWorkSheetAllResponse"><soap:body use="literal"/></wsdl:output>
    </wsdl:operation>
  </wsdl:binding>
  <wsdl:service name="EgyptWorkSheetAll">
    <wsdl:port name="EgyptWorkSheetAllHttpPort" binding="tns:EgyptWorkSheetAllHttpBinding">
      <soap:address location="{addr}"/>
    </wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"#
    )
}

/// The service address for a request: the configured public URL (its
/// path replaced by the service path) or `http://` + the `Host` header.
/// A Host that is not a plausible `host[:port]` is replaced by `fallback`.
///
/// ```
/// use im_soap::wsdl::service_address;
/// assert_eq!(service_address(None, Some("im.example:8080"), "127.0.0.1:1"),
///            "http://im.example:8080/services/EgyptWorkSheetAll");
/// assert_eq!(service_address(Some("https://im.example/"), None, "127.0.0.1:1"),
///            "https://im.example/services/EgyptWorkSheetAll");
/// ```
pub fn service_address(public_url: Option<&str>, host: Option<&str>, fallback: &str) -> String {
    if let Some(url) = public_url {
        let url = url.trim().trim_end_matches('/');
        let base = url
            .strip_suffix(SERVICE_PATH)
            .unwrap_or(url)
            .trim_end_matches('/');
        return format!("{base}{SERVICE_PATH}");
    }
    let host = host
        .map(str::trim)
        .filter(|h| is_plausible_host(h))
        .unwrap_or(fallback);
    format!("http://{host}{SERVICE_PATH}")
}

fn is_plausible_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wsdl_is_well_formed_and_follows_the_setting() {
        for el in [ReturnElement::Out, ReturnElement::AxisReturn] {
            let w = wsdl("http://h:1/services/EgyptWorkSheetAll?a&b", el);
            let doc = roxmltree::Document::parse(&w).expect("well-formed");
            let names: Vec<&str> = doc
                .descendants()
                .filter(|n| n.has_tag_name(("http://www.w3.org/2001/XMLSchema", "element")))
                .filter_map(|n| n.attribute("name"))
                .collect();
            assert_eq!(
                names,
                [
                    "EgyptWorkSheetAll",
                    "in0",
                    "EgyptWorkSheetAllResponse",
                    el.as_str()
                ]
            );
            let loc = doc
                .descendants()
                .find(|n| n.tag_name().name() == "address")
                .and_then(|n| n.attribute("location"));
            assert_eq!(loc, Some("http://h:1/services/EgyptWorkSheetAll?a&b"));
        }
    }

    #[test]
    fn hostile_host_headers_are_not_echoed() {
        assert_eq!(
            service_address(None, Some("\"/><evil"), "127.0.0.1:8080"),
            "http://127.0.0.1:8080/services/EgyptWorkSheetAll"
        );
        assert_eq!(
            service_address(Some("http://x/services/EgyptWorkSheetAll"), Some("y"), "z"),
            "http://x/services/EgyptWorkSheetAll"
        );
    }
}
