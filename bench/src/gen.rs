//! Realistic GELF 1.1 messages, as a fleet of Java and Python web services would send them.
//!
//! Generation is deterministic for a seed, so two runs send the same bytes. Every message
//! carries `_ingest_token` (attribution), `_run` (so the benchmark can count its own messages)
//! and `_bench_transport` (so each transport's messages are counted apart).

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};

/// What every generated message is tagged with.
#[derive(Debug, Clone)]
pub struct Tags {
    pub ingest_token: String,
    pub run: String,
    pub transport: String,
}

const SERVICES: &[(&str, &str)] = &[
    ("checkout", "java"),
    ("catalog", "java"),
    ("payments", "java"),
    ("search", "python"),
    ("accounts", "python"),
    ("notifications", "python"),
];

const STAGES: &[(&str, u32)] = &[("production", 70), ("staging", 20), ("integration", 10)];

/// (level, weight): info most of the time, some debug, warnings and errors.
const LEVELS: &[(u8, u32)] = &[(6, 68), (7, 10), (4, 13), (3, 8), (2, 1)];

const METHODS: &[(&str, u32)] = &[("GET", 70), ("POST", 20), ("PUT", 6), ("DELETE", 4)];

const PATHS: &[&str] = &[
    "/api/v2/orders/{id}",
    "/api/v2/orders/{id}/items",
    "/api/v2/cart/{id}",
    "/api/v2/products/{id}",
    "/api/v2/products?category={word}&page={n}",
    "/api/v2/search?q={word}+{word}&limit=20",
    "/api/v2/users/{id}/profile",
    "/api/v2/payments/{id}/capture",
    "/api/v2/sessions",
    "/health",
    "/metrics",
];

const WORDS: &[&str] = &[
    "shoes",
    "jacket",
    "coffee",
    "lamp",
    "desk",
    "garden",
    "kitchen",
    "books",
    "laptop",
    "headphones",
    "bicycle",
    "tent",
    "camera",
    "watch",
    "sofa",
    "blender",
    "toys",
    "paint",
];

const PROVIDERS: &[&str] = &["stripe", "adyen", "paypal", "klarna"];

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Mobile/15E148",
    "okhttp/4.12.0",
    "python-requests/2.31.0",
    "Go-http-client/1.1",
];

const JAVA_EXCEPTIONS: &[&str] = &[
    "java.net.SocketTimeoutException: Read timed out",
    "java.lang.IllegalStateException: Order is already captured",
    "org.springframework.dao.DataAccessResourceFailureException: Unable to acquire JDBC Connection",
    "java.lang.NullPointerException: Cannot invoke \"Customer.getAddress()\" because \"customer\" is null",
];

const PY_EXCEPTIONS: &[&str] = &[
    "requests.exceptions.ReadTimeout: HTTPConnectionPool(host='inventory', port=8080): Read timed out. (read timeout=2.0)",
    "KeyError: 'shipping_address'",
    "psycopg2.OperationalError: could not connect to server: Connection refused",
    "ValueError: invalid literal for int() with base 10: 'abc'",
];

/// Generates `n` messages (each a serialized JSON object, no terminator).
pub fn generate(n: usize, seed: u64, tags: &Tags, now_secs: f64) -> Vec<Vec<u8>> {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed),
        hosts: Vec::new(),
    };
    g.hosts = (0..42)
        .map(|i| {
            let (svc, _) = SERVICES[i % SERVICES.len()];
            format!("{svc}-{:x}-{}", 0x5f00 + i * 37, g.pod_suffix())
        })
        .collect();
    (0..n)
        .map(|i| g.message(tags, now_secs + i as f64 * 1e-5))
        .collect()
}

struct Gen {
    rng: StdRng,
    hosts: Vec<String>,
}

