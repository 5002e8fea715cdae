//! Error classes and how HTTP statuses and provider error codes map onto them.

/// The target-independent twin of the WIT `error-class` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// The request is invalid.
    BadRequest,
    /// Credentials rejected.
    Auth,
    /// Not allowed.
    Permission,
    /// Unknown model or path.
    NotFound,
    /// 429.
    RateLimited,
    /// 503/529.
    Overloaded,
    /// Prompt too long for the model.
    ContextLength,
    /// Refused by a content filter.
    ContentFilter,
    /// Any other upstream failure.
    Upstream,
    /// No answer in time.
    Timeout,
}

/// Classify an upstream HTTP status.
pub fn class_for_status(status: u16) -> Class {
    match status {
        400 | 422 => Class::BadRequest,
        401 => Class::Auth,
        403 => Class::Permission,
        404 => Class::NotFound,
        408 | 504 => Class::Timeout,
        413 => Class::ContextLength,
        429 => Class::RateLimited,
        503 | 529 => Class::Overloaded,
        _ => Class::Upstream,
    }
}

/// Refine a class from a provider's error code, type or message.
pub fn refine(class: Class, code: Option<&str>, message: &str) -> Class {
    let code = code.unwrap_or("");
    let has = |s: &str| code.contains(s) || message.contains(s);
    if has("context_length_exceeded")
        || has("maximum context length")
        || has("prompt is too long")
        || has("too many tokens")
    {
        Class::ContextLength
    } else if has("content_filter") || has("content_policy") || has("content management policy") {
        Class::ContentFilter
    } else if has("insufficient_quota") || has("rate_limit") {
        Class::RateLimited
    } else if has("overloaded") {
        Class::Overloaded
    } else {
        class
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes() {
        assert_eq!(class_for_status(429), Class::RateLimited);
        assert_eq!(class_for_status(500), Class::Upstream);
        assert_eq!(class_for_status(529), Class::Overloaded);
        assert_eq!(
            refine(Class::BadRequest, Some("context_length_exceeded"), ""),
            Class::ContextLength
        );
        assert_eq!(refine(Class::BadRequest, None, "bad"), Class::BadRequest);
    }
}
