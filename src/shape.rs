//! The shape of a JSON-RPC message, checked before a plugin sees it and after a plugin
//! rewrote it.
//!
//! A plugin is a guard only if it sees what the peer behind it will act on. JSON lets
//! one text mean different things to different parsers, and sluice's plugins are
//! written in six languages with parsers of their own:
//!
//! - **Duplicate member names.** `{"method":"ping","method":"tools/call"}`: Python's,
//!   JavaScript's and serde_json's `Value` keep the last, a derived Rust struct refuses
//!   the text, a byte rule may read the first. A plugin that sees `ping` (or fails to
//!   parse and passes) lets through a `tools/call` the server runs.
//! - **Escaped names and methods.** `{"m\u0065thod":"tools/call"}` or
//!   `"method":"tools\/call"` is `tools/call` to every parser and something else to a
//!   rule on bytes (the reference filter's method rule is one, by design).
//! - **More than one value.** A `modify` that returns `{…},{"method":"x"}` for one
//!   message of a batch would splice a message no later plugin saw on its own.
//!
//! So the host refuses such messages before any plugin sees them, and refuses such a
//! `modify` result as a plugin failure. Every check is one pass of serde_json over the
//! text that allocates only for objects with many members.

use std::borrow::Cow;
use std::fmt;

use serde::Deserializer;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Why a message does not have the shape a JSON-RPC message must have here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// Not one JSON value (empty, broken, or followed by more text).
    #[error("not a single JSON value: {0}")]
    NotJson(String),
    /// One JSON value, but not an object.
    #[error("not a JSON object")]
    NotObject,
    /// An object has the same member name twice.
    #[error("member {name:?} appears twice in {at}")]
    DuplicateName {
        /// The repeated name (decoded).
        name: String,
        /// Where: `the message` or a JSON pointer to the object (`/params/arguments`).
        at: String,
    },
    /// A top-level member name, or the `method` value, is written with an escape.
    #[error("{0} is written with a JSON escape sequence")]
    Escaped(&'static str),
}

impl ShapeError {
    /// A short stable name for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            ShapeError::NotJson(_) => "not_json",
            ShapeError::NotObject => "not_object",
            ShapeError::DuplicateName { .. } => "duplicate_name",
            ShapeError::Escaped(_) => "escaped_name",
        }
    }
}

/// How far down an object's member names must be distinct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// The message's own members only (`jsonrpc`, `id`, `method`, `result`, ...).
    Top,
    /// Every object in the message (`params.name`, `params.arguments.*`, ...).
    All,
}

/// What the proxy needs to know of a client message: read in the same pass that
/// checks its shape, so a message is parsed once.
#[derive(Debug, Default, Clone)]
pub struct Head {
    /// The message has a `method` member (a request or a notification), whatever its
    /// value.
    pub has_method: bool,
    /// The `method`, when it is a string.
    pub method: Option<String>,
    /// The `id` member's text, when there is one (`null` included).
    pub id: Option<Box<RawValue>>,
}

/// Checks that `text` is exactly one JSON object whose member names are distinct (at
/// `depth`).
pub fn one_object(text: &str, depth: Depth) -> Result<(), ShapeError> {
    check(text, depth, false, None)
}

/// [`one_object`] at every depth, and the message's member names and its `method` are
/// written without escapes: what a client message must be before plugins see it.
pub fn client_message(text: &str) -> Result<(), ShapeError> {
    check(text, Depth::All, true, None)
}

/// [`client_message`], giving the message's [`Head`] read in the same pass.
pub fn client_message_head(text: &str) -> Result<Head, ShapeError> {
    let mut head = Head::default();
    check(text, Depth::All, true, Some(&mut head))?;
    Ok(head)
}