impl Gen {
    fn weighted<T: Copy>(&mut self, items: &[(T, u32)]) -> T {
        let total: u32 = items.iter().map(|(_, w)| w).sum();
        let mut pick = self.rng.random_range(0..total);
        for (item, w) in items {
            if pick < *w {
                return *item;
            }
            pick -= w;
        }
        items[items.len() - 1].0
    }

    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items.choose(&mut self.rng).copied().unwrap_or("")
    }

    fn pod_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        (0..5)
            .map(|_| ALPHABET[self.rng.random_range(0..ALPHABET.len())] as char)
            .collect()
    }

    fn hex(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from_digit(self.rng.random_range(0..16), 16).unwrap_or('0'))
            .collect()
    }

    fn uuid(&mut self) -> String {
        format!(
            "{}-{}-4{}-a{}-{}",
            self.hex(8),
            self.hex(4),
            self.hex(3),
            self.hex(3),
            self.hex(12)
        )
    }

    fn ip(&mut self) -> String {
        format!(
            "10.{}.{}.{}",
            self.rng.random_range(0..32),
            self.rng.random_range(0..256),
            self.rng.random_range(1..255)
        )
    }

    fn path(&mut self) -> String {
        let template = self.pick(PATHS);
        let mut out = String::with_capacity(template.len() + 16);
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let Some(end) = rest[start..].find('}') else {
                break;
            };
            match &rest[start + 1..start + end] {
                "id" => out.push_str(&self.rng.random_range(1000..9_999_999u32).to_string()),
                "n" => out.push_str(&self.rng.random_range(1..40u32).to_string()),
                _ => out.push_str(self.pick(WORDS)),
            }
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        out
    }

    fn message(&mut self, tags: &Tags, ts: f64) -> Vec<u8> {
        let s = self.rng.random_range(0..SERVICES.len());
        let (service, lang) = SERVICES[s];
        // Hosts are named after their service (host i runs service i % SERVICES.len()).
        let per_service = self.hosts.len() / SERVICES.len();
        let host = self.hosts[s + SERVICES.len() * self.rng.random_range(0..per_service)].clone();
        let stage = self.weighted(STAGES);
        let mut level = self.weighted(LEVELS);
        let request_id = self.uuid();
        let user_id: u64 = self.rng.random_range(10_000..2_000_000);
        let path = self.path();
        let duration_ms: f64 =
            ((self.rng.random::<f64>().powi(3) * 2400.0 + 0.4) * 10.0).round() / 10.0;
        let mut status: u16 = *[
            200u16, 200, 200, 200, 200, 201, 204, 301, 304, 400, 401, 404, 409, 500, 503,
        ]
        .choose(&mut self.rng)
        .unwrap_or(&200);
        if level <= 3 && status < 500 {
            status = 500;
        }
        let access = self.rng.random_bool(0.45);
        if access && status >= 500 {
            level = 3;
        }
        let short = if access {
            let method = self.weighted(METHODS);
            let bytes: u32 = self.rng.random_range(0..60_000);
            let ua = self.pick(USER_AGENTS);
            if lang == "java" {
                format!(
                    "{} - - \"{method} {path} HTTP/1.1\" {status} {bytes} {duration_ms:.1}ms \"{ua}\"",
                    self.ip()
                )
            } else {
                format!("{method} {path} {status} {bytes}B in {duration_ms:.1}ms ({ua})")
            }
        } else {
            self.app_message(service, level, user_id, duration_ms)
        };

        let mut m = Map::new();
        m.insert("version".into(), "1.1".into());
        m.insert("host".into(), host.into());
        m.insert("short_message".into(), short.into());
        if level <= 3 && self.rng.random_bool(0.6) {
            m.insert(
                "full_message".into(),
                self.stack_trace(service, lang).into(),
            );
        }
        m.insert(
            "timestamp".into(),
            Value::from((ts * 1000.0).round() / 1000.0),
        );
        m.insert("level".into(), u64::from(level).into());
        m.insert("_ingest_token".into(), tags.ingest_token.clone().into());
        m.insert("_service".into(), service.into());
        m.insert("_stage".into(), stage.into());
        m.insert("_request_id".into(), request_id.into());
        m.insert("_user_id".into(), user_id.into());
        m.insert("_duration_ms".into(), Value::from(duration_ms));
        m.insert("_http_status".into(), u64::from(status).into());
        m.insert("_path".into(), path.into());
        if lang == "java" {
            let thread = format!("http-nio-8080-exec-{}", self.rng.random_range(1..200));
            m.insert("_thread".into(), thread.into());
            m.insert(
                "_logger".into(),
                format!("com.example.{service}.web.RequestLogger").into(),
            );
        } else {
            m.insert("_logger".into(), format!("{service}.views").into());
            m.insert(
                "_process".into(),
                u64::from(self.rng.random_range(7u32..64)).into(),
            );
        }
        m.insert("_trace_id".into(), self.hex(32).into());
        m.insert("_run".into(), tags.run.clone().into());
        m.insert("_bench_transport".into(), tags.transport.clone().into());
        serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
    }

    fn app_message(&mut self, service: &str, level: u8, user: u64, ms: f64) -> String {
        let order = self.rng.random_range(100_000..9_999_999u32);
        let n = self.rng.random_range(1..9u32);
        let word = self.pick(WORDS);
        match level {
            0..=3 => match self.rng.random_range(0..4) {
                0 => format!("Failed to capture payment for order {order}: provider {} answered 502", self.pick(PROVIDERS)),
                1 => format!("Unhandled exception while processing request for user {user}"),
                2 => format!("Could not publish event OrderPlaced for order {order} to topic orders.v1 after {n} attempts"),
                _ => format!("Database query failed in {service} repository after {ms:.1} ms"),
            },
            4 => match self.rng.random_range(0..4) {
                0 => format!("Slow query: SELECT * FROM orders WHERE customer_id = {user} took {ms:.1} ms"),
                1 => format!("Connection pool near exhaustion: active={} idle=0 waiting={n}", 18 + n),
                2 => format!("Retrying call to inventory-service attempt={n}/5 after {}ms", n * 200),
                _ => format!("Cache miss ratio high for key prefix {word}: {}%", 40 + n * 5),
            },
            7 => format!("Loaded {n} {word} recommendations for user {user} from cache in {ms:.1} ms"),
            _ => match self.rng.random_range(0..6) {
                0 => format!("Order {order} placed by user {user} with {n} items, total {}.{:02} EUR", n * 17, order % 100),
                1 => format!("Payment authorized for order {order} via {} in {ms:.1} ms", self.pick(PROVIDERS)),
                2 => format!("User {user} logged in from {}", self.ip()),
                3 => format!("Search for '{word}' returned {} results in {ms:.1} ms", order % 500),
                4 => format!("Sent order confirmation email for order {order} to user {user}"),
                _ => format!("Updated stock for product {order}: {word} quantity {n}"),
            },
        }
    }

    fn stack_trace(&mut self, service: &str, lang: &str) -> String {
        let frames = self.rng.random_range(5..14);
        if lang == "java" {
            let mut s = self.pick(JAVA_EXCEPTIONS).to_string();
            for i in 0..frames {
                let class = [
                    "OrderService",
                    "PaymentClient",
                    "OrderController",
                    "JdbcTemplate",
                    "RetryTemplate",
                ][i % 5];
                s.push_str(&format!(
                    "\n\tat com.example.{service}.{}.{}({class}.java:{})",
                    class,
                    ["handle", "process", "execute", "doInvoke", "call"][(i * 7) % 5],
                    self.rng.random_range(20..900)
                ));
            }
            s.push_str(&format!("\n\t... {} more", self.rng.random_range(20..90)));
            s
        } else {
            let mut s = String::from("Traceback (most recent call last):");
            for i in 0..frames.min(8) {
                let file = ["views.py", "services.py", "clients.py", "models.py"][i % 4];
                s.push_str(&format!(
                    "\n  File \"/app/{service}/{file}\", line {}, in {}\n    result = self.{}(request)",
                    self.rng.random_range(10..600),
                    ["dispatch", "handle", "fetch", "save"][i % 4],
                    ["call", "load", "get", "commit"][(i + 1) % 4]
                ));
            }
            s.push('\n');
            s.push_str(self.pick(PY_EXCEPTIONS));
            s
        }
    }
}

