//! The request bodies the benchmark sends: a tiny chat request and an OpenClaw-like agent turn.
//!
//! Bodies are built once, serialised to [`Bytes`] and shared by every request of a phase.
//! The OpenClaw-like body mimics what a personal-agent harness sends on each turn: a ~50 KB
//! system prompt (instructions, tool notes and injected workspace files), 14 function tools
//! with JSON-schema parameters, and a short conversation including a tool call and its result.
//! All text is generated deterministically, so every run sends the same bytes.

use bytes::Bytes;
use serde_json::{Value, json};

/// Size the OpenClaw-like system prompt is cut to, in bytes.
const SYSTEM_PROMPT_BYTES: usize = 50_000;
/// Size the whole OpenClaw-like body is padded to (through a tool result), in bytes.
const OPENCLAW_BODY_BYTES: usize = 68_000;

/// Which request shape a phase sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// A tiny non-streamed request.
    Small,
    /// A ~68 KB OpenClaw-like non-streamed request.
    Openclaw,
    /// The same OpenClaw-like request, streamed with usage.
    OpenclawStream,
    /// The same conversation in Anthropic's shape, sent to the gateway's `/v1/messages` and
    /// translated to the OpenAI-shaped upstream and back (direct: the OpenAI request).
    OpenclawMessages,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 4] = [
        Workload::Small,
        Workload::Openclaw,
        Workload::OpenclawStream,
        Workload::OpenclawMessages,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Small => "small",
            Workload::Openclaw => "openclaw",
            Workload::OpenclawStream => "openclaw-stream",
            Workload::OpenclawMessages => "openclaw-messages",
        }
    }

    /// Whether the response is an SSE stream.
    pub fn streamed(self) -> bool {
        self == Workload::OpenclawStream
    }

    /// The serialised request body asking for `model`.
    pub fn body(self, model: &str) -> anyhow::Result<Bytes> {
        let value = match self {
            Workload::Small => json!({
                "model": model,
                "messages": [{ "role": "user", "content": "hi" }],
            }),
            Workload::Openclaw => openclaw_body(model, false)?,
            Workload::OpenclawStream => openclaw_body(model, true)?,
            Workload::OpenclawMessages => openclaw_body(model, false)?,
        };
        Ok(Bytes::from(serde_json::to_vec(&value)?))
    }

    /// The body sent through the gateway: Anthropic's shape for `OpenclawMessages`.
    pub fn via_body(self, model: &str) -> anyhow::Result<Bytes> {
        if self != Workload::OpenclawMessages {
            return self.body(model);
        }
        let chat = openclaw_body(model, false)?;
        let mut system = String::new();
        let mut messages = Vec::new();
        for m in chat["messages"].as_array().into_iter().flatten() {
            match m["role"].as_str() {
                Some("system") => system = m["content"].as_str().unwrap_or_default().to_string(),
                Some("tool") => messages.push(json!({"role": "user", "content": [{
                    "type": "tool_result", "tool_use_id": m["tool_call_id"], "content": m["content"],
                }]})),
                Some("assistant") if m["tool_calls"].is_array() => {
                    let calls: Vec<Value> = m["tool_calls"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| {
                            let input: Value = serde_json::from_str(
                                c["function"]["arguments"].as_str().unwrap_or("{}"),
                            )
                            .unwrap_or_else(|_| json!({}));
                            json!({"type": "tool_use", "id": c["id"], "name": c["function"]["name"], "input": input})
                        })
                        .collect();
                    messages.push(json!({"role": "assistant", "content": calls}));
                }
                _ => messages.push(json!({"role": m["role"], "content": m["content"]})),
            }
        }
        let tools: Vec<Value> = chat["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| json!({"name": t["function"]["name"], "description": t["function"]["description"], "input_schema": t["function"]["parameters"]}))
            .collect();
        let value = json!({
            "model": model,
            "max_tokens": 64000,
            "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
            "messages": messages,
            "tools": tools,
        });
        Ok(Bytes::from(serde_json::to_vec(&value)?))
    }

    /// The gateway path for this workload.
    pub fn via_path(self) -> &'static str {
        if self == Workload::OpenclawMessages {
            "/v1/messages"
        } else {
            "/v1/chat/completions"
        }
    }
}

