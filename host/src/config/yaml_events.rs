//! The YAML event stream of a text, with byte positions, from libyaml: the very parser
//! `serde_yaml` uses (`unsafe-libyaml`), so the scalars found here are exactly the scalars
//! `serde_yaml` reads. `substitute` uses it to put `${VAR}` values inside scalars.
//!
//! All the `unsafe` of the config module is here, behind `Events`, a safe iterator.

use std::marker::PhantomData;
use std::mem::MaybeUninit;

/// A position in the text: byte offset, 0-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub index: usize,
    pub line: usize,
    pub column: usize,
}

impl Mark {
    fn of(mark: unsafe_libyaml::yaml_mark_t) -> Self {
        Self {
            index: usize::try_from(mark.index).unwrap_or(usize::MAX),
            line: usize::try_from(mark.line).unwrap_or(usize::MAX),
            column: usize::try_from(mark.column).unwrap_or(usize::MAX),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarStyle {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    StreamStart,
    StreamEnd,
    DocumentStart,
    DocumentEnd,
    Alias,
    Scalar {
        /// The value as parsed (quotes, escapes, folding and chomping applied).
        value: String,
        style: ScalarStyle,
        /// An anchor or a tag precedes the scalar (inside `start..end`).
        properties: bool,
    },
    SequenceStart {
        flow: bool,
    },
    SequenceEnd,
    MappingStart {
        flow: bool,
    },
    MappingEnd,
}

/// One event and the text it covers, `start.index..end.index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub event: Event,
    pub start: Mark,
    pub end: Mark,
}

/// The text is not YAML (libyaml's own message is reported by `serde_yaml` on the same text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntaxError;

/// The events of `text`, in order, ending with `StreamEnd` or the first error.
pub struct Events<'input> {
    /// Boxed: libyaml keeps a pointer to the parser in the parser (its string reader), so it
    /// must never move.
    parser: Box<MaybeUninit<unsafe_libyaml::yaml_parser_t>>,
    done: bool,
    _input: PhantomData<&'input [u8]>,
}

impl<'input> Events<'input> {
    pub fn new(text: &'input str) -> Result<Self, SyntaxError> {
        let mut parser = Box::new(MaybeUninit::<unsafe_libyaml::yaml_parser_t>::uninit());
        let pointer = parser.as_mut_ptr();
        // SAFETY: `pointer` is a valid, aligned allocation for a parser, which
        // `yaml_parser_initialize` zeroes and sets up; the input outlives the parser (`'input`)
        // and is only read; the box is never moved out of, so the self-pointer stays valid.
        unsafe {
            if unsafe_libyaml::yaml_parser_initialize(pointer).fail {
                return Err(SyntaxError);
            }
            unsafe_libyaml::yaml_parser_set_encoding(pointer, unsafe_libyaml::YAML_UTF8_ENCODING);
            unsafe_libyaml::yaml_parser_set_input_string(pointer, text.as_ptr(), text.len() as u64);
        }
        Ok(Self {
            parser,
            done: false,
            _input: PhantomData,
        })
    }
}

impl Iterator for Events<'_> {
    type Item = Result<Located, SyntaxError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut raw = MaybeUninit::<unsafe_libyaml::yaml_event_t>::uninit();
        let parser = self.parser.as_mut_ptr();
        // SAFETY: the parser was initialised in `new` and is parsed only until its first error
        // or the end of the stream (`done`); `yaml_parser_parse` fills the event on success,
        // and the event is read (its pointers are valid for `length` bytes or NUL-terminated)
        // before `yaml_event_delete` frees what it owns.
        unsafe {
            if unsafe_libyaml::yaml_parser_parse(parser, raw.as_mut_ptr()).fail {
                self.done = true;
                return Some(Err(SyntaxError));
            }
            let event = raw.as_mut_ptr();
            let located = Located {
                event: convert(&*event),
                start: Mark::of((*event).start_mark),
                end: Mark::of((*event).end_mark),
            };
            unsafe_libyaml::yaml_event_delete(event);
            if located.event == Event::StreamEnd {
                self.done = true;
            }
            Some(Ok(located))
        }
    }
}

