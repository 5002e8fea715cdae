//! URLs, and the plugin driven as the host drives it.

use super::url;

#[test]
fn urls() {
    assert_eq!(
        url("https://api.anthropic.com", "messages"),
        "https://api.anthropic.com/v1/messages"
    );
    assert_eq!(
        url("http://x/v1/", "messages/count_tokens"),
        "http://x/v1/messages/count_tokens"
    );
}