/// For text that is a JSON array: whether it holds at most `max` elements. Reads no
/// further than element `max + 1`, so a client's two-million-element batch costs a
/// partial parse, not two million copies. An error when `text` is not a JSON array (or
/// is not JSON up to that point).
pub fn array_within(text: &str, max: usize) -> Result<bool, ShapeError> {
    /// Counts elements up to `max`; past it, stops the parse and says so in `over`
    /// (serde_json then reports the unread rest as an error, which is not one here).
    struct Count<'a> {
        max: usize,
        over: &'a mut bool,
    }
    impl<'de> Visitor<'de> for Count<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut n = 0;
            while seq.next_element::<IgnoredAny>()?.is_some() {
                n += 1;
                if n > self.max {
                    *self.over = true;
                    return Err(de::Error::custom("over the limit"));
                }
            }
            Ok(())
        }
    }
    let mut over = false;
    let mut de = serde_json::Deserializer::from_str(text);
    let counted = de
        .deserialize_seq(Count {
            max,
            over: &mut over,
        })
        .and_then(|()| de.end());
    match counted {
        _ if over => Ok(false),
        Ok(()) => Ok(true),
        Err(e) => Err(ShapeError::NotJson(e.to_string())),
    }
}

/// True when `text` looks like one JSON object (its first and last non-blank bytes are
/// braces): the messages whose `modify` results must keep that shape. Cheap: no parse.
pub fn looks_like_object(text: &str) -> bool {
    let t = text.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\r'));
    t.starts_with('{') && t.ends_with('}')
}

fn check(
    text: &str,
    depth: Depth,
    plain_names: bool,
    head: Option<&mut Head>,
) -> Result<(), ShapeError> {
    let mut found = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let seed = Message {
        depth,
        plain_names,
        found: &mut found,
        head,
    };
    let parsed = seed.deserialize(&mut de).and_then(|()| de.end());
    // A shape error found inside is reported as itself, not as the parse error serde
    // makes of it.
    if let Some(mut error) = found {
        if let ShapeError::DuplicateName { at, .. } = &mut error
            && at.is_empty()
        {
            *at = "the message".to_string();
        }
        return Err(error);
    }
    parsed.map_err(|e| {
        // Only on the way out of a refusal: was it JSON at all?
        if serde_json::from_str::<IgnoredAny>(text).is_ok() {
            ShapeError::NotObject
        } else {
            ShapeError::NotJson(e.to_string())
        }
    })
}

/// The whole message: must be an object (anything else fails the parse, and `check`
/// tells JSON that is not an object from text that is not JSON).
struct Message<'f> {
    depth: Depth,
    plain_names: bool,
    found: &'f mut Option<ShapeError>,
    head: Option<&'f mut Head>,
}

impl<'de> DeserializeSeed<'de> for Message<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Message<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC message (a JSON object)")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let Message {
            depth,
            plain_names,
            found,
            head,
        } = self;
        members(map, Some(Top { plain_names, head }), depth, found)
    }
}

/// Remembers `error` and gives serde an error that stops the parse.
fn refuse<E: de::Error>(found: &mut Option<ShapeError>, error: ShapeError) -> E {
    let text = error.to_string();
    found.get_or_insert(error);
    E::custom(text)
}

/// What only the message's own members get: the rule against escapes, and the
/// [`Head`] to fill.
struct Top<'f> {
    plain_names: bool,
    head: Option<&'f mut Head>,
}

