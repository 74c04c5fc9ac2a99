#!/usr/bin/env python3
"""Generates src/tls/weak_table.rs and src/tls/names.rs from the IANA cipher-suite table that
the tls-parser crate ships (scripts/tls-ciphersuites.txt in its crate sources). Run after
`cargo fetch` (the crate is a dev-dependency); tests/tls_tables.rs checks the output against
tls-parser's compiled table, so a stale or hand-edited file fails the tests.

    python3 dataplane-common/tests/data/gen_cipher_tables.py
"""
import glob
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "..", "src", "tls")
home = os.environ.get('CARGO_HOME', os.path.expanduser('~/.cargo'))
p = sorted(glob.glob(home + '/registry/src/*/tls-parser-0.12.*/scripts/tls-ciphersuites.txt'))[-1]
rows=[l.strip().split(':') for l in open(p) if l.strip() and not l.startswith('#')]
BITS=dict(CBC_SHA1=1,RSA_KX=2,TDES=4,RC4=8,NULL=16,EXPORT=32,ANON=64,DES=128)
def cls(r):
    i,name,kx,au,enc,mode,size,mac,macsize,prf,prfsize,rfc,exp,minv,maxv=r[:15]
    c=0
    if minv=='0': return 0  # signalling values
    if mode=='CBC' and mac=='HMAC-SHA1': c|=BITS['CBC_SHA1']
    if kx=='RSA': c|=BITS['RSA_KX']
    if enc=='3DES': c|=BITS['TDES']
    if enc=='RC4': c|=BITS['RC4']
    if enc=='NULL': c|=BITS['NULL']
    if exp=='1' or 'EXPORT' in name: c|=BITS['EXPORT']
    if au=='NULL' and kx!='NULL': c|=BITS['ANON']
    if enc=='DES': c|=BITS['DES']
    return c
t00=[0]*256; tc0=[0]*256; extra=[]
for r in rows:
    i=int(r[0],16); c=cls(r)
    if c==0: continue
    if i>>8==0: t00[i&255]=c
    elif i>>8==0xc0: tc0[i&255]=c
    else: extra.append((i,c,r[1]))
def tab(name,t):
    s='pub(crate) static %s: [u8; 256] = [\n'%name
    for k in range(0,256,16):
        s+='    '+', '.join('0x%02x'%v for v in t[k:k+16])+',\n'
    return s+'];\n'
out=open(os.path.join(SRC, 'weak_table.rs'), 'w')
out.write('//! Generated from the IANA TLS cipher suite registry as tabulated by tls-parser 0.12.2\n//! (scripts/tls-ciphersuites.txt): weak-class bits of each suite, indexed by the low byte, for the\n//! two pages that hold every weak suite (0x00xx and 0xC0xx). `tests/tls_tables.rs` checks every\n//! entry against tls-parser\'s own table. Made by tests/data/gen_cipher_tables.py; do not edit.\n\n')
out.write('/// Suites 0x0000..=0x00FF.\n'+tab('WEAK_00',t00)+'\n/// Suites 0xC000..=0xC0FF.\n'+tab('WEAK_C0',tc0))
out=open(os.path.join(SRC, 'names.rs'), 'w')
out.write('//! Generated from the IANA TLS cipher suite registry as tabulated by tls-parser 0.12.2.\n//! `tests/tls_tables.rs` checks it against tls-parser. Made by\n//! tests/data/gen_cipher_tables.py; do not edit.\n\n/// (id, IANA name), sorted by id.\npub(crate) static CIPHER_NAMES: &[(u16, &str)] = &[\n')
for r in sorted(rows,key=lambda r:int(r[0],16)):
    out.write('    (0x%04x, "%s"),\n'%(int(r[0],16),r[1]))
out.write('];\n')
print(len(rows), [(hex(i),c,n) for i,c,n in extra])
