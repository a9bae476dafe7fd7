//! The compiled engine answers exactly as the straightforward interpreter, on generated
//! patterns (every operator, `$or`, nesting, dotted keys) and generated events (nested objects,
//! arrays of values and of objects, keys with dots), many rules at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use orgtrail_rules::screen::Known;
use orgtrail_rules::{Engine, Pattern, interpret};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const KEYS: [&str; 4] = ["a", "b", "c", "a.b"];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("x")),
        Just(json!("X")),
        Just(json!("xy")),
        Just(json!("yx")),
        Just(json!("10.0.0.7")),
        Just(json!("")),
        Just(json!(0)),
        Just(json!(5)),
        Just(json!(5.0)),
        Just(json!(-1.5)),
        Just(json!(true)),
        Just(json!(null)),
    ]
}

fn event_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(&KEYS[..]), inner, 0..4).prop_map(
                |m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            ),
        ]
    })
}

fn event() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(prop::sample::select(&KEYS[..]), event_value(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

fn matcher() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => scalar(),
        1 => prop::sample::select(vec!["x", "X", ""]).prop_map(|s| json!({"prefix": s})),
        1 => prop::sample::select(vec!["x", "y"]).prop_map(|s| json!({"suffix": s})),
        1 => prop::sample::select(vec!["x", "Xy"]).prop_map(|s| json!({"prefix": {"equals-ignore-case": s}})),
        1 => prop::sample::select(vec!["x", "XY"]).prop_map(|s| json!({"equals-ignore-case": s})),
        1 => prop::sample::select(vec!["x*", "*y", "*", "x*y"]).prop_map(|s| json!({"wildcard": s})),
        1 => scalar().prop_map(|s| json!({"anything-but": s})),
        1 => prop::sample::select(vec!["x", "y"]).prop_map(|s| json!({"anything-but": {"prefix": s}})),
        1 => Just(json!({"numeric": [">=", 0, "<", 5]})),
        1 => Just(json!({"numeric": ["=", 5]})),
        1 => Just(json!({"cidr": "10.0.0.0/8"})),
        1 => any::<bool>().prop_map(|b| json!({"exists": b})),
    ]
}

fn pattern_object(depth: u32) -> BoxedStrategy<Value> {
    let leaf = prop::collection::vec(matcher(), 1..3).prop_map(Value::Array);
    let value = if depth == 0 {
        leaf.boxed()
    } else {
        prop_oneof![3 => leaf, 1 => pattern_object(depth - 1)].boxed()
    };
    let fields = prop::collection::btree_map(prop::sample::select(&KEYS[..]), value, 1..3)
        .prop_map(|m| {
            m.into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect::<Map<_, _>>()
        });
    if depth == 0 {
        fields.prop_map(Value::Object).boxed()
    } else {
        (
            fields,
            prop::option::weighted(0.2, prop::collection::vec(pattern_object(depth - 1), 2..3)),
        )
            .prop_map(|(mut m, or)| {
                if let Some(or) = or {
                    m.insert("$or".into(), Value::Array(or));
                }
                Value::Object(m)
            })
            .boxed()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_engine_answers_as_the_interpreter(
        patterns in prop::collection::vec(pattern_object(2), 1..24),
        events in prop::collection::vec(event(), 1..8),
    ) {
        let patterns: Vec<Pattern> = patterns.iter().filter_map(|p| Pattern::from_json(p).ok()).collect();
        let engine = Engine::new(&patterns);
        let mut out = Vec::new();
        for e in &events {
            engine.matches(e, &[], &mut out);
            let want: Vec<usize> = patterns
                .iter()
                .enumerate()
                .filter(|(_, p)| interpret::matches(p, e))
                .map(|(i, _)| i)
                .collect();
            prop_assert_eq!(&out, &want, "event {}", e);
            // Screening by the top-level fields never rules out an event a rule matches.
            let ruled_out = !engine.may_match(|id| match e.get(&engine.paths()[id]) {
                None => Known::Absent,
                Some(Value::String(s)) => Known::Str(s),
                Some(_) => Known::Unknown,
            });
            prop_assert!(!ruled_out || want.is_empty(), "event {} ruled out", e);
        }
    }
}

#[test]
fn the_generators_make_matches_and_misses() {
    // The property above is not vacuous: generated patterns do match generated events.
    let p = Pattern::from_json(&json!({"a": {"b": ["x"]}})).unwrap();
    assert!(interpret::matches(&p, &json!({"a.b": "x"})));
    assert!(interpret::matches(
        &p,
        &json!({"a": [{"b": "y"}, {"b": "x"}]})
    ));
    assert!(!interpret::matches(&p, &json!({"a": {"b": "X"}})));
}

#[test]
fn dotted_keys_and_empty_segments_reach_the_same_paths() {
    // The engine's trie walk looks keys up by their first byte; keys that hold several
    // segments, and empty segments (`x..y`), must still reach their paths as the
    // interpreter's walk does.
    let patterns: Vec<Pattern> = [
        json!({"x..y": [1]}),
        json!({"a": {"b.c": ["v"]}}),
        json!({"$or": [{"ab": ["w"]}, {"a": {"b": [{"prefix": "p"}]}}]}),
    ]
    .iter()
    .map(|p| Pattern::from_json(p).unwrap())
    .collect();
    let engine = Engine::new(&patterns);
    let mut out = Vec::new();
    for e in [
        json!({"x": {"": {"y": 1}}}),
        json!({"x..y": 1}),
        json!({"x.": {"y": 1}}),
        json!({"a.b.c": "v", "ab": "w"}),
        json!({"a": {"b": {"c": "v"}}, "a.b": "pq"}),
        json!({"a": [{"b.c": "v"}, {"b": "px"}]}),
        json!({"a": {"b": "x"}, "ab": "x"}),
    ] {
        engine.matches(&e, &[], &mut out);
        let want: Vec<usize> = (0..patterns.len())
            .filter(|i| interpret::matches(&patterns[*i], &e))
            .collect();
        assert_eq!(out, want, "event {e}");
    }
    engine.matches(&json!({"x..y": 1, "a.b": "p"}), &[], &mut out);
    assert_eq!(out, vec![0, 2], "the test is not vacuous");
}
