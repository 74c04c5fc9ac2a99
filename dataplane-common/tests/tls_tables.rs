//! The generated cipher tables (src/tls/weak_table.rs, src/tls/names.rs, made by
//! tests/data/gen_cipher_tables.py) against tls-parser's own copy of the IANA registry.

use dataplane_common::tls::{
    ClientHello, DIRECTION_SIZE, Direction, ServerHello, cipher_name, is_grease, version_name,
    weak, weak_class_names, weak_classes,
};
use tls_parser::{
    TlsCipherAu, TlsCipherEnc, TlsCipherEncMode, TlsCipherKx, TlsCipherMac, TlsCipherSuite,
};

fn expected(s: &TlsCipherSuite) -> u32 {
    if s.id.0 == 0x00ff || s.id.0 == 0x5600 {
        return 0; // signalling values
    }
    let mut c = 0;
    if s.enc_mode == TlsCipherEncMode::Cbc && s.mac == TlsCipherMac::HmacSha1 {
        c |= weak::CBC_SHA1;
    }
    if s.kx == TlsCipherKx::Rsa {
        c |= weak::RSA_KX;
    }
    if s.enc == TlsCipherEnc::TripleDes {
        c |= weak::TDES;
    }
    if s.enc == TlsCipherEnc::Rc4 {
        c |= weak::RC4;
    }
    if s.enc == TlsCipherEnc::Null {
        c |= weak::NULL;
    }
    if s.name.contains("EXPORT") {
        c |= weak::EXPORT;
    }
    if s.au == TlsCipherAu::Null && s.kx != TlsCipherKx::Null {
        c |= weak::ANON;
    }
    if s.enc == TlsCipherEnc::Des {
        c |= weak::DES;
    }
    c
}

#[test]
fn weak_classes_match_the_registry() {
    let mut known = 0;
    for id in 0..=u16::MAX {
        match TlsCipherSuite::from_id(id) {
            Some(s) => {
                known += 1;
                assert_eq!(weak_classes(id), expected(s), "{id:#06x} {}", s.name);
                assert_eq!(cipher_name(id), s.name, "{id:#06x}");
            }
            None => {
                assert_eq!(weak_classes(id), 0, "{id:#06x} is not a suite");
                let n = cipher_name(id);
                assert!(
                    n == "unknown" || (is_grease(id) && n == "GREASE"),
                    "{id:#06x} {n}"
                );
            }
        }
    }
    assert!(known > 300, "{known}");
}

#[test]
fn well_known_suites() {
    assert_eq!(weak_classes(0x1301), 0); // TLS_AES_128_GCM_SHA256
    assert_eq!(weak_classes(0xc02f), 0); // ECDHE-RSA-AES128-GCM-SHA256
    assert_eq!(weak_classes(0xcca8), 0); // ECDHE-RSA-CHACHA20-POLY1305
    assert_eq!(weak_classes(0x0039), weak::CBC_SHA1); // DHE-RSA-AES256-SHA
    assert_eq!(weak_classes(0x002f), weak::CBC_SHA1 | weak::RSA_KX); // AES128-SHA
    assert_eq!(weak_classes(0x009c), weak::RSA_KX); // AES128-GCM-SHA256
    assert_eq!(
        weak_classes(0x000a),
        weak::CBC_SHA1 | weak::RSA_KX | weak::TDES
    );
    assert_eq!(weak_classes(0x0005), weak::RSA_KX | weak::RC4);
    assert_eq!(
        weak_classes(0x0003),
        weak::RSA_KX | weak::RC4 | weak::EXPORT
    );
    assert_eq!(weak_classes(0x0034), weak::CBC_SHA1 | weak::ANON);
    assert_eq!(weak_classes(0x0002), weak::RSA_KX | weak::NULL);
    assert_eq!(weak_classes(0xccae), weak::RSA_KX);
    assert_eq!(cipher_name(0x1303), "TLS_CHACHA20_POLY1305_SHA256");
    assert_eq!(cipher_name(0x0a0a), "GREASE");
    assert_eq!(
        weak_class_names(weak::CBC_SHA1 | weak::RSA_KX).collect::<Vec<_>>(),
        ["CBC-SHA1", "RSA-KX"]
    );
    assert_eq!(version_name(0x0304), "TLS 1.3");
    assert_eq!(version_name(0x0301), "TLS 1.0");
    assert_eq!(version_name(0x2a2a), "GREASE");
    for g in [0x0a0au16, 0x1a1a, 0xfafa] {
        assert!(is_grease(g));
    }
    assert!(!is_grease(0x0a1a) && !is_grease(0x1303));
}

#[test]
fn abi_sizes() {
    assert_eq!(size_of::<Direction>(), DIRECTION_SIZE);
    assert_eq!(size_of::<Direction>(), 4680);
    assert_eq!(size_of::<ClientHello>(), 276);
    assert_eq!(size_of::<ServerHello>(), 76);
    // All-zero memory is a fresh direction.
    let z = Direction::ZERO;
    assert_eq!(z.state, dataplane_common::tls::state::FRESH);
}
