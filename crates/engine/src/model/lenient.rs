//! How every model here is decoded: each field is optional, and a field
//! whose value has a shape we do not expect reads as absent instead of
//! failing the whole answer. Docker's answers differ between releases and
//! image stores (fields dropped, `null` for empty lists, new enum values);
//! the shim reads what it needs and treats the rest as unknown.
//!
//! bollard's generated models are strict: some fields are required (an
//! image inspect without `RootFS.Type` fails to decode) and unknown enum
//! values are errors. That is why the answers the shim reads are decoded
//! into these models, while bollard still builds and sends the requests.

use serde::de::{Deserialize, DeserializeOwned, Deserializer};

/// A field of any type: absent, `null` or of another shape → `None`.
pub fn field<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    if value.is_null() {
        return Ok(None);
    }
    Ok(T::deserialize(value).ok())
}

/// Declares a model: a struct whose fields are all `Option`, each decoded
/// with [`field`], with Docker's JSON name beside the Rust name.
macro_rules! docker_model {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$field_meta:meta])*
                $json:literal => $field:ident : $ty:ty,
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
        pub struct $name {
            $(
                $(#[$field_meta])*
                #[serde(
                    rename = $json,
                    default,
                    deserialize_with = "crate::model::lenient::field",
                    skip_serializing_if = "Option::is_none"
                )]
                pub $field: Option<$ty>,
            )*
        }
    };
}

pub(crate) use docker_model;

/// Declares a string enum of Docker's with a catch-all for values this
/// build does not know.
macro_rules! docker_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $json:literal => $variant:ident, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
        pub enum $name {
            $( #[serde(rename = $json)] $variant, )*
            /// A value this build does not know.
            #[serde(other)]
            Unknown,
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $json, )*
                    Self::Unknown => "unknown",
                }
            }
        }
    };
}

pub(crate) use docker_enum;

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    docker_model! {
        pub struct Sample {
            "Name" => name: String,
            "Count" => count: i64,
            "Labels" => labels: HashMap<String, String>,
            "Inner" => inner: Inner,
            "Kind" => kind: Kind,
        }
    }

    docker_model! {
        pub struct Inner {
            "Type" => typ: String,
            "Layers" => layers: Vec<String>,
        }
    }

    docker_enum! {
        pub enum Kind {
            "a" => A,
            "b" => B,
        }
    }

    #[test]
    fn missing_null_and_odd_fields_read_as_absent() {
        let s: Sample = serde_json::from_str(
            r#"{"Name": 7, "Count": "x", "Labels": null, "Inner": {"Layers": ["l"]}, "Extra": {"a": 1}}"#,
        )
        .unwrap();
        assert_eq!(s.name, None);
        assert_eq!(s.count, None);
        assert_eq!(s.labels, None);
        let inner = s.inner.unwrap();
        assert_eq!(inner.typ, None, "a missing Type is no error");
        assert_eq!(inner.layers, Some(vec!["l".to_string()]));
        assert_eq!(s.kind, None);
        let empty: Sample = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, Sample::default());
    }

    #[test]
    fn known_fields_and_unknown_enum_values() {
        let s: Sample =
            serde_json::from_str(r#"{"Name": "n", "Count": 3, "Labels": {"k": "v"}, "Kind": "b"}"#)
                .unwrap();
        assert_eq!(s.name.as_deref(), Some("n"));
        assert_eq!(s.count, Some(3));
        assert_eq!(s.labels.unwrap()["k"], "v");
        assert_eq!(s.kind, Some(Kind::B));
        let s: Sample = serde_json::from_str(r#"{"Kind": "from-the-future"}"#).unwrap();
        assert_eq!(s.kind, Some(Kind::Unknown));
        assert_eq!(Kind::A.as_str(), "a");
    }
}
