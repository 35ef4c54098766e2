//! A virtual key's lookup at the gateway's door among 100,000 keys, as every call does it
//! ([`Gateway::identify`]: the presented key's SHA-256 digest, looked up in the file's keys then
//! the records', the digest found compared again in constant time), beside two peers in the same
//! run:
//!
//! - `sha256_only`: hashing the presented key alone, the floor of storing keys only as hashes;
//! - `plaintext_hashmap`: a `HashMap` of the keys themselves, what a gateway storing keys in the
//!   clear pays (and why it should not).
//!
//! Run: `cargo bench -p tollgate-benches --bench keys` (the 100,000-key configuration is read
//! once, in a few seconds).

use std::{collections::HashMap, hint::black_box, sync::Arc};

use criterion::{Criterion, criterion_group, criterion_main};
use sha2::{Digest, Sha256};
use tollgate_gateway::{Gateway, GatewayConfig, hash_key};

const KEYS: usize = 100_000;

/// `n` keys shaped as `tollgate keys hash` makes them: `tg-` and 64 hex digits.
fn secrets(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let digest = Sha256::digest(format!("bench-{i}").as_bytes());
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            format!("tg-{hex}")
        })
        .collect()
}

fn gateway(secrets: &[String]) -> Gateway {
    let mut yaml = String::from(
        "providers: { local: { kind: simulated } }\nroles: { default: { provider: local, model: m } }\nkeys:\n",
    );
    for (i, secret) in secrets.iter().enumerate() {
        yaml.push_str(&format!(
            "  k{i}: {{ hash: \"{}\", tenant: t{} }}\n",
            hash_key(secret),
            i % 100
        ));
    }
    Gateway::new(GatewayConfig::from_yaml(&yaml).expect("a sound configuration"))
        .expect("the gateway builds")
}

fn lookup(c: &mut Criterion) {
    let mut keys = secrets(KEYS + 1);
    let unknown = keys.pop().expect("one more than the gateway knows");
    let secrets = keys;
    let gateway = gateway(&secrets);
    let plaintext: HashMap<String, (Arc<str>, Arc<str>)> = secrets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                s.clone(),
                (format!("k{i}").into(), format!("t{}", i % 100).into()),
            )
        })
        .collect();

    let mut group = c.benchmark_group("gateway_key_lookup_100k");
    let mut i = 0;
    group.bench_function("tollgate_known", |b| {
        b.iter(|| {
            i = (i + 7_919) % KEYS;
            black_box(gateway.identify(black_box(&secrets[i])))
        })
    });
    group.bench_function("tollgate_unknown", |b| {
        b.iter(|| black_box(gateway.identify(black_box(&unknown))))
    });
    group.bench_function("sha256_only", |b| {
        b.iter(|| {
            i = (i + 7_919) % KEYS;
            black_box(Sha256::digest(black_box(secrets[i].as_bytes())))
        })
    });
    group.bench_function("plaintext_hashmap", |b| {
        b.iter(|| {
            i = (i + 7_919) % KEYS;
            black_box(plaintext.get(black_box(secrets[i].as_str())).cloned())
        })
    });
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
