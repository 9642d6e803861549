//! Text through the `<form>` reader: a form or a reason, never a panic;
//! a form read is written back by the client's writer and reads back the
//! same (reading is a fixed point).
#![no_main]

use im_soap::form_xml::{FormError, parse_form, write_form};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = im_soap::Limits::default().form;
    let form = match parse_form(text, &limits) {
        Ok(f) => f,
        Err(FormError::NoForm(_) | FormError::Dtd) => return,
    };
    // Form-level names that are not element names cannot be written (the
    // writer refuses them); everything else must come back as it was read.
    let Ok(xml) = write_form(&form) else {
        return;
    };
    let back = match parse_form(&xml, &im_soap::Limits::default().form) {
        Ok(b) => b,
        Err(e) => panic!("written form does not read: {e}\n{xml}"),
    };
    let flat = |f: &im_core::Form| -> Vec<(String, String)> {
        f.items
            .iter()
            .flat_map(|i| i.fields.iter().chain(&i.attrs))
            .map(|x| (x.name.clone(), x.value.clone()))
            .collect()
    };
    assert_eq!(back.fields, form.fields, "{xml}");
    assert_eq!(back.items.len(), form.items.len(), "{xml}");
    assert_eq!(back.buss_info_present, form.buss_info_present, "{xml}");
    // Item fields whose names are not element names move to attrList.
    let mut a = flat(&form);
    let mut b = flat(&back);
    a.sort();
    b.sort();
    assert_eq!(a, b, "{xml}");
});
