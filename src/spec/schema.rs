//! The shape of the field table: which JSON type each Kubernetes field has, and whether
//! everynode honours it.

/// The JSON type a field must have.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Str,
    Int32,
    Int64,
    Bool,
    /// An int32 or a string (`port: 8080` or `port: metrics`).
    IntOrStr,
    /// A string from a fixed set.
    Enum(&'static [&'static str]),
    StrList,
    StrMap,
    /// A resource quantity (a number or a string such as `64Mi`).
    Quantity,
    /// A map of resource names to quantities (numbers or strings).
    QuantityMap,
    Object(&'static Schema),
    ObjectList(&'static Schema),
}

/// One field of a Kubernetes object.
#[derive(Debug)]
pub(crate) struct Field {
    pub name: &'static str,
    /// None for a field that exists in Kubernetes but that everynode does not honour.
    pub kind: Option<Kind>,
    /// Missing is an error (only for fields the model cannot default).
    pub required: bool,
    /// Why an ignored field is ignored, or what to do instead.
    pub note: Option<&'static str>,
    /// A value of an ignored field that behaves as everynode does anyway: no warning.
    pub harmless: Option<&'static str>,
}

pub(crate) const fn f(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind: Some(kind),
        required: false,
        note: None,
        harmless: None,
    }
}

pub(crate) const fn req(name: &'static str, kind: Kind) -> Field {
    Field {
        required: true,
        ..f(name, kind)
    }
}

pub(crate) const fn ignored(name: &'static str) -> Field {
    Field {
        name,
        kind: None,
        required: false,
        note: None,
        harmless: None,
    }
}

pub(crate) const fn note(name: &'static str, why: &'static str) -> Field {
    Field {
        note: Some(why),
        ..ignored(name)
    }
}

pub(crate) const fn ignored_if_not(name: &'static str, harmless: &'static str) -> Field {
    Field {
        harmless: Some(harmless),
        ..ignored(name)
    }
}

/// A Kubernetes object type.
#[derive(Debug)]
pub(crate) struct Schema {
    /// The Go type name, as `kubectl explain` shows it.
    pub name: &'static str,
    pub fields: &'static [Field],
    /// Pass ignored fields through to the model (which keeps them in an `unsupported` map),
    /// because validation must know they were there (a configMap volume is still a volume).
    pub keep_ignored: bool,
}

impl Schema {
    pub(crate) const fn new(name: &'static str, fields: &'static [Field]) -> Self {
        Schema {
            name,
            fields,
            keep_ignored: false,
        }
    }

    pub(crate) const fn keeping_ignored(name: &'static str, fields: &'static [Field]) -> Self {
        Schema {
            name,
            fields,
            keep_ignored: true,
        }
    }

    pub(crate) fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The valid field name closest to a misspelt one.
    pub(crate) fn nearest(&self, name: &str) -> Option<&'static str> {
        let lower = name.to_ascii_lowercase();
        if let Some(f) = self.fields.iter().find(|f| f.name.to_ascii_lowercase() == lower) {
            return Some(f.name);
        }
        self.fields
            .iter()
            .map(|f| (strsim::jaro_winkler(&lower, &f.name.to_ascii_lowercase()), f.name))
            .filter(|(score, _)| *score >= 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, name)| name)
    }

    pub(crate) fn honoured_names(&self) -> Vec<&'static str> {
        self.fields
            .iter()
            .filter(|f| f.kind.is_some())
            .map(|f| f.name)
            .collect()
    }
}
