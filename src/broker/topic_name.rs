//! Topic name rules, exactly as Apache Kafka's `org.apache.kafka.common.internals.Topic`
//! applies them: a legal name is 1..=249 ASCII characters from `[a-zA-Z0-9._-]` and is
//! neither `.` nor `..`. Two names that differ only by `.` versus `_` collide, because
//! Kafka's metric names replace `.` with `_`; Kafka refuses to create the second one.

/// Longest legal topic name, in bytes (all legal characters are one byte).
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Why a topic name is illegal. Maps to Kafka error `INVALID_TOPIC_EXCEPTION` (17);
/// `Display` gives Kafka's own wording, suitable for a response's error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicNameError {
    #[error("Topic name is illegal, it can't be empty")]
    Empty,
    #[error("Topic name cannot be \".\" or \"..\"")]
    DotOrDotDot,
    #[error(
        "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LEN} characters, topic name: {}",
        abbreviated(.name)
    )]
    TooLong { name: String },
    #[error(
        "Topic name \"{}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'",
        abbreviated(.name)
    )]
    IllegalCharacter { name: String },
}

impl TopicNameError {
    /// Kafka's `INVALID_TOPIC_EXCEPTION`.
    pub const ERROR_CODE: i16 = 17;

    /// The Kafka error code for every variant: `INVALID_TOPIC_EXCEPTION` (17).
    pub fn error_code(&self) -> i16 {
        Self::ERROR_CODE
    }
}

/// `name` as shown in an error message: its first `MAX_TOPIC_NAME_LEN` characters and
/// "..." when longer. A client's name can be up to 32,767 bytes (more in flexible
/// versions), and a message quoting it whole would not fit a response's error string
/// (at most 32,767 bytes), which closed the connection instead of answering.
pub fn abbreviated(name: &str) -> std::borrow::Cow<'_, str> {
    match name.char_indices().nth(MAX_TOPIC_NAME_LEN) {
        None => name.into(),
        Some((end, _)) => format!("{}...", &name[..end]).into(),
    }
}

/// Checks `name` the way Kafka's `Topic.validate` does, in the same order.
pub fn validate_topic_name(name: &str) -> Result<(), TopicNameError> {
    if name.is_empty() {
        return Err(TopicNameError::Empty);
    }
    if name == "." || name == ".." {
        return Err(TopicNameError::DotOrDotDot);
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(TopicNameError::TooLong {
            name: name.to_owned(),
        });
    }
    if !name.bytes().all(is_legal_char) {
        return Err(TopicNameError::IllegalCharacter {
            name: name.to_owned(),
        });
    }
    Ok(())
}

fn is_legal_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'
}

/// True when the name contains a character (`.` or `_`) that can collide with another
/// name (Kafka's `Topic.hasCollisionChars`).
pub fn has_collision_chars(name: &str) -> bool {
    name.contains(['.', '_'])
}

/// The name with every `.` replaced by `_` (Kafka's `Topic.unifyCollisionChars`): two
/// topics collide exactly when their unified names are equal.
pub fn unify_collision_chars(name: &str) -> String {
    name.replace('.', "_")
}

/// True when `a` and `b` differ only by `.` versus `_` in some positions, including
/// when they are equal (Kafka's `Topic.hasCollision`).
pub fn topic_names_collide(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| x == y || (matches!(x, b'.' | b'_') && matches!(y, b'.' | b'_')))
}

/// The first name in `existing` that `name` collides with but is not equal to, if any.
/// The broker uses this before creating a topic: an equal name is `TOPIC_ALREADY_EXISTS`,
/// a colliding one is `INVALID_TOPIC_EXCEPTION` with [`collision_message`].
pub fn find_collision<'a, I>(name: &str, existing: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    if !has_collision_chars(name) {
        return None;
    }
    existing
        .into_iter()
        .find(|other| *other != name && topic_names_collide(name, other))
}

/// Kafka's error message for a collision between a new topic and an existing one.
pub fn collision_message(name: &str, existing: &str) -> String {
    format!("Topic '{name}' collides with existing topic: {existing}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, expected outcome) — the cases from Kafka's TopicTest plus edges.
    #[test]
    fn validation_table() {
        let long_ok = "a".repeat(MAX_TOPIC_NAME_LEN);
        let too_long = "a".repeat(MAX_TOPIC_NAME_LEN + 1);
        let cases: Vec<(&str, Result<(), TopicNameError>)> = vec![
            ("valid", Ok(())),
            ("TOPIC", Ok(())),
            ("nAmEs", Ok(())),
            ("with_underscore", Ok(())),
            ("with-dash", Ok(())),
            ("with.dot", Ok(())),
            ("0123456789", Ok(())),
            ("...", Ok(())),
            ("._-", Ok(())),
            ("__consumer_offsets", Ok(())),
            (&long_ok, Ok(())),
            ("", Err(TopicNameError::Empty)),
            (".", Err(TopicNameError::DotOrDotDot)),
            ("..", Err(TopicNameError::DotOrDotDot)),
            (
                &too_long,
                Err(TopicNameError::TooLong {
                    name: too_long.clone(),
                }),
            ),
            (
                "foo bar",
                Err(TopicNameError::IllegalCharacter {
                    name: "foo bar".into(),
                }),
            ),
            (
                "foo/bar",
                Err(TopicNameError::IllegalCharacter {
                    name: "foo/bar".into(),
                }),
            ),
            (
                "foo:bar",
                Err(TopicNameError::IllegalCharacter {
                    name: "foo:bar".into(),
                }),
            ),
            (
                "ümlaut",
                Err(TopicNameError::IllegalCharacter {
                    name: "ümlaut".into(),
                }),
            ),
            (
                "tab\t",
                Err(TopicNameError::IllegalCharacter {
                    name: "tab\t".into(),
                }),
            ),
        ];
        for (name, expected) in cases {
            assert_eq!(validate_topic_name(name), expected, "name {name:?}");
        }
    }

    #[test]
    fn errors_carry_kafka_code_and_wording() {
        let err = validate_topic_name("a b").unwrap_err();
        assert_eq!(err.error_code(), 17);
        assert_eq!(
            err.to_string(),
            "Topic name \"a b\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        );
        assert_eq!(
            validate_topic_name("").unwrap_err().to_string(),
            "Topic name is illegal, it can't be empty"
        );
    }

    #[test]
    fn collision_table() {
        let cases = [
            ("a.b", "a_b", true),
            ("a_b", "a.b", true),
            ("a.b", "a.b", true),
            ("a.b_c", "a_b.c", true),
            ("a.b", "a-b", false),
            ("a.b", "a.bc", false),
            ("ab", "a_", false),
            ("x", "y", false),
        ];
        for (a, b, collide) in cases {
            assert_eq!(topic_names_collide(a, b), collide, "{a} vs {b}");
            assert_eq!(
                unify_collision_chars(a) == unify_collision_chars(b),
                collide,
                "{a} vs {b} (unified)"
            );
        }
    }

    #[test]
    fn find_collision_skips_equal_names() {
        let existing = ["orders_v1", "orders.v2", "plain"];
        assert_eq!(
            find_collision("orders.v1", existing.iter().copied()),
            Some("orders_v1")
        );
        assert_eq!(find_collision("orders.v2", existing.iter().copied()), None);
        assert_eq!(find_collision("plain", existing.iter().copied()), None);
        assert_eq!(
            collision_message("orders.v1", "orders_v1"),
            "Topic 'orders.v1' collides with existing topic: orders_v1"
        );
    }
}