/// Java services of a web shop, each logging through a GELF appender (logback-gelf style).
const JAVA_SERVICES: &[(&str, &str)] = &[
    ("orders", "com.shop.orders"),
    ("payments", "com.shop.payments"),
    ("inventory", "com.shop.inventory"),
    ("shipping", "com.shop.shipping"),
    ("customers", "com.shop.customers"),
    ("gateway", "com.shop.gateway"),
];

/// Classes of a service; `{S}` is the service's name, capitalised.
const JAVA_CLASSES: &[&str] = &[
    "web.{S}Controller",
    "service.{S}Service",
    "client.PspClient",
    "repo.{S}Repository",
    "kafka.EventPublisher",
];

/// (level, weight): info most of the time; level 3 (about 5%) always carries a stack trace.
const JAVA_LEVELS: &[(u8, u32)] = &[(6, 80), (7, 8), (4, 7), (3, 5)];

const CARRIERS: &[&str] = &["dhl", "ups", "dpd", "gls"];

const JAVA_ERRORS: &[&str] = &[
    "java.net.SocketTimeoutException: Read timed out",
    "java.lang.IllegalStateException: Order is already captured",
    "org.springframework.dao.DataAccessResourceFailureException: Unable to acquire JDBC Connection",
    "java.lang.NullPointerException: Cannot invoke \"Customer.getAddress()\" because \"customer\" is null",
    "org.springframework.web.client.HttpServerErrorException$BadGateway: 502 Bad Gateway",
];

