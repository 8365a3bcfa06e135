//! Canonical JSON for signing, byte-for-byte what tough's verifier computes (the `olpc-cjson`
//! rules: no whitespace, object keys sorted by their serialized bytes, only `"` and `\`
//! escaped, strings in Unicode NFC, integers only), written for speed on large roles.
//!
//! `olpc-cjson` keeps every object member in its own pair of heap buffers inside a `BTreeMap`
//! and normalizes strings one `char` at a time; for a targets role with 100,000 entries that
//! was a third of `tuftool create`'s time. Here all members of all open objects share one
//! buffer: an object records where each member's key and value start, and when it closes its
//! members are sorted by key and written back in order. ASCII strings (already NFC) are copied
//! as they are.
use serde::Serialize;
use serde_json::ser::{CharEscape, CompactFormatter, Formatter};
use std::io::{self, Write};
use unicode_normalization::UnicodeNormalization;

/// The canonical JSON bytes of `value`.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, Canonical::default());
    value.serialize(&mut serializer).map_err(io::Error::from)?;
    Ok(out)
}

/// One member of an open object: offsets into [`Canonical::buffer`].
#[derive(Debug, Clone, Copy)]
struct Member {
    key: usize,
    value: usize,
    end: usize,
}

/// An object being written.
#[derive(Debug, Default)]
struct Open {
    /// Where its members start in the buffer.
    start: usize,
    members: Vec<Member>,
    key: usize,
    value: usize,
}

/// A `serde_json` formatter producing canonical JSON (see the module documentation).
#[derive(Debug, Default)]
pub struct Canonical {
    /// Bytes of the members of every open object, innermost last.
    buffer: Vec<u8>,
    open: Vec<Open>,
    /// Member lists of closed objects, reused.
    spare: Vec<Vec<Member>>,
    /// Scratch space for reordering an object's members.
    scratch: Vec<u8>,
}

fn float_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "floating point numbers are not allowed in canonical JSON",
    )
}

/// Run `$body` with `$w` bound to where output goes now: the shared buffer inside an object,
/// the real writer outside any.
macro_rules! sink {
    ($self:ident, $writer:ident, |$w:ident| $body:expr) => {
        if $self.open.is_empty() {
            let $w = $writer;
            $body
        } else {
            let $w = &mut $self.buffer;
            $body
        }
    };
}

macro_rules! pass_through {
    ($($name:ident $(: $t:ty)?),* $(,)?) => {
        $(
            fn $name<W: ?Sized + Write>(&mut self, writer: &mut W $(, value: $t)?) -> io::Result<()> {
                sink!(self, writer, |w| CompactFormatter.$name(w $(, std::convert::identity::<$t>(value))?))
            }
        )*
    };
}

impl Formatter for Canonical {
    pass_through!(
        write_null,
        write_bool: bool,
        write_i8: i8,
        write_i16: i16,
        write_i32: i32,
        write_i64: i64,
        write_i128: i128,
        write_u8: u8,
        write_u16: u16,
        write_u32: u32,
        write_u64: u64,
        write_u128: u128,
        begin_string,
        end_string,
        begin_array,
        end_array,
        begin_array_value: bool,
        end_array_value,
    );

    fn write_f32<W: ?Sized + Write>(&mut self, _writer: &mut W, _value: f32) -> io::Result<()> {
        Err(float_error())
    }

    fn write_f64<W: ?Sized + Write>(&mut self, _writer: &mut W, _value: f64) -> io::Result<()> {
        Err(float_error())
    }

