#!/usr/bin/env python3
"""Interop check with a real third-party SOAP client (zeep).

Usage: zeep_interop.py <wsdl-url>

Reads the WSDL, calls EgyptWorkSheetAll twice with the same flowId (once in
zeep's own UTF-8, once re-encoded as gb2312 by a custom transport, the way
OM sends it) and checks the answers: the first call is accepted
(returnCode 0, a taskNo), the second is a duplicate (-1003, SAME, the same
taskNo). Prints one line per check and exits non-zero on any failure.
"""

import sys
import time
import xml.etree.ElementTree as ET

import zeep
from lxml import etree
from zeep.transports import Transport


class Gb2312Transport(Transport):
    """Sends the envelope as gb2312 bytes with a gb2312 Content-Type."""

    def post_xml(self, address, envelope, headers):
        headers["Content-Type"] = "text/xml; charset=gb2312"
        body = etree.tostring(envelope, xml_declaration=True, encoding="gb2312")
        return self.post(address, body, headers)


def form(flow_id, user):
    return (
        "<form>"
        "<authusername>OM_webservice</authusername>"
        "<authpassword>om-demo-secret</authpassword>"
        f"<flowId>{flow_id}</flowId><popid>19601</popid>"
        "<bussInfo><bussItem>"
        "<opertype>Install</opertype><coverType>ADSL</coverType><serviceType>ADSL</serviceType>"
        f"<UserName>{user}</UserName><AccountNumber>7700001</AccountNumber>"
        "<CustomerName>&#1571;&#1581;&#1605;&#1583; 工单</CustomerName>"
        '<attrList><attr name="ExchangeID">EX01</attr><attr name="Speed">4M</attr></attrList>'
        "</bussItem></bussInfo></form>"
    )


def parse(result):
    root = ET.fromstring(result)
    return {child.tag: (child.text or "") for child in root}


def main():
    if len(sys.argv) != 2:
        print("usage: zeep_interop.py <wsdl-url>", file=sys.stderr)
        return 2
    wsdl = sys.argv[1]
    flow_id = f"ZEEP-{int(time.time() * 1000)}"
    user = f"zeep-{flow_id.lower()}@tedata.net.eg"
    payload = form(flow_id, user)

    client = zeep.Client(wsdl)
    first = client.service.EgyptWorkSheetAll(in0=payload)
    r1 = parse(first)
    print(f"first call: returnCode={r1.get('returnCode')} errorCode={r1.get('errorCode')} taskNo={r1.get('taskNo')} errorDesc={r1.get('errorDesc')}")
    ok = r1.get("returnCode") == "0" and r1.get("errorCode") == "0" and r1.get("taskNo", "").startswith("WS")

    gb_client = zeep.Client(wsdl, transport=Gb2312Transport())
    second = gb_client.service.EgyptWorkSheetAll(in0=payload)
    r2 = parse(second)
    print(
        f"second call (gb2312): returnCode={r2.get('returnCode')} errorCode={r2.get('errorCode')} "
        f"duplicateContent={r2.get('duplicateContent')} taskNo={r2.get('taskNo')}"
    )
    ok = ok and r2.get("returnCode") == "1" and r2.get("errorCode") == "-1003"
    ok = ok and r2.get("duplicateContent") == "SAME" and r2.get("taskNo") == r1.get("taskNo")

    print("zeep interop: " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
