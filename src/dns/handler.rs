//! The general path, the reference behaviour: TCP queries always (`dns::tcp`), UDP queries the
//! fast path (`dns::fast`) declines, and every query of the hickory UDP engine (kept for tests
//! and benchmarks: hickory-server's `Server` calling this `RequestHandler`). hickory-proto
//! parses the query, `answer::answer` answers it, `dns::encode` writes the response, once.

use std::iter;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Header, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_server::proto::serialize::binary::BinDecoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponseBuilder, Queries};
use tracing::debug;

use crate::dns::answer::{self, AnswerFor, Reply};
use crate::dns::ecs::Ecs;
use crate::dns::encode::{self, Content, Opt};
use crate::dns::guard::{CookieCheck, Guard, GuardHandle, Now};
use crate::dns::query;
use crate::dns::rrl::{self, Verdict};
use crate::table::labels::rcode_of;
use crate::table::{Account, Class, ClientAddr, Proto, QueryKey, RoutingTable, TableHandle};

/// The request handler registered with hickory-server.
#[derive(Clone)]
pub struct DnsHandler {
    table: TableHandle,
    guard: Arc<GuardHandle>,
}

impl DnsHandler {
    pub fn new(table: TableHandle, guard: Arc<GuardHandle>) -> Self {
        Self { table, guard }
    }
}

/// What to send back for a request.
enum Prepared<'t> {
    /// An error with no records (FORMERR, NOTIMP, BADVERS, REFUSED…).
    Error(ResponseCode),
    /// An error with no records and no question: the question cannot be echoed as received.
    Bare(ResponseCode),
    Reply(Reply<'t>),
}

/// A prepared answer and what the OPT record of the response carries.
struct Prep<'t> {
    prepared: Prepared<'t>,
    /// The query's valid ECS option (echoed with our scope).
    ecs: Option<Ecs>,
    /// The query's COOKIE option, judged (answered with our cookie).
    cookie: CookieCheck,
}

impl<'t> Prep<'t> {
    fn error(code: ResponseCode) -> Self {
        Self {
            prepared: Prepared::Error(code),
            ecs: None,
            cookie: CookieCheck::None,
        }
    }
}

/// The request's answer, with its ECS and COOKIE options.
fn prepare<'t>(table: &'t RoutingTable, guard: &Guard, request: &Request, now: Now) -> Prep<'t> {
    if request.metadata.op_code != OpCode::Query {
        return Prep::error(ResponseCode::NotImp);
    }
    if let Some(edns) = &request.edns
        && edns.version() > 0
    {
        return Prep::error(ResponseCode::BADVERS);
    }
    // RFC 7871 §7.1.1: a malformed ECS option is a FORMERR.
    let opts = match request.edns {
        Some(_) => match query::options_of_message(request.as_slice()) {
            Ok(o) => o,
            Err(reason) => {
                debug!(src = %request.src(), reason, "malformed EDNS option");
                return Prep::error(ResponseCode::FormErr);
            }
        },
        None => Default::default(),
    };
    let cookie = guard.cookie(&opts, request.src().ip(), now);
    if cookie == CookieCheck::Malformed {
        debug!(src = %request.src(), "malformed COOKIE option");
        return Prep::error(ResponseCode::FormErr);
    }
    let queries = request.queries.queries();
    if queries.is_empty() && matches!(cookie, CookieCheck::Ok(_)) {
        // RFC 7873 §5.4: a query for our cookie alone.
        return Prep {
            prepared: Prepared::Error(ResponseCode::NoError),
            ecs: None,
            cookie,
        };
    }
    if queries.len() != 1 {
        return Prep::error(ResponseCode::FormErr);
    }
    // hickory parsed the name, so a name the raw reader refuses uses a compression pointer:
    // in a query it can only point back into the header (hickory allows only backward
    // pointers), and the question is echoed as received, so it would point into our
    // response's header. FORMERR without a question instead.
    if query::question_name(request.as_slice(), &mut [0; 256]).is_none() {
        debug!(src = %request.src(), "compression pointer in the question");
        return Prep {
            prepared: Prepared::Bare(ResponseCode::FormErr),
            ecs: None,
            cookie,
        };
    }
    let ecs = opts.ecs;
    let client = match ecs.and_then(|e| e.location_addr()) {
        Some(ip) => ClientAddr { ip, from_ecs: true },
        None => ClientAddr::resolver(request.src().ip()),
    };
    let q = queries[0].original();
    let mut reply = answer::answer(
        table,
        q.name(),
        q.query_type(),
        q.query_class(),
        AnswerFor::Client(client),
    );
    if !client.from_ecs {
        reply.scope = 0;
    }
    Prep {
        prepared: Prepared::Reply(reply),
        ecs,
        cookie,
    }
}