    fn write_number_str<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        value: &str,
    ) -> io::Result<()> {
        if value.contains(['.', 'e', 'E']) {
            return Err(float_error());
        }
        sink!(self, writer, |w| w.write_all(value.as_bytes()))
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if fragment.is_ascii() {
            return sink!(self, writer, |w| w.write_all(fragment.as_bytes()));
        }
        let normalized: String = fragment.nfc().collect();
        sink!(self, writer, |w| w.write_all(normalized.as_bytes()))
    }

    fn write_char_escape<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        // Only quotes and backslashes are escaped; every other character is written as is.
        let bytes: &[u8] = match escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"/",
            CharEscape::Backspace => b"\x08",
            CharEscape::FormFeed => b"\x0c",
            CharEscape::LineFeed => b"\n",
            CharEscape::CarriageReturn => b"\r",
            CharEscape::Tab => b"\t",
            CharEscape::AsciiControl(byte) => return sink!(self, writer, |w| w.write_all(&[byte])),
        };
        sink!(self, writer, |w| w.write_all(bytes))
    }

    fn begin_object<W: ?Sized + Write>(&mut self, _writer: &mut W) -> io::Result<()> {
        let members = self.spare.pop().unwrap_or_default();
        self.open.push(Open {
            start: self.buffer.len(),
            members,
            key: 0,
            value: 0,
        });
        Ok(())
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        _writer: &mut W,
        _first: bool,
    ) -> io::Result<()> {
        let at = self.buffer.len();
        if let Some(open) = self.open.last_mut() {
            open.key = at;
        }
        Ok(())
    }

    fn end_object_key<W: ?Sized + Write>(&mut self, _writer: &mut W) -> io::Result<()> {
        Ok(())
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, _writer: &mut W) -> io::Result<()> {
        let at = self.buffer.len();
        if let Some(open) = self.open.last_mut() {
            open.value = at;
        }
        Ok(())
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, _writer: &mut W) -> io::Result<()> {
        let end = self.buffer.len();
        if let Some(open) = self.open.last_mut() {
            open.members.push(Member {
                key: open.key,
                value: open.value,
                end,
            });
        }
        Ok(())
    }

    fn end_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        let Some(Open {
            start, mut members, ..
        }) = self.open.pop()
        else {
            return Err(io::Error::other("end of an object that was never begun"));
        };
        // Move this object's members aside, then write them back sorted by key bytes. The
        // sort is stable and a repeated key keeps its last value, as a map would.
        self.scratch.clear();
        self.scratch.extend_from_slice(&self.buffer[start..]);
        self.buffer.truncate(start);
        let scratch = &self.scratch;
        let key_of = |m: &Member| &scratch[m.key - start..m.value - start];
        members.sort_by(|a, b| key_of(a).cmp(key_of(b)));
        members.dedup_by(|later, earlier| {
            let same = key_of(later) == key_of(earlier);
            if same {
                *earlier = *later;
            }
            same
        });
        let mut object = std::mem::take(&mut self.buffer);
        object.push(b'{');
        for (i, member) in members.iter().enumerate() {
            if i > 0 {
                object.push(b',');
            }
            object.extend_from_slice(key_of(member));
            object.push(b':');
            object.extend_from_slice(&scratch[member.value - start..member.end - start]);
        }
        object.push(b'}');
        self.buffer = object;
        members.clear();
        self.spare.push(members);
        if self.open.is_empty() {
            writer.write_all(&self.buffer)?;
            self.buffer.clear();
        }
        Ok(())
    }

    fn write_raw_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // Raw JSON is parsed and written again, canonically.
        let value: serde_json::Value = serde_json::from_str(fragment).map_err(io::Error::from)?;
        let bytes = to_vec(&value)?;
        sink!(self, writer, |w| w.write_all(&bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::to_vec;
    use proptest::prelude::*;
    use serde::Serialize;
    use serde_json::{Value, json};

    fn olpc<T: Serialize>(value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        let mut ser =
            serde_json::Serializer::with_formatter(&mut out, olpc_cjson::CanonicalFormatter::new());
        value.serialize(&mut ser).unwrap();
        out
    }

    #[test]
    fn known_forms() {
        assert_eq!(to_vec(&json!([1, 2, 3])).unwrap(), b"[1,2,3]");
        assert_eq!(to_vec(&json!({})).unwrap(), b"{}");
        assert_eq!(
            to_vec(&json!({"y": null, "x": [3, {"b": 1, "a": "\"\\\n"}]})).unwrap(),
            b"{\"x\":[3,{\"a\":\"\\\"\\\\\n\",\"b\":1}],\"y\":null}"
        );
        // Sorted by serialized key bytes, closing quote included (as tough's verifier does).
        assert_eq!(
            to_vec(&json!({"a": 1, "a b": 2})).unwrap(),
            olpc(&json!({"a": 1, "a b": 2}))
        );
        assert!(to_vec(&json!(1.5)).is_err());
        // Strings are normalized to NFC: "e" + combining acute becomes "é".
        assert_eq!(to_vec(&json!("e\u{301}")).unwrap(), "\"\u{e9}\"".as_bytes());
    }

    fn value() -> impl Strategy<Value = Value> {
        let text = prop_oneof![
            "[a-z ]{0,6}",
            "[\\x00-\\x7f]{0,6}",
            "\\PC{0,4}",
            Just("e\u{301}\u{323}".to_owned()),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            text.clone().prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((text.clone(), inner), 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn same_bytes_as_olpc_cjson(v in value()) {
            prop_assert_eq!(to_vec(&v).unwrap(), olpc(&v));
        }
    }

    #[test]
    fn same_bytes_as_olpc_cjson_for_a_targets_role() {
        let mut targets = tough::schema::Targets::new(
            "1.0.0".to_owned(),
            std::num::NonZeroU64::new(3).unwrap(),
            jiff::Timestamp::from_second(2_000_000_000).unwrap(),
        );
        for i in 0..500_u64 {
            let name = if i % 7 == 0 {
                format!("dir{}/caf\u{e9} {i}.txt", i % 5)
            } else {
                format!("dir{}/f{i}", i % 5)
            };
            targets.targets.insert(
                tough::TargetName::new(name).unwrap(),
                crate::targets::target_entry(i, vec![u8::try_from(i % 256).unwrap(); 32]),
            );
        }
        assert_eq!(to_vec(&targets).unwrap(), olpc(&targets));
    }
}