/// # Safety
/// `event` must be an event filled by `yaml_parser_parse` and not yet deleted.
unsafe fn convert(event: &unsafe_libyaml::yaml_event_t) -> Event {
    // SAFETY (every union read): the field read is the one `type_` says is set.
    match event.type_ {
        unsafe_libyaml::YAML_STREAM_START_EVENT => Event::StreamStart,
        unsafe_libyaml::YAML_DOCUMENT_START_EVENT => Event::DocumentStart,
        unsafe_libyaml::YAML_DOCUMENT_END_EVENT => Event::DocumentEnd,
        unsafe_libyaml::YAML_ALIAS_EVENT => Event::Alias,
        unsafe_libyaml::YAML_SCALAR_EVENT => {
            let scalar = unsafe { event.data.scalar };
            let length = usize::try_from(scalar.length).unwrap_or(0);
            let bytes = if scalar.value.is_null() || length == 0 {
                &[][..]
            } else {
                // SAFETY: libyaml owns `length` bytes at `value` until the event is deleted.
                unsafe { std::slice::from_raw_parts(scalar.value, length) }
            };
            Event::Scalar {
                value: String::from_utf8_lossy(bytes).into_owned(),
                style: match scalar.style {
                    unsafe_libyaml::YAML_SINGLE_QUOTED_SCALAR_STYLE => ScalarStyle::SingleQuoted,
                    unsafe_libyaml::YAML_DOUBLE_QUOTED_SCALAR_STYLE => ScalarStyle::DoubleQuoted,
                    unsafe_libyaml::YAML_LITERAL_SCALAR_STYLE => ScalarStyle::Literal,
                    unsafe_libyaml::YAML_FOLDED_SCALAR_STYLE => ScalarStyle::Folded,
                    _ => ScalarStyle::Plain,
                },
                properties: !scalar.anchor.is_null() || !scalar.tag.is_null(),
            }
        }
        unsafe_libyaml::YAML_SEQUENCE_START_EVENT => Event::SequenceStart {
            flow: unsafe { event.data.sequence_start.style }
                == unsafe_libyaml::YAML_FLOW_SEQUENCE_STYLE,
        },
        unsafe_libyaml::YAML_SEQUENCE_END_EVENT => Event::SequenceEnd,
        unsafe_libyaml::YAML_MAPPING_START_EVENT => Event::MappingStart {
            flow: unsafe { event.data.mapping_start.style }
                == unsafe_libyaml::YAML_FLOW_MAPPING_STYLE,
        },
        unsafe_libyaml::YAML_MAPPING_END_EVENT => Event::MappingEnd,
        // STREAM-END, and NO-EVENT which the parser does not produce on success.
        _ => Event::StreamEnd,
    }
}

impl Drop for Events<'_> {
    fn drop(&mut self) {
        // SAFETY: initialised in `new` (a failed initialisation never builds `Events`).
        unsafe { unsafe_libyaml::yaml_parser_delete(self.parser.as_mut_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(text: &str) -> Vec<Located> {
        Events::new(text)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    }

    #[test]
    fn scalars_carry_their_style_and_exact_span() {
        let text =
            "a: plain\nb: \"dq\"\nc: 'sq'\nd: &x !!str tagged\ne: |\n  lit\nf: [1, {g: h}]\n";
        let found = events(text);
        let spans: Vec<(&str, &Event)> = found
            .iter()
            .map(|l| (&text[l.start.index..l.end.index], &l.event))
            .collect();
        let scalar = |value: &str, style, properties| Event::Scalar {
            value: value.to_owned(),
            style,
            properties,
        };
        assert!(spans.contains(&("plain", &scalar("plain", ScalarStyle::Plain, false))));
        assert!(spans.contains(&("\"dq\"", &scalar("dq", ScalarStyle::DoubleQuoted, false))));
        assert!(spans.contains(&("'sq'", &scalar("sq", ScalarStyle::SingleQuoted, false))));
        assert!(spans.contains(&(
            "&x !!str tagged",
            &scalar("tagged", ScalarStyle::Plain, true)
        )));
        assert!(spans.contains(&("|\n  lit\n", &scalar("lit\n", ScalarStyle::Literal, false))));
        assert!(
            found
                .iter()
                .any(|l| l.event == Event::SequenceStart { flow: true })
        );
        assert!(
            found
                .iter()
                .any(|l| l.event == Event::MappingStart { flow: true })
        );
        let b = found
            .iter()
            .find(|l| matches!(&l.event, Event::Scalar { value, .. } if value == "b"))
            .unwrap();
        assert_eq!((b.start.line, b.start.column), (1, 0));
    }

    #[test]
    fn a_syntax_error_ends_the_stream() {
        let results: Vec<_> = Events::new("a: [1, 2\nb: }").unwrap().collect();
        assert_eq!(results.last(), Some(&Err(SyntaxError)));
    }
}
