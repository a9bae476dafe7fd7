//! RFC 9162 Merkle hashing: the Certificate Transparency reference vectors, and properties
//! checked against the recursive definition.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use orgtrail_crypto::merkle::{
    Frontier, Hash, LeafSlice, consistency_proof, empty_root, inclusion_proof, leaf_hash, root,
    verify_consistency, verify_inclusion,
};
use proptest::prelude::*;

fn h(s: &str) -> Hash {
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// The reference inputs and tree heads used by Certificate Transparency's implementations.
const DATA: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn leaves() -> Vec<Hash> {
    DATA.iter().map(|d| leaf_hash(&unhex(d))).collect()
}

#[test]
fn reference_tree_heads() {
    assert_eq!(
        empty_root(),
        h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    let l = leaves();
    let mut f = Frontier::new();
    assert_eq!(f.root(), empty_root());
    for n in 1..=8 {
        assert_eq!(root(&l[..n]), h(ROOTS[n - 1]), "size {n}");
        f.push(l[n - 1]);
        assert_eq!(f.root(), h(ROOTS[n - 1]), "incremental size {n}");
    }
}

#[test]
fn reference_inclusion_proofs() {
    let l = leaves();
    let cases: [(u64, u64, Vec<&str>); 2] = [
        (
            0,
            8,
            vec![
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            vec![
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    for (index, size, want) in cases {
        let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
        let got = inclusion_proof(&mut LeafSlice(&l), index, size).unwrap();
        assert_eq!(got, want, "inclusion {index}/{size}");
        assert!(verify_inclusion(
            &l[index as usize],
            index,
            size,
            &got,
            &h(ROOTS[size as usize - 1])
        ));
    }
}

#[test]
fn reference_consistency_proofs() {
    let l = leaves();
    let cases: [(u64, u64, Vec<&str>); 2] = [
        (
            2,
            8,
            vec![
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            vec![
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    for (first, second, want) in cases {
        let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
        let got = consistency_proof(&mut LeafSlice(&l), first, second).unwrap();
        assert_eq!(got, want, "consistency {first}->{second}");
        assert!(verify_consistency(
            first,
            second,
            &h(ROOTS[first as usize - 1]),
            &h(ROOTS[second as usize - 1]),
            &got
        ));
    }
}

#[test]
fn out_of_range_requests_are_refused() {
    let l = leaves();
    assert!(inclusion_proof(&mut LeafSlice(&l), 8, 8).is_err());
    assert!(consistency_proof(&mut LeafSlice(&l), 5, 3).is_err());
    let root8 = h(ROOTS[7]);
    assert!(!verify_inclusion(&l[0], 8, 8, &[], &root8));
    assert!(!verify_consistency(8, 6, &root8, &h(ROOTS[5]), &[]));
    assert!(verify_consistency(0, 8, &empty_root(), &root8, &[]));
    assert!(verify_consistency(8, 8, &root8, &root8, &[]));
    assert!(!verify_consistency(8, 8, &root8, &h(ROOTS[6]), &[]));
}

fn tree(n: usize, seed: u8) -> Vec<Hash> {
    (0..n)
        .map(|i| leaf_hash(&[seed, (i & 0xff) as u8, (i >> 8) as u8]))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn incremental_root_matches_the_definition(n in 0usize..300, seed in any::<u8>()) {
        let l = tree(n, seed);
        let mut f = Frontier::new();
        for x in &l { f.push(*x); }
        prop_assert_eq!(f.root(), root(&l));
        prop_assert_eq!(f.size(), n as u64);
    }

    #[test]
    fn every_inclusion_proof_verifies_and_a_changed_one_does_not(n in 1usize..200, i in any::<prop::sample::Index>(), seed in any::<u8>(), flip in any::<prop::sample::Index>()) {
        let l = tree(n, seed);
        let r = root(&l);
        let idx = i.index(n) as u64;
        let p = inclusion_proof(&mut LeafSlice(&l), idx, n as u64).unwrap();
        prop_assert!(verify_inclusion(&l[idx as usize], idx, n as u64, &p, &r));
        // Another leaf, another index, a changed path, or a truncated path: refused.
        let other = leaf_hash(b"not in the tree");
        prop_assert!(!verify_inclusion(&other, idx, n as u64, &p, &r));
        if n > 1 {
            prop_assert!(!verify_inclusion(&l[idx as usize], (idx + 1) % n as u64, n as u64, &p, &r));
            let mut bad = p.clone();
            let j = flip.index(bad.len());
            bad[j][0] ^= 1;
            prop_assert!(!verify_inclusion(&l[idx as usize], idx, n as u64, &bad, &r));
            prop_assert!(!verify_inclusion(&l[idx as usize], idx, n as u64, &p[..p.len() - 1], &r));
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_a_changed_one_does_not(n in 1usize..200, m in any::<prop::sample::Index>(), seed in any::<u8>()) {
        let l = tree(n, seed);
        let first = m.index(n + 1) as u64;
        let p = consistency_proof(&mut LeafSlice(&l), first, n as u64).unwrap();
        let r1 = root(&l[..first as usize]);
        let r2 = root(&l);
        prop_assert!(verify_consistency(first, n as u64, &r1, &r2, &p));
        if first > 0 && first < n as u64 {
            // A forked history (a different leaf inside the old tree) is not consistent.
            let mut forked = l.clone();
            forked[0] = leaf_hash(b"forged");
            prop_assert!(!verify_consistency(first, n as u64, &root(&forked[..first as usize]), &r2, &p));
            let mut bad = p.clone();
            bad[0][5] ^= 0x80;
            prop_assert!(!verify_consistency(first, n as u64, &r1, &r2, &bad));
        }
    }
}