/// The members of one object: names distinct; values checked further at `Depth::All`.
/// A repeat is reported with the JSON pointer of its object, built on the way out of
/// the parse (so nothing is allocated for the objects that are fine).
fn members<'de, A: MapAccess<'de>>(
    mut map: A,
    mut top: Option<Top<'_>>,
    depth: Depth,
    found: &mut Option<ShapeError>,
) -> Result<(), A::Error> {
    let plain_names = top.as_ref().is_some_and(|t| t.plain_names);
    let mut seen = Names::default();
    while let Some(name) = map.next_key_seed(Name)? {
        if plain_names && name.escaped {
            return Err(refuse(found, ShapeError::Escaped("a member name")));
        }
        if !seen.insert(name.text.clone()) {
            return Err(refuse(
                found,
                ShapeError::DuplicateName {
                    name: name.text.into_owned(),
                    at: String::new(),
                },
            ));
        }
        let head = top.as_mut().and_then(|t| t.head.as_deref_mut());
        match (name.text.as_ref(), head) {
            ("id", Some(head)) => {
                let id: &RawValue = map.next_value()?;
                // Taken whole, so checked as any other value: names distinct, strings
                // decodable (a lone surrogate escape is refused, as everywhere else).
                if depth == Depth::All {
                    nested_text(id.get(), found)
                        .map_err(|reason| refuse_found::<A::Error>(found, "id", reason))?;
                }
                head.id = Some(id.to_owned());
            }
            ("method", head) if plain_names => {
                let method = map.next_value_seed(Plain { found: &mut *found })?;
                if method.escaped {
                    return Err(refuse(found, ShapeError::Escaped("the method")));
                }
                if let Some(head) = head {
                    head.has_method = true;
                    head.method = method.text;
                }
            }
            _ if depth == Depth::All => {
                map.next_value_seed(Nested { found: &mut *found })
                    .inspect_err(|_| within(found, &pointer_token(&name.text)))?;
            }
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(())
}

/// Checks `text` (an `id` taken whole) as `Depth::All` checks any value.
fn nested_text(text: &str, found: &mut Option<ShapeError>) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_str(text);
    Nested { found }
        .deserialize(&mut de)
        .map_err(|e| e.to_string())
}

/// The error that stops the parse after [`nested_text`] refused the value of member
/// `name`: a repeat inside it, or text serde_json cannot decode (`reason`).
fn refuse_found<E: de::Error>(found: &mut Option<ShapeError>, name: &str, reason: String) -> E {
    within(found, name);
    E::custom(found.as_ref().map_or(reason, ToString::to_string))
}

/// Puts `/token` in front of the pointer of a repeat found inside a member or element.
fn within(found: &mut Option<ShapeError>, token: &str) {
    if let Some(ShapeError::DuplicateName { at, .. }) = found {
        at.insert_str(0, token);
        at.insert(0, '/');
    }
}

/// The names seen in one object. Most objects have a handful of members: a linear scan
/// of a short list, a hash set past that.
#[derive(Default)]
struct Names<'de> {
    few: Vec<Cow<'de, str>>,
    many: Option<std::collections::HashSet<Cow<'de, str>>>,
}

impl<'de> Names<'de> {
    const FEW: usize = 16;

    /// False when `name` was already there.
    fn insert(&mut self, name: Cow<'de, str>) -> bool {
        if let Some(many) = &mut self.many {
            return many.insert(name);
        }
        if self.few.contains(&name) {
            return false;
        }
        self.few.push(name);
        if self.few.len() > Self::FEW {
            self.many = Some(self.few.drain(..).collect());
        }
        true
    }
}

/// A member name, and whether the text wrote it with escapes (serde_json hands out a
/// borrowed `str` only when there were none).
struct Name;

struct NameText<'de> {
    text: Cow<'de, str>,
    escaped: bool,
}

impl<'de> DeserializeSeed<'de> for Name {
    type Value = NameText<'de>;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<NameText<'de>, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Name {
    type Value = NameText<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<NameText<'de>, E> {
        Ok(NameText {
            text: Cow::Borrowed(v),
            escaped: false,
        })
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<NameText<'de>, E> {
        Ok(NameText {
            text: Cow::Owned(v.to_string()),
            escaped: true,
        })
    }
}

/// The `method` value: its text when a string, and whether it was written with
/// escapes. An object or array in its place is checked like any other value (`Nested`).
struct Plain<'f> {
    found: &'f mut Option<ShapeError>,
}

/// What [`Plain`] read.
#[derive(Default)]
struct PlainText {
    text: Option<String>,
    escaped: bool,
}