const JAVA_FRAMES: &[&str] = &[
    "org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:883)",
    "org.apache.catalina.core.ApplicationFilterChain.doFilter(ApplicationFilterChain.java:166)",
    "org.springframework.transaction.interceptor.TransactionInterceptor.invoke(TransactionInterceptor.java:119)",
    "com.zaxxer.hikari.pool.HikariPool.getConnection(HikariPool.java:181)",
    "org.springframework.retry.support.RetryTemplate.doExecute(RetryTemplate.java:357)",
    "java.base/java.lang.Thread.run(Thread.java:1583)",
];

/// GELF messages held in one buffer, each followed by a newline (newline-separated JSON, the
/// body `POST /gelf` takes in bulk and the file the peers read).
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Every message followed by `\n`.
    pub bytes: Vec<u8>,
    /// Where each message starts in `bytes`; one more entry, `bytes.len()`, at the end.
    starts: Vec<usize>,
    /// Where the value of `_ingest_token` starts in `bytes`, per message.
    token_at: Vec<usize>,
    token_len: usize,
    /// Messages with a `full_message` (a stack trace).
    pub with_trace: usize,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Message `i`, without its newline.
    pub fn message(&self, i: usize) -> &[u8] {
        &self.bytes[self.starts[i]..self.starts[i + 1] - 1]
    }

    /// Messages `from..to`, separated by newlines, without the last one's.
    pub fn span(&self, from: usize, to: usize) -> &[u8] {
        &self.bytes[self.starts[from]..self.starts[to] - 1]
    }

    /// Average size of a message's JSON, bytes (without the separator).
    pub fn avg_len(&self) -> f64 {
        if self.is_empty() {
            0.0
        } else {
            (self.bytes.len() - self.len()) as f64 / self.len() as f64
        }
    }

    /// Puts another ingest token of the same length into every message (a fresh peng hands out
    /// a new token; the messages stay the same otherwise).
    pub fn set_ingest_token(&mut self, token: &str) -> Result<(), String> {
        if token.len() != self.token_len
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(format!(
                "ingest token {token:?} is not {} plain characters like the one the data set was made with",
                self.token_len
            ));
        }
        for &at in &self.token_at {
            self.bytes[at..at + token.len()].copy_from_slice(token.as_bytes());
        }
        Ok(())
    }

    /// The `_request_id` of message `i`.
    pub fn request_id(&self, i: usize) -> Option<String> {
        let v: Value = serde_json::from_slice(self.message(i)).ok()?;
        v.get("_request_id")?.as_str().map(str::to_string)
    }
}

/// Generates `n` messages as Java services behind a web shop log them through a GELF appender:
/// about 400 bytes of JSON each, a unique `_request_id` (UUID) and `_trace_id` (W3C, 32 hex
/// digits) per message, order ids in the text and in `_order_id` of order-related messages,
/// and a Java stack trace in `full_message` on errors (about 5% of messages). The same seed
/// gives the same bytes; timestamps start at `first_secs` and go up by `step_secs` per message.
pub fn java_services(
    n: usize,
    seed: u64,
    ingest_token: &str,
    first_secs: f64,
    step_secs: f64,
) -> Dataset {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed),
        hosts: Vec::new(),
    };
    // 4 pods per service, named as Kubernetes names a deployment's pods.
    g.hosts = (0..JAVA_SERVICES.len() * 4)
        .map(|i| {
            let (svc, _) = JAVA_SERVICES[i % JAVA_SERVICES.len()];
            format!("{svc}-{}-{}", g.hex(8), g.pod_suffix())
        })
        .collect();
    let mut bytes = Vec::with_capacity(n * 420);
    let mut starts = Vec::with_capacity(n + 1);
    let mut token_at = Vec::with_capacity(n);
    let mut with_trace = 0;
    const TOKEN_KEY: &[u8] = b"\"_ingest_token\":\"";
    for i in 0..n {
        let (m, trace) = g.java_message(ingest_token, first_secs + i as f64 * step_secs);
        let at = m
            .windows(TOKEN_KEY.len())
            .position(|w| w == TOKEN_KEY)
            .map_or(0, |p| p + TOKEN_KEY.len());
        starts.push(bytes.len());
        token_at.push(bytes.len() + at);
        bytes.extend_from_slice(&m);
        bytes.push(b'\n');
        with_trace += usize::from(trace);
    }
    starts.push(bytes.len());
    Dataset {
        bytes,
        starts,
        token_at,
        token_len: ingest_token.len(),
        with_trace,
    }
}

