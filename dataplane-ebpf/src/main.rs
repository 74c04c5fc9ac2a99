//! meshward kernel programs. One module per hook family; shared lookups in their own modules.
#![no_std]
#![no_main]

mod dns_learn;
mod dns_maps;
mod dns_names;
mod egress;
mod egress_table;
mod events;
mod fast_path;
mod identity;
mod inbound;
mod inbound_table;
mod maps;
mod name_rules;
mod posture_conn;
mod posture_maps;
mod posture_offer;
mod posture_parse;
mod posture_skb;
mod posture_sockops;
mod posture_stream;
mod process;
mod sni_verdict;
mod verdict;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