impl<'de> DeserializeSeed<'de> for Plain<'_> {
    type Value = PlainText;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<PlainText, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Plain<'_> {
    type Value = PlainText;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<PlainText, E> {
        Ok(PlainText {
            text: Some(v.to_string()),
            escaped: false,
        })
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<PlainText, E> {
        Ok(PlainText {
            text: Some(v.to_string()),
            escaped: true,
        })
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<PlainText, E> {
        Ok(PlainText::default())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<PlainText, E> {
        Ok(PlainText::default())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<PlainText, E> {
        Ok(PlainText::default())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<PlainText, E> {
        Ok(PlainText::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<PlainText, E> {
        Ok(PlainText::default())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PlainText, A::Error> {
        Nested { found: self.found }
            .visit_map(map)
            .map(|()| PlainText::default())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<PlainText, A::Error> {
        Nested { found: self.found }
            .visit_seq(seq)
            .map(|()| PlainText::default())
    }
}

/// Any value inside the message, at `Depth::All`: objects' names distinct, all the way
/// down.
struct Nested<'f> {
    found: &'f mut Option<ShapeError>,
}

impl<'de> DeserializeSeed<'de> for Nested<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Nested<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        members(map, None, Depth::All, self.found)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let found = self.found;
        let mut index = 0usize;
        loop {
            let element = Nested { found: &mut *found };
            match seq.next_element_seed(element) {
                Ok(Some(())) => index += 1,
                Ok(None) => return Ok(()),
                Err(e) => {
                    within(found, &index.to_string());
                    return Err(e);
                }
            }
        }
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A member name as a JSON pointer token (RFC 6901: `~` and `/` escaped).
fn pointer_token(name: &str) -> Cow<'_, str> {
    if name.contains(['~', '/']) {
        Cow::Owned(name.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_message_passes_at_every_depth() {
        let m = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":[{"b":1},{"b":2}]}}}"#;
        assert_eq!(client_message(m), Ok(()));
        assert_eq!(one_object(m, Depth::Top), Ok(()));
        assert_eq!(one_object(&format!(" \n{m}\t "), Depth::All), Ok(()));
    }

    #[test]
    fn a_repeated_top_level_name_is_refused() {
        let m = r#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}"#;
        let e = client_message(m).unwrap_err();
        assert_eq!(
            e,
            ShapeError::DuplicateName {
                name: "method".into(),
                at: "the message".into()
            }
        );
        assert_eq!(e.reason(), "duplicate_name");
        assert!(one_object(m, Depth::Top).is_err());
    }

    #[test]
    fn a_repeated_name_written_another_way_is_the_same_name() {
        // `\u0069d` is `id`: the same member to every parser.
        let m = r#"{"id":1,"\u0069d":2,"result":{}}"#;
        assert!(matches!(
            one_object(m, Depth::Top),
            Err(ShapeError::DuplicateName { name, .. }) if name == "id"
        ));
    }

    #[test]
    fn nested_repeats_count_only_at_depth_all() {
        let m = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"safe","name":"rm","arguments":{}}}"#;
        assert_eq!(one_object(m, Depth::Top), Ok(()));
        assert_eq!(
            client_message(m),
            Err(ShapeError::DuplicateName {
                name: "name".into(),
                at: "/params".into()
            })
        );
        let deep = r#"{"method":"m","params":{"a/b":[{"x":1},{"y":1,"y":2}]}}"#;
        assert_eq!(
            client_message(deep),
            Err(ShapeError::DuplicateName {
                name: "y".into(),
                at: "/params/a~1b/1".into()
            })
        );
    }

    #[test]
    fn many_members_are_checked_too() {
        let mut m = String::from("{");
        for i in 0..40 {
            m.push_str(&format!("\"k{i}\":{i},"));
        }
        m.push_str("\"k3\":0}");
        assert!(matches!(
            one_object(&m, Depth::Top),
            Err(ShapeError::DuplicateName { name, .. }) if name == "k3"
        ));
    }

    #[test]
    fn escaped_top_level_names_and_methods_are_refused_from_clients() {
        for m in [
            r#"{"jsonrpc":"2.0","id":1,"m\u0065thod":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools\/call"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/c\u0061ll"}"#,
        ] {
            assert!(
                matches!(client_message(m), Err(ShapeError::Escaped(_))),
                "{m}"
            );
            // Not a shape rule for what the server sends.
            assert_eq!(one_object(m, Depth::All), Ok(()), "{m}");
        }
        // Escapes elsewhere are ordinary JSON.
        assert_eq!(
            client_message(r#"{"method":"m","params":{"t\u0065xt":"a\nb\u00e9"}}"#),
            Ok(())
        );
    }

    #[test]
    fn a_method_that_is_no_string_is_still_checked_for_repeats() {
        assert!(matches!(
            client_message(r#"{"jsonrpc":"2.0","id":1,"method":{"a":1,"a":2}}"#),
            Err(ShapeError::DuplicateName { .. })
        ));
        assert_eq!(client_message(r#"{"method":[{"a":1},{"a":2}]}"#), Ok(()));
    }

    #[test]
    fn arrays_are_counted_no_further_than_the_limit() {
        assert_eq!(array_within("[1,2,3]", 3), Ok(true));
        assert_eq!(array_within(" [1,2,3] ", 2), Ok(false));
        // Past the limit the rest is not read (nor judged).
        assert_eq!(array_within("[1,2,3,oops", 2), Ok(false));
        assert!(array_within("[1,2,oops", 5).is_err());
        assert!(array_within("[1] x", 5).is_err());
        assert!(array_within("{}", 5).is_err());
        assert_eq!(array_within("[]", 0), Ok(true));
    }

    #[test]
    fn only_one_object_is_one_object() {
        for (text, reason) in [
            (r#"{"a":1},{"method":"x"}"#, "not_json"),
            (r#"{"a":1}{"b":2}"#, "not_json"),
            (r#"[{"a":1},{"b":2}]"#, "not_object"),
            ("\"text\"", "not_object"),
            ("12", "not_object"),
            ("", "not_json"),
            ("{", "not_json"),
        ] {
            let e = one_object(text, Depth::Top).unwrap_err();
            assert_eq!(e.reason(), reason, "{text}: {e}");
        }
    }

    #[test]
    fn objects_are_told_from_other_text_without_a_parse() {
        assert!(looks_like_object(" {\"a\":1}\n"));
        assert!(looks_like_object("{},{}"));
        assert!(!looks_like_object("[{}]"));
        assert!(!looks_like_object("plain text"));
        assert!(!looks_like_object(""));
    }

    /// A JSON value with the member lists written out, repeats allowed.
    #[derive(Debug, Clone)]
    enum J {
        Num(i64),
        Str(String),
        Arr(Vec<J>),
        Obj(Vec<(String, J)>),
    }

    impl J {
        fn text(&self) -> String {
            match self {
                J::Num(n) => n.to_string(),
                J::Str(s) => serde_json::to_string(s).unwrap(),
                J::Arr(items) => {
                    let items: Vec<String> = items.iter().map(J::text).collect();
                    format!("[{}]", items.join(","))
                }
                J::Obj(members) => {
                    let members: Vec<String> = members
                        .iter()
                        .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v.text()))
                        .collect();
                    format!("{{{}}}", members.join(","))
                }
            }
        }

        /// Whether an object here (or, `deep`, anywhere below) repeats a name.
        fn repeats(&self, deep: bool) -> bool {
            match self {
                J::Num(_) | J::Str(_) => false,
                J::Arr(items) => deep && items.iter().any(|i| i.repeats(true)),
                J::Obj(members) => {
                    let mut names: Vec<&String> = members.iter().map(|(k, _)| k).collect();
                    names.sort();
                    let before = names.len();
                    names.dedup();
                    names.len() != before || (deep && members.iter().any(|(_, v)| v.repeats(true)))
                }
            }
        }
    }

    fn json() -> impl proptest::strategy::Strategy<Value = J> {
        use proptest::prelude::*;
        // Few names, so that repeats are common; some need escapes.
        let name = prop::sample::select(vec!["a", "b", "id", "method", "é", "q\"u", "\n"])
            .prop_map(str::to_string);
        let leaf = prop_oneof![
            any::<i64>().prop_map(J::Num),
            "[a-z\\\"]{0,4}".prop_map(J::Str)
        ];
        leaf.prop_recursive(4, 32, 5, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(J::Arr),
                prop::collection::vec((name.clone(), inner), 0..5).prop_map(J::Obj),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn repeats_are_found_exactly_where_they_are(value in json()) {
            let text = value.text();
            let is_object = matches!(value, J::Obj(_));
            let all = one_object(&text, Depth::All);
            let top = one_object(&text, Depth::Top);
            proptest::prop_assert_eq!(all.is_ok(), is_object && !value.repeats(true), "{}", text);
            proptest::prop_assert_eq!(top.is_ok(), is_object && !value.repeats(false), "{}", text);
            if all.is_ok() {
                proptest::prop_assert!(client_message(&text).is_ok() || text.contains('\\'));
            }
        }
    }
}