/// The rate-limiting account of a prepared answer.
fn account(table: &RoutingTable, request: &Request, prepared: &Prepared<'_>) -> Account {
    match prepared {
        Prepared::Reply(r) => match request.queries.queries().first() {
            Some(q) => {
                let q = q.original();
                rrl::account_of(table, r, q.name(), q.query_type())
            }
            None => Account::new(Class::Error, b"", 0),
        },
        _ => Account::new(Class::Error, b"", 0),
    }
}

/// Count a served answer (the general answer logic never counts, so explain does not).
fn count_served(table: &RoutingTable, prep: &Prep<'_>) {
    if let Prepared::Reply(r) = &prep.prepared
        && let Some(si) = r.service
    {
        table.count_answer(si as usize, r.variant);
    }
}

/// The OPT record of the response, when the query had one: our maximum UDP payload, the
/// query's DO bit, its ECS option with our scope, and our COOKIE option.
fn response_opt<'p>(
    request: &Request,
    table: &RoutingTable,
    prep: &'p Prep<'_>,
) -> Option<Opt<'p>> {
    request.edns.as_ref().map(|q| Opt {
        payload: table.settings.max_udp_payload,
        dnssec_ok: q.flags().dnssec_ok,
        ecs: prep.ecs.map(|e| {
            let scope = match &prep.prepared {
                Prepared::Reply(r) => r.scope,
                Prepared::Error(_) | Prepared::Bare(_) => 0,
            };
            (e, scope)
        }),
        cookie: match &prep.cookie {
            CookieCheck::Ok(o) => Some(&o.reply),
            _ => None,
        },
    })
}

/// Largest UDP response for this request (RFC 1035 512, or the advertised EDNS size clamped to
/// our configured maximum).
fn udp_limit(request: &Request, table: &RoutingTable) -> usize {
    match &request.edns {
        Some(e) => e.max_payload().clamp(512, table.settings.max_udp_payload) as usize,
        None => 512,
    }
}

/// The query-metrics key of a prepared answer.
fn stats_key(table: &RoutingTable, prepared: &Prepared<'_>, proto: Proto, ecs: bool) -> QueryKey {
    match prepared {
        Prepared::Error(code) | Prepared::Bare(code) => {
            QueryKey::new(0, 0, rcode_of(*code), proto, ecs)
        }
        Prepared::Reply(r) => r.stats_key(table, proto, ecs),
    }
}

/// Apply response rate limiting to a prepared UDP answer: `None` = drop it, else whether to
/// send it truncated (a slip). A slip to a client that sent a cookie is a BADCOOKIE answer with
/// our cookie instead (RFC 7873 §5.2.3), so that it retries with the cookie and passes.
fn limit_udp(
    table: &RoutingTable,
    guard: &Guard,
    request: &Request,
    prep: &mut Prep<'_>,
    now: Now,
) -> Option<bool> {
    if guard.rrl.is_none() {
        return Some(false);
    }
    let acct = account(table, request, &prep.prepared);
    match guard.limit(request.src().ip(), &prep.cookie, acct, now) {
        Verdict::Send => Some(false),
        Verdict::Drop => None,
        Verdict::Slip if matches!(prep.cookie, CookieCheck::Ok(_)) => {
            prep.prepared = Prepared::Error(ResponseCode::BADCOOKIE);
            Some(false)
        }
        Verdict::Slip => Some(true),
    }
}

/// The response to a request and its metrics key; `None`: rate-limited, nothing is sent. An
/// answer that does not fit (UDP: the client's limit; TCP: 64 KiB) is sent with TC=1 and no
/// records; the response is `None` when not even that fits.
fn respond(
    table: &RoutingTable,
    guard: &Guard,
    request: &Request,
    now: Now,
) -> Option<(Option<Vec<u8>>, QueryKey)> {
    let udp = request.protocol() == Protocol::Udp;
    let mut prep = prepare(table, guard, request, now);
    let slip = if udp {
        limit_udp(table, guard, request, &mut prep, now)?
    } else {
        false
    };
    if !slip {
        count_served(table, &prep);
    }
    let proto = if udp { Proto::Udp } else { Proto::Tcp };
    let key = stats_key(table, &prep.prepared, proto, prep.ecs.is_some());
    let limit = if udp {
        udp_limit(request, table)
    } else {
        usize::from(u16::MAX)
    };
    let (question, qdcount) = match prep.prepared {
        Prepared::Bare(_) => (&[][..], 0),
        _ => (request.queries.as_bytes(), request.queries.len() as u16),
    };
    let (head, reply) = match &prep.prepared {
        Prepared::Error(code) | Prepared::Bare(code) => (Content::empty(*code, false), None),
        Prepared::Reply(r) => (Content::empty(r.rcode, r.authoritative), Some(r)),
    };
    let (head, reply) = if slip {
        (head.truncated(), None)
    } else {
        (head, reply)
    };
    let opt = response_opt(request, table, &prep);
    let bytes = encode::response(
        request.as_slice(),
        question,
        qdcount,
        head,
        reply,
        opt.as_ref(),
        limit,
    );
    Some((bytes, key))
}