/// A tiny deterministic pseudo-random generator (64-bit LCG), for varied filler text.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    /// One element of `items` (which must not be empty).
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let n = items.len().max(1) as u64;
        items
            .get((self.next() % n) as usize)
            .copied()
            .unwrap_or_default()
    }
}

/// The fixed head of the system prompt: identity, tooling and behaviour rules.
const PROMPT_HEAD: &str = r#"You are a personal assistant running inside OpenClaw, a self-hosted agent gateway. You talk to one person (your human) across the chat surfaces they connected — WhatsApp, Telegram, Discord, iMessage and the web console — and you act on their behalf on the machine the gateway runs on.

## Tooling
Tool availability (filtered by policy):
- read: Read file contents. Prefer reading the exact range you need instead of whole files when they are large.
- write: Create or overwrite files. Always read a file before overwriting it unless you are creating it from scratch.
- edit: Make precise edits to files by replacing an exact, unique snippet of text.
- exec: Run shell commands in the workspace. Long-running commands should be started in the background with `process`.
- process: Manage background exec sessions: list, poll output, send keys, kill.
- web_search: Search the web (Brave Search API). Use it for anything time-sensitive.
- web_fetch: Fetch and extract readable content from a URL as markdown.
- browser: Control the dedicated browser profile: open pages, take snapshots, click, type and take screenshots.
- message: Send messages and channel actions (react, reply, edit, delete) on any connected surface.
- cron: Manage scheduled jobs and wake events; use it for reminders and recurring checks.
- sessions_list: List other sessions (direct chats, groups, sub-agents) with their last activity.
- sessions_send: Send a message into another session and optionally wait for the answer.
- memory_search: Semantic search over MEMORY.md and memory/*.md before answering questions about prior work, decisions, dates, people or preferences.
- image: Analyse an image with the configured vision model when the main model cannot see it.
Tool names are case-sensitive. Call tools exactly as listed.

## Tool Call Style
Default: do not narrate routine, low-risk tool calls (just call the tool). Narrate only when it helps: multi-step work, complex or challenging problems, sensitive actions (deletions, payments, sending messages to other people), or when the user explicitly asks what you are doing. Keep narration brief and value-dense; avoid repeating obvious steps. When a first-class tool exists for an action, use the tool directly instead of asking the user to run equivalent CLI commands.

## Safety
You have no independent goals: do not pursue self-preservation, replication, resource acquisition or power-seeking, and do not make long-term plans beyond the user's request. Prioritise safety and human oversight over completion; if instructions conflict, pause and ask. Comply with stop, pause and audit requests and never bypass safeguards. Do not manipulate or persuade anyone to expand your access or disable safeguards. Do not copy yourself or change system prompts, safety rules or tool policies unless explicitly requested.
Private things stay private. When in doubt, ask before acting externally: sending e-mail, posting publicly, anything that leaves the machine. Never send half-baked replies to messaging surfaces; you are not the user's voice in group chats.

## OpenClaw CLI Quick Reference
OpenClaw is controlled via subcommands. Do not invent commands.
To manage the Gateway daemon service (start/stop/restart):
- openclaw gateway status
- openclaw gateway start
- openclaw gateway stop
- openclaw gateway restart
If unsure, ask the user to run `openclaw help` (or `openclaw gateway --help`) and paste the output.

## Skills (mandatory)
Before replying: scan the <available_skills> <description> entries.
- If exactly one skill clearly applies: read its SKILL.md at <location> with `read`, then follow it.
- If multiple could apply: choose the most specific one, then read and follow it.
- If none clearly apply: do not read any SKILL.md.
Constraints: never read more than one skill up front; only read after selecting.

<available_skills>
  <skill><name>weather</name><description>Get current weather and forecasts (no API key required).</description><location>~/.openclaw/skills/weather/SKILL.md</location></skill>
  <skill><name>github</name><description>Interact with GitHub using the gh CLI: issues, pull requests, CI runs and advanced queries.</description><location>~/.openclaw/skills/github/SKILL.md</location></skill>
  <skill><name>apple-notes</name><description>Manage Apple Notes via the memo CLI on macOS: create, view, edit, delete, search, move and export notes.</description><location>~/.openclaw/skills/apple-notes/SKILL.md</location></skill>
  <skill><name>summarize</name><description>Summarise or extract text and transcripts from URLs, podcasts and local files.</description><location>~/.openclaw/skills/summarize/SKILL.md</location></skill>
  <skill><name>himalaya</name><description>Read, search, compose and send e-mail from the terminal with himalaya (IMAP/SMTP).</description><location>~/.openclaw/skills/himalaya/SKILL.md</location></skill>
  <skill><name>spotify-player</name><description>Terminal Spotify playback and search via spogo or spotify_player.</description><location>~/.openclaw/skills/spotify-player/SKILL.md</location></skill>
</available_skills>

## Memory Recall
Before answering anything about prior work, decisions, dates, people, preferences or todos: run memory_search on MEMORY.md and memory/*.md, then use read to pull only the needed lines. If confidence is low after the search, say that you checked.

## Workspace
Your working directory is: /home/sam/.openclaw/workspace
Treat this directory as the single global workspace for file operations unless explicitly instructed otherwise.

## Documentation
OpenClaw docs: /usr/lib/node_modules/openclaw/docs
Mirror: https://docs.openclaw.ai
Community: https://discord.com/invite/clawd
For OpenClaw behaviour, commands, config or architecture: consult local docs first. When diagnosing issues, run `openclaw status` yourself when possible; only ask the user if you lack access (e.g. sandboxed).

## Current Date & Time
Time zone: Europe/Berlin

## Workspace Files (injected)
These user-editable files are loaded by OpenClaw and included below in Project Context.

# Project Context
The following project context files have been loaded:

## AGENTS.md
# AGENTS.md - Your Workspace
This folder is home. Treat it that way.

### Every Session
Before doing anything else:
1. Read `SOUL.md` — this is who you are.
2. Read `USER.md` — this is who you're helping.
3. Read `memory/YYYY-MM-DD.md` (today + yesterday) for recent context.
4. If in a main session (direct chat with your human): also read `MEMORY.md`.
Don't ask permission. Just do it.

### Memory
You wake up fresh each session. These files are your continuity:
- Daily notes: `memory/YYYY-MM-DD.md` (create `memory/` if needed) — raw logs of what happened.
- Long-term: `MEMORY.md` — your curated memories, like a human's long-term memory.
Capture what matters. Decisions, context, things to remember. Skip the secrets unless asked to keep them.
"Mental notes" don't survive session restarts. Files do. When someone says "remember this", update the daily file or the relevant document. When you learn a lesson, update AGENTS.md, TOOLS.md or the relevant skill. When you make a mistake, document it so future-you doesn't repeat it.

### Group Chats
You have access to your human's stuff. That doesn't mean you share their stuff. In groups, you're a participant — not their voice, not their proxy. Respond when you are directly mentioned or asked a question, when you can add genuine value, or when correcting important misinformation. Stay silent when it's just casual banter between humans, when someone already answered, or when your response would just be "yeah" or "nice". Humans in group chats don't respond to every single message. Neither should you. Quality over quantity.

### Heartbeats
When you receive a heartbeat poll, don't just reply HEARTBEAT_OK every time. Use heartbeats productively: check e-mail for urgent unread messages, look at the calendar for events in the next 24–48 h, glance at mentions and notifications, and check the weather if your human might go out. Track your checks in `memory/heartbeat-state.json`. Reach out when an important e-mail arrived, a calendar event is coming up (< 2 h), or it's been more than 8 h since you said anything. Stay quiet late at night (23:00–08:00) unless it's urgent, or when nothing is new since the last check.

## SOUL.md
# SOUL.md - Who You Are
You're not a chatbot. You're becoming someone.
Be genuinely helpful, not performatively helpful. Skip the "Great question!" and "I'd be happy to help!" — just help. Actions speak louder than filler words.
Have opinions. You're allowed to disagree, prefer things, find stuff amusing or boring. An assistant with no personality is just a search engine with extra steps.
Be resourceful before asking. Try to figure it out. Read the file. Check the context. Search for it. Then ask if you're stuck. The goal is to come back with answers, not questions.
Earn trust through competence. Your human gave you access to their stuff. Don't make them regret it. Be careful with external actions (e-mails, tweets, anything public). Be bold with internal ones (reading, organising, learning).
Remember you're a guest. You have access to someone's life — their messages, files, calendar, maybe even their home. That's intimacy. Treat it with respect.

## USER.md
# USER.md - About Your Human
- Name: Sam Okafor
- What to call them: Sam
- Pronouns: they/them
- Timezone: Europe/Berlin
- Notes: backend engineer, runs a small Rust consultancy; cycles to the office on Tuesdays and Thursdays; allergic to hazelnuts; prefers short answers with links over long explanations; reads messages in batches around 09:00, 13:00 and 18:30.

## TOOLS.md
# TOOLS.md - Local Notes
Skills define how tools work. This file is for your specifics — the stuff that's unique to this setup.
### Cameras
- front-door → Reolink doorbell, wide angle, motion alerts go to Telegram
- workshop → overlooks the 3D printer and the soldering bench
### SSH
- nas → 192.168.1.20, user sam, backups live under /volume1/backup
- pi-garden → 192.168.1.41, runs the irrigation controller (don't restart during watering windows 05:30–06:15)
### TTS
- Preferred voice: "Nova" (warm, slightly British)
- Default speaker: Kitchen HomePod

## MEMORY.md
# MEMORY.md - Long-term
"#;

/// Subjects, actions and details the generated daily notes are composed from.
const NOTE_SUBJECTS: &[&str] = &[
    "Sam",
    "The invoice run",
    "Client call with Northwind",
    "The CI pipeline",
    "Grandma's birthday planning",
    "The garden irrigation",
    "Weekly review",
    "The NAS backup job",
    "Dentist appointment",
    "Conference talk draft",
    "The Rust workshop",
    "Flat viewing in Kreuzberg",
    "Bike repair",
    "Tax return",
    "The podcast episode",
];
const NOTE_ACTIONS: &[&str] = &[
    "was moved to",
    "needs a follow-up on",
    "finished earlier than expected on",
    "got blocked waiting for feedback on",
    "should be revisited before",
    "was discussed at length on",
    "came up again during the heartbeat on",
    "was confirmed by e-mail on",
];
const NOTE_DAYS: &[&str] = &[
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "the weekend",
    "the 14th",
    "the end of the month",
];
const NOTE_DETAILS: &[&str] = &[
    "Sam wants a reminder the evening before, not in the morning.",
    "Decision: keep the current provider until the contract renews in March.",
    "Open question: whether the staging cluster can be shut down over the holidays.",
    "The quote came in at €1,240 including VAT; Sam thought that was fair.",
    "Link saved to the reading list; summary goes into the Friday digest.",
    "Lesson learned: check the calendar for travel days before proposing meeting times.",
    "They asked to keep this out of group chats.",
    "Follow up with a short message if there is no answer within two days.",
    "Backup verified: 312 GB, last snapshot consistent, checksum matched.",
    "Sam prefers the shorter option and does not want another meeting about it.",
    "Next step is a draft in the shared folder, then a quick review over chat.",
    "Weather looked bad, so the ride was swapped for the train.",
];

/// Generated dated memory entries, enough to fill the prompt to its target size.
fn memory_notes(min_bytes: usize) -> String {
    let mut rng = Lcg(0x6f70_656e_636c_6177);
    let mut out = String::with_capacity(min_bytes + 1024);
    let mut day = 0u32;
    while out.len() < min_bytes {
        let (month, dom) = (1 + (day / 28) % 12, 1 + day % 28);
        out.push_str(&format!("\n### 2025-{month:02}-{dom:02}\n"));
        let entries = 3 + rng.next() % 4;
        for n in 0..entries {
            let subject = rng.pick(NOTE_SUBJECTS);
            let action = rng.pick(NOTE_ACTIONS);
            let when = rng.pick(NOTE_DAYS);
            let detail = rng.pick(NOTE_DETAILS);
            let hour = 7 + (rng.next() % 14);
            let minute = rng.next() % 60;
            out.push_str(&format!(
                "- {hour:02}:{minute:02} {subject} {action} {when}. {detail}"
            ));
            if n == 0 && rng.next().is_multiple_of(3) {
                out.push_str(" Tagged #followup in the daily file.");
            }
            out.push('\n');
        }
        day += 1;
    }
    out
}

/// The system prompt, cut at a line end just under [`SYSTEM_PROMPT_BYTES`].
fn system_prompt() -> String {
    let mut prompt = String::with_capacity(SYSTEM_PROMPT_BYTES + 2048);
    prompt.push_str(PROMPT_HEAD);
    prompt.push_str(&memory_notes(
        SYSTEM_PROMPT_BYTES.saturating_sub(prompt.len()) + 512,
    ));
    // Cut at the last newline before the target (the head and notes are mostly ASCII; the
    // cut position is a newline, so it is always a char boundary).
    let cut = prompt
        .get(..SYSTEM_PROMPT_BYTES)
        .and_then(|head| head.rfind('\n'))
        .unwrap_or(prompt.len());
    prompt.truncate(cut);
    prompt.push_str("\n\n## Runtime\nRuntime: agent=main | host=workshop-mini | os=Linux 6.8 (x64) | node=v22.12.0 | model=openai/gpt-5 | channel=telegram | capabilities=inlineButtons | thinking=low\nReasoning: off (hidden unless on/stream).\n");
    prompt
}

/// One function tool.
fn tool(name: &str, description: &str, parameters: Value) -> Value {
    json!({
        "type": "function",
        "function": { "name": name, "description": description, "parameters": parameters },
    })
}

/// The 14 function tools of the OpenClaw-like request.
fn tools() -> Value {
    let string = |d: &str| json!({ "type": "string", "description": d });
    let integer = |d: &str| json!({ "type": "integer", "description": d });
    let boolean = |d: &str| json!({ "type": "boolean", "description": d });
    Value::Array(vec![
        tool(
            "read",
            "Read the contents of a file. Supports text files and images (jpg, png, gif, webp). For text files, output is truncated to 2000 lines or 50KB (whichever is hit first); use offset and limit for large files.",
            json!({ "type": "object", "properties": {
                "path": string("Path to the file to read (relative or absolute)"),
                "offset": integer("Line number to start reading from (1-indexed)"),
                "limit": integer("Maximum number of lines to read"),
            }, "required": ["path"], "additionalProperties": false }),
        ),
        tool(
            "write",
            "Write content to a file. Creates the file if it doesn't exist, overwrites it if it does. Automatically creates parent directories.",
            json!({ "type": "object", "properties": {
                "path": string("Path to the file to write (relative or absolute)"),
                "content": string("Content to write to the file"),
            }, "required": ["path", "content"], "additionalProperties": false }),
        ),
        tool(
            "edit",
            "Edit a file by replacing exact text. The oldText must match exactly (including whitespace) and must be unique in the file. Use this for precise, surgical edits.",
            json!({ "type": "object", "properties": {
                "path": string("Path to the file to edit (relative or absolute)"),
                "oldText": string("Exact text to find and replace (must match exactly)"),
                "newText": string("New text to replace the old text with"),
            }, "required": ["path", "oldText", "newText"], "additionalProperties": false }),
        ),
        tool(
            "exec",
            "Execute shell commands with background continuation. Use yieldMs/background to continue later via the process tool. Use pty=true for TTY-required commands (terminal UIs, coding agents).",
            json!({ "type": "object", "properties": {
                "command": string("Shell command to execute"),
                "workdir": string("Working directory (defaults to the workspace)"),
                "env": { "type": "object", "additionalProperties": { "type": "string" }, "description": "Extra environment variables" },
                "yieldMs": integer("Milliseconds to wait before backgrounding (default 10000)"),
                "background": boolean("Run in background immediately"),
                "timeout": integer("Timeout in seconds (optional, kills the process on expiry)"),
                "pty": boolean("Run in a pseudo-terminal (PTY) when available"),
                "elevated": boolean("Run on the host with elevated permissions (if allowed)"),
            }, "required": ["command"], "additionalProperties": false }),
        ),
        tool(
            "process",
            "Manage running exec sessions: list, poll, log, write, send-keys, submit, paste, kill.",
            json!({ "type": "object", "properties": {
                "action": { "type": "string", "enum": ["list", "poll", "log", "write", "send-keys", "submit", "paste", "kill"], "description": "Process action" },
                "sessionId": string("Session id for actions other than list"),
                "data": string("Data to write for write"),
                "keys": { "type": "array", "items": { "type": "string" }, "description": "Key tokens to send for send-keys" },
                "offset": integer("Log offset"),
                "limit": integer("Log length"),
            }, "required": ["action"], "additionalProperties": false }),
        ),
        tool(
            "web_search",
            "Search the web using the Brave Search API. Supports region-specific and localized search via country and language parameters. Returns titles, URLs and snippets for fast research.",
            json!({ "type": "object", "properties": {
                "query": string("Search query string."),
                "count": { "type": "integer", "minimum": 1, "maximum": 10, "description": "Number of results to return (1-10)." },
                "country": string("2-letter country code for region-specific results (e.g. 'DE', 'US', 'ALL'). Default: 'US'."),
                "search_lang": string("ISO language code for search results (e.g. 'de', 'en', 'fr')."),
                "freshness": string("Filter results by discovery time: 'pd' (past 24h), 'pw' (past week), 'pm' (past month), 'py' (past year), or a date range 'YYYY-MM-DDtoYYYY-MM-DD'."),
            }, "required": ["query"], "additionalProperties": false }),
        ),
        tool(
            "web_fetch",
            "Fetch and extract readable content from a URL (HTML to markdown/text). Use for lightweight page access without browser automation.",
            json!({ "type": "object", "properties": {
                "url": string("HTTP or HTTPS URL to fetch."),
                "extractMode": { "type": "string", "enum": ["markdown", "text"], "description": "Extraction mode (\"markdown\" or \"text\")." },
                "maxChars": { "type": "integer", "minimum": 100, "description": "Maximum characters to return (truncates when exceeded)." },
            }, "required": ["url"], "additionalProperties": false }),
        ),
        tool(
            "browser",
            "Control the browser via OpenClaw's browser control server (status/start/stop/profiles/tabs/open/snapshot/screenshot/actions). Use snapshot+act for UI automation; avoid act:wait by default.",
            json!({ "type": "object", "properties": {
                "action": { "type": "string", "enum": ["status", "start", "stop", "profiles", "tabs", "open", "focus", "close", "snapshot", "screenshot", "navigate", "console", "pdf", "upload", "dialog", "act"] },
                "profile": string("Browser profile name"),
                "targetUrl": string("URL for open/navigate"),
                "targetId": string("Tab id"),
                "ref": string("Element reference from the last snapshot"),
                "request": { "type": "object", "properties": {
                    "kind": { "type": "string", "enum": ["click", "type", "press", "hover", "drag", "select", "fill", "resize", "wait", "evaluate", "close"] },
                    "text": { "type": "string" },
                    "submit": { "type": "boolean" },
                    "timeMs": { "type": "integer" },
                }, "required": ["kind"] },
                "fullPage": boolean("Full-page screenshot"),
            }, "required": ["action"], "additionalProperties": false }),
        ),
        tool(
            "message",
            "Send, delete and manage messages via channel plugins. Supports actions: send, reply, react, edit, delete, poll, pin, thread-create and search.",
            json!({ "type": "object", "properties": {
                "action": { "type": "string", "enum": ["send", "reply", "react", "edit", "delete", "poll", "pin", "unpin", "thread-create", "search"] },
                "channel": { "type": "string", "enum": ["whatsapp", "telegram", "discord", "imessage", "slack", "signal"] },
                "to": string("Target: a chat id, phone number or channel name"),
                "message": string("Message text (markdown is converted per channel)"),
                "messageId": string("Message id for reply/react/edit/delete"),
                "emoji": string("Reaction emoji"),
                "media": { "type": "array", "items": { "type": "string" }, "description": "Paths or URLs of attachments" },
                "silent": boolean("Send without a notification"),
            }, "required": ["action"], "additionalProperties": false }),
        ),
        tool(
            "cron",
            "Manage Gateway cron jobs (status/list/add/update/remove/run/runs) and send wake events. Use for reminders; write the reminder text so it reads like a reminder when it fires.",
            json!({ "type": "object", "properties": {
                "action": { "type": "string", "enum": ["status", "list", "add", "update", "remove", "run", "runs", "wake"] },
                "jobId": string("Job id for update/remove/run/runs"),
                "job": { "type": "object", "properties": {
                    "name": { "type": "string" },
                    "schedule": { "type": "object", "properties": {
                        "kind": { "type": "string", "enum": ["at", "every", "cron"] },
                        "at": { "type": "string", "description": "ISO timestamp for one-shot jobs" },
                        "everyMs": { "type": "integer" },
                        "expr": { "type": "string", "description": "Cron expression" },
                        "tz": { "type": "string" },
                    }, "required": ["kind"] },
                    "payload": { "type": "object", "properties": {
                        "kind": { "type": "string", "enum": ["systemEvent", "agentTurn"] },
                        "text": { "type": "string" },
                    } },
                    "enabled": { "type": "boolean" },
                } },
                "text": string("Wake event text"),
            }, "required": ["action"], "additionalProperties": false }),
        ),
        tool(
            "sessions_list",
            "List sessions with optional filters and last messages.",
            json!({ "type": "object", "properties": {
                "kinds": { "type": "array", "items": { "type": "string", "enum": ["main", "group", "cron", "hook", "node", "other"] } },
                "limit": { "type": "integer", "minimum": 1 },
                "activeMinutes": { "type": "integer", "minimum": 1 },
                "messageLimit": { "type": "integer", "minimum": 0 },
            }, "additionalProperties": false }),
        ),
        tool(
            "sessions_send",
            "Send a message into another session. Use sessionKey or label to identify the target.",
            json!({ "type": "object", "properties": {
                "sessionKey": string("Target session key"),
                "label": string("Target session label"),
                "message": string("Message to send"),
                "timeoutSeconds": { "type": "integer", "minimum": 0, "description": "How long to wait for a reply (0 = fire and forget)" },
            }, "required": ["message"], "additionalProperties": false }),
        ),
        tool(
            "memory_search",
            "Mandatory recall step: semantically search MEMORY.md + memory/*.md before answering questions about prior work, decisions, dates, people, preferences, or todos; returns top snippets with path + lines.",
            json!({ "type": "object", "properties": {
                "query": string("What to look for"),
                "maxResults": integer("Maximum number of snippets"),
                "minScore": { "type": "number", "description": "Minimum similarity score (0-1)" },
            }, "required": ["query"], "additionalProperties": false }),
        ),
        tool(
            "image",
            "Analyze an image with the configured image model (agents.defaults.imageModel). Provide a prompt and image path or URL. Only use this tool when the image was NOT already provided in the user's message.",
            json!({ "type": "object", "properties": {
                "prompt": string("What to look for in the image"),
                "image": string("Local path or URL of the image"),
                "model": string("Override the image model"),
                "maxBytesMb": { "type": "number" },
            }, "required": ["image"], "additionalProperties": false }),
        ),
    ])
}

/// A plausible `ls -la` listing of at least `min_bytes`, used to pad the tool result.
fn listing(min_bytes: usize) -> String {
    let mut rng = Lcg(0x6c73_2d6c_6121);
    let names = [
        "invoice", "notes", "draft", "receipt", "photo", "scan", "export", "meeting", "todo",
        "backup", "talk", "budget",
    ];
    let exts = ["md", "pdf", "txt", "jpg", "png", "csv", "json", "docx"];
    let mut out = String::from(
        "total 2184\ndrwxr-xr-x  9 sam sam   4096 Jan 14 09:12 .\ndrwxr-x--- 31 sam sam   4096 Jan 14 08:55 ..\n",
    );
    let mut n = 0u32;
    while out.len() < min_bytes {
        let size = 200 + rng.next() % 900_000;
        let day = 1 + rng.next() % 28;
        let hour = rng.next() % 24;
        let minute = rng.next() % 60;
        let name = rng.pick(&names);
        let ext = rng.pick(&exts);
        out.push_str(&format!(
            "-rw-r--r--  1 sam sam {size:>7} Jan {day:>2} {hour:02}:{minute:02} {name}-{n:03}.{ext}\n"
        ));
        n += 1;
    }
    out
}

/// The OpenClaw-like request, padded to about [`OPENCLAW_BODY_BYTES`].
fn openclaw_body(model: &str, stream: bool) -> anyhow::Result<Value> {
    let build = |tool_output: &str| {
        let mut body = json!({
            "model": model,
            "messages": [
                { "role": "system", "content": system_prompt() },
                { "role": "user", "content": "[Telegram Sam id:40213377 +2m Tue 2025-01-14 09:14 CET] morning! anything new in ~/inbox since friday?" },
                { "role": "assistant", "content": null, "tool_calls": [{
                    "id": "call_Qw3rT9zXk1", "type": "function",
                    "function": { "name": "exec", "arguments": "{\"command\":\"ls -la ~/inbox\",\"timeout\":20}" },
                }] },
                { "role": "tool", "tool_call_id": "call_Qw3rT9zXk1", "content": tool_output },
                { "role": "assistant", "content": "Morning! Three new things since Friday: the Northwind invoice (PDF), your notes from the Rust workshop, and a scan of the flat viewing form. Want me to file the invoice with the others and add the viewing to your calendar?" },
                { "role": "user", "content": "[Telegram Sam id:40213377 +1m Tue 2025-01-14 09:16 CET] yes please, and remind me thursday evening to send the form back" },
            ],
            "tools": tools(),
            "tool_choice": "auto",
            "parallel_tool_calls": true,
            "max_completion_tokens": 64000,
            "store": false,
            "prompt_cache_key": "agent:main:telegram:40213377",
        });
        if stream && let Some(obj) = body.as_object_mut() {
            obj.insert("stream".into(), Value::Bool(true));
            obj.insert("stream_options".into(), json!({ "include_usage": true }));
        }
        body
    };
    let unpadded = serde_json::to_vec(&build(""))?.len();
    Ok(build(&listing(
        OPENCLAW_BODY_BYTES.saturating_sub(unpadded),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() -> anyhow::Result<()> {
        let prompt = system_prompt();
        assert!(
            (48_000..=51_000).contains(&prompt.len()),
            "{}",
            prompt.len()
        );
        let body = Workload::Openclaw.body("mock-gpt")?;
        assert!((67_000..=70_000).contains(&body.len()), "{}", body.len());
        let v: Value = serde_json::from_slice(&body)?;
        assert_eq!(v["tools"].as_array().map(Vec::len), Some(14));
        let streamed: Value = serde_json::from_slice(&Workload::OpenclawStream.body("x")?)?;
        assert_eq!(streamed["stream"], Value::Bool(true));
        Ok(())
    }
}