impl Gen {
    /// One message and whether it has a stack trace.
    fn java_message(&mut self, ingest_token: &str, ts: f64) -> (Vec<u8>, bool) {
        let s = self.rng.random_range(0..JAVA_SERVICES.len());
        let (service, package) = JAVA_SERVICES[s];
        let host = self.hosts[s + JAVA_SERVICES.len() * self.rng.random_range(0..4)].clone();
        let level = self.weighted(JAVA_LEVELS);
        let order = self.rng.random_range(10_000_000..99_999_999u32);
        let customer = self.rng.random_range(100_000..999_999u32);
        let n = self.rng.random_range(1..9u32);
        let ms = self.rng.random_range(2..900u32);
        let class = {
            let mut name = service.to_string();
            name[..1].make_ascii_uppercase();
            self.pick(JAVA_CLASSES).replace("{S}", &name)
        };
        let (text, about_order) = match level {
            3 => match self.rng.random_range(0..3) {
                0 => (format!("Payment capture failed for order {order}"), true),
                1 => (format!("Could not reserve stock for order {order}"), true),
                _ => (format!("Request failed for customer {customer}"), false),
            },
            4 => match self.rng.random_range(0..3) {
                0 => (
                    format!("Retrying inventory call for order {order} ({n}/3)"),
                    true,
                ),
                1 => (format!("Slow query findByCustomer took {ms} ms"), false),
                _ => (
                    format!("Pool near exhaustion: active={} waiting={n}", 18 + n),
                    false,
                ),
            },
            7 => (
                format!("Cache miss for order {order}, loaded in {ms} ms"),
                true,
            ),
            _ => match self.rng.random_range(0..6) {
                0 => (format!("Order {order} created with {n} items"), true),
                1 => (
                    format!("Payment authorized for order {order} in {ms} ms"),
                    true,
                ),
                2 => (
                    format!("Order {order} shipped with {}", self.pick(CARRIERS)),
                    true,
                ),
                3 => (format!("Customer {customer} logged in"), false),
                4 => (format!("GET /api/orders/{order} 200 {ms}ms"), true),
                _ => (
                    format!("Stock updated for sku {}: {n}", order % 100_000),
                    false,
                ),
            },
        };
        let mut m = Map::new();
        m.insert("version".into(), "1.1".into());
        m.insert("host".into(), host.into());
        m.insert("short_message".into(), text.into());
        let trace = level <= 3;
        if trace {
            m.insert(
                "full_message".into(),
                self.java_trace(package, &class).into(),
            );
        }
        m.insert(
            "timestamp".into(),
            Value::from((ts * 1000.0).round() / 1000.0),
        );
        m.insert("level".into(), u64::from(level).into());
        m.insert("_ingest_token".into(), ingest_token.into());
        m.insert("_service".into(), service.into());
        m.insert("_logger".into(), format!("{package}.{class}").into());
        m.insert("_request_id".into(), self.uuid().into());
        m.insert("_trace_id".into(), self.hex(32).into());
        if about_order {
            m.insert("_order_id".into(), u64::from(order).into());
        }
        (
            serde_json::to_vec(&Value::Object(m)).unwrap_or_default(),
            trace,
        )
    }

    fn java_trace(&mut self, package: &str, class: &str) -> String {
        let mut s = self.pick(JAVA_ERRORS).to_string();
        let simple = class.rsplit('.').next().unwrap_or(class);
        for i in 0..self.rng.random_range(3..6) {
            s.push_str(&format!(
                "\n\tat {package}.{class}.{}({simple}.java:{})",
                ["handle", "process", "execute", "call"][i % 4],
                self.rng.random_range(20..900)
            ));
        }
        for _ in 0..self.rng.random_range(2..5) {
            s.push_str("\n\tat ");
            s.push_str(self.pick(JAVA_FRAMES));
        }
        s.push_str(&format!("\n\t... {} more", self.rng.random_range(20..90)));
        s
    }
}