/// A response with no question and no records: the header `query` (at least 4 bytes: ID and
/// flags) calls for, with this RCODE.
fn bare(query: &[u8], rcode: ResponseCode) -> Vec<u8> {
    let head = Content::empty(rcode, false);
    encode::response(query, &[], 0, head, None, None, usize::MAX).unwrap_or_default()
}

/// A FORMERR response built from a header we could parse (the rest of the packet could not be):
/// same ID and opcode, no sections.
pub fn formerr_from_header(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() < 12 || raw[2] & 0x80 != 0 {
        return None;
    }
    Some(bare(raw, ResponseCode::FormErr))
}

/// The general path for a UDP packet the fast path did not answer: the response and the
/// query's metrics key. `None` means drop it.
pub fn answer_udp_slow(
    table: &RoutingTable,
    guard: &Guard,
    raw: &[u8],
    src: SocketAddr,
    now: Now,
) -> Option<(Vec<u8>, QueryKey)> {
    match Request::from_bytes(raw.to_vec(), src, Protocol::Udp) {
        Err(e) => {
            debug!(%src, error = %e, "malformed query");
            formerr_from_header(raw).map(|r| (r, QueryKey::formerr(Proto::Udp)))
        }
        Ok(request) => {
            if request.metadata.message_type != MessageType::Query {
                return None;
            }
            let (bytes, key) = respond(table, guard, &request, now)?;
            Some((bytes?, key))
        }
    }
}

/// The answer to one message received over TCP, and its metrics key; `None`: no answer (a
/// message shorter than a header, or a response: QR=1). Never rate limited.
pub fn answer_tcp(
    table: &RoutingTable,
    guard: &Guard,
    raw: Vec<u8>,
    src: SocketAddr,
    now: Now,
) -> Option<(Vec<u8>, QueryKey)> {
    if raw.len() < 12 {
        return None;
    }
    let request = match Request::from_bytes(raw.clone(), src, Protocol::Tcp) {
        Ok(r) => r,
        Err(e) => {
            debug!(%src, error = %e, "malformed query");
            return formerr_from_header(&raw).map(|r| (r, QueryKey::formerr(Proto::Tcp)));
        }
    };
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    match respond(table, guard, &request, now)? {
        (Some(bytes), key) => Some((bytes, key)),
        // Too large even for TCP: SERVFAIL, as hickory-server answers then.
        (None, _) => Some((
            bare(&[raw[0], raw[1], 0, 0], ResponseCode::ServFail),
            QueryKey::new(0, 0, rcode_of(ResponseCode::ServFail), Proto::Tcp, false),
        )),
    }
}

/// An empty question section (hickory builds one only by reading zero questions).
static NO_QUESTION: std::sync::LazyLock<Queries> = std::sync::LazyLock::new(|| {
    Queries::read(&mut BinDecoder::new(&[]), 0).expect("reading no question cannot fail")
});

/// Send our response through hickory-server's response handle, which encodes messages itself:
/// the response as hickory reads it back, with the request's question as received, so that it
/// comes out as we wrote it.
async fn send<R: ResponseHandler>(request: &Request, bytes: &[u8], handle: &mut R) -> ResponseInfo {
    let failed = |metadata: Metadata| {
        let mut m = metadata;
        m.response_code = ResponseCode::ServFail;
        ResponseInfo::from(Header {
            metadata: m,
            counts: Default::default(),
        })
    };
    let m = match Message::from_vec(bytes) {
        Ok(m) => m,
        Err(e) => {
            debug!(error = %e, "our response does not read back");
            return failed(Metadata::response_from_request(&request.metadata));
        }
    };
    let queries = if m.queries.is_empty() {
        &*NO_QUESTION
    } else {
        &request.queries
    };
    let response = MessageResponseBuilder::new(queries, m.edns.as_ref()).build(
        m.metadata,
        m.answers.iter(),
        m.authorities.iter(),
        iter::empty(),
        m.additionals.iter(),
    );
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(e) => {
            debug!(error = %e, "failed to send response");
            failed(m.metadata)
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let start = Instant::now();
        let now = self.guard.now();
        let table = self.table.load();
        let guard = self.guard.load();
        let Some((Some(bytes), key)) = respond(&table, &guard, request, now) else {
            // Rate limited, or too large even without records: nothing is sent (as by the
            // fast engine).
            return ResponseInfo::from(Header {
                metadata: Metadata::response_from_request(&request.metadata),
                counts: Default::default(),
            });
        };
        let info = send(request, &bytes, &mut response_handle).await;
        table.counters.queries.record(key, start.elapsed());
        info
    }
}