/// zlib-compresses a message, as GELF UDP senders do (graypy's default).
pub fn zlib(payload: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(payload.len() / 2),
        flate2::Compression::default(),
    );
    enc.write_all(payload)?;
    enc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags() -> Tags {
        Tags {
            ingest_token: format!("pgi_{}", "ab".repeat(20)),
            run: "r0123abcd".into(),
            transport: "udp".into(),
        }
    }

    #[test]
    fn messages_are_valid_gelf_of_realistic_size() {
        let msgs = generate(2000, 7, &tags(), 1_700_000_000.0);
        let mut sizes: Vec<usize> = Vec::new();
        let mut hosts = std::collections::HashSet::new();
        let mut with_trace = 0;
        for m in &msgs {
            let v: Value = serde_json::from_slice(m).unwrap();
            assert_eq!(v["version"], "1.1");
            assert!(v["short_message"].as_str().is_some_and(|s| !s.is_empty()));
            assert!(v["timestamp"].as_f64().is_some());
            assert_eq!(v["_run"], "r0123abcd");
            assert_eq!(v["_bench_transport"], "udp");
            assert!(v["_ingest_token"].as_str().is_some());
            hosts.insert(v["host"].as_str().unwrap().to_string());
            if v.get("full_message").is_some() {
                with_trace += 1;
            } else {
                sizes.push(m.len());
            }
        }
        let avg = sizes.iter().sum::<usize>() / sizes.len();
        assert!((300..=700).contains(&avg), "average size {avg}");
        assert!(
            sizes.iter().all(|s| (250..=900).contains(s)),
            "{:?}",
            sizes.iter().max()
        );
        assert!(hosts.len() > 30);
        assert!(with_trace > 50 && with_trace < 400, "{with_trace}");
        assert!(msgs.iter().all(|m| m.len() < 8000));
    }

    #[test]
    fn generation_is_deterministic() {
        assert_eq!(generate(50, 1, &tags(), 1.0), generate(50, 1, &tags(), 1.0));
        assert_ne!(generate(50, 1, &tags(), 1.0), generate(50, 2, &tags(), 1.0));
    }

    #[test]
    fn java_services_are_about_400_bytes_with_unique_ids_and_5_percent_traces() {
        let token = format!("pgi_{}", "ab".repeat(20));
        let d = java_services(20_000, 3, &token, 1_700_000_000.0, 1e-5);
        assert_eq!(d.len(), 20_000);
        let (mut requests, mut traces) = (
            std::collections::HashSet::new(),
            std::collections::HashSet::new(),
        );
        let mut orders = 0;
        for i in 0..d.len() {
            let v: Value = serde_json::from_slice(d.message(i)).unwrap();
            assert_eq!(v["_ingest_token"], token.as_str());
            assert!(v["short_message"].as_str().is_some_and(|s| !s.is_empty()));
            assert!(requests.insert(v["_request_id"].as_str().unwrap().to_string()));
            assert!(traces.insert(v["_trace_id"].as_str().unwrap().to_string()));
            orders += usize::from(v.get("_order_id").is_some());
            assert_eq!(v.get("full_message").is_some(), v["level"] == 3);
        }
        let avg = d.avg_len();
        assert!((370.0..=430.0).contains(&avg), "average {avg}");
        let share = d.with_trace as f64 / d.len() as f64;
        assert!((0.04..0.06).contains(&share), "{share}");
        assert!(orders > d.len() / 3, "{orders}");
        assert_eq!(d.span(0, 2).split(|b| *b == b'\n').count(), 2);
        assert_eq!(d.request_id(5).unwrap(), {
            let v: Value = serde_json::from_slice(d.message(5)).unwrap();
            v["_request_id"].as_str().unwrap().to_string()
        });
    }

    #[test]
    fn java_services_take_a_new_token_and_are_deterministic() {
        let a = format!("pgi_{}", "ab".repeat(20));
        let b = format!("pgi_{}", "cd".repeat(20));
        let mut d = java_services(100, 9, &a, 1.0, 1e-5);
        d.set_ingest_token(&b).unwrap();
        assert_eq!(d.bytes, java_services(100, 9, &b, 1.0, 1e-5).bytes);
        assert!(d.set_ingest_token("pgi_short").is_err());
        assert_ne!(d.bytes, java_services(100, 10, &b, 1.0, 1e-5).bytes);
    }

    #[test]
    fn zlib_output_has_the_zlib_magic() {
        let z = zlib(b"{\"version\":\"1.1\"}").unwrap();
        assert_eq!(z[0], 0x78);
        assert_eq!((u16::from(z[0]) * 256 + u16::from(z[1])) % 31, 0);
    }
}
